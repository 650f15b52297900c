"""Scheduling admmgt's periodic procedures with pg_cron (`admmgt schedule`).

pg_cron keeps its jobs in one database per cluster (``cron.database_name``,
usually ``postgres``), which is rarely the admin database. Jobs are therefore
registered with ``cron.schedule_in_database`` (pg_cron 1.4 and later), from a
connection to pg_cron's database, to run in the admin database. Each job is
named ``admmgt-<kind>-<admin database>``, so several admin databases on one
cluster keep their own jobs and a second ``schedule`` replaces the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

KINDS = ("maintenance", "lifecycle")


class ScheduleError(Exception):
    """pg_cron is missing or refuses; the message says what to do."""


@dataclass(frozen=True)
class CronJob:
    jobid: int
    jobname: str
    schedule: str
    command: str
    database: str
    active: bool
    last_status: str | None
    last_start: str | None


def job_name(kind: str, admin_db: str) -> str:
    return f"admmgt-{kind}-{admin_db}"


def maintenance_command(days: int, move_default_rows: bool = False) -> str:
    command = f"CALL admmgt.applyMaintenance(t_numdays => {int(days)}"
    if move_default_rows:
        command += ", t_move_default_rows => true"
    return command + ")"


LIFECYCLE_COMMAND = "CALL admmgt.lifecycleMgt()"


def how_to_enable(admin_db: str, cron_db: str | None = None) -> str:
    target = cron_db or admin_db
    return (
        "To enable pg_cron: install the package (Debian: postgresql-15-cron), then in "
        "postgresql.conf set\n"
        "    shared_preload_libraries = 'pg_cron'   (keep any libraries already listed)\n"
        f"    cron.database_name = '{target}'\n"
        "restart PostgreSQL, and run in that database as a superuser:\n"
        "    CREATE EXTENSION pg_cron;\n"
        "Then run `admmgt schedule` again. (pg_cron 1.4 or later is needed to run jobs "
        f'in the admin database "{admin_db}" from another cron.database_name.)'
    )


class Cron:
    """A connection to pg_cron's database, found from the admin database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        with psycopg.connect(dsn, autocommit=True) as admin:
            row = admin.execute(
                "SELECT current_database(), current_setting('cron.database_name', true)"
            ).fetchone()
        assert row is not None
        self.admin_db: str = row[0]
        self.cron_db: str | None = row[1]
        if not self.cron_db:
            raise ScheduleError(
                "pg_cron is not loaded on this server (cron.database_name is not defined, so "
                "pg_cron is not in shared_preload_libraries).\n" + how_to_enable(self.admin_db)
            )
        self.created_extension = False

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            make_conninfo(self.dsn, dbname=self.cron_db), autocommit=True, application_name="admmgt"
        )
        try:
            self._check(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        have = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
        if have.fetchone() is None:
            try:
                conn.execute("CREATE EXTENSION pg_cron")
            except psycopg.Error as exc:
                raise ScheduleError(
                    f'pg_cron is loaded but its extension is not created in database "'
                    f'{self.cron_db}" (cron.database_name), and creating it failed: '
                    f"{str(exc).strip()}\n" + how_to_enable(self.admin_db, self.cron_db)
                ) from None
            self.created_extension = True
        found = conn.execute(
            "SELECT to_regprocedure("
            "'cron.schedule_in_database(text, text, text, text, text, boolean)') IS NOT NULL"
        ).fetchone()
        if not found or not found[0]:
            raise ScheduleError(
                f'pg_cron in database "{self.cron_db}" lacks cron.schedule_in_database '
                "(pg_cron 1.4 or later): run ALTER EXTENSION pg_cron UPDATE there, or upgrade "
                "the pg_cron package"
            )

    def schedule(self, kind: str, schedule: str, command: str) -> int:
        """Register (or replace) this admin database's job of ``kind``; return its id."""
        name = job_name(kind, self.admin_db)
        with self.connect() as conn:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (name,))
            try:
                row = conn.execute(
                    "SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                    (name, schedule, command, self.admin_db),
                ).fetchone()
            except psycopg.Error as exc:
                raise ScheduleError(
                    f"pg_cron refused the {kind} job: {str(exc).strip()} (the schedule is "
                    "standard cron syntax, e.g. '0 3 * * *' for 03:00 every day)"
                ) from None
        assert row is not None
        return int(row[0])

    def jobs(self) -> list[CronJob]:
        """This admin database's admmgt jobs, with their latest run."""
        with self.connect() as conn:
            rows = conn.execute(
                """SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.active,
                          d.status, to_char(d.start_time, 'YYYY-MM-DD HH24:MI:SS TZ')
                   FROM cron.job AS j
                   LEFT JOIN LATERAL (
                       SELECT status, start_time FROM cron.job_run_details AS r
                       WHERE r.jobid = j.jobid ORDER BY r.runid DESC LIMIT 1) AS d ON true
                   WHERE j.jobname = ANY(%s) ORDER BY j.jobname""",
                ([job_name(k, self.admin_db) for k in KINDS],),
            ).fetchall()
        return [CronJob(*r) for r in rows]

    def remove(self, kinds: tuple[str, ...]) -> list[str]:
        """Unschedule this admin database's jobs of ``kinds``; return the names removed."""
        names = [job_name(k, self.admin_db) for k in kinds]
        removed = []
        with self.connect() as conn:
            for jobid, name in conn.execute(
                "SELECT jobid, jobname FROM cron.job WHERE jobname = ANY(%s) ORDER BY jobname",
                (names,),
            ).fetchall():
                conn.execute("SELECT cron.unschedule(%s::bigint)", (jobid,))
                removed.append(name)
        return removed
