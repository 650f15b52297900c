"""Foundation: install, upgrade, verify, status, uninstall, privileges, the code loader."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

import admmgt
from admmgt._catalog import schema_snapshot
from admmgt._resources import Package
from tests.fix_db import connect

PREVIOUS = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.1.0"


def _snapshot(dsn: str) -> dict[str, Any]:
    with connect(dsn) as conn, conn.cursor() as cur:
        return schema_snapshot(cur)


def test_fresh_install_then_second_install_is_a_noop(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        first = admmgt.install(conn)
        second = admmgt.install(conn)
        info = admmgt.status(conn)
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'admmgt'")
        }
    assert first.action == "installed"
    assert "001-core-tables.sql" in first.applied
    assert second.action == "unchanged"
    assert str(second) == f"admmgt is already at version {admmgt.__version__}; nothing to do"
    assert info["version"] == admmgt.__version__
    poc_tables = {
        "vendor_db_settings",
        "scripts",
        "script_tables",
        "script_table_columns",
        "script_table_fkeys",
        "script_table_partitions",
        "script_procs",
        "script_log",
        "script_proc_log",
        "script_view_log",
    }
    assert poc_tables <= tables


def test_poc_registry_columns_and_defaults(admin: psycopg.Connection[Any]) -> None:
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status)"
        " VALUES ('unitemplate', true, 2)"
    )
    admin.execute("INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES ('BigClient', 1)")
    row = admin.execute(
        "SELECT updateflag, istemplate, deleted, status, scriptversion, cluster_name"
        " FROM admmgt.vendor_db_settings WHERE dbname = 'BigClient'"
    ).fetchone()
    assert row == (True, False, False, 1, None, None)  # placed by create_database
    with pytest.raises(errors.UniqueViolation):
        admin.execute("INSERT INTO admmgt.vendor_db_settings (dbname) VALUES ('BIGCLIENT')")


def test_install_over_an_older_version_points_to_upgrade(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        admmgt.install(conn, Package.current().with_version("0.0.1"))
        with pytest.raises(admmgt.InstallError, match="run `admmgt upgrade` to go to"):
            admmgt.install(conn)


def test_upgrade_from_previous_release_keeps_data_and_equals_fresh_install(
    cluster_dsn: str, empty_dsn: str, admin_dsn: str
) -> None:
    previous = Package.from_dir(PREVIOUS, "0.1.0")
    with connect(empty_dsn) as conn:
        admmgt.install(conn, previous)
        conn.execute(
            "INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES ('BigClient', 2)"
        )
        conn.execute("INSERT INTO admmgt.scripts (id, description, status) VALUES (1, 'x', 1)")
        conn.execute("UPDATE admmgt.settings SET value = '7' WHERE name = 'failure_limit'")
        report = admmgt.upgrade(conn)
        kept = conn.execute(
            "SELECT (SELECT dbname FROM admmgt.vendor_db_settings),"
            " (SELECT description FROM admmgt.scripts WHERE id = 1),"
            " (SELECT value FROM admmgt.settings WHERE name = 'failure_limit')"
        ).fetchone()
        assert admmgt.verify(conn) == []
        assert _dblink_schema(conn) == "admmgt_dblink"  # 0.1.0 had it in schema admmgt
    assert report.previous == "0.1.0"
    assert kept == ("BigClient", "x", "7")
    upgraded, fresh = _snapshot(empty_dsn), _snapshot(admin_dsn)
    assert upgraded.keys() == fresh.keys()
    assert {k: v for k, v in upgraded.items() if v != fresh[k]} == {}


def test_upgrade_refuses_rather_than_drop_a_dbas_objects_that_use_admmgt(
    admin: psycopg.Connection[Any],
) -> None:
    """The upgrade drops and re-creates admmgt's routines and views: a DBA's view
    or default that uses them makes it refuse, naming them, and nothing is lost."""
    admin.execute("CREATE VIEW public.drift_report AS SELECT * FROM admmgt.detect_drift()")
    admin.execute("CREATE VIEW public.my_status AS SELECT * FROM admmgt.fleet_status")
    admin.execute("CREATE TABLE public.audit (at timestamptz DEFAULT admmgt.fleet_now())")
    current = Package.current()
    newer = replace(current, version="9.9.9")
    with pytest.raises(admmgt.InstallError) as refused:
        admmgt.upgrade(admin, newer)
    message = str(refused.value)
    assert "view drift_report depends on function admmgt.detect_drift(" in message, message
    assert "view my_status depends on view admmgt.fleet_status" in message, message
    assert "default value for column at of table audit depends on function admmgt.fleet_now()" in (
        message
    ), message
    assert "nothing was changed" in message
    kept = admin.execute(
        "SELECT to_regclass('public.drift_report')::text, to_regclass('public.my_status')::text"
    ).fetchone()
    assert kept == ("drift_report", "my_status")
    default = admin.execute(
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_name = 'audit' AND column_name = 'at'"
    ).fetchone()
    assert default == ("admmgt.fleet_now()",)
    assert admmgt.status(admin)["version"] == current.version
    # verify compares in a rolled-back rehearsal: the DBA's objects do not bother it.
    assert admmgt.verify(admin) == []
    assert admin.execute("SELECT to_regclass('public.my_status')::text").fetchone() == (
        "my_status",
    )
    admin.execute("DROP VIEW public.drift_report, public.my_status")
    admin.execute("ALTER TABLE public.audit ALTER COLUMN at DROP DEFAULT")
    assert admmgt.upgrade(admin, newer).action == "upgraded"
    assert admmgt.verify(admin, newer) == []
    created = admin.execute(
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_schema = 'admmgt' AND table_name = 'scripts' AND column_name = 'created_date'"
    ).fetchone()
    assert created == ("admmgt.fleet_now()",)


def test_verify_is_clean_after_install(admin: psycopg.Connection[Any]) -> None:
    assert admmgt.verify(admin) == []


def test_verify_catches_a_changed_routine_body(admin: psycopg.Connection[Any]) -> None:
    admin.execute(
        "CREATE OR REPLACE PROCEDURE admmgt._lifecyclemgt(t_separatedb integer DEFAULT 1,"
        " t_dry_run boolean DEFAULT false, t_raise boolean DEFAULT true) LANGUAGE plpython3u"
        " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ pass $$"
    )
    problems = admmgt.verify(admin)
    assert problems == [
        "routine admmgt._lifecyclemgt(integer,boolean,boolean) differs from the package"
        " (definition)"
    ]


def test_verify_catches_a_changed_python_module(admin: psycopg.Connection[Any]) -> None:
    admin.execute(
        "UPDATE admmgt._code SET source = source || E'\\nEVIL = 1\\n'"
        " WHERE module = 'admmgt_plpy._entry'"
    )
    assert "Python module admmgt_plpy._entry differs from the package" in admmgt.verify(admin)


def test_verify_catches_extra_and_missing_routines(admin: psycopg.Connection[Any]) -> None:
    admin.execute("CREATE FUNCTION admmgt.backdoor() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    admin.execute("DROP PROCEDURE admmgt.refesh_views(integer, integer, boolean, boolean)")
    problems = admmgt.verify(admin)
    assert "routine admmgt.backdoor() is not part of the package" in problems
    assert any(
        p.startswith("routine admmgt.refesh_views(integer,integer,boolean,boolean) is missing")
        for p in problems
    )


def test_status_counts_tenants_and_pending_scripts(admin: psycopg.Connection[Any]) -> None:
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status) VALUES"
        " ('unitemplate', true, 2), ('a', false, 1), ('b', false, 1), ('c', false, 2)"
    )
    admin.execute("INSERT INTO admmgt.scripts (id, status) VALUES (1, 2), (2, 1), (3, 0)")
    info = admmgt.status(admin)
    assert info["tenants"] == {"pending creation": 2, "created": 1}
    assert info["templates"] == [{"dbname": "unitemplate", "status": 2}]
    assert [s["id"] for s in info["pending_scripts"]] == [2]


def test_uninstall_refuses_while_tenants_are_registered(admin: psycopg.Connection[Any]) -> None:
    admin.execute("INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES ('x', 2)")
    with pytest.raises(admmgt.InstallError, match="1 tenant"):
        admmgt.uninstall(admin)
    admmgt.uninstall(admin, force=True)
    assert admin.execute("SELECT to_regnamespace('admmgt')").fetchone() == (None,)
    assert admin.execute("SELECT to_regnamespace('admmgt_dblink')").fetchone() == (None,)


def _dblink_schema(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'dblink'"
    ).fetchone()
    return None if row is None else str(row[0])


def test_dblink_lives_in_its_own_schema_closed_to_public(admin: psycopg.Connection[Any]) -> None:
    assert _dblink_schema(admin) == "admmgt_dblink"
    listed = admin.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'admmgt'::regnamespace"
        " AND proname LIKE 'dblink%'"
    ).fetchone()
    assert listed == (0,)  # \df admmgt.* shows admmgt's routines only
    usage = admin.execute("SELECT has_schema_privilege('public', 'admmgt_dblink', 'USAGE')")
    assert usage.fetchone() == (False,)
    # An install made when dblink lived in schema admmgt is told, and upgrade moves it.
    admin.execute("ALTER EXTENSION dblink SET SCHEMA admmgt")
    assert admmgt.verify(admin) == [
        "dblink is in schema admmgt (run `admmgt upgrade` to move it to admmgt_dblink)"
    ]
    assert admmgt.upgrade(admin).action == "reinstalled"
    assert _dblink_schema(admin) == "admmgt_dblink"
    assert admmgt.verify(admin) == []
    assert admmgt.upgrade(admin).action == "unchanged"


def test_non_superuser_cannot_install(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        conn.execute(
            "DO $$ BEGIN CREATE ROLE admmgt_test_plain; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        conn.execute("SET ROLE admmgt_test_plain")
        with pytest.raises(admmgt.InstallError, match="is not a superuser"):
            admmgt.install(conn)


def test_concurrent_installs_are_serialized(empty_dsn: str) -> None:
    results: list[str] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            with connect(empty_dsn) as conn:
                barrier.wait()
                results.append(admmgt.install(conn).action)
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(results) == ["installed", "unchanged"]


def _role(conn: psycopg.Connection[Any], name: str, *member_of: str) -> None:
    conn.execute(
        f"DO $$ BEGIN CREATE ROLE {name}; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    for role in member_of:
        conn.execute(f"GRANT {role} TO {name}")


def test_public_can_neither_read_tables_nor_call_procedures(
    admin: psycopg.Connection[Any],
) -> None:
    _role(admin, "admmgt_test_nobody")
    admin.execute("SET ROLE admmgt_test_nobody")
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute("SELECT * FROM admmgt.vendor_db_settings")
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute("CALL admmgt.create_database()")
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute("SELECT admmgt_dblink.dblink_connect('x')")


def test_no_admmgt_routine_is_executable_by_public(admin: psycopg.Connection[Any]) -> None:
    rows = admin.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace = 'admmgt'::regnamespace"
        "   AND has_function_privilege('public', p.oid, 'EXECUTE')"
    ).fetchall()
    # PUBLIC's privilege on a routine is moot without USAGE on the schema, but
    # revoking it too keeps a future GRANT USAGE from exposing everything.
    assert rows == []


def test_operator_runs_procedures_and_edits_metadata_but_not_code(
    admin: psycopg.Connection[Any],
) -> None:
    _role(admin, "admmgt_test_op", "admmgt_operator")
    admin.execute("SET ROLE admmgt_test_op")
    admin.execute("INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES ('opclient', 1)")
    admin.execute("INSERT INTO admmgt.scripts (id, description) VALUES (1, 'by operator')")
    admin.execute("UPDATE admmgt.settings SET value = '3' WHERE name = 'failure_limit'")
    with pytest.raises(errors.RaiseException, match="t_separatedb must be 1"):
        admin.execute("CALL admmgt.lifecyclemgt(t_separatedb => 7)")  # reached the Python
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute("SELECT source FROM admmgt._code")
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute("UPDATE admmgt._code SET source = ''")
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute("UPDATE admmgt.settings SET description = 'x'")
    with pytest.raises(errors.InsufficientPrivilege):
        admin.execute(
            "CREATE OR REPLACE FUNCTION admmgt._load_code() RETURNS text"
            " LANGUAGE sql AS $$ SELECT '' $$"
        )


def test_a_session_that_loaded_old_code_stops_after_an_upgrade(admin_dsn: str) -> None:
    current = Package.current()
    changed = tuple(
        replace(m, source=m.source + "\nUPGRADE_MARKER = '9.9.9'\n")
        if m.name == "admmgt_plpy._entry"
        else m
        for m in current.modules
    )
    newer = replace(current, version="9.9.9", modules=changed)
    with connect(admin_dsn) as old_session:
        assert old_session.execute("SELECT admmgt._load_code()").fetchone() == (current.version,)
        with connect(admin_dsn) as installer:
            admmgt.upgrade(installer, newer)
        with pytest.raises(psycopg.Error) as failure:
            old_session.execute("CALL admmgt.lifecyclemgt()")
        assert f"upgraded to 9.9.9 after this session loaded {current.version}" in str(
            failure.value
        )
        assert failure.value.diag.message_hint == (
            "Start a new session (reconnect); this one keeps the old code loaded."
        )
    with connect(admin_dsn) as new_session:
        assert new_session.execute("SELECT admmgt._load_code()").fetchone() == ("9.9.9",)
        # The assert runs in the server: it raises there if the old code were loaded.
        new_session.execute(
            "DO $$ import admmgt_plpy._entry as e; assert e.UPGRADE_MARKER == '9.9.9' $$"
            " LANGUAGE plpython3u"
        )
