"""The calendar at pinned dates (issue 12): exact partitions, never counts.

The fleet's clock (admmgt.fleet_now) is pinned at noon UTC of each day below;
a script created then anchors its first partitions there, and
applyMaintenance(t_numdays => 2) adds the periods through that day + 2. The
expected names and bounds are written out by hand for each day (not computed
with the code under test).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Fleet

Conn = psycopg.Connection[Any]

# name, partition column type, interval
TABLES = (
    ("daily", "date", "day"),
    ("weekly", "date", "week"),
    ("monthly", "timestamptz", "month"),
    ("quarterly", "date", "quarter"),
    ("yearly", "timestamp", "year"),
)

# day pinned -> interval -> [(suffix, lo, hi)], through day + 2
CALENDAR: dict[str, dict[str, list[tuple[str, str, str]]]] = {
    "2026-04-30": {  # last day of a month (a Thursday)
        "day": [
            ("2026_04_30", "2026-04-30", "2026-05-01"),
            ("2026_05_01", "2026-05-01", "2026-05-02"),
            ("2026_05_02", "2026-05-02", "2026-05-03"),
        ],
        "week": [("2026_04_27", "2026-04-27", "2026-05-04")],
        "month": [
            ("2026_04", "2026-04-01", "2026-05-01"),
            ("2026_05", "2026-05-01", "2026-06-01"),
        ],
        "quarter": [("2026_04", "2026-04-01", "2026-07-01")],
        "year": [("2026_01", "2026-01-01", "2027-01-01")],
    },
    "2026-06-30": {  # last day of a quarter (a Tuesday)
        "day": [
            ("2026_06_30", "2026-06-30", "2026-07-01"),
            ("2026_07_01", "2026-07-01", "2026-07-02"),
            ("2026_07_02", "2026-07-02", "2026-07-03"),
        ],
        "week": [("2026_06_29", "2026-06-29", "2026-07-06")],
        "month": [
            ("2026_06", "2026-06-01", "2026-07-01"),
            ("2026_07", "2026-07-01", "2026-08-01"),
        ],
        "quarter": [
            ("2026_04", "2026-04-01", "2026-07-01"),
            ("2026_07", "2026-07-01", "2026-10-01"),
        ],
        "year": [("2026_01", "2026-01-01", "2027-01-01")],
    },
    "2026-12-31": {  # the horizon crosses into a new year (a Thursday)
        "day": [
            ("2026_12_31", "2026-12-31", "2027-01-01"),
            ("2027_01_01", "2027-01-01", "2027-01-02"),
            ("2027_01_02", "2027-01-02", "2027-01-03"),
        ],
        "week": [("2026_12_28", "2026-12-28", "2027-01-04")],
        "month": [
            ("2026_12", "2026-12-01", "2027-01-01"),
            ("2027_01", "2027-01-01", "2027-02-01"),
        ],
        "quarter": [
            ("2026_10", "2026-10-01", "2027-01-01"),
            ("2027_01", "2027-01-01", "2027-04-01"),
        ],
        "year": [
            ("2026_01", "2026-01-01", "2027-01-01"),
            ("2027_01", "2027-01-01", "2028-01-01"),
        ],
    },
    "2028-02-28": {  # 28 February of a leap year (a Monday)
        "day": [
            ("2028_02_28", "2028-02-28", "2028-02-29"),
            ("2028_02_29", "2028-02-29", "2028-03-01"),
            ("2028_03_01", "2028-03-01", "2028-03-02"),
        ],
        "week": [("2028_02_28", "2028-02-28", "2028-03-06")],
        "month": [
            ("2028_02", "2028-02-01", "2028-03-01"),
            ("2028_03", "2028-03-01", "2028-04-01"),
        ],
        "quarter": [("2028_01", "2028-01-01", "2028-04-01")],
        "year": [("2028_01", "2028-01-01", "2029-01-01")],
    },
    "2027-02-28": {  # 28 February of a common year (a Sunday)
        "day": [
            ("2027_02_28", "2027-02-28", "2027-03-01"),
            ("2027_03_01", "2027-03-01", "2027-03-02"),
            ("2027_03_02", "2027-03-02", "2027-03-03"),
        ],
        "week": [
            ("2027_02_22", "2027-02-22", "2027-03-01"),
            ("2027_03_01", "2027-03-01", "2027-03-08"),
        ],
        "month": [
            ("2027_02", "2027-02-01", "2027-03-01"),
            ("2027_03", "2027-03-01", "2027-04-01"),
        ],
        "quarter": [("2027_01", "2027-01-01", "2027-04-01")],
        "year": [("2027_01", "2027-01-01", "2028-01-01")],
    },
    "2028-02-29": {  # 29 February (a Tuesday)
        "day": [
            ("2028_02_29", "2028-02-29", "2028-03-01"),
            ("2028_03_01", "2028-03-01", "2028-03-02"),
            ("2028_03_02", "2028-03-02", "2028-03-03"),
        ],
        "week": [("2028_02_28", "2028-02-28", "2028-03-06")],
        "month": [
            ("2028_02", "2028-02-01", "2028-03-01"),
            ("2028_03", "2028-03-01", "2028-04-01"),
        ],
        "quarter": [("2028_01", "2028-01-01", "2028-04-01")],
        "year": [("2028_01", "2028-01-01", "2029-01-01")],
    },
}


def literal(day: str, datatype: str) -> str:
    """A bound as pg_get_expr prints it in a UTC session."""
    return {
        "date": f"'{day}'",
        "timestamp": f"'{day} 00:00:00'",
        "timestamptz": f"'{day} 00:00:00+00'",
    }[datatype]


def expected(day: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, datatype, interval in TABLES:
        rows += [
            (
                name,
                f"{name}_{suffix}",
                f"FOR VALUES FROM ({literal(lo, datatype)}) TO ({literal(hi, datatype)})",
            )
            for suffix, lo, hi in CALENDAR[day][interval]
        ]
    rows += [("orders", "orders_region_eu", "FOR VALUES IN ('EU')")]
    rows += [
        (
            "orders_region_eu",
            f"orders_region_eu_{suffix}",
            f"FOR VALUES FROM ('{lo}') TO ('{hi}')",
        )
        for suffix, lo, hi in CALENDAR[day]["month"]
    ]
    return sorted(rows)


def calendar_script(admin: Conn) -> None:
    s.script(admin, 1, "a table per interval", ready=False)
    for name, datatype, interval in TABLES:
        table_id = s.table(admin, 1, name, [s.ID, ("at", datatype, 0)], haspart=1)
        admin.execute(
            "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
            " partvalue) VALUES (%s, 'at', 'range', %s)",
            (table_id, interval),
        )
    orders = s.table(
        admin, 1, "orders", [s.ID, ("region", "text", 0), ("orderdate", "date", 0)], haspart=1
    )
    admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
        " partvalue, subpartcolumnname, subparttype, subpartvalue)"
        " VALUES (%s, 'region', 'list', 'EU', 'orderdate', 'range', 'month')",
        (orders,),
    )
    admin.execute("UPDATE admmgt.scripts SET status = 1")


@pytest.mark.parametrize("day", list(CALENDAR))
def test_partitions_at_a_pinned_date(fleet: Fleet, day: str) -> None:
    clock.pin(fleet.admin, day)
    calendar_script(fleet.admin)
    fleet.apply()
    fleet.maintain(2)
    through = fleet.admin.execute(
        "SELECT arguments->>'from', arguments->>'through' FROM admmgt.runs"
        " WHERE operation = 'applyMaintenance'"
    ).fetchone()
    assert through is not None and through[0] == day
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert clock.partitions(conn) == expected(day), db
    # A second run the same day has nothing to make.
    assert "nothing to create" in fleet.maintain(2)[-1]


def test_retention_follows_the_pinned_clock_across_29_february(fleet: Fleet) -> None:
    clock.pin(fleet.admin, "2028-02-27")
    s.script(fleet.admin, 1, "daily logs", ready=False)
    table_id = s.table(fleet.admin, 1, "logs", [s.ID, ("at", "date", 0)], haspart=1)
    fleet.admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
        " partvalue) VALUES (%s, 'at', 'range', 'day')",
        (table_id,),
    )
    fleet.admin.execute(
        "UPDATE admmgt.script_tables SET lifecycle = %s::jsonb WHERE id = %s",
        ('{"retention": "3 days", "action": "drop"}', table_id),
    )
    fleet.admin.execute("UPDATE admmgt.scripts SET status = 1")
    fleet.apply()
    fleet.maintain(1)  # 27 and 28 February
    clock.pin(fleet.admin, "2028-03-02")
    fleet.maintain(0)  # 2 March; nothing before today is made
    fleet.admin.execute("CALL admmgt.lifecycleMgt()")
    # 2 March - 3 days = 28 February: only the partition ending on it has expired.
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert clock.partitions(conn) == [
                ("logs", "logs_2028_02_28", "FOR VALUES FROM ('2028-02-28') TO ('2028-02-29')"),
                ("logs", "logs_2028_03_02", "FOR VALUES FROM ('2028-03-02') TO ('2028-03-03')"),
            ], db
