"""Tenant-scoped tables and hash partitions in the compiler, rollback and maintenance (pure)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from admmgt_plpy._partition_plan import create_statements, range_sets
from admmgt_plpy._rollback import rollback_steps
from admmgt_plpy._scripts import metadata_checksum
from admmgt_plpy._tenancy import check_tenant_type
from tests.unit.test_compile import column, compiled, partition, problems, script, table
from tests.unit.test_maintenance import row as maintenance_row

POLICY_TEST = (
    "\"tenant_id\" = (SELECT NULLIF(pg_catalog.current_setting('app.current_tenant_id', true),"
    " '')::bigint)"
)


def notes(**kw: Any) -> dict[str, Any]:
    return table(2, "notes", **{"tenantcolumn": "tenant_id", "tenanttype": "BIGINT", **kw})


def test_a_tenant_scoped_table_gets_its_key_forced_rls_a_policy_and_the_context() -> None:
    result = compiled(script(1), tables=[notes()], columns=[column(1, 2, "body", "text")])
    assert [(s.kind, s.sql) for s in result.steps] == [
        ("create_schema", 'CREATE SCHEMA IF NOT EXISTS "mgttest"'),
        (
            "create_table",
            'CREATE TABLE "mgttest"."notes" (\n    "tenant_id" bigint NOT NULL,\n'
            '    "body" text\n)',
        ),
        (
            "create_index",
            'CREATE INDEX IF NOT EXISTS "notes_tenant_id_idx" ON "mgttest"."notes" USING btree '
            '("tenant_id")',
        ),
        (
            "enable_rls",
            'ALTER TABLE "mgttest"."notes" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
        ),
        (
            "create_policy",
            'CREATE POLICY "notes_tenant_isolation" ON "mgttest"."notes" AS PERMISSIVE FOR ALL '
            f"TO PUBLIC USING ({POLICY_TEST}) WITH CHECK ({POLICY_TEST})",
        ),
        ("tenant_context", result.steps[-1].sql),
    ]
    context = result.steps[-1].sql
    assert context.startswith(
        'CREATE OR REPLACE FUNCTION "mgttest"."set_tenant_context"(tenant_id bigint, '
        "is_local boolean DEFAULT true) RETURNS void LANGUAGE plpgsql"
    )
    assert "pg_catalog.set_config('app.current_tenant_id', tenant_id::text, is_local)" in context
    assert ("datatype", "bigint") in {(v.kind, v.text) for v in result.validations}


def test_the_key_leads_the_primary_key_and_a_declared_key_column_is_made_not_null() -> None:
    result = compiled(
        script(1),
        tables=[notes()],
        columns=[
            column(1, 2, "id", "bigint", isprimarykey=1),
            column(2, 2, "tenant_id", "int8", defaultval="0"),
        ],
    )
    create = result.steps[1].sql
    assert '"tenant_id" int8 DEFAULT (0) NOT NULL' in create
    assert 'PRIMARY KEY ("tenant_id", "id")' in create
    assert create.count('"tenant_id"') == 2  # not added a second time
    assert "create_index" not in [s.kind for s in result.steps]  # the key serves


def test_one_context_function_per_schema_and_type() -> None:
    result = compiled(
        script(1),
        tables=[notes(), table(3, "more", tenantcolumn="tenant_id", tenanttype="bigint")],
        columns=[column(1, 2, "body", "text"), column(2, 3, "body", "text")],
    )
    assert [s.kind for s in result.steps].count("tenant_context") == 1
    assert [s.kind for s in result.steps].count("create_policy") == 2


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"tenantcolumn": 'tenant_id"; drop table x; --'},
            "script 1, script_tables row 2, tenantcolumn: 'tenant_id\"; drop table x; --' is "
            "not a valid identifier: it contains '\"'; use 1 to 63 bytes of letters, digits, _ "
            "or $, starting with a letter or _",
        ),
        (
            {"tenanttype": "bigint) using (true"},
            "script 1, script_tables row 2, tenanttype: 'bigint) using (true' is not a type "
            "for a tenant key; use smallint, integer, bigint, uuid, text or varchar(n)",
        ),
        (
            {"tenanttype": "jsonb"},
            "script 1, script_tables row 2, tenanttype: 'jsonb' is not a type for a tenant "
            "key; use smallint, integer, bigint, uuid, text or varchar(n)",
        ),
        (
            {"tenanttype": None},
            "script 1, script_tables row 2, tenanttype: table mgttest.notes sets only one of "
            "tenantcolumn and tenanttype; set both for a tenant-scoped table, or neither",
        ),
    ],
)
def test_hostile_or_incomplete_tenant_keys_are_refused(
    fields: dict[str, Any], expected: str
) -> None:
    found = problems(script(1), tables=[notes(**fields)], columns=[column(1, 2, "b", "text")])
    assert found == (expected,)


def test_a_declared_key_column_of_another_type_is_refused() -> None:
    found = problems(script(1), tables=[notes()], columns=[column(7, 2, "tenant_id", "uuid")])
    assert found == (
        "script 1, script_table_columns row 7, datatype: column mgttest.notes.tenant_id is "
        "the table's tenant key, of type bigint (script_tables row 2, tenanttype), but is "
        "declared 'uuid'; give both the same type, or leave the column out and let "
        "tenanttype define it",
    )


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("INT", "integer"), ("int8", "bigint"), ("VarChar ( 64 )", "character varying(64)")],
)
def test_tenant_types_are_written_canonically(given: str, canonical: str) -> None:
    assert check_tenant_type(given, what="x") == canonical


def test_hash_partitions_by_tenant_are_made_whole() -> None:
    result = compiled(
        script(1),
        tables=[notes(haspart=1)],
        columns=[column(1, 2, "id", "bigint", isprimarykey=1)],
        partitions=[partition(1, 2, "tenant_id", "hash", " 4 ")],
    )
    sqls = [s.sql for s in result.steps if s.kind in ("create_table", "create_partition")]
    assert sqls[0].endswith('PRIMARY KEY ("tenant_id", "id")\n) PARTITION BY HASH ("tenant_id")')
    assert sqls[1:] == [
        f'CREATE TABLE "mgttest"."notes_h{r}" PARTITION OF "mgttest"."notes" '
        f"FOR VALUES WITH (MODULUS 4, REMAINDER {r})"
        for r in range(4)
    ]


def test_range_and_list_partitions_can_be_hash_sub_partitioned() -> None:
    result = compiled(
        script(1),
        tables=[table(2, "events", haspart=1), table(3, "orders", haspart=1, hasdefault=1)],
        columns=[
            column(1, 2, "day", "date"),
            column(2, 2, "tenant_id", "bigint"),
            column(3, 3, "region", "text"),
            column(4, 3, "tenant_id", "bigint"),
        ],
        partitions=[
            partition(
                1,
                2,
                "day",
                "range",
                "month",
                subpartcolumnname="tenant_id",
                subparttype="hash",
                subpartvalue="2",
            ),
            partition(
                2,
                3,
                "region",
                "list",
                "eu",
                subpartcolumnname="tenant_id",
                subparttype="HASH",
                subpartvalue="2",
            ),
        ],
    )
    sqls = [s.sql for s in result.steps if s.kind == "create_partition"]
    assert sqls == [
        'CREATE TABLE "mgttest"."events_2026_10" PARTITION OF "mgttest"."events" FOR VALUES '
        "FROM ('2026-10-01') TO ('2026-11-01') PARTITION BY HASH (\"tenant_id\")",
        'CREATE TABLE "mgttest"."events_2026_10_h0" PARTITION OF "mgttest"."events_2026_10" '
        "FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
        'CREATE TABLE "mgttest"."events_2026_10_h1" PARTITION OF "mgttest"."events_2026_10" '
        "FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
        'CREATE TABLE "mgttest"."orders_region_eu" PARTITION OF "mgttest"."orders" FOR VALUES '
        "IN ('eu') PARTITION BY HASH (\"tenant_id\")",
        'CREATE TABLE "mgttest"."orders_region_eu_h0" PARTITION OF "mgttest"."orders_region_eu" '
        "FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
        'CREATE TABLE "mgttest"."orders_region_eu_h1" PARTITION OF "mgttest"."orders_region_eu" '
        "FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
        # A hash set has no default partition; the list table itself may.
        'CREATE TABLE "mgttest"."orders_default" PARTITION OF "mgttest"."orders" DEFAULT',
    ]


def test_the_generated_rollback_drops_the_policy_and_leaves_the_context_function() -> None:
    result = compiled(script(1), tables=[notes()], columns=[column(1, 2, "body", "text")])
    undo = [s.sql for s in rollback_steps(result, [])]
    assert undo == [
        'DROP POLICY IF EXISTS "notes_tenant_isolation" ON "mgttest"."notes"',
        'ALTER TABLE IF EXISTS "mgttest"."notes" NO FORCE ROW LEVEL SECURITY, '
        "DISABLE ROW LEVEL SECURITY",
        'DROP INDEX IF EXISTS "mgttest"."notes_tenant_id_idx"',
        'DROP TABLE IF EXISTS "mgttest"."notes"',
    ]


def test_maintenance_leaves_hash_sets_alone_and_gives_new_range_children_their_hash_set() -> None:
    sets, found = range_sets(
        [
            maintenance_row(tableid=1, parttype="hash", partvalue="4", subparttype=None),
            maintenance_row(tableid=2, subparttype="hash", subpartvalue="2"),
            maintenance_row(
                tableid=3,
                tablename="events",
                parttype="range",
                partcolumnname="day",
                partvalue="month",
                subpartcolumnname="tenant_id",
                subparttype="hash",
                subpartvalue="3",
                subparttbs=None,
            ),
        ]
    )
    assert found == []
    assert [(s.table_id, s.parent, s.hash_modulus) for s in sets] == [(3, "events", 3)]
    child = sets[0].children(date(2026, 11, 3), date(2026, 11, 3))[0]
    assert create_statements(sets[0], child) == [
        'CREATE TABLE "mgttest"."events_2026_11" PARTITION OF "mgttest"."events" FOR VALUES '
        "FROM ('2026-11-01') TO ('2026-12-01') PARTITION BY HASH (\"tenant_id\")",
        *(
            f'CREATE TABLE "mgttest"."events_2026_11_h{r}" PARTITION OF "mgttest"."events_2026_11"'
            f" FOR VALUES WITH (MODULUS 3, REMAINDER {r})"
            for r in range(3)
        ),
    ]


def test_the_new_columns_leave_the_metadata_checksum_of_older_scripts_unchanged() -> None:
    # Rows read before incremental SQL 017 had no tenantcolumn/tenanttype; after the
    # upgrade they read NULL. A changed checksum would refuse every applied script.
    before = {"tables": [{"id": 2, "tablename": "orders", "status": 2}], "columns": []}
    after = {
        "tables": [
            {"id": 2, "tablename": "orders", "status": 2, "tenantcolumn": None, "tenanttype": None}
        ],
        "columns": [],
    }
    assert metadata_checksum("2026-10-15", before) == metadata_checksum("2026-10-15", after)
    scoped = {"tables": [{**after["tables"][0], "tenantcolumn": "tenant_id"}], "columns": []}
    assert metadata_checksum("2026-10-15", scoped) != metadata_checksum("2026-10-15", before)
