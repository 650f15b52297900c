"""detect_drift on schema tenants (issue 16): each tenant schema's catalog
against the template schema's, in the same host database, names mapped: a
clean tenant reports nothing, a drifted one its differences, and a tenant
object that names the template schema is drift, not mapped away."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.db.fleet import Notices, SchemaFleet, make_fleet, make_schema_fleet

Conn = psycopg.Connection[Any]

# The same objects in every schema, made under its own search_path; @S@ is the
# schema's name (a routine's SET search_path names it, as the design wants).
SCHEMA_DDL = """
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    state status NOT NULL DEFAULT 'new',
    note text CHECK (note <> '')
);
CREATE INDEX orders_note_idx ON orders (note);
CREATE TABLE events (id bigint, on_day date NOT NULL) PARTITION BY RANGE (on_day);
CREATE TABLE events_2026_06 PARTITION OF events FOR VALUES FROM ('2026-06-01') TO ('2026-07-01');
CREATE INDEX events_day_idx ON events (on_day);
CREATE VIEW open_orders AS SELECT o.id, c.name FROM orders AS o JOIN customers AS c
    ON c.id = o.customer_id WHERE o.state = 'new';
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE
    SET search_path = @S@, public AS $$ SELECT count(*) FROM orders $$;
"""


@pytest.fixture
def schemas(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> SchemaFleet:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 3)
    with fleet.connect() as conn:
        for schema in fleet.schemas:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            conn.execute(SCHEMA_DDL.replace("@S@", schema))
    return fleet


def run(conn: Conn, schema: str, statement: str) -> None:
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    conn.execute(statement)


def drift(admin: Conn, dbname: str | None = None, mode: int | None = None) -> set[tuple[str, ...]]:
    rows = admin.execute(
        "SELECT dbname, object_kind, object_name, difference FROM admmgt.detect_drift(%s, %s)",
        (dbname, mode),
    ).fetchall()
    return {tuple(r) for r in rows}


def test_clean_schema_tenants_report_nothing(schemas: SchemaFleet) -> None:
    notices = Notices(schemas.admin)
    assert drift(schemas.admin, mode=0) == set()
    assert drift(schemas.admin) == set()  # no database tenant here: schema mode only
    lines = notices.take()
    assert lines[0].startswith(
        f"detect_drift: 3 schema tenant(s) compared with template schema {schemas.host}.mgttest ("
    ), lines
    assert "): 3 identical, 0 differ, 0 unreachable in " in lines[0], lines


def test_a_drifted_schema_tenant_is_reported_and_only_it(schemas: SchemaFleet) -> None:
    extra, missing, wrong = schemas.tenants
    with schemas.connect() as conn:
        run(conn, extra, "ALTER TABLE orders ADD COLUMN discount numeric")
        run(conn, missing, "DROP INDEX orders_note_idx")
        # A view of another tenant's (the template's) table: drift, not mapped away.
        run(
            conn,
            wrong,
            "CREATE OR REPLACE VIEW open_orders AS SELECT o.id, c.name FROM mgttest.orders AS o"
            " JOIN customers AS c ON c.id = o.customer_id WHERE o.state = 'new'",
        )
    found = drift(schemas.admin, mode=0)
    assert found == {
        (f"{schemas.host}.{extra}", "column", "orders.discount", "extra"),
        (f"{schemas.host}.{missing}", "index", "orders_note_idx", "missing"),
        (f"{schemas.host}.{wrong}", "view", "open_orders", "different"),
    }
    # One tenant by name (its mode found from the registry).
    assert drift(schemas.admin, extra) == {
        (f"{schemas.host}.{extra}", "column", "orders.discount", "extra")
    }
    detail = schemas.admin.execute(
        "SELECT detail FROM admmgt.detect_drift(%s)", (wrong,)
    ).fetchone()
    assert detail is not None and "mgttest.orders" in detail[0], detail


def test_a_routine_set_to_another_schema_is_drift(schemas: SchemaFleet) -> None:
    """SET search_path naming the tenant's own schema is mapped; naming the
    template's schema is reported."""
    tenant = schemas.tenants[0]
    with schemas.connect() as conn:
        run(
            conn,
            tenant,
            "CREATE OR REPLACE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE"
            " SET search_path = mgttest, public AS $$ SELECT count(*) FROM orders $$",
        )
    assert drift(schemas.admin, mode=0) == {
        (f"{schemas.host}.{tenant}", "function", "order_count()", "different")
    }


def test_version_and_missing_schema(schemas: SchemaFleet) -> None:
    behind, gone, _ = schemas.tenants
    with schemas.connect() as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (script_id, action) VALUES (1, 'apply')").format(
                sql.Identifier(schemas.template, "admmgt_history")
            )
        )
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(gone)))
    rows = schemas.admin.execute(
        "SELECT dbname, object_kind, object_name, difference, detail"
        " FROM admmgt.detect_drift(t_separatedb => 0)"
    ).fetchall()
    by_tenant = {r[0]: r[1:] for r in rows}
    assert by_tenant[f"{schemas.host}.{behind}"][:3] == ("version", "admmgt_history", "different")
    assert "tenant at script None, template at script 1" in by_tenant[f"{schemas.host}.{behind}"][3]
    assert by_tenant[f"{schemas.host}.{gone}"][:3] == ("schema", gone, "unreachable")
    assert (
        f'schema "{gone}" does not exist in host database "{schemas.host}"'
        in (by_tenant[f"{schemas.host}.{gone}"][3])
    )


def test_both_modes_side_by_side(
    schemas: SchemaFleet, cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, f"{tenant_prefix}d", 1)
    fleet.execute(fleet.tenants[0], "CREATE TABLE mgttest.by_hand (id int)")
    with schemas.connect() as conn:
        run(conn, schemas.tenants[1], "DROP INDEX events_day_idx")
    database_row = (fleet.tenants[0], "table", "mgttest.by_hand", "extra")
    schema_row = (f"{schemas.host}.{schemas.tenants[1]}", "index", "events_day_idx", "missing")
    assert drift(admin) == {database_row, schema_row}
    assert drift(admin, mode=1) == {database_row}
    assert drift(admin, mode=0) == {schema_row}
    with pytest.raises(psycopg.Error, match="t_separatedb must be 1"):
        drift(admin, mode=5)
