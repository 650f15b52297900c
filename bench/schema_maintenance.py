# ruff: noqa: E501  (SQL text keeps its own long lines)
"""Maintenance, retention and drift on schema tenants: applyMaintenance(0), lifecycleMgt(0), detect_drift.

    .venv/bin/python bench/schema_maintenance.py [--tenants 100 1000] [--days 30]
                                                 [--dir .sandbox/bench-schema-maint]
                                                 [--port 54371] [--keep]

For each fleet size: a throwaway cluster (admmgt.Sandbox as it is: Unix
socket, fsync, synchronous_commit and full_page_writes off), an
admin database with admmgt installed, a host database `bench_schemas`
registered in admmgt.schema_hosts, the template schema `app` and N tenant
schemas `t_0001`... made by hand as create_schema makes them (each with its
`admmgt_history`), registered as created schema tenants. Every schema holds
the same objects: `events` range-partitioned by day and `ledger` by month
(both described as script 1's metadata, which names the template schema),
each with a default partition; `customers`, `orders` (FK, CHECK, enum,
index), a view and a function with `SET search_path`. The fleet's clock is
pinned (2026-06-15 noon UTC), so every run makes the same partitions.

Timed, once each, from the admin database with max_parallel `auto`:

1. `applyMaintenance(t_separatedb => 0, t_numdays => --days)`: --days + 1
   daily and two monthly partitions in the template schema and every tenant;
2. the same again: nothing to create;
3. `detect_drift(NULL, 0)` on a clean fleet (fingerprints only), then with
   one tenant changed (its object list read too);
4. `lifecycleMgt(0)` with the clock pinned 20 days later and `events` kept
   7 days (`drop`): about 13 daily partitions dropped per schema; then again,
   nothing expired.

Each schema is its own connection to the host database today (the engine's
reuse of connections across schemas is not built), so the figures include a
connection per schema. The load average is printed with every phase. A
benchmark, not a test: nothing passes or fails.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from psycopg import sql

import admmgt
from rollout import (
    Conn,
    bench_arguments,
    bench_cluster,
    connect,
    drop_databases,
    markdown,
)

ADMIN = "bench_admin"
HOST = "bench_schemas"
TEMPLATE_SCHEMA = "app"
PINNED = "2026-06-15 12:00:00+00"
LATER = "2026-07-05 12:00:00+00"

# Every schema's objects, made under its own search_path; @S@ is its name.
SCHEMA_DDL = """
CREATE TABLE admmgt_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, script_id integer NOT NULL,
    action text NOT NULL, checksum text, applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms numeric, applied_by text NOT NULL DEFAULT session_user, admin_run_id bigint);
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id),
    state status NOT NULL DEFAULT 'new', note text CHECK (note <> ''));
CREATE INDEX orders_note_idx ON orders (note);
CREATE VIEW open_orders AS SELECT o.id, c.name FROM orders AS o JOIN customers AS c
    ON c.id = o.customer_id WHERE o.state = 'new';
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE
    SET search_path = @S@, public AS $$ SELECT count(*) FROM orders $$;
CREATE TABLE events (id bigint NOT NULL, on_day date NOT NULL, note text) PARTITION BY RANGE (on_day);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_day_idx ON events (on_day);
CREATE TABLE ledger (id bigint NOT NULL, booked date NOT NULL, amount numeric) PARTITION BY RANGE (booked);
CREATE TABLE ledger_default PARTITION OF ledger DEFAULT;
"""

METADATA = """
INSERT INTO admmgt.scripts (id, description, status) VALUES (1, 'events and ledger', 1);
WITH t AS (
    INSERT INTO admmgt.script_tables (scriptid, schemaname, tablename, status, haspart, hasdefault, lifecycle)
    VALUES (1, 'app', 'events', 1, 1, 1, '{"retention": "7 days", "action": "drop"}'),
           (1, 'app', 'ledger', 1, 1, 1, NULL)
    RETURNING id, tablename)
INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype, partvalue)
SELECT id, CASE tablename WHEN 'events' THEN 'on_day' ELSE 'booked' END, 'range',
       CASE tablename WHEN 'events' THEN 'day' ELSE 'month' END FROM t;
INSERT INTO admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, status)
SELECT t.id, 1, c.name, c.type, 0, 1 FROM admmgt.script_tables AS t
JOIN (VALUES ('events', 'id', 'bigint'), ('events', 'on_day', 'date'),
             ('ledger', 'id', 'bigint'), ('ledger', 'booked', 'date')) AS c (tbl, name, type)
  ON c.tbl = t.tablename;
UPDATE admmgt.scripts SET status = 2 WHERE id = 1;
"""


def build(box: admmgt.Sandbox, cluster: Conn, size: int) -> tuple[Conn, list[str]]:
    """The admin database, the host and its N + 1 schemas; returns the admin connection."""
    drop_databases(box, cluster, "bench\\_%")
    for db in (ADMIN, HOST):
        cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    admin = connect(box.dsn(ADMIN))
    print(f"  {admmgt.install(admin)}", flush=True)
    tenants = [f"t_{i:04d}" for i in range(1, size + 1)]
    started = time.monotonic()
    with connect(box.dsn(HOST)) as host:
        for schema in [TEMPLATE_SCHEMA, *tenants]:
            with host.transaction():
                host.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                host.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
                host.execute(SCHEMA_DDL.replace("@S@", schema))
    admin.execute(
        "INSERT INTO admmgt.schema_hosts (cluster_name, dbname) VALUES ('local', %s)", (HOST,)
    )
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status, separatedb)"
        " VALUES (%s, true, 2, 0)",
        (TEMPLATE_SCHEMA,),
    )
    admin.cursor().executemany(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status, separatedb) VALUES (%s, 2, 0)",
        [(t,) for t in tenants],
    )
    admin.execute(METADATA)
    admin.execute("CALL admmgt._pin_clock(%s::timestamptz, 'bench')", (PINNED,))
    print(f"  {size + 1} schemas made in {time.monotonic() - started:.1f} s (not timed below)")
    return admin, tenants


def catalog(box: admmgt.Sandbox) -> str:
    with connect(box.dsn(HOST)) as host:
        row = host.execute(
            "SELECT (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_attribute),"
            " (SELECT count(*) FROM pg_depend),"
            " pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
    assert row is not None
    return f"pg_class {row[0]}, pg_attribute {row[1]}, pg_depend {row[2]}, host database {row[3]}"


def phase(
    rows: list[list[str]], size: int, what: str, call: Callable[[], Any], last: list[str]
) -> None:
    """Time ``call``; a row of the table, with the summary NOTICE it ended with."""
    last.clear()
    started = time.monotonic()
    call()
    wall = time.monotonic() - started
    load = os.getloadavg()[0]
    rows.append([str(size), what, f"{wall:.1f}", f"{1000 * wall / (size + 1):.1f}", f"{load:.1f}"])
    print(f"  {what}: {wall:.1f} s, load {load:.1f}; {last[-1] if last else ''}", flush=True)


def run_fleet(box: admmgt.Sandbox, cluster: Conn, size: int, days: int) -> list[list[str]]:
    admin, tenants = build(box, cluster, size)
    last: list[str] = []
    admin.add_notice_handler(lambda d: last.append(d.message_primary or ""))
    rows: list[list[str]] = []
    maintain = f"CALL admmgt.applyMaintenance(t_separatedb => 0, t_numdays => {int(days)})"
    phase(
        rows,
        size,
        f"applyMaintenance(0), {days + 1} daily + 2 monthly partitions each",
        lambda: admin.execute(maintain),
        last,
    )
    phase(
        rows, size, "applyMaintenance(0), nothing to create", lambda: admin.execute(maintain), last
    )
    drift = "SELECT count(*) FROM admmgt.detect_drift(NULL, 0)"
    phase(
        rows,
        size,
        "detect_drift(NULL, 0), every schema identical",
        lambda: admin.execute(drift).fetchone(),
        last,
    )
    with connect(box.dsn(HOST)) as host:
        host.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN extra int").format(
                sql.Identifier(tenants[len(tenants) // 2], "orders")
            )
        )
    phase(
        rows,
        size,
        "detect_drift(NULL, 0), one schema differs",
        lambda: admin.execute(drift).fetchone(),
        last,
    )
    admin.execute("CALL admmgt._pin_clock(%s::timestamptz, 'bench')", (LATER,))
    phase(
        rows,
        size,
        "lifecycleMgt(0), 20 days later: ~13 daily partitions dropped each",
        lambda: admin.execute("CALL admmgt.lifecycleMgt(0)"),
        last,
    )
    phase(
        rows,
        size,
        "lifecycleMgt(0), nothing expired",
        lambda: admin.execute("CALL admmgt.lifecycleMgt(0)"),
        last,
    )
    print(f"  catalog: {catalog(box)}")
    admin.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__, "bench-schema-maint", 54371)
    parser.add_argument("--days", type=int, default=30, help="t_numdays, 1 to 60")
    args = parser.parse_args(argv)
    if any(n < 1 or n > 1000 for n in args.tenants) or not 1 <= args.days <= 60:
        parser.error("--tenants: 1 to 1000 per fleet; --days: 1 to 60")
    started = time.monotonic()
    rows: list[list[str]] = []
    with bench_cluster(args, "schema maintenance", f"--days {args.days}") as (box, cluster):
        for size in args.tenants:
            print(f"\nfleet of {size} schema tenants:", flush=True)
            rows += run_fleet(box, cluster, size, args.days)
    print()
    print(markdown(["schemas", "phase", "wall s", "ms per schema", "load"], rows))
    print(
        f"\n{os.cpu_count() or 1} cores; max_parallel auto; one connection per schema; the "
        f"template schema included in 'per schema'.\nTotal {time.monotonic() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
