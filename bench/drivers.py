"""admmgt next to a psycopg 3 thread pool and `xargs -P4` psql, over TCP on an fsync-on cluster.

    .venv/bin/python bench/drivers.py [--tenants 500] [--dir .sandbox/bench-drivers]
                                      [--port 54351] [--keep]

One throwaway cluster (admmgt.Sandbox with fsync, synchronous_commit and
full_page_writes on, listening on 127.0.0.1 only), one fleet of N tenants made
by admmgt.create_database (not timed), and on that same fleet, in one run:

* rollout: a script (CREATE TABLE with a foreign key to app.items, ADD COLUMN
  on app.items, CREATE INDEX), by
  - admmgt: CALL admmgt.applyScripts() at max_parallel 4, and again (the next
    script) at max_parallel auto;
  - psycopg 3, 4 threads: per tenant one TCP connection, one transaction that
    reads its version table, runs admmgt's compiled statements (pointed at
    the twin schema app_pg) and writes the version row;
  - psql, `xargs -P4`: the same in one file per tenant, with the version check
    done by `\\gset` and `\\if` (schema app_psql).
* no-op reading every tenant: admmgt with its registry's versions cleared
  (so it reads every tenant's admmgt.script_history) against the same
  psycopg and psql runs again, which find the version and do nothing.
* no-op answered from admmgt's registry (against the same psycopg no-op).

After every timed run each tenant is checked (the side's table, column,
index and foreign key exist; exactly one history or version row for the
script). A failed check is printed loudly; nothing passes or fails. The peak
RSS of the admin backend (VmHWM from /proc) is read after every admmgt run.
Only 127.0.0.1 is used; every statement and subprocess is bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql

import admmgt
from rollout import (
    ADMIN,
    LIMIT_S,
    ORDERS,
    ROOT,
    TEMPLATE,
    TEMPLATE_DDL,
    TICKS,
    XARGS_P,
    Conn,
    Fleet,
    Timing,
    connect,
    markdown,
    print_details,
    process_cpu,
    revision,
    sandbox,
    twin,
)

PG_SCHEMA = "app_pg"  # the psycopg side's twin of app
TASK_S = 120  # one tenant's work on the psycopg side, at most
CHECK_THREADS = 4


@dataclasses.dataclass(frozen=True)
class TcpSandbox(admmgt.Sandbox):
    """The project's sandbox made durable and reached over 127.0.0.1 (its defaults unchanged)."""

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _settings(self) -> dict[str, str]:
        return {
            **super()._settings(),
            "listen_addresses": "'127.0.0.1'",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_wal_size": "'4GB'",
            "pg_stat_statements.track": "all",
        }


def server_line(cluster: Conn) -> str:
    """The settings that make the cluster TCP / fsync-on, as one printed line."""
    row = cluster.execute(
        "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings"
        " WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes',"
        " 'listen_addresses', 'server_version')"
    ).fetchone()
    return f"server: {row[0] if row else '?'}"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the postmaster does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reaped_cpu(pid: int) -> float:
    """User + system CPU seconds of a process's children that ended and were
    waited for: for the postmaster, every backend of the cluster that exited."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / TICKS


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a local process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def admmgt_over_tcp(admin: Conn, box: admmgt.Sandbox) -> None:
    """admmgt reaches the tenants over TCP too, not over its own Unix socket: its
    `local` cluster row gets host 127.0.0.1 and the sandbox's port."""
    admin.execute(
        "UPDATE admmgt.clusters SET host = '127.0.0.1', port = %s WHERE name = 'local'",
        (box.port,),
    )


@dataclasses.dataclass
class Measure:
    phase: str
    driver: str
    seconds: float
    check: str
    rss_mb: float | None = None
    cpu_s: float | None = None


class DriverFleet(Fleet):
    """rollout.py's fleet over TCP, with a psycopg side (app_pg) and a version-checking psql."""

    def __init__(self, box: admmgt.Sandbox, cluster: Conn, size: int) -> None:
        super().__init__(box, cluster, size, 1)
        self.measures: list[Measure] = []
        self._cpu_mark = self._cpu = 0.0
        self.statements: list[tuple[str, list[str]]] = []
        self.loud: list[str] = []

    def create_admin(self) -> None:
        super().create_admin()
        admmgt_over_tcp(self.admin, self.box)

    def build(self) -> None:
        super().build()
        with connect(self.box.dsn(TEMPLATE)) as tpl:
            tpl.execute(TEMPLATE_DDL.replace("app_psql", PG_SCHEMA))

    def provision_untimed(self) -> None:
        self.set_parallel(str(XARGS_P))
        self.log(f"CALL admmgt.create_database() for {self.size} tenants (not timed)")
        self.call("create_database")
        self.take_notices("create_database")
        made = self.one(
            "SELECT count(*) FROM admmgt.vendor_db_settings WHERE NOT istemplate AND status = 2"
        )
        if made != self.size:
            raise SystemExit(f"create_database made {made} of {self.size} tenants")

    def migration(self, version: int) -> list[str]:
        """Script `version` as metadata: a table with an FK to app.items, a column, an index."""
        self.script(
            version,
            f"bench drivers {version}",
            tables=[(f"orders_{version}", ORDERS)],
            add_column=("items", f"note_{version}", "varchar(200)"),
            index=(f"orders_{version}", ["customer_id"]),
        )
        # script() marks it ready; back to designing to add the foreign key.
        self.admin.execute("UPDATE admmgt.scripts SET status = 0 WHERE id = %s", (version,))
        self.admin.execute(
            "INSERT INTO admmgt.script_table_fkeys (scriptid, schemaname, childtablename,"
            " childcolumnname, parenttablename, parentcolumnname, status)"
            " VALUES (%s, 'app', %s, 'customer_id', 'items', 'id', 1)",
            (version, f"orders_{version}"),
        )
        self.admin.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = %s", (version,))
        return [
            r[0]
            for r in self.admin.execute(
                "SELECT statement FROM admmgt.plan_script(%s) ORDER BY step", (version,)
            )
        ]

    # -- the three drivers

    def admmgt_run(self, setting: str) -> Timing:
        """applyScripts at ``setting``: a max_parallel value, with "/off": relays off."""
        parallel, _, relays = setting.partition("/")
        self.set_parallel(parallel)
        self.admin.execute(
            "UPDATE admmgt.settings SET value = %s WHERE name = 'relays'", (relays or "on",)
        )
        self.admin.execute("SELECT pg_stat_statements_reset()")
        timing = self.timed_call("applyscripts", f"applyScripts, max_parallel {setting}")
        self.statements.append((f"max_parallel {setting}, {timing.wall:.3f} s", self.top()))
        return timing

    def top(self) -> list[str]:
        """The admin database's top statements by total time since the last reset."""
        return [
            f"{r[0]:>6} calls {r[1]:>7} ms total {r[2]:>7} ms mean  {r[3]}"
            for r in self.admin.execute(
                "SELECT calls, round(total_exec_time::numeric), round(mean_exec_time::numeric, 2),"
                " left(regexp_replace(query, '\\s+', ' ', 'g'), 80)"
                " FROM pg_stat_statements JOIN pg_database d ON d.oid = dbid"
                " WHERE d.datname = %s AND query NOT LIKE '%%pg_stat_statements%%'"
                " ORDER BY total_exec_time DESC LIMIT 8",
                (ADMIN,),
            )
        ]

    def psycopg_run(self, version: int, statements: list[str]) -> Timing:
        """4 threads; per tenant: connect, BEGIN, read the version, apply, write it, COMMIT."""
        steps = [twin(s, PG_SCHEMA) for s in statements]
        version_sql = f"SELECT coalesce(max(version), 0) FROM {PG_SCHEMA}.schema_version"
        insert = f"INSERT INTO {PG_SCHEMA}.schema_version (version) VALUES (%s)"

        def one(dbname: str) -> None:
            with psycopg.connect(
                self.box.dsn(dbname), connect_timeout=10, options=f"-c statement_timeout={TASK_S}s"
            ) as conn:
                conn.execute("SET LOCAL lock_timeout = '500ms'")
                row = conn.execute(version_sql).fetchone()
                if row is not None and row[0] >= version:
                    return  # the context manager commits the (empty) transaction
                for step in steps:
                    conn.execute(step)  # compiled by admmgt, not user input
                conn.execute(insert, (version,))

        started = time.perf_counter()
        errors = self.pool(one)
        wall = time.perf_counter() - started
        if errors:
            self.loud.append(f"psycopg run of script {version}: {len(errors)} errors: {errors[0]}")
        return Timing(wall, None)

    def connect_floor(self) -> Timing:
        """4 threads; per tenant only a new TCP connection, closed at once: what
        every driver that reaches each database pays, whatever it then does."""

        def one(dbname: str) -> None:
            psycopg.connect(self.box.dsn(dbname), connect_timeout=10).close()

        started = time.perf_counter()
        errors = self.pool(one)
        wall = time.perf_counter() - started
        if errors:
            self.loud.append(f"connect floor: {len(errors)} errors: {errors[0]}")
        return Timing(wall, None)

    def pool(self, work: Callable[[str], None]) -> list[str]:
        """Run work(tenant) on 4 threads; the errors, named by tenant. Bounded by LIMIT_S."""
        errors: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(XARGS_P) as executor:
            futures = {executor.submit(work, t): t for t in self.tenants}
            try:
                for future in concurrent.futures.as_completed(futures, timeout=LIMIT_S):
                    exc = future.exception()
                    if exc is not None:
                        errors.append(f"{futures[future]}: {exc}")
            except concurrent.futures.TimeoutError:
                errors.append(f"timed out after {LIMIT_S} s")
                for future in futures:
                    future.cancel()
        return errors

    def psql_run(self, version: int, statements: list[str]) -> Timing:
        text = "\n".join(
            [
                "BEGIN;",
                "SET LOCAL lock_timeout = '500ms';",
                "SELECT coalesce(max(version), 0) >= "
                f"{version} AS done FROM app_psql.schema_version \\gset",
                "\\if :done",
                "\\else",
                *(twin(s) + ";" for s in statements),
                f"INSERT INTO app_psql.schema_version (version) VALUES ({version});",
                "\\endif",
                "COMMIT;",
                "",
            ]
        )
        self.result.psql_file = text
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
            handle.write(text)
        try:
            timing = self.xargs_psql(self.tenants, "{}", "-f", handle.name)
        finally:
            os.unlink(handle.name)
        if self.result.problems:
            self.loud.extend(self.result.problems)
            self.result.problems.clear()
        return timing

    # -- correctness

    def check(self, version: int, schema: str, history: bool) -> str:
        """Every tenant: table, column, index and FK of `version` in `schema`; one history row."""
        rows_sql = (
            f"SELECT count(*) FROM admmgt.script_history WHERE script_id = {version}"
            if history
            else f"SELECT count(*) FROM {schema}.schema_version WHERE version = {version}"
        )
        probe = sql.SQL(
            "SELECT to_regclass({t}) IS NOT NULL,"
            " EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass({i})"
            "         AND attname = {c} AND NOT attisdropped),"
            " EXISTS (SELECT FROM pg_index WHERE indrelid = to_regclass({t}) AND NOT indisprimary),"
            " EXISTS (SELECT FROM pg_constraint WHERE conrelid = to_regclass({t})"
            "         AND contype = 'f' AND confrelid = to_regclass({i}))"
        ).format(
            t=sql.Literal(f"{schema}.orders_{version}"),
            i=sql.Literal(f"{schema}.items"),
            c=sql.Literal(f"note_{version}"),
        )
        bad: list[str] = []

        def one(dbname: str) -> None:
            with psycopg.connect(
                self.box.dsn(dbname),
                connect_timeout=10,
                autocommit=True,
                options="-c statement_timeout=60s",
            ) as conn:
                row = conn.execute(probe).fetchone()
                count = conn.execute(rows_sql).fetchone()
                if row is None or not all(row) or count is None or count[0] != 1:
                    bad.append(f"{dbname}: objects {row}, rows {count[0] if count else None}")

        errors = self.pool(one)
        wrong = bad + errors
        if not wrong:
            return f"{self.size}/{self.size} ok"
        message = f"{len(wrong)} of {self.size} WRONG, e.g. {wrong[0]}"
        self.loud.append(f"CHECK FAILED ({schema}, script {version}): {message}")
        print(f"\n!!!!! CHECK FAILED ({schema}, script {version}): {message}\n", flush=True)
        return f"{self.size - len(wrong)}/{self.size} ok: FAILED"

    def quiesce(self) -> None:
        """Untimed, before every timed run: a checkpoint, so none pays for the last one's
        writes; then the CPU mark the run's CPU is counted from."""
        self.cluster.execute("CHECKPOINT")
        self._cpu_mark = self.cpu_now()

    def cpu_now(self) -> float:
        """CPU seconds so far of every exited backend of the cluster (tenant
        connections, relays), of the admin backend, and of this process with its
        threads and children (the psycopg and psql sides)."""
        postmaster = int((self.box.data / "postmaster.pid").read_text().split()[0])
        spent = reaped_cpu(postmaster) + (process_cpu(self._admin_pid) or 0.0)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            spent += usage.ru_utime + usage.ru_stime
        return spent

    def spent(self, timing: Timing) -> Timing:
        """Right after a timed run (before its check): the CPU it cost, every
        side counted (its ended backends reaped first)."""
        time.sleep(0.5)
        self._cpu = self.cpu_now() - self._cpu_mark
        return timing

    def record(self, phase: str, driver: str, timing: Timing, check: str, rss: bool) -> None:
        mb = peak_rss_mb(self._admin_pid) if rss else None
        self.measures.append(Measure(phase, driver, timing.wall, check, mb, self._cpu))
        extra = f", admin backend VmHWM {mb:.1f} MB" if mb is not None else ""
        self.log(
            f"{phase} / {driver}: {timing.wall:.3f} s, CPU {self._cpu:.2f} s, check {check}{extra}"
        )

    # -- the run

    def measure_all(self, sweep: tuple[str, ...] = ()) -> None:
        """Every phase; ``sweep``: more max_parallel settings, measured for admmgt
        only (a rollout of one more script each, and the no-op reading every tenant)."""
        settings = ("4", "auto", *sweep)
        names = {s: f"admmgt, max_parallel {s.replace('/off', ', relays off')}" for s in settings}
        psyco = f"psycopg 3, {XARGS_P} threads"
        psql = f"psql, xargs -P{XARGS_P}"
        versions: dict[str, int] = {}
        for index, setting in enumerate(settings):
            version = 2 + index
            versions[setting] = version
            statements = self.migration(version)
            phase = f"rollout (script {version})"
            sides: list[tuple[str, Callable[[], Timing], str, bool]] = [
                (names[setting], partial(self.admmgt_run, setting), "app", True),
                (psyco, partial(self.psycopg_run, version, statements), PG_SCHEMA, False),
                (psql, partial(self.psql_run, version, statements), "app_psql", False),
            ]
            if index > 1:  # the sweep: admmgt alone
                sides = sides[:1]
            # The second script runs the drivers in the other order.
            for name, run, schema, history in sides if index == 0 else sides[::-1]:
                self.quiesce()
                timing = self.spent(run())
                self.record(phase, name, timing, self.check(version, schema, history), history)
        last = versions["auto"]  # the other drivers' last script
        newest = max(versions.values())  # admmgt's
        statements = self.migration_statements(last)
        phase = "no-op reading every tenant"
        for setting in settings:
            self.admin.execute(
                "UPDATE admmgt.vendor_db_settings SET scriptversion = NULL WHERE NOT istemplate"
            )
            self.quiesce()
            timing = self.spent(self.admmgt_run(setting))
            self.record(
                phase,
                names[setting] + ", registry cleared",
                timing,
                self.check(newest, "app", True),
                True,
            )
        self.quiesce()
        timing = self.spent(self.psycopg_run(last, statements))
        self.record(phase, psyco, timing, self.check(last, PG_SCHEMA, False), False)
        self.quiesce()
        timing = self.spent(self.psql_run(last, statements))
        self.record(phase, psql, timing, self.check(last, "app_psql", False), False)
        self.quiesce()
        timing = self.spent(self.connect_floor())
        self.record(phase, f"{psyco}, connect and close only (the floor)", timing, "-", False)
        phase = "no-op from admmgt's registry"
        for setting in ("4", "auto"):
            self.quiesce()
            timing = self.spent(self.admmgt_run(setting))
            self.record(phase, names[setting], timing, self.check(newest, "app", True), True)

    def migration_statements(self, version: int) -> list[str]:
        return [
            r[0]
            for r in self.admin.execute(
                "SELECT statement FROM admmgt.plan_script(%s) ORDER BY step", (version,)
            )
        ]


def table(fleet: DriverFleet) -> str:
    by: dict[tuple[str, str], Measure] = {(m.phase, m.driver): m for m in fleet.measures}
    rows = []
    for m in fleet.measures:
        if m.driver.startswith("admmgt"):
            ratio = "-"
        else:
            admmgt_rows = [
                x for (p, _), x in by.items() if p == m.phase and x.driver.startswith("admmgt")
            ]
            ratio = ", ".join(
                f"{x.driver.split('max_parallel ')[1].removesuffix(', registry cleared')}:"
                f" {x.seconds / m.seconds:.2f}"
                for x in admmgt_rows
            )
        rss = f"{m.rss_mb:.1f}" if m.rss_mb is not None else "-"
        cpu = f"{m.cpu_s:.2f} ({m.cpu_s * 1000 / len(fleet.tenants):.1f})" if m.cpu_s else "-"
        rows.append([m.phase, m.driver, f"{m.seconds:.3f}", ratio, cpu, rss, m.check])
    # The registry no-op against psycopg's version check.
    reg = [m for m in fleet.measures if m.phase == "no-op from admmgt's registry"]
    pg = by.get(("no-op reading every tenant", f"psycopg 3, {XARGS_P} threads"))
    if reg and pg:
        rows.append(
            [
                "no-op from admmgt's registry",
                "(psycopg's version check, above)",
                f"{pg.seconds:.3f}",
                ", ".join(
                    f"{x.driver.split('max_parallel ')[1]}: {x.seconds / pg.seconds:.4f}"
                    for x in reg
                ),
                "-",
                "-",
                "-",
            ]
        )
    return markdown(
        [
            "phase",
            "driver",
            "seconds",
            "admmgt ÷ driver (by max_parallel)",
            "CPU s, every side (ms per tenant)",
            "admin backend VmHWM MB",
            "check: tenants right",
        ],
        rows,
    )


def tcp_sandbox(
    root: Path, port: int, keep: bool
) -> AbstractContextManager[tuple[admmgt.Sandbox, Conn]]:
    """rollout.py's sandbox, reached over TCP on 127.0.0.1, fsync on."""
    if not port_free(port):
        raise SystemExit(f"port {port} on 127.0.0.1 is taken: choose another with --port")
    return sandbox(root, port, keep, TcpSandbox, "127.0.0.1, fsync on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=ROOT / ".sandbox" / "bench-drivers")
    parser.add_argument("--port", type=int, default=54351)
    parser.add_argument("--keep", action="store_true", help="keep the sandbox, stopped")
    parser.add_argument(
        "--sweep",
        default="",
        help="more max_parallel settings for admmgt alone, e.g. 2,8,4/off (a rollout each;"
        " /off: with relays off)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.tenants <= 1000:
        parser.error("--tenants: 1 to 1000")
    sweep = tuple(x.strip() for x in args.sweep.split(",") if x.strip())
    if any(
        not x.removesuffix("/off").isdigit() or not 1 <= int(x.removesuffix("/off")) <= 64
        for x in sweep
    ):
        parser.error(
            "--sweep: max_parallel values from 1 to 64, each optionally with /off (relays off),"
            " separated by commas"
        )
    started = time.monotonic()
    print(
        f"admmgt {admmgt.__version__} drivers benchmark: {os.cpu_count()} cores, {revision()},"
        f" {args.tenants} tenants; uptime: {uptime()}",
        flush=True,
    )
    with tcp_sandbox(args.dir, args.port, args.keep) as (box, cluster):
        print(server_line(cluster), flush=True)
        fleet = DriverFleet(box, cluster, args.tenants)
        try:
            fleet.build()
            fleet.provision_untimed()
            cluster.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cluster.execute("SELECT pg_stat_statements_reset()")
            fleet.admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            fleet.measure_all(sweep)
            print(f"\nuptime at the end: {uptime()}")
            print(f"\n### {args.tenants} tenants, TCP 127.0.0.1, fsync on\n")
            print(table(fleet))
            print("\nThe psql side's file (the no-op is the same file, finding the version):\n")
            print(fleet.result.psql_file)
            print_details(fleet.result.details)
            print("\nAdmin database, pg_stat_statements (track = all), per admmgt run, top 8:")
            for label, lines in fleet.statements:
                print(f"\n{label}:")
                print("\n".join(lines))
            if fleet.loud:
                print("\n!!!!! PROBLEMS (the numbers above are suspect):")
                for line in fleet.loud:
                    print(f"  - {line}")
            else:
                print("\nEvery check passed.")
        finally:
            fleet.close(drop=False)
    print(f"\nTotal {time.monotonic() - started:.0f} s.")
    return 0


def uptime() -> str:
    try:
        done = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return str(done.stdout).strip()


if __name__ == "__main__":
    sys.exit(main())
