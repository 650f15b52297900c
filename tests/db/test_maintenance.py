"""applyMaintenance (issue 5): the range partitions ahead of today, in the template and
every tenant, with gaps filled, default partitions respected and nothing made twice."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, schedule_cli, wait_for_cron_run
from tests.fix_db import connect

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def pinned_clock(admin: Conn) -> None:
    """Every test here runs on 15 June 2026 (noon UTC) on the fleet's clock, so no
    result depends on the day the suite runs (test_calendar.py covers other days)."""
    clock.pin(admin, "2026-06-15")


def range_table(
    admin: Conn,
    script_id: int,
    name: str,
    interval: str,
    *,
    datatype: str = "date",
    hasdefault: int = 0,
    anchor_days_ago: int = 0,
) -> None:
    """A script creating mgttest.<name>, range-partitioned by `day` on column `on_day`."""
    s.script(admin, script_id, name)
    admin.execute(
        "UPDATE admmgt.scripts SET created_date = admmgt.fleet_now() - make_interval(days => %s)"
        " WHERE id = %s",
        (anchor_days_ago, script_id),
    )
    table_id = s.table(
        admin, script_id, name, [s.ID, ("on_day", datatype, 0), ("note", "text")], haspart=1
    )
    admin.execute(
        "UPDATE admmgt.script_tables SET hasdefault = %s WHERE id = %s", (hasdefault, table_id)
    )
    admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype, partvalue)"
        " VALUES (%s, 'on_day', 'range', %s)",
        (table_id, interval),
    )


def orders_table(
    admin: Conn, script_id: int, regions: dict[str, str | None], *, anchor_days_ago: int = 0
) -> None:
    """mgttest.orders by list on `region` with a default partition; each region's child is
    range-sub-partitioned on `orderdate` by the interval given (None: a plain list child)."""
    s.script(admin, script_id, "orders")
    admin.execute(
        "UPDATE admmgt.scripts SET created_date = admmgt.fleet_now() - make_interval(days => %s)"
        " WHERE id = %s",
        (anchor_days_ago, script_id),
    )
    table_id = s.table(
        admin,
        script_id,
        "orders",
        [s.ID, ("region", "varchar(10)", 0), ("orderdate", "date", 0)],
        haspart=1,
    )
    admin.execute("UPDATE admmgt.script_tables SET hasdefault = 1 WHERE id = %s", (table_id,))
    for value, interval in regions.items():
        sub = ("orderdate", "range", interval) if interval else (None, None, None)
        admin.execute(
            "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
            " partvalue, subpartcolumnname, subparttype, subpartvalue)"
            " VALUES (%s, 'region', 'list', %s, %s, %s, %s)",
            (table_id, value, *sub),
        )


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def month_starts(first: date, last: date, step: int) -> list[date]:
    """First days of the periods of `step` months (1, 3, 12) from first's through last's."""
    index = first.year * 12 + first.month - 1
    index -= index % step
    result = []
    while date(index // 12, index % 12 + 1, 1) <= last:
        result.append(date(index // 12, index % 12 + 1, 1))
        index += step
    return result


def test_day_table_gets_exactly_the_missing_children_everywhere(fleet: Fleet) -> None:
    range_table(fleet.admin, 1, "events", "day", anchor_days_ago=10)
    fleet.apply()
    today = fleet.today()
    anchor = f"events_{today - timedelta(days=10):%Y_%m_%d}"
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.events") == {anchor}

    lines = fleet.maintain(90)

    expected = {anchor} | {f"events_{d:%Y_%m_%d}" for d in days(today, today + timedelta(90))}
    assert len(expected) == 92
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.events") == expected
    assert lines[0].startswith(f"template {fleet.template}: 91 partitions created in ")
    progress = [line.split(": ", 1)[0].split(" ") for line in lines[1:3]]
    assert [p[0] for p in progress] == ["[1/2]", "[2/2]"]
    assert sorted(p[1] for p in progress) == fleet.tenants
    assert all(": 91 partitions created in " in line for line in lines[1:3])
    assert lines[-1].startswith("applyMaintenance: 3 with new partitions in ")
    assert "; 273 partitions created through " in lines[-1]
    # the bounds are the periods the names say
    with fleet.connect(fleet.tenants[0]) as conn:
        name = f"events_{today + timedelta(days=45):%Y_%m_%d}"
        bound = conn.execute(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s", (name,)
        ).fetchone()
    lo, hi = today + timedelta(days=45), today + timedelta(days=46)
    assert bound == (f"FOR VALUES FROM ('{lo}') TO ('{hi}')",)
    logged = fleet.admin.execute(
        "SELECT r.outcome, r.arguments ->> 'numdays', count(l.*),"
        " sum(jsonb_array_length(l.details -> 'created'))"
        " FROM admmgt.runs AS r JOIN admmgt.run_log AS l ON l.run_id = r.id"
        " WHERE r.operation = 'applyMaintenance' GROUP BY r.id"
    ).fetchall()
    assert logged == [("ok", "90", 3, 273)]


def test_month_quarter_and_year_tables_get_every_child_to_the_horizon(fleet: Fleet) -> None:
    range_table(fleet.admin, 1, "m", "month")
    range_table(fleet.admin, 2, "q", "quarter", datatype="timestamptz")
    range_table(fleet.admin, 3, "y", "year", datatype="timestamp")
    week_id = 4
    range_table(fleet.admin, week_id, "w", "week")
    # A tenant whose sessions default to another time zone and date style: bounds
    # must still be read and written in UTC.
    fleet.admin.execute(f"ALTER DATABASE \"{fleet.tenants[1]}\" SET TimeZone = 'Asia/Tokyo'")
    fleet.admin.execute(f"ALTER DATABASE \"{fleet.tenants[1]}\" SET DateStyle = 'SQL, DMY'")
    fleet.apply()
    today = fleet.today()
    horizon = today + timedelta(days=800)
    fleet.maintain(800)
    expected = {
        "mgttest.m": {f"m_{d:%Y_%m}" for d in month_starts(today, horizon, 1)},
        "mgttest.q": {f"q_{d:%Y_%m}" for d in month_starts(today, horizon, 3)},
        "mgttest.y": {f"y_{d:%Y_%m}" for d in month_starts(today, horizon, 12)},
        "mgttest.w": {
            f"w_{d:%Y_%m_%d}"
            for d in days(today - timedelta(days=today.weekday()), horizon)
            if d.weekday() == 0
        },
    }
    assert expected["mgttest.y"] == {"y_2026_01", "y_2027_01", "y_2028_01"}
    for db in fleet.databases:
        for parent, names in expected.items():
            assert fleet.children(db, parent) == names, (db, parent)
    with fleet.connect(fleet.tenants[1]) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO, YMD'")
        bounds = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i"
            " JOIN pg_class AS c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'mgttest.q'::regclass"
        ).fetchall()
    assert all("00:00:00+00" in b[0] for b in bounds), bounds
    # nothing left to do: every database says so
    lines = fleet.maintain(800)
    assert lines[0] == f"template {fleet.template}: nothing to create"
    assert all(line.endswith(": nothing to create") for line in lines[:3])
    assert lines[-1].startswith("applyMaintenance: 3 nothing to create in ")


def test_a_dropped_middle_child_is_recreated_and_a_rerun_creates_nothing(fleet: Fleet) -> None:
    range_table(fleet.admin, 1, "events", "day")
    fleet.apply()
    fleet.maintain(20)
    today = fleet.today()
    middle = f"events_{today + timedelta(days=7):%Y_%m_%d}"
    gap_tenant = fleet.tenants[1]
    with fleet.connect(gap_tenant) as conn:
        conn.execute(f"DROP TABLE mgttest.{middle}")
    before = fleet.children(fleet.tenants[0], "mgttest.events")
    assert middle not in fleet.children(gap_tenant, "mgttest.events")

    lines = fleet.maintain(20)
    assert middle in fleet.children(gap_tenant, "mgttest.events")
    assert fleet.children(gap_tenant, "mgttest.events") == before
    assert lines[0] == f"template {fleet.template}: nothing to create"
    assert any(
        line.startswith("[") and f"{gap_tenant}: 1 partition created in " in line for line in lines
    )
    assert sum(line.endswith(": nothing to create") for line in lines) == 2
    assert lines[-1].startswith("applyMaintenance: 2 nothing to create, 1 with new partitions")

    again = fleet.maintain(20)
    assert sum(line.endswith(": nothing to create") for line in again) == 3
    assert again[-1].startswith("applyMaintenance: 3 nothing to create in ")
    assert "; 0 partitions created" in again[-1]


def test_rows_in_a_default_partition_are_reported_and_moved_when_asked(fleet: Fleet) -> None:
    range_table(fleet.admin, 1, "events", "day", hasdefault=1)
    fleet.apply()
    today = fleet.today()
    ahead = today + timedelta(days=10)
    blocked = f"events_{ahead:%Y_%m_%d}"
    tenant = fleet.tenants[0]
    with fleet.connect(tenant) as conn:  # no partition for that day yet: rows go to default
        conn.execute(
            "INSERT INTO mgttest.events (on_day, note) VALUES (%s, 'a'), (%s, 'b'), (%s, 'c')",
            (ahead, ahead, today + timedelta(days=400)),
        )
        assert conn.execute("SELECT count(*) FROM mgttest.events_default").fetchone() == (3,)

    lines = fleet.maintain(30)
    assert blocked not in fleet.children(tenant, "mgttest.events")
    assert blocked in fleet.children(fleet.tenants[1], "mgttest.events")
    assert blocked in fleet.children(fleet.template, "mgttest.events")
    line = next(x for x in lines if f"{tenant}: " in x)
    assert line.split("\n")[0].endswith(" ms") and ": 29 partitions created in " in line
    message = (
        f"default partition mgttest.events_default holds 2 rows of mgttest.{blocked} "
        f"[{ahead}, {ahead + timedelta(days=1)}), which was not created; move them with "
        "CALL admmgt.applyMaintenance(t_numdays => ..., t_move_default_rows => true)"
    )
    assert message in line
    assert "1 not created because a default partition holds their rows" in lines[-1]
    details = fleet.admin.execute(
        "SELECT l.details -> 'blocked' FROM admmgt.run_log AS l JOIN admmgt.runs AS r"
        " ON r.id = l.run_id WHERE l.dbname = %s AND r.operation = 'applyMaintenance'",
        (tenant,),
    ).fetchone()
    assert details is not None
    assert [(b["table"], b["partition"], b["rows"]) for b in details[0]] == [
        ("mgttest.events", f"mgttest.{blocked}", 2)
    ]

    lines = fleet.maintain(30, move=True)
    assert blocked in fleet.children(tenant, "mgttest.events")
    line = next(x for x in lines if f"{tenant}: " in x)
    assert ": 1 partition created in " in line
    assert f"moved 2 rows from mgttest.events_default into mgttest.{blocked}" in line
    with fleet.connect(tenant) as conn:
        where = conn.execute(
            "SELECT tableoid::regclass::text, note FROM mgttest.events ORDER BY note"
        ).fetchall()
    # the row 400 days ahead stays in the default: no partition is due for it yet
    assert where == [
        (f"mgttest.{blocked}", "a"),
        (f"mgttest.{blocked}", "b"),
        ("mgttest.events_default", "c"),
    ]
    assert fleet.maintain(30)[-1].startswith("applyMaintenance: 3 nothing to create")


def test_composite_list_range_table_gets_children_under_each_list_child(fleet: Fleet) -> None:
    orders_table(fleet.admin, 1, {"EU": "month", "US": "week", "APAC": None})
    fleet.apply()
    today = fleet.today()
    horizon = today + timedelta(days=70)
    lines = fleet.maintain(70)
    months = {f"orders_region_eu_{d:%Y_%m}" for d in month_starts(today, horizon, 1)}
    weeks = {
        f"orders_region_us_{d:%Y_%m_%d}"
        for d in days(today - timedelta(days=today.weekday()), horizon)
        if d.weekday() == 0
    }
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.orders") == {
            "orders_region_eu",
            "orders_region_us",
            "orders_region_apac",
            "orders_default",
        }
        assert fleet.children(db, "mgttest.orders_region_eu") == months | {
            "orders_region_eu_default"
        }
        assert fleet.children(db, "mgttest.orders_region_us") == weeks | {
            "orders_region_us_default"
        }
    created = len(months) - 1 + len(weeks) - 1
    assert lines[0].startswith(f"template {fleet.template}: {created} partitions created in ")


def test_a_partition_made_by_hand_with_other_bounds_is_respected_and_reported(
    fleet: Fleet,
) -> None:
    range_table(fleet.admin, 1, "events", "day")
    fleet.apply()
    today = fleet.today()
    tenant = fleet.tenants[0]
    lo, hi = today + timedelta(days=5), today + timedelta(days=8)
    with fleet.connect(tenant) as conn:
        conn.execute(
            "CREATE TABLE mgttest.events_by_hand PARTITION OF mgttest.events"
            f" FOR VALUES FROM ('{lo}') TO ('{hi}')"
        )
    lines = fleet.maintain(10)
    names = fleet.children(tenant, "mgttest.events")
    assert names == {"events_by_hand"} | {
        f"events_{d:%Y_%m_%d}" for d in days(today, today + timedelta(days=10)) if not lo <= d < hi
    }
    line = next(x for x in lines if f"{tenant}: " in x)
    assert ": 7 partitions created in " in line  # 11 days: today's exists, 3 overlap
    assert (
        f"mgttest.events_{lo:%Y_%m_%d} [{lo}, {lo + timedelta(days=1)}) not created: it "
        f"overlaps partition events_by_hand [{lo}, {hi}) of mgttest.events"
    ) in line
    assert "3 skipped (overlap or name taken" in lines[-1]
    assert not [x for x in lines if "FAILED" in x]


def test_a_locked_tenant_fails_alone_and_is_retried_by_the_next_run(fleet: Fleet) -> None:
    range_table(fleet.admin, 1, "events", "day")
    fleet.apply()
    for name, value in (("lock_timeout_ms", "100"), ("lock_retries", "1")):
        fleet.admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))
    locked = fleet.tenants[1]
    holder = fleet.connect(locked)
    pid = holder.info.backend_pid
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE mgttest.events IN ACCESS SHARE MODE")
    try:
        lines = fleet.maintain(5, fails=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = next(x for x in lines if f"{locked}: " in x)
    assert (
        f'{locked}: FAILED: database "{locked}": maintenance failed while creating partition'
        in line
    )
    assert "could not get a lock within lock_timeout after 2 tries (55P03" in line
    assert f"retryable: a lock held by pid {pid} " in line  # issue 13
    assert fleet.children(locked, "mgttest.events") == {f"events_{fleet.today():%Y_%m_%d}"}
    assert len(fleet.children(fleet.tenants[0], "mgttest.events")) == 6
    error = fleet.admin.execute(
        "SELECT last_error FROM admmgt.vendor_db_settings WHERE dbname = %s", (locked,)
    ).fetchone()
    assert error is not None and "maintenance failed" in error[0]
    assert lines[-1].startswith("applyMaintenance: 1 failed, ")
    lines = fleet.maintain(5)
    assert len(fleet.children(locked, "mgttest.events")) == 6


def test_the_proof_of_concept_call_form_works_and_schema_mode_needs_its_template(
    fleet: Fleet,
) -> None:
    range_table(fleet.admin, 1, "events", "month")
    fleet.apply()
    notices = Notices(fleet.admin)
    fleet.admin.execute("CALL admmgt.applyMaintenance(1, 40)")
    assert notices.take()[-1].startswith("applyMaintenance: ")
    assert fleet.children(fleet.template, "mgttest.events") == {"events_2026_06", "events_2026_07"}
    # 0 selects schema tenants (tests/db/test_schema_maintenance.py); this fleet has none.
    with pytest.raises(errors.RaiseException, match="no template schema is registered"):
        fleet.admin.execute("CALL admmgt.applyMaintenance(0, 30)")
    with pytest.raises(errors.RaiseException, match="t_separatedb must be 1"):
        fleet.admin.execute("CALL admmgt.applyMaintenance(7, 30)")
    with pytest.raises(errors.RaiseException, match="t_numdays must be between 0 and"):
        fleet.admin.execute("CALL admmgt.applyMaintenance(t_numdays => -1)")


def test_two_maintenance_runs_do_not_overlap(fleet: Fleet, admin_dsn: str) -> None:
    range_table(fleet.admin, 1, "events", "day")
    fleet.apply()
    with connect(admin_dsn) as other:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(1634560109, 3)")
        with pytest.raises(errors.LockNotAvailable, match="applyMaintenance is already running"):
            fleet.maintain(5)
        other.execute("ROLLBACK")


def test_no_partitioned_table_means_nothing_to_do(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "plain", [s.ID])
    fleet.apply()
    assert fleet.maintain(30) == [
        "applyMaintenance: no range-partitioned table of a script applied to the template; "
        "nothing to do"
    ]


def test_pg_cron_job_is_registered_runs_and_its_partitions_appear(
    fleet: Fleet, admin_dsn: str, cluster_dsn: str
) -> None:
    range_table(fleet.admin, 1, "events", "day")
    fleet.apply()
    admin_db = fleet.admin.info.dbname
    name = f"admmgt-maintenance-{admin_db}"
    with connect(cluster_dsn) as pg:
        row = pg.execute(
            "SELECT current_setting('cron.host'), current_setting('listen_addresses')"
        ).fetchone()
    assert row is not None
    host, listen = row
    assert host.startswith("/") or listen, (
        f"pg_cron connects to cron.host = {host!r} but the server listens on no TCP address; "
        "restart the sandbox (`admmgt sandbox --dir .sandbox/test stop`), which adds "
        "cron.host = <its socket folder>"
    )
    admmgt = schedule_cli(admin_dsn)

    try:
        # pg_cron 1.4 has no seconds syntax: every minute is the fastest schedule.
        out = admmgt("--maintenance", "* * * * *", "--days", "12")
        assert f"{name}: '* * * * *' CALL admmgt.applyMaintenance(t_numdays => 12)" in out
        assert admmgt("--maintenance", "* * * * *", "--days", "12").count("scheduled job") == 1
        listing = admmgt("--list")
        assert listing.count(name) == 1, listing  # scheduling again replaced the job
        assert f"CALL admmgt.applyMaintenance(t_numdays => 12)  in {admin_db}" in listing
        run = wait_for_cron_run(cluster_dsn, name)
        assert run[0] == "succeeded", run
        today = fleet.today()
        expected = {f"events_{d:%Y_%m_%d}" for d in days(today, today + timedelta(days=12))}
        for db in fleet.databases:
            assert expected <= fleet.children(db, "mgttest.events")
        assert "last run succeeded at" in admmgt("--list")
    finally:
        removed = admmgt("--remove", "all", check=False)
    assert removed.strip() == f"removed {name}", removed
    assert admmgt("--list").strip() == f"no admmgt jobs for database {admin_db}"
    assert "nothing removed" in admmgt("--remove", "maintenance")
