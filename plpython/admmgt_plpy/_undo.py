"""rollbackScript and plan_rollback: undo the latest script, template first.

The undo steps come from admmgt_plpy._rollback (pure); here they are counted
(rows a drop would take), guarded, and run: the template, then the other
clusters' templates, then every updating tenant at that script.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from admmgt_plpy import _history, _preflight, _sync
from admmgt_plpy._compile import Step
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._fleetrun import FleetRun, fleet_run
from admmgt_plpy._migration import (
    Migrated,
    StepFailed,
    carrying,
    history_insert,
    history_unread,
    in_step_transaction,
    step_failure,
)
from admmgt_plpy._recording import TEMPLATE_INCLUDED, progress, single, skip
from admmgt_plpy._registry import (
    SCHEMA_MODE,
    Tenant,
    place_conninfo,
    templates,
    updating_sql,
    updating_tenants,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run
from admmgt_plpy._rollback import rollback_steps
from admmgt_plpy._rollout_checks import caller_is_superuser
from admmgt_plpy._scripts import Script, load_applied, on_template
from admmgt_plpy._settings import Settings, load_settings
from admmgt_plpy._types import APPLIED, Fragment, Plpy


def _rollback_of(plpy: Plpy, script_id: int) -> tuple[Script, tuple[Step, ...], bool]:
    """The script to undo, its undo steps, and whether they are hand-written;
    refuses a script that is not the template's latest or cannot be undone,
    unless an earlier rollback of it got past the template and is to be finished."""
    ids = on_template(plpy)
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
    plpy: Plpy,
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
        lambda t: _preflight.count_at_stake(place_conninfo(clusters, t.place), t.database, stakes),
    )
    return found


def plan_rollback(plpy: Plpy, script_id: int) -> list[dict[str, Any]]:
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
    plpy: Plpy,
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
    plpy: Plpy, *, script_id: int, drop_data: bool = False, raise_failure: bool = True
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
    with fleet_run(plpy, "rollbackScript", lock="migrations") as run:
        _rollback(plpy, run, script_id, drop_data, raise_failure)


def _rollback(
    plpy: Plpy, run: FleetRun, script_id: int, drop_data: bool, raise_failure: bool
) -> None:
    """rollbackScript inside its fleet run (settings read, lock taken)."""
    settings = run.settings
    template, *copies = templates(plpy)
    script, undo, handwritten = _rollback_of(plpy, script_id)
    _refuse_schema_tenants(plpy, script_id)
    if handwritten and not caller_is_superuser(plpy):
        raise AdmmgtError(
            f"rollbackScript({script_id}) refused: its hand-written rollback steps are raw SQL, "
            "which runs as superuser, and the caller is not a superuser; nothing was changed",
            hint="A superuser must run it, after reading admmgt.plan_rollback("
            f"{script_id}) (docs/security.md).",
        )
    stakes = _preflight.data_at_stake(undo)
    dblink, clusters = run.dblink, run.clusters
    if stakes and not drop_data:
        # Finishing an earlier rollback: the template no longer has the tables;
        # the guards below still protect any copy that does.
        finishing = script_id not in on_template(plpy)
        targets = [] if finishing else [template, *copies]
        targets += updating_tenants(plpy, at=script_id)
        _refuse_data_loss(
            plpy, script_id, _at_stake(plpy, dblink, clusters, settings, targets, stakes)
        )
        undo = _preflight.guards(stakes, script_id) + undo
    restore = _sync.SyncPlan.for_tenants(
        plpy, _sync.schemas_expression(settings.sync_schemas), [script_id]
    )
    words = {"ok": "rolled back", "noop": "not at that script"}
    recorder = run.start(
        {"script": script_id, "drop_data": drop_data}, words=words, counted=TEMPLATE_INCLUDED
    )
    try:
        first = single(
            plpy,
            dblink,
            template,
            _undo_one(
                template, script, undo, restore, settings, clusters, recorder.run_id, "template"
            ),
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
            _undo_one,
            script=script,
            undo=undo,
            restore=restore,
            settings=settings,
            clusters=clusters,
            run_id=recorder.run_id,
        )
        # The other clusters' templates next (one per cluster); a cluster's
        # tenants follow only once its template no longer has the script.
        on_copy = progress(plpy, recorder, len(copies), scriptid=script_id, who="template ")
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
        on_done = progress(plpy, recorder, len(tenants), scriptid=script_id)

        def job(tenant: Tenant) -> Job:
            if tenant.cluster in stuck:
                return skip(
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
        plpy.notice(run.finish())
        raise
    run.end(raise_failure=raise_failure)


class _Stop(Exception):
    """The run ends early; what it did is recorded and run.end reports it."""


def _refuse_schema_tenants(plpy: Plpy, script_id: int) -> None:
    """rollbackScript undoes database tenants only (it takes no t_separatedb):
    refused, before anything changes, when a schema tenant or template schema
    has the script, rather than leaving the two modes at different versions."""
    row = plpy.execute(
        plpy.prepare(
            f"""SELECT count(*) AS n, min(dbname) AS first FROM admmgt.vendor_db_settings
               WHERE separatedb = {SCHEMA_MODE} AND NOT deleted AND status = {APPLIED}
                 AND coalesce(scriptversion, 0) >= $1""",
            ["int4"],
        ),
        [script_id],
    )[0]
    if row["n"]:
        raise AdmmgtError(
            f"rollbackScript({script_id}) refused: {row['n']} schema tenant(s) or template "
            f'schema(s) have it (e.g. "{row["first"]}"), and rollbackScript does not undo '
            "schema tenants yet; nothing was changed",
            hint="docs/schema-tenants.md, Scripts on schema tenants: make the undo a new "
            "script and apply it with applyScripts(1) and applyScripts(0).",
        )


def _unfinished_rollback(plpy: Plpy, script_id: int, on_template: list[int]) -> bool:
    """True when a rollback of ``script_id`` got past the template (the script is
    back to status 0 there) but updating tenants are still at it (or its run was
    interrupted), and nothing later reached the template since: calling
    rollbackScript again finishes it."""
    if on_template and on_template[-1] > script_id:
        return False
    row = plpy.execute(
        plpy.prepare(
            f"""SELECT s.status = 0 AND s.applied_to_template_at IS NULL
                  AND EXISTS (SELECT FROM admmgt.runs AS r
                              WHERE r.operation = 'rollbackScript'
                                AND r.arguments ->> 'script' = s.id::text)
                  AND (EXISTS (SELECT FROM admmgt.vendor_db_settings AS v
                               WHERE {updating_sql("v")} AND v.scriptversion = s.id)
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


def _undo_one(
    target: Tenant,
    script: Script,
    undo: tuple[Step, ...],
    restore: _sync.SyncPlan,
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    who: str = "tenant",
) -> Job:
    """Undo the script on one database, with the routines and views it had before."""
    conn = yield Connect(place_conninfo(clusters, target.place))
    try:
        _, state = yield from _history.read_state(conn)
    except RemoteError as exc:
        return (yield from history_unread(target, who, conn, exc))
    have = _history.have(state)
    if not have or have[-1] != script.id:
        latest = have[-1] if have else "none"
        return Outcome(
            "noop",
            f"its latest script is {latest}, not {script.id}; nothing to undo",
            details={"version": _history.version_of(state)},
        )

    def body(position: list[int]) -> Fragment:
        for index, step in enumerate(undo, 1):
            position[0] = index
            yield Run(conn, step.sql)
        position[0] = 0
        yield from _sync.follow_template(conn, restore, script.id, True)
        yield Run(conn, history_insert(script, "rollback", run_id))

    try:
        yield from in_step_transaction(conn, settings, undo, body)
    except StepFailed as failure:
        return step_failure(target, who, script, failure, state, doing="its rollback")
    state[script.id] = "rollback"
    done = Outcome(
        "ok",
        f"script {script.id} rolled back",
        details={
            "rolled_back": script.id,
            "version": _history.version_of(state),
            "statements": [s.sql for s in undo if s.kind != "guard"],
        },
    )
    executed = tuple((script.id, s.sql) for s in undo if s.kind != "guard")
    return carrying(done, Migrated(tuple(_history.have(state)), executed))
