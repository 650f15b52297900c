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
