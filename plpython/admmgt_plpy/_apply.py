"""applyScripts, baseline and plan_script: the migration engine.

Order of a run (docs/migrations.md):
1. the chain: scripts with status 1 (ready) or 2 (applied), in id order;
2. every ready script is loaded, compiled and validated on the template's
   server before anything changes, and refused if its id is below the
   template's version (scripts apply in id order);
3. the template gets each script it lacks, one transaction per script;
   a script that fails there is marked 3 and neither it nor later scripts go on;
4. every other cluster's copy of the template gets them (the template wave,
   one at a time per cluster); a copy that fails holds back its cluster's
   tenants at the scripts it has;
5. every created tenant with updateflag that the registry shows behind the
   template gets the scripts it lacks, N tenants at a time per cluster. Each tenant's
   own admmgt.script_history decides what it lacks, so a registry that missed
   an update never causes a double apply; the registry is reconciled from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from admmgt_plpy import _history, _preflight, _sync
from admmgt_plpy._compile import Step
from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._locks import take_operation_lock
from admmgt_plpy._provision import (
    Tenant,
    check_mode,
    registered,
    templates,
    templates_not_ready,
    updating_tenants,
)
from admmgt_plpy._remote import (
    Clusters,
    Connect,
    Dblink,
    Fanout,
    Job,
    Outcome,
    RemoteError,
    Run,
)
from admmgt_plpy._rollback import rollback_steps
from admmgt_plpy._runguard import end_run
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._scripts import (
    Script,
    load_applied,
    load_script,
    refuse_changed,
)
from admmgt_plpy._settings import Settings, load_settings
from admmgt_plpy._sync import Definition
from admmgt_plpy._transaction import RETRYABLE, TransactionFailed, in_one_trip, in_transaction
from admmgt_plpy._transient import (
    BLOCKERS,
    BLOCKERS_COLUMNS,
    connection_cause,
    describe_blockers,
    find_blockers,
    retryable,
)
from admmgt_plpy._validate import READ_ONLY, TemplateBusy, script_problems

# ------------------------------------------------------------------ entry points

# What a run's counts are of, for the summary NOTICE.
TEMPLATE_INCLUDED = "the template included"


def applyscripts(
    plpy: Any, *, separatedb: int, dry_run: bool, execute: bool = False, raise_failure: bool = True
) -> None:
    check_mode(separatedb)
    if execute and not dry_run:
        raise AdmmgtError(
            "applyScripts: t_execute => true is part of a dry run; nothing was applied",
            hint="CALL admmgt.applyScripts(dry_run => true, t_execute => true);",
        )
    settings = load_settings(plpy)
    take_operation_lock(plpy, "migrations", "applyScripts")
    template, *copies = templates(plpy)
    if not dry_run and not _unfinished(plpy, "applyScripts") and _nothing_pending(plpy):
        return
    # Each script is loaded and compiled once; applied ones must match their rows.
    ready = [
        r["id"] for r in plpy.execute("SELECT id FROM admmgt.scripts WHERE status = 1 ORDER BY id")
    ]
    applied = load_applied(
        plpy,
        [r["id"] for r in plpy.execute("SELECT id FROM admmgt.scripts WHERE status = 2")],
        "applyScripts",
    )
    broken: dict[int, MetadataError] = {}
    scripts = {i: _load_or_fail(plpy, i, dry_run, broken) for i in ready}
    refuse_changed((x for x in scripts.values() if x is not None), "applyScripts")
    if dry_run:
        chain = sorted(applied + [x for x in scripts.values() if x], key=lambda x: x.id)
        refusals = [f"script {i} cannot be compiled" for i in broken]
        _dry_run(plpy, settings, template, copies, chain, refusals, execute, len(ready))
        return

    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    recorder = RunRecorder(plpy, dblink, clusters, "applyScripts", {"ready": ready})
    words = {"ok": "updated", "noop": "already up to date"}
    try:
        for script_id, exc in broken.items():
            # Refused like a validation failure (status 3, last_error, a failed
            # run); nothing at all is applied while a ready script cannot compile.
            _fail_script(
                plpy,
                recorder,
                script_id,
                f"cannot be compiled; nothing was applied:\n{exc.message}",
                template,
            )
        if broken:
            chain = []
        else:
            chain = sorted(applied + [x for x in scripts.values() if x], key=lambda x: x.id)
        if chain:

            def refuse(script: Script, why: str) -> None:
                _fail_script(plpy, recorder, script.id, why, template)

            try:
                chain = _validate_on_template(plpy, dblink, clusters, template, chain, refuse)
            except _TemplateUnreadable as unread:
                # A lock or a lost connection on the template: every script stays ready.
                _record(plpy, recorder, template, unread.outcome, 0.0, f"template {template.label}")
                _keep_ready(plpy, recorder, [s for s in chain if s.status == 1], unread.outcome)
                chain = []
            chain = _apply_to_template(plpy, dblink, clusters, settings, template, chain, recorder)
        if chain:
            chains = _apply_to_copies(plpy, dblink, clusters, settings, copies, chain, recorder)
            _apply_to_tenants(plpy, dblink, clusters, settings, chain, chains, recorder)
            _mark_applied(plpy, recorder, chain)
    except BaseException:
        plpy.notice(recorder.finish(words, TEMPLATE_INCLUDED))
        raise
    end_run(plpy, recorder, words, raise_failure=raise_failure, counted=TEMPLATE_INCLUDED)


def _unfinished(plpy: Any, operation: str, arguments: str | None = None) -> bool:
    """True when an earlier run of ``operation`` (with these jsonb ``arguments``)
    was interrupted and not resumed yet (admmgt.unfinished_runs)."""
    return bool(
        plpy.execute(
            plpy.prepare(
                """SELECT EXISTS (SELECT FROM admmgt.unfinished_runs WHERE operation = $1
                     AND state = 'interrupted' AND ($2::jsonb IS NULL OR arguments = $2::jsonb))
                   AS yes""",
                ["text", "text"],
            ),
            [operation, arguments],
        )[0]["yes"]
    )


def _nothing_pending(plpy: Any) -> bool:
    """True (after saying so) when the registry alone shows there is no work."""
    row = plpy.execute(
        """SELECT (SELECT count(*) FROM admmgt.scripts WHERE status = 1) AS ready,
                  (SELECT max(id) FROM admmgt.scripts WHERE status = 2) AS top,
                  (SELECT count(*) FROM admmgt.vendor_db_settings
                   WHERE NOT deleted AND NOT istemplate AND status = 2 AND updateflag) AS tenants,
                  (SELECT count(*) FROM admmgt.vendor_db_settings
                   WHERE NOT deleted AND istemplate AND status = 2) AS templates,
                  (SELECT count(*) FROM admmgt.vendor_db_settings
                   WHERE NOT deleted AND status = 2 AND (updateflag OR istemplate)
                     AND coalesce(scriptversion, 0) < (
                         SELECT coalesce(max(id), 0) FROM admmgt.scripts WHERE status = 2)
                  ) AS behind"""
    )[0]
    if row["ready"] or row["behind"]:
        return False
    version = row["top"] if row["top"] is not None else "none"
    templates = "template" if row["templates"] == 1 else f"all {row['templates']} templates"
    plpy.notice(
        f"applyScripts: nothing to apply; {templates} and all {row['tenants']} updating "
        f"tenants are at script {version}"
    )
    return True


def _load_or_fail(
    plpy: Any, script_id: int, dry_run: bool, broken: dict[int, MetadataError]
) -> Script | None:
    """The compiled script, or None with the reason in ``broken`` (a dry run says it)."""
    try:
        return load_script(plpy, script_id)
    except MetadataError as exc:
        if dry_run:
            plpy.notice(f"script {script_id} would be refused:\n{exc.message}")
        broken[script_id] = exc
        return None


# --------------------------------------------------------------------- template


class _TemplateUnreadable(Exception):
    """The template could not be read for a reason a re-run fixes."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _validate_on_template(
    plpy: Any,
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
    _TemplateUnreadable when the template cannot be read now for a reason a
    re-run fixes (a lock, a lost connection).
    """
    if not any(s.status == 1 or _unrecorded_raw(s) for s in chain):
        return chain
    conn = None
    try:
        conn = dblink.connect(clusters.conninfo(template.cluster, template.database))
        has = dblink.query(conn, _history.HAS_TABLE, "has boolean")[0]["has"]
        have = (
            {r["script_id"] for r in dblink.query(conn, _history.STATE, _history.STATE_COLUMNS)}
            if has
            else set()
        )
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
        pending = [s for s in chain if s.status == 1 and s.id not in have]
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
        raise _TemplateUnreadable(
            _retryable_outcome(
                template,
                "template",
                exc,
                blockers,
                "its history could not be read and the ready scripts not checked",
                None,
            )
        ) from None
    finally:
        if conn is not None:
            dblink.disconnect(conn)
    return chain


RAW_KINDS = {"sql": "raw SQL step", "proc_call": "procedure call"}
_SUPERUSER_ONLY = (
    "it has raw SQL steps or procedure calls, which run as superuser in the template, and "
    "the caller is not a superuser; a superuser must apply it (CALL admmgt.applyScripts(); "
    "as a superuser after reading admmgt.plan_script({id})), or remove those steps"
)


def caller_is_superuser(plpy: Any) -> bool:
    """Whether the session's own role (not the SECURITY DEFINER owner) is a superuser."""
    row = plpy.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user")
    return bool(row and row[0]["rolsuper"])


def _unrecorded_raw(script: Script) -> bool:
    """Raw statements in a script admmgt never recorded reaching the template."""
    return script.recorded_checksum is None and any(
        x.kind in RAW_KINDS for x in script.compiled.steps
    )


def _needs_superuser(plpy: Any, chain: list[Script], have: set[int]) -> Script | None:
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


def _apply_to_template(
    plpy: Any,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    template: Tenant,
    chain: list[Script],
    recorder: RunRecorder,
) -> list[Script]:
    """Bring the template to the end of the chain; return the scripts it now has."""
    capture = SyncPlan(_sync.schemas_expression(settings.sync_schemas), capture=True)
    job = _migrate(template, chain, settings, clusters, recorder.run_id, capture, who="template")

    def arrived(outcome: Outcome) -> None:
        """What the template's scripts leave in the admin database, committed
        before the NOTICE that a vanished client would turn into FATAL."""
        for script_id, points in outcome.private.get("captured", {}).items():
            for before, kinds in points.items():
                for kind, definitions in kinds.items():
                    _sync.log_definitions(plpy, recorder, kind, definitions, script_id, before)
        have = set(outcome.private.get("have", []))
        for script in chain:
            # Applied now, or by an earlier run that was interrupted before it
            # recorded so (the template's own history has it): record it once.
            now = script.id in outcome.details.get("applied", [])
            if now or (script.id in have and script.status == 1):
                recorder.execute(
                    "UPDATE admmgt.scripts SET checksum = "
                    f"{_q(plpy, script.compiled.checksum)}, metadata_checksum = "
                    f"{_q(plpy, script.metadata_checksum)}, applied_rows = "
                    f"{_q(plpy, script.snapshot)}::jsonb, applied_to_template_at = now(),"
                    f" last_error = NULL WHERE id = {script.id}"
                    + ("" if now else " AND applied_to_template_at IS NULL")
                )

    outcome = _single(
        plpy, dblink, template, job, recorder, label=f"template {template.label}", before=arrived
    )
    have = set(outcome.private.get("have", []))
    if outcome.outcome == "failed" and retryable(outcome.sqlstate):
        # A lock or a lost connection is no defect of the script: it stays ready.
        _keep_ready(plpy, recorder, [s for s in chain if s.id not in have], outcome)
    elif outcome.outcome == "failed":
        failed_id = outcome.details.get("script")
        failed = next((s for s in chain if s.id == failed_id), None)
        if failed is not None:
            _fail_script(plpy, recorder, failed.id, f"failed on the template: {outcome.message}")
    return [s for s in chain if s.id in have]


def _keep_ready(plpy: Any, recorder: RunRecorder, scripts: list[Script], outcome: Outcome) -> None:
    """The template could not take ``scripts`` now, for a reason a re-run fixes:
    they stay ready (status 1), with the reason in last_error."""
    ids = [s.id for s in scripts if s.status == 1]
    if not ids:
        return
    idlist = ", ".join(map(str, ids))
    why = f"not applied to the template yet: {outcome.message}"
    recorder.execute(
        f"UPDATE admmgt.scripts SET last_error = {_q(plpy, why)} WHERE id IN ({idlist})"
        " AND status = 1"
    )
    noun = "script" if len(ids) == 1 else "scripts"
    plpy.notice(
        f"{noun} {idlist}: not applied to the template in this run, for a reason a re-run "
        "fixes; ready (status 1) still, the next applyScripts applies it"
    )


def _fail_script(
    plpy: Any, recorder: RunRecorder, script_id: int, why: str, refused_on: Tenant | None = None
) -> None:
    """Status 3 and last_error. A script ``refused_on`` the template before it ran
    is also logged there as failed (so the run fails) and said in a NOTICE; one
    that failed on the template was already logged and said by its outcome."""
    recorder.execute(
        f"UPDATE admmgt.scripts SET status = 3, last_error = {_q(plpy, why)} WHERE id = {script_id}"
    )
    if refused_on is not None:
        message = f"script {script_id}: {why}; it touches no tenant (status 3)"
        recorder.refused(refused_on.database, refused_on.cluster, script_id, message)
        plpy.notice(message)


# ---------------------------------------------------------------------- tenants


def _apply_to_copies(
    plpy: Any,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    copies: list[Tenant],
    chain: list[Script],
    recorder: RunRecorder,
) -> dict[str, list[Script]]:
    """The template wave: every other cluster's template gets the chain (one per
    cluster, in parallel). Returns, per cluster, the scripts its tenants may get:
    those its template has."""
    if not copies:
        return {}
    have: dict[str, set[int]] = {c.cluster: set() for c in copies}
    record = _progress(plpy, recorder, len(copies), who="template ")

    def on_done(copy: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        have[copy.cluster] = set(outcome.private.get("have", []))
        record(copy, outcome, elapsed_ms)

    sync = SyncPlan.for_tenants(
        plpy, _sync.schemas_expression(settings.sync_schemas), [s.id for s in chain]
    )
    Fanout(dblink, 1, 0, on_done, clusters).run(
        copies,
        partial(
            _migrate,
            chain=chain,
            settings=settings,
            clusters=clusters,
            run_id=recorder.run_id,
            sync=sync,
            who="template",
        ),
    )
    return {c: [s for s in chain if s.id in ids] for c, ids in have.items()}


def _apply_to_tenants(
    plpy: Any,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    chain: list[Script],
    chains: dict[str, list[Script]],
    recorder: RunRecorder,
) -> None:
    """Every updating tenant behind gets what its cluster's template has
    (``chains``; the home template's ``chain`` on a cluster without a copy).
    Template first, per cluster: a tenant whose cluster's copy is not ready, or
    lacks a script, is held back (skipped, with the reason in last_error)."""
    top = chain[-1].id
    tenants = updating_tenants(plpy, below=top)
    if not tenants:
        plpy.notice("applyScripts: every updating tenant already has the template's scripts")
        return
    on_done = _progress(plpy, recorder, len(tenants))

    sync = SyncPlan.for_tenants(
        plpy, _sync.schemas_expression(settings.sync_schemas), [s.id for s in chain]
    )

    unready = templates_not_ready(plpy)

    def job(tenant: Tenant) -> Job:
        if tenant.cluster in unready:
            return _skip(unready[tenant.cluster])
        own = chains.get(tenant.cluster, chain)
        if len(own) == len(chain):
            return _migrate(tenant, chain, settings, clusters, recorder.run_id, sync)
        return _held_back(
            tenant, own, chain[len(own)].id, settings, clusters, recorder.run_id, sync
        )

    Fanout(dblink, settings.max_parallel, settings.failure_limit, on_done, clusters).run(
        tenants, job
    )


def _skip(why: str) -> Job:
    """A job that touches nothing and says why."""
    return Outcome("skipped", why)
    yield  # pragma: no cover -- makes this a generator, as every job is


def _held_back(
    tenant: Tenant,
    own: list[Script],
    missing: int,
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    sync: SyncPlan,
) -> Job:
    """Apply what the tenant's cluster's template has; say why it gets no further."""
    outcome = yield from _migrate(tenant, own, settings, clusters, run_id, sync)
    if outcome.outcome == "noop":
        outcome.outcome = "skipped"
        outcome.message = (
            f"held back at script {outcome.details.get('version')}: the template on cluster "
            f'"{tenant.cluster}" lacks script {missing} (its row\'s last_error says why)'
        )
    return outcome


def _record(
    plpy: Any,
    recorder: RunRecorder,
    target: Tenant,
    outcome: Outcome,
    elapsed_ms: float,
    label: str,
    scriptid: int | None = None,
) -> None:
    """Record one database's outcome, reconcile its registry row from its history,
    log its statements, and say "<label>: ..."."""
    recorder.target(
        target.database,
        target.cluster,
        outcome,
        elapsed_ms,
        scriptid=scriptid if scriptid is not None else outcome.details.get("script"),
        registry=_registry_update(plpy, target, outcome),
    )
    recorder.script_log(target.database, outcome.private.get("executed", []))
    recorder.say(outcome, f"{label}: {_describe(target, outcome, elapsed_ms)}")


def _progress(
    plpy: Any, recorder: RunRecorder, total: int, scriptid: int | None = None, who: str = ""
) -> Callable[[Tenant, Outcome, float], None]:
    """on_done for a fan-out: _record with a "<who>[i/N] <database>[@cluster]" label."""
    done = [0]

    def on_done(tenant: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        done[0] += 1
        label = f"{who}[{done[0]}/{total}] {tenant.label}"
        _record(plpy, recorder, tenant, outcome, elapsed_ms, label, scriptid)

    return on_done


def _single(
    plpy: Any,
    dblink: Dblink,
    target: Tenant,
    job: Job,
    recorder: RunRecorder,
    scriptid: int | None = None,
    label: str | None = None,
    before: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Run one job on one database, _record it, and return its outcome;
    ``before`` is called with the outcome before it is recorded and said."""
    result: list[Outcome] = []

    def on_done(t: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        result.append(outcome)
        if before is not None:
            before(outcome)
        _record(plpy, recorder, t, outcome, elapsed_ms, label or t.database, scriptid)

    Fanout(dblink, 1, 0, on_done).run([target], lambda _: job)
    return result[0]


def _mark_applied(plpy: Any, recorder: RunRecorder, chain: list[Script]) -> None:
    """Scripts every updating tenant now has become status 2, with their rows."""
    ids = [s.id for s in chain if s.status == 1]
    if not ids:
        return
    idlist = ", ".join(str(i) for i in ids)
    recorder.execute(f"""
        WITH done AS (
            SELECT s.id FROM admmgt.scripts AS s
            WHERE s.id IN ({idlist}) AND s.status = 1 AND NOT EXISTS (
                SELECT FROM admmgt.vendor_db_settings AS v
                WHERE NOT v.deleted AND NOT v.istemplate AND v.status = 2 AND v.updateflag
                  AND coalesce(v.scriptversion, 0) < s.id)),
        t AS (UPDATE admmgt.script_tables SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        c AS (UPDATE admmgt.script_table_columns SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        f AS (UPDATE admmgt.script_table_fkeys SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        p AS (UPDATE admmgt.script_procs SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        x AS (UPDATE admmgt.script_column_changes SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        i AS (UPDATE admmgt.script_indexes SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        q AS (UPDATE admmgt.script_steps SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1)
        UPDATE admmgt.scripts SET status = 2, last_error = NULL
        WHERE id IN (SELECT id FROM done)""")


# ------------------------------------------------------------- one database's job


def _migrate(
    target: Tenant,
    chain: list[Script],
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    sync: SyncPlan,
    who: str = "tenant",
) -> Job:
    """Apply to one database every chain script its own history lacks."""
    conn = yield Connect(clusters.conninfo(target.cluster, target.database))
    try:
        has_table, state = yield from _read_history_table(conn)
    except RemoteError as exc:
        return (yield from _history_unread(target, who, conn, exc))
    applied: list[int] = []
    executed: list[tuple[int, str]] = []
    dropped: list[str] = []
    captured: dict[int, Any] = {}
    for script in chain:
        action = state.get(script.id)
        if action in ("apply", "baseline"):
            continue
        steps = script.compiled.steps
        if action != "partial":
            try:
                captured[script.id] = yield from _transactional_part(
                    conn, script, settings, run_id, sync, has_table
                )
                has_table = True
            except _StepFailed as failure:
                return _failure(target, who, script, failure, state)
            executed += [(script.id, s.sql) for s in steps if s.transactional]
            dropped += [s.note for s in steps if s.kind == "drop_column" and s.note]
        later = [s for s in steps if not s.transactional]
        if later or action == "partial":
            try:
                for number, step in enumerate(steps, 1):
                    if not step.transactional:
                        yield from _run_outside_transaction(conn, step, number)
                yield Run(conn, _history_insert(script, "apply", run_id))
            except _StepFailed as failure:
                state[script.id] = "partial"
                return _failure(target, who, script, failure, state)
            executed += [(script.id, s.sql) for s in later]
        state[script.id] = "apply"
        applied.append(script.id)
    details: dict[str, Any] = {"applied": applied, "version": _version(state)}
    if applied:
        details["script"] = applied[-1]
    if dropped:
        details["dropped_columns"] = dropped
    private = {"have": _have(state), "executed": executed, "captured": captured}
    return Outcome("ok" if applied else "noop", details=details, private=private)


class _StepFailed(Exception):
    def __init__(
        self,
        number: int,
        step: Step | None,
        error: RemoteError,
        attempts: int = 1,
        blockers: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(error.message)
        self.number = number  # 0: the history row or the transaction itself
        self.step = step
        self.error = error
        self.attempts = attempts
        self.blockers = blockers or []  # for a lock: who held locks (_transient.BLOCKERS)


def _read_history(conn: str) -> Any:
    """Job fragment: the latest action per script, in one round trip. A database
    without the table (it gets it with its first script) has none."""
    return (yield from _read_history_table(conn))[1]


def _read_history_table(conn: str) -> Any:
    """Job fragment: (whether the history table exists, the latest action per script)."""
    try:
        rows = yield Run(conn, _history.STATE, _history.STATE_COLUMNS)
    except RemoteError as exc:
        if exc.sqlstate != UNDEFINED_TABLE:
            raise
        return False, {}
    return True, {r["script_id"]: r["action"] for r in rows}


UNDEFINED_TABLE = "42P01"


@dataclass(frozen=True)
class SyncPlan:
    """How routines and views follow the template around each script.

    The template's are captured before and after each script inside its
    transaction (``capture``); a tenant gets the captured definitions applied
    before and after the same script inside its own transaction (``logged``,
    keyed by (script id, before?) then kind), so the sync is atomic with the
    script and a replay sees each step as the template had it.
    """

    schemas: str
    capture: bool = False
    logged: dict[tuple[int, bool], dict[str, list[Definition]]] = field(default_factory=dict)

    @classmethod
    def for_tenants(cls, plpy: Any, schemas: str, script_ids: list[int]) -> SyncPlan:
        logged: dict[tuple[int, bool], dict[str, list[Definition]]] = {}
        for kind in _sync.KINDS:
            for key, defs in _sync.logged_definitions(plpy, kind, script_ids).items():
                logged.setdefault(key, {})[kind] = defs
        return cls(schemas, logged=logged)


def _follow_template(conn: str, sync: SyncPlan, script_id: int, before: bool) -> Any:
    """Job fragment: capture (template) or apply (tenant) the definitions at one point."""
    found: dict[str, list[Definition]] = {}
    for kind in _sync.KINDS:
        if sync.capture:
            found[kind] = yield from _sync.read_definitions(conn, kind, sync.schemas)
            continue
        wanted = sync.logged.get((script_id, before), {}).get(kind)
        if wanted:
            current = yield from _sync.read_fingerprints(conn, kind, sync.schemas)
            yield from _sync.sync_into(conn, wanted, current)
    return found


def _in_transaction(
    conn: str, settings: Settings, steps: tuple[Step, ...], body: Callable[[list[int]], Any]
) -> Any:
    """Job fragment: ``body`` in one remote transaction, all of it or nothing.

    Run by _transaction.in_transaction (lock_timeout, retries with backoff;
    TimeZone UTC). ``body`` keeps the number of the step it is running in
    ``position[0]`` (0: none of ``steps``), so that a failure names its step.
    """
    position = [0]

    def attempt() -> Any:
        position[0] = 0
        return (yield from body(position))

    try:
        return (yield from in_transaction(conn, settings, attempt, utc=True))
    except TransactionFailed as failed:
        number = position[0]
        raise _StepFailed(
            number,
            steps[number - 1] if number else None,
            failed.error,
            failed.attempts,
            failed.blockers,
        ) from None


def _transactional_part(
    conn: str,
    script: Script,
    settings: Settings,
    run_id: int,
    sync: SyncPlan,
    has_table: bool = False,
) -> Any:
    """Synced objects, every transactional step and the history row, in one transaction.
    Returns what the template's definitions were before and after (when capturing).

    With no routines or views to follow, all of it goes in one round trip
    (_transaction.in_one_trip); its failure names the step from the statement
    that failed. ``has_table``: the history table was there when the history
    was read, so it is not made again."""
    steps = script.compiled.steps
    if _one_trip(sync, script.id, steps):
        action = "apply" if all(s.transactional for s in steps) else "partial"
        numbers = [i for i, s in enumerate(steps, 1) if s.transactional]
        # The steps first, so that pg_stat_activity (its first 1 kB of the
        # query) shows them, then the history table (if new) and its row.
        statements = [steps[i - 1].sql for i in numbers]
        if not has_table:
            statements.append(_history.ENSURE_TABLE)
        statements.append(_history_insert(script, action, run_id))
        try:
            yield from in_one_trip(conn, settings, statements, utc=True)
        except TransactionFailed as failed:
            index = failed.index
            number = numbers[index] if index is not None and index < len(numbers) else 0
            raise _StepFailed(
                number,
                steps[number - 1] if number else None,
                failed.error,
                failed.attempts,
                failed.blockers,
            ) from None
        return {True: {}, False: {}}

    def body(position: list[int]) -> Any:
        yield Run(conn, _history.ENSURE_TABLE)
        before = yield from _follow_template(conn, sync, script.id, True)
        for index, step in enumerate(steps, 1):
            if step.transactional:
                position[0] = index
                yield Run(conn, step.sql)
        position[0] = 0
        after = yield from _follow_template(conn, sync, script.id, False)
        action = "apply" if all(s.transactional for s in steps) else "partial"
        yield Run(conn, _history_insert(script, action, run_id))
        return {True: before, False: after}

    return (yield from _in_transaction(conn, settings, steps, body))


def _one_trip(sync: SyncPlan, script_id: int, steps: tuple[Step, ...]) -> bool:
    """Whether the script's transaction can go as one query: no definitions to
    capture or apply around it, and each transactional step one statement (a
    ';' anywhere but at its end, even quoted, or no text at all, sends it step
    by step: the query's results must be one per statement)."""
    if sync.capture or any(
        any(sync.logged.get((script_id, before), {}).values()) for before in (True, False)
    ):
        return False
    return all(
        s.sql.strip().rstrip(";").strip() and ";" not in s.sql.strip().rstrip(";")
        for s in steps
        if s.transactional
    )


def _run_outside_transaction(conn: str, step: Step, number: int) -> Any:
    """A declared non-transactional step (idempotent by declaration), in autocommit."""
    try:
        if step.kind == "create_index" and step.name:
            # A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that
            # IF NOT EXISTS would then skip: drop such a leftover first.
            yield Run(
                conn,
                (
                    "DO $admmgt$ DECLARE i regclass := to_regclass(" + _lit(step.name) + ");"
                    " BEGIN IF i IS NOT NULL AND NOT (SELECT indisvalid FROM pg_catalog.pg_index"
                    " WHERE indexrelid = i) THEN EXECUTE format('DROP INDEX %s', i); END IF;"
                    " END $admmgt$"
                ),
            )
        yield Run(conn, step.sql)
    except RemoteError as exc:
        # The session's lock_timeout (wait_timeout_ms) bounds a concurrent
        # build's waits for older transactions; its INVALID leftover is
        # dropped above on the re-run.
        blockers = (yield from find_blockers(conn)) if exc.sqlstate in RETRYABLE else []
        raise _StepFailed(number, step, exc, blockers=blockers) from None


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _history_insert(script: Script, action: str, run_id: int) -> str:
    return (
        "INSERT INTO admmgt.script_history (script_id, action, checksum, duration_ms,"
        f" admin_run_id) VALUES ({script.id}, {_lit(action)}, {_lit(script.compiled.checksum)},"
        f" extract(epoch FROM clock_timestamp() - now()) * 1000, {run_id})"
    )


def _have(state: dict[int, str]) -> list[int]:
    return sorted(i for i, a in state.items() if a in ("apply", "baseline"))


def _version(state: dict[int, str]) -> int | None:
    have = _have(state)
    return have[-1] if have else None


def _failure(
    target: Tenant,
    who: str,
    script: Script,
    failure: _StepFailed,
    state: dict[int, str],
    doing: str = "",
) -> Outcome:
    exc = failure.error
    subject = f"script {script.id}" + (f" {doing}" if doing else "")
    if failure.step:
        where = f"step {failure.number} ({failure.step.kind} {failure.step.target})"
        statement = failure.step.sql  # not admmgt's own (e.g. its INVALID-index check)
    else:
        # BEGIN, the routine and view sync, the history row or COMMIT: admmgt's
        # own statements, never shown as the failing one.
        where = "its transaction (outside its steps)"
        statement = None
    if retryable(exc.sqlstate):
        relation = failure.step.target if failure.step else None
        outcome = _retryable_outcome(
            target,
            who,
            exc,
            failure.blockers,
            f"{subject} failed at {where}",
            relation,
            failure.attempts,
        )
        outcome.statement = statement
    else:
        todo = (
            "fix the template's script"
            if who == "template"
            else "fix the tenant or mark it held back with updateflag = false"
        )
        message = (
            f'{who} "{target.database}": {subject} failed at {where} '
            f"({exc.sqlstate} {exc.message}); {todo}"
        )
        outcome = Outcome("failed", message, exc.sqlstate, statement)
    outcome.details = {"script": script.id, "step": failure.number, "version": _version(state)}
    outcome.details.update(retryable=retryable(exc.sqlstate))
    outcome.private = {"have": _have(state)}
    return outcome


def _retryable_outcome(
    target: Tenant,
    who: str,
    exc: RemoteError,
    blockers: list[dict[str, Any]],
    what: str,
    relation: str | None,
    attempts: int = 1,
) -> Outcome:
    """A failure a plain re-run fixes, in words: who held the lock, or what
    happened to the connection. ``what``: what failed, e.g. "script 2 failed at
    step 1 (...)"."""
    if exc.sqlstate in RETRYABLE:
        tries = f" after {attempts} tries" if attempts > 1 else ""
        why = (
            f"{describe_blockers(blockers, relation)}: could not get a lock within "
            f"lock_timeout{tries} ({exc.sqlstate} {exc.message}); re-run once it is released"
        )
    else:
        why = f"{connection_cause(exc)}; a plain re-run is the fix"
    message = f'{who} "{target.database}": {what}, retryable: {why}'
    return Outcome("failed", message, exc.sqlstate, details={"retryable": True})


def _history_unread(target: Tenant, who: str, conn: str, exc: RemoteError) -> Job:
    """Job fragment: the outcome of a database whose history could not be read.
    Nothing was changed and its registry row keeps its version."""
    if not retryable(exc.sqlstate):
        return Outcome(
            "failed",
            f'{who} "{target.database}": its history (admmgt.script_history) could not be read '
            f"({exc.describe()}); fix that table in the database, then re-run",
            exc.sqlstate,
        )
    blockers = (yield from find_blockers(conn)) if exc.sqlstate in RETRYABLE else []
    return _retryable_outcome(
        target,
        who,
        exc,
        blockers,
        "its history (admmgt.script_history) could not be read",
        "admmgt.script_history",
    )


def _registry_update(plpy: Any, target: Tenant, outcome: Outcome) -> str:
    """The registry row as the outcome found the database: its version, when the
    job read its history (a job that could not connect did not), and its error."""
    version = ""
    if "version" in outcome.details:
        v = outcome.details["version"]
        version = f" scriptversion = {'NULL' if v is None else int(v)},"
    error = (
        f"{_q(plpy, outcome.message)}, last_error_at = now()"
        if outcome.outcome in ("failed", "skipped")
        else "NULL, last_error_at = NULL"
    )
    return (
        f"UPDATE admmgt.vendor_db_settings SET{version} modifiedon = now(),"
        f" last_error = {error} WHERE id = {target.id}"
    )


def _describe(target: Tenant, outcome: Outcome, elapsed_ms: float) -> str:
    """The NOTICE text after "<database>: " (so the message's own name prefix goes)."""
    applied = outcome.details.get("applied", [])
    if outcome.outcome == "ok" and applied:
        noun = "script" if len(applied) == 1 else "scripts"
        return f"{noun} {', '.join(map(str, applied))} applied in {elapsed_ms:.0f} ms"
    if outcome.outcome == "ok":
        return f"{outcome.message} in {elapsed_ms:.0f} ms"
    if outcome.outcome == "noop":
        return outcome.message or (
            f"already at script {outcome.details.get('version')}; registry reconciled"
        )
    message = outcome.message
    for who in ("tenant", "template"):
        message = message.removeprefix(f'{who} "{target.database}": ')
    return f"{outcome.outcome.upper()}: {message}"


def _q(plpy: Any, value: str | None) -> str:
    return str(plpy.quote_nullable(value))


# ---------------------------------------------------------------- plan / dry run


def plan_script(plpy: Any, script_id: int) -> list[dict[str, Any]]:
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


def _dry_run(
    plpy: Any,
    settings: Settings,
    template: Tenant,
    copies: list[Tenant],
    chain: list[Script],
    refusals: list[str],
    execute: bool,
    ready_count: int,
) -> None:
    """The pre-flight: every check a real run makes before touching the template
    (the same _validate_on_template), the plan, and with ``execute`` the scripts
    run in the template inside a transaction that is rolled back. Ends with an
    ERROR naming every script a real run would refuse; changes nothing."""

    def refuse(script: Script, why: str) -> None:
        plpy.notice(f"script {script.id} would be refused: {why}")
        refusals.append(f"script {script.id}: {why}")

    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    try:
        chain = _validate_on_template(plpy, dblink, clusters, template, chain, refuse)
    except _TemplateUnreadable as unread:
        raise AdmmgtError(
            f"applyScripts (dry run): {unread.outcome.message}; nothing was changed",
            hint="Re-run the dry run once the template is free.",
        ) from None
    ready = [s for s in chain if s.status == 1]
    _print_plan(plpy, [template, *copies], ready, ready_count)
    if execute and ready:
        result: list[Outcome] = []
        job = _preflight.rehearse(
            clusters.conninfo(template.cluster, template.database),
            chain,
            settings,
            template.database,
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


def _print_plan(plpy: Any, all_templates: list[Tenant], scripts: list[Script], ready: int) -> None:
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
            """SELECT dbname, coalesce(scriptversion, 0) AS v FROM admmgt.vendor_db_settings
           WHERE NOT deleted AND NOT istemplate AND status = 2 AND updateflag
           ORDER BY id""",
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


# --------------------------------------------------------------------- baseline


def baseline(plpy: Any, *, dbname: str, version: int) -> None:
    """Record that a database already is at ``version`` without running anything."""
    take_operation_lock(plpy, "migrations", "baseline")
    r = registered(plpy, dbname)
    target = Tenant.of(r)
    _check_baseline_version(plpy, target, version)
    scripts = [
        load_script(plpy, s["id"])
        for s in plpy.execute(
            plpy.prepare(
                "SELECT id FROM admmgt.scripts WHERE id <= $1 AND status IN (1, 2) ORDER BY id",
                ["int4"],
            ),
            [version],
        )
    ]
    dblink = Dblink(plpy)
    conn = dblink.connect(Clusters(plpy).conninfo(target.cluster, target.database))
    try:
        dblink.query(conn, "BEGIN")
        dblink.query(conn, _history.ENSURE_TABLE)
        have = {
            x["script_id"]: x["action"]
            for x in dblink.query(conn, _history.STATE, _history.STATE_COLUMNS)
        }
        top = max((i for i, a in have.items() if a in ("apply", "baseline")), default=0)
        if top > version:
            raise AdmmgtError(
                f'baseline of "{target.database}" to script {version} refused: its own history '
                f"already has script {top}; a baseline records scripts a database has and never "
                "moves it back; nothing was recorded",
                hint=f"Baseline to {top} or higher, or undo later scripts with rollbackScript.",
            )
        new = [s for s in scripts if have.get(s.id) not in ("apply", "baseline")]
        for script in new:
            dblink.query(conn, _history_insert(script, "baseline", 0))
        dblink.query(conn, "COMMIT")
    except RemoteError as exc:
        raise AdmmgtError(
            f'baseline of "{target.database}" failed ({exc.describe()}); nothing was recorded'
        ) from None
    finally:
        dblink.disconnect(conn)
    plpy.execute(
        plpy.prepare(
            """UPDATE admmgt.vendor_db_settings SET scriptversion = $2, status = 2,
                      modifiedon = now() WHERE id = $1""",
            ["int8", "int4"],
        ),
        [target.id, version],
    )
    plpy.notice(
        f'baseline: "{target.database}" recorded at script {version} '
        f"({len(new)} script(s) marked as baseline, nothing run)"
    )


def _check_baseline_version(plpy: Any, target: Tenant, version: int) -> None:
    """A baseline names a script that exists and is ready or applied."""
    row = plpy.execute(
        plpy.prepare("SELECT status FROM admmgt.scripts WHERE id = $1", ["int4"]), [version]
    )
    if row and row[0]["status"] in (1, 2):
        return
    known = [
        str(r["id"])
        for r in plpy.execute("SELECT id FROM admmgt.scripts WHERE status IN (1, 2) ORDER BY id")
    ]
    why = (
        "does not exist"
        if not row
        else f"has status {row[0]['status']} (only ready (1) or applied (2) scripts count)"
    )
    raise AdmmgtError(
        f'baseline of "{target.database}" refused: script {version} {why}; nothing was recorded',
        hint="Pick one of the scripts: " + (", ".join(known[-20:]) or "none is ready yet"),
    )


# ------------------------------------------------------------- replay, rollback


def _created_tenant(plpy: Any, dbname: str) -> tuple[Tenant, dict[str, Any]]:
    row = registered(plpy, dbname)
    if row["status"] != 2:
        raise AdmmgtError(
            f'"{dbname}" is registered but not created (status {row["status"]})',
            hint="CALL admmgt.create_database(); first.",
        )
    tenant = Tenant.of(row)
    return tenant, row


def _on_template(plpy: Any, up_to: int | None = None) -> list[int]:
    """Ids of the scripts applied to the template (and not rolled back), in order."""
    return [
        r["id"]
        for r in plpy.execute(
            plpy.prepare(
                """SELECT id FROM admmgt.scripts WHERE applied_to_template_at IS NOT NULL
                   AND status IN (1, 2) AND id <= coalesce($1, id) ORDER BY id""",
                ["int4"],
            ),
            [up_to],
        )
    ]


def replayscripts(
    plpy: Any, *, separatedb: int, dbname: str, targetscriptid: int, raise_failure: bool = True
) -> None:
    """Bring one tenant (typically held back) to a script the template has."""
    check_mode(separatedb)
    settings = load_settings(plpy)
    take_operation_lock(plpy, "migrations", "replayScripts")
    tenant, row = _created_tenant(plpy, dbname)
    if row["istemplate"]:
        raise AdmmgtError(f'"{tenant.database}" is the template; replayScripts moves tenants')
    ids = _on_template(plpy, targetscriptid)
    if targetscriptid not in ids:
        raise AdmmgtError(
            f"script {targetscriptid} has not reached the template; a tenant can only be "
            "replayed to a script the template has",
            hint="CALL admmgt.applyScripts(); first, or pick one of: "
            + (", ".join(map(str, ids)) or "none yet"),
        )
    chain = load_applied(plpy, ids, "replayScripts")
    if row["updateflag"]:
        plpy.notice(
            f"{tenant.database} has updateflag = true: applyScripts would also bring it "
            "to the template's version"
        )
    sync = SyncPlan.for_tenants(plpy, _sync.schemas_expression(settings.sync_schemas), ids)
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    recorder = RunRecorder(
        plpy, dblink, clusters, "replayScripts", {"dbname": dbname, "target": targetscriptid}
    )
    words = {"ok": "replayed", "noop": "already there"}
    try:
        _single(
            plpy,
            dblink,
            tenant,
            _migrate(tenant, chain, settings, clusters, recorder.run_id, sync),
            recorder,
            targetscriptid,
        )
    except BaseException:
        plpy.notice(recorder.finish(words))
        raise
    end_run(plpy, recorder, words, raise_failure=raise_failure)


def _rollback_of(plpy: Any, script_id: int) -> tuple[Script, tuple[Step, ...], bool]:
    """The script to undo, its undo steps, and whether they are hand-written;
    refuses a script that is not the template's latest or cannot be undone,
    unless an earlier rollback of it got past the template and is to be finished."""
    ids = _on_template(plpy)
    if (not ids or ids[-1] != script_id) and not _unfinished_rollback(plpy, script_id, ids):
        if script_id in ids:
            raise AdmmgtError(
                f"script {script_id} is not the latest script applied to the template "
                f"({ids[-1]}); roll back the later ones first",
                hint="Scripts are undone newest first.",
            )
        raise AdmmgtError(
            f"script {script_id} is not applied to the template (the latest there is "
            f"{ids[-1] if ids else 'none'}) and no tenant is left at it; nothing to roll back",
            hint="SELECT dbname, scriptversion FROM admmgt.fleet_status; shows each "
            "database's version.",
        )
    (script,) = load_applied(plpy, [script_id], "rollbackScript")  # must match the databases
    handwritten = [
        dict(r)
        for r in plpy.execute(
            plpy.prepare(
                """SELECT id, sqltext FROM admmgt.script_rollback_steps
           WHERE scriptid = $1 AND status <> 0 ORDER BY steporder, id""",
                ["int4"],
            ),
            [script_id],
        )
    ]
    try:
        undo = rollback_steps(script.compiled, handwritten)
    except MetadataError as exc:
        raise AdmmgtError(f"rollbackScript refused: {exc.message}", hint=exc.hint) from None
    return script, undo, bool(handwritten)


def _at_stake(
    plpy: Any,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    targets: list[Tenant],
    stakes: list[_preflight.AtStake],
) -> list[tuple[Tenant, Outcome]]:
    """Count, in every database a rollback would touch, the rows its drops would take."""
    found: list[tuple[Tenant, Outcome]] = []
    if not stakes or not targets:
        return found
    Fanout(
        dblink,
        settings.max_parallel,
        0,
        lambda t, o, _ms: found.append((t, o)),
        clusters,
    ).run(
        targets,
        lambda t: _preflight.count_at_stake(
            clusters.conninfo(t.cluster, t.database), t.database, stakes
        ),
    )
    return found


def plan_rollback(plpy: Any, script_id: int) -> list[dict[str, Any]]:
    """What rollbackScript(script_id) would run, and per database the rows it would drop."""
    settings = load_settings(plpy)
    _, undo, _ = _rollback_of(plpy, script_id)
    stakes = _preflight.data_at_stake(undo)
    targets = templates(plpy) + updating_tenants(plpy, at=script_id)
    counted = _at_stake(plpy, Dblink(plpy), Clusters(plpy), settings, targets, stakes)
    by_step = {x.step: x for x in stakes}
    rows: list[dict[str, Any]] = []
    for number, step in enumerate(undo, 1):
        stake = by_step.get(number)
        row = {"step": number, "statement": step.sql, "drops": stake.what if stake else None}
        if stake is None:
            rows.append({**row, "dbname": None, "cluster_name": None, "rows_at_stake": None})
            continue
        for tenant, outcome in counted:
            n = outcome.details.get("counts", {}).get(stake.what)
            rows.append(
                {
                    **row,
                    "dbname": tenant.database,
                    "cluster_name": tenant.cluster,
                    "rows_at_stake": n,
                    "error": None if outcome.outcome in ("ok", "noop") else outcome.message,
                }
            )
    for r in rows:
        r.setdefault("error", None)
    return rows


def _refuse_data_loss(
    plpy: Any,
    script_id: int,
    counted: list[tuple[Tenant, Outcome]],
) -> None:
    """Stop a rollback, before anything changed, that would drop rows (or cannot tell).

    A database of an unreachable cluster is not counted: this run cannot touch
    it either, and the call that finishes the rollback there counts it then."""
    held = [(t, o) for t, o in counted if o.outcome in ("ok", "failed")]
    if not held:
        return
    lines = [
        f"{t.label}: "
        + (o.message if o.outcome == "ok" else f"could not count the rows ({o.message})")
        for t, o in held[:20]
    ] + ([f"... and {len(held) - 20} more"] if len(held) > 20 else [])
    raise AdmmgtError(
        f"rollbackScript({script_id}) refused: it would drop data in {len(held)} "
        "database(s); nothing was changed:\n  " + "\n  ".join(lines),
        hint=f"Every row: SELECT * FROM admmgt.plan_rollback({script_id}); to drop them, "
        f"CALL admmgt.rollbackScript({script_id}, t_drop_data => true);",
    )


def rollbackscript(
    plpy: Any, *, script_id: int, drop_data: bool = False, raise_failure: bool = True
) -> None:
    """Undo the latest script: template first, then every updating tenant at it.

    Before anything changes, the rows its drops would take are counted in every
    database it would touch; any row stops it unless ``drop_data``. Without
    ``drop_data`` each database's transaction checks again before its drops
    (rows written meanwhile fail that database, not the data).

    Called again after a rollback of the same script that was interrupted (or
    failed on some tenants) once the template was done, it finishes it: the
    template and the databases already undone are no-ops, the rest are undone.
    """
    settings = load_settings(plpy)
    take_operation_lock(plpy, "migrations", "rollbackScript")
    template, *copies = templates(plpy)
    script, undo, handwritten = _rollback_of(plpy, script_id)
    if handwritten and not caller_is_superuser(plpy):
        raise AdmmgtError(
            f"rollbackScript({script_id}) refused: its hand-written rollback steps are raw SQL, "
            "which runs as superuser, and the caller is not a superuser; nothing was changed",
            hint="A superuser must run it, after reading admmgt.plan_rollback("
            f"{script_id}) (docs/security.md).",
        )
    stakes = _preflight.data_at_stake(undo)
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    if stakes and not drop_data:
        # Finishing an earlier rollback: the template no longer has the tables;
        # the guards below still protect any copy that does.
        finishing = script_id not in _on_template(plpy)
        targets = [] if finishing else [template, *copies]
        targets += updating_tenants(plpy, at=script_id)
        _refuse_data_loss(
            plpy, script_id, _at_stake(plpy, dblink, clusters, settings, targets, stakes)
        )
        undo = _preflight.guards(stakes, script_id) + undo
    restore = SyncPlan.for_tenants(
        plpy, _sync.schemas_expression(settings.sync_schemas), [script_id]
    )
    recorder = RunRecorder(
        plpy, dblink, clusters, "rollbackScript", {"script": script_id, "drop_data": drop_data}
    )
    words = {"ok": "rolled back", "noop": "not at that script"}
    try:
        first = _single(
            plpy,
            dblink,
            template,
            _undo(template, script, undo, restore, settings, clusters, recorder.run_id, "template"),
            recorder,
            script_id,
        )
        if first.outcome == "failed":
            plpy.notice(
                f"rollbackScript: the template failed; no tenant was touched and script "
                f"{script_id} stays applied"
            )
            raise _Stop
        undo_job = partial(
            _undo,
            script=script,
            undo=undo,
            restore=restore,
            settings=settings,
            clusters=clusters,
            run_id=recorder.run_id,
        )
        # The other clusters' templates next (one per cluster); a cluster's
        # tenants follow only once its template no longer has the script.
        on_copy = _progress(plpy, recorder, len(copies), scriptid=script_id, who="template ")
        undone: dict[str, Outcome] = {}

        def copy_done(copy: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
            undone[copy.cluster] = outcome
            on_copy(copy, outcome, elapsed_ms)

        Fanout(dblink, 1, 0, copy_done, clusters).run(copies, partial(undo_job, who="template"))
        stuck = sorted(c for c, o in undone.items() if o.outcome not in ("ok", "noop"))
        if not stuck:
            recorder.execute(
                "UPDATE admmgt.scripts SET status = 0, checksum = NULL, metadata_checksum = NULL,"
                " applied_rows = NULL,"
                f" applied_to_template_at = NULL, last_error = 'rolled back by run "
                f"{recorder.run_id}' WHERE id = {script_id}"
            )
        else:
            plpy.notice(
                f"rollbackScript: the template on cluster(s) {', '.join(stuck)} still has script "
                f"{script_id}, so it stays applied there and their tenants are not touched; "
                f"fix them and call rollbackScript({script_id}) again (before any applyScripts)"
            )
        tenants = updating_tenants(plpy, at=script_id)
        on_done = _progress(plpy, recorder, len(tenants), scriptid=script_id)

        def job(tenant: Tenant) -> Job:
            if tenant.cluster in stuck:
                return _skip(
                    f'held back: the template on cluster "{tenant.cluster}" still has script '
                    f"{script_id}; once it is undone there, call rollbackScript({script_id}) again"
                )
            return undo_job(tenant)

        Fanout(dblink, settings.max_parallel, settings.failure_limit, on_done, clusters).run(
            tenants, job
        )
    except _Stop:
        pass
    except BaseException:
        plpy.notice(recorder.finish(words, TEMPLATE_INCLUDED))
        raise
    end_run(plpy, recorder, words, raise_failure=raise_failure, counted=TEMPLATE_INCLUDED)


class _Stop(Exception):
    """The run ends early; what it did is recorded and end_run reports it."""


def _unfinished_rollback(plpy: Any, script_id: int, on_template: list[int]) -> bool:
    """True when a rollback of ``script_id`` got past the template (the script is
    back to status 0 there) but updating tenants are still at it (or its run was
    interrupted), and nothing later reached the template since: calling
    rollbackScript again finishes it."""
    if on_template and on_template[-1] > script_id:
        return False
    row = plpy.execute(
        plpy.prepare(
            """SELECT s.status = 0 AND s.applied_to_template_at IS NULL
                  AND EXISTS (SELECT FROM admmgt.runs AS r
                              WHERE r.operation = 'rollbackScript'
                                AND r.arguments ->> 'script' = s.id::text)
                  AND (EXISTS (SELECT FROM admmgt.vendor_db_settings AS v
                               WHERE NOT v.deleted AND NOT v.istemplate AND v.status = 2
                                 AND v.updateflag AND v.scriptversion = s.id)
                       OR EXISTS (SELECT FROM admmgt.unfinished_runs AS u
                                  WHERE u.operation = 'rollbackScript' AND u.state = 'interrupted'
                                    AND u.arguments ->> 'script' = s.id::text)) AS unfinished
               FROM admmgt.scripts AS s WHERE s.id = $1""",
            ["int4"],
        ),
        [script_id],
    )
    if not row or not row[0]["unfinished"]:
        return False
    plpy.notice(
        f"rollbackScript: finishing the earlier rollback of script {script_id}: the template "
        "no longer has it, some tenants still do"
    )
    return True


def _undo(
    target: Tenant,
    script: Script,
    undo: tuple[Step, ...],
    restore: SyncPlan,
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    who: str = "tenant",
) -> Job:
    """Undo the script on one database, with the routines and views it had before."""
    conn = yield Connect(clusters.conninfo(target.cluster, target.database))
    try:
        state = yield from _read_history(conn)
    except RemoteError as exc:
        return (yield from _history_unread(target, who, conn, exc))
    have = _have(state)
    if not have or have[-1] != script.id:
        latest = have[-1] if have else "none"
        return Outcome(
            "noop",
            f"its latest script is {latest}, not {script.id}; nothing to undo",
            details={"version": _version(state)},
        )

    def body(position: list[int]) -> Any:
        for index, step in enumerate(undo, 1):
            position[0] = index
            yield Run(conn, step.sql)
        position[0] = 0
        yield from _follow_template(conn, restore, script.id, True)
        yield Run(conn, _history_insert(script, "rollback", run_id))

    try:
        yield from _in_transaction(conn, settings, undo, body)
    except _StepFailed as failure:
        return _failure(target, who, script, failure, state, doing="its rollback")
    state[script.id] = "rollback"
    return Outcome(
        "ok",
        f"script {script.id} rolled back",
        details={
            "rolled_back": script.id,
            "version": _version(state),
            "statements": [s.sql for s in undo if s.kind != "guard"],
        },
        private={"executed": [(script.id, s.sql) for s in undo if s.kind != "guard"]},
    )
