"""rollbackScript on schema tenants (issue 16): one call undoes the script in
the template database, the template schema, database tenants and schema
tenants, each in its own transaction with its own history row."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import (
    Fleet,
    SchemaFleet,
    call,
    called,
    make_fleet,
    make_schema_fleet,
)

Conn = psycopg.Connection[Any]


def rollback(admin: Conn, *args: Any, fails: bool = False) -> list[str]:
    """rollbackScript(*args)'s NOTICE lines; ``fails``: it must end with ZA001."""
    return called(admin, "rollbackscript", *args, fails=fails)


def orders_in_both_modes(cluster_dsn: str, admin: Conn, prefix: str) -> tuple[Fleet, SchemaFleet]:
    """Two database tenants and two schema tenants with script 1 (table orders)."""
    dbs = make_fleet(cluster_dsn, admin, prefix, 2)
    schemas = make_schema_fleet(cluster_dsn, admin, prefix, 2)
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    call(admin, "applyscripts", 1)
    call(admin, "applyscripts", 0)
    return dbs, schemas


def versions(admin: Conn) -> dict[str, tuple[Any, ...]]:
    """dbname -> (scriptversion, last_error) of every registry row but the database template."""
    rows = admin.execute(
        "SELECT dbname, scriptversion, last_error FROM admmgt.vendor_db_settings"
        " WHERE NOT deleted AND NOT (istemplate AND separatedb = 1)"
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def script_status(admin: Conn, script_id: int) -> tuple[Any, ...]:
    row = admin.execute(
        "SELECT status, applied_to_template_at IS NULL FROM admmgt.scripts WHERE id = %s",
        (script_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_one_call_undoes_the_script_in_schema_and_database_tenants_templates_first(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs, schemas = orders_in_both_modes(cluster_dsn, admin, tenant_prefix)
    # One at a time, so that the NOTICEs (said as each finishes) show the order.
    admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")
    lines = rollback(admin, 1)
    for db in dbs.databases:
        assert dbs.history(db) == [(1, "apply"), (1, "rollback")]
        assert not dbs.has_table(db, "mgttest.orders")
    for schema in schemas.schemas:
        assert schemas.history(schema) == [(1, "apply"), (1, "rollback")]
        assert not schemas.has_table(schema, "orders")
    assert script_status(admin, 1) == (0, True)
    assert all(v == (None, None) for v in versions(admin).values()), versions(admin)
    # The order: template database, template schema, database tenants, schema tenants.
    order = [dbs.template, f"{schemas.host}.{schemas.template}"]
    order += dbs.tenants + [f"{schemas.host}.{t}" for t in schemas.tenants]
    said = [next(i for i, line in enumerate(lines) if f"{name}:" in line) for name in order]
    assert said == sorted(said), lines
    # The rollback rows carry the script's checksum, in both modes.
    with schemas.connect() as conn:
        sums = {
            r[0]
            for t in schemas.schemas
            for r in conn.execute(f'SELECT checksum FROM "{t}".admmgt_history')
        }
    assert len(sums) == 1
    # The script can be applied again, in both modes.
    admin.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = 1")
    call(admin, "applyscripts", 1)
    call(admin, "applyscripts", 0)
    assert schemas.history(schemas.tenants[0])[-1] == (1, "apply")
    assert schemas.has_table(schemas.tenants[0], "orders")


def test_a_schema_only_fleet_is_rolled_back_without_a_database_template(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    schemas = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    s.script(admin, 1)
    tid = s.table(admin, 1, "orders", [s.ID])
    call(admin, "applyscripts", 0)
    s.script(admin, 2)
    s.column(admin, tid, 2, "note", "text")
    call(admin, "applyscripts", 0)
    rollback(admin, 2)
    with schemas.connect() as conn:
        for schema in schemas.schemas:
            assert schemas.history(schema) == [(1, "apply"), (2, "apply"), (2, "rollback")]
            cols = conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped",
                (f'"{schema}".orders',),
            ).fetchall()
            assert cols == [("id",)], schema
    assert script_status(admin, 2) == (0, True)
    assert script_status(admin, 1)[0] == 2


def test_rows_in_a_schema_tenant_refuse_the_rollback_everywhere_until_consent(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs, schemas = orders_in_both_modes(cluster_dsn, admin, tenant_prefix)
    busy = schemas.tenants[1]
    with schemas.connect() as conn:
        conn.execute(f"INSERT INTO \"{busy}\".orders (note) VALUES ('a'), ('b'), ('c')")
    plan = admin.execute(
        "SELECT statement, drops, dbname, rows_at_stake FROM admmgt.plan_rollback(1)"
    ).fetchall()
    assert (
        f'DROP TABLE IF EXISTS "{busy}"."orders"',
        f"{busy}.orders",
        f"{schemas.host}.{busy}",
        3,
    ) in plan
    assert ('DROP TABLE IF EXISTS "mgttest"."orders"', "mgttest.orders", dbs.template, 0) in plan
    with pytest.raises(psycopg.Error, match=r"rollbackScript\(1\) refused: it would drop data"):
        call(admin, "rollbackscript", 1)
    for db in dbs.databases:  # nothing changed anywhere
        assert dbs.history(db) == [(1, "apply")]
    for schema in schemas.schemas:
        assert schemas.history(schema) == [(1, "apply")]
    assert script_status(admin, 1)[0] == 2
    with pytest.raises(psycopg.Error) as refused:
        call(admin, "rollbackscript", 1)
    assert f"{schemas.host}.{busy}: {busy}.orders: 3 row(s)" in str(refused.value)
    assert "1 schema(s)" in str(refused.value)
    rollback(admin, 1, True)  # t_drop_data => true
    assert schemas.history(busy) == [(1, "apply"), (1, "rollback")]
    assert not schemas.has_table(busy, "orders")


def test_one_schema_failing_fails_alone_and_a_second_call_finishes_it(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs, schemas = orders_in_both_modes(cluster_dsn, admin, tenant_prefix)
    stuck, fine = schemas.tenants
    with schemas.connect() as conn:  # a view of the tenant's own keeps DROP TABLE from running
        conn.execute(f'CREATE VIEW "{stuck}".recent AS SELECT id FROM "{stuck}".orders')
    lines = rollback(admin, 1, fails=True)
    assert any(f"{schemas.host}.{stuck}" in line and "FAILED" in line for line in lines), lines
    assert schemas.history(stuck) == [(1, "apply")]
    assert schemas.has_table(stuck, "orders")
    assert versions(admin)[stuck][0] == 1 and versions(admin)[stuck][1]
    for schema in (schemas.template, fine):
        assert schemas.history(schema) == [(1, "apply"), (1, "rollback")]
    for db in dbs.databases:
        assert dbs.history(db) == [(1, "apply"), (1, "rollback")]
    assert script_status(admin, 1) == (0, True)
    with schemas.connect() as conn:
        conn.execute(f'DROP VIEW "{stuck}".recent')
    lines = rollback(admin, 1)
    assert any("finishing the earlier rollback" in line for line in lines), lines
    assert schemas.history(stuck) == [(1, "apply"), (1, "rollback")]
    assert schemas.history(fine) == [(1, "apply"), (1, "rollback")]  # not undone twice
    assert versions(admin)[stuck] == (None, None)


def test_a_failing_template_schema_stops_before_any_tenant_and_a_second_call_resumes(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs, schemas = orders_in_both_modes(cluster_dsn, admin, tenant_prefix)
    template = schemas.template
    with schemas.connect() as conn:
        conn.execute(f'CREATE VIEW "{template}".recent AS SELECT id FROM "{template}".orders')
    lines = rollback(admin, 1, fails=True)
    assert any("the template schema failed; no tenant was touched" in x for x in lines), lines
    assert dbs.history(dbs.template) == [(1, "apply"), (1, "rollback")]
    for db in dbs.tenants:
        assert dbs.history(db) == [(1, "apply")]
    for schema in schemas.schemas:
        assert schemas.history(schema) == [(1, "apply")]
    assert script_status(admin, 1) == (2, False)
    with schemas.connect() as conn:
        conn.execute(f'DROP VIEW "{template}".recent')
    rollback(admin, 1)
    assert dbs.history(dbs.template) == [(1, "apply"), (1, "rollback")]  # not undone twice
    for schema in schemas.schemas:
        assert schemas.history(schema) == [(1, "apply"), (1, "rollback")]
    assert script_status(admin, 1) == (0, True)


def test_hand_written_rollback_steps_run_under_each_schemas_search_path(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    schemas = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    s.script(admin, 1)
    s.step(admin, 1, 1, "CREATE TABLE notes (id int)")
    call(admin, "applyscripts", 0)
    admin.execute(
        "INSERT INTO admmgt.script_rollback_steps (scriptid, steporder, sqltext, status)"
        " VALUES (1, 1, 'DROP TABLE mgttest.notes', 1) RETURNING id"
    )
    with pytest.raises(psycopg.Error, match='names the template schema "mgttest"') as refused:
        call(admin, "rollbackscript", 1)
    assert "nothing was changed" in str(refused.value)
    assert schemas.history(schemas.template) == [(1, "apply")]
    admin.execute("UPDATE admmgt.script_rollback_steps SET sqltext = 'DROP TABLE notes'")
    rollback(admin, 1)
    for schema in schemas.schemas:
        assert schemas.history(schema) == [(1, "apply"), (1, "rollback")]
        assert not schemas.has_table(schema, "notes")


def test_schema_tenants_with_the_script_and_no_template_schema_refuse_it_changing_nothing(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs, schemas = orders_in_both_modes(cluster_dsn, admin, tenant_prefix)
    admin.execute(
        "UPDATE admmgt.vendor_db_settings SET deleted = true WHERE istemplate AND separatedb = 0"
    )
    with pytest.raises(psycopg.Error, match="no template schema is registered"):
        call(admin, "rollbackscript", 1)
    assert dbs.history(dbs.template) == [(1, "apply")]
    for schema in schemas.tenants:
        assert schemas.history(schema) == [(1, "apply")]
