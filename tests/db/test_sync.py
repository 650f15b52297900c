"""Template object sync, replay of held-back tenants, rollback (issue 6)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from admmgt._catalog import schema_snapshot
from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, call, make_fleet, registry

Conn = psycopg.Connection[Any]


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> Fleet:
    return make_fleet(cluster_dsn, admin, tenant_prefix, 3)


def catalog(fleet: Fleet, db: str) -> dict[str, Any]:
    with fleet.connect(db) as conn, conn.cursor() as cur:
        return schema_snapshot(cur, "mgttest")


def in_template(fleet: Fleet, sql: str) -> None:
    with fleet.connect(fleet.template) as conn:
        conn.execute(sql)


def test_procedures_trigger_functions_and_overloads_reach_every_tenant(fleet: Fleet) -> None:
    in_template(
        fleet,
        """
        CREATE PROCEDURE mgttest.testproc1() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
        CREATE FUNCTION mgttest.f(a int) RETURNS int LANGUAGE sql AS 'SELECT a';
        CREATE FUNCTION mgttest.f(a text) RETURNS text LANGUAGE sql AS 'SELECT a';
        CREATE FUNCTION mgttest.stamp() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RETURN NEW; END $$;""",
    )
    with fleet.connect(fleet.tenants[0]) as conn:
        conn.execute("CREATE FUNCTION mgttest.leftover() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    notices = Notices(fleet.admin)
    call(fleet.admin, "refesh_stored_procedures", 1, None)  # the proof of concept's name
    lines = notices.take()
    assert lines[0].startswith("refresh_stored_procedures: the template has 4 routine(s)")
    want = catalog(fleet, fleet.template)
    assert "routine mgttest.stamp()" in want and "routine mgttest.f(text)" in want
    for db in fleet.tenants[1:]:
        assert catalog(fleet, db) == want
    orphan_line = next(line for line in lines if line.startswith("[") and fleet.tenants[0] in line)
    assert "1 orphan(s) kept: mgttest.leftover()" in orphan_line
    assert "routine mgttest.leftover()" in catalog(fleet, fleet.tenants[0])

    call(fleet.admin, "refresh_stored_procedures", 1, None, True)  # drop orphans
    assert catalog(fleet, fleet.tenants[0]) == want
    notices.take()
    call(fleet.admin, "refresh_stored_procedures")
    assert notices.take()[-1].startswith("refresh_stored_procedures: 3 already in sync in ")
    logged = fleet.admin.execute(
        "SELECT count(*) FROM admmgt.script_proc_log WHERE object_name = 'mgttest.f(a text)'"
    ).fetchone()
    assert logged is not None and logged[0] >= 1


def test_a_changed_function_signature_and_result_type_is_replaced(fleet: Fleet) -> None:
    in_template(fleet, "CREATE FUNCTION mgttest.g() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    call(fleet.admin, "refresh_stored_procedures")
    in_template(
        fleet,
        "DROP FUNCTION mgttest.g(); "
        "CREATE FUNCTION mgttest.g() RETURNS text LANGUAGE sql AS $$SELECT 'x'$$",
    )
    call(fleet.admin, "refresh_stored_procedures")  # CREATE OR REPLACE alone would fail
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT mgttest.g()").fetchone() == ("x",)


def test_a_changed_view_reaches_every_tenant_in_dependency_order(fleet: Fleet) -> None:
    in_template(
        fleet,
        """
        CREATE TABLE mgttest.t (id int, name text);
        CREATE VIEW mgttest.base AS SELECT id FROM mgttest.t;
        CREATE VIEW mgttest.a_on_base AS SELECT id FROM mgttest.base;""",
    )
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            conn.execute("CREATE TABLE mgttest.t (id int, name text)")
    call(fleet.admin, "refesh_views", 1, None)
    in_template(fleet, "CREATE OR REPLACE VIEW mgttest.base AS SELECT id, name FROM mgttest.t")
    call(fleet.admin, "refresh_views")
    want = catalog(fleet, fleet.template)
    assert "view mgttest.a_on_base" in want
    for db in fleet.tenants:
        assert catalog(fleet, db) == want


def test_poc_script_3_a_procedure_written_in_the_template_then_called_by_a_script(
    fleet: Fleet,
) -> None:
    in_template(
        fleet,
        """
        CREATE TABLE mgttest.calls (db text);
        CREATE PROCEDURE mgttest.testproc1() LANGUAGE plpgsql
            AS $$ BEGIN INSERT INTO mgttest.calls VALUES (current_database()); END $$;""",
    )
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            conn.execute("CREATE TABLE mgttest.calls (db text)")
    s.script(fleet.admin, 3, "call the template's procedure")
    s.proc(fleet.admin, 3, "call mgttest.testproc1()")
    lines = fleet.apply()
    assert not [line for line in lines if "FAILED" in line]
    for db in [fleet.template, *fleet.tenants]:
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT db FROM mgttest.calls").fetchall() == [(db,)]
        assert "routine mgttest.testproc1()" in catalog(fleet, db)
    kept = fleet.admin.execute(
        "SELECT ispremigration, count(*) FROM admmgt.script_proc_log WHERE scriptid = 3"
        " GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert kept == [(False, 1), (True, 1)]


def test_triggers_declared_in_a_script_reach_tenants_with_their_tables(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID, ("changed", "timestamptz")])
    s.step(
        fleet.admin,
        1,
        1,
        "CREATE FUNCTION mgttest.touch() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.changed := now(); RETURN NEW; END; $$",
    )
    s.step(
        fleet.admin,
        1,
        2,
        "CREATE TRIGGER orders_touch BEFORE INSERT ON mgttest.orders"
        " FOR EACH ROW EXECUTE FUNCTION mgttest.touch()",
    )
    fleet.apply()
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            conn.execute("INSERT INTO mgttest.orders DEFAULT VALUES")
            assert conn.execute("SELECT changed IS NOT NULL FROM mgttest.orders").fetchone() == (
                True,
            )


def five_scripts(fleet: Fleet, *, snapshot_at: int) -> dict[str, Any]:
    """Scripts 1..5, with the template's function changed between them; returns the
    template's catalog as it was at script ``snapshot_at``."""
    snapshot: dict[str, Any] = {}
    for i in range(1, 6):
        in_template(
            fleet,
            "CREATE OR REPLACE FUNCTION mgttest.version() RETURNS int"
            f" LANGUAGE sql AS 'SELECT {i}'",
        )
        s.script(fleet.admin, i)
        s.table(fleet.admin, i, f"t{i}", [s.ID])
        fleet.apply()
        if i == snapshot_at:
            snapshot = catalog(fleet, fleet.template)
    return snapshot


def test_a_held_back_tenant_replayed_to_3_of_5_has_the_templates_catalog_at_3(
    fleet: Fleet,
) -> None:
    held = fleet.tenants[0]
    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET updateflag = false WHERE dbname = %s", (held,)
    )
    at_3 = five_scripts(fleet, snapshot_at=3)
    assert fleet.history(held) == []
    notices = Notices(fleet.admin)
    call(fleet.admin, "replayscripts", 1, held, 3)  # the proof of concept's form
    assert catalog(fleet, held) == at_3
    assert "routine mgttest.version()" in at_3
    with fleet.connect(held) as conn:
        assert conn.execute("SELECT mgttest.version()").fetchone() == (3,)
    assert fleet.history(held) == [(1, "apply"), (2, "apply"), (3, "apply")]
    assert registry(fleet.admin)[held][1] == 3
    assert notices.take()[-1].startswith("replayScripts: 1 replayed")
    with pytest.raises(psycopg.Error, match="script 9 has not reached the template"):
        call(fleet.admin, "replayscripts", held, 9)


def test_rolling_back_the_last_script_restores_the_previous_catalog(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    tid = s.table(fleet.admin, 1, "orders", [s.ID])
    fleet.apply()
    before = {db: catalog(fleet, db) for db in [fleet.template, *fleet.tenants]}
    s.script(fleet.admin, 2)
    s.table(fleet.admin, 2, "invoices", [s.ID])
    s.column(fleet.admin, tid, 2, "note", "text")
    fleet.admin.execute(
        "INSERT INTO admmgt.script_indexes (scriptid, tableid, columnnames, status)"
        " VALUES (2, %s, '{note}', 1)",
        (tid,),
    )
    fleet.apply()
    assert catalog(fleet, fleet.tenants[0]) != before[fleet.tenants[0]]
    with pytest.raises(psycopg.Error, match="script 1 is not the latest script applied"):
        call(fleet.admin, "rollbackscript", 1)
    notices = Notices(fleet.admin)
    call(fleet.admin, "rollbackscript", 2)
    lines = notices.take()
    assert lines[0].startswith(f"{fleet.template}: script 2 rolled back")
    for db in [fleet.template, *fleet.tenants]:
        assert catalog(fleet, db) == before[db]
        assert fleet.history(db) == [(1, "apply"), (2, "apply"), (2, "rollback")]
    assert {v[1] for v in registry(fleet.admin).values()} == {1}
    assert fleet.admin.execute("SELECT status FROM admmgt.scripts WHERE id = 2").fetchone() == (0,)
    # it can be fixed and applied again
    fleet.admin.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = 2")
    fleet.apply()
    assert fleet.history(fleet.tenants[0])[-1] == (2, "apply")


def test_a_script_that_cannot_be_inverted_needs_a_handwritten_rollback(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID])
    fleet.apply()
    s.script(fleet.admin, 2)
    s.proc(fleet.admin, 2, "INSERT INTO mgttest.orders DEFAULT VALUES")
    fleet.apply()
    with pytest.raises(
        psycopg.Error,
        match=r"cannot be rolled back automatically: step 1 "
        r"\(a procedure call on script_procs row \d+\)",
    ) as failure:
        call(fleet.admin, "rollbackscript", 2)
    assert "script_rollback_steps" in (failure.value.diag.message_hint or "")
    fleet.admin.execute(
        "INSERT INTO admmgt.script_rollback_steps (scriptid, steporder, sqltext,"
        " status) VALUES (2, 1, 'DELETE FROM mgttest.orders', 1)"
    )
    call(fleet.admin, "rollbackscript", 2)
    for db in [fleet.template, *fleet.tenants]:
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM mgttest.orders").fetchone() == (0,)


def test_the_proof_of_concepts_whole_demo_scripts_1_to_5(fleet: Fleet) -> None:
    """Script 3 calls a procedure written by hand in the template: the sync before
    the script brings it to every tenant inside the script's transaction."""
    fleet.admin.execute(s.POC_DEMO)
    in_template(
        fleet,
        """
        CREATE PROCEDURE mgttest.testproc1() LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO mgttest.customers (name) VALUES ('from testproc1'); END $$;""",
    )
    s.script(fleet.admin, 3, "call the template's procedure")
    s.proc(fleet.admin, 3, "call mgttest.testproc1()")
    lines = fleet.apply()
    assert not [line for line in lines if "FAILED" in line]
    want = catalog(fleet, fleet.template)
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == [(i, "apply") for i in (1, 2, 3, 4, 5)]
        assert catalog(fleet, db) == want
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT name FROM mgttest.customers").fetchall() == [
                ("from testproc1",)
            ]


def test_a_standalone_refresh_retries_a_lock_held_a_little_while(fleet: Fleet) -> None:
    """Issue 15: refresh_stored_procedures runs each tenant's sync through
    in_transaction, so a lock timeout is retried (lock_retries, with backoff)
    like a migration's; before, the first lock timeout failed the tenant."""
    in_template(fleet, "CREATE FUNCTION mgttest.g() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    call(fleet.admin, "refresh_stored_procedures")
    in_template(
        fleet, "CREATE OR REPLACE FUNCTION mgttest.g() RETURNS int LANGUAGE sql AS 'SELECT 2'"
    )
    # Each try waits 300 ms for the lock, then 150..450 ms, 300..900 ms, ... of
    # backoff: at least 3.7 s over 5 tries, against a lock held for 1 s.
    for name, value in [
        ("lock_timeout_ms", "300"),
        ("lock_retries", "4"),
        ("retry_backoff_ms", "300"),
    ]:
        fleet.admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))
    locked = fleet.tenants[1]
    with fleet.connect(locked) as holder:
        holder.execute("BEGIN")
        # Replacing the function holds its pg_proc row until this transaction ends.
        holder.execute(
            "CREATE OR REPLACE FUNCTION mgttest.g() RETURNS int LANGUAGE sql AS 'SELECT 1'"
        )
        release = threading.Timer(1.0, lambda: holder.execute("ROLLBACK"))
        release.start()
        notices = Notices(fleet.admin)
        try:
            call(fleet.admin, "refresh_stored_procedures")
        finally:
            release.join()
    lines = notices.take()
    assert not [line for line in lines if "FAILED" in line], lines
    assert lines[-1].startswith("refresh_stored_procedures: 3 updated in "), lines
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT mgttest.g()").fetchone() == (2,)


def test_a_refresh_that_stays_locked_names_the_holder_and_the_tries(fleet: Fleet) -> None:
    in_template(fleet, "CREATE TABLE mgttest.t (id int); CREATE VIEW mgttest.v AS SELECT 1 AS a")
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            conn.execute("CREATE TABLE mgttest.t (id int)")
    call(fleet.admin, "refresh_views")
    in_template(fleet, "CREATE OR REPLACE VIEW mgttest.v AS SELECT 1 AS a, 2 AS b")
    for name, value in [
        ("lock_timeout_ms", "100"),
        ("lock_retries", "1"),
        ("retry_backoff_ms", "20"),
    ]:
        fleet.admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))
    locked = fleet.tenants[1]
    with fleet.connect(locked) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE mgttest.v IN ACCESS SHARE MODE")  # a reader of the view
        pid = holder.info.backend_pid
        notices = Notices(fleet.admin)
        call(fleet.admin, "refresh_views", 1, None, False, False)  # t_raise => false
        holder.execute("ROLLBACK")
    failed = [line for line in notices.take() if "sync failed" in line]
    assert len(failed) == 1 and f"{locked}: " in failed[0], failed
    assert f"view sync failed after 2 tries (a lock held by pid {pid} " in failed[0]
    assert "AccessShareLock on mgttest.v" in failed[0]
    row = fleet.admin.execute(
        "SELECT last_error FROM admmgt.vendor_db_settings WHERE dbname = %s", (locked,)
    ).fetchone()
    assert row is not None and "after 2 tries" in row[0]
    call(fleet.admin, "refresh_views")  # released: the next refresh catches up
    with fleet.connect(locked) as conn:
        assert conn.execute("SELECT * FROM mgttest.v").fetchone() == (1, 2)
