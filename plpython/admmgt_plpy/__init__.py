"""admmgt's Python, run inside PostgreSQL by the admmgt.* procedures.

Standard library only: this runs on the server's own Python. Every entry point
takes ``plpy`` first; the SQL declarations in sql/idempotent/ are thin shims
that load this package (admmgt._load_code) and call one function here.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy import (
    _clock,
    _maintenance,
    _provision,
    _replay,
    _rollout,
    _rollout_checks,
    _sync,
    _undo,
)
from admmgt_plpy._entry import entry
from admmgt_plpy._runguard import failures_raised

__all__ = [
    "add_cluster",
    "applymaintenance",
    "applyscripts",
    "baseline",
    "check_rls",
    "create_database",
    "create_schema",
    "detect_drift",
    "drop_database",
    "drop_schema",
    "drop_script",
    "lifecyclemgt",
    "plan_rollback",
    "plan_script",
    "promote_tenant",
    "refresh_stored_procedures",
    "refresh_views",
    "repair_script",
    "replayscripts",
    "rollbackscript",
    "tenant_usage",
    "validate_scripts",
]


@entry
def add_cluster(plpy: Any, *, name: str, **given: Any) -> None:
    from admmgt_plpy import _clusters

    _clock.announce(plpy, "add_cluster")
    _clusters.add_cluster(plpy, name=name, given=given)


@entry
def create_database(plpy: Any, *, raise_failure: bool = True) -> None:
    with failures_raised(plpy, "create_database", raise_failure):
        _provision.create_database(plpy)


@entry
def create_schema(plpy: Any, *, roles: bool | None = None, raise_failure: bool = True) -> None:
    from admmgt_plpy import _schemas

    with failures_raised(plpy, "create_schema", raise_failure):
        _schemas.create_schema(plpy, roles=roles)


@entry
def drop_schema(plpy: Any, *, dbname: str, drop_role: bool = True) -> None:
    from admmgt_plpy import _schema_drop

    _schema_drop.drop_schema(plpy, dbname=dbname, drop_role=drop_role)


@entry
def drop_database(
    plpy: Any,
    *,
    dbname: str,
    mode: str,
    terminate: bool,
    archive_name: str | None,
    missing_ok: bool = False,
) -> None:
    _provision.drop_database(
        plpy,
        dbname=dbname,
        mode=mode,
        terminate=terminate,
        archive_name=archive_name,
        missing_ok=missing_ok,
    )


@entry
def applyscripts(
    plpy: Any, *, separatedb: int, dry_run: bool, execute: bool = False, raise_failure: bool = True
) -> None:
    _clock.announce(plpy, "applyScripts")
    _rollout.applyscripts(
        plpy, separatedb=separatedb, dry_run=dry_run, execute=execute, raise_failure=raise_failure
    )


@entry
def plan_script(plpy: Any, *, script_id: int) -> list[dict[str, Any]]:
    return _rollout_checks.plan_script(plpy, script_id)


@entry
def baseline(plpy: Any, *, dbname: str, version: int) -> None:
    _replay.baseline(plpy, dbname=dbname, version=version)


@entry
def applymaintenance(
    plpy: Any,
    *,
    separatedb: int,
    numdays: int,
    move_default_rows: bool = False,
    raise_failure: bool = True,
) -> None:
    with failures_raised(plpy, "applyMaintenance", raise_failure):
        _maintenance.applymaintenance(
            plpy, separatedb=separatedb, numdays=numdays, move_default_rows=move_default_rows
        )


@entry
def lifecyclemgt(
    plpy: Any, *, separatedb: int = 1, dry_run: bool = False, raise_failure: bool = True
) -> None:
    from admmgt_plpy import _lifecycle

    with failures_raised(plpy, "lifecycleMgt", raise_failure):
        _lifecycle.lifecyclemgt(plpy, separatedb=separatedb, dry_run=dry_run)


@entry
def refresh_stored_procedures(
    plpy: Any,
    *,
    separatedb: int,
    scriptid: int | None,
    drop_orphans: bool = False,
    raise_failure: bool = True,
) -> None:
    _sync.refresh(
        plpy,
        "routines",
        separatedb=separatedb,
        scriptid=scriptid,
        drop_orphans=drop_orphans,
        raise_failure=raise_failure,
    )


@entry
def refresh_views(
    plpy: Any,
    *,
    separatedb: int,
    scriptid: int | None,
    drop_orphans: bool = False,
    raise_failure: bool = True,
) -> None:
    _sync.refresh(
        plpy,
        "views",
        separatedb=separatedb,
        scriptid=scriptid,
        drop_orphans=drop_orphans,
        raise_failure=raise_failure,
    )


@entry
def replayscripts(
    plpy: Any, *, separatedb: int, dbname: str, targetscriptid: int, raise_failure: bool = True
) -> None:
    _replay.replayscripts(
        plpy,
        separatedb=separatedb,
        dbname=dbname,
        targetscriptid=targetscriptid,
        raise_failure=raise_failure,
    )


@entry
def rollbackscript(
    plpy: Any, *, script_id: int, drop_data: bool = False, raise_failure: bool = True
) -> None:
    _undo.rollbackscript(
        plpy, script_id=script_id, drop_data=drop_data, raise_failure=raise_failure
    )


@entry
def plan_rollback(plpy: Any, *, script_id: int) -> list[dict[str, Any]]:
    return _undo.plan_rollback(plpy, script_id)


@entry
def validate_scripts(plpy: Any, *, script_id: int | None = None) -> list[dict[str, Any]]:
    from admmgt_plpy import _applied

    return _applied.validate_scripts(plpy, script_id=script_id)


@entry
def repair_script(plpy: Any, *, script_id: int, action: str) -> None:
    from admmgt_plpy import _applied

    _applied.repair_script(
        plpy,
        script_id=script_id,
        action=action,
        caller_is_superuser=_rollout_checks.caller_is_superuser(plpy),
    )


@entry
def detect_drift(
    plpy: Any, *, dbname: str | None, separatedb: int | None = None
) -> list[dict[str, Any]]:
    from admmgt_plpy import _drift

    return _drift.detect_drift(plpy, dbname=dbname, separatedb=separatedb)


@entry
def check_rls(plpy: Any, *, dbname: str | None) -> list[dict[str, Any]]:
    from admmgt_plpy import _rls_audit

    return _rls_audit.check_rls(plpy, dbname=dbname)


@entry
def tenant_usage(plpy: Any) -> list[dict[str, Any]]:
    from admmgt_plpy import _usage

    return _usage.tenant_usage(plpy)


@entry
def drop_script(plpy: Any, *, script_id: int) -> None:
    from admmgt_plpy import _drafts

    _drafts.drop_script(plpy, script_id=script_id)


@entry
def promote_tenant(plpy: Any, *, dbname: str, cluster: str | None, abort: bool = False) -> None:
    from admmgt_plpy import _promote

    _clock.announce(plpy, "promote_tenant")
    _promote.promote_tenant(plpy, dbname=dbname, cluster=cluster, abort=abort)
