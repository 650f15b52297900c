"""Write migration metadata the way a DBA does: INSERTs into the admmgt tables."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def script(admin: Conn, script_id: int, description: str = "", *, ready: bool = True) -> None:
    admin.execute(
        "INSERT INTO admmgt.scripts (id, description, status) VALUES (%s, %s, %s)",
        (script_id, description or f"script {script_id}", 1 if ready else 0),
    )


def table(
    admin: Conn,
    script_id: int,
    name: str,
    columns: list[tuple[Any, ...]],
    *,
    schema: str = "mgttest",
    haspart: int = 0,
) -> int:
    """columns: (name, datatype[, nullable, default, isprimarykey, isidentity])."""
    row = admin.execute(
        "INSERT INTO admmgt.script_tables (scriptid, schemaname, tablename, status, haspart)"
        " VALUES (%s, %s, %s, 1, %s) RETURNING id",
        (script_id, schema, name, haspart),
    ).fetchone()
    assert row is not None
    for col in columns:
        column(admin, row[0], script_id, *col)
    return int(row[0])


def column(
    admin: Conn,
    table_id: int,
    script_id: int,
    name: str,
    datatype: str,
    nullable: int = 1,
    default: str | None = None,
    pk: int = 0,
    identity: int = 0,
) -> None:
    admin.execute(
        "INSERT INTO admmgt.script_table_columns (tableid, scriptid, columnname, datatype,"
        " nullable, defaultval, isprimarykey, isidentity, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1)",
        (table_id, script_id, name, datatype, nullable, default, pk, identity),
    )


def proc(admin: Conn, script_id: int, statement: str) -> None:
    admin.execute(
        "INSERT INTO admmgt.script_procs (scriptid, proccallstmt, status) VALUES (%s, %s, 1)",
        (script_id, statement),
    )


def step(admin: Conn, script_id: int, order: int, sql: str, *, transactional: bool = True) -> None:
    admin.execute(
        "INSERT INTO admmgt.script_steps (scriptid, steporder, sqltext, transactional, status)"
        " VALUES (%s, %s, %s, %s, 1)",
        (script_id, order, sql, transactional),
    )


ID = ("id", "bigint", 0, None, 1, 1)


# The shape of the proof of concept's demo scripts 1, 2, 4 and 5, as INSERTs in
# its style and with its values (pg_default on the partitioned table, its list
# children and their sub-partitions; upper-case RANGE; drafts set ready at the
# end): related tables, a list/range composite partitioned table, a column
# added later, a jsonb column, and a new table plus a column on another table.
# tests/db/test_poc_demo.py runs the demo's own statements as written.
POC_DEMO = """
INSERT INTO admmgt.scripts (id, description, status) VALUES
    (1, 'customers and orders', 0), (2, 'note on orders', 0),
    (4, 'jsonb profile', 0), (5, 'payments and order channel', 0);
INSERT INTO admmgt.script_tables (id, scriptid, schemaname, tablename, status, haspart, tblspace)
VALUES (101, 1, 'mgttest', 'customers', 0, 0, 'pg_default'),
       (102, 1, 'mgttest', 'orders', 0, 1, 'pg_default'),
       (103, 5, 'mgttest', 'payments', 0, 0, NULL);
INSERT INTO admmgt.script_table_columns
    (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey,
     isidentity, status) VALUES
    (101, 1, 'id', 'bigint', 0, NULL, 1, 1, 1),
    (101, 1, 'name', 'varchar(100)', 0, NULL, 0, 0, 1),
    (102, 1, 'id', 'bigint', 0, NULL, 1, 1, 1),
    (102, 1, 'customerid', 'bigint', 0, NULL, 0, 0, 1),
    (102, 1, 'region', 'varchar(10)', 0, NULL, 0, 0, 1),
    (102, 1, 'orderdate', 'date', 0, 'current_date', 0, 0, 1),
    (102, 2, 'note', 'text', 1, NULL, 0, 0, 1),
    (101, 4, 'profile', 'jsonb', 1, '''{}''::jsonb', 0, 0, 1),
    (103, 5, 'id', 'bigint', 0, NULL, 1, 1, 1),
    (103, 5, 'customerid', 'bigint', 0, NULL, 0, 0, 1),
    (103, 5, 'amount', 'numeric(12,2)', 0, '0', 0, 0, 1),
    (102, 5, 'channel', 'varchar(20)', 1, '''web''', 0, 0, 1);
INSERT INTO admmgt.script_table_partitions
    (tableid, partcolumnname, parttype, partvalue, subpartcolumnname, subparttype,
     subpartvalue, parttbs, subparttbs) VALUES
    (102, 'region', 'list', 'EU', 'ORDERDATE', 'RANGE', 'month', 'pg_default', 'pg_default'),
    (102, 'region', 'list', 'US', 'orderdate', 'RANGE', 'month', 'pg_default', 'pg_default');
INSERT INTO admmgt.script_table_fkeys
    (scriptid, schemaname, childtablename, childcolumnname, parenttablename,
     parentcolumnname, keyorder, delrule, novalidate, status) VALUES
    (1, 'mgttest', 'orders', 'customerid', 'customers', 'id', 1, 'CASCADE', 0, 1),
    (5, 'mgttest', 'payments', 'customerid', 'customers', 'id', 1, NULL, 1, 1);
UPDATE admmgt.script_tables SET status = 1;
UPDATE admmgt.scripts SET status = 1;
"""
