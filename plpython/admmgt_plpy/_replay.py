"""baseline and replayScripts: one database's history, recorded or caught up.

baseline records scripts a database already has without running them;
replayScripts brings one tenant (typically held back) to a script the
template has, with the routines and views the template had at each step.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy import _history, _sync
from admmgt_plpy._apply import SyncPlan, _history_insert, _migrate
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._locks import take_operation_lock
from admmgt_plpy._recording import single
from admmgt_plpy._registry import Tenant, check_mode, registered
from admmgt_plpy._remote import Clusters, Dblink, RemoteError
from admmgt_plpy._runguard import end_run
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._scripts import load_applied, load_script
from admmgt_plpy._settings import load_settings
from admmgt_plpy._types import APPLIED, READY, Plpy


def baseline(plpy: Plpy, *, dbname: str, version: int) -> None:
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


def on_template(plpy: Plpy, up_to: int | None = None) -> list[int]:
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
    plpy: Plpy, *, separatedb: int, dbname: str, targetscriptid: int, raise_failure: bool = True
) -> None:
    """Bring one tenant (typically held back) to a script the template has."""
    check_mode(separatedb)
    settings = load_settings(plpy)
    take_operation_lock(plpy, "migrations", "replayScripts")
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
    sync = SyncPlan.for_tenants(plpy, _sync.schemas_expression(settings.sync_schemas), ids)
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    recorder = RunRecorder(
        plpy, dblink, clusters, "replayScripts", {"dbname": dbname, "target": targetscriptid}
    )
    words = {"ok": "replayed", "noop": "already there"}
    try:
        single(
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
