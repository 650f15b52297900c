"""The pure parts of applyMaintenance: metadata to parents, bounds, what to create."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from admmgt_plpy._fleetrun import UTC_OPTIONS
from admmgt_plpy._maintenance import maintain
from admmgt_plpy._partition_plan import (
    PARTITIONS_AND_NAMES_COLUMNS,
    ExistingRange,
    ParentState,
    RangeSet,
    parse_range_bound,
    plan_parent,
    range_sets,
)
from admmgt_plpy._registry import Tenant
from admmgt_plpy._remote import Connect, RemoteError, Run, Sleep
from tests.unit.fakes import settings


def row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tableid": 7,
        "schemaname": "MgtTest",
        "tablename": "Orders",
        "partid": 1,
        "partcolumnname": "region",
        "parttype": "list",
        "partvalue": "EU",
        "parttbs": None,
        "subpartcolumnname": "orderdate",
        "subparttype": "range",
        "subpartvalue": "Month",
        "subparttbs": " cold ",
    }
    return {**base, **kw}


def test_list_children_become_range_parents_named_as_the_compiler_names_them() -> None:
    sets, problems = range_sets(
        [
            row(),
            row(
                partid=2,
                partvalue="a b",
                subparttype=None,
                subpartcolumnname=None,
                subpartvalue=None,
            ),
        ]
    )
    assert problems == []
    assert sets == [
        RangeSet(
            7,
            "mgttest",
            "orders",
            "orders_region_eu",
            ("orders", "region", "EU"),
            "orderdate",
            "month",
            "cold",
        )
    ]
    assert [c.name for c in sets[0].children(date(2026, 11, 23), date(2027, 1, 1))] == [
        "orders_region_eu_2026_11",
        "orders_region_eu_2026_12",
        "orders_region_eu_2027_01",
    ]


def test_hostile_metadata_is_a_problem_not_a_parent() -> None:
    sets, problems = range_sets([row(subpartcolumnname='x"; drop table y; --')])
    assert sets == []
    assert problems and "is not a valid identifier" in problems[0]


def test_bounds_as_printed_with_utc_become_whole_days() -> None:
    assert parse_range_bound("a", "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')") == (
        ExistingRange("a", date(2026, 1, 1), date(2026, 2, 1), True)
    )
    half = parse_range_bound(
        "b", "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-03 12:00:00+00')"
    )
    assert half == ExistingRange("b", date(2026, 1, 1), date(2026, 1, 4), False)
    assert parse_range_bound("c", "FOR VALUES FROM (MINVALUE) TO ('2025-01-01')") == (
        ExistingRange("c", date.min, date(2025, 1, 1), False)
    )
    assert parse_range_bound("d", "FOR VALUES FROM (1) TO (10)") is None
    assert parse_range_bound("e", "FOR VALUES FROM ('01/01/2026') TO ('02/01/2026')") is None


def test_plan_skips_what_exists_overlaps_or_is_taken() -> None:
    rs = RangeSet(1, "s", "t", "t", ("t",), "d", "day", None)
    wanted = rs.children(date(2026, 1, 1), date(2026, 1, 6))
    state = ParentState(
        "r",
        [
            ExistingRange("t_2026_01_01", date(2026, 1, 1), date(2026, 1, 2), True),
            ExistingRange("by_hand", date(2026, 1, 3), date(2026, 1, 5), True),
        ],
    )
    plan = plan_parent(rs, wanted, state, {("s", "t_2026_01_06")})
    assert plan is not None
    assert [c.name for c in plan.create] == ["t_2026_01_02", "t_2026_01_05"]
    assert len(plan.skipped) == 3
    assert "overlaps partition by_hand [2026-01-03, 2026-01-05)" in plan.skipped[0]
    assert "a relation of that name exists" in plan.skipped[2]
    assert plan_parent(rs, wanted, None, set()) is None
    unreadable = plan_parent(
        rs, wanted, ParentState("r", unreadable=["s.x (FOR VALUES ...)"]), set()
    )
    assert unreadable is not None and unreadable.create == []


# ------------------------------------------------- one database's job, driven by hand


class UtcClusters:
    """Clusters that only write connection strings, keeping the options asked for."""

    def __init__(self) -> None:
        self.options: list[str] = []

    def conninfo(self, cluster: str, database: str, options: str = "") -> str:
        self.options.append(options)
        return f"dbname={database}"


MONTHS = RangeSet(1, "s", "t", "t", ("t",), "d", "month", None)
TODAY, THROUGH = date(2027, 2, 27), date(2027, 3, 2)  # February, then March (2027 is no leap year)


def catalog_rows(*children: tuple[str, str, str]) -> list[dict[str, object]]:
    """The job's one catalog statement's rows: parent s.t, range-partitioned, with ``children``."""
    base = {"k": "partition", "ps": "s", "p": "t", "strat": "r", "cs": "s"}
    if not children:
        return [{**base, "cs": None, "c": None, "bound": None}]
    return [
        {**base, "c": name, "bound": f"FOR VALUES FROM ('{lo}') TO ('{hi}')"}
        for name, lo, hi in children
    ]


def start_maintain(clusters: UtcClusters) -> Any:
    fake: Any = clusters
    job = maintain(
        Tenant(5, "tenant_a", "local"), [MONTHS], TODAY, THROUGH, settings(), fake, False
    )
    connect = job.send(None)
    assert isinstance(connect, Connect)
    assert clusters.options == [UTC_OPTIONS]  # dates as UTC, ISO: set as the session starts
    look = job.send("c1")
    assert isinstance(look, Run) and look.columns == PARTITIONS_AND_NAMES_COLUMNS
    assert "'t_2027_02'" in look.sql and "'t_2027_03'" in look.sql  # the names asked after
    return job


def test_a_database_lacking_nothing_costs_one_statement_and_no_transaction() -> None:
    job = start_maintain(UtcClusters())
    with pytest.raises(StopIteration) as done:
        job.send(
            catalog_rows(
                ("t_2027_02", "2027-02-01", "2027-03-01"), ("t_2027_03", "2027-03-01", "2027-04-01")
            )
        )
    assert done.value.value.outcome == "noop"
    assert done.value.value.details == {"created": []}


def test_a_database_lacking_a_partition_gets_its_creates_in_one_round_trip() -> None:
    job = start_maintain(UtcClusters())
    batch = job.send(catalog_rows(("t_2027_02", "2027-02-01", "2027-03-01")))
    assert isinstance(batch, Run) and batch.statements == 3  # BEGIN, the settings, the CREATE
    begin, _settings, create = batch.sql.split("\n;\n")
    assert begin == "BEGIN"
    assert create.startswith('CREATE TABLE "s"."t_2027_03" PARTITION OF "s"."t"')
    assert create.endswith("FOR VALUES FROM ('2027-03-01') TO ('2027-04-01')")
    assert job.send([]) == Run("c1", "COMMIT")
    with pytest.raises(StopIteration) as done:
        job.send([])
    assert done.value.value.outcome == "ok"
    assert done.value.value.details["created"] == ["s.t_2027_03"]


def test_a_failing_create_names_its_partition() -> None:
    job = start_maintain(UtcClusters())
    job.send(catalog_rows())  # nothing yet: February and March in one query
    error = RemoteError("42P17", "partition would overlap", index=3)
    assert job.throw(error) == Run("c1", "ROLLBACK")
    with pytest.raises(StopIteration) as done:
        job.send([])
    outcome = done.value.value
    assert outcome.outcome == "failed"
    assert "creating partition s.t_2027_03" in outcome.message
    assert "nothing was created" in outcome.message


def test_a_default_partition_makes_the_transaction_go_step_by_step() -> None:
    job = start_maintain(UtcClusters())
    rows = [
        *catalog_rows(("t_2027_02", "2027-02-01", "2027-03-01")),
        {
            "k": "partition",
            "ps": "s",
            "p": "t",
            "strat": "r",
            "cs": "s",
            "c": "t_default",
            "bound": "DEFAULT",
        },
    ]
    assert job.send(rows) == Run("c1", "BEGIN")
    assert isinstance(job.send([]), Run)  # the transaction's settings
    again = job.send([])
    assert isinstance(again, Run) and again.columns == PARTITIONS_AND_NAMES_COLUMNS
    lock = job.send(rows)  # read again inside the transaction
    assert lock.sql == 'LOCK TABLE "s"."t", "s"."t_default" IN ACCESS EXCLUSIVE MODE'
    count = job.send([])
    assert count.sql.startswith("SELECT k, count(*)")
    create = job.send([])  # no row of March in the default
    assert create.sql.startswith('CREATE TABLE "s"."t_2027_03"')
    assert job.send([]) == Run("c1", "COMMIT")
    with pytest.raises(StopIteration) as done:
        job.send([])
    assert done.value.value.details["created"] == ["s.t_2027_03"]


def test_a_missing_parent_is_reported_without_a_transaction() -> None:
    job = start_maintain(UtcClusters())
    with pytest.raises(StopIteration) as done:
        job.send([])
    outcome = done.value.value
    assert outcome.outcome == "noop"
    assert outcome.details["missing"] == [
        "s.t does not exist in this database (has its script reached it?)"
    ]


def test_a_lock_met_in_the_one_round_trip_is_retried_reading_the_catalog_again() -> None:
    job = start_maintain(UtcClusters())
    february = ("t_2027_02", "2027-02-01", "2027-03-01")
    batch = job.send(catalog_rows(february))
    assert isinstance(batch, Run) and batch.statements == 3
    locked = RemoteError("55P03", "canceling statement due to lock timeout", index=2)
    assert job.throw(locked) == Run("c1", "ROLLBACK")
    blockers = job.send([])  # who held the lock, asked once
    assert isinstance(blockers, Run) and "pg_locks" in blockers.sql
    assert isinstance(job.send([]), Sleep)  # the backoff, as before any retry
    assert job.send(None) == Run("c1", "BEGIN")  # statement by statement from here
    assert isinstance(job.send([]), Run)  # the transaction's settings
    again = job.send([])
    assert isinstance(again, Run) and again.columns == PARTITIONS_AND_NAMES_COLUMNS
    # Meanwhile the session that held the lock made March itself.
    march = ("t_2027_03", "2027-03-01", "2027-04-01")
    assert job.send(catalog_rows(february, march)) == Run("c1", "COMMIT")
    with pytest.raises(StopIteration) as done:
        job.send([])
    assert done.value.value.outcome == "noop"  # not a 42P07 failure
