"""Partition maintenance of admmgt next to pg_partman's run_maintenance(), on one fleet.

    .venv/bin/python bench/maintenance.py [--tenants 100 500] [--days 60] [--repeat 3]
                                          [--dir .sandbox/bench-partman] [--port 54331] [--keep]

For each fleet size: a throwaway cluster (admmgt.Sandbox), an admin database
with admmgt installed, a template and N tenants made by admmgt.create_database
(bench/rollout.py's fleet). The template has two range-partitioned tables,
twice over, each with a default partition and one row written now:

* schema app: `events` by day and `ledger` by month, described as metadata
  (admmgt's script 1) and made by CALL admmgt.applyScripts(), which gives each
  its first partition (today's day, this month);
* schema app_pm: the same parent tables (admmgt's compiled CREATE TABLE,
  pointed at app_pm), registered with pg_partman 4.x's create_parent(); the
  children it made beyond the current period are dropped, so both sides start
  with the same partitions, and `premake` is set to the same horizon as
  t_numdays (--days): --days for the daily table, the months from this month
  to the month of today + --days for the monthly one.

The tenants are copies of the template, pg_partman's part_config included.
Then, on the template and every tenant:

* admmgt: CALL admmgt.applyMaintenance(t_numdays => --days) once, from the
  admin database, max_parallel 4;
* pg_partman: `SELECT partman.run_maintenance()` in every database with
  `printf '%s\\n' dbnames | xargs -P4 -I{} psql ... -c ...`.

Measured: (a) the first maintenance, which creates --days daily children and
one or two monthly ones per database, once per side; (b) a no-op re-run,
--repeat times, alternating which side goes first. After each phase every
database's children are counted and their bounds compared between app and
app_pm (the check column). pg_partman (Debian's postgresql-15-partman) is
installed with apt-get when missing; it needs no shared_preload_libraries
here (only its background worker would). Every session runs with TimeZone
UTC (PGTZ), as admmgt's maintenance does. A benchmark, not a test.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from psycopg import sql

import admmgt
from rollout import (
    LIMIT_S,
    PSQL,
    TEMPLATE,
    XARGS_P,
    Conn,
    Fleet,
    Row,
    Timing,
    bench_arguments,
    bench_cluster,
    check_arguments,
    connect,
    each_fleet,
    markdown,
    twin,
)

TWIN = "app_pm"
# (name, datatype, nullable, default, isprimarykey, isidentity); the partition
# column joins the primary key (admmgt's compiler adds it).
EVENTS = [
    ("id", "bigint", 0, None, 1, 1),
    ("happened_at", "timestamptz", 0, None, 0, 0),
    ("payload", "text", 1, None, 0, 0),
]
LEDGER = [
    ("id", "bigint", 0, None, 1, 1),
    ("booked_at", "timestamptz", 0, None, 0, 0),
    ("amount", "numeric(12,2)", 1, "0", 0, 0),
]
# table -> (columns, partition column, admmgt interval, pg_partman 4.x interval)
TABLES: dict[str, tuple[list[tuple[Any, ...]], str, str, str]] = {
    "events": (EVENTS, "happened_at", "day", "daily"),
    "ledger": (LEDGER, "booked_at", "month", "monthly"),
}
# pg_partman made the current period and one more (premake >= 1); the one ahead goes.
DROP_AHEAD = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN
        SELECT s.partition_schemaname AS s, s.partition_tablename AS t
        FROM partman.part_config AS c,
             LATERAL partman.show_partitions(c.parent_table) AS s,
             LATERAL partman.show_partition_info(
                 s.partition_schemaname || '.' || s.partition_tablename, NULL, c.parent_table) AS i
        WHERE i.child_start_time > now()
    LOOP
        EXECUTE format('DROP TABLE %I.%I', r.s, r.t);
    END LOOP;
END $$"""
# One line per partitioned table: children (default included) and a digest of
# their bounds, which PostgreSQL prints alike whoever made them.
CHILDREN_SQL = f"""
SELECT current_database(), n.nspname, p.relname, count(*),
       md5(string_agg(pg_get_expr(c.relpartbound, c.oid), ';'
                      ORDER BY pg_get_expr(c.relpartbound, c.oid)))
FROM pg_catalog.pg_inherits AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
JOIN pg_catalog.pg_class AS p ON p.oid = i.inhparent
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.relnamespace
WHERE n.nspname IN ('app', '{TWIN}') AND p.relname IN ({", ".join(f"'{t}'" for t in TABLES)})
GROUP BY 1, 2, 3"""
PARTMAN_RUN = "SELECT partman.run_maintenance()"
# pg_partman 4.x's run_maintenance counts the periods made ahead as
# round(epoch(age(last child, current child)) / epoch(interval)): age() in
# months and days, a month weighing 30.4375 days. For a daily table that is not
# always the number of days (25 Nov to 5 Jan is '1 mon 10 days', 40, for 41
# days), so the premake equal to admmgt's horizon is computed the same way.
PREMAKE_SQL = """
SELECT round(extract(epoch FROM age(
           date_trunc(%(unit)s, (%(today)s::date + %(days)s)::timestamptz),
           date_trunc(%(unit)s, %(today)s::date::timestamptz)))
       / extract(epoch FROM ('1 ' || %(unit)s)::interval))"""


def periods_ahead(interval: str, today: dt.date, days: int) -> int:
    """How many periods after the current one admmgt's t_numdays => days reaches."""
    ahead = today + dt.timedelta(days=days)
    if interval == "day":
        return days
    return (ahead.year - today.year) * 12 + ahead.month - today.month


def ensure_partman(cluster: Conn) -> str:
    """pg_partman 4.x available to the server: apt-get install it when missing."""

    def available() -> str | None:
        row = cluster.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_partman'"
        ).fetchone()
        return str(row[0]) if row else None

    version, how = available(), "already installed"
    if version is None:
        if os.geteuid() != 0:
            raise SystemExit("pg_partman is missing: apt-get install -y postgresql-15-partman")
        install = ["apt-get", "install", "-y", "-q", "postgresql-15-partman"]
        for command in (install, ["apt-get", "update", "-q"], install):
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=LIMIT_S, check=False
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise SystemExit(f"{' '.join(command)}: {exc}") from exc
            if done.returncode == 0 and command is install and available():
                break
        version, how = available(), "installed now with apt-get"
        if version is None:
            raise SystemExit(f"apt-get install postgresql-15-partman failed: {done.stderr[-400:]}")
    if not version.startswith("4."):
        raise SystemExit(f"pg_partman {version}: this benchmark uses the 4.x create_parent()")
    return f"pg_partman {version} ({how})"


# ------------------------------------------------------------------ the fleet


@dataclass
class Phase:
    """One row of the table: a Row of timings and the children check after it."""

    tenants: int
    row: Row
    check: str = ""
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


class MaintenanceFleet(Fleet):
    """rollout.py's fleet, with partitioned tables for admmgt and for pg_partman."""

    def __init__(
        self, box: admmgt.Sandbox, cluster: Conn, size: int, repeat: int, days: int, flip: int
    ) -> None:
        super().__init__(box, cluster, size, repeat)
        self.days = days
        self.flip = bool(flip)  # pg_partman goes first in the first maintenance
        self.databases = [TEMPLATE, *self.tenants]
        self.today = dt.date.today()
        self.ahead: dict[str, int] = {}  # periods admmgt makes after the current one
        self.premake: dict[str, int] = {}  # pg_partman's premake for the same horizon
        self.phases: list[Phase] = []
        self.notes: list[str] = []

    def build(self) -> None:
        self.create_admin()
        self.set_parallel(str(XARGS_P))
        self.today = self.one("SELECT (now() AT TIME ZONE 'UTC')::date")
        self.ahead = {t: periods_ahead(v[2], self.today, self.days) for t, v in TABLES.items()}
        self.script(
            1,
            "partitioned tables",
            tables=[(t, v[0]) for t, v in TABLES.items()],
            ranges={t: (v[1], v[2]) for t, v in TABLES.items()},
        )
        parents = [
            twin(r[0], TWIN)
            for r in self.admin.execute("SELECT statement FROM admmgt.plan_script(1) ORDER BY step")
            if r[0].startswith("CREATE SCHEMA") or " PARTITION BY RANGE " in r[0]
        ]
        self.call("applyscripts")
        self.take_notices("template set-up")
        with connect(self.box.dsn(TEMPLATE)) as tpl:
            tpl.execute("CREATE SCHEMA partman")
            tpl.execute("CREATE EXTENSION pg_partman SCHEMA partman")
            for statement in parents:
                tpl.execute(statement)
            for table, (_, column, _, interval) in TABLES.items():
                tpl.execute(
                    "SELECT partman.create_parent(p_parent_table => %s, p_control => %s,"
                    " p_type => 'native', p_interval => %s, p_premake => 1,"
                    " p_start_partition => %s)",
                    (f"{TWIN}.{table}", column, interval, self.today.isoformat()),
                )
            tpl.execute(DROP_AHEAD)
            for table, (_, column, interval, _) in TABLES.items():
                # The premake that takes pg_partman 4.x to the period admmgt's
                # t_numdays reaches, by pg_partman's own count (PREMAKE_SQL).
                row = tpl.execute(
                    PREMAKE_SQL, {"unit": interval, "today": self.today, "days": self.days}
                ).fetchone()
                self.premake[table] = int(row[0]) if row else 0
                tpl.execute(
                    "UPDATE partman.part_config SET premake = %s WHERE parent_table = %s",
                    (self.premake[table], f"{TWIN}.{table}"),
                )
                for schema in ("app", TWIN):
                    tpl.execute(
                        sql.SQL("INSERT INTO {} ({}) VALUES (now())").format(
                            sql.Identifier(schema, table), sql.Identifier(column)
                        )
                    )
        horizon = f"today {self.today} (UTC), t_numdays {self.days}; " + ", ".join(
            f"{t}: admmgt makes {self.ahead[t]} {TABLES[t][2]}(s) ahead, pg_partman premake "
            f"{self.premake[t]}"
            for t in TABLES
        )
        self.notes.append(horizon)
        self.log(horizon)
        self.verify("template set-up", [TEMPLATE])
        self.register(self.tenants)
        self.log(f"CALL admmgt.create_database() for {self.size} tenants (not measured)")
        self.call("create_database")
        self.take_notices("create_database")
        self.log("fleet made")

    # -- the two sides

    def admmgt_run(self, detail: str) -> Timing:
        return self.timed_call("applymaintenance", detail, t_numdays=self.days)

    def partman_run(self) -> Timing:
        return self.xargs_psql(self.databases, "{}", "-At", "-c", PARTMAN_RUN)

    def verify(self, what: str, databases: list[str] | None = None) -> str:
        """Children per database: admmgt's (app) against pg_partman's (app_pm)."""
        databases = databases or self.databases
        self.xargs_psql(databases, "{}", "-At", "-F", " ", "-c", CHILDREN_SQL)
        found: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
        for line in self.last_stdout.splitlines():
            db, schema, table, count, digest = line.split()
            found.setdefault(db, {})[schema, table] = (count, digest)

        def same(tables: dict[tuple[str, str], tuple[str, str]]) -> bool:
            pairs = [(tables.get(("app", t)), tables.get((TWIN, t))) for t in TABLES]
            return all(a is not None and a == b for a, b in pairs)

        alike = sum(same(found.get(db, {})) for db in databases)
        tpl = found.get(TEMPLATE, {})
        counts = ", ".join(
            f"{t} {tpl.get(('app', t), ('?',))[0]}/{tpl.get((TWIN, t), ('?',))[0]}" for t in TABLES
        )
        if alike != len(databases):
            self.result.problems.append(
                f"{what}: children differ between app and {TWIN} in "
                f"{len(databases) - alike} of {len(databases)} databases"
            )
        check = f"template {counts}; same in {alike}/{len(databases)} dbs"
        self.log(f"{what}: {check}")
        return check

    # -- the measurements

    def phase(self, row: Row) -> Phase:
        self.log(f"{row.operation}: done")
        return Phase(self.size, row, self.verify(row.operation), os.getloadavg())

    def measure(self) -> None:
        created = sum(self.ahead.values())
        first = Row(f"first: {created} children to create per database", str(XARGS_P))
        self.pair(
            first, int(self.flip), partial(self.admmgt_run, "first maintenance"), self.partman_run
        )
        self.phases.append(self.phase(first))
        noop = Row("no-op re-run", str(XARGS_P))
        for rep in range(self.repeat):
            self.pair(
                noop,
                rep + int(self.flip),
                partial(self.admmgt_run, "no-op re-run"),
                self.partman_run,
            )
        self.phases.append(self.phase(noop))
        self.result.rows += [first, noop]

    def run_all(self) -> MaintenanceFleet:
        self._started = time.monotonic()
        self.notes.append(f"load at start {os.getloadavg()[0]:.1f}")
        self.build()
        self.measure()
        self.notes.append(
            f"{time.monotonic() - self._started:.0f} s in all (fleet building included)"
        )
        return self


# ----------------------------------------------------------------------- main


def print_outcomes(outcomes: list[MaintenanceFleet]) -> None:
    """The table of phases, admmgt's run-log details, driver CPU, notes and problems."""
    rows = []
    for o in outcomes:
        for p in o.phases:
            cells = p.row.cells()  # operation, admmgt, psql, ratio, range, parallel
            rows.append([str(p.tenants), *cells[:5], f"{p.load[0]:.1f}", p.check])
    print()
    print(
        markdown(
            [
                "tenants",
                "phase",
                "admmgt s",
                "pg_partman s",
                "pg_partman / admmgt",
                "ratio range",
                "load 1 min",
                "check: children per database (default included), same bounds",
            ],
            rows,
        )
    )
    details = [d.cells() for o in outcomes for d in o.result.details]
    print(
        "\nadmmgt per-database times from admmgt.run_log (busy = sum of per-database times /"
        " wall time: databases in flight on average):\n"
    )
    print(markdown(["admmgt run", "run id", "databases", "median ms", "p95 ms", "busy"], details))
    cpu = [[str(o.size), *p.row.cpu_cells()] for o in outcomes for p in o.phases]
    print(
        "\nDriver CPU seconds (medians): admmgt = its admin backend; pg_partman = the psql"
        " processes. Tenant backends, where both do their work, not counted.\n"
    )
    print(markdown(["tenants", "phase", "max_parallel", "admmgt backend CPU s", "psql CPU s"], cpu))
    for o in outcomes:
        print(f"\n{o.size} tenants: " + "; ".join(o.notes))
    problems = [f"{f.size} tenants: {p}" for f in outcomes for p in f.result.problems]
    if problems:
        print("\nproblems seen:")
        for problem in problems:
            print(f"  - {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__, "bench-partman", 54331)
    parser.add_argument("--days", type=int, default=60, help="t_numdays, 31 to 366")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if not 31 <= args.days <= 366:
        # At least 31, so that the monthly table has a month to make too.
        parser.error("--days: 31 to 366")
    # Every session (psycopg's and psql's) in UTC: admmgt's maintenance computes
    # its periods in UTC, pg_partman in the session's time zone.
    os.environ["PGTZ"] = "UTC"
    started = time.monotonic()
    options = f"--days {args.days}, --repeat {args.repeat}"
    with bench_cluster(args, "maintenance", options) as (box, cluster):
        server = cluster.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {server[0] if server else '?'}; {ensure_partman(cluster)}; {PSQL}")
        fleets = each_fleet(
            args.tenants,
            # Which side goes first in the first maintenance alternates by fleet.
            lambda i, size: MaintenanceFleet(box, cluster, size, args.repeat, args.days, i % 2),
            MaintenanceFleet.run_all,
        )
    print_outcomes(fleets)
    print(
        f"\n{os.cpu_count() or 1} cores; admmgt max_parallel {XARGS_P}, pg_partman through"
        f" xargs -P{XARGS_P} psql; both on the template and every tenant, in schemas app and"
        " app_pm of the same databases. Quote the ratios of one run, not the absolute seconds."
        f"\nTotal {time.monotonic() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
