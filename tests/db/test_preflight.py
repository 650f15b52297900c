"""Pre-flight, consent and validation (issue 13): the dry run is the real
pre-flight, destructive rollbacks need consent, asked-for versions are checked,
applied metadata is kept and compared, and operators cannot run raw SQL as
superuser."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, call, history

Conn = psycopg.Connection[Any]


def orders_script(admin: Conn, script_id: int = 1) -> None:
    s.script(admin, script_id, "orders")
    s.table(admin, script_id, "orders", [s.ID, ("note", "text")])


def _fails(conn: Conn) -> None:
    """applyScripts whose run fails (a refused script, a failed tenant): ERROR ZA001."""
    with pytest.raises(psycopg.Error) as failed:
        call(conn, "applyscripts")
    assert failed.value.sqlstate == "ZA001", failed.value


def hist(fleet: Fleet, db: str) -> list[tuple[int, str]]:
    with fleet.connect(db) as conn:
        return history(conn)


def status(admin: Conn, script_id: int) -> tuple[Any, ...]:
    row = admin.execute(
        "SELECT status, last_error FROM admmgt.scripts WHERE id = %s", (script_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


# ------------------------------------------------------------------ dry run


def test_the_dry_run_refuses_a_type_the_template_rejects(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID, ("price", "moneyy(12,2)")])
    notices = Notices(fleet.admin)
    with pytest.raises(psycopg.Error, match=r"applyScripts \(dry run\): 1 problem") as failure:
        fleet.admin.execute("CALL admmgt.applyscripts(dry_run => true)")
    assert "data type 'moneyy(12,2)'" in str(failure.value)
    assert any(line.startswith("script 1 would be refused: validation") for line in notices.take())
    assert status(fleet.admin, 1) == (1, None)  # a dry run records nothing
    with fleet.connect(fleet.template) as conn:
        assert history(conn) == []


def test_the_hard_dry_run_executes_in_the_template_and_rolls_back(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    notices = Notices(fleet.admin)
    fleet.admin.execute("CALL admmgt.applyscripts(dry_run => true, t_execute => true)")
    lines = notices.take()
    assert any(
        line.startswith("applyScripts (hard dry run): script 1: 2 statement(s) ran in")
        for line in lines
    ), lines
    with fleet.connect(fleet.template) as conn:
        assert conn.execute("SELECT to_regclass('mgttest.orders')").fetchone() == (None,)
        assert history(conn) == []
    assert status(fleet.admin, 1) == (1, None)


def test_the_hard_dry_run_reports_what_only_execution_finds(fleet: Fleet) -> None:
    # Rows that break the new table's key: compiling and validating cannot see
    # that (the statement is valid); executing it does.
    orders_script(fleet.admin)
    s.step(fleet.admin, 1, 1, "INSERT INTO mgttest.orders (id, note) VALUES (1, 'a'), (1, 'b')")
    fleet.admin.execute("CALL admmgt.applyscripts(dry_run => true)")  # passes
    with pytest.raises(psycopg.Error, match="script 1 failed on the template") as failure:
        fleet.admin.execute("CALL admmgt.applyscripts(dry_run => true, t_execute => true)")
    assert "(23505" in str(failure.value)
    assert status(fleet.admin, 1) == (1, None)
    with fleet.connect(fleet.template) as conn:  # rolled back: no table, no history
        assert history(conn) == []
        assert conn.execute("SELECT to_regclass('mgttest.orders')").fetchone() == (None,)


def test_t_execute_without_dry_run_is_refused(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    with pytest.raises(psycopg.Error, match="t_execute => true is part of a dry run"):
        fleet.admin.execute("CALL admmgt.applyscripts(t_execute => true)")
    with fleet.connect(fleet.template) as conn:
        assert history(conn) == []


# ----------------------------------------------------------------- rollback


def _rows(fleet: Fleet, db: str, sql: str) -> None:
    with fleet.connect(db) as conn:
        conn.execute(sql)


def test_a_rollback_over_rows_is_refused_without_consent_and_the_preview_lists_them(
    fleet: Fleet,
) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    busy = fleet.tenants[0]
    _rows(fleet, busy, "INSERT INTO mgttest.orders (note) VALUES ('a'), ('b')")
    plan = fleet.admin.execute(
        "SELECT step, statement, drops, dbname, rows_at_stake FROM admmgt.plan_rollback(1)"
        " ORDER BY dbname"
    ).fetchall()
    assert {(r[0], r[2], r[3], r[4]) for r in plan} == {
        (1, "mgttest.orders", fleet.template, 0),
        (1, "mgttest.orders", busy, 2),
        (1, "mgttest.orders", fleet.tenants[1], 0),
    }
    assert plan[0][1] == 'DROP TABLE IF EXISTS "mgttest"."orders"'
    with pytest.raises(
        psycopg.Error, match=r"rollbackScript\(1\) refused: it would drop data"
    ) as e:
        call(fleet.admin, "rollbackscript", 1)
    assert f"{busy}: mgttest.orders: 2 row(s)" in str(e.value)
    assert "t_drop_data => true" in (e.value.diag.message_hint or "")
    for db in fleet.databases:  # nothing changed, the template included
        assert hist(fleet, db) == [(1, "apply")]
    assert status(fleet.admin, 1)[0] == 2
    fleet.admin.execute("CALL admmgt.rollbackscript(1, t_drop_data => true)")
    for db in fleet.databases:
        assert hist(fleet, db) == [(1, "apply"), (1, "rollback")]
    logged = fleet.admin.execute(
        "SELECT l.details -> 'statements' FROM admmgt.run_log AS l JOIN admmgt.runs AS r"
        " ON r.id = l.run_id WHERE r.operation = 'rollbackScript' AND l.dbname = %s",
        (busy,),
    ).fetchall()
    assert logged == [(['DROP TABLE IF EXISTS "mgttest"."orders"'],)]


def test_a_rollback_that_drops_only_empty_columns_needs_no_consent(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    tid = s.table(fleet.admin, 1, "orders", [s.ID])
    fleet.apply()
    s.script(fleet.admin, 2)
    s.column(fleet.admin, tid, 2, "note", "text")
    fleet.apply()
    _rows(fleet, fleet.tenants[0], "INSERT INTO mgttest.orders (note) VALUES (NULL)")
    _rows(fleet, fleet.tenants[1], "INSERT INTO mgttest.orders (note) VALUES ('kept?')")
    with pytest.raises(psycopg.Error, match=r"mgttest\.orders\.note: 1 row\(s\)"):
        call(fleet.admin, "rollbackscript", 2)
    _rows(fleet, fleet.tenants[1], "UPDATE mgttest.orders SET note = NULL")
    call(fleet.admin, "rollbackscript", 2)  # a NULL-only column holds no data
    for db in fleet.databases:
        assert hist(fleet, db)[-1] == (2, "rollback")


def test_rows_written_after_the_count_fail_that_database_not_the_data(fleet: Fleet) -> None:
    """The check inside each database's transaction (the guard) is real SQL that refuses."""
    from admmgt_plpy._compile import Step
    from admmgt_plpy._preflight import data_at_stake, guards

    orders_script(fleet.admin)
    fleet.apply()
    undo = (
        Step(
            'DROP TABLE IF EXISTS "mgttest"."orders"', True, "undo_create_table", "mgttest.orders"
        ),
    )
    (guard,) = guards(data_at_stake(undo), 1)
    with fleet.connect(fleet.tenants[0]) as conn:
        conn.execute(guard.sql)  # empty: passes
        conn.execute("INSERT INTO mgttest.orders DEFAULT VALUES")
        with pytest.raises(errors.RaiseException, match="holds rows written after"):
            conn.execute(guard.sql)


# ------------------------------------------------------------ operator power


@pytest.fixture
def operator(fleet: Fleet) -> Any:
    fleet.admin.execute(
        "DO $$ BEGIN CREATE ROLE admmgt_test_op13 NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    # A test that failed may have left the role a superuser (cluster-wide).
    fleet.admin.execute("ALTER ROLE admmgt_test_op13 NOSUPERUSER")
    fleet.admin.execute("GRANT admmgt_operator TO admmgt_test_op13")
    fleet.admin.execute("SET SESSION AUTHORIZATION admmgt_test_op13")
    yield fleet.admin
    fleet.admin.execute("RESET SESSION AUTHORIZATION")


def _is_superuser(admin: Conn, role: str) -> bool:
    row = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return bool(row and row[0])


def test_an_operator_cannot_become_superuser_through_a_script(fleet: Fleet, operator: Conn) -> None:
    s.script(operator, 1)
    s.step(operator, 1, 1, "ALTER ROLE admmgt_test_op13 SUPERUSER")
    s.script(operator, 2)
    s.proc(operator, 2, "ALTER ROLE admmgt_test_op13 SUPERUSER")
    notices = Notices(operator)
    with pytest.raises(psycopg.Error, match="script 1: it has raw SQL steps"):
        operator.execute("CALL admmgt.applyscripts(dry_run => true)")
    _fails(operator)
    assert not _is_superuser(operator, "admmgt_test_op13")
    code, why = status(operator, 1)
    assert code == 3 and "the caller is not a superuser" in why
    assert any("script 1:" in line and "raw SQL steps" in line for line in notices.take())
    with fleet.connect(fleet.template) as conn:
        assert history(conn) == []
    operator.execute("RESET SESSION AUTHORIZATION")
    operator.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = 1")
    operator.execute("DELETE FROM admmgt.script_procs WHERE scriptid = 2")
    operator.execute("DELETE FROM admmgt.script_steps WHERE scriptid = 1")
    s.step(operator, 1, 1, "SELECT 1")
    call(operator, "applyscripts")  # a superuser may
    assert hist(fleet, fleet.template)[-1] == (2, "apply")


# What applyScripts would record for script 1 when it reaches the template,
# computed by the engine itself (the algorithm is public: an operator can too).
RECORDED = """
DO $rec$
plpy.execute("SELECT admmgt._load_code()")
from admmgt_plpy._scripts import load_script
script = load_script(plpy, 1)
plpy.execute(plpy.prepare("INSERT INTO pg_temp.recorded VALUES ($1, $2)", ["text", "text"]),
             [script.metadata_checksum, script.snapshot])
$rec$ LANGUAGE plpython3u
"""


def test_an_operator_cannot_forge_the_checksums_that_exempt_an_approved_script(
    fleet: Fleet, operator: Conn
) -> None:
    """Raw steps of a script whose checksums admmgt recorded run for any caller;
    those columns are admmgt's, so an operator cannot pass a new raw step off
    as approved (nor insert a script that claims to be)."""
    s.script(operator, 1)
    s.step(operator, 1, 1, "ALTER ROLE admmgt_test_op13 SUPERUSER")
    operator.execute("RESET SESSION AUTHORIZATION")
    operator.execute("CREATE TEMPORARY TABLE recorded (checksum text, snapshot text)")
    operator.execute(RECORDED)
    row = operator.execute("SELECT checksum, snapshot FROM pg_temp.recorded").fetchone()
    assert row is not None and row[0]
    checksum, snapshot = row
    operator.execute("SET SESSION AUTHORIZATION admmgt_test_op13")
    forgeries = [
        ("UPDATE admmgt.scripts SET metadata_checksum = %s WHERE id = 1", (checksum,)),
        ("UPDATE admmgt.scripts SET applied_rows = %s::jsonb WHERE id = 1", (snapshot,)),
        ("UPDATE admmgt.scripts SET checksum = %s WHERE id = 1", (checksum,)),
        ("UPDATE admmgt.scripts SET applied_to_template_at = now() WHERE id = 1", ()),
        (
            "INSERT INTO admmgt.scripts (id, description, status, metadata_checksum)"
            " VALUES (2, 'x', 1, %s)",
            (checksum,),
        ),
    ]
    for statement, params in forgeries:
        with operator.transaction(), pytest.raises(errors.InsufficientPrivilege):
            operator.execute(statement, params)
    with pytest.raises(psycopg.Error, match="script 1: it has raw SQL steps"):
        operator.execute("CALL admmgt.applyscripts(dry_run => true)")
    _fails(operator)
    assert not _is_superuser(operator, "admmgt_test_op13")
    assert status(operator, 1)[0] == 3
    # What an operator does with scripts still works: draft, describe, set ready.
    operator.execute(
        "UPDATE admmgt.scripts SET status = 1, last_error = NULL, description = 'again'"
        " WHERE id = 1"
    )
    operator.execute("DELETE FROM admmgt.script_steps WHERE scriptid = 1")
    operator.execute("DELETE FROM admmgt.scripts WHERE id = 1")
    s.script(operator, 1)
    s.step(operator, 1, 1, "SELECT 1")
    with pytest.raises(psycopg.Error, match="script 1: it has raw SQL steps"):
        operator.execute("CALL admmgt.applyscripts(dry_run => true)")
    operator.execute("RESET SESSION AUTHORIZATION")
    call(operator, "applyscripts")  # a superuser approves it
    assert hist(fleet, fleet.template)[-1] == (1, "apply")


def test_an_operator_cannot_pass_a_new_raw_script_off_as_applied(
    fleet: Fleet, operator: Conn
) -> None:
    """Status 2 (applied) is the operator's to set, so it approves nothing: a raw
    step that the template's history lacks and admmgt never recorded needs a
    superuser whatever the script's status."""
    s.script(operator, 1, ready=False)
    s.step(operator, 1, 1, "ALTER ROLE admmgt_test_op13 SUPERUSER")
    operator.execute("UPDATE admmgt.scripts SET status = 2 WHERE id = 1")
    with pytest.raises(psycopg.Error, match="script 1: it has raw SQL steps"):
        operator.execute("CALL admmgt.applyscripts(dry_run => true)")
    _fails(operator)
    assert not _is_superuser(operator, "admmgt_test_op13")
    assert status(operator, 1)[0] == 3
    for db in fleet.databases:
        assert hist(fleet, db) == []


# ------------------------------------------------------------------ baseline


def _legacy(fleet: Fleet) -> str:
    legacy = f"{fleet.tenants[0][:-3]}legacy"
    fleet.admin.execute(f'CREATE DATABASE "{legacy}"')
    fleet.admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES (%s, 2)", (legacy,)
    )
    return legacy


def test_a_baseline_to_a_script_that_does_not_exist_is_refused(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    legacy = _legacy(fleet)
    with pytest.raises(psycopg.Error, match="script 99 does not exist; nothing was recorded") as e:
        call(fleet.admin, "baseline", legacy, 99)
    assert "1" in (e.value.diag.message_hint or "")
    assert hist(fleet, legacy) == []
    row = fleet.admin.execute(
        "SELECT scriptversion FROM admmgt.vendor_db_settings WHERE dbname = %s", (legacy,)
    ).fetchone()
    assert row == (None,)


def test_a_baseline_below_the_databases_own_history_is_refused(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    s.script(fleet.admin, 2)
    s.table(fleet.admin, 2, "invoices", [s.ID])
    fleet.apply()
    victim = fleet.tenants[0]
    with pytest.raises(psycopg.Error, match="its own history already has script 2"):
        call(fleet.admin, "baseline", victim, 1)
    assert hist(fleet, victim) == [(1, "apply"), (2, "apply")]
    call(fleet.admin, "baseline", victim, 2)  # at or above: a no-op that says so
    assert hist(fleet, victim) == [(1, "apply"), (2, "apply")]


# ------------------------------------------------------------ drop_database


def test_a_tenant_whose_database_is_gone_is_unregistered_only_when_asked(fleet: Fleet) -> None:
    gone = fleet.tenants[1]
    fleet.admin.execute(f'DROP DATABASE "{gone}"')
    with pytest.raises(psycopg.Error, match=f'database "{gone}" does not exist on cluster') as e:
        call(fleet.admin, "drop_database", gone, "drop")
    assert "t_missing_ok => true" in (e.value.diag.message_hint or "")
    deleted = "SELECT deleted FROM admmgt.vendor_db_settings WHERE dbname = %s"
    assert fleet.admin.execute(deleted, (gone,)).fetchone() == (False,)
    notices = Notices(fleet.admin)
    fleet.admin.execute("CALL admmgt.drop_database(%s, 'drop', t_missing_ok => true)", (gone,))
    assert fleet.admin.execute(deleted, (gone,)).fetchone() == (True,)
    assert "was already gone" in notices.take()[-1]
    # the flag never hides a database that is there
    fleet.admin.execute(
        "CALL admmgt.drop_database(%s, 'drop', t_missing_ok => true)", (fleet.tenants[0],)
    )
    assert fleet.admin.execute(
        "SELECT count(*) FROM pg_database WHERE datname = %s", (fleet.tenants[0],)
    ).fetchone() == (0,)


# ------------------------------------------------------- rolled back, overtaken


def test_a_rolled_back_script_overtaken_by_a_later_one_is_refused_and_shown_as_such(
    fleet: Fleet,
) -> None:
    orders_script(fleet.admin)
    s.script(fleet.admin, 2)
    s.table(fleet.admin, 2, "invoices", [s.ID])
    fleet.apply()
    call(fleet.admin, "rollbackscript", 2)
    s.script(fleet.admin, 3)
    s.table(fleet.admin, 3, "payments", [s.ID])
    fleet.apply()
    spread = "SELECT status_word, databases_applied FROM admmgt.script_status WHERE id = %s"
    assert fleet.admin.execute(spread, (2,)).fetchone() == ("overtaken", 0)
    assert fleet.admin.execute(spread, (3,)).fetchone() == ("applied", 2)
    fleet.admin.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = 2")
    with pytest.raises(psycopg.Error, match="script 2: the template already has script 3"):
        fleet.admin.execute("CALL admmgt.applyscripts(dry_run => true)")
    _fails(fleet.admin)
    code, why = status(fleet.admin, 2)
    assert code == 3 and "never applied out of order" in why
    assert fleet.admin.execute(spread, (2,)).fetchone() == ("overtaken", 0)
    for db in fleet.databases:
        assert not any(sid == 2 and action == "apply" for sid, action in hist(fleet, db)[2:])
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT to_regclass('mgttest.invoices')").fetchone() == (None,)


# ----------------------------------------------------------- applied metadata


def test_an_edited_applied_column_shows_in_validate_naming_its_field(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    validate = "SELECT * FROM admmgt.validate_scripts()"
    assert fleet.admin.execute(validate).fetchall() == []
    fleet.admin.execute(
        "UPDATE admmgt.script_table_columns SET datatype = 'varchar(10)' WHERE columnname = 'note'"
    )
    row = fleet.admin.execute(
        "SELECT id FROM admmgt.script_table_columns WHERE columnname = 'note'"
    ).fetchone()
    assert row is not None
    assert fleet.admin.execute(validate).fetchall() == [
        (1, "admmgt.script_table_columns", row[0], "datatype", "text", "varchar(10)", "changed")
    ]


def test_repair_restore_puts_the_applied_rows_back(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    tid = s.table(fleet.admin, 1, "orders", [s.ID, ("note", "text")])
    fleet.apply()
    fleet.admin.execute(
        "UPDATE admmgt.script_table_columns SET datatype = 'integer' WHERE columnname = 'id'"
    )
    fleet.admin.execute("DELETE FROM admmgt.script_table_columns WHERE columnname = 'note'")
    s.column(fleet.admin, tid, 1, "extra", "int")
    assert len(fleet.admin.execute("SELECT * FROM admmgt.validate_scripts()").fetchall()) == 3
    s.script(fleet.admin, 2)
    with pytest.raises(psycopg.Error, match="its metadata rows changed") as e:
        call(fleet.admin, "applyscripts")
    assert "repair_script" in (e.value.diag.message_hint or "")
    call(fleet.admin, "repair_script", 1, "restore")
    assert fleet.admin.execute("SELECT * FROM admmgt.validate_scripts()").fetchall() == []
    cols = fleet.admin.execute(
        "SELECT columnname, datatype, status FROM admmgt.script_table_columns"
        " WHERE tableid = %s ORDER BY id",
        (tid,),
    ).fetchall()
    assert cols == [("id", "bigint", 2), ("note", "text", 2)]
    fleet.apply()  # script 2 goes on


def test_repair_accept_takes_the_new_rows_as_applied(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    fleet.admin.execute(
        "UPDATE admmgt.script_tables SET tblspace = 'pg_default' WHERE scriptid = 1"
    )
    changes = fleet.admin.execute(
        "SELECT field, current_value FROM admmgt.validate_scripts(1)"
    ).fetchall()
    assert changes == [("tblspace", "pg_default")]
    with pytest.raises(psycopg.Error, match="t_action must be 'accept' or 'restore'"):
        call(fleet.admin, "repair_script", 1, "fix")
    call(fleet.admin, "repair_script", 1, "accept")
    assert fleet.admin.execute("SELECT * FROM admmgt.validate_scripts()").fetchall() == []
    assert fleet.admin.execute(
        "SELECT applied_rows #>> '{rows,tables,0,tblspace}' FROM admmgt.scripts WHERE id = 1"
    ).fetchone() == ("pg_default",)


def test_verify_and_status_report_a_changed_applied_script_and_exit_1(
    fleet: Fleet, admin_dsn: str
) -> None:
    from click.testing import CliRunner

    from admmgt.cli import main

    orders_script(fleet.admin)
    fleet.apply()
    runner = CliRunner()
    assert runner.invoke(main, ["--dsn", admin_dsn, "verify"]).exit_code == 0
    assert runner.invoke(main, ["--dsn", admin_dsn, "status"]).exit_code == 0
    fleet.admin.execute(
        "UPDATE admmgt.script_table_columns SET datatype = 'varchar(10)' WHERE columnname = 'note'"
    )
    verify = runner.invoke(main, ["--dsn", admin_dsn, "verify"])
    assert verify.exit_code == 1
    said = " ".join(verify.output.split())  # the console wraps long lines
    assert "script 1: admmgt.script_table_columns row" in said
    assert "datatype: 'text' -> 'varchar(10)'" in said
    status = runner.invoke(main, ["--dsn", admin_dsn, "status"])
    assert status.exit_code == 1
    assert "applied script changed" in status.output
    assert "every tenant is created, up to date" not in status.output


def test_an_operator_cannot_run_raw_rollback_steps_or_accept_changed_raw_rows(
    fleet: Fleet, operator: Conn
) -> None:
    operator.execute("RESET SESSION AUTHORIZATION")
    orders_script(operator)
    s.script(operator, 2)
    s.proc(operator, 2, "INSERT INTO mgttest.orders DEFAULT VALUES")
    call(operator, "applyscripts")  # by a superuser
    operator.execute("SET SESSION AUTHORIZATION admmgt_test_op13")
    operator.execute(
        "INSERT INTO admmgt.script_rollback_steps (scriptid, steporder, sqltext, status)"
        " VALUES (2, 1, 'ALTER ROLE admmgt_test_op13 SUPERUSER', 1)"
    )
    with pytest.raises(psycopg.Error, match=r"rollbackScript\(2\) refused: its hand-written"):
        call(operator, "rollbackscript", 2)
    operator.execute(
        "UPDATE admmgt.script_procs SET proccallstmt = 'ALTER ROLE admmgt_test_op13 SUPERUSER'"
        " WHERE scriptid = 2"
    )
    with pytest.raises(psycopg.Error, match="only a superuser may accept changed rows"):
        call(operator, "repair_script", 2, "accept")
    call(operator, "repair_script", 2, "restore")  # putting the approved rows back is fine
    assert operator.execute("SELECT * FROM admmgt.validate_scripts()").fetchall() == []
    assert not _is_superuser(operator, "admmgt_test_op13")
    for db in fleet.databases:
        assert hist(fleet, db) == [(1, "apply"), (2, "apply")]


def test_an_operator_carries_a_superuser_approved_raw_script_to_the_tenants_left(
    fleet: Fleet, operator: Conn
) -> None:
    operator.execute("RESET SESSION AUTHORIZATION")
    orders_script(operator)
    fleet.apply()
    s.script(operator, 2)
    s.step(operator, 2, 1, "CREATE TABLE mgttest.audit (id int)")
    late = fleet.tenants[0]
    with fleet.connect(late) as conn:
        conn.execute("CREATE TABLE mgttest.audit (x int)")  # makes the tenant fail
    _fails(operator)  # a superuser: template and the other tenant
    assert status(operator, 2)[0] == 1  # not every tenant has it yet
    with fleet.connect(late) as conn:
        conn.execute("DROP TABLE mgttest.audit")
    operator.execute("SET SESSION AUTHORIZATION admmgt_test_op13")
    call(operator, "applyscripts")
    assert hist(fleet, late)[-1] == (2, "apply")
    assert status(operator, 2)[0] == 2
