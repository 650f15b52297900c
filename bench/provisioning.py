"""Provisioning: admmgt.create_database next to `CREATE DATABASE ... TEMPLATE` by `xargs -P4` psql.

    .venv/bin/python bench/provisioning.py [--tenants 500] [--rounds 1] [--warm-up N] [--pause 0]
                                           [--dir .sandbox/bench-provisioning]
                                           [--port 54361] [--keep]

bench/drivers.py's cluster and fleet, imported from it: one throwaway cluster
(admmgt.Sandbox with fsync, synchronous_commit and full_page_writes on,
listening on 127.0.0.1 only; every client over TCP, and admmgt's `local`
cluster row pointed at 127.0.0.1 and the port so that its dblink
connections are TCP too), an admin database with admmgt installed, the same
template (admmgt's app.items, the twins app_pg and app_psql). A warm-up, not
timed: 4 databases by admmgt, then --warm-up (default: --tenants) by psql, so
that the first timed run does not pay alone for creating the WAL segment
files of a fresh cluster (see ProvisioningFleet.warm_up). Then, per round:

* admmgt: N tenants registered (status 1), then CALL admmgt.create_database()
  at max_parallel 4: per tenant `CREATE DATABASE "t" TEMPLATE "bench_tpl"
  STRATEGY wal_log` (the setting create_strategy, PostgreSQL 15's default
  strategy), `REVOKE CONNECT, TEMPORARY ... FROM PUBLIC`, `COMMENT ON DATABASE`,
  then a connection to the new database to read its history version; and the
  registry row set to status 2, through the run log.
* psql, `xargs -P4`: N other names, per name one psql connected to `postgres`
  running `CREATE DATABASE "p" TEMPLATE "bench_tpl"` and the same REVOKE.

An untimed CHECKPOINT (and --pause seconds) precedes each timed run; the
server's other active sessions are logged then. Printed: seconds, throughput
(databases per second) and admmgt / psql (throughput; above 1 admmgt is
faster, issue 14's goal is >= 1.2), and the admin backend's peak RSS (VmHWM)
after each admmgt run, and the CPU seconds each timed run cost, every side
counted (drivers.py's count: the cluster's backends that exited during the
run, tenant connections and relays included, the admin backend, this process
and its psql children). With --rounds 2 to 4, even rounds run psql first; each
round makes new databases. Round 1 is slow for both sides on a fleet just
built (more CPU, background work on the server): quote rounds 2 and later.
After every timed run every database of that run is checked (untimed): it
is in pg_database, PUBLIC has no CONNECT on it, for admmgt its registry row
has status 2 (done); and 10 of them, spread over the run, are connected to,
to find the template's app.items. A failed check is printed loudly at once
and listed at the end; nothing passes or fails. The databases stay until the
sandbox goes. Only 127.0.0.1 is used; every statement and subprocess is
bounded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

import admmgt
from drivers import DriverFleet, peak_rss_mb, server_line, tcp_sandbox, uptime
from rollout import (
    LIMIT_S,
    ROOT,
    TEMPLATE,
    XARGS_P,
    Conn,
    Timing,
    markdown,
    print_details,
    revision,
)

SAMPLE = 10  # databases per timed run connected to by the check
WARM_ADMMGT = 4  # untimed create_database first


@dataclass
class Run:
    round: int
    driver: str
    databases: int
    seconds: float
    check: str
    rss_mb: float | None = None
    cpu_s: float = 0.0

    @property
    def per_second(self) -> float:
        return self.databases / self.seconds if self.seconds else 0.0


class ProvisioningFleet(DriverFleet):
    """drivers.py's fleet (TCP, fsync on), the tenants made in the timed runs."""

    def __init__(self, box: admmgt.Sandbox, cluster: Conn, size: int) -> None:
        super().__init__(box, cluster, size)
        self.runs: list[Run] = []
        self.pause = 0.0

    def build(self) -> None:
        """Admin database, template (rollout.py's and drivers.py's), nobody registered."""
        super().build()
        self.admin.execute("DELETE FROM admmgt.vendor_db_settings WHERE NOT istemplate")
        self.set_parallel(str(XARGS_P))
        row = self.admin.execute(
            "SELECT host, port FROM admmgt.clusters WHERE name = 'local'"
        ).fetchone()
        strategy = self.one("SELECT value FROM admmgt.settings WHERE name = 'create_strategy'")
        self.log(
            f"admmgt's local cluster row: host {row[0] if row else '?'}, port"
            f" {row[1] if row else '?'}; create_strategy {strategy}; max_parallel {XARGS_P}"
        )

    def warm_up(self, count: int) -> None:
        """Untimed: WARM_ADMMGT databases by admmgt and `count` by psql first (kept).

        On a fresh cluster the first run that writes gigabytes of WAL also creates
        (zero-fills and fsyncs) its WAL segment files; later runs reuse the ones a
        checkpoint recycled. With 4 databases of warm-up, create_database reached
        0.40 of psql's throughput going first and 0.83 going second (one run at
        500); with 100 of warm-up at 100 tenants, 0.67 both ways. Every first
        round is slow for another reason as well (both sides' first runs cost
        more CPU): use --rounds 3 and quote rounds 2 and later (bench/README.md)."""
        self.register([f"bench_w{i:04d}" for i in range(WARM_ADMMGT)])
        self.call("create_database")
        self.take_notices("warm-up create_database")
        self.xargs_psql(
            [f"bench_x{i:04d}" for i in range(count)],
            "postgres",
            "-c",
            f'CREATE DATABASE "{{}}" TEMPLATE "{TEMPLATE}"',
        )
        self.take_problems()
        self.log(f"warm-up (not timed): {WARM_ADMMGT} databases by admmgt, {count} by psql")

    def admmgt_side(self, round_: int) -> None:
        names = [f"bench_a{round_}_{i:04d}" for i in range(self.size)]
        self.register(names)
        self.settle()
        timing = self.spent(self.timed_call("create_database", f"round {round_}: create_database"))
        mb = peak_rss_mb(self._admin_pid)
        self.take_problems()
        done = self.one(
            "SELECT count(*) FROM admmgt.vendor_db_settings"
            f" WHERE dbname LIKE 'bench\\_a{round_}\\_%' AND status = 2"
            " AND scriptversion = (SELECT scriptversion FROM admmgt.vendor_db_settings"
            " WHERE istemplate AND NOT deleted AND coalesce(cluster_name, 'local') = 'local')"
        )
        check = self.check_databases(names, f"admmgt, round {round_}", registered=int(done))
        self.record_run(
            round_, f"admmgt create_database, max_parallel {XARGS_P}", timing, check, mb
        )

    def psql_side(self, round_: int) -> None:
        names = [f"bench_p{round_}_{i:04d}" for i in range(self.size)]
        self.settle()
        timing = self.spent(
            self.xargs_psql(
                names,
                "postgres",
                "-c",
                f'CREATE DATABASE "{{}}" TEMPLATE "{TEMPLATE}"',
                "-c",
                'REVOKE CONNECT, TEMPORARY ON DATABASE "{}" FROM PUBLIC',
            )
        )
        self.take_problems()
        check = self.check_databases(names, f"psql, round {round_}", registered=None)
        self.record_run(round_, f"psql, xargs -P{XARGS_P}", timing, check, None)

    def settle(self) -> None:
        """Untimed, before every timed run: CHECKPOINT, --pause seconds, and what else
        is running on the server (autovacuum workers, other sessions) logged."""
        self.quiesce()
        if self.pause:
            time.sleep(self.pause)
        busy = self.cluster.execute(
            "SELECT coalesce(string_agg(what, ', '), 'nothing') FROM ("
            " SELECT backend_type || coalesce(' ' || datname, '') || ' x' || count(*) AS what"
            " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND (state IS NULL OR state <> 'idle')"
            " AND backend_type NOT IN ('checkpointer', 'background writer', 'walwriter',"
            " 'logical replication launcher', 'autovacuum launcher', 'archiver')"
            " GROUP BY backend_type, datname) AS x"
        ).fetchone()
        self.log(f"before the timed run, also active on the server: {busy[0] if busy else '?'}")

    def take_problems(self) -> None:
        """A failed psql or a FAILED line in admmgt's NOTICEs: loud, at once and at the end."""
        for problem in self.result.problems:
            print(f"\n!!!!! {problem}\n", flush=True)
        self.loud.extend(self.result.problems)
        self.result.problems.clear()

    def record_run(
        self, round_: int, driver: str, timing: Timing, check: str, mb: float | None
    ) -> None:
        run = Run(round_, driver, self.size, timing.wall, check, mb, self._cpu)
        self.runs.append(run)
        extra = f", admin backend VmHWM {mb:.1f} MB" if mb is not None else ""
        self.log(
            f"round {round_} / {driver}: {timing.wall:.3f} s, {run.per_second:.1f} databases/s,"
            f" CPU {run.cpu_s:.2f} s,"
            f" check {check}{extra}"
        )

    def check_databases(self, names: list[str], what: str, registered: int | None) -> str:
        """Untimed: every database exists, PUBLIC may not connect to it, and (admmgt)
        its registry row says done, at the template's version; a sample of SAMPLE
        is connected to, to find app.items and (admmgt) the version its registry
        row says in its own history (a first connection to a new database costs
        ~0.1 s here: all would take minutes)."""
        rows = self.cluster.execute(
            "SELECT datname, has_database_privilege('public', oid, 'CONNECT')"
            " FROM pg_database WHERE datname = ANY(%s)",
            (names,),
        ).fetchall()
        existing = {r[0] for r in rows}
        missing = [n for n in names if n not in existing]
        bad: list[str] = [f"{r[0]}: PUBLIC may connect" for r in rows if r[1]]

        def one(dbname: str) -> None:
            with psycopg.connect(
                self.box.dsn(dbname),
                connect_timeout=10,
                autocommit=True,
                options="-c statement_timeout=60s",
            ) as conn:
                row = conn.execute("SELECT to_regclass('app.items') IS NOT NULL").fetchone()
                if row is None or not row[0]:
                    bad.append(f"{dbname}: no app.items")
                if registered is None:
                    return
                # admmgt records a copy's version without connecting to it: its
                # own history must say the same.
                own = conn.execute("SELECT max(script_id) FROM admmgt.script_history").fetchone()
                if own is None or own[0] != said.get(dbname):
                    bad.append(f"{dbname}: history version {own}, registry {said.get(dbname)}")

        sample = sorted(existing)[:: max(1, len(existing) // SAMPLE)][:SAMPLE]
        said = dict(
            self.admin.execute(
                "SELECT dbname, scriptversion FROM admmgt.vendor_db_settings"
                " WHERE dbname = ANY(%s) AND NOT deleted",
                (sample,),
            ).fetchall()
        )
        saved, self.tenants = self.tenants, sample
        try:
            errors = self.pool(one)
        finally:
            self.tenants = saved
        wrong = [f"{n}: missing" for n in missing] + bad + errors
        if registered is not None and registered != len(names):
            wrong.append(
                f"{len(names) - registered} registry rows not at status 2 (done) at the "
                "template's version"
            )
        if not wrong:
            done = (
                f", {registered} registered done at the template's version"
                if registered is not None
                else ""
            )
            return (
                f"{len(names)}/{len(names)} exist, no CONNECT for PUBLIC{done};"
                f" app.items{' and the version' if registered is not None else ''} in"
                f" {len(sample)}/{len(sample)} sampled"
            )
        message = f"{len(wrong)} problems, e.g. {wrong[0]}"
        self.loud.append(f"CHECK FAILED ({what}): {message}")
        print(f"\n!!!!! CHECK FAILED ({what}): {message}\n", flush=True)
        return f"FAILED: {message}"


def table(fleet: ProvisioningFleet) -> str:
    rows = []
    for run in fleet.runs:
        other = [r for r in fleet.runs if r.round == run.round and r is not run]
        ratio = "-"
        if run.driver.startswith("admmgt") and other and other[0].per_second:
            ratio = f"{run.per_second / other[0].per_second:.2f}"
        rows.append(
            [
                str(run.round),
                run.driver,
                str(run.databases),
                f"{run.seconds:.3f}",
                f"{run.per_second:.1f}",
                ratio,
                f"{run.cpu_s:.2f} ({1000 * run.cpu_s / run.databases:.1f})",
                f"{run.rss_mb:.1f}" if run.rss_mb is not None else "-",
                run.check,
            ]
        )
    return markdown(
        [
            "round",
            "driver",
            "databases",
            "seconds",
            "databases/s",
            "admmgt / psql (throughput)",
            "CPU s, every side (ms per database)",
            "admin backend VmHWM MB",
            "check",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--tenants", type=int, default=500, help="databases per side and round")
    parser.add_argument(
        "--rounds", type=int, default=1, help="1 to 4; even rounds run psql first (new names)"
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=None,
        help="untimed databases made by psql first (default: --tenants), after 4 by admmgt",
    )
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds to wait before each timed run"
    )
    parser.add_argument("--dir", type=Path, default=ROOT / ".sandbox" / "bench-provisioning")
    parser.add_argument("--port", type=int, default=54361)
    parser.add_argument("--keep", action="store_true", help="keep the sandbox, stopped")
    args = parser.parse_args(argv)
    if not 1 <= args.tenants <= 1000:
        parser.error("--tenants: 1 to 1000")
    if not 1 <= args.rounds <= 4:
        parser.error("--rounds: 1 to 4")
    started = time.monotonic()
    print(
        f"admmgt {admmgt.__version__} provisioning benchmark: {os.cpu_count()} cores,"
        f" {revision()}, {args.tenants} databases per side, {args.rounds} round(s);"
        f" uptime: {uptime()}",
        flush=True,
    )
    with tcp_sandbox(args.dir, args.port, args.keep) as (box, cluster):
        print(server_line(cluster), flush=True)
        fleet = ProvisioningFleet(box, cluster, args.tenants)
        fleet.pause = args.pause
        try:
            fleet.build()
            fleet.warm_up(args.tenants if args.warm_up is None else args.warm_up)
            for round_ in range(1, args.rounds + 1):
                sides = [fleet.admmgt_side, fleet.psql_side]
                for side in sides if round_ % 2 else sides[::-1]:
                    side(round_)
            print(f"\nuptime at the end: {uptime()}")
            print(f"\n### {args.tenants} databases per side, TCP 127.0.0.1, fsync on\n")
            print(table(fleet))
            print("\nissue 14's goal, admmgt / psql throughput >= 1.2:")
            for run in fleet.runs:
                if not run.driver.startswith("admmgt"):
                    continue
                other = [r for r in fleet.runs if r.round == run.round and r is not run]
                if other and other[0].per_second:
                    ratio = run.per_second / other[0].per_second
                    met = "met" if ratio >= 1.2 else "NOT met"
                    first = ", the first round: not comparable" if run.round == 1 else ""
                    print(f"  round {run.round}: {ratio:.2f}, {met}{first}")
            print_details(fleet.result.details)
            if fleet.loud:
                print("\n!!!!! PROBLEMS (the numbers above are suspect):")
                for line in fleet.loud:
                    print(f"  - {line}")
            else:
                print("\nEvery check passed.")
        finally:
            fleet.close(drop=False)
    print(f"\nTotal {time.monotonic() - started:.0f} s (limit per operation {LIMIT_S} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
