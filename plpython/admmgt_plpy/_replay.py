"""baseline and replayScripts: one database's history, recorded or caught up.

baseline records scripts a database already has without running them;
replayScripts brings one tenant (typically held back) to a script the
template has, with the routines and views the template had at each step.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy import _history, _sync
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import FleetRun, fleet_run
from admmgt_plpy._migration import history_insert, migrate
from admmgt_plpy._recording import single
from admmgt_plpy._registry import Tenant, check_mode, place_conninfo, registered, registry_update
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
            dblink.query(conn, _history.ENSURE_TABLE)
            have = _history.state_of(dblink.query(conn, _history.STATE, _history.STATE_COLUMNS))
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
                dblink.query(conn, history_insert(script, "baseline", 0))
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


def replayscripts(
    plpy: Plpy, *, separatedb: int, dbname: str, targetscriptid: int, raise_failure: bool = True
) -> None:
    """Bring one tenant (typically held back) to a script the template has."""
    check_mode(separatedb, "replayScripts")
    with fleet_run(plpy, "replayScripts", lock="migrations") as run:
        _replay(plpy, run, dbname, targetscriptid, raise_failure)


def _replay(
    plpy: Plpy, run: FleetRun, dbname: str, targetscriptid: int, raise_failure: bool
) -> None:
    settings = run.settings
    tenant, row = _created_tenant(plpy, dbname)
    if row["istemplate"]:
        raise AdmmgtError(f'"{tenant.database}" is the template; replayScripts moves tenants')
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
    sync = _sync.SyncPlan.for_tenants(plpy, _sync.schemas_expression(settings.sync_schemas), ids)
    dblink, clusters = run.dblink, run.clusters
    words = {"ok": "replayed", "noop": "already there"}
    recorder = run.start({"dbname": dbname, "target": targetscriptid}, words=words)
    try:
        single(
            plpy,
            dblink,
            tenant,
            migrate(tenant, chain, settings, clusters, recorder.run_id, sync),
            recorder,
            targetscriptid,
        )
    except BaseException:
        plpy.notice(run.finish())
        raise
    run.end(raise_failure=raise_failure)
