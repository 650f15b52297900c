"""The pure parts of lifecycleMgt: policies from script_tables.lifecycle, what expires."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from admmgt_plpy._errors import MetadataError
from admmgt_plpy._lifecycle_policy import Policy, expired_children, parse_policy
from admmgt_plpy._partition_plan import ExistingRange, ParentState, RangeSet, parent_states


def row(lifecycle: Any, *, haspart: int = 1, **kw: object) -> dict[str, object]:
    text = lifecycle if isinstance(lifecycle, str) else json.dumps(lifecycle)
    base: dict[str, object] = {
        "tableid": 7,
        "schemaname": "MgtTest",
        "tablename": "Events",
        "haspart": haspart,
        "lifecycle": text,
    }
    return {**base, **kw}


def test_partitioned_policies() -> None:
    assert parse_policy(row({"retention": " 90 days ", "action": "drop"})) == Policy(
        7, "mgttest", "events", True, "90 days", "drop"
    )
    assert parse_policy(row({"retention": "1 year", "action": "archive"})) == Policy(
        7, "mgttest", "events", True, "1 year", "archive", "archive"
    )
    archived = parse_policy(
        row({"retention": "1 year", "action": "archive", "archive_schema": "Cold"})
    )
    assert archived.archive_schema == "cold"


def test_plain_table_policies() -> None:
    assert parse_policy(row({"retention": "30 days", "column": "Created_At"}, haspart=0)) == Policy(
        7, "mgttest", "events", False, "30 days", column="created_at", batch_size=10000
    )
    small = parse_policy(row({"retention": "30 days", "column": "at", "batch_size": 5}, haspart=0))
    assert small.batch_size == 5


@pytest.mark.parametrize(
    ("lifecycle", "haspart", "message"),
    [
        ("[1, 2]", 1, 'is not a JSON object; write for example {"retention": "90 days"'),
        ({"action": "drop"}, 1, '"retention" must be an interval as text, such as "90 days"'),
        ({"retention": 90, "action": "drop"}, 1, '"retention" must be an interval as text'),
        ({"retention": "9 days"}, 1, '"action" must be "detach" (keep expired partitions'),
        ({"retention": "9 days", "action": "DROP"}, 1, '"action" must be "detach"'),
        (
            {"retention": "9 days", "action": "drop", "batch_size": 5},
            1,
            'unknown key "batch_size": the table is partitioned, so retention removes whole',
        ),
        (
            {"retention": "9 days", "action": "drop", "archive_schema": "a"},
            1,
            '"archive_schema" is only used with "action": "archive"',
        ),
        (
            {"retention": "9 days", "action": "archive", "archive_schema": "MgtTest"},
            1,
            '"archive_schema" is the table\'s own schema "mgttest"',
        ),
        (
            {"retention": "9 days", "action": "archive", "archive_schema": 'a"; drop'},
            1,
            "is not a valid identifier",
        ),
        (
            {"retention": "9 days", "action": "drop"},
            0,
            'unknown key "action": the table is not partitioned, so expired rows are deleted',
        ),
        ({"retention": "9 days"}, 0, '"column": None is not a valid identifier'),
        ({"retention": "9 days", "column": "x) OR (true"}, 0, "is not a valid identifier"),
        (
            {"retention": "9 days", "column": "at", "batch_size": 0},
            0,
            '"batch_size" must be a whole number from 1 to 1000000, not 0',
        ),
        ({"retention": "9 days", "column": "at", "batch_size": True}, 0, '"batch_size"'),
        ({"retention": "9 days", "column": "at", "where": "1=1"}, 0, 'unknown key "where"'),
    ],
)
def test_bad_policies_name_the_table_the_key_and_what_to_write(
    lifecycle: Any, haspart: int, message: str
) -> None:
    with pytest.raises(MetadataError) as failure:
        parse_policy(row(lifecycle, haspart=haspart))
    assert failure.value.message.startswith("script_tables row 7 (mgttest.events), lifecycle")
    assert message in failure.value.message


def day(n: int) -> date:
    return date(2026, 1, n)


def test_only_children_wholly_before_the_cutoff_expire_and_never_the_newest() -> None:
    rs = RangeSet(1, "s", "t", "t", ("t",), "d", "day", None)
    state = parent_states(
        [
            {"ps": "s", "p": "t", "strat": "r", "cs": cs, "c": c, "bound": bound}
            for cs, c, bound in [
                ("s", "t_default", "DEFAULT"),
                ("s", "t_1", "FOR VALUES FROM ('2026-01-01') TO ('2026-01-02')"),
                ("other", "t_2", "FOR VALUES FROM ('2026-01-02') TO ('2026-01-03')"),
                ("s", "t_3", "FOR VALUES FROM ('2026-01-03') TO ('2026-01-04')"),
                ("s", "old", "FOR VALUES FROM (MINVALUE) TO ('2026-01-01')"),
            ]
        ]
    )[("s", "t")]
    expired, notes = expired_children(rs, day(3), state)
    assert [(e.schema, e.name) for e in expired] == [("s", "old"), ("s", "t_1"), ("other", "t_2")]
    assert notes == []
    # everything is old: all but the newest go
    expired, _ = expired_children(rs, day(20), state)
    assert [e.name for e in expired] == ["old", "t_1", "t_2"]
    assert expired_children(rs, day(1), state)[0] == [state.ranges[3]]


def test_a_parent_with_unreadable_bounds_or_not_by_range_is_left_alone() -> None:
    rs = RangeSet(1, "s", "t", "t", ("t",), "d", "day", None)
    ranges = [
        ExistingRange("a", day(1), day(2), True, "s"),
        ExistingRange("b", day(2), day(3), True),
    ]
    unreadable = ParentState("r", ranges, unreadable=["s.x (FOR VALUES FROM (1) TO (2))"])
    expired, notes = expired_children(rs, day(10), unreadable)
    assert expired == [] and "cannot read the bounds of partition s.x" in notes[0]
    expired, notes = expired_children(rs, day(10), ParentState("l", ranges))
    assert expired == [] and "is not range-partitioned in this database" in notes[0]
    assert expired_children(rs, day(10), ParentState("r")) == ([], [])


@pytest.mark.parametrize(
    ("haspart", "instead"),
    [
        (1, 'write {"retention": "100 days", "action": "drop"}'),
        (0, 'write {"retention": "100 days", "column": "inactive_date"}'),
    ],
)
def test_the_proof_of_concepts_lifecycle_form_is_refused_with_what_to_write(
    haspart: int, instead: str
) -> None:
    poc = {"status": "X", "inactive_date": "current_date-100"}  # the POC demo's value
    with pytest.raises(MetadataError) as failure:
        parse_policy(row(poc, haspart=haspart))
    assert "is the proof of concept's form" in failure.value.message
    assert "inactive_date is before current_date - 100" in failure.value.message
    assert instead in failure.value.message
