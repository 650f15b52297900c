"""Helpers that build a template and tenants the way a DBA does, through SQL."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tests.fix_db import connect, create_database


class Notices:
    """Collects the NOTICE lines a connection receives."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.lines: list[str] = []
        conn.add_notice_handler(lambda d: self.lines.append(d.message_primary or ""))

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def make_template(
    cluster_dsn: str, admin: psycopg.Connection[Any], name: str, ddl: str = "CREATE SCHEMA mgttest"
) -> str:
    """Create and register a template database; return its DSN."""
    dsn = create_database(cluster_dsn, name)
    with connect(dsn) as conn:
        conn.execute(ddl)
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status) VALUES (%s, true, 2)",
        (name,),
    )
    return dsn


def register(admin: psycopg.Connection[Any], *names: str) -> None:
    admin.cursor().executemany(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES (%s, 1)",
        [(n,) for n in names],
    )


def registry(admin: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    rows = admin.execute(
        "SELECT dbname, status, scriptversion, last_error FROM admmgt.vendor_db_settings"
        " WHERE NOT istemplate AND NOT deleted"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def databases(admin: psycopg.Connection[Any], like: str) -> set[str]:
    return {
        r[0]
        for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))
    }


def call(conn: psycopg.Connection[Any], procedure: str, *args: Any) -> None:
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
    conn.execute(
        sql.SQL("CALL admmgt.{}({})").format(sql.Identifier(procedure), placeholders), args
    )
