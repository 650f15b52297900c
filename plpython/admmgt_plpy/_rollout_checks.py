"""What applyScripts checks before it changes anything, and its dry run.

The template's server checks every ready script (validate_on_template), the
same path for a run and for its dry run; raw SQL that has not reached the
template needs a superuser; plan_script shows one script's statements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from admmgt_plpy import _history, _preflight
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._migration import retryable_outcome
from admmgt_plpy._registry import DATABASE_MODE, UPDATING, Tenant, mode_sql, place_conninfo
from admmgt_plpy._remote import Dblink, Outcome, RemoteError
from admmgt_plpy._scripts import Script, load_script
from admmgt_plpy._search_path import names_schema
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import RETRYABLE
from admmgt_plpy._transient import BLOCKERS, BLOCKERS_COLUMNS, retryable
from admmgt_plpy._types import READY, Plpy
from admmgt_plpy._validate import READ_ONLY, TemplateBusy, script_problems


def validate_on_template(
    plpy: Plpy,
    dblink: Dblink,
    clusters: Clusters,
    template: Tenant,
    chain: list[Script],
    refuse: Callable[[Script, str], None],
) -> list[Script]:
    """Refuse out-of-order scripts, then have the template's server check every
    ready script (types, tablespaces, names, expressions: admmgt_plpy._validate).

    Read-only: the template is not changed before every ready script passed.
    ``refuse(script, why)`` records a refusal (status 3 in a run; a NOTICE and
    the final error in a dry run, which calls this same path). Raises
    TemplateBusy when the template cannot be read now for a reason a
    re-run fixes (a lock, a lost connection).
    """
    if not any(s.status == READY or _unrecorded_raw(s) for s in chain):
        return chain
    conn = None
    try:
        conn = dblink.connect(place_conninfo(clusters, template.place))
        have = set(_history.read_state_now(dblink, conn, template.history_table)[1])
        blocked = _needs_superuser(plpy, chain, have)
        if blocked is not None:
            refuse(blocked, _SUPERUSER_ONLY.format(id=blocked.id))
            chain = [s for s in chain if s.id < blocked.id]
        top = max(have, default=0)
        for script in [s for s in chain if s.id not in have and s.id < top]:
            refuse(
                script,
                (
                    f"the template already has script {top}; scripts apply in id order, so give "
                    "this one a higher id (a new scripts row); a script rolled back and then "
                    "overtaken is never applied out of order"
                ),
            )
            chain = [s for s in chain if s.id != script.id]
        # Every problem of a script at once (admmgt_plpy._validate), and the
        # first script refused stops the chain: later ones may build on it.
        pending = [s for s in chain if s.status == READY and s.id not in have]
        dblink.query(conn, READ_ONLY)
        for index, script in enumerate(pending):
            earlier = [s.compiled for s in pending[:index]]
            problems = script_problems(dblink, conn, script.compiled, earlier)
            if problems:
                count = len(problems)
                why = (
                    f"validation on the template failed: {problems[0]}"
                    if count == 1
                    else f"validation on the template failed, {count} problems:\n"
                    + "\n".join(problems)
                )
                refuse(script, why)
                return [s for s in chain if s.id < script.id]
    except (RemoteError, TemplateBusy) as caught:
        exc = caught.error if isinstance(caught, TemplateBusy) else caught
        blockers: list[dict[str, Any]] = []
        if exc.sqlstate in RETRYABLE and conn is not None:
            try:
                dblink.query(conn, "ROLLBACK")
                blockers = dblink.query(conn, BLOCKERS, BLOCKERS_COLUMNS)
            except RemoteError:
                pass
        if not retryable(exc.sqlstate):
            raise AdmmgtError(
                f'template "{template.database}": reading its history and checking the ready '
                f"scripts failed ({exc.describe()}); nothing was applied",
                hint="Fix what the message names in the template, then call applyScripts again.",
            ) from None
        raise TemplateBusy(
            exc,
            retryable_outcome(
                template,
                "template",
                exc,
                blockers,
                "its history could not be read and the ready scripts not checked",
                None,
            ),
        ) from None
    finally:
        if conn is not None:
            dblink.disconnect(conn)
    return chain


RAW_KINDS = {"sql": "raw SQL step", "proc_call": "procedure call"}


def schema_problem(script: Script, template_schema: str) -> str | None:
    """Why ``script`` cannot go to schema tenants, checked before the template
    schema is touched: it names a schema other than the template's (the
    compiler's schema map refuses it), or a raw SQL step or procedure call
    names the template schema (each tenant runs it under its own
    search_path; admmgt_plpy._search_path)."""
    head = f'cannot be applied to schema tenants (template schema "{template_schema}"): '
    try:
        script.for_schema(template_schema, template_schema)
    except MetadataError as exc:
        return head + exc.message
    for number, step in enumerate(script.compiled.steps, 1):
        if step.kind not in RAW_KINDS:
            continue
        found = names_schema(step.sql, template_schema)
        if found is None:
            continue
        named = re.match(r'"?[^".]+"?\.("?[^" ]+"?) at line', found)
        fix = f"write {named.group(1)}" if named else "use bare names"
        return head + (
            f"step {number} ({RAW_KINDS[step.kind]}): raw SQL names the template's schema "
            f'"{template_schema}" ({found}); schema tenants run it with search_path set to '
            f"their own schema: {fix}"
        )
    return None


_SUPERUSER_ONLY = (
    "it has raw SQL steps or procedure calls, which run as superuser in the template, and "
    "the caller is not a superuser; a superuser must apply it (CALL admmgt.applyScripts(); "
    "as a superuser after reading admmgt.plan_script({id})), or remove those steps"
)


def caller_is_superuser(plpy: Plpy) -> bool:
    """Whether the session's own role (not the SECURITY DEFINER owner) is a superuser."""
    row = plpy.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user")
    return bool(row and row[0]["rolsuper"])


def _unrecorded_raw(script: Script) -> bool:
    """Raw statements in a script admmgt never recorded reaching the template."""
    return script.recorded_checksum is None and any(
        x.kind in RAW_KINDS for x in script.compiled.steps
    )


def _needs_superuser(plpy: Plpy, chain: list[Script], have: set[int]) -> Script | None:
    """The first script with raw statements that has not reached the template
    (``have``: its own script_history) and whose arrival admmgt never recorded,
    whatever its status, when the caller is no superuser.

    Raw SQL steps and procedure calls run as the superuser that admmgt connects
    as; an admmgt_operator may write them (it edits the metadata) but only a
    superuser may have them reach the template (docs/security.md). Once there
    (metadata checksum recorded, a column the operator cannot write), their
    rows cannot change unnoticed, and any caller may carry them to the tenants
    that still lack them. The status is the operator's to set, so a status 2
    (applied) proves nothing.
    """
    raw = [s for s in chain if s.id not in have and _unrecorded_raw(s)]
    if not raw or caller_is_superuser(plpy):
        return None
    return raw[0]


def plan_script(plpy: Plpy, script_id: int) -> list[dict[str, Any]]:
    script = load_script(plpy, script_id)
    return [
        {
            "step": n,
            "kind": s.kind,
            "target": s.target,
            "transactional": s.transactional,
            "statement": s.sql,
        }
        for n, s in enumerate(script.compiled.steps, 1)
    ]


def dry_run_rollout(
    plpy: Plpy,
    settings: Settings,
    template: Tenant,
    copies: list[Tenant],
    chain: list[Script],
    refusals: list[str],
    execute: bool,
    ready_count: int,
    mode: int = DATABASE_MODE,
) -> None:
    """The pre-flight: every check a real run makes before touching the template
    (the same validate_on_template), the plan, and with ``execute`` the scripts
    run in the template inside a transaction that is rolled back. Ends with an
    ERROR naming every script a real run would refuse; changes nothing."""

    def refuse(script: Script, why: str) -> None:
        plpy.notice(f"script {script.id} would be refused: {why}")
        refusals.append(f"script {script.id}: {why}")

    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    try:
        chain = validate_on_template(plpy, dblink, clusters, template, chain, refuse)
    except TemplateBusy as unread:
        assert unread.outcome is not None  # validate_on_template says who held the lock
        raise AdmmgtError(
            f"applyScripts (dry run): {unread.outcome.message}; nothing was changed",
            hint="Re-run the dry run once the template is free.",
        ) from None
    ready = [s for s in chain if s.status == READY]
    _print_plan(plpy, [template, *copies], ready, ready_count, mode)
    if execute and ready:
        result: list[Outcome] = []
        job = _preflight.rehearse(
            place_conninfo(clusters, template.place),
            chain,
            settings,
            template.database,
            template.history_table,
        )
        Fanout(dblink, 1, 0, lambda _t, o, _ms: result.append(o)).run([template], lambda _: job)
        outcome = result[0]
        for line in outcome.private.get("report", []):
            plpy.notice(f"applyScripts (hard dry run): {line}; rolled back")
        if outcome.outcome == "failed":
            plpy.notice(f"applyScripts (hard dry run): {outcome.message}")
            refusals.append(outcome.message)
        elif outcome.outcome != "ok":
            plpy.notice(f"applyScripts (hard dry run): {outcome.message}")
    if refusals:
        raise AdmmgtError(
            f"applyScripts (dry run): {len(refusals)} problem(s); a real run would refuse "
            "the script(s) below, and no later script would go on:\n  "
            + "\n  ".join(refusals)
            + "\nnothing was changed",
            hint="Fix the metadata rows named above, then run the dry run again.",
        )


def _print_plan(
    plpy: Plpy,
    all_templates: list[Tenant],
    scripts: list[Script],
    ready: int,
    mode: int = DATABASE_MODE,
) -> None:
    if not scripts:
        plpy.notice(
            "applyScripts (dry run): "
            + (
                f"none of the {ready} ready script(s) passes the checks (see above)"
                if ready
                else "no script is ready (status 1)"
            )
            + "; nothing would be applied"
        )
        return
    for script in scripts:
        lines = [
            f"script {script.id} ({script.description or 'no description'}), "
            f"{len(script.compiled.steps)} statements, checksum "
            f"{script.compiled.checksum[:12]}:"
        ]
        for n, step in enumerate(script.compiled.steps, 1):
            flag = "" if step.transactional else "  [outside the transaction]"
            lines.append(f"  {n}. {step.sql}{flag}")
        plpy.notice("\n".join(lines))
    rows = plpy.execute(
        plpy.prepare(
            f"""SELECT dbname, coalesce(scriptversion, 0) AS v FROM admmgt.vendor_db_settings AS r
           WHERE {UPDATING} AND {mode_sql("r", mode)} ORDER BY id""",
            [],
        )
    )
    behind = [r["dbname"].lower() for r in rows if r["v"] < scripts[-1].id]
    plpy.notice(
        f"applyScripts (dry run): would apply {_script_list([s.id for s in scripts])} "
        f"to template {', '.join(t.label for t in all_templates)} first, "
        f"then to {len(behind)} tenant(s)"
        + (f": {', '.join(behind[:20])}{' ...' if len(behind) > 20 else ''}" if behind else "")
        + "; nothing was changed"
    )


def _script_list(ids: list[int]) -> str:
    """script 3; scripts 3 and 4; scripts 3, 4 and 5."""
    if len(ids) == 1:
        return f"script {ids[0]}"
    return "scripts " + ", ".join(str(i) for i in ids[:-1]) + f" and {ids[-1]}"
