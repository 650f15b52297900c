"""A rollout over three clusters: admmgt next to psql driven by `xargs -P4` per cluster.

    .venv/bin/python bench/clusters.py [--tenants 100] [--repeat 3]
                                       [--dir .sandbox/bench-clusters-1] [--port 54341]
                                       [--no-one-cluster] [--keep]

Three throwaway clusters (admmgt.Sandbox): the first, `local` to admmgt, at
--dir and --port, holds the admin database (admmgt installed) and the home
template; the second and third (the same folder ending -2 and -3, ports + 1
and + 2) are added with CALL admmgt.add_cluster. The third wants passwords: a
LOGIN SUPERUSER role with a password made up at run time (never printed),
reached through a dblink_fdw server and a user mapping. N tenants per cluster
(--tenants) are registered without a cluster and placed by
admmgt.create_database, which must give N to each.

Then, on that fleet, admmgt with max_parallel 4 (a limit per cluster, so 12
databases in flight) next to psql with `xargs -P4` per cluster, the three
xargs running at once (12 in flight too):

* provisioning: create_database against CREATE DATABASE ... TEMPLATE and
  REVOKE CONNECT (other names, dropped again);
* rollout: a script (CREATE TABLE, ADD COLUMN, CREATE INDEX) as metadata,
  applyScripts; psql runs the statements admmgt compiled, pointed at the twin
  schema app_psql (bench/rollout.py's `twin`), with a version row;
* no-op: applyScripts with nothing pending, against SELECT max(version) in
  every tenant; and admmgt with its registry's versions cleared.

After provisioning and after the last no-op every tenant on every cluster is
read: admmgt's script history, app_psql's version, and app's tables, columns
and indexes against app_psql's (the check column). Optionally (on by
default) admmgt alone against N x 3 more tenants all on the first cluster, to
show what spreading changes. A benchmark, not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

import admmgt
from rollout import (
    ADMIN,
    ITEMS,
    TEMPLATE,
    TEMPLATE_DDL,
    XARGS_P,
    Conn,
    Fleet,
    Row,
    Timing,
    bench_arguments,
    bench_cluster,
    check_arguments,
    connect,
    drop_databases,
    each_fleet,
    markdown,
    print_details,
    run_xargs,
    sandbox,
)

REMOTE_ROLE = "bench_remote"  # the password-only role of the third cluster
FDW_SERVER = "bench_c3"
PROVISION = "provision {} tenants (CREATE DATABASE ... TEMPLATE)"
# One line per tenant: what admmgt's history and psql's version table say, and
# whether schema app (admmgt's) has the same tables, columns and indexes as its
# twin app_psql (psql's), schema names and psql's version table left out.
CHECK_SQL = """
WITH objects AS (
    SELECT n.nspname AS schema,
           c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || a.attidentity::text AS what
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0
    WHERE n.nspname IN ('app', 'app_psql') AND c.relkind = 'r' AND NOT a.attisdropped
      AND c.relname <> 'schema_version'
    UNION ALL
    SELECT n.nspname, replace(pg_get_indexdef(i.indexrelid), ' ON ' || n.nspname || '.', ' ON ')
    FROM pg_catalog.pg_index AS i
    JOIN pg_catalog.pg_class AS t ON t.oid = i.indrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
    WHERE n.nspname IN ('app', 'app_psql') AND t.relname <> 'schema_version'
), digests AS (
    SELECT schema, count(*) AS n, md5(string_agg(what, ';' ORDER BY what)) AS digest
    FROM objects GROUP BY schema
)
SELECT current_database(),
       (SELECT max(script_id) FROM admmgt.script_history),
       (SELECT max(version) FROM app_psql.schema_version),
       (SELECT n FROM digests WHERE schema = 'app'),
       (SELECT digest FROM digests WHERE schema = 'app')
           = (SELECT digest FROM digests WHERE schema = 'app_psql')"""


@dataclass(frozen=True)
class Member:
    """One cluster of the fleet: admmgt's name for it, its sandbox, how psql logs in."""

    name: str
    box: admmgt.Sandbox
    conn: Conn
    passfile: str | None = None  # a 0600 libpq passfile for REMOTE_ROLE (third cluster)

    def conninfo(self, dbname: str) -> str:
        if self.passfile is None:
            return self.box.dsn(dbname)
        return f"host={self.box.socket_dir} port={self.box.port} user={REMOTE_ROLE} dbname={dbname}"

    def env(self) -> dict[str, str] | None:
        return None if self.passfile is None else {**os.environ, "PGPASSFILE": self.passfile}


@dataclass
class Phase:
    """One row of the table: timings, the load average after it, the check after it."""

    row: Row
    load: float
    check: str


@dataclass
class Spread:
    """admmgt alone: the same work on one cluster (the optional comparison)."""

    rows: list[tuple[str, str, float, float]] = field(default_factory=list)


class ClusterFleet(Fleet):
    """rollout.py's fleet, its tenants placed over three clusters."""

    def __init__(self, members: list[Member], per_cluster: int, repeat: int, one: bool) -> None:
        super().__init__(members[0].box, members[0].conn, per_cluster * len(members), repeat)
        self.members = members
        self.per_cluster = per_cluster
        self.one_cluster = one
        self.settings = (str(XARGS_P),)
        self.home_of: dict[str, Member] = {}  # database name -> its cluster
        self.phases: list[Phase] = []
        self.spread = Spread()
        self.notes: list[str] = []
        self.seen: list[str] = []  # the last call's NOTICEs

    def label(self, setting: str) -> str:
        total = int(setting) * len(self.members) if setting.isdigit() else setting
        return f"{setting} per cluster ({total} in flight)"

    def take_notices(self, what: str) -> list[str]:
        self.seen = super().take_notices(what)
        return self.seen

    # -- set-up

    def build(self) -> None:
        for member in self.members[1:]:
            drop_databases(member.box, member.conn, "bench\\_%")
        self.create_admin()
        self.set_parallel(str(XARGS_P))
        self.script(1, "items", tables=[("items", ITEMS)])
        self.call("applyscripts")
        self.take_notices("template set-up")
        for member in self.members[1:]:
            self.add_cluster(member)
        # psql's twin schema, by hand in every template once the copies are
        # built: add_cluster would refuse a home template with objects made
        # outside any script (docs/clusters.md).
        for member in self.members:
            with connect(member.box.dsn(TEMPLATE)) as tpl:
                tpl.execute(TEMPLATE_DDL)
        self.register(self.tenants)

    def add_cluster(self, member: Member) -> None:
        self.log(f"CALL admmgt.add_cluster('{member.name}')")
        started = time.perf_counter()
        if member.passfile is None:
            self.admin.execute(
                "CALL admmgt.add_cluster(%s, t_host => %s, t_port => %s)",
                (member.name, str(member.box.socket_dir), member.box.port),
            )
        else:
            self.admin.execute(
                sql.SQL(
                    "CREATE SERVER {} FOREIGN DATA WRAPPER dblink_fdw OPTIONS (host {}, port {})"
                ).format(
                    sql.Identifier(FDW_SERVER),
                    sql.Literal(str(member.box.socket_dir)),
                    sql.Literal(str(member.box.port)),
                )
            )
            self.admin.execute(
                sql.SQL(
                    "CREATE USER MAPPING FOR CURRENT_USER SERVER {} OPTIONS (user {}, password {})"
                ).format(
                    sql.Identifier(FDW_SERVER),
                    sql.Literal(REMOTE_ROLE),
                    sql.Literal(read_password(member.passfile)),
                )
            )
            self.admin.execute(
                "CALL admmgt.add_cluster(%s, t_fdw_server => %s)", (member.name, FDW_SERVER)
            )
        self.take_notices(f"add_cluster {member.name}")
        self.notes.append(f"add_cluster('{member.name}'): {time.perf_counter() - started:.1f} s")

    def placement(self) -> dict[str, int]:
        """Tenants created per cluster, from the registry; home_of filled for the tenants."""
        by_name = {m.name: m for m in self.members}
        counts = {m.name: 0 for m in self.members}
        for dbname, cluster in self.admin.execute(
            "SELECT dbname, cluster_name FROM admmgt.vendor_db_settings"
            " WHERE NOT istemplate AND NOT deleted AND status = 2 AND updateflag"
        ):
            self.home_of[dbname] = by_name[cluster]
            counts[cluster] += 1
        return counts

    def provision(self) -> None:
        """create_database places and makes the fleet; psql's CREATE DATABASE x N per cluster."""
        row = Row(PROVISION.format(self.size), self.label(str(XARGS_P)))
        self.log(f"CALL admmgt.create_database() for {self.size} tenants, none placed")
        row.admmgt.append(self.timed_call("create_database", f"create_database, {row.parallel}"))
        said = [x for x in self.seen if "placed on the clusters" in x]
        self.notes.append(said[0] if said else "create_database said nothing about placement")
        counts = self.placement()
        wanted = {m.name: self.per_cluster for m in self.members}
        if counts != wanted:
            self.result.problems.append(f"placement: {counts}, not {wanted}")
        # psql: the same statements under other names, N per cluster, dropped again.
        names = [f"bench_p{i:04d}" for i in range(self.size)]
        for i, name in enumerate(names):
            self.home_of[name] = self.members[i // self.per_cluster]
        self.log(f"psql CREATE DATABASE x {self.size}, xargs -P{XARGS_P} per cluster")
        row.psql.append(
            self.xargs_psql(
                names,
                "postgres",
                "-c",
                f'CREATE DATABASE "{{}}" TEMPLATE "{TEMPLATE}"',
                "-c",
                'REVOKE CONNECT, TEMPORARY ON DATABASE "{}" FROM PUBLIC',
            )
        )
        made = [self.count_databases(m, "bench\\_p%") for m in self.members]
        for member in self.members:
            drop_databases(member.box, member.conn, "bench\\_p%")
        check = self.verify(1) + "; psql made " + "/".join(map(str, made))
        self.phases.append(Phase(row, os.getloadavg()[0], check))

    @staticmethod
    def count_databases(member: Member, like: str) -> int:
        row = member.conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE %s", (like,)
        ).fetchone()
        return int(row[0]) if row else 0

    # -- psql, on every cluster at once

    def xargs_psql(self, names: list[str], dbname: str, *psql_args: str) -> Timing:
        """Each cluster's share of `names` through its own `xargs -P4 psql`, all at once."""
        shares = [(m, [n for n in names if self.home_of[n] is m]) for m in self.members]

        def jobs() -> list[subprocess.CompletedProcess[str]]:
            with ThreadPoolExecutor(len(shares)) as pool:
                return list(
                    pool.map(
                        lambda share: run_xargs(
                            share[0].conninfo(dbname), share[1], psql_args, share[0].env()
                        ),
                        shares,
                    )
                )

        return self.timed_xargs(jobs, psql_args)

    # -- the check

    def verify(self, version: int) -> str:
        """Every tenant on every cluster read: history, psql's version, app against app_psql."""
        tenants = [n for n in self.tenants if n in self.home_of]
        self.xargs_psql(tenants, "{}", "-At", "-F", " ", "-c", CHECK_SQL)
        good: dict[str, int] = {m.name: 0 for m in self.members}
        objects: set[str] = set()
        for line in self.last_stdout.splitlines():
            db, history, psql_version, count, same = (line.split() + [""] * 5)[:5]
            if history == psql_version == str(version) and same == "t":
                good[self.home_of[db].name] += 1
                objects.add(count)
        templates = self.one(
            "SELECT count(*) FROM admmgt.vendor_db_settings"
            f" WHERE istemplate AND NOT deleted AND status = 2 AND scriptversion = {version}"
        )
        self.at_version(version)
        total = sum(good.values())
        if total != len(tenants) or len(objects) != 1:
            self.result.problems.append(
                f"check at script {version}: {total} of {len(tenants)} tenants agree,"
                f" object counts {sorted(objects)}"
            )
        check = (
            f"{'/'.join(str(good[m.name]) for m in self.members)} of {self.per_cluster} each at"
            f" {version}/{version}, app = app_psql ({'/'.join(sorted(objects))} objects);"
            f" templates {templates}/{len(self.members)} at {version}"
        )
        self.log(f"check: {check}")
        return check

    # -- the measurements

    def measure(self) -> None:
        started = len(self.result.rows)
        super().measure()
        check = self.verify(self._version)
        load = os.getloadavg()[0]
        self.phases += [Phase(row, load, check) for row in self.result.rows[started:]]

    def on_one_cluster(self) -> None:
        """admmgt alone: as many tenants again, all on the first cluster (the others idle)."""
        first = next(p.row for p in self.phases if p.row.operation == PROVISION.format(self.size))
        rollout = next(p.row for p in self.phases if p.row.operation.startswith("rollout"))
        self.admin.execute(
            "UPDATE admmgt.vendor_db_settings SET updateflag = false WHERE NOT istemplate"
        )
        self.register([f"bench_s{i:04d}" for i in range(self.size)])
        self.admin.execute(
            "UPDATE admmgt.vendor_db_settings SET cluster_name = %s"
            " WHERE dbname LIKE 'bench\\_s%%'",
            (self.members[0].name,),
        )
        total = str(XARGS_P * len(self.members))
        self.set_parallel(total)
        self.log(f"one cluster: create_database() for {self.size} more, max_parallel {total}")
        made = self.timed_call("create_database", f"one cluster: create_database, {total}").wall
        counts = self.placement()
        if counts.get(self.members[0].name) != self.size:
            self.result.problems.append(f"one cluster: {counts}")
        self.spread.rows.append(
            ("provision", f"{total} on one cluster", first.admmgt[0].wall, made)
        )
        for setting in (total, str(XARGS_P)):
            self.set_parallel(setting)
            self._version += 1
            self.rollout_script(self._version)
            self.log(f"one cluster: script {self._version}, max_parallel {setting}")
            timing = self.timed_call("applyscripts", f"one cluster: rollout, {setting}")
            self.at_version(self._version)
            median = sorted(t.wall for t in rollout.admmgt)[len(rollout.admmgt) // 2]
            self.spread.rows.append(("rollout", f"{setting} on one cluster", median, timing.wall))

    def run_all(self) -> ClusterFleet:
        self._started = time.monotonic()
        self.notes.append(f"load at start {os.getloadavg()[0]:.1f}")
        self.build()
        self.provision()
        self.measure()
        if self.one_cluster:
            self.on_one_cluster()
        self.notes.append(f"{time.monotonic() - self._started:.0f} s in all (set-up included)")
        return self

    def close(self, drop: bool) -> None:
        super().close(drop)
        if drop:
            for member in self.members[1:]:
                drop_databases(member.box, member.conn, "bench\\_%")


# ----------------------------------------------------------------------- main


def read_password(passfile: str) -> str:
    return Path(passfile).read_text(encoding="utf-8").strip().rsplit(":", 1)[1]


@contextlib.contextmanager
def three_clusters(args: argparse.Namespace) -> Iterator[list[Member]]:
    """Start the clusters; the third wants passwords, its role's kept in a 0600 passfile."""
    if args.dir.name.endswith("-1"):
        dirs = [args.dir.with_name(args.dir.name[:-1] + str(i)) for i in (1, 2, 3)]
    else:
        dirs = [args.dir, *(args.dir.with_name(f"{args.dir.name}-{i}") for i in (2, 3))]
    options = f"{args.tenants} tenants per cluster, --repeat {args.repeat}"
    handle, passfile = tempfile.mkstemp(prefix="bench-clusters-", suffix=".pgpass")  # 0600
    os.close(handle)
    try:
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(
                bench_cluster(
                    argparse.Namespace(dir=dirs[0], port=args.port, keep=args.keep),
                    "clusters",
                    options,
                )
            )
            others = [
                stack.enter_context(sandbox(d, args.port + i, args.keep))
                for i, d in enumerate(dirs[1:], 1)
            ]
            box3, conn3 = others[1]
            password = secrets.token_urlsafe(18)
            exists = conn3.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REMOTE_ROLE,))
            conn3.execute(
                sql.SQL("{} ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.SQL("ALTER" if exists.fetchone() else "CREATE"),
                    sql.Identifier(REMOTE_ROLE),
                    sql.Literal(password),
                )
            )
            Path(passfile).write_text(
                f"{box3.socket_dir}:{box3.port}:*:{REMOTE_ROLE}:{password}\n", encoding="utf-8"
            )
            box3.require_passwords()
            yield [
                Member("local", *first),
                Member("c2", *others[0]),
                Member("c3", box3, conn3, passfile),
            ]
    finally:
        os.unlink(passfile)


def print_outcomes(fleets: list[ClusterFleet]) -> None:
    for fleet in fleets:
        names = "/".join(m.name for m in fleet.members)
        print(f"\n### {len(fleet.members)} clusters x {fleet.per_cluster} tenants\n")
        rows = []
        for p in fleet.phases:
            cells = p.row.cells()  # operation, admmgt, psql, ratio, range, parallel
            rows.append([*cells[:5], cells[5], f"{p.load:.1f}", p.check])
        print(
            markdown(
                [
                    "phase",
                    "admmgt s",
                    f"psql xargs -P{XARGS_P} x {len(fleet.members)} s",
                    "psql / admmgt",
                    "ratio range",
                    "max_parallel",
                    "load 1 min",
                    f"check: tenants right per cluster ({names}), history/app_psql version",
                ],
                rows,
            )
        )
        if fleet.spread.rows:
            print(
                f"\nadmmgt alone, {fleet.size} tenants over {len(fleet.members)} clusters"
                f" (max_parallel {XARGS_P} each) against {fleet.size} on one cluster:\n"
            )
            print(
                markdown(
                    ["operation", "one cluster at", "spread s", "one cluster s", "one / spread"],
                    [
                        [op, how, f"{a:.3f}", f"{b:.3f}", f"{b / a:.2f}" if a else "n/a"]
                        for op, how, a, b in fleet.spread.rows
                    ],
                )
            )
        print_details(fleet.result.details)
        print(
            "\nDriver CPU seconds (medians): admmgt = its admin backend; psql = the psql"
            " processes of the three xargs. Tenant backends not counted.\n"
        )
        print(
            markdown(
                ["phase", "max_parallel", "admmgt backend CPU s", "psql CPU s"],
                [p.row.cpu_cells() for p in fleet.phases],
            )
        )
        print("\n" + "\n".join(fleet.notes))
        if fleet.result.psql_file:
            print(f"\nThe psql side's file for one rollout:\n\n{fleet.result.psql_file}")
        if fleet.result.problems:
            print("\nproblems seen:")
            for problem in fleet.result.problems:
                print(f"  - {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(__doc__, "bench-clusters-1", 54341)
    parser.set_defaults(tenants=[100])
    parser.add_argument(
        "--one-cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also admmgt alone with as many tenants on the first cluster (default: yes)",
    )
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if len(args.tenants) != 1:
        parser.error("--tenants: one number, the tenants per cluster")
    args.tenants = args.tenants[0]
    started = time.monotonic()
    with three_clusters(args) as members:
        server = members[0].conn.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {server[0] if server else '?'}; admin database {ADMIN}")
        fleets = each_fleet(
            [args.tenants],
            lambda _, size: ClusterFleet(members, size, args.repeat, args.one_cluster),
            ClusterFleet.run_all,
        )
    print_outcomes(fleets)
    print(
        f"\n{os.cpu_count() or 1} cores, shared by the three clusters. admmgt max_parallel"
        f" {XARGS_P} per cluster; psql: one xargs -P{XARGS_P} per cluster, the three at once."
        " Both sides on the same tenants, admmgt in schema app, psql in its twin app_psql."
        " Quote the ratios of one run, not the absolute seconds."
        f"\nTotal {time.monotonic() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
