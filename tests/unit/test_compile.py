"""The DDL compiler: metadata rows in, ordered DDL steps out."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from admmgt_plpy._compile import (
    CompiledScript,
    ScriptMetadata,
    Validation,
    compile_script,
)
from admmgt_plpy._names import MetadataError

ANCHOR = date(2026, 10, 15)


# --- row builders: dicts shaped like plpy.execute rows -------------------------


def script(id: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "description": f"script {id}",
        "status": 1,
        "created_date": "2026-10-15 09:30:00+00",
        **kw,
    }


def table(id: int, name: str, scriptid: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "scriptid": scriptid,
        "schemaname": "mgttest",
        "tablename": name,
        "status": 1,
        "haspart": 0,
        "lifecycle": None,
        "tblspace": None,
        "hasdefault": 0,
        **kw,
    }


def column(
    id: int, tableid: int, name: str, datatype: str, scriptid: int = 1, **kw: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "tableid": tableid,
        "scriptid": scriptid,
        "columnname": name,
        "datatype": datatype,
        "nullable": 1,
        "defaultval": None,
        "isprimarykey": 0,
        "isidentity": 0,
        "status": 1,
        **kw,
    }


def identity_pk(id: int, tableid: int, scriptid: int = 1) -> dict[str, Any]:
    return column(id, tableid, "id", "bigint", scriptid, nullable=0, isprimarykey=1, isidentity=1)


def fkey(
    id: int, child: str, childcol: str, parent: str, parentcol: str, scriptid: int = 1, **kw: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "scriptid": scriptid,
        "schemaname": "mgttest",
        "childtablename": child,
        "childcolumnname": childcol,
        "parenttablename": parent,
        "parentcolumnname": parentcol,
        "keyorder": 1,
        "delrule": None,
        "novalidate": 0,
        "status": 1,
        "constraintname": None,
        **kw,
    }


def partition(
    id: int, tableid: int, col: str, parttype: str, value: str, **kw: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "tableid": tableid,
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


def change(id: int, tableid: int, col: str, scriptid: int = 2, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "scriptid": scriptid,
        "tableid": tableid,
        "columnname": col,
        "newdatatype": None,
        "usingexpr": None,
        "setnullable": None,
        "setdefault": None,
        "dropdefault": 0,
        "dropcolumn": 0,
        "dropintended": False,
        "status": 1,
        **kw,
    }


def index(id: int, tableid: int, cols: list[str], scriptid: int = 2, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "scriptid": scriptid,
        "tableid": tableid,
        "indexname": None,
        "columnnames": cols,
        "isunique": 0,
        "wherepredicate": None,
        "method": "btree",
        "concurrently": 0,
        "status": 1,
        **kw,
    }


def proc(id: int, stmt: str, scriptid: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "scriptid": scriptid,
        "proccallstmt": stmt,
        "status": 1,
        "steporder": None,
        **kw,
    }


def step(id: int, order: int, sql: str, scriptid: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "scriptid": scriptid,
        "steporder": order,
        "sqltext": sql,
        "transactional": True,
        "description": None,
        "status": 1,
        **kw,
    }


def compiled(script_row: dict[str, Any], anchor: date = ANCHOR, **rows: Any) -> CompiledScript:
    return compile_script(ScriptMetadata.from_rows(script_row, **rows), anchor=anchor)


def problems(script_row: dict[str, Any], **rows: Any) -> tuple[str, ...]:
    with pytest.raises(MetadataError) as caught:
        compiled(script_row, **rows)
    return caught.value.problems


# --- the proof of concept's demo -----------------------------------------------

DEMO_TABLES_1 = [table(1, "customers"), table(2, "orders", haspart=1)]
DEMO_COLUMNS_1 = [
    identity_pk(1, 1),
    column(2, 1, "name", "text", nullable=0),
    column(3, 1, "profile", "jsonb"),
    column(4, 1, "created_at", "timestamptz", nullable=0, defaultval="now()"),
    identity_pk(5, 2),
    column(6, 2, "customerid", "bigint", nullable=0),
    column(7, 2, "region", "text", nullable=0),
    column(8, 2, "orderdate", "date", nullable=0),
    column(9, 2, "amount", "numeric(12,2)", defaultval="0"),
]
DEMO_PARTITIONS_1 = [
    partition(
        1,
        2,
        "region",
        "list",
        "eu",
        subpartcolumnname="orderdate",
        subparttype="range",
        subpartvalue="month",
    ),
    partition(
        2,
        2,
        "region",
        "list",
        "us",
        subpartcolumnname="orderdate",
        subparttype="range",
        subpartvalue="month",
    ),
]


def demo_script_1() -> CompiledScript:
    return compiled(
        script(1),
        tables=DEMO_TABLES_1,
        columns=DEMO_COLUMNS_1,
        partitions=DEMO_PARTITIONS_1,
        fkeys=[fkey(1, "orders", "customerid", "customers", "id", delrule="cascade")],
        procs=[proc(1, "call mgttest.testproc1();")],
    )


def test_demo_script_1_related_tables_composite_partitions_fk_and_proc() -> None:
    result = demo_script_1()
    assert [s.sql for s in result.steps] == [
        'CREATE SCHEMA IF NOT EXISTS "mgttest"',
        'CREATE TABLE "mgttest"."customers" (\n'
        '    "id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n'
        '    "name" text NOT NULL,\n'
        '    "profile" jsonb,\n'
        '    "created_at" timestamptz DEFAULT (now()) NOT NULL,\n'
        '    CONSTRAINT "customers_pkey" PRIMARY KEY ("id")\n'
        ")",
        'CREATE TABLE "mgttest"."orders" (\n'
        '    "id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n'
        '    "customerid" bigint NOT NULL,\n'
        '    "region" text NOT NULL,\n'
        '    "orderdate" date NOT NULL,\n'
        '    "amount" numeric(12,2) DEFAULT (0),\n'
        '    CONSTRAINT "orders_pkey" PRIMARY KEY ("id", "region", "orderdate")\n'
        ') PARTITION BY LIST ("region")',
        'CREATE TABLE "mgttest"."orders_region_eu" PARTITION OF "mgttest"."orders" '
        "FOR VALUES IN ('eu') PARTITION BY RANGE (\"orderdate\")",
        'CREATE TABLE "mgttest"."orders_region_eu_2026_10" PARTITION OF '
        "\"mgttest\".\"orders_region_eu\" FOR VALUES FROM ('2026-10-01') TO ('2026-11-01')",
        'CREATE TABLE "mgttest"."orders_region_us" PARTITION OF "mgttest"."orders" '
        "FOR VALUES IN ('us') PARTITION BY RANGE (\"orderdate\")",
        'CREATE TABLE "mgttest"."orders_region_us_2026_10" PARTITION OF '
        "\"mgttest\".\"orders_region_us\" FOR VALUES FROM ('2026-10-01') TO ('2026-11-01')",
        'ALTER TABLE "mgttest"."orders" ADD CONSTRAINT "orders_customerid_fkey" '
        'FOREIGN KEY ("customerid") REFERENCES "mgttest"."customers" ("id") '
        "ON DELETE CASCADE",
        "call mgttest.testproc1()",
    ]
    assert [(s.kind, s.target) for s in result.steps] == [
        ("create_schema", "mgttest"),
        ("create_table", "mgttest.customers"),
        ("create_table", "mgttest.orders"),
        ("create_partition", "mgttest.orders_region_eu"),
        ("create_partition", "mgttest.orders_region_eu_2026_10"),
        ("create_partition", "mgttest.orders_region_us"),
        ("create_partition", "mgttest.orders_region_us_2026_10"),
        ("foreign_key", "mgttest.orders"),
        ("proc_call", "script_procs row 1"),
    ]
    assert all(s.transactional for s in result.steps)
    assert result.script_id == 1


def test_demo_script_2_adds_a_column_to_an_earlier_table_and_a_new_table() -> None:
    result = compiled(
        script(2),
        tables=[table(3, "invoices", scriptid=2)],
        referenced_tables=[table(2, "orders", haspart=1)],
        columns=[
            column(10, 2, "note", "character varying(200)", scriptid=2, defaultval="'n/a'"),
            column(11, 2, "details", "jsonb", scriptid=2, nullable=0, defaultval="'{}'::jsonb"),
            identity_pk(12, 3, scriptid=2),
            column(13, 3, "customerid", "bigint", scriptid=2, nullable=0),
            column(14, 3, "total", "numeric(12,2)", scriptid=2),
        ],
        fkeys=[fkey(2, "invoices", "customerid", "customers", "id", scriptid=2)],
    )
    assert [s.sql for s in result.steps] == [
        'CREATE SCHEMA IF NOT EXISTS "mgttest"',
        'CREATE TABLE "mgttest"."invoices" (\n'
        '    "id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n'
        '    "customerid" bigint NOT NULL,\n'
        '    "total" numeric(12,2),\n'
        '    CONSTRAINT "invoices_pkey" PRIMARY KEY ("id")\n'
        ")",
        'ALTER TABLE "mgttest"."orders" ADD COLUMN "note" character varying(200) DEFAULT (\'n/a\')',
        'ALTER TABLE "mgttest"."orders" ADD COLUMN "details" jsonb '
        "DEFAULT ('{}'::jsonb) NOT NULL",
        'ALTER TABLE "mgttest"."invoices" ADD CONSTRAINT "invoices_customerid_fkey" '
        'FOREIGN KEY ("customerid") REFERENCES "mgttest"."customers" ("id")',
    ]
    assert [s.kind for s in result.steps] == [
        "create_schema",
        "create_table",
        "add_column",
        "add_column",
        "foreign_key",
    ]


def test_validations_name_every_type_and_expression() -> None:
    result = demo_script_1()
    names_only = ("table", "relation", "value", "constraint")
    values = tuple(v for v in result.validations if v.kind not in names_only)
    assert values[:5] == (
        Validation(
            "datatype",
            "bigint",
            "script 1, script_table_columns row 1, datatype",
            "mgttest.customers",
        ),
        Validation(
            "datatype",
            "text",
            "script 1, script_table_columns row 2, datatype",
            "mgttest.customers",
        ),
        Validation(
            "datatype",
            "jsonb",
            "script 1, script_table_columns row 3, datatype",
            "mgttest.customers",
        ),
        Validation(
            "datatype",
            "timestamptz",
            "script 1, script_table_columns row 4, datatype",
            "mgttest.customers",
        ),
        Validation(
            "default",
            "now()",
            "script 1, script_table_columns row 4, defaultval",
            "mgttest.customers",
            "timestamptz",
            "created_at",
            (("id", "bigint"), ("name", "text"), ("profile", "jsonb")),
        ),
    )
    kinds = [(v.kind, v.text) for v in values]
    assert kinds.count(("datatype", "bigint")) == 3
    assert ("default", "0") in kinds
    assert len(kinds) == 11
    # issue 20: every relation the script creates is checked for on the template
    names = [(v.kind, v.target, v.text) for v in result.validations if v not in values]
    assert ("table", "mgttest", "customers") in names
    assert ("relation", "mgttest", "customers_pkey") in names
    assert ("table", "mgttest", "orders_region_eu_2026_10") in names
    # ... and every partition bound against its column's type
    assert ("value", "mgttest.orders", "'eu'") in names
    assert ("value", "mgttest.orders", "'us'") in names
    assert ("constraint", "mgttest.orders", "orders_customerid_fkey") in names


def test_checksum_is_stable_and_depends_on_anchor_and_metadata() -> None:
    first = demo_script_1()
    assert demo_script_1().checksum == first.checksum
    assert len(first.checksum) == 64
    # Same month, same partitions: same SQL, same checksum.
    later_in_month = compiled(
        script(1),
        anchor=date(2026, 10, 31),
        tables=DEMO_TABLES_1,
        columns=DEMO_COLUMNS_1,
        partitions=DEMO_PARTITIONS_1,
        fkeys=[fkey(1, "orders", "customerid", "customers", "id", delrule="cascade")],
        procs=[proc(1, "call mgttest.testproc1()")],
    )
    assert later_in_month.checksum == first.checksum
    next_month = compiled(
        script(1),
        anchor=date(2026, 11, 1),
        tables=DEMO_TABLES_1,
        columns=DEMO_COLUMNS_1,
        partitions=DEMO_PARTITIONS_1,
    )
    assert next_month.checksum != first.checksum
    assert "FROM ('2026-11-01') TO ('2026-12-01')" in next_month.steps[4].sql


# --- partitions ------------------------------------------------------------------


def test_range_partition_with_default_and_tablespaces() -> None:
    result = compiled(
        script(3),
        tables=[table(5, "Events", scriptid=3, haspart=1, hasdefault=1, tblspace="fast")],
        columns=[
            column(20, 5, "id", "bigint", scriptid=3, isprimarykey=1),
            column(21, 5, "happened_on", "date", scriptid=3, nullable=0),
        ],
        partitions=[partition(7, 5, "happened_on", "RANGE", "Quarter", parttbs="cold")],
    )
    assert [s.sql for s in result.steps[1:]] == [
        'CREATE TABLE "mgttest"."events" (\n'
        '    "id" bigint NOT NULL,\n'
        '    "happened_on" date NOT NULL,\n'
        '    CONSTRAINT "events_pkey" PRIMARY KEY ("id", "happened_on")\n'
        ') PARTITION BY RANGE ("happened_on")',
        # a partitioned table takes its tablespace this way (see the next test)
        'ALTER TABLE "mgttest"."events" SET TABLESPACE "fast"',
        'CREATE TABLE "mgttest"."events_2026_10" PARTITION OF "mgttest"."events" '
        "FOR VALUES FROM ('2026-10-01') TO ('2027-01-01') TABLESPACE \"cold\"",
        'CREATE TABLE "mgttest"."events_default" PARTITION OF "mgttest"."events" DEFAULT',
    ]
    assert [v for v in result.validations if v.kind == "tablespace"] == [
        Validation(
            "tablespace", "fast", "script 3, script_tables row 5, tblspace", "mgttest.events"
        ),
        Validation(
            "tablespace",
            "cold",
            "script 3, script_table_partitions row 7, parttbs",
            "mgttest.events",
        ),
    ]


def test_the_poc_demos_pg_default_goes_where_postgresql_accepts_it() -> None:
    """PostgreSQL refuses TABLESPACE <the database's default> on a partitioned
    relation (0A000), so partitioned relations get ALTER TABLE ... SET TABLESPACE
    (accepted for every tablespace), and leaves keep the clause."""
    result = compiled(
        script(1),
        tables=[table(1, "test_table", haspart=1, tblspace="pg_default")],
        columns=[
            column(1, 1, "id", "bigint", isprimarykey=1, isidentity=1, nullable=0),
            column(5, 1, "status", "varchar(1)", nullable=0),
            column(6, 1, "inactive_date", "timestamp"),
        ],
        partitions=[
            partition(1, 1, "status", "list", "A", parttbs="pg_default"),
            partition(
                2,
                1,
                "status",
                "list",
                "X",
                subpartcolumnname="INACTIVE_DATE",
                subparttype="RANGE",
                subpartvalue="quarter",
                parttbs="pg_default",
                subparttbs="pg_default",
            ),
        ],
    )
    assert [s.sql for s in result.steps[2:]] == [
        'ALTER TABLE "mgttest"."test_table" SET TABLESPACE "pg_default"',
        'CREATE TABLE "mgttest"."test_table_status_a" PARTITION OF "mgttest"."test_table" '
        "FOR VALUES IN ('A') TABLESPACE \"pg_default\"",
        'CREATE TABLE "mgttest"."test_table_status_x" PARTITION OF "mgttest"."test_table" '
        "FOR VALUES IN ('X') PARTITION BY RANGE (\"inactive_date\")",
        'ALTER TABLE "mgttest"."test_table_status_x" SET TABLESPACE "pg_default"',
        'CREATE TABLE "mgttest"."test_table_status_x_2026_10" PARTITION OF '
        "\"mgttest\".\"test_table_status_x\" FOR VALUES FROM ('2026-10-01') TO ('2027-01-01') "
        'TABLESPACE "pg_default"',
    ]
    assert result.steps[1].sql.endswith('PARTITION BY LIST ("status")')
    assert [s.kind for s in result.steps].count("set_tablespace") == 2


@pytest.mark.parametrize(
    ("interval", "child", "lo", "hi"),
    [
        ("day", "t_2026_10_15", "2026-10-15", "2026-10-16"),
        ("week", "t_2026_10_12", "2026-10-12", "2026-10-19"),
        ("year", "t_2026_01", "2026-01-01", "2027-01-01"),
    ],
)
def test_range_intervals(interval: str, child: str, lo: str, hi: str) -> None:
    result = compiled(
        script(1),
        tables=[table(1, "t", haspart=1)],
        columns=[column(1, 1, "d", "date")],
        partitions=[partition(1, 1, "d", "range", interval)],
    )
    assert result.steps[-1].sql == (
        f'CREATE TABLE "mgttest"."{child}" PARTITION OF "mgttest"."t" '
        f"FOR VALUES FROM ('{lo}') TO ('{hi}')"
    )
    # No primary key column: no primary key, and the partition column stays nullable.
    assert (
        result.steps[1].sql
        == 'CREATE TABLE "mgttest"."t" (\n    "d" date\n) PARTITION BY RANGE ("d")'
    )


def test_composite_default_partitions_and_unpartitioned_list_child() -> None:
    result = compiled(
        script(1),
        tables=[table(2, "orders", haspart=1, hasdefault=1)],
        columns=[column(1, 2, "region", "text"), column(2, 2, "orderdate", "date")],
        partitions=[
            partition(
                1,
                2,
                "region",
                "list",
                "EU",
                parttbs="ts1",
                subpartcolumnname="orderdate",
                subparttype="range",
                subpartvalue="month",
                subparttbs="ts2",
            ),
            partition(2, 2, "region", "list", "o'hara"),
        ],
    )
    assert [s.sql for s in result.steps[2:]] == [
        'CREATE TABLE "mgttest"."orders_region_eu" PARTITION OF "mgttest"."orders" '
        "FOR VALUES IN ('EU') PARTITION BY RANGE (\"orderdate\")",
        'ALTER TABLE "mgttest"."orders_region_eu" SET TABLESPACE "ts1"',
        'CREATE TABLE "mgttest"."orders_region_eu_2026_10" PARTITION OF '
        "\"mgttest\".\"orders_region_eu\" FOR VALUES FROM ('2026-10-01') TO ('2026-11-01') "
        'TABLESPACE "ts2"',
        'CREATE TABLE "mgttest"."orders_region_eu_default" PARTITION OF '
        '"mgttest"."orders_region_eu" DEFAULT TABLESPACE "ts2"',
        'CREATE TABLE "mgttest"."orders_region_o_hara_c9f1d01b" PARTITION OF '
        "\"mgttest\".\"orders\" FOR VALUES IN ('o''hara')",
        'CREATE TABLE "mgttest"."orders_default" PARTITION OF "mgttest"."orders" DEFAULT',
    ]


@pytest.mark.parametrize(
    ("tables", "partitions", "expected"),
    [
        (
            [table(2, "orders", haspart=1)],
            [
                partition(1, 2, "region", "list", "eu"),
                partition(2, 2, "orderdate", "range", "month"),
            ],
            "script 1, script_table_partitions row 1, parttype: table mgttest.orders mixes "
            "partition types ['list', 'range'] in rows 1, 2; use either one range row or "
            "list rows",
        ),
        (
            [table(2, "orders", haspart=1)],
            [
                partition(1, 2, "orderdate", "range", "month"),
                partition(2, 2, "region", "range", "month"),
            ],
            "script 1, script_table_partitions row 1, partcolumnname: table mgttest.orders "
            "is partitioned by different columns ['orderdate', 'region'] in rows 1, 2; use "
            "one column\n"
            "script 1, script_table_partitions row 2, parttype: range-partitioned table "
            "mgttest.orders has 2 script_table_partitions rows (1, 2); keep exactly one",
        ),
        (
            [table(2, "orders", haspart=1)],
            [partition(1, 2, "orderdate", "range", "fortnight")],
            "script 1, script_table_partitions row 1, partvalue: 'fortnight' is not a "
            "partition interval; use one of day, week, month, quarter, year",
        ),
        (
            [table(2, "orders", haspart=1)],
            [partition(1, 2, "orderdate", "interval", "4")],
            "script 1, script_table_partitions row 1, parttype: 'interval' is not a partition "
            "type; use range, list or hash",
        ),
        (
            [table(2, "orders", haspart=1)],
            [partition(1, 2, "region", "hash", "4; drop table x")],
            "script 1, script_table_partitions row 1, partvalue: '4; drop table x' is not a "
            "hash modulus; give the number of hash partitions, a whole number from 2 to 256, "
            "e.g. '4'",
        ),
        (
            [table(2, "orders", haspart=1, hasdefault=1)],
            [partition(1, 2, "region", "hash", "1")],
            "script 1, script_table_partitions row 1, partvalue: '1' is not a hash modulus; "
            "give the number of hash partitions, a whole number from 2 to 256, e.g. '4'\n"
            "script 1, script_tables row 2, hasdefault: table mgttest.orders is "
            "hash-partitioned, and a hash-partitioned table cannot have a default partition; "
            "set hasdefault to 0",
        ),
        (
            [table(2, "orders", haspart=1)],
            [
                partition(
                    1,
                    2,
                    "orderdate",
                    "range",
                    "month",
                    subpartcolumnname="region",
                    subparttype="range",
                    subpartvalue="month",
                )
            ],
            "script 1, script_table_partitions row 1, subparttype: 'range' is not supported "
            "under range partitions; use hash (subparttype hash, the modulus in "
            "subpartvalue), or partition by list\n"
            "script 1, script_table_partitions row 1, subpartvalue: 'month' is not a hash "
            "modulus; give the number of hash partitions, a whole number from 2 to 256, "
            "e.g. '4'",
        ),
        (
            [table(2, "orders", haspart=1)],
            [],
            "script 1, script_tables row 2, haspart: table mgttest.orders has haspart = 1 "
            "but no script_table_partitions rows; add them or set haspart to 0",
        ),
        (
            [table(2, "orders")],
            [partition(1, 2, "orderdate", "range", "month")],
            "script 1, script_tables row 2, haspart: table mgttest.orders has "
            "script_table_partitions rows but haspart is 0; set haspart to 1 or delete "
            "the rows",
        ),
        (
            [table(2, "orders", haspart=1)],
            [partition(1, 2, "shipdate", "range", "month")],
            "script 1, script_table_partitions row 1, partcolumnname: 'shipdate' is not a "
            "column of mgttest.orders; name one of its columns",
        ),
        (
            [table(2, "orders", haspart=1)],
            [
                partition(
                    1,
                    2,
                    "region",
                    "list",
                    "eu",
                    subpartcolumnname="orderdate",
                    subparttype="list",
                    subpartvalue="month",
                )
            ],
            "script 1, script_table_partitions row 1, subparttype: 'list' is not supported; "
            "sub-partitions are range or hash partitions (subparttype range or hash)",
        ),
        (
            [table(2, "orders", haspart=1)],
            [partition(1, 2, "region", "list", "EU"), partition(2, 2, "region", "list", "eu")],
            # EU and eu are distinct list values but fold to one partition name.
            "script 1, script_table_partitions row 2: the name mgttest.orders_region_eu is "
            "also the name of script_table_partitions row 1; give one of them another name",
        ),
    ],
)
def test_inconsistent_partition_rows_are_refused(
    tables: list[dict[str, Any]], partitions: list[dict[str, Any]], expected: str
) -> None:
    cols = [column(1, 2, "region", "text"), column(2, 2, "orderdate", "date")]
    found = problems(script(1), tables=tables, columns=cols, partitions=partitions)
    assert found == tuple(expected.split("\n"))


# --- column changes --------------------------------------------------------------

ORDERS = table(2, "orders", haspart=1)
CUSTOMERS = table(1, "customers")


def test_alter_column_actions_in_one_statement_then_drops_last() -> None:
    result = compiled(
        script(7),
        referenced_tables=[ORDERS, CUSTOMERS],
        column_changes=[
            change(1, 2, "note", scriptid=7, dropcolumn=1, dropintended=True),
            change(
                2,
                2,
                "Amount",
                scriptid=7,
                newdatatype="numeric(14,2)",
                usingexpr="amount::numeric(14,2)",
                setdefault="0",
                setnullable=0,
            ),
            change(3, 1, "profile", scriptid=7, dropdefault=1, setnullable=1),
        ],
    )
    assert [(s.kind, s.sql, s.note) for s in result.steps] == [
        (
            "alter_column",
            'ALTER TABLE "mgttest"."orders" ALTER COLUMN "amount" TYPE numeric(14,2) USING '
            '(amount::numeric(14,2)), ALTER COLUMN "amount" SET DEFAULT (0), '
            'ALTER COLUMN "amount" SET NOT NULL',
            "changes the type of mgttest.orders.amount; this may rewrite the table",
        ),
        (
            "alter_column",
            'ALTER TABLE "mgttest"."customers" ALTER COLUMN "profile" DROP DEFAULT, '
            'ALTER COLUMN "profile" DROP NOT NULL',
            None,
        ),
        (
            "drop_column",
            'ALTER TABLE "mgttest"."orders" DROP COLUMN "note"',
            "drops column mgttest.orders.note and its data (script_column_changes row 1)",
        ),
    ]
    assert [(v.kind, v.text, v.datatype) for v in result.validations] == [
        ("datatype", "numeric(14,2)", None),
        ("using", "amount::numeric(14,2)", "numeric(14,2)"),
        ("default", "0", "numeric(14,2)"),
    ]


def test_drop_column_needs_dropintended() -> None:
    found = problems(
        script(7),
        referenced_tables=[ORDERS],
        column_changes=[change(4, 2, "note", scriptid=7, dropcolumn=1)],
    )
    assert found == (
        "script 7, script_column_changes row 4, dropintended: script 7 drops column "
        "orders.note but dropintended is not set; set it to true to confirm",
    )


def test_column_change_rows_that_conflict_or_do_nothing() -> None:
    found = problems(
        script(7),
        referenced_tables=[ORDERS],
        column_changes=[
            change(1, 2, "note", scriptid=7, dropcolumn=1, dropintended=True, newdatatype="text"),
            change(2, 2, "note", scriptid=7),
            change(3, 2, "note", scriptid=7, setdefault="1", dropdefault=1),
            change(4, 2, "note", scriptid=7, usingexpr="1"),
            change(5, 99, "note", scriptid=7, setnullable=1),
            change(6, 2, "note", scriptid=7, setnullable=2),
        ],
    )
    assert found == (
        "script 7, script_column_changes row 2, columnname: the row changes nothing about "
        "mgttest.orders.note; set newdatatype, setnullable, setdefault, dropdefault or "
        "dropcolumn",
        "script 7, script_column_changes row 3, dropdefault: the row both sets and drops "
        "the default; clear setdefault or set dropdefault to 0",
        "script 7, script_column_changes row 4, usingexpr: '1' is given without "
        "newdatatype; set newdatatype or clear usingexpr",
        "script 7, script_column_changes row 4, columnname: the row changes nothing about "
        "mgttest.orders.note; set newdatatype, setnullable, setdefault, dropdefault or "
        "dropcolumn",
        "script 7, script_column_changes row 5, tableid: 99 is not a script_tables row of "
        "this script or an earlier one; fix tableid",
        "script 7, script_column_changes row 6, setnullable: 2 is not a flag; use 0 or 1",
        "script 7, script_column_changes row 1, dropcolumn: a row that drops column "
        "mgttest.orders.note cannot also change it; clear the other fields",
    )


def test_add_column_refuses_primary_key_and_notes_not_null_without_default() -> None:
    found = problems(
        script(2),
        referenced_tables=[ORDERS],
        columns=[column(10, 2, "code", "text", scriptid=2, isprimarykey=1)],
    )
    assert found == (
        "script 2, script_table_columns row 10, isprimarykey: column 'code' is added to "
        "existing table mgttest.orders, and a primary key cannot be extended by adding a "
        "column; set isprimarykey to 0",
    )
    result = compiled(
        script(2),
        referenced_tables=[ORDERS],
        columns=[column(10, 2, "code", "text", scriptid=2, nullable=0)],
    )
    assert result.steps[0].note == (
        "NOT NULL without a default: fails on every database where mgttest.orders has rows"
    )


# --- foreign keys ----------------------------------------------------------------


def test_foreign_keys_grouped_ordered_and_named() -> None:
    result = compiled(
        script(4),
        fkeys=[
            fkey(
                5,
                "shipments",
                "order_region",
                "orders",
                "region",
                scriptid=4,
                keyorder=2,
                delrule="set  null",
                novalidate=1,
            ),
            fkey(
                4,
                "shipments",
                "order_id",
                "orders",
                "id",
                scriptid=4,
                keyorder=1,
                delrule="SET NULL",
                novalidate=1,
            ),
            fkey(
                6,
                "shipments",
                "return_id",
                "orders",
                "id",
                scriptid=4,
                constraintname="Shipments_Return_FK",
            ),
            fkey(7, "audit", "customerid", "customers", "id", scriptid=4, delrule="restrict"),
            fkey(8, "audit", "customerid", "customers", "id", scriptid=4, status=0),
        ],
    )
    assert [s.sql for s in result.steps] == [
        'ALTER TABLE "mgttest"."audit" ADD CONSTRAINT "audit_customerid_fkey" FOREIGN KEY '
        '("customerid") REFERENCES "mgttest"."customers" ("id") ON DELETE RESTRICT',
        'ALTER TABLE "mgttest"."shipments" ADD CONSTRAINT "shipments_order_id_fkey" '
        'FOREIGN KEY ("order_id", "order_region") REFERENCES "mgttest"."orders" '
        '("id", "region") ON DELETE SET NULL NOT VALID',
        'ALTER TABLE "mgttest"."shipments" ADD CONSTRAINT "shipments_return_fk" '
        'FOREIGN KEY ("return_id") REFERENCES "mgttest"."orders" ("id")',
    ]


def test_foreign_key_problems() -> None:
    found = problems(
        script(4),
        tables=[table(3, "parts", scriptid=4, haspart=1)],
        columns=[column(1, 3, "d", "date", scriptid=4)],
        partitions=[partition(1, 3, "d", "range", "month")],
        fkeys=[
            fkey(1, "a", "x", "b", "y", scriptid=4, delrule="cascade; drop table b"),
            fkey(2, "c", "x", "d", "y", scriptid=4, keyorder=1),
            fkey(3, "c", "z", "d", "w", scriptid=4, keyorder=1),
            fkey(4, "parts", "x", "b", "y", scriptid=4, novalidate=1),
        ],
    )
    assert found == (
        "script 4, script_table_fkeys row 1, delrule: 'cascade; drop table b' is not a "
        "delete rule; use one of NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT or "
        "leave it empty",
        "script 4, script_table_fkeys row 2, keyorder: the key mgttest.c -> d has rows 2, 3 "
        "with keyorder [1, 1]; give each column of a multi-column key its own keyorder",
        "script 4, script_table_fkeys row 4, novalidate: mgttest.parts is partitioned, and "
        "PostgreSQL 15 cannot add a NOT VALID foreign key to a partitioned table; set "
        "novalidate to 0",
    )


# --- indexes ---------------------------------------------------------------------


def test_indexes() -> None:
    result = compiled(
        script(2),
        referenced_tables=[ORDERS, CUSTOMERS],
        indexes=[
            index(1, 2, ["CustomerId", "orderdate"]),
            index(
                2,
                1,
                ["name"],
                isunique=1,
                indexname="customers_name_uq",
                wherepredicate="name <> ''",
                method="BTREE",
            ),
            index(3, 1, ["profile"], method="gin", concurrently=1),
        ],
    )
    assert [(s.sql, s.transactional) for s in result.steps] == [
        (
            'CREATE INDEX "orders_customerid_orderdate_idx" ON '
            '"mgttest"."orders" USING btree ("customerid", "orderdate")',
            True,
        ),
        (
            'CREATE UNIQUE INDEX "customers_name_uq" ON "mgttest"."customers" '
            "USING btree (\"name\") WHERE (name <> '')",
            True,
        ),
        (
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "customers_profile_idx" ON '
            '"mgttest"."customers" USING gin ("profile")',
            False,
        ),
    ]
    assert result.steps[2].note == (
        "runs outside the script's transaction; a failed build leaves an INVALID index "
        "mgttest.customers_profile_idx that IF NOT EXISTS would skip, so drop it before a "
        "retry"
    )
    assert [v.what for v in result.validations if v.kind == "column"][:2] == [
        "script 2, script_indexes row 1, columnnames[1]",
        "script 2, script_indexes row 1, columnnames[2]",
    ]
    assert [v for v in result.validations if v.kind not in ("relation", "column")] == [
        Validation(
            "predicate",
            "name <> ''",
            "script 2, script_indexes row 2, wherepredicate",
            "mgttest.customers",
        ),
    ]
    assert [v.text for v in result.validations if v.kind == "relation"] == [
        "orders_customerid_orderdate_idx",
        "customers_name_uq",
        "customers_profile_idx",
    ]


def test_index_problems() -> None:
    found = problems(
        script(2),
        referenced_tables=[ORDERS],
        indexes=[
            index(1, 2, ["region"], concurrently=1),
            index(2, 2, ["region"], method="rum"),
            index(3, 2, ["region"], wherepredicate="true) ; drop table x; --"),
            index(4, 2, []),
            index(5, 2, ["a b"]),
        ],
    )
    assert found == (
        "script 2, script_indexes row 1, concurrently: mgttest.orders is partitioned, and "
        "PostgreSQL cannot build an index CONCURRENTLY on a partitioned table; set "
        "concurrently to 0, or build it per partition with script_steps",
        "script 2, script_indexes row 2, method: 'rum' is not an index method; use one of "
        "btree, hash, gin, gist, brin, spgist",
        "script 2, script_indexes row 2: the name mgttest.orders_region_idx is also the "
        "name of script_indexes row 1; give one of them another name",
        "script 2, script_indexes row 3: the name mgttest.orders_region_idx is also the "
        "name of script_indexes row 1; give one of them another name",
        "script 2, script_indexes row 3, wherepredicate: 'true) ; drop table x; --' is "
        "refused as an SQL expression: it has an unmatched ')'; write one expression, with "
        "no ';', top-level ',', subquery, parameter or comments outside quotes",
        "script 2, script_indexes row 4, columnnames: the index has no columns; list the "
        "column names to index",
        "script 2, script_indexes row 5, columnnames[1]: 'a b' is not a valid identifier: "
        "it contains ' '; use 1 to 63 bytes of letters, digits, _ or $, starting with a "
        "letter or _",
    )


# --- procs and raw SQL steps -----------------------------------------------------


def test_procs_and_steps_merge_on_steporder() -> None:
    body = (
        "CREATE FUNCTION mgttest.touch() RETURNS trigger LANGUAGE plpgsql AS $f$\n"
        "BEGIN NEW.modified := now(); RETURN NEW; END\n$f$;"
    )
    result = compiled(
        script(1),
        procs=[proc(1, "call mgttest.last()"), proc(2, "call mgttest.second()", steporder=20)],
        steps=[
            step(3, 10, body, description="trigger function"),
            step(4, 20, "CREATE VIEW mgttest.v AS SELECT 1 AS one"),
            step(5, 30, "VACUUM ANALYZE mgttest.orders", transactional=False),
            step(6, 5, "select 'designing'", status=0),
        ],
    )
    assert [(s.kind, s.target, s.transactional, s.note) for s in result.steps] == [
        ("sql", "script_steps row 3", True, "trigger function"),
        ("proc_call", "script_procs row 2", True, None),
        ("sql", "script_steps row 4", True, None),
        (
            "sql",
            "script_steps row 5",
            False,
            "runs outside the script's transaction; declared idempotent by the DBA",
        ),
        ("proc_call", "script_procs row 1", True, None),
    ]
    assert result.steps[0].sql == body[:-1]


def test_multiple_statements_are_refused() -> None:
    found = problems(
        script(1),
        procs=[proc(1, "call a(); call b()")],
        steps=[step(2, 1, "select 1; drop table x")],
    )
    assert found == (
        "script 1, script_procs row 1, proccallstmt: 'call a(); call b()' is refused as an "
        "SQL statement: it contains more than one statement (a ';' outside quotes); give "
        "exactly one statement, with no comments outside quotes, and split several "
        "statements into separate rows",
        "script 1, script_steps row 2, sqltext: 'select 1; drop table x' is refused as an "
        "SQL statement: it contains more than one statement (a ';' outside quotes); give "
        "exactly one statement, with no comments outside quotes, and split several "
        "statements into separate rows",
    )


# --- hostile and inconsistent metadata: all problems at once ---------------------


def test_all_problems_of_a_script_are_reported_together() -> None:
    with pytest.raises(MetadataError) as caught:
        compiled(
            script(4),
            tables=[
                table(12, 'orders"; drop table x; --', scriptid=4),
                table(13, "fine", scriptid=4, schemaname="my schema"),
            ],
            columns=[
                column(30, 12, "id", "bigint); drop table x; --", scriptid=4),
                column(31, 12, "note", "text", scriptid=4, defaultval="0); drop table x; --"),
                column(32, 13, "id", "bigint", scriptid=4, isidentity=1, defaultval="1"),
            ],
        )
    error = caught.value
    assert error.problems == (
        "script 4, script_tables row 12, tablename: 'orders\"; drop table x; --' is not a "
        "valid identifier: it contains '\"'; use 1 to 63 bytes of letters, digits, _ or $, "
        "starting with a letter or _",
        "script 4, script_tables row 13, schemaname: 'my schema' is not a valid identifier: "
        "it contains ' '; use 1 to 63 bytes of letters, digits, _ or $, starting with a "
        "letter or _",
        "script 4, script_table_columns row 30, datatype: 'bigint); drop table x; --' is "
        "not a data type: it contains ';'; use letters, digits, spaces and _ . , ( ) [ ] \" "
        "only, e.g. numeric(12,2) or text[]",
        "script 4, script_table_columns row 31, defaultval: '0); drop table x; --' is "
        "refused as an SQL expression: it has an unmatched ')'; write one expression, with "
        "no ';', top-level ',', subquery, parameter or comments outside quotes",
        "script 4, script_table_columns row 32, defaultval: '1' is set on an identity "
        "column; clear defaultval or isidentity",
    )
    assert error.message == (
        "script 4 cannot be compiled, 5 problems in its metadata:\n" + "\n".join(error.problems)
    )
    assert error.hint == "fix the rows listed, then apply the script again"


def test_rows_still_designing_are_skipped() -> None:
    result = compiled(
        script(1),
        tables=[table(1, "t"), table(2, "draft; not checked", status=0)],
        columns=[
            column(1, 1, "a", "int"),
            column(2, 1, "b", "not; checked", status=0),
            column(3, 2, "c", "int", status=0),
        ],
        partitions=[partition(1, 2, "c", "range", "month")],
        procs=[proc(1, "not; checked", status=0)],
    )
    assert [s.sql for s in result.steps] == [
        'CREATE SCHEMA IF NOT EXISTS "mgttest"',
        'CREATE TABLE "mgttest"."t" (\n    "a" int\n)',
    ]


def test_references_to_tables_still_designing_or_of_other_scripts() -> None:
    found = problems(
        script(3),
        tables=[table(1, "t", scriptid=3, status=0), table(2, "u", scriptid=2)],
        referenced_tables=[table(5, "later", scriptid=4)],
        columns=[column(1, 1, "a", "int", scriptid=3), column(2, 5, "a", "int", scriptid=3)],
    )
    assert found == (
        "script 3, script_tables row 2, scriptid: the row belongs to script 2, not 3; "
        "pass it as a referenced table",
        "script 3, script_tables row 5, scriptid: the table belongs to script 4, which is "
        "not earlier than script 3; refer only to tables of earlier scripts",
        "script 3, script_table_columns row 1, tableid: 1 is a table still being designed "
        "(status 0); set the table row to status 1 or set this row to status 0",
        "script 3, script_table_columns row 2, tableid: 5 is not a script_tables row of "
        "this script or an earlier one; fix tableid",
    )


def test_rows_from_plpy_with_text_dates_arrays_and_booleans() -> None:
    meta = ScriptMetadata.from_rows(
        {"id": 9, "description": None, "status": 1, "created_date": "2026-10-15 23:59:59.123+02"},
        indexes=[
            {"id": 1, "scriptid": 9, "tableid": 2, "columnnames": "{region,orderdate}", "status": 1}
        ],
        column_changes=[
            {
                "id": 1,
                "scriptid": 9,
                "tableid": 2,
                "columnname": "x",
                "dropcolumn": 1,
                "dropintended": "t",
                "status": 1,
            }
        ],
        referenced_tables=[table(2, "orders")],
    )
    assert meta.script.created_date == date(2026, 10, 15)
    assert meta.indexes[0].columnnames == ("region", "orderdate")
    assert meta.column_changes[0].dropintended is True
    result = compile_script(meta, anchor=ANCHOR)
    assert [s.kind for s in result.steps] == ["drop_column", "create_index"]
    with pytest.raises(MetadataError, match=r"script_tables row 3, haspart: 'yes' is not an"):
        ScriptMetadata.from_rows(script(1), tables=[table(3, "t", haspart="yes")])


def test_a_blank_or_padded_index_name_is_refused_not_replaced() -> None:
    # issue 20: '' used to become orders_region_idx, ' x ' became x
    found = problems(
        script(2),
        referenced_tables=[ORDERS],
        indexes=[
            index(1, 2, ["region"], indexname=""),
            index(2, 2, ["region"], indexname=" by_region "),
        ],
    )
    assert found == (
        "script 2, script_indexes row 1, indexname: '' is not a name: it is blank; give the "
        "name exactly, or NULL to let admmgt name it",
        "script 2, script_indexes row 2, indexname: ' by_region ' is not a name: it has "
        "spaces around it; give the name exactly, or NULL to let admmgt name it",
    )


def test_every_expression_is_emitted_in_parentheses() -> None:
    # issue 20: a balanced, ;-free text cannot end its clause or start another item
    result = compile_script(
        ScriptMetadata.from_rows(
            script(2),
            referenced_tables=[ORDERS],
            columns=[column(9, 2, "note", "text", scriptid=2, defaultval="'a, b'")],
            indexes=[index(1, 2, ["region"], wherepredicate="region <> 'x'")],
        ),
        anchor=ANCHOR,
    )
    sql = [step.sql for step in result.steps]
    assert sql[0].endswith("ADD COLUMN \"note\" text DEFAULT ('a, b')")
    assert sql[1].endswith("WHERE (region <> 'x')")


def test_pg_global_which_the_proof_of_concept_ignored_is_refused_with_what_to_write() -> None:
    with pytest.raises(MetadataError) as failure:
        compiled(
            script(1),
            tables=[table(1, "t", haspart=1, tblspace="pg_global")],
            columns=[column(1, 1, "d", "date", nullable=0)],
            partitions=[partition(1, 1, "d", "range", "month", parttbs="pg_global")],
        )
    message = failure.value.message
    assert "script 1, script_tables row 1, tblspace: pg_global holds only shared" in message
    assert "script 1, script_table_partitions row 1, parttbs: pg_global" in message
    assert "write pg_default (or leave it empty)" in message
