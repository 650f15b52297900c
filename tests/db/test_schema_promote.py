"""promote_tenant (issue 16): a schema tenant moves into a database of its own.

The schema tenant is made by hand (make_schema_fleet) with the same tables as
the database template (made with make_template, its columns in another order
and its partitions not quite the tenant's), the same history, and rows with
an identity, a serial, a generated column, an enum of the tenant's schema, a
bytea, an array, a timestamptz and a free sequence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from admmgt_plpy import _history
from admmgt_plpy._locks import LOCK_CLASS
from admmgt_plpy._promote_base import FAULT_LOCK, FAULT_SETTING
from tests.db.fleet import Notices, SchemaFleet, databases, make_schema_fleet, make_template
from tests.fix_clusters import RemoteCluster
from tests.fix_db import connect, create_database, drop_databases

Conn = psycopg.Connection[Any]

TENANT_DDL = """
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, joined date,
    balance numeric(12, 2), ratio double precision, photo bytea, tags text[]);
CREATE TABLE orders (
    id serial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
    state status NOT NULL DEFAULT 'new', placed timestamptz, qty integer,
    doubled integer GENERATED ALWAYS AS (qty * 2) STORED);
CREATE TABLE events (day date NOT NULL, what text) PARTITION BY RANGE (day);
CREATE TABLE events_2026_01 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE events_2026_02 PARTITION OF events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE SEQUENCE invoice_no;
"""
# The template database: the same tables, customers' columns in another
# order, and a partition the tenant has not (events_2026_03) instead of one
# it has (events_2026_02).
TEMPLATE_DDL = """
CREATE SCHEMA mgttest;
SET search_path = mgttest;
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE TABLE customers (
    tags text[], photo bytea, ratio double precision, balance numeric(12, 2), joined date,
    name text NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
CREATE TABLE orders (
    id serial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
    state status NOT NULL DEFAULT 'new', placed timestamptz, qty integer,
    doubled integer GENERATED ALWAYS AS (qty * 2) STORED);
CREATE TABLE events (day date NOT NULL, what text) PARTITION BY RANGE (day);
CREATE TABLE events_2026_01 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE events_2026_03 PARTITION OF events FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
CREATE SEQUENCE invoice_no;
RESET search_path;
"""
ROWS = """
INSERT INTO customers (name, joined, balance, ratio, photo, tags)
SELECT 'c' || g, date '2026-01-01' + g, g * 1.5, g / 7.0, decode(md5(g::text), 'hex'),
       ARRAY['a', g::text]
FROM generate_series(1, 40) AS g;
DELETE FROM customers WHERE id % 10 = 0;
INSERT INTO orders (customer_id, state, placed, qty)
SELECT c.id, CASE WHEN c.id % 2 = 0 THEN 'paid' ELSE 'new' END::status,
       timestamptz '2026-03-01 10:00+02' + c.id * interval '1 hour', c.id::int
FROM customers AS c;
INSERT INTO events VALUES ('2026-01-15', 'a'), ('2026-02-03', 'b'), ('2026-02-04', NULL);
SELECT nextval('invoice_no') FROM generate_series(1, 7);
"""
HISTORY = "(script_id, action, checksum) VALUES (1, 'apply', 'c1'), (2, 'apply', 'c2')"
TABLES = ["customers", "orders", "events"]


class Promotable:
    """A schema tenant s0 with data, its sibling s1, the database template, a
    tenant role that may read and write s0."""

    def __init__(self, cluster_dsn: str, admin: Conn, prefix: str, role: str) -> None:
        self.admin = admin
        self.cluster_dsn = cluster_dsn
        self.template = f"{prefix}tpl"
        ddl = (
            TEMPLATE_DDL + _history.ENSURE_TABLE + f"; INSERT INTO admmgt.script_history {HISTORY}"
        )
        make_template(cluster_dsn, admin, self.template, ddl)
        self.fleet: SchemaFleet = make_schema_fleet(cluster_dsn, admin, prefix, 2)
        self.schema = self.fleet.tenants[0]
        self.role = role
        admin.execute(
            "UPDATE admmgt.vendor_db_settings SET scriptversion = 2 WHERE dbname = %s",
            (self.schema,),
        )
        with self.fleet.connect() as host:
            for schema in self.fleet.tenants:
                ident = sql.Identifier(schema)
                host.execute(sql.SQL("SET search_path = {}").format(ident))
                host.execute(TENANT_DDL)
                host.execute(ROWS)
                host.execute(f"INSERT INTO admmgt_history {HISTORY}")
            host.execute("RESET search_path")
            r, s = sql.Identifier(role), sql.Identifier(self.schema)
            host.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
            host.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON {}.customers TO {}").format(s, r))
            host.execute(sql.SQL("GRANT USAGE ON SEQUENCE {}.invoice_no TO {}").format(s, r))
            host.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(self.fleet.host), r
                )
            )

    def new_db(self) -> Conn:
        return connect(
            self.fleet.admin.info.dsn.replace(
                f"dbname={self.admin.info.dbname}", f"dbname={self.schema}"
            )
        )

    def rows(self, conn: Conn, schema: str) -> dict[str, list[str]]:
        """Every row of every table, as sorted jsonb text (column order does not matter)."""
        conn.execute("SET TimeZone = 'UTC'")
        found = {}
        for table in TABLES:
            found[table] = [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT to_jsonb(t)::text FROM {}.{} AS t ORDER BY 1").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                )
            ]
        return found

    def schema_rows(self) -> dict[str, list[str]]:
        with self.fleet.connect() as host:
            return self.rows(host, self.schema)

    def registry(self) -> tuple[Any, ...]:
        row = self.admin.execute(
            "SELECT separatedb, status, scriptversion, coalesce(cluster_name, 'local')"
            " FROM admmgt.vendor_db_settings WHERE dbname = %s",
            (self.schema,),
        ).fetchone()
        assert row is not None
        return tuple(row)

    def promotions(self) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in self.admin.execute(
                "SELECT id, state, kept_as FROM admmgt.promotions ORDER BY id"
            )
        ]

    def database_exists(self) -> bool:
        """A database of the tenant's name, or one being made for it (its work name)."""
        row = self.admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s OR datname LIKE %s",
            (self.schema, self.schema + "\\_promoting\\_%"),
        ).fetchone()
        return row != (0,)

    def role_may_insert(self) -> bool:
        with self.fleet.connect() as host:
            row = host.execute(
                "SELECT has_table_privilege(%s, format('%%I.customers', %s::text), 'INSERT')",
                (self.role, self.schema),
            ).fetchone()
            return bool(row and row[0])

    def promote(self, *args: Any, conn: Conn | None = None) -> list[str]:
        conn = conn or self.admin
        notices = Notices(conn)
        placeholders = sql.SQL(", ").join(sql.Placeholder() * (len(args) + 1))
        conn.execute(
            sql.SQL("CALL admmgt.promote_tenant({})").format(placeholders), (self.schema, *args)
        )
        return notices.take_without_clock()

    def unchanged(self, before: dict[str, list[str]]) -> None:
        """The tenant is a schema tenant as before: registry, rows, no database."""
        assert self.registry() == (0, 2, 2, "local")
        assert self.schema_rows() == before
        assert not self.database_exists()
        assert self.fleet.history(self.schema) == [(1, "apply"), (2, "apply")]


@pytest.fixture
def role(cluster_dsn: str, tenant_prefix: str) -> Iterator[str]:
    """A tenant role named from the test's prefix, dropped at the end (with the
    test's databases first, which hold its privileges)."""
    name = f"{tenant_prefix}role"
    with connect(cluster_dsn) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    yield name
    drop_databases(cluster_dsn, tenant_prefix + "%")
    with connect(cluster_dsn) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def tenant(cluster_dsn: str, admin: Conn, tenant_prefix: str, role: str) -> Promotable:
    return Promotable(cluster_dsn, admin, tenant_prefix, role)


def check_promoted(tenant: Promotable, before: dict[str, list[str]]) -> None:
    """Every row, the version, the history, the partitions, the grants, and
    sequences that continue."""
    promotion_id, state, kept = tenant.promotions()[-1]
    assert state == "done"
    assert kept == f"{tenant.schema}_promoted_{promotion_id}"
    assert tenant.registry() == (1, 2, 2, "local")
    with tenant.new_db() as db:
        assert tenant.rows(db, "mgttest") == before
        history = db.execute(
            "SELECT script_id, action, checksum FROM admmgt.script_history ORDER BY id"
        ).fetchall()
        assert history == [(1, "apply", "c1"), (2, "apply", "c2")]
        parts = {
            r[0]
            for r in db.execute(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'mgttest.events'::regclass"
            )
        }
        assert parts == {"events_2026_01", "events_2026_02"}
        # Sequences and identities continue past the copied values.
        row = db.execute("INSERT INTO mgttest.customers (name) VALUES ('new') RETURNING id")
        assert row.fetchone() == (41,)
        row = db.execute(
            "INSERT INTO mgttest.orders (customer_id, qty) VALUES (41, 1) RETURNING id, doubled"
        )
        assert row.fetchone() == (37, 2)
        assert db.execute("SELECT nextval('mgttest.invoice_no')").fetchone() == (8,)
        row = db.execute(
            "INSERT INTO admmgt.script_history (script_id, action) VALUES (3, 'apply') RETURNING id"
        )
        assert row.fetchone() == (3,)
        # The tenant role keeps its grants, on the new database's tables.
        row = db.execute(
            "SELECT has_table_privilege(%s, 'mgttest.customers', 'INSERT'),"
            " has_table_privilege(%s, 'mgttest.orders', 'SELECT'),"
            " has_schema_privilege(%s, 'mgttest', 'USAGE'),"
            " has_database_privilege(%s, current_database(), 'CONNECT')",
            (tenant.role,) * 4,
        )
        assert row.fetchone() == (True, False, True, True)
        assert db.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'admmgt\\_promote\\_%'"
        ).fetchone() == (0,)
    # The old schema is kept under its new name, with its rows; s1 is untouched.
    assert not tenant.fleet.has_table(tenant.schema, "customers")
    with tenant.fleet.connect() as host:
        assert tenant.rows(host, kept) == before
    assert tenant.fleet.has_table(tenant.fleet.tenants[1], "customers")


def test_a_promoted_tenant_keeps_every_row_its_version_and_its_sequences(
    tenant: Promotable,
) -> None:
    before = tenant.schema_rows()
    assert sum(map(len, before.values())) == 36 + 36 + 3
    lines = tenant.promote()
    check_promoted(tenant, before)
    said = "\n".join(lines)
    assert "77 rows in 5 tables copied and verified" in said, lines
    assert "verified: 5 tables have the same counts and checksums" in said, lines
    assert lines[-1].startswith("promote_tenant: 1 ok in"), lines
    run = tenant.admin.execute(
        "SELECT outcome, message FROM admmgt.run_log ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert run is not None and run[0] == "ok" and "is now database" in run[1]
    # A second call finds a database tenant: nothing to promote.
    with pytest.raises(psycopg.Error, match="is a database tenant already"):
        tenant.promote()


def test_a_tenant_behind_the_template_or_different_from_it_is_refused_with_the_fix(
    tenant: Promotable,
) -> None:
    before = tenant.schema_rows()
    with connect(
        tenant.fleet.admin.info.dsn.replace(
            f"dbname={tenant.admin.info.dbname}", f"dbname={tenant.template}"
        )
    ) as tpl:
        tpl.execute("INSERT INTO admmgt.script_history (script_id, action) VALUES (3, 'apply')")
        with pytest.raises(psycopg.Error) as behind:
            tenant.promote()
        assert "is at script 2 and the template" in str(behind.value)
        assert "at 3 (it lacks script(s) 3)" in str(behind.value)
        assert "applyScripts(t_separatedb => 0)" in (behind.value.diag.message_hint or "")
        tpl.execute("DELETE FROM admmgt.script_history WHERE script_id = 3")
        tpl.execute("ALTER TABLE mgttest.orders ADD COLUMN note text")
        with pytest.raises(psycopg.Error, match=r"orders: template column\(s\) note missing"):
            tenant.promote()
        tpl.execute("ALTER TABLE mgttest.orders DROP COLUMN note")
    with pytest.raises(psycopg.Error, match='"mgttest" is a template'):
        tenant.admin.execute("CALL admmgt.promote_tenant('mgttest')")
    with pytest.raises(psycopg.Error, match='no tenant is registered as "nobody"'):
        tenant.admin.execute("CALL admmgt.promote_tenant('nobody')")
    with (
        pytest.raises(psycopg.Error, match="cannot run inside a transaction block"),
        tenant.admin.transaction(),
    ):
        tenant.promote()
    # A database of the tenant's name is in the way: refused, naming it.
    tenant.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(tenant.schema)))
    with pytest.raises(psycopg.Error, match=f'a database "{tenant.schema}" already exists'):
        tenant.promote()
    tenant.admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(tenant.schema)))
    tenant.unchanged(before)
    assert tenant.promotions() == []
    assert tenant.role_may_insert()


def test_a_copy_that_does_not_match_changes_nothing_and_a_rerun_completes(
    tenant: Promotable,
) -> None:
    """A trigger of the template database that fires under replication
    (ENABLE ALWAYS) changes the copied names: the checksums differ."""
    before = tenant.schema_rows()
    tpl_dsn = tenant.fleet.admin.info.dsn.replace(
        f"dbname={tenant.admin.info.dbname}", f"dbname={tenant.template}"
    )
    with connect(tpl_dsn) as tpl:
        tpl.execute(
            "CREATE FUNCTION mgttest.shout() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN NEW.name := upper(NEW.name); RETURN NEW; END$$;"
            " CREATE TRIGGER shout BEFORE INSERT ON mgttest.customers"
            " FOR EACH ROW EXECUTE FUNCTION mgttest.shout();"
            " ALTER TABLE mgttest.customers ENABLE ALWAYS TRIGGER shout"
        )
    notices = Notices(tenant.admin)
    with pytest.raises(psycopg.Error) as failed:
        tenant.promote()
    message = str(failed.value)
    assert "failed at step verify" in message, message
    # The run is recorded on its own session to the end (none was lost).
    assert not [n for n in notices.take() if "lost its connection" in n]
    row = tenant.admin.execute(
        "SELECT r.outcome, l.outcome, l.message FROM admmgt.runs AS r"
        " JOIN admmgt.run_log AS l ON l.run_id = r.id ORDER BY r.id DESC LIMIT 1"
    ).fetchone()
    assert row is not None and row[:2] == ("failed", "failed") and "step verify" in row[2], row
    assert "customers: 36 rows in the schema, 36 in the new database (same count" in message
    assert "undone (database" in message and "write privileges granted back" in message
    tenant.unchanged(before)
    assert tenant.role_may_insert()
    assert [p[1] for p in tenant.promotions()] == ["aborted"]
    with connect(tpl_dsn) as tpl:
        tpl.execute("DROP TRIGGER shout ON mgttest.customers")
    tenant.promote()
    check_promoted(tenant, before)


def _promote_in_thread(tenant: Promotable, fault: str) -> tuple[threading.Thread, list[Any]]:
    """promote_tenant on its own connection, stopped by the test hook; the
    result list gets its backend pid, then its error (or None)."""
    result: list[Any] = []
    conn = connect(tenant.admin.info.dsn)
    conn.execute(
        sql.SQL("SET {} = {}").format(sql.Identifier(*FAULT_SETTING.split(".")), sql.Literal(fault))
    )
    result.append(conn.info.backend_pid)

    def run() -> None:
        try:
            tenant.promote(conn=conn)
            result.append(None)
        except psycopg.Error as exc:
            result.append(exc)
        finally:
            conn.close()

    worker = threading.Thread(target=run)
    worker.start()
    return worker, result


def _wait(conn: Conn, query: str, args: tuple[Any, ...] = (), seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        row = conn.execute(query, args).fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, f"timed out waiting for: {query}"
        time.sleep(0.1)


def _wait_parked(tenant: Promotable, pid: int) -> None:
    """Until the promoting backend waits for the test's advisory lock."""
    _wait(
        tenant.admin,
        "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND locktype = 'advisory'"
        " AND NOT granted AND classid = %s AND objid = %s)",
        (pid, LOCK_CLASS, FAULT_LOCK),
    )


@pytest.mark.parametrize("step", ["block", "copy"])
def test_an_interrupted_promotion_changes_nothing_and_the_next_call_completes_it(
    tenant: Promotable, step: str
) -> None:
    before = tenant.schema_rows()
    with connect(tenant.admin.info.dsn) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, FAULT_LOCK))
        worker, result = _promote_in_thread(tenant, f"{step}:wait")
        _wait_parked(tenant, result[0])
        tenant.admin.execute("SELECT pg_terminate_backend(%s)", (result[0],))
        worker.join(120)
    assert isinstance(result[1], psycopg.OperationalError), result
    _wait(
        tenant.admin,
        "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)",
        (result[0],),
    )
    # Before the switch: the registry, the rows and the history are as they
    # were; the tenant is read-only until the next call.
    assert tenant.registry() == (0, 2, 2, "local")
    assert tenant.schema_rows() == before
    [(promotion_id, state, _)] = tenant.promotions()
    assert state == "started"
    assert databases(tenant.admin, f"{tenant.schema}%") == {
        f"{tenant.schema}_promoting_{promotion_id}"
    }
    assert not tenant.role_may_insert()
    shown = "SELECT promotion FROM admmgt.fleet_status WHERE dbname = %s"
    [(promotion,)] = tenant.admin.execute(shown, (tenant.schema,)).fetchall()
    assert promotion.startswith(f"promotion {promotion_id} unfinished (started since "), promotion
    assert promotion.endswith(
        f"CALL admmgt.promote_tenant('{tenant.schema}') finishes it, t_abort => true undoes it"
    ), promotion
    lines = tenant.promote()
    said = "\n".join(lines)
    assert "was interrupted before the registry switched; undone (database" in said, lines
    check_promoted(tenant, before)
    assert [p[1] for p in tenant.promotions()] == ["aborted", "done"]
    assert tenant.admin.execute(shown, (tenant.schema,)).fetchall() == [(None,)]


def test_t_abort_undoes_an_interrupted_promotion_and_only_that(tenant: Promotable) -> None:
    before = tenant.schema_rows()
    with connect(tenant.admin.info.dsn) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, FAULT_LOCK))
        worker, result = _promote_in_thread(tenant, "verify:wait")
        _wait_parked(tenant, result[0])
        tenant.admin.execute("SELECT pg_terminate_backend(%s)", (result[0],))
        worker.join(120)
    _wait(
        tenant.admin,
        "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)",
        (result[0],),
    )
    lines = tenant.promote(None, True)
    assert any("undone (database" in line for line in lines), lines
    tenant.unchanged(before)
    assert tenant.role_may_insert()
    assert [p[1] for p in tenant.promotions()] == ["aborted"]
    lines = tenant.promote(None, True)
    assert lines[0] == (
        f'promote_tenant: no promotion of "{tenant.schema}" is unfinished; nothing to abort'
    ), lines


def test_a_failure_after_the_switch_leaves_a_promoted_tenant_and_the_next_call_renames(
    tenant: Promotable,
) -> None:
    before = tenant.schema_rows()
    with connect(tenant.admin.info.dsn) as conn:
        conn.execute(sql.SQL("SET {} = 'switch'").format(sql.Identifier(*FAULT_SETTING.split("."))))
        with pytest.raises(psycopg.Error, match="stopped after step 'switch'"):
            tenant.promote(conn=conn)
    assert tenant.registry() == (1, 2, 2, "local")
    assert [p[1] for p in tenant.promotions()] == ["switched"]
    assert tenant.fleet.has_table(tenant.schema, "customers")  # not renamed yet
    lines = tenant.promote()
    assert any("interrupted after the registry switched" in line for line in lines), lines
    check_promoted(tenant, before)


def test_writers_are_blocked_and_queued_writers_are_refused_not_lost(
    tenant: Promotable,
) -> None:
    before = tenant.schema_rows()
    errors_seen: dict[str, BaseException | None] = {}
    with connect(tenant.admin.info.dsn) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, FAULT_LOCK))
        worker, result = _promote_in_thread(tenant, "copy:wait")
        _wait_parked(tenant, result[0])
        # The tenant role lost its write privileges (it keeps SELECT).
        assert not tenant.role_may_insert()
        # Writers queue on the SHARE lock: the tenant role and the owner (here
        # a superuser, whom no revoke stops).
        writers = []
        for who in ("role", "owner"):
            conn = tenant.fleet.connect()
            if who == "role":
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(tenant.role)))

            def write(conn: Conn = conn, who: str = who) -> None:
                try:
                    conn.execute(
                        sql.SQL("INSERT INTO {}.customers (name) VALUES ('queued')").format(
                            sql.Identifier(tenant.schema)
                        )
                    )
                    errors_seen[who] = None
                except psycopg.Error as exc:
                    errors_seen[who] = exc
                finally:
                    conn.close()

            pid = conn.info.backend_pid
            thread = threading.Thread(target=write)
            thread.start()
            writers.append(thread)
            _wait(
                holder,
                "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted)",
                (pid,),
            )
        holder.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, FAULT_LOCK))
        worker.join(120)
        for thread in writers:
            thread.join(120)
    assert result[1] is None, result
    # Refused once the schema is renamed (the relation is looked up again
    # when the lock is granted): their rows are nowhere.
    assert set(errors_seen) == {"role", "owner"}
    for who, exc in errors_seen.items():
        assert isinstance(exc, errors.UndefinedTable), (who, exc)
        assert f'relation "{tenant.schema}.customers" does not exist' in str(exc), (who, exc)
    check_promoted(tenant, before)


def test_a_long_writer_holding_a_lock_stops_the_promotion_before_any_copy(
    tenant: Promotable,
) -> None:
    tenant.admin.execute(
        "UPDATE admmgt.settings SET value = CASE name WHEN 'lock_timeout_ms' THEN '100'"
        " WHEN 'lock_retries' THEN '1' ELSE '50' END"
        " WHERE name IN ('lock_timeout_ms', 'lock_retries', 'retry_backoff_ms')"
    )
    before = tenant.schema_rows()
    with tenant.fleet.connect() as writer:
        writer.execute("BEGIN")
        writer.execute(
            sql.SQL("UPDATE {}.orders SET qty = qty WHERE id = 1").format(
                sql.Identifier(tenant.schema)
            )
        )
        with pytest.raises(psycopg.Error) as failed:
            tenant.promote()
        writer.execute("ROLLBACK")
    message = str(failed.value)
    assert "failed at step block: could not lock the 4 tables of schema" in message, message
    assert "after 2 tries" in message and "undone (database" in message, message
    tenant.unchanged(before)
    assert tenant.role_may_insert()
    tenant.promote()
    check_promoted(tenant, before)


def test_a_tenant_is_promoted_onto_another_cluster_with_t_cluster(
    tenant: Promotable, remote_clusters: dict[str, RemoteCluster]
) -> None:
    """The new database is made from c2's own template copy; c2's postgres_fdw
    reads the host database on the test server."""
    c2 = remote_clusters["c2"]
    tenant.admin.execute(
        "INSERT INTO admmgt.clusters (name, host, port) VALUES ('c2', %s, %s)",
        (c2.host, c2.sandbox.port),
    )
    tpl = f"{tenant.template}"
    drop_databases(c2.dsn, tpl)
    try:
        create_database(c2.dsn, tpl)
        with connect(make_conninfo(c2.dsn, dbname=tpl)) as conn:
            conn.execute(
                TEMPLATE_DDL
                + _history.ENSURE_TABLE
                + f"; INSERT INTO admmgt.script_history {HISTORY}"
            )
        tenant.admin.execute(
            "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status, cluster_name)"
            " VALUES (%s, true, 2, 'c2')",
            (tpl,),
        )
        before = tenant.schema_rows()
        lines = tenant.promote("c2")
        assert any('on cluster "c2" at script 2: 77 rows' in line for line in lines), lines
        assert tenant.registry() == (1, 2, 2, "c2")
        with connect(make_conninfo(c2.dsn, dbname=tenant.schema)) as db:
            assert tenant.rows(db, "mgttest") == before
            row = db.execute("INSERT INTO mgttest.customers (name) VALUES ('new') RETURNING id")
            assert row.fetchone() == (41,)
        assert not tenant.database_exists()  # nothing on the host's own cluster
    finally:
        drop_databases(c2.dsn, tenant.template)
        drop_databases(c2.dsn, tenant.schema)
