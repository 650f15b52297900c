"""The migration engine (issue 4): each invariant of docs/concepts.md ("The eleven
invariants") with a test that fails without it."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from admmgt._catalog import schema_snapshot
from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, call, make_fleet, registry
from tests.fix_db import connect

Conn = psycopg.Connection[Any]


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> Fleet:
    return make_fleet(cluster_dsn, admin, tenant_prefix, 3)


def orders_script(admin: Conn, script_id: int = 1) -> None:
    s.script(admin, script_id, "orders")
    s.table(admin, script_id, "orders", [s.ID, ("note", "text")])


def test_rollout_goes_template_first_then_every_tenant(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    lines = fleet.apply()
    assert lines[0].startswith(f"template {fleet.template}: script 1 applied in ")
    # tenants finish in any order: the counters and the names each appear once
    heads = [line.split(": ", 1)[0].split(" ", 1) for line in lines[1:4]]
    assert sorted(h[0] for h in heads) == ["[1/3]", "[2/3]", "[3/3]"]
    assert sorted(h[1] for h in heads) == sorted(fleet.tenants)
    assert all(": script 1 applied in " in line for line in lines[1:4])
    assert lines[-1].startswith("applyScripts: 4 updated in ")
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == [(1, "apply")]
        assert fleet.has_table(db, "mgttest.orders")
    assert {v[1] for v in registry(fleet.admin).values()} == {1}
    statuses = fleet.admin.execute(
        "SELECT (SELECT status FROM admmgt.scripts WHERE id = 1),"
        " (SELECT array_agg(DISTINCT status) FROM admmgt.script_table_columns)"
    ).fetchone()
    assert statuses == (2, [2])
    logged = fleet.admin.execute(
        "SELECT count(DISTINCT dbname) FROM admmgt.script_log WHERE scriptid = 1"
    ).fetchone()
    assert logged == (4,)


def test_a_run_with_nothing_pending_connects_to_no_tenant(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    for db in fleet.tenants:  # any connection attempt to these would now fail
        fleet.admin.execute(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false')
    try:
        started = time.monotonic()
        lines = fleet.apply()
        elapsed = time.monotonic() - started
    finally:
        for db in fleet.tenants:
            fleet.admin.execute(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')
    assert lines == [
        "applyScripts: nothing to apply; template and all 3 updating tenants are at script 1"
    ]
    assert elapsed < 2


def test_a_failing_tenant_is_left_untouched_and_the_others_go_on(fleet: Fleet) -> None:
    broken = fleet.tenants[1]
    with fleet.connect(broken) as conn:
        conn.execute("CREATE TABLE mgttest.invoices (x int)")  # collides with step 2
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID])
    s.table(fleet.admin, 1, "invoices", [s.ID])
    lines = fleet.apply(fails=True)
    assert fleet.history(broken) == []
    assert not fleet.has_table(broken, "mgttest.orders")  # step 1 rolled back with step 2
    for db in (fleet.tenants[0], fleet.tenants[2]):
        assert fleet.history(db) == [(1, "apply")]
    message = (
        f'tenant "{broken}": script 1 failed at step 3 (create_table mgttest.invoices) '
        '(42P07 relation "invoices" already exists); fix the tenant or mark it held back '
        "with updateflag = false"
    )
    short = message.removeprefix(f'tenant "{broken}": ')
    assert any(line.endswith(f"{broken}: FAILED: {short}") for line in lines)
    row = fleet.admin.execute(
        "SELECT sqlstate, message, statement FROM admmgt.run_log"
        " WHERE dbname = %s AND outcome = 'failed'",
        (broken,),
    ).fetchone()
    assert row is not None
    assert row[0] == "42P07" and row[1] == message
    assert row[2].startswith('CREATE TABLE "mgttest"."invoices"')
    assert registry(fleet.admin)[broken][2] == message
    assert fleet.admin.execute("SELECT status FROM admmgt.scripts").fetchone() == (1,)

    with fleet.connect(broken) as conn:
        conn.execute("DROP TABLE mgttest.invoices")
    lines = fleet.apply()
    assert any(
        line.endswith(f"{broken}: script 1 applied in " + line.split(" in ")[-1]) for line in lines
    )
    assert fleet.history(broken) == [(1, "apply")]
    assert registry(fleet.admin)[broken] == (2, 1, None)
    assert fleet.admin.execute("SELECT status FROM admmgt.scripts").fetchone() == (2,)


def test_a_script_that_fails_on_the_template_touches_no_tenant(fleet: Fleet) -> None:
    orders_script(fleet.admin, 1)
    s.script(fleet.admin, 2, "bad")
    s.proc(fleet.admin, 2, "SELECT 1 / 0")
    orders_later = 3
    s.script(fleet.admin, orders_later)
    s.table(fleet.admin, orders_later, "later", [s.ID])
    lines = fleet.apply(fails=True)
    assert fleet.history(fleet.template) == [(1, "apply")]
    for db in fleet.tenants:
        assert fleet.history(db) == [(1, "apply")]  # script 1 yes; 2 and 3 no
    status = dict(fleet.admin.execute("SELECT id, status FROM admmgt.scripts").fetchall())
    assert status == {1: 2, 2: 3, 3: 1}
    error = fleet.admin.execute("SELECT last_error FROM admmgt.scripts WHERE id = 2").fetchone()
    assert error is not None and "22012 division by zero" in error[0]
    assert any(
        "FAILED" in line and "script 2 failed at step 1 (proc_call" in line for line in lines
    )


def test_a_type_the_server_rejects_stops_before_the_template_is_touched(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID, ("x", "nosuchtype")])
    lines = fleet.apply(fails=True)
    assert fleet.history(fleet.template) == []
    assert not fleet.has_table(fleet.template, "mgttest.orders")
    error = fleet.admin.execute("SELECT status, last_error FROM admmgt.scripts").fetchone()
    assert error is not None and error[0] == 3
    assert "data type 'nosuchtype': type \"nosuchtype\" does not exist" in error[1]
    assert any("it touches no tenant (status 3)" in line for line in lines)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tablename", 'orders"; DROP TABLE x; --'),
        ("columnname", "a b"),
        ("datatype", "int; DROP TABLE x"),
        ("defaultval", "0); DROP TABLE x; --"),
    ],
)
def test_hostile_metadata_is_refused_before_the_template_is_touched(
    fleet: Fleet, field: str, value: str
) -> None:
    s.script(fleet.admin, 1)
    name = value if field == "tablename" else "orders"
    col = (
        ("a b", "int")
        if field == "columnname"
        else (("x", value) if field == "datatype" else ("x", "int", 1, value))
    )
    s.table(fleet.admin, 1, name, [s.ID, col])
    with pytest.raises(
        psycopg.Error, match="script 1: cannot be compiled; nothing was applied"
    ) as e:
        call(fleet.admin, "applyscripts")
    assert e.value.sqlstate == "ZA001"  # recorded like any failure, then raised
    assert fleet.admin.execute("SELECT status FROM admmgt.scripts").fetchone() == (3,)
    assert fleet.admin.execute(
        "SELECT outcome FROM admmgt.runs ORDER BY id DESC LIMIT 1"
    ).fetchone() == ("failed",)
    assert fleet.history(fleet.template) == []
    with fleet.connect(fleet.template) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'mgttest'"
        ).fetchone() == (0,)


def test_a_tenant_backend_killed_mid_script_keeps_its_old_version(fleet: Fleet) -> None:
    victim = fleet.tenants[0]
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID])
    with fleet.connect(victim) as conn:
        conn.execute("CREATE TABLE public.slow_marker ()")
    s.step(
        fleet.admin,
        1,
        1,
        "SELECT pg_sleep(CASE WHEN to_regclass('public.slow_marker') IS NULL THEN 0 ELSE 30 END)",
    )
    fleet.admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")
    errors_seen: list[BaseException] = []

    def run() -> None:
        try:
            with connect(fleet.admin.info.dsn) as conn:
                call(conn, "applyscripts")
        except BaseException as exc:
            errors_seen.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    killed = 0
    deadline = time.monotonic() + 30
    while not killed and time.monotonic() < deadline:
        row = fleet.admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND query LIKE '%%SELECT pg_sleep(%%'",
            (victim,),
        ).fetchone()
        killed = row[0] if row else 0
        time.sleep(0.05)
    worker.join()
    assert killed == 1 and [getattr(e, "sqlstate", e) for e in errors_seen] == ["ZA001"]
    assert fleet.history(victim) == []
    assert not fleet.has_table(victim, "mgttest.orders")
    for db in fleet.tenants[1:]:
        assert fleet.history(db) == [(1, "apply")]
    assert registry(fleet.admin)[victim][1] is None
    with fleet.connect(victim) as conn:
        conn.execute("DROP TABLE public.slow_marker")
    fleet.apply()
    assert fleet.history(victim) == [(1, "apply")]


def test_after_the_admin_side_lost_its_update_nothing_is_applied_twice(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    # As if the admin transaction died after the tenants committed: the
    # registry forgot, the tenants' histories did not.
    fleet.admin.execute("UPDATE admmgt.vendor_db_settings SET scriptversion = NULL")
    fleet.admin.execute("UPDATE admmgt.scripts SET status = 1")
    lines = fleet.apply()
    assert any(line.endswith("already at script 1; registry reconciled") for line in lines)
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == [(1, "apply")]  # once, not twice
    assert {v[1] for v in registry(fleet.admin).values()} == {1}
    assert fleet.admin.execute("SELECT status FROM admmgt.scripts").fetchone() == (2,)


def test_a_locked_tenant_table_is_retried_with_bounded_waits_then_reported(fleet: Fleet) -> None:
    orders_script(fleet.admin, 1)
    fleet.apply()
    s.script(fleet.admin, 2)
    table_id = fleet.admin.execute("SELECT id FROM admmgt.script_tables").fetchone()
    assert table_id is not None
    s.column(fleet.admin, table_id[0], 2, "extra", "int")
    for name, value in [
        ("lock_timeout_ms", "100"),
        ("lock_retries", "2"),
        ("retry_backoff_ms", "20"),
    ]:
        fleet.admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))
    locked = fleet.tenants[2]
    with fleet.connect(locked) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE mgttest.orders IN ACCESS EXCLUSIVE MODE")
        pid = holder.info.backend_pid
        started = time.monotonic()
        lines = fleet.apply(fails=True)
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert elapsed < 5
    failure = next(line for line in lines if "FAILED" in line)
    assert f"/3] {locked}: FAILED: script 2 failed at step 1 (add_column " in failure
    assert "could not get a lock within lock_timeout after 3 tries (55P03" in failure
    assert f"retryable: a lock held by pid {pid} " in failure  # issue 13
    logged = fleet.admin.execute(
        "SELECT message FROM admmgt.run_log WHERE dbname = %s AND outcome = 'failed'", (locked,)
    ).fetchone()
    assert logged is not None and logged[0].startswith(f'tenant "{locked}": script 2 failed')
    assert fleet.history(locked) == [(1, "apply")]
    for db in fleet.tenants[:2]:
        assert fleet.history(db) == [(1, "apply"), (2, "apply")]
    fleet.apply()
    assert fleet.history(locked) == [(1, "apply"), (2, "apply")]


def test_a_second_applyscripts_is_told_who_runs_the_first(fleet: Fleet) -> None:
    with connect(fleet.admin.info.dsn, application_name="rollout_a") as first, first.transaction():
        first.execute("SELECT pg_advisory_xact_lock(1634560109, 2)")
        with pytest.raises(
            errors.LockNotAvailable,
            match="applyScripts is already running"
            r" \(pid \d+, user postgres, application rollout_a",
        ):
            call(fleet.admin, "applyscripts")


def test_changing_an_applied_script_is_refused(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    fleet.admin.execute(
        "UPDATE admmgt.script_table_columns SET datatype = 'varchar(10)' WHERE columnname = 'note'"
    )
    s.script(fleet.admin, 2)
    with pytest.raises(
        psycopg.Error, match="script 1: its metadata rows changed after it was applied"
    ):
        call(fleet.admin, "applyscripts")


def test_schema_mode_without_a_template_schema_says_how_to_make_one(admin: Conn) -> None:
    # applyScripts(0) works on schema tenants (tests/db/test_schema_apply.py);
    # without a template schema it says what to register, and 2 is no mode.
    with pytest.raises(psycopg.Error, match="no template schema is registered") as caught:
        call(admin, "applyscripts", 0)
    assert "create_schema" in (caught.value.diag.message_hint or "")
    with pytest.raises(psycopg.Error, match=r"t_separatedb must be 1 .* or 0 .*, not 2"):
        call(admin, "applyscripts", 2)


def test_dry_run_prints_the_plan_and_changes_nothing(fleet: Fleet) -> None:
    orders_script(fleet.admin)
    notices = Notices(fleet.admin)
    fleet.admin.execute("CALL admmgt.applyscripts(dry_run => true)")
    lines = notices.take()
    assert lines[0].startswith("script 1 (orders), 2 statements")
    assert '  2. CREATE TABLE "mgttest"."orders" (' in lines[0]
    assert lines[-1].startswith(
        f"applyScripts (dry run): would apply script 1 to template "
        f"{fleet.template} first, then to 3 tenant(s)"
    )
    assert fleet.history(fleet.template) == []
    plan = fleet.admin.execute("SELECT step, kind, target FROM admmgt.plan_script(1)").fetchall()
    assert plan == [(1, "create_schema", "mgttest"), (2, "create_table", "mgttest.orders")]


def test_baseline_records_a_version_without_running_anything(
    fleet: Fleet, cluster_dsn: str
) -> None:
    orders_script(fleet.admin)
    fleet.apply()
    legacy = f"{fleet.tenants[0][:-4]}legacy"
    fleet.admin.execute(f'CREATE DATABASE "{legacy}"')
    with fleet.connect(legacy) as conn:
        conn.execute("CREATE SCHEMA mgttest; CREATE TABLE mgttest.orders (id bigint, note text)")
    fleet.admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES (%s, 2)", (legacy,)
    )
    call(fleet.admin, "baseline", legacy, 1)
    assert fleet.history(legacy) == [(1, "baseline")]
    assert registry(fleet.admin)[legacy][1] == 1
    assert fleet.apply()[-1].startswith("applyScripts: nothing to apply")


def test_failure_limit_stops_a_bad_rollout_early(fleet: Fleet) -> None:
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            conn.execute("CREATE TABLE mgttest.orders (x int)")
    fleet.admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")
    fleet.admin.execute("UPDATE admmgt.settings SET value = '2' WHERE name = 'failure_limit'")
    orders_script(fleet.admin)
    lines = fleet.apply(fails=True)
    assert sum("FAILED" in line for line in lines) == 2
    assert (
        sum("SKIPPED: not attempted: the failure limit (2) was reached" in line for line in lines)
        == 1
    )


def test_non_transactional_index_and_dropped_columns_are_recorded(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    tid = s.table(fleet.admin, 1, "orders", [s.ID, ("note", "text"), ("gone", "int")])
    fleet.apply()
    s.script(fleet.admin, 2)
    fleet.admin.execute(
        'INSERT INTO admmgt.script_indexes (scriptid, tableid, columnnames, "concurrently",'
        " status) VALUES (2, %s, '{note}', 1, 1)",
        (tid,),
    )
    fleet.admin.execute(
        "INSERT INTO admmgt.script_column_changes (scriptid, tableid, columnname, dropcolumn,"
        " dropintended, status) VALUES (2, %s, 'gone', 1, true, 1)",
        (tid,),
    )
    fleet.apply()
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == [(1, "apply"), (2, "partial"), (2, "apply")]
        with fleet.connect(db) as conn:
            valid = conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass("
                "'mgttest.orders_note_idx')"
            ).fetchone()
            assert valid == (True,)
    details = fleet.admin.execute(
        "SELECT details->'dropped_columns' FROM admmgt.run_log WHERE scriptid = 2 LIMIT 1"
    ).fetchone()
    assert details is not None and "gone" in str(details[0])


def _catalog(fleet: Fleet, db: str) -> dict[str, Any]:
    with fleet.connect(db) as conn, conn.cursor() as cur:
        return schema_snapshot(cur, "mgttest")


def test_proof_of_concept_demo_scripts_1_2_4_5(fleet: Fleet) -> None:
    """The POC demo's shape, with INSERTs in its style; catalogs end up identical."""
    admin = fleet.admin
    admin.execute(s.POC_DEMO)
    lines = fleet.apply()
    assert not [line for line in lines if "FAILED" in line]
    template = _catalog(fleet, fleet.template)
    assert "column orders.channel" in template and "column customers.profile" in template
    assert "table orders_region_eu" in template
    for db in fleet.tenants:
        assert _catalog(fleet, db) == template
        assert fleet.history(db) == [(1, "apply"), (2, "apply"), (4, "apply"), (5, "apply")]
    with fleet.connect(fleet.tenants[0]) as conn:  # the tables take the demo's rows
        conn.execute("INSERT INTO mgttest.customers (name, profile) VALUES ('BigClient', '{}')")
        conn.execute(
            "INSERT INTO mgttest.orders (customerid, region, orderdate)"
            " SELECT id, 'EU', current_date FROM mgttest.customers"
        )


@pytest.mark.slow
def test_a_200_tenant_rollout_ends_with_correct_versions_everywhere(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 200)
    orders_script(admin, 1)
    s.script(admin, 2)
    s.table(admin, 2, "invoices", [s.ID])
    lines = fleet.apply()
    assert lines[-1].startswith("applyScripts: 201 updated in ")
    assert {v[:2] for v in registry(admin).values()} == {(2, 2)}
    for db in fleet.tenants[::20]:
        assert fleet.history(db) == [(1, "apply"), (2, "apply")]
    assert admin.execute("SELECT array_agg(status) FROM admmgt.scripts").fetchone() == ([2, 2],)


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_rebuilt(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    tid = s.table(fleet.admin, 1, "orders", [s.ID, ("code", "int")])
    fleet.apply()
    victim = fleet.tenants[0]
    with fleet.connect(victim) as conn:  # duplicates make the unique build fail there
        conn.execute("INSERT INTO mgttest.orders (code) VALUES (7), (7)")
    s.script(fleet.admin, 2)
    fleet.admin.execute(
        "INSERT INTO admmgt.script_indexes (scriptid, tableid, columnnames, isunique,"
        " \"concurrently\", status) VALUES (2, %s, '{code}', 1, 1, 1)",
        (tid,),
    )
    lines = fleet.apply(fails=True)
    assert any(f"{victim}: FAILED" in line and "23505" in line for line in lines)
    assert fleet.history(victim) == [(1, "apply"), (2, "partial")]
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'mgttest.orders_code_idx'::regclass"
    with fleet.connect(victim) as conn:
        assert conn.execute(valid).fetchone() == (False,)  # the leftover
        conn.execute("DELETE FROM mgttest.orders")
    fleet.apply()  # resumes the non-transactional step; must not skip the invalid index
    assert fleet.history(victim) == [(1, "apply"), (2, "partial"), (2, "apply")]
    with fleet.connect(victim) as conn:
        assert conn.execute(valid).fetchone() == (True,)


def test_an_unreachable_tenant_is_reported_with_the_servers_reason(fleet: Fleet) -> None:
    down = fleet.tenants[1]
    fleet.admin.execute(f'ALTER DATABASE "{down}" WITH ALLOW_CONNECTIONS false')
    try:
        orders_script(fleet.admin)
        lines = fleet.apply(fails=True)
    finally:
        fleet.admin.execute(f'ALTER DATABASE "{down}" WITH ALLOW_CONNECTIONS true')
    failure = next(line for line in lines if line.startswith("[") and down in line)
    assert "FAILED: 08001 could not establish connection" in failure
    assert f'database "{down}" is not currently accepting connections' in failure
    assert "internal error" not in failure
    for db in (fleet.tenants[0], fleet.tenants[2]):
        assert fleet.history(db) == [(1, "apply")]
