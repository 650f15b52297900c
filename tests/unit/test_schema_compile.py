"""The compiler's schema map (issue 16): a script compiled for a schema tenant
names the tenant's schema wherever the metadata names the template schema."""

from __future__ import annotations

import time
from typing import Any

import pytest

from admmgt_plpy._compile import CompiledScript, ScriptMetadata, compile_script
from admmgt_plpy._errors import MetadataError
from tests.unit.test_compile import (
    ANCHOR,
    CUSTOMERS,
    DEMO_COLUMNS_1,
    DEMO_PARTITIONS_1,
    DEMO_TABLES_1,
    ORDERS,
    change,
    column,
    fkey,
    index,
    proc,
    script,
    step,
    table,
)

HOSTILE = 'Ac"me co'  # a quote, a space and upper case: any schema is a name


def both(schema: str, **rows: Any) -> tuple[CompiledScript, CompiledScript]:
    """The script compiled for the template, and for the schema ``schema``."""
    meta = ScriptMetadata.from_rows(rows.pop("script_row", script(1)), **rows)
    return (
        compile_script(meta, anchor=ANCHOR),
        compile_script(meta, anchor=ANCHOR, schema_map={"mgttest": schema}),
    )


def demo_rows() -> dict[str, Any]:
    return {
        "tables": [*DEMO_TABLES_1, table(3, "notes", tenantcolumn="tenant_id", tenanttype="int")],
        "columns": [*DEMO_COLUMNS_1, column(20, 3, "body", "text")],
        "partitions": DEMO_PARTITIONS_1,
        "fkeys": [fkey(1, "orders", "customerid", "customers", "id", delrule="cascade")],
        "procs": [proc(1, "call testproc1();")],
        "steps": [step(1, 5, "UPDATE customers SET name = name")],
    }


def test_every_compiled_object_names_the_tenant_schema() -> None:
    template, tenant = both(HOSTILE, **demo_rows())
    quoted = '"Ac""me co"'
    assert len(tenant.steps) == len(template.steps)
    for mine, theirs in zip(tenant.steps, template.steps, strict=True):
        if mine.kind in ("sql", "proc_call"):
            # raw statements run as written, under the tenant's search_path
            assert mine.sql == theirs.sql
            continue
        assert "mgttest" not in mine.sql, mine.sql
        assert mine.sql == theirs.sql.replace('"mgttest"', quoted), mine.sql
        assert mine.target.replace(HOSTILE, "mgttest") == theirs.target
    kinds = {s.kind for s in tenant.steps}
    # tables, partitions, the foreign key, row-level security and its context
    assert {"create_schema", "create_table", "create_partition", "foreign_key"} <= kinds
    assert {"enable_rls", "create_policy", "tenant_context"} <= kinds
    assert tenant.steps[0].sql == f"CREATE SCHEMA IF NOT EXISTS {quoted}"
    # the identity is the template's; the engine records that one everywhere
    assert tenant.checksum != template.checksum


def test_later_scripts_changes_and_indexes_are_mapped() -> None:
    template, tenant = both(
        "acme",
        script_row=script(2),
        referenced_tables=[ORDERS, CUSTOMERS],
        columns=[column(30, 1, "vip", "boolean", scriptid=2)],
        column_changes=[change(1, 1, "name", newdatatype="varchar(300)")],
        indexes=[index(1, 2, ["customerid"]), index(2, 1, ["profile"], concurrently=1)],
    )
    assert all('"acme".' in s.sql and "mgttest" not in s.sql for s in tenant.steps)
    concurrent = [s for s in tenant.steps if not s.transactional]
    assert concurrent and concurrent[0].name is not None
    assert concurrent[0].name.startswith('"acme".')
    assert [s.kind for s in tenant.steps] == [s.kind for s in template.steps]


def test_the_template_schema_maps_to_itself_unchanged() -> None:
    template, itself = both("mgttest", **demo_rows())
    assert itself == template


def test_a_schema_other_than_the_template_schema_is_refused_for_schema_tenants() -> None:
    rows = {
        "tables": [table(1, "customers"), table(2, "audit", schemaname="public")],
        "columns": [column(1, 1, "id", "bigint"), column(2, 2, "id", "bigint")],
        "fkeys": [fkey(1, "customers", "id", "audit", "id", schemaname="Other")],
    }
    meta = ScriptMetadata.from_rows(script(1), **rows)
    compile_script(meta, anchor=ANCHOR)  # a database tenant may use any schema
    with pytest.raises(MetadataError) as caught:
        compile_script(meta, anchor=ANCHOR, schema_map={"mgttest": "acme"})
    found = caught.value.problems
    assert len(found) == 2, found
    assert found[0].startswith(
        'script 1, script_tables row 2, schemaname: schema "public" is not the template '
        'schema "mgttest"'
    )
    assert found[1].startswith(
        'script 1, script_table_fkeys row 1, schemaname: schema "other" is not the template'
    )


def test_compiling_per_tenant_costs_little_at_a_thousand_tenants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Prints what compiling the demo script for 1,000 schemas costs (no bound on
    time: the machine is shared); checks each compile names its own schema."""
    meta = ScriptMetadata.from_rows(script(1), **demo_rows())
    started = time.perf_counter()
    results = [
        compile_script(meta, anchor=ANCHOR, schema_map={"mgttest": f"t_{i:04d}"})
        for i in range(1000)
    ]
    elapsed = time.perf_counter() - started
    assert len({r.checksum for r in results}) == 1000
    assert all(f'"t_{i:04d}"' in r.steps[1].sql for i, r in enumerate(results))
    with capsys.disabled():
        print(
            f"\ncompile per schema tenant: {len(results[0].steps)} steps, 1,000 tenants in "
            f"{elapsed * 1000:.0f} ms ({elapsed:.3f} ms per tenant)"
        )
