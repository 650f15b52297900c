"""The metadata readers: rows to typed metadata, and one reading of a table's partitioning
shared by the compiler and by applyMaintenance/lifecycleMgt."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from admmgt_plpy import _errors, _names
from admmgt_plpy._compile import compile_script
from admmgt_plpy._metadata import PartitionRow, ScriptMetadata, TableRow
from admmgt_plpy._partition_plan import range_sets
from admmgt_plpy._partitioning import (
    ListPartition,
    Partitioning,
    Problems,
    check_tablespace,
    read_partitioning,
)

ANCHOR = date(2026, 10, 15)


def part(
    id: int, parttype: str | None, col: str | None, value: str | None, **kw: Any
) -> PartitionRow:
    row: dict[str, Any] = {
        "id": id,
        "tableid": 2,
        "partcolumnname": col,
        "parttype": parttype,
        "partvalue": value,
        "parttbs": None,
        "subpartcolumnname": None,
        "subparttype": None,
        "subpartvalue": None,
        "subparttbs": None,
        **kw,
    }
    return PartitionRow.from_row(row)


def read(rows: list[PartitionRow], columns: set[str] | None = None) -> tuple[Any, list[str]]:
    checks = Problems()
    return read_partitioning(rows, "s.orders", checks, columns=columns), checks.problems


# --- one MetadataError ---------------------------------------------------------------


def test_there_is_one_metadata_error_and_it_carries_its_problems() -> None:
    assert _names.MetadataError is _errors.MetadataError
    error = _errors.MetadataError("one; two", problems=("one", "two"))
    assert error.problems == ("one", "two")
    assert error.sqlstate == "22023"
    assert _errors.MetadataError("alone").problems == ("alone",)


# --- row readers -----------------------------------------------------------------------


def test_a_row_field_of_the_wrong_type_names_the_table_row_and_field() -> None:
    with pytest.raises(_errors.MetadataError) as caught:
        TableRow.from_row({"id": 9, "scriptid": "two", "schemaname": "s", "tablename": "t"})
    assert caught.value.message == (
        "script_tables row 9, scriptid: 'two' is not an integer; fix the row"
    )


def test_rows_become_typed_metadata_with_their_defaults() -> None:
    meta = ScriptMetadata.from_rows(
        {"id": "4", "description": None, "status": None, "created_date": "2026-10-15 09:30:00+00"},
        tables=[{"id": 1, "scriptid": 4, "schemaname": "s", "tablename": "t", "haspart": "1"}],
        indexes=[{"id": 3, "scriptid": 4, "tableid": 1, "columnnames": '{a,"b"}'}],
    )
    assert (meta.script.id, meta.script.status, meta.script.created_date) == (4, 0, ANCHOR)
    assert (meta.tables[0].haspart, meta.tables[0].status) == (1, 0)
    assert meta.indexes[0].columnnames == ("a", "b")


def test_tablespaces_are_folded_blank_is_the_default_and_pg_global_is_refused() -> None:
    assert check_tablespace(" Cold ", what="w") == "cold"
    assert check_tablespace("  ", what="w") is None
    assert check_tablespace(None, what="w") is None
    with pytest.raises(_errors.MetadataError, match=r"^w: pg_global holds only shared"):
        check_tablespace("PG_GLOBAL", what="w")


# --- the partition reader ----------------------------------------------------------------


def test_a_list_table_is_read_with_each_childs_sub_partitioning() -> None:
    plan, problems = read(
        [
            part(
                1,
                "List",
                "Region",
                "EU",
                subparttype="range",
                subpartcolumnname="day",
                subpartvalue="Month",
                subparttbs=" cold ",
            ),
            part(
                2,
                "list",
                "region",
                "US",
                subparttype="HASH",
                subpartcolumnname="day",
                subpartvalue="4",
            ),
            part(3, "list", "region", "ASIA"),
        ],
        columns={"region", "day"},
    )
    assert problems == []
    assert plan == Partitioning(
        "list",
        "region",
        None,
        None,
        (
            ListPartition(1, "EU", None, "month", "cold"),
            ListPartition(2, "US", None, None, None, 4),
            ListPartition(3, "ASIA", None, None, None),
        ),
        "day",
    )


def test_range_over_hash_and_plain_hash_are_read() -> None:
    plan, problems = read(
        [
            part(
                5,
                "range",
                "day",
                "week",
                subparttype="hash",
                subpartcolumnname="tenant",
                subpartvalue="3",
            )
        ]
    )
    assert problems == []
    assert plan == Partitioning("range", "day", "week", None, (), "tenant", 5, sub_modulus=3)
    plan, problems = read([part(6, "hash", "tenant", "8", parttbs="fast")])
    assert problems == []
    assert plan == Partitioning("hash", "tenant", None, "fast", (), None, 6, modulus=8)


def test_every_problem_is_reported_with_the_row_and_field() -> None:
    plan, problems = read(
        [
            part(
                1,
                "list",
                "region",
                "EU",
                subparttype="range",
                subpartcolumnname="nope",
                subpartvalue="fortnight",
            ),
            part(2, "list", "region", "EU"),
        ],
        columns={"region", "day"},
    )
    assert plan is not None and plan.kind == "list"
    assert [p.split(":")[0] for p in problems] == [
        "script_table_partitions row 1, subpartcolumnname",
        "script_table_partitions row 1, subpartvalue",
        "script_table_partitions row 2, partvalue",
    ]
    assert "'nope' is not a column of s.orders" in problems[0]
    assert "'EU' is also the value of row 1" in problems[2]


def test_columns_are_not_checked_when_the_reader_is_not_given_them() -> None:
    plan, problems = read([part(1, "range", "anything", "day")])
    assert problems == []
    assert plan is not None and plan.column == "anything"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([part(1, "range", "d", "day"), part(2, "list", "d", "x")], "mixes partition types"),
        ([part(1, "interval", "d", "day")], "'interval' is not a partition type"),
    ],
)
def test_rows_that_do_not_say_how_the_table_is_partitioned_give_no_plan(
    rows: list[PartitionRow], expected: str
) -> None:
    plan, problems = read(rows)
    assert plan is None
    assert len(problems) == 1 and expected in problems[0]


def test_problems_can_name_the_script() -> None:
    checks = Problems(prefix="script 4, ")
    read_partitioning([part(1, "range", "d", "fortnight")], "s.t", checks)
    assert checks.problems[0].startswith("script 4, script_table_partitions row 1, partvalue: ")
    with pytest.raises(_errors.MetadataError) as caught:
        checks.raise_any()
    assert caught.value.problems == tuple(checks.problems)


# --- the compiler and maintenance read the same partitioning --------------------------------


def maintenance_rows(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """METADATA_QUERY rows of table 2 (mgttest.orders) for script_table_partitions rows."""
    return [
        {
            "tableid": 2,
            "schemaname": "MgtTest",
            "tablename": "Orders",
            "tenantcolumn": None,
            "tenanttype": None,
            "partid": p["id"],
            **{k: v for k, v in p.items() if k not in ("id", "tableid")},
        }
        for p in parts
    ]


PARTS: list[dict[str, Any]] = [
    {
        "id": 1,
        "tableid": 2,
        "partcolumnname": "Region",
        "parttype": "list",
        "partvalue": "EU",
        "parttbs": None,
        "subpartcolumnname": "OrderDate",
        "subparttype": "range",
        "subpartvalue": "Month",
        "subparttbs": None,
    },
    {
        "id": 2,
        "tableid": 2,
        "partcolumnname": "region",
        "parttype": "list",
        "partvalue": "us-2",
        "parttbs": None,
        "subpartcolumnname": "orderdate",
        "subparttype": "range",
        "subpartvalue": "month",
        "subparttbs": None,
    },
    {
        "id": 3,
        "tableid": 2,
        "partcolumnname": "region",
        "parttype": "list",
        "partvalue": "AP",
        "parttbs": None,
        "subpartcolumnname": "orderdate",
        "subparttype": "hash",
        "subpartvalue": "2",
        "subparttbs": None,
    },
]


def test_maintenance_grows_exactly_the_parents_the_compiler_made_first_partitions_for() -> None:
    meta = ScriptMetadata.from_rows(
        {"id": 1, "description": None, "status": 1, "created_date": "2026-10-15"},
        tables=[
            {
                "id": 2,
                "scriptid": 1,
                "schemaname": "MgtTest",
                "tablename": "Orders",
                "status": 1,
                "haspart": 1,
            }
        ],
        columns=[
            {
                "id": 1,
                "tableid": 2,
                "scriptid": 1,
                "columnname": "region",
                "datatype": "text",
                "status": 1,
            },
            {
                "id": 2,
                "tableid": 2,
                "scriptid": 1,
                "columnname": "orderdate",
                "datatype": "date",
                "status": 1,
            },
        ],
        partitions=PARTS,
    )
    made = {
        s.target for s in compile_script(meta, anchor=ANCHOR).steps if s.kind == "create_partition"
    }
    sets, problems = range_sets(maintenance_rows(PARTS))
    assert problems == []
    # The range parents are list children the compiler made; the period it made
    # first is the one maintenance names for the anchor's month.
    assert sets[0].parent == "orders_region_eu"
    assert len(sets) == 2 and {s.target for s in sets} <= made
    firsts = {f"mgttest.{s.children(ANCHOR, ANCHOR)[0].name}" for s in sets}
    assert "mgttest.orders_region_eu_2026_10" in firsts
    assert len(firsts) == 2 and firsts <= made


def test_maintenance_refuses_a_table_with_every_problem_worded_as_the_compiler_words_it() -> None:
    bad = [{**PARTS[0], "subparttype": "lisst"}, {**PARTS[1], "subpartvalue": "fortnight"}]
    sets, problems = range_sets(maintenance_rows(bad))
    assert sets == []
    assert [p.split(":")[0] for p in problems] == [
        "script_table_partitions row 1, subparttype",
        "script_table_partitions row 2, subpartvalue",
    ]
    assert "'lisst' is not supported; sub-partitions are range or hash partitions" in problems[0]


def test_maintenance_leaves_hash_tables_alone_whatever_their_rows_hold() -> None:
    rows = maintenance_rows(
        [{**PARTS[0], "parttype": "hash", "partvalue": "4", "subparttype": None}]
    )
    assert range_sets(rows) == ([], [])
