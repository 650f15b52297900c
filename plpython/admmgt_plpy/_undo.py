"""rollbackScript and plan_rollback: undo the latest script, templates first.

The undo steps come from admmgt_plpy._rollback (pure); here they are counted
(rows a drop would take), guarded, and run: the template database, then the
template schema, then the other clusters' templates (of both modes), then
every updating tenant at that script, database tenants before schema tenants.
A schema tenant (or template schema) gets the undo of the script compiled for
its own schema (Script.for_schema), in its host database under its own
search_path (_migration.schema_session), with the history row in its own
history table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    name_of,
    schema_session,
    step_failure,
)
from admmgt_plpy._recording import TEMPLATE_INCLUDED, progress, single, skip
from admmgt_plpy._registry import (
    DATABASE_MODE,
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
from admmgt_plpy._search_path import names_schema
from admmgt_plpy._settings import Settings, load_settings
from admmgt_plpy._types import APPLIED, Fragment, Plpy


def _rollback_of(
    plpy: Plpy, script_id: int
) -> tuple[Script, tuple[Step, ...], list[dict[str, Any]]]:
    """The script to undo, its undo steps (as a database runs them), and its
    hand-written rollback rows (none: the steps are the generated inverse);
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
    return script, undo, handwritten


@dataclass
class _Undo:
    """The undo of one script, as each place runs it: a database the steps of
    the script as compiled; a schema tenant (or template schema) those of the
    script compiled for its own schema (the template schema mapped to it), or
    the hand-written steps as written, under its own search_path."""

    script: Script
    undo: tuple[Step, ...]  # a database's
    handwritten: list[dict[str, Any]]
    template_schema: str | None = None  # the home template schema's name
    guarded: bool = False  # each place checks before its drops that they take no rows
    _by_schema: dict[str, tuple[Step, ...]] = field(default_factory=dict)

    def for_schema(self, schema: str) -> tuple[Step, ...]:
        """The undo steps in ``schema``; MetadataError when the script cannot
        be compiled for it (it names a schema other than the template's)."""
        found = self._by_schema.get(schema)
        if found is None:
            mapped = self.script.for_schema(self.template_schema or schema, schema)
            found = rollback_steps(mapped.compiled, self.handwritten)
            self._by_schema[schema] = found
        return found

    def steps(self, target: Tenant) -> tuple[Step, ...]:
        """``target``'s undo steps, without guards."""
        return self.for_schema(target.database) if target.is_schema else self.undo

    def stakes(self, target: Tenant) -> list[_preflight.AtStake]:
        """What ``target``'s drops would take (none when its undo cannot be compiled:
        its own job then fails without touching it)."""
        try:
            return _preflight.data_at_stake(self.steps(target))
        except MetadataError:
            return []

    def to_run(self, target: Tenant) -> tuple[Step, ...]:
        """``target``'s undo steps, after the guards when the run has any."""
        steps = self.steps(target)
        if self.guarded:
            steps = _preflight.guards(_preflight.data_at_stake(steps), self.script.id) + steps
        return steps


def _templates_of_both(plpy: Plpy) -> tuple[list[Tenant], list[Tenant]]:
    """The created templates of each mode, home first: template databases and
    template schemas (a fleet may have either or both; none at all is refused)."""
    rows = plpy.execute(
        "SELECT DISTINCT separatedb FROM admmgt.vendor_db_settings"
        f" WHERE istemplate AND status = {APPLIED} AND NOT deleted"
    )
    modes = {r["separatedb"] for r in rows}
    if not modes:
        templates(plpy)  # raises: no template is registered
    dbs = templates(plpy, DATABASE_MODE) if DATABASE_MODE in modes else []
    schemas = templates(plpy, SCHEMA_MODE) if SCHEMA_MODE in modes else []
    return dbs, schemas


def _schema_rows_at(plpy: Plpy, script_id: int) -> int:
    """How many schema tenants and template schemas the registry shows with the script."""
    row = plpy.execute(
        plpy.prepare(
            f"""SELECT count(*) AS n FROM admmgt.vendor_db_settings
               WHERE separatedb = {SCHEMA_MODE} AND NOT deleted AND status = {APPLIED}
                 AND coalesce(scriptversion, 0) >= $1""",
            ["int4"],
        ),
        [script_id],
    )[0]
    return int(row["n"])


def _check_schema_undo(plpy: Plpy, undo: _Undo) -> None:
    """Refuse, before anything changes, an undo that schema tenants having the
    script could not run: the script no longer compiles for the template
    schema, or a hand-written rollback step names the template schema (each
    schema runs it under its own search_path), or no template schema is
    registered to compile it from."""
    script_id = undo.script.id
    if not _schema_rows_at(plpy, script_id):
        return
    template = undo.template_schema
    if template is None:
        templates(plpy, SCHEMA_MODE)  # raises: schema tenants have it, no template schema
        return
    try:
        undo.for_schema(template)
    except MetadataError as exc:
        raise AdmmgtError(
            f"rollbackScript({script_id}) refused: the script cannot be compiled for the "
            f'template schema "{template}" ({exc.message}); nothing was changed',
            hint="Fix the script's rows (admmgt.validate_scripts() lists what changed), then "
            f"CALL admmgt.rollbackScript({script_id}); again.",
        ) from None
    for row in undo.handwritten:
        found = names_schema(str(row["sqltext"]), template)
        if found is not None:
            raise AdmmgtError(
                f"rollbackScript({script_id}) refused: script_rollback_steps row {row['id']} "
                f'names the template schema "{template}" ({found}), and schema tenants run it '
                "with search_path set to their own schema; nothing was changed",
                hint=f"Write it with bare names (UPDATE admmgt.script_rollback_steps SET "
                f"sqltext = ... WHERE id = {row['id']};), then CALL "
                f"admmgt.rollbackScript({script_id}); again.",
            )


def _at_stake(
    plpy: Plpy,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    targets: list[Tenant],
    undo: _Undo,
) -> list[tuple[Tenant, Outcome]]:
    """Count, in every database and schema a rollback would touch, the rows its
    drops would take."""
    found: list[tuple[Tenant, Outcome]] = []
    targets = [t for t in targets if undo.stakes(t) and not (t.is_schema and t.host is None)]
    if not targets:
        return found
    Fanout.over_fleet(
        dblink, settings, lambda t, o, _ms: found.append((t, o)), clusters, stop_early=False
    ).run(targets, partial(_count, clusters, undo))
    return found


def _count(clusters: Clusters, undo: _Undo, target: Tenant) -> Job:
    """Job: the rows ``target``'s drops would take. A database: its own
    connection (_preflight.count_at_stake). A schema: the fan-out's shared
    connection to its host (schema_session, as its undo job), read-only, the
    same counts ({what: rows} in details)."""
    stakes = undo.stakes(target)
    if not target.is_schema:
        return (
            yield from _preflight.count_at_stake(
                place_conninfo(clusters, target.place), target.database, stakes
            )
        )
    conn = yield from schema_session(clusters, target)
    return (yield from _preflight.counts_on(conn, target.label, stakes))


def plan_rollback(plpy: Plpy, script_id: int) -> list[dict[str, Any]]:
    """What rollbackScript(script_id) would run, and per database (or schema)
    the rows it would drop. A schema tenant's statements name its own schema:
    the statement of each row is the one that place runs."""
    settings = load_settings(plpy)
    dbs, schemas = _templates_of_both(plpy)
    script, base, handwritten = _rollback_of(plpy, script_id)
    undo = _Undo(script, base, handwritten, schemas[0].database if schemas else None)
    targets = dbs + schemas + updating_tenants(plpy, at=script_id, mode=None)
    counted = _at_stake(plpy, Dblink(plpy), Clusters(plpy), settings, targets, undo)
    # The statements without a count: a database's, and (when it differs) the
    # template schema's, once each.
    groups: list[tuple[str, ...]] = []
    if dbs or not schemas:
        groups.append(tuple(s.sql for s in base))
    if schemas:
        try:
            mapped = tuple(s.sql for s in undo.for_schema(schemas[0].database))
        except MetadataError:
            mapped = ()
        if mapped and mapped not in groups:
            groups.append(mapped)
    stake_steps = {x.step: x for x in _preflight.data_at_stake(base)}
    rows: list[dict[str, Any]] = []
    for number in range(1, len(base) + 1):
        stake = stake_steps.get(number)
        if stake is None:
            for statements in groups:
                rows.append(
                    {
                        "step": number,
                        "statement": statements[number - 1],
                        "drops": None,
                        "dbname": None,
                        "cluster_name": None,
                        "rows_at_stake": None,
                        "error": None,
                    }
                )
            continue
        for tenant, outcome in counted:
            own = {x.step: x for x in undo.stakes(tenant)}.get(number)
            if own is None:
                continue
            n = outcome.details.get("counts", {}).get(own.what)
            rows.append(
                {
                    "step": number,
                    "statement": own.statement,
                    "drops": own.what,
                    "dbname": tenant.label if tenant.is_schema else tenant.database,
                    "cluster_name": tenant.cluster,
                    "rows_at_stake": n,
                    "error": None if outcome.outcome in ("ok", "noop") else outcome.message,
                }
            )
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
    schemas = sum(1 for t, _ in held if t.is_schema)
    where = f"{len(held) - schemas} database(s)"
    if schemas:
        where += f" and {schemas} schema(s)"
    raise AdmmgtError(
        f"rollbackScript({script_id}) refused: it would drop data in {where}; "
        "nothing was changed:\n  " + "\n  ".join(lines),
        hint=f"Every row: SELECT * FROM admmgt.plan_rollback({script_id}); to drop them, "
        f"CALL admmgt.rollbackScript({script_id}, t_drop_data => true);",
    )


def rollbackscript(
    plpy: Plpy, *, script_id: int, drop_data: bool = False, raise_failure: bool = True
) -> None:
    """Undo the latest script: templates first, then every updating tenant at it,
    database tenants and schema tenants alike.

    Before anything changes, the rows its drops would take are counted in every
    database and schema it would touch; any row stops it unless ``drop_data``.
    Without ``drop_data`` each place's transaction checks again before its drops
    (rows written meanwhile fail that place, not the data).

    Called again after a rollback of the same script that was interrupted (or
    failed on some tenants) once the templates were done, it finishes it: the
    templates and the places already undone are no-ops, the rest are undone.
    """
    with fleet_run(plpy, "rollbackScript", lock="migrations") as run:
        _rollback(plpy, run, script_id, drop_data, raise_failure)


def _kind(target: Tenant) -> str:
    return "template schema" if target.is_schema else "template"


def _rollback(
    plpy: Plpy, run: FleetRun, script_id: int, drop_data: bool, raise_failure: bool
) -> None:
    """rollbackScript inside its fleet run (settings read, lock taken).

    The order: the home template database, then the home template schema (a
    failure on either stops the run before any tenant; one already undone is
    a no-op when the call is repeated), then the other clusters' templates of
    both modes, then the updating tenants at the script, database tenants
    before schema tenants, ``max_parallel`` at a time. A cluster's tenants of
    a mode follow only once that mode's template there no longer has it."""
    settings = run.settings
    dbs, schemas = _templates_of_both(plpy)
    script, base, handwritten = _rollback_of(plpy, script_id)
    undo = _Undo(script, base, handwritten, schemas[0].database if schemas else None)
    _check_schema_undo(plpy, undo)
    if handwritten and not caller_is_superuser(plpy):
        raise AdmmgtError(
            f"rollbackScript({script_id}) refused: its hand-written rollback steps are raw SQL, "
            "which runs as superuser, and the caller is not a superuser; nothing was changed",
            hint="A superuser must run it, after reading admmgt.plan_rollback("
            f"{script_id}) (docs/security.md).",
        )
    homes = [group[0] for group in (dbs, schemas) if group]
    copies = dbs[1:] + schemas[1:]
    dblink, clusters = run.dblink, run.clusters
    if _preflight.data_at_stake(base) and not drop_data:
        # Finishing an earlier rollback: the templates no longer have the tables;
        # the guards below still protect any copy that does.
        finishing = script_id not in on_template(plpy)
        targets = [] if finishing else homes + copies
        targets += updating_tenants(plpy, at=script_id, mode=None)
        _refuse_data_loss(
            plpy, script_id, _at_stake(plpy, dblink, clusters, settings, targets, undo)
        )
        undo.guarded = True
    restore = _sync.SyncPlan.for_tenants(
        plpy, _sync.schemas_expression(settings.sync_schemas), [script_id]
    )
    words = {"ok": "rolled back", "noop": "not at that script"}
    recorder = run.start(
        {"script": script_id, "drop_data": drop_data}, words=words, counted=TEMPLATE_INCLUDED
    )
    undo_job = partial(
        _undo_one,
        undo=undo,
        restore=restore,
        settings=settings,
        clusters=clusters,
        run_id=recorder.run_id,
    )
    try:
        done: list[Tenant] = []
        for home in homes:
            label = f"template {home.label}" if home.is_schema else None
            first = single(
                plpy, dblink, home, undo_job(home, who="template"), recorder, script_id, label
            )
            if first.outcome == "failed":
                also = (
                    f" (the {_kind(done[0])} {done[0].label} is undone already: call "
                    f"rollbackScript({script_id}) again once this is fixed, before any "
                    "applyScripts)"
                    if done
                    else ""
                )
                plpy.notice(
                    f"rollbackScript: the {_kind(home)} failed; no tenant was touched and "
                    f"script {script_id} stays applied{also}"
                )
                raise _Stop
            done.append(home)
        # The other clusters' templates next (one per cluster and mode); a
        # cluster's tenants follow only once its template no longer has the script.
        on_copy = progress(plpy, recorder, len(copies), scriptid=script_id, who="template ")
        undone: dict[tuple[bool, str], Outcome] = {}

        def copy_done(copy: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
            undone[(copy.is_schema, copy.cluster)] = outcome
            on_copy(copy, outcome, elapsed_ms)

        Fanout(dblink, 1, 0, copy_done, clusters).run(copies, partial(undo_job, who="template"))
        stuck = sorted(k for k, o in undone.items() if o.outcome not in ("ok", "noop"))
        if not stuck:
            recorder.execute(
                "UPDATE admmgt.scripts SET status = 0, checksum = NULL, metadata_checksum = NULL,"
                " applied_rows = NULL,"
                f" applied_to_template_at = NULL, last_error = 'rolled back by run "
                f"{recorder.run_id}' WHERE id = {script_id}"
            )
        else:
            names = ", ".join(
                f"{cluster}{' (template schema)' if is_schema else ''}"
                for is_schema, cluster in stuck
            )
            plpy.notice(
                f"rollbackScript: the template on cluster(s) {names} still has script "
                f"{script_id}, so it stays applied there and their tenants are not touched; "
                f"fix them and call rollbackScript({script_id}) again (before any applyScripts)"
            )
        # Database tenants first, then schema tenants (registry order in each).
        tenants = sorted(updating_tenants(plpy, at=script_id, mode=None), key=lambda t: t.is_schema)
        on_done = progress(plpy, recorder, len(tenants), scriptid=script_id)

        def job(tenant: Tenant) -> Job:
            if (tenant.is_schema, tenant.cluster) in stuck:
                return skip(
                    f'held back: the {_kind(tenant)} on cluster "{tenant.cluster}" still has '
                    f"script {script_id}; once it is undone there, call "
                    f"rollbackScript({script_id}) again"
                )
            return undo_job(tenant)

        Fanout.over_fleet(dblink, settings, on_done, clusters).run(tenants, job)
    except _Stop:
        pass
    except BaseException:
        plpy.notice(run.finish())
        raise
    run.end(raise_failure=raise_failure)


class _Stop(Exception):
    """The run ends early; what it did is recorded and run.end reports it."""


def _unfinished_rollback(plpy: Plpy, script_id: int, on_template: list[int]) -> bool:
    """True when a rollback of ``script_id`` got past the templates (the script
    is back to status 0) but updating tenants of either mode are still at it
    (or its run was interrupted), and nothing later reached a template since:
    calling rollbackScript again finishes it."""
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
    undo: _Undo,
    restore: _sync.SyncPlan,
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    who: str = "tenant",
) -> Job:
    """Undo the script on one database, with the routines and views it had
    before; or on one schema tenant (or template schema): its own undo steps
    and history, in its host database under its search_path (routines and
    views do not follow the template around scripts for schema tenants)."""
    script = undo.script
    table = target.history_table
    if target.is_schema:
        if target.host is None:
            return Outcome(
                "failed",
                f'{who} "{name_of(target)}": cluster "{target.cluster}" has no host database for '
                "schema tenants (admmgt.schema_hosts); register it, then re-run",
            )
        conn = yield from schema_session(clusters, target)
        sync = _sync.SyncPlan(restore.schemas)
    else:
        conn = yield Connect(place_conninfo(clusters, target.place))
        sync = restore
    try:
        _, state = yield from _history.read_state(conn, table)
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
    try:
        steps = undo.to_run(target)
    except MetadataError as exc:
        return Outcome(
            "failed",
            f'{who} "{name_of(target)}": script {script.id} cannot be compiled for its schema '
            f"({exc.message}); nothing was undone; fix the script's rows",
            details={"script": script.id, "step": 0, "version": _history.version_of(state)},
        )

    def body(position: list[int]) -> Fragment:
        for index, step in enumerate(steps, 1):
            position[0] = index
            yield Run(conn, step.sql)
        position[0] = 0
        yield from _sync.follow_template(conn, sync, script.id, True)
        yield Run(conn, history_insert(script, "rollback", run_id, table))

    try:
        yield from in_step_transaction(conn, settings, steps, body)
    except StepFailed as failure:
        return step_failure(target, who, script, failure, state, doing="its rollback")
    state[script.id] = "rollback"
    done = Outcome(
        "ok",
        f"script {script.id} rolled back",
        details={
            "rolled_back": script.id,
            "version": _history.version_of(state),
            "statements": [s.sql for s in steps if s.kind != "guard"],
        },
    )
    executed = tuple((script.id, s.sql) for s in steps if s.kind != "guard")
    return carrying(done, Migrated(tuple(_history.have(state)), executed))
