"""Helpers that build a template and tenants the way a DBA does, through SQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from admmgt.cli import main
from admmgt_plpy import _history
from tests.fix_db import connect, create_database


class Notices:
    """Collects the NOTICE lines a connection receives."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.lines: list[str] = []
        conn.add_notice_handler(lambda d: self.lines.append(d.message_primary or ""))

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines

    def take_without_clock(self) -> list[str]:
        """take(), without the NOTICE that the fleet's clock is pinned (tests/db/clock.py)."""
        return [x for x in self.take() if "the fleet's clock is pinned at" not in x]


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


def history(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """(script_id, action) of every admmgt.script_history row of the connected database."""
    if conn.execute("SELECT to_regclass('admmgt.script_history')").fetchone() == (None,):
        return []
    rows = conn.execute("SELECT script_id, action FROM admmgt.script_history ORDER BY id")
    return [(r[0], r[1]) for r in rows]


def call(conn: psycopg.Connection[Any], procedure: str, *args: Any) -> None:
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
    conn.execute(
        sql.SQL("CALL admmgt.{}({})").format(sql.Identifier(procedure), placeholders), args
    )


def dsn_of(admin: psycopg.Connection[Any], db: str) -> str:
    """The admin connection's DSN, pointed at database ``db``."""
    return admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={db}")


def called(
    admin: psycopg.Connection[Any], procedure: str, *args: Any, fails: bool = False
) -> list[str]:
    """CALL admmgt.<procedure>(*args)'s NOTICE lines (without the pinned-clock
    one); ``fails``: it must end with ERROR ZA001."""
    notices = Notices(admin)
    if fails:
        with pytest.raises(psycopg.Error) as failed:
            call(admin, procedure, *args)
        assert failed.value.sqlstate == "ZA001", failed.value
    else:
        call(admin, procedure, *args)
    return notices.take_without_clock()


def wait_for_cron_run(cluster_dsn: str, job_name: str, seconds: float = 100) -> tuple[Any, ...]:
    """(status, return_message) of the pg_cron job's latest finished run, once there is one."""
    deadline = time.monotonic() + seconds
    with connect(cluster_dsn) as pg:
        while True:
            run = pg.execute(
                "SELECT d.status, d.return_message FROM cron.job_run_details AS d"
                " JOIN cron.job AS j USING (jobid) WHERE j.jobname = %s"
                " AND d.status IN ('succeeded', 'failed') ORDER BY d.runid DESC LIMIT 1",
                (job_name,),
            ).fetchone()
            if run is not None:
                return tuple(run)
            assert time.monotonic() < deadline, f"pg_cron did not run {job_name} within {seconds} s"
            time.sleep(1)


class Fleet:
    """A template and its tenants, as the database tests see them: every test
    file builds its fleet with :func:`make_fleet` and reads it through here."""

    def __init__(self, admin: psycopg.Connection[Any], template: str, tenants: list[str]) -> None:
        self.admin = admin
        self.template = template
        self.tenants = tenants

    @property
    def databases(self) -> list[str]:
        return [self.template, *self.tenants]

    def dsn(self, db: str) -> str:
        """The admin connection's DSN, pointed at database ``db``."""
        return dsn_of(self.admin, db)

    def connect(self, db: str) -> psycopg.Connection[Any]:
        return connect(self.dsn(db))

    def execute(self, db: str, statement: str) -> None:
        """Run ``statement`` in database ``db`` (autocommit)."""
        with self.connect(db) as conn:
            conn.execute(statement)

    def history(self, db: str) -> list[tuple[int, str]]:
        """(script_id, action) of every script_history row of database ``db``."""
        with self.connect(db) as conn:
            return history(conn)

    def has_table(self, db: str, name: str) -> bool:
        with self.connect(db) as conn:
            return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,)

    def runs(self) -> int:
        """How many runs admmgt.runs has recorded."""
        row = self.admin.execute("SELECT count(*) FROM admmgt.runs").fetchone()
        return int(row[0]) if row else 0

    def apply(self, fails: bool = False) -> list[str]:
        """applyScripts' NOTICE lines (without the pinned-clock one); ``fails``:
        it must end with ERROR ZA001, else no line may say FAILED."""
        notices = Notices(self.admin)
        if fails:
            with pytest.raises(psycopg.Error) as failed:
                call(self.admin, "applyscripts")
            assert failed.value.sqlstate == "ZA001", failed.value
            return notices.take_without_clock()
        call(self.admin, "applyscripts")
        lines = notices.take_without_clock()
        assert not [line for line in lines if "FAILED" in line], lines
        return lines

    def maintain(self, numdays: int = 30, move: bool = False, fails: bool = False) -> list[str]:
        """applyMaintenance's NOTICE lines; ``fails``: it must end with ERROR ZA001."""
        notices = Notices(self.admin)
        query = "CALL admmgt.applyMaintenance(t_numdays => %s, t_move_default_rows => %s)"
        if fails:
            with pytest.raises(psycopg.Error) as failed:
                self.admin.execute(query, (numdays, move))
            assert failed.value.sqlstate == "ZA001", failed.value
        else:
            self.admin.execute(query, (numdays, move))
        return notices.take_without_clock()

    def drift(self, dbname: str | None = None) -> set[tuple[str, str, str, str]]:
        """detect_drift's rows, for one tenant or (None) all."""
        rows = self.admin.execute(
            "SELECT dbname, object_kind, object_name, difference FROM admmgt.detect_drift(%s)",
            (dbname,),
        ).fetchall()
        return {(r[0], r[1], r[2], r[3]) for r in rows}

    def children(self, db: str, parent: str) -> set[str]:
        with self.connect(db) as conn:
            return {
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c"
                    " ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                    (parent,),
                )
            }

    def today(self) -> date:
        """Today (UTC) on the fleet's clock (admmgt.fleet_now, pinned or not)."""
        row = self.admin.execute("SELECT (admmgt.fleet_now() AT TIME ZONE 'UTC')::date").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


def make_fleet(
    cluster_dsn: str,
    admin: psycopg.Connection[Any],
    prefix: str,
    n: int,
    ddl: str = "CREATE SCHEMA mgttest",
) -> Fleet:
    """A template ``<prefix>tpl`` made with ``ddl``, and ``n`` tenants ``<prefix>c<i>``
    created from it by create_database. ``i`` has as many digits as ``n - 1``
    (c0..c9, c00..c19, c000..c199), so the names sort in creation order."""
    template = f"{prefix}tpl"
    make_template(cluster_dsn, admin, template, ddl)
    width = len(str(max(n - 1, 0)))
    tenants = [f"{prefix}c{i:0{width}d}" for i in range(n)]
    register(admin, *tenants)
    call(admin, "create_database")
    return Fleet(admin, template, tenants)


def schedule_cli(admin_dsn: str) -> Callable[..., str]:
    """`admmgt --dsn <admin_dsn> schedule <args>` in-process; returns its output,
    failing the test on a non-zero exit unless check=False (for clean-up)."""
    runner = CliRunner()

    def schedule(*args: str, check: bool = True) -> str:
        result = runner.invoke(main, ["--dsn", admin_dsn, "schedule", *args])
        assert result.exit_code == 0 or not check, result.output
        return result.output

    return schedule


# ------------------------------------------------------------ schema tenants


def schema_history(conn: psycopg.Connection[Any], schema: str) -> list[tuple[int, str]]:
    """(script_id, action) of every <schema>.admmgt_history row ([] without the table)."""
    table = sql.Identifier(schema, "admmgt_history")
    if conn.execute("SELECT to_regclass(%s)", (f'"{schema}".admmgt_history',)).fetchone() == (
        None,
    ):
        return []
    rows = conn.execute(sql.SQL("SELECT script_id, action FROM {} ORDER BY id").format(table))
    return [(r[0], r[1]) for r in rows]


class SchemaFleet:
    """Schema tenants: a host database holding the template schema and the
    tenant schemas, as the database tests see them (:func:`make_schema_fleet`)."""

    def __init__(
        self,
        admin: psycopg.Connection[Any],
        host: str,
        template: str,
        tenants: list[str],
    ) -> None:
        self.admin = admin
        self.host = host
        self.template = template  # the template schema
        self.tenants = tenants  # the tenant schemas

    @property
    def schemas(self) -> list[str]:
        return [self.template, *self.tenants]

    def connect(self) -> psycopg.Connection[Any]:
        """A connection to the host database."""
        return connect(dsn_of(self.admin, self.host))

    def history(self, schema: str) -> list[tuple[int, str]]:
        with self.connect() as conn:
            return schema_history(conn, schema)

    def has_table(self, schema: str, table: str) -> bool:
        with self.connect() as conn:
            found = conn.execute(
                "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)
            ).fetchone()
            return found != (None,)


def make_schema_fleet(
    cluster_dsn: str,
    admin: psycopg.Connection[Any],
    prefix: str,
    n: int,
    template: str = "mgttest",
) -> SchemaFleet:
    """A host database ``<prefix>schemas`` (registered in admmgt.schema_hosts for
    the local cluster), its template schema ``template`` and ``n`` tenant
    schemas ``<prefix>s<i>``, each empty but for its history table, registered
    as created (status 2) schema tenants. Made by hand, as create_schema
    would, so that tests of the other operations do not depend on it."""
    host = f"{prefix}schemas"
    create_database(cluster_dsn, host)
    width = len(str(max(n - 1, 0)))
    tenants = [f"{prefix}s{i:0{width}d}" for i in range(n)]
    fleet = SchemaFleet(admin, host, template, tenants)
    with fleet.connect() as conn:
        for schema in fleet.schemas:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(_history.ensure_table_sql(_history.history_table(schema)))
    admin.execute(
        "INSERT INTO admmgt.schema_hosts (cluster_name, dbname) VALUES ('local', %s)", (host,)
    )
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status, separatedb)"
        " VALUES (%s, true, 2, 0)",
        (template,),
    )
    admin.cursor().executemany(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status, separatedb) VALUES (%s, 2, 0)",
        [(t,) for t in tenants],
    )
    return fleet


class Hosted:
    """The test's host database and the connections to it."""

    def __init__(self, admin: psycopg.Connection[Any], prefix: str) -> None:
        self.admin = admin
        self.prefix = prefix
        self.name = f"{prefix}schemas"

    def connect(self) -> psycopg.Connection[Any]:
        return connect(dsn_of(self.admin, self.name))

    def register(self, *names: str, template: bool = False) -> None:
        self.admin.cursor().executemany(
            "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status, separatedb)"
            " VALUES (%s, %s, 1, 0)",
            [(n, template) for n in names],
        )

    def rows(self) -> dict[str, tuple[Any, ...]]:
        found = self.admin.execute(
            "SELECT dbname, status, scriptversion, last_error FROM admmgt.vendor_db_settings"
            " WHERE NOT istemplate AND NOT deleted AND separatedb = 0"
        ).fetchall()
        return {r[0]: tuple(r[1:]) for r in found}

    def schemas(self) -> set[str]:
        with self.connect() as host:
            return {
                r[0]
                for r in host.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (self.prefix + "%",)
                )
            }
