"""lifecycleMgt (issue 5): retention from script_tables.lifecycle, in the template and
every tenant: expired partitions dropped, detached or archived, expired rows deleted
in batches, a dry run that changes nothing, bad policies refused up front."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, schedule_cli, wait_for_cron_run
from tests.db.test_maintenance import orders_table, range_table
from tests.fix_db import connect

Conn = psycopg.Connection[Any]
NOW = "'2026-06-15 12:00+00'::timestamptz"  # the pinned clock below, for rows in tenants


@pytest.fixture(autouse=True)
def pinned_clock(admin: Conn) -> None:
    """Every test here runs at noon UTC on 15 June 2026 on the fleet's clock; rows are
    dated from that instant ('2026-06-15 12:00+00'), never from the server's now()."""
    clock.pin(admin, "2026-06-15")


def policy(admin: Conn, table: str, value: dict[str, Any] | str) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    admin.execute(
        "UPDATE admmgt.script_tables SET lifecycle = %s::jsonb WHERE tablename = %s",
        (text, table),
    )


def lifecycle(fleet: Fleet, *, dry_run: bool = False, fails: bool = False) -> list[str]:
    """lifecycleMgt's NOTICE lines; ``fails``: it must end with ERROR ZA001."""
    notices = Notices(fleet.admin)
    if fails:
        with pytest.raises(psycopg.Error) as failed:
            fleet.admin.execute("CALL admmgt.lifecycleMgt(t_dry_run => %s)", (dry_run,))
        assert failed.value.sqlstate == "ZA001", failed.value
    else:
        fleet.admin.execute("CALL admmgt.lifecycleMgt(t_dry_run => %s)", (dry_run,))
    return notices.take_without_clock()


def day_children(fleet: Fleet, table: str, days_ago: range) -> dict[int, str]:
    """Daily children of mgttest.<table> made by hand in every database: {days ago: name}."""
    today = fleet.today()
    names = {n: f"{table}_{today - timedelta(days=n):%Y_%m_%d}" for n in days_ago}
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            for n, name in names.items():
                lo = today - timedelta(days=n)
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS mgttest.{name} PARTITION OF mgttest.{table}"
                    f" FOR VALUES FROM ('{lo}') TO ('{lo + timedelta(days=1)}')"
                )
    return names


def old_day_table(fleet: Fleet, script_id: int, table: str, rule: dict[str, Any]) -> list[str]:
    """mgttest.<table> by day with children from 10 days ago through 2 days ahead.

    Returns the child names, oldest first."""
    range_table(fleet.admin, script_id, table, "day", anchor_days_ago=10, hasdefault=1)
    policy(fleet.admin, table, rule)
    return [f"{table}_{fleet.today() - timedelta(days=n):%Y_%m_%d}" for n in range(10, -3, -1)]


def build(fleet: Fleet) -> None:
    fleet.apply()
    today = fleet.today()
    for table in {
        r[0]
        for r in fleet.admin.execute(
            "SELECT tablename FROM admmgt.script_tables WHERE haspart = 1"
        ).fetchall()
    }:
        day_children(fleet, table, range(9, 0, -1))
    fleet.maintain(2)
    assert today == fleet.today()


def tables_in(fleet: Fleet, db: str, schema: str) -> set[str]:
    with fleet.connect(db) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n"
                " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                (schema,),
            )
        }


def run_details(fleet: Fleet, db: str) -> dict[str, Any]:
    row = fleet.admin.execute(
        "SELECT l.details FROM admmgt.run_log AS l JOIN admmgt.runs AS r ON r.id = l.run_id"
        " WHERE r.operation = 'lifecycleMgt' AND l.dbname = %s ORDER BY l.id DESC LIMIT 1",
        (db,),
    ).fetchone()
    assert row is not None
    return row[0] or {}


def test_expired_children_are_dropped_detached_or_archived_everywhere(fleet: Fleet) -> None:
    dropped = old_day_table(fleet, 1, "ev_drop", {"retention": "5 days", "action": "drop"})
    detached = old_day_table(fleet, 2, "ev_detach", {"retention": "5 days", "action": "detach"})
    archived = old_day_table(
        fleet, 3, "ev_arch", {"retention": "5 days", "action": "archive", "archive_schema": "old"}
    )
    build(fleet)
    tenant = fleet.tenants[0]
    today = fleet.today()
    with fleet.connect(tenant) as conn:  # data in an expired child and in live ones
        for days_ago in (8, 5, 0):
            conn.execute(
                "INSERT INTO mgttest.ev_drop (on_day, note) VALUES (%s, 'x')",
                (today - timedelta(days=days_ago),),
            )
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.ev_drop") == {*dropped, "ev_drop_default"}

    lines = lifecycle(fleet)

    # 5 days: a child is expired when it ends on or before today - 5, i.e. 10..6 days ago
    gone = slice(0, 5)
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.ev_drop") == {*dropped[5:], "ev_drop_default"}
        assert fleet.children(db, "mgttest.ev_detach") == {*detached[5:], "ev_detach_default"}
        assert fleet.children(db, "mgttest.ev_arch") == {*archived[5:], "ev_arch_default"}
        mgttest = tables_in(fleet, db, "mgttest")
        assert not set(dropped[gone]) & mgttest
        assert set(detached[gone]) <= mgttest  # kept as standalone tables
        assert not set(archived[gone]) & mgttest
        assert tables_in(fleet, db, "old") == set(archived[gone])
    with fleet.connect(tenant) as conn:
        left = conn.execute("SELECT on_day FROM mgttest.ev_drop ORDER BY on_day").fetchall()
    assert left == [(today - timedelta(days=5),), (today,)]
    assert lines[0].startswith(
        f"template {fleet.template}: 5 partitions dropped, 5 partitions detached, "
        "5 partitions archived in "
    )
    assert all("5 partitions dropped" in line for line in lines[1:3])
    assert [line.split(" ")[0] for line in lines[1:3]] == ["[1/2]", "[2/2]"]
    assert lines[-1].startswith("lifecycleMgt: 3 with expired data removed in ")
    assert lines[-1].endswith("; 15 partitions dropped, 15 detached, 15 archived, 0 rows deleted")
    details = run_details(fleet, tenant)
    assert details["dropped"] == [f"mgttest.{n}" for n in dropped[gone]]
    assert details["archived"] == [f"mgttest.{n} -> old.{n}" for n in archived[gone]]

    # nothing left to do: every database says so and nothing changes
    again = lifecycle(fleet)
    assert again[0] == f"template {fleet.template}: nothing expired"
    assert sum(line.endswith(": nothing expired") for line in again) == 3
    assert again[-1].startswith("lifecycleMgt: 3 nothing expired in ")
    assert fleet.children(tenant, "mgttest.ev_drop") == {*dropped[5:], "ev_drop_default"}


def test_the_newest_child_is_never_expired(fleet: Fleet) -> None:
    range_table(fleet.admin, 1, "events", "day", anchor_days_ago=30)
    policy(fleet.admin, "events", {"retention": "1 day", "action": "drop"})
    fleet.apply()
    today = fleet.today()
    only = f"events_{today - timedelta(days=30):%Y_%m_%d}"
    assert lifecycle(fleet)[-1].startswith("lifecycleMgt: 3 nothing expired")
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.events") == {only}
    # one child more, older than 1 day too: the older goes, the newer stays
    newer = day_children(fleet, "events", range(29, 28, -1))[29]
    lifecycle(fleet)
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.events") == {newer}


def test_the_dry_run_lists_what_would_go_and_changes_nothing(fleet: Fleet) -> None:
    dropped = old_day_table(fleet, 1, "ev_drop", {"retention": "5 days", "action": "drop"})
    s.script(fleet.admin, 2, "logs")
    s.table(fleet.admin, 2, "logs", [s.ID, ("at", "timestamptz", 0)])
    policy(fleet.admin, "logs", {"retention": "7 days", "column": "at"})
    build(fleet)
    tenant = fleet.tenants[1]
    with fleet.connect(tenant) as conn:
        conn.execute(
            f"INSERT INTO mgttest.logs (at) SELECT {NOW} - make_interval(days => d)"
            " FROM generate_series(1, 10) AS d WHERE d <> 7"
        )
    before = {db: fleet.children(db, "mgttest.ev_drop") for db in fleet.databases}

    lines = lifecycle(fleet, dry_run=True)

    for db in fleet.databases:
        assert fleet.children(db, "mgttest.ev_drop") == before[db]
    with fleet.connect(tenant) as conn:
        assert conn.execute("SELECT count(*) FROM mgttest.logs").fetchone() == (9,)
    line = next(x for x in lines if f"{tenant}: " in x)
    assert "would go: 5 partitions to drop, 3 rows to delete" in line
    for name in dropped[:4]:  # the NOTICE shows 5 items, the run log all of them
        assert f"would drop mgttest.{name}" in line
    assert "... and 1 more (admmgt.run_log.details)" in line
    assert "would delete 3 rows of mgttest.logs (before " in line
    assert lines[-1].startswith("lifecycleMgt (dry run): 3 with data to expire in ")
    assert lines[-1].endswith(
        "; would drop 15, detach 0 and archive 0 partitions and delete 3 rows; nothing was changed"
    )
    details = run_details(fleet, tenant)
    assert details["dropped"] == [f"mgttest.{n}" for n in dropped[:5]]
    assert details["deleted"][0]["rows"] == 3
    run = fleet.admin.execute(
        "SELECT arguments -> 'dry_run' FROM admmgt.runs WHERE operation = 'lifecycleMgt'"
    ).fetchone()
    assert run == (True,)


def test_composite_list_range_sub_partitions_expire_like_range_children(fleet: Fleet) -> None:
    orders_table(fleet.admin, 1, {"EU": "week", "APAC": None}, anchor_days_ago=40)
    policy(fleet.admin, "orders", {"retention": "14 days", "action": "drop"})
    fleet.apply()
    fleet.maintain(7)
    today = fleet.today()
    anchor = today - timedelta(days=40)
    old = f"orders_region_eu_{anchor - timedelta(days=anchor.weekday()):%Y_%m_%d}"
    before = fleet.children(fleet.tenants[0], "mgttest.orders_region_eu")
    assert old in before and "orders_region_eu_default" in before

    lifecycle(fleet)

    for db in fleet.databases:
        assert fleet.children(db, "mgttest.orders_region_eu") == before - {old}
        assert fleet.children(db, "mgttest.orders") == {
            "orders_region_eu",
            "orders_region_apac",
            "orders_default",
        }


def test_expired_rows_are_deleted_in_batches_each_its_own_transaction(fleet: Fleet) -> None:
    s.script(fleet.admin, 1, "logs")
    s.table(fleet.admin, 1, "logs", [s.ID, ("created_at", "timestamptz", 0), ("n", "int")])
    s.script(fleet.admin, 2, "visits")
    s.table(fleet.admin, 2, "visits", [s.ID, ("on_day", "date", 0)])
    policy(fleet.admin, "logs", {"retention": "30 days", "column": "created_at", "batch_size": 10})
    policy(fleet.admin, "visits", {"retention": "2 days", "column": "on_day"})
    fleet.apply()
    busy, light = fleet.tenants
    with fleet.connect(busy) as conn:
        # 25 expired rows (31..55 days old), 6 live ones (0..5 days), one just inside
        conn.execute(
            f"INSERT INTO mgttest.logs (created_at, n) SELECT {NOW} - make_interval(days => d), d"
            " FROM generate_series(31, 55) AS d UNION ALL"
            f" SELECT {NOW} - make_interval(days => d), d FROM generate_series(0, 5) AS d"
            f" UNION ALL SELECT {NOW} - interval '29 days 23 hours', 29"
        )
        # every deleted row records the transaction that deleted it
        conn.execute("CREATE TABLE public.deleted_by (n int, xid xid8)")
        conn.execute(
            "CREATE FUNCTION public.note_delete() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN INSERT INTO public.deleted_by VALUES (OLD.n, pg_current_xact_id());"
            " RETURN OLD; END$$"
        )
        conn.execute(
            "CREATE TRIGGER note_delete BEFORE DELETE ON mgttest.logs"
            " FOR EACH ROW EXECUTE FUNCTION public.note_delete()"
        )
        conn.execute(
            "INSERT INTO mgttest.visits (on_day) SELECT '2026-06-15'::date - d"
            " FROM generate_series(0, 6) AS d"
        )
    with fleet.connect(light) as conn:
        conn.execute(
            "INSERT INTO mgttest.logs (created_at, n)"
            f" VALUES ({NOW} - interval '40 days', 40), ({NOW}, 0)"
        )

    lines = lifecycle(fleet)

    with fleet.connect(busy) as conn:
        left = [r[0] for r in conn.execute("SELECT n FROM mgttest.logs ORDER BY n")]
        deleted = conn.execute(
            "SELECT count(*), count(DISTINCT xid), min(n) FROM public.deleted_by"
        ).fetchone()
        visits = conn.execute("SELECT count(*) FROM mgttest.visits").fetchone()
    assert left == [0, 1, 2, 3, 4, 5, 29]
    assert deleted == (25, 3, 31)  # in 3 transactions: 10 + 10 + 5
    # date column: a day is expired when it is before (fleet_now() - 2 days): the
    # pinned day and the day before are left
    assert visits == (2,)
    with fleet.connect(light) as conn:
        assert [r[0] for r in conn.execute("SELECT n FROM mgttest.logs")] == [0]
    line = next(x for x in lines if f"{busy}: " in x)
    assert "deleted 25 rows of mgttest.logs in 3 batches (before " in line
    assert run_details(fleet, busy)["deleted"][0]["batches"] == 3
    assert f"{light}: 1 row deleted in " in next(x for x in lines if f"{light}: " in x)
    assert lines[0] == f"template {fleet.template}: nothing expired"
    assert lifecycle(fleet)[-1].startswith("lifecycleMgt: 3 nothing expired")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"retention": "90 dayz", "action": "drop"},
            r'lifecycle: "retention" "90 dayz" is not an interval PostgreSQL accepts',
        ),
        (
            {"retention": "-3 days", "action": "drop"},
            r'"retention" "-3 days" is not a positive interval',
        ),
        (
            {"retention": "3 days", "action": "truncate"},
            r'"action" must be "detach" \(keep expired partitions',
        ),
        (
            {"retention": "3 days", "action": "drop", "column": "on_day"},
            r'unknown key "column": the table is partitioned',
        ),
    ],
)
def test_a_bad_policy_refuses_the_whole_run_and_changes_nothing(
    fleet: Fleet, value: dict[str, Any], message: str
) -> None:
    range_table(fleet.admin, 1, "good", "day", anchor_days_ago=10)
    policy(fleet.admin, "good", {"retention": "1 day", "action": "drop"})
    range_table(fleet.admin, 2, "bad", "day", anchor_days_ago=10)
    policy(fleet.admin, "bad", value)
    build(fleet)
    before = {db: fleet.children(db, "mgttest.good") for db in fleet.databases}
    table_id = fleet.admin.execute(
        "SELECT id FROM admmgt.script_tables WHERE tablename = 'bad'"
    ).fetchone()
    assert table_id is not None
    with pytest.raises(errors.InvalidParameterValue) as failure:
        lifecycle(fleet)
    text = str(failure.value.diag.message_primary)
    assert text.startswith(
        f"admmgt: lifecycleMgt refused; nothing was changed: script_tables row {table_id[0]} "
        "(mgttest.bad), lifecycle"
    )
    assert re.search(message, text), text
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.good") == before[db]
    runs = fleet.admin.execute("SELECT count(*) FROM admmgt.runs WHERE operation = 'lifecycleMgt'")
    assert runs.fetchone() == (0,)


def test_a_tenant_whose_column_is_not_a_date_fails_alone_naming_it(fleet: Fleet) -> None:
    s.script(fleet.admin, 1, "logs")
    s.table(fleet.admin, 1, "logs", [s.ID, ("created_at", "timestamptz", 0)])
    policy(fleet.admin, "logs", {"retention": "30 days", "column": "created_at"})
    fleet.apply()
    odd, fine = fleet.tenants
    for db in fleet.tenants:
        with fleet.connect(db) as conn:
            conn.execute(
                f"INSERT INTO mgttest.logs (created_at) VALUES ({NOW} - interval '1 year')"
            )
    with fleet.connect(odd) as conn:
        conn.execute("ALTER TABLE mgttest.logs ALTER COLUMN created_at TYPE text")
    lines = lifecycle(fleet, fails=True)
    line = next(x for x in lines if f"{odd}: " in x)
    assert f'{odd}: FAILED: database "{odd}": lifecycle failed while reading mgttest.logs' in line
    assert 'mgttest.logs has created_at as text, not "created_at" of type date or timestamp' in line
    assert f"{fine}: 1 row deleted in " in next(x for x in lines if f"{fine}: " in x)
    assert lines[-1].startswith("lifecycleMgt: 1 failed, ")
    error = fleet.admin.execute(
        "SELECT last_error FROM admmgt.vendor_db_settings WHERE dbname = %s", (odd,)
    ).fetchone()
    assert error is not None and "mgttest.logs" in error[0]


def test_a_locked_tenant_is_reported_and_the_others_proceed(fleet: Fleet) -> None:
    names = old_day_table(fleet, 1, "events", {"retention": "5 days", "action": "detach"})
    build(fleet)
    for name, value in (("lock_timeout_ms", "100"), ("lock_retries", "1")):
        fleet.admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))
    locked, free = fleet.tenants
    holder = fleet.connect(locked)
    pid = holder.info.backend_pid
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE mgttest.events IN ACCESS SHARE MODE")
    try:
        lines = lifecycle(fleet, fails=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = next(x for x in lines if f"{locked}: " in x)
    assert f'{locked}: FAILED: database "{locked}": lifecycle failed while detaching' in line
    assert "could not get a lock within lock_timeout after 2 tries (55P03" in line
    assert f"retryable: a lock held by pid {pid} " in line  # issue 13
    assert fleet.children(locked, "mgttest.events") == {*names, "events_default"}
    assert fleet.children(free, "mgttest.events") == {*names[5:], "events_default"}
    assert lines[-1].startswith("lifecycleMgt: 1 failed, 2 with expired data removed")
    lifecycle(fleet)  # the next run catches up
    assert fleet.children(locked, "mgttest.events") == {*names[5:], "events_default"}


def test_the_proof_of_concept_call_and_nothing_to_do(fleet: Fleet, admin_dsn: str) -> None:
    notices = Notices(fleet.admin)
    fleet.admin.execute("CALL admmgt.lifecycleMgt()")
    assert notices.take_without_clock() == [
        "lifecycleMgt: no table of a script applied to the template has a retention policy "
        "(script_tables.lifecycle); nothing to do"
    ]
    fleet.admin.execute("CALL admmgt.lifecycleMgt(1)")
    # 0 selects schema tenants (tests/db/test_schema_maintenance.py); this fleet has none.
    with pytest.raises(errors.RaiseException, match="no template schema is registered"):
        fleet.admin.execute("CALL admmgt.lifecycleMgt(0)")
    with connect(admin_dsn) as other:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(1634560109, 4)")
        with pytest.raises(errors.LockNotAvailable, match="lifecycleMgt is already running"):
            fleet.admin.execute("CALL admmgt.lifecycleMgt()")
        other.execute("ROLLBACK")


def test_pg_cron_lifecycle_job_is_registered_runs_and_its_effect_is_visible(
    fleet: Fleet, admin_dsn: str, cluster_dsn: str
) -> None:
    names = old_day_table(fleet, 1, "events", {"retention": "5 days", "action": "drop"})
    build(fleet)
    admin_db = fleet.admin.info.dbname
    name = f"admmgt-lifecycle-{admin_db}"
    admmgt = schedule_cli(admin_dsn)

    try:
        out = admmgt("--lifecycle", "* * * * *")
        assert f"{name}: '* * * * *' CALL admmgt.lifecycleMgt() in database {admin_db}" in out
        listing = admmgt("--list")
        assert listing.count(name) == 1, listing
        assert f"CALL admmgt.lifecycleMgt()  in {admin_db}" in listing
        run = wait_for_cron_run(cluster_dsn, name)
        assert run[0] == "succeeded", run
        for db in fleet.databases:
            assert fleet.children(db, "mgttest.events") == {*names[5:], "events_default"}
        logged = fleet.admin.execute(
            "SELECT outcome FROM admmgt.runs WHERE operation = 'lifecycleMgt' ORDER BY id LIMIT 1"
        ).fetchone()
        assert logged == ("ok",)
        assert "last run succeeded at" in admmgt("--list")
        assert admmgt("--remove", "lifecycle").strip() == f"removed {name}"
    finally:
        admmgt("--remove", "all", check=False)
    assert admmgt("--list").strip() == f"no admmgt jobs for database {admin_db}"
