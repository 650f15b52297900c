"""baseline and replayScripts: one database's history, recorded or caught up.

baseline records scripts a database already has without running them;
replayScripts brings one tenant (typically held back) to a script the
template has, with the routines and views the template had at each step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from admmgt_plpy import _history, _sync
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import FleetRun, fleet_run
from admmgt_plpy._migration import history_insert, migrate
from admmgt_plpy._names import quote_literal
from admmgt_plpy._recording import single
from admmgt_plpy._registry import (
    SCHEMA_MODE,
    Tenant,
    mode_of,
    place_conninfo,
    registered,
    registry_update,
    schema_host,
    templates,
)
from admmgt_plpy._remote import RemoteError
from admmgt_plpy._scripts import Script, load_applied, load_script, on_template
from admmgt_plpy._types import APPLIED, READY, Plpy


def baseline(plpy: Plpy, *, dbname: str, version: int) -> None:
    """Record that a database already is at ``version`` without running anything."""
    with fleet_run(plpy, "baseline", lock="migrations", read_settings=False) as run:
        target, new = _baseline(plpy, run, dbname, version)
    plpy.notice(
        f'baseline: "{target.database}" recorded at script {version} '
        f"({len(new)} script(s) marked as baseline, nothing run)"
    )


def _baseline(plpy: Plpy, run: FleetRun, dbname: str, version: int) -> tuple[Tenant, list[Script]]:
    """baseline inside its lock: the database and the scripts newly marked."""
    r = registered(plpy, dbname)
    target = Tenant.of(r)
    if target.is_schema:  # its registry row says so: its history is its schema's own
        target = replace(target, host=schema_host(plpy, target.cluster))
    table = target.history_table
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
    dblink = run.dblink
    with dblink.session(place_conninfo(run.clusters, target.place)) as conn:
        try:
            dblink.query(conn, "BEGIN")
            dblink.query(conn, _history.ensure_table_sql(table))
            have = _history.state_of(
                dblink.query(conn, _history.state_sql(table), _history.STATE_COLUMNS)
            )
            top = _history.version_of(have) or 0
            if top > version:
                raise AdmmgtError(
                    f'baseline of "{target.database}" to script {version} refused: its own '
                    f"history already has script {top}; a baseline records scripts a database "
                    "has and never moves it back; nothing was recorded",
                    hint=f"Baseline to {top} or higher, or undo later scripts with rollbackScript.",
                )
            new = [s for s in scripts if have.get(s.id) not in ("apply", "baseline")]
            for script in new:
                dblink.query(conn, history_insert(script, "baseline", 0, table))
            dblink.query(conn, "COMMIT")
        except RemoteError as exc:
            raise AdmmgtError(
                f'baseline of "{target.database}" failed ({exc.describe()}); nothing was recorded'
            ) from None
    plpy.execute(registry_update(target.id, status=APPLIED, scriptversion=version))
    return target, new


def _check_baseline_version(plpy: Plpy, target: Tenant, version: int) -> None:
    """A baseline names a script that exists and is ready or applied."""
    row = plpy.execute(
        plpy.prepare("SELECT status FROM admmgt.scripts WHERE id = $1", ["int4"]), [version]
    )
    if row and row[0]["status"] in (READY, APPLIED):
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


def _created_tenant(plpy: Plpy, dbname: str) -> tuple[Tenant, dict[str, Any]]:
    row = registered(plpy, dbname)
    if row["status"] != APPLIED:
        raise AdmmgtError(
            f'"{dbname}" is registered but not created (status {row["status"]})',
            hint="CALL admmgt.create_database(); first.",
        )
    tenant = Tenant.of(row)
    return tenant, row


def _check_mode(plpy: Plpy, tenant: Tenant, mode: int, target: int) -> str | None:
    """The tenant is of the mode the caller named; for a schema tenant, its
    cluster's template schema has script ``target``. Returns the template
    schema's name (None for a database tenant)."""
    if tenant.separatedb != mode:
        kind = "a schema tenant" if tenant.is_schema else "a database tenant"
        raise AdmmgtError(
            f'replayScripts: "{tenant.dbname}" is {kind}, and t_separatedb is {mode}; '
            "nothing was changed",
            hint=f"CALL admmgt.replayScripts({tenant.separatedb}, "
            f"{quote_literal(tenant.dbname)}, {target});",
        )
    if mode != SCHEMA_MODE:
        return None
    home = templates(plpy, SCHEMA_MODE)
    mine = next((t for t in home if t.cluster == tenant.cluster), home[0])
    if (mine.scriptversion or 0) < target:
        raise AdmmgtError(
            f'replayScripts: the template schema "{mine.label}" is at script '
            f"{mine.scriptversion or 'none'}, not {target}; a schema tenant can only be "
            "replayed to a script its template schema has; nothing was changed",
            hint="CALL admmgt.applyScripts(0); first.",
        )
    return home[0].database


def replayscripts(
    plpy: Plpy, *, separatedb: int, dbname: str, targetscriptid: int, raise_failure: bool = True
) -> None:
    """Bring one tenant (typically held back) to a script the template has;
    ``separatedb``: the tenant's mode (0: a schema tenant, brought to a script
    its cluster's template schema has)."""
    mode = mode_of(separatedb)
    with fleet_run(plpy, "replayScripts", lock="migrations") as run:
        _replay(plpy, run, dbname, targetscriptid, raise_failure, mode)


def _replay(
    plpy: Plpy,
    run: FleetRun,
    dbname: str,
    targetscriptid: int,
    raise_failure: bool,
    mode: int,
) -> None:
    settings = run.settings
    tenant, row = _created_tenant(plpy, dbname)
    if row["istemplate"]:
        raise AdmmgtError(f'"{tenant.database}" is the template; replayScripts moves tenants')
    template_schema = _check_mode(plpy, tenant, mode, targetscriptid)
    if template_schema is not None:
        tenant = replace(tenant, host=schema_host(plpy, tenant.cluster))
    ids = on_template(plpy, targetscriptid)
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
    schemas = _sync.schemas_expression(settings.sync_schemas)
    sync = (
        _sync.SyncPlan(schemas)  # schema tenants do not follow the template's routines
        if template_schema is not None
        else _sync.SyncPlan.for_tenants(plpy, schemas, ids)
    )
    dblink, clusters = run.dblink, run.clusters
    words = {"ok": "replayed", "noop": "already there"}
    recorder = run.start({"dbname": dbname, "target": targetscriptid}, words=words)
    try:
        single(
            plpy,
            dblink,
            tenant,
            migrate(
                tenant,
                chain,
                settings,
                clusters,
                recorder.run_id,
                sync,
                template_schema=template_schema,
            ),
            recorder,
            targetscriptid,
        )
    except BaseException:
        plpy.notice(run.finish())
        raise
    run.end(raise_failure=raise_failure)
