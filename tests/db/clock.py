"""Pin the fleet's clock (admmgt.fleet_now) the way the owner does, for one test.

Every test admin database is a fresh install, so a pin never outlives its test.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def pin(admin: Conn, day: date | str, time: str = "12:00:00") -> None:
    """Pin the clock at noon UTC (by default) of ``day``."""
    admin.execute("CALL admmgt._pin_clock(%s::timestamptz, 'test')", (f"{day} {time}+00",))


def partitions(conn: Conn, schema: str = "mgttest") -> list[tuple[str, str, str]]:
    """(parent, partition, bound) of every partition in ``schema``, sorted; bounds in UTC."""
    conn.execute("SET TIME ZONE 'UTC'")
    rows = conn.execute(
        """SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid)
           FROM pg_inherits AS i
           JOIN pg_class AS c ON c.oid = i.inhrelid
           JOIN pg_class AS p ON p.oid = i.inhparent
           WHERE c.relispartition AND c.relkind IN ('r', 'p')
             AND c.relnamespace = %s::regnamespace
           ORDER BY 1, 2""",
        (schema,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]
