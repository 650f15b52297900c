"""Partition maintenance of admmgt next to pg_partman's run_maintenance(), on one fleet.

    .venv/bin/python bench/maintenance.py [--tenants 100 500] [--days 60] [--repeat 3]
                                          [--dir .sandbox/bench-partman] [--port 54331] [--keep]
                                          [--tcp-fsync | --no-tcp-fsync]

The cluster: by default (`--tcp-fsync`, on unless --no-tcp-fsync) bench/drivers.py's
cluster, imported from it: admmgt.Sandbox with fsync, synchronous_commit and
full_page_writes on, listening on 127.0.0.1 only, every client (psycopg, every
psql that runs pg_partman or a check) connecting over TCP to 127.0.0.1, and
admmgt's `local` cluster row pointed at 127.0.0.1 and the port, so that its
dblink connections to the databases are TCP too. --no-tcp-fsync: the
project's plain sandbox as before (fsync off, Unix socket only).

For each fleet size, on that one cluster: an admin database
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
--repeat times, alternating which side goes first. Printed: seconds, ms per
database (wall time / databases), pg_partman / admmgt (above 1: admmgt
faster; the goal of issue 14 is >= 4) and the admin backend's peak RSS
(VmHWM) after every admmgt run. After every timed run (each side, each
repetition) every database's children are counted against what that side
must have made, and, once both sides have run, their bounds are compared
between app and app_pm (the check column); a failed check is printed loudly
at once and listed at the end. pg_partman (Debian's postgresql-15-partman) is
installed with apt-get when missing; it needs no shared_preload_libraries
here (only its background worker would). Every session runs with TimeZone
UTC (PGTZ), as admmgt's maintenance does. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from psycopg import sql

import admmgt
from drivers import admmgt_over_tcp, peak_rss_mb, server_line, tcp_sandbox, uptime
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
    revision,
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
    """One row of the table: a Row of timings, the children check after its
    last run, the admin backend's VmHWM after each of its admmgt runs."""

    tenants: int
    row: Row
    databases: int
    check: str = ""
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rss_mb: list[float] = field(default_factory=list)

    def per_database_ms(self) -> tuple[str, str]:
        """The median wall time of each side divided by the databases it worked on."""
        cells = []
        for timings in (self.row.admmgt, self.row.psql):
            walls = [t.wall for t in timings]
            cells.append(
                f"{1000 * statistics.median(walls) / self.databases:.1f}" if walls else "n/a"
            )
        return cells[0], cells[1]


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
        self.rss_mb: list[float] = []  # VmHWM of the admin backend after each admmgt run
        # Whose first maintenance has run: what each schema's children must number.
        self.made = {"app": False, TWIN: False}
        self.last_check = ""

    def create_admin(self) -> None:
        super().create_admin()
        if self.box.dsn().startswith("host=127.0.0.1"):  # drivers.py's TCP cluster
            admmgt_over_tcp(self.admin, self.box)
        row = self.admin.execute(
            "SELECT host, port FROM admmgt.clusters WHERE name = 'local'"
        ).fetchone()
        self.log(
            f"admmgt's local cluster row: host {row[0] if row else '?'},"
            f" port {row[1] if row else '?'}"
        )

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

    def quiesce(self) -> None:
        """Untimed, before every timed run: a checkpoint, so that no run pays for
        the writes of the one before (with fsync on, the first maintenance
        leaves tens of thousands of new relations' pages dirty)."""
        self.cluster.execute("CHECKPOINT")

    def admmgt_run(self, detail: str) -> Timing:
        self.quiesce()
        timing = self.timed_call("applymaintenance", detail, t_numdays=self.days)
        mb = peak_rss_mb(self._admin_pid)
        if mb is not None:
            self.rss_mb.append(mb)
        self.made["app"] = True
        self.log(
            f"admmgt, {detail}: {timing.wall:.3f} s"
            + (f", admin backend VmHWM {mb:.1f} MB" if mb is not None else "")
        )
        self.verify(f"after admmgt's {detail}")
        return timing

    def partman_run(self, detail: str) -> Timing:
        self.quiesce()
        timing = self.xargs_psql(self.databases, "{}", "-At", "-c", PARTMAN_RUN)
        self.made[TWIN] = True
        self.log(f"pg_partman, {detail}: {timing.wall:.3f} s")
        self.verify(f"after pg_partman's {detail}")
        return timing

    def wanted(self, schema: str, table: str) -> str:
        """The children `schema`.`table` must have: the current period, the default
        partition, and the periods ahead once that side's first maintenance ran."""
        return str(2 + (self.ahead[table] if self.made[schema] else 0))

    def verify(self, what: str, databases: list[str] | None = None) -> str:
        """Children per database: each side's count against what it must have
        made, and admmgt's bounds (app) against pg_partman's (app_pm) once both
        sides are at the same point. Untimed; a failure is printed at once."""
        databases = databases or self.databases
        problems_before = len(self.result.problems)
        self.xargs_psql(databases, "{}", "-At", "-F", " ", "-c", CHILDREN_SQL)
        found: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
        for line in self.last_stdout.splitlines():
            db, schema, table, count, digest = line.split()
            found.setdefault(db, {})[schema, table] = (count, digest)
        compare = self.made["app"] == self.made[TWIN]

        def right(tables: dict[tuple[str, str], tuple[str, str]]) -> bool:
            for t in TABLES:
                a, b = tables.get(("app", t)), tables.get((TWIN, t))
                if a is None or b is None:
                    return False
                if a[0] != self.wanted("app", t) or b[0] != self.wanted(TWIN, t):
                    return False
                if compare and a != b:
                    return False
            return True

        good = sum(right(found.get(db, {})) for db in databases)
        tpl = found.get(TEMPLATE, {})
        counts = ", ".join(
            f"{t} {tpl.get(('app', t), ('?',))[0]}/{tpl.get((TWIN, t), ('?',))[0]}" for t in TABLES
        )
        how = "counts and bounds" if compare else "counts"
        if good != len(databases):
            message = (
                f"{what}: children wrong ({how}) in {len(databases) - good} of"
                f" {len(databases)} databases; wanted app"
                f" {'/'.join(self.wanted('app', t) for t in TABLES)}, {TWIN}"
                f" {'/'.join(self.wanted(TWIN, t) for t in TABLES)}"
            )
            self.result.problems.append(message)
            print(f"\n!!!!! CHECK FAILED: {message}\n", flush=True)
        elif len(self.result.problems) > problems_before:
            print(f"\n!!!!! CHECK FAILED: {self.result.problems[-1]}\n", flush=True)
        check = f"template {counts}; {how} right in {good}/{len(databases)} dbs"
        self.log(f"{what}: {check}")
        self.last_check = check
        return check

    # -- the measurements

    def phase(self, row: Row, rss_from: int) -> Phase:
        """The phase's row; its check is the one after its last timed run."""
        self.log(f"{row.operation}: done")
        return Phase(
            self.size,
            row,
            len(self.databases),
            self.last_check,
            os.getloadavg(),
            self.rss_mb[rss_from:],
        )

    def measure(self) -> None:
        created = sum(self.ahead.values())
        first = Row(f"first: {created} children to create per database", str(XARGS_P))
        rss_from = len(self.rss_mb)
        self.pair(
            first,
            int(self.flip),
            partial(self.admmgt_run, "first maintenance"),
            partial(self.partman_run, "first maintenance"),
        )
        self.phases.append(self.phase(first, rss_from))
        noop = Row("no-op re-run", str(XARGS_P))
        rss_from = len(self.rss_mb)
        for rep in range(self.repeat):
            self.pair(
                noop,
                rep + int(self.flip),
                partial(self.admmgt_run, f"no-op re-run {rep + 1}"),
                partial(self.partman_run, f"no-op re-run {rep + 1}"),
            )
        self.phases.append(self.phase(noop, rss_from))
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
            rows.append(
                [
                    str(p.tenants),
                    cells[0],
                    cells[1],
                    cells[2],
                    *p.per_database_ms(),
                    cells[3],
                    cells[4],
                    ", ".join(f"{mb:.1f}" for mb in p.rss_mb) or "n/a",
                    f"{p.load[0]:.1f}",
                    p.check,
                ]
            )
    print()
    print(
        markdown(
            [
                "tenants",
                "phase",
                "admmgt s",
                "pg_partman s",
                "admmgt ms/db",
                "pg_partman ms/db",
                "pg_partman / admmgt",
                "ratio range",
                "admin backend VmHWM MB, after each admmgt run",
                "load 1 min",
                "check after the last run: children per database (default included)",
            ],
            rows,
        )
    )
    print("\nissue 14's goal, pg_partman / admmgt >= 4 (the median ratio of one run):")
    for o in outcomes:
        for p in o.phases:
            ratio = p.row.cells()[3]
            met = ratio != "n/a" and float(ratio) >= 4
            print(f"  {o.size} tenants, {p.row.operation}: {ratio}, {'met' if met else 'NOT met'}")
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
        print("\n!!!!! PROBLEMS (the numbers above are suspect):")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("\nEvery check passed.")


@contextlib.contextmanager
def maintenance_cluster(
    args: argparse.Namespace, options: str
) -> Iterator[tuple[admmgt.Sandbox, Conn]]:
    """--tcp-fsync: bench/drivers.py's cluster (TCP 127.0.0.1, fsync on), with
    rollout.py's header line; else rollout.py's plain sandbox."""
    if not args.tcp_fsync:
        with bench_cluster(args, "maintenance", options + ", Unix socket, fsync off") as started:
            yield started
        return
    print(
        f"admmgt {admmgt.__version__} maintenance benchmark, {dt.date.today().isoformat()}: "
        f"{os.cpu_count() or 1} cores, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, {options}, TCP 127.0.0.1, fsync on; {revision()};"
        f" uptime: {uptime()}",
        flush=True,
    )
    with tcp_sandbox(args.dir, args.port, args.keep) as (box, cluster):
        print(server_line(cluster), flush=True)
        yield box, cluster


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__, "bench-partman", 54331)
    parser.add_argument("--days", type=int, default=60, help="t_numdays, 31 to 366")
    parser.add_argument(
        "--tcp-fsync",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bench/drivers.py's cluster: TCP 127.0.0.1, fsync on (default: yes;"
        " --no-tcp-fsync: the Unix-socket sandbox, fsync off)",
    )
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
    with maintenance_cluster(args, options) as (box, cluster):
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
        f"\nuptime at the end: {uptime()}"
        f"\nTotal {time.monotonic() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
