"""Tenants on several clusters (issue 8): the local test server plus two sandboxes,
one of which ("c3") wants a password that lives only in a user mapping."""

from __future__ import annotations

import os
import pwd
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from admmgt_plpy._drift import OBJECTS
from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Notices, call, history, make_template
from tests.db.test_maintenance import range_table
from tests.fix_clusters import REMOTE_ROLE, RemoteCluster
from tests.fix_db import connect, drop_databases

Conn = psycopg.Connection[Any]


class Fleet3:
    """A home template on the test server, and helpers to reach every cluster."""

    def __init__(
        self, admin: Conn, cluster_dsn: str, prefix: str, remotes: dict[str, RemoteCluster]
    ) -> None:
        self.admin = admin
        self.prefix = prefix
        self.template = f"{prefix}tpl"
        self.remotes = remotes
        self.dsns = {"local": cluster_dsn, **{n: c.dsn for n, c in remotes.items()}}
        self.notices = Notices(admin)
        make_template(cluster_dsn, admin, self.template)

    def add(self, name: str) -> list[str]:
        """CALL add_cluster the way docs/clusters.md says: c3 through a user mapping."""
        remote = self.remotes[name]
        self.notices.take()
        if remote.password is None:
            call(self.admin, "add_cluster", name, remote.host, remote.sandbox.port)
        else:
            server = f"{name}_server"
            self.admin.execute(
                f"CREATE SERVER {server} FOREIGN DATA WRAPPER dblink_fdw"
                f" OPTIONS (host '{remote.host}', port '{remote.sandbox.port}')"
            )
            self.admin.execute(
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server}"
                f" OPTIONS (user '{REMOTE_ROLE}', password '{remote.password}')"
            )
            self.admin.execute("CALL admmgt.add_cluster(%s, t_fdw_server => %s)", (name, server))
        return self.notices.take()

    def connect(self, cluster: str, db: str) -> Conn:
        return connect(make_conninfo(self.dsns[cluster], dbname=db))

    def databases(self, cluster: str) -> set[str]:
        with connect(self.dsns[cluster]) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (self.prefix + "%",)
            )
            return {r[0] for r in rows}

    def history(self, cluster: str, db: str) -> list[tuple[int, str]]:
        with self.connect(cluster, db) as conn:
            return history(conn)

    def applied_at(self, cluster: str, db: str, script_id: int) -> Any:
        with self.connect(cluster, db) as conn:
            row = conn.execute(
                "SELECT applied_at FROM admmgt.script_history WHERE script_id = %s", (script_id,)
            ).fetchone()
            assert row is not None, f"{db}@{cluster} lacks script {script_id}"
            return row[0]

    def register(self, *names: str, cluster: str | None = None) -> None:
        self.admin.cursor().executemany(
            "INSERT INTO admmgt.vendor_db_settings (dbname, status, cluster_name)"
            " VALUES (%s, 1, %s)",
            [(self.prefix + n, cluster) for n in names],
        )

    def placement(self) -> dict[str, str]:
        rows = self.admin.execute(
            "SELECT lower(dbname), cluster_name FROM admmgt.vendor_db_settings"
            " WHERE NOT istemplate AND NOT deleted AND status = 2"
        )
        return {r[0].removeprefix(self.prefix): r[1] for r in rows}

    def run(self, sql: str) -> list[str]:
        self.notices.take()
        self.admin.execute(sql)
        return self.notices.take()


@pytest.fixture
def fleet3(
    admin: Conn, cluster_dsn: str, tenant_prefix: str, remote_clusters: dict[str, RemoteCluster]
) -> Iterator[Fleet3]:
    yield Fleet3(admin, cluster_dsn, tenant_prefix, remote_clusters)
    for remote in remote_clusters.values():
        remote.start()  # in case a test stopped it and failed before restarting it
        drop_databases(remote.dsn, tenant_prefix + "%")


def orders_script(admin: Conn, script_id: int = 1, sleep: float = 0) -> None:
    s.script(admin, script_id)
    s.table(admin, script_id, f"orders{script_id}", [s.ID, ("total", "numeric(12,2)")])
    if sleep:  # keeps each database busy for a while, so a cluster can be stopped mid-rollout
        s.step(admin, script_id, 1, f"SELECT pg_sleep({sleep})")


# ----------------------------------------------------------------- placement


def test_tenants_are_placed_and_created_on_every_cluster(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.add("c3")
    fleet3.register("a1", "a2", "a3", "a4", "a5", "a6")
    fleet3.register("pinned", cluster="c3")
    lines = fleet3.run("CALL admmgt.create_database()")

    placed = fleet3.placement()
    assert placed["pinned"] == "c3"
    by_cluster = {c: sorted(t for t, x in placed.items() if x == c) for c in ("local", "c2", "c3")}
    # Fewest tenants first, ties by name: c2, c3, local, ... with "pinned" already on c3.
    assert {c: len(t) for c, t in by_cluster.items()} == {"local": 2, "c2": 3, "c3": 2}
    assert any("placed on the clusters with the fewest tenants" in x for x in lines)
    for cluster, tenants in by_cluster.items():
        on_server = fleet3.databases(cluster) - {fleet3.template}
        assert on_server == {fleet3.prefix + t for t in tenants}, cluster
    assert any(f"{fleet3.prefix}pinned@c3: created in " in x for x in lines)


def test_placement_skips_clusters_without_a_template_or_closed(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.admin.execute("UPDATE admmgt.clusters SET accepts_tenants = false WHERE name = 'c2'")
    fleet3.admin.execute("INSERT INTO admmgt.clusters (name, host) VALUES ('c9', '/nowhere')")
    fleet3.register("b1", "b2")
    fleet3.run("CALL admmgt.create_database()")
    assert set(fleet3.placement().values()) == {"local"}


def test_a_tenant_on_a_cluster_without_template_is_refused_clearly(fleet3: Fleet3) -> None:
    fleet3.admin.execute(
        "INSERT INTO admmgt.clusters (name, host, port) VALUES ('c2', %s, %s)",
        (fleet3.remotes["c2"].host, fleet3.remotes["c2"].sandbox.port),
    )
    fleet3.register("lonely", cluster="c2")
    fleet3.run("CALL admmgt.create_database(t_raise => false)")
    row = fleet3.admin.execute(
        "SELECT status, last_error FROM admmgt.vendor_db_settings WHERE dbname = %s",
        (fleet3.prefix + "lonely",),
    ).fetchone()
    assert row is not None and row[0] == 3
    assert "which has no template yet" in row[1] and "add_cluster('c2')" in row[1]


# ------------------------------------------------------------------ rollout


def test_one_rollout_reaches_every_template_before_any_tenant(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.add("c3")
    fleet3.register("a1", "a2", "a3", "a4", "a5", "a6")
    fleet3.run("CALL admmgt.create_database()")
    fleet3.admin.execute("UPDATE admmgt.clusters SET max_parallel = 1 WHERE name = 'c2'")
    orders_script(fleet3.admin)
    lines = fleet3.run("CALL admmgt.applyScripts()")

    heads = [x.split(":")[0] for x in lines if ": script 1 applied" in x]
    assert len(heads) == 9
    # The home template, then the copies (in either order), then every tenant.
    assert heads[0] == f"template {fleet3.template}"
    assert sorted(h.split("] ")[-1] for h in heads[1:3]) == [
        f"{fleet3.template}@c2",
        f"{fleet3.template}@c3",
    ]
    assert all(h.startswith("template [") for h in heads[1:3])
    assert not [h for h in heads[3:] if h.startswith("template")]
    placed = fleet3.placement()
    last_template = max(fleet3.applied_at(c, fleet3.template, 1) for c in ("local", "c2", "c3"))
    first_tenant = min(fleet3.applied_at(c, fleet3.prefix + t, 1) for t, c in placed.items())
    assert last_template < first_tenant
    # The run log names each database's cluster.
    logged = fleet3.admin.execute(
        "SELECT dbname, cluster_name FROM admmgt.run_log WHERE outcome = 'ok'"
        " AND run_id = (SELECT max(id) FROM admmgt.runs)"
    ).fetchall()
    assert sorted(logged) == sorted(
        [(fleet3.template, c) for c in ("local", "c2", "c3")]
        + [(fleet3.prefix + t, c) for t, c in placed.items()]
    )
    # max_parallel = 1 on c2: its tenants never overlapped.
    spans = fleet3.admin.execute(
        "SELECT started_at, finished_at FROM admmgt.run_log WHERE cluster_name = 'c2'"
        " AND dbname <> %s AND run_id = (SELECT max(id) FROM admmgt.runs) ORDER BY started_at",
        (fleet3.template,),
    ).fetchall()
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0]
    assert fleet3.run("CALL admmgt.applyScripts()") == [
        "applyScripts: nothing to apply; all 3 templates and all 6 updating tenants are at script 1"
    ]


def test_a_cluster_stopped_mid_rollout_keeps_its_tenants_and_a_rerun_converges(
    fleet3: Fleet3,
) -> None:
    fleet3.add("c2")
    fleet3.add("c3")
    fleet3.register(*[f"m{i}" for i in range(9)])
    fleet3.run("CALL admmgt.create_database()")
    fleet3.admin.execute("UPDATE admmgt.clusters SET max_parallel = 1")
    orders_script(fleet3.admin, sleep=1.5)
    placed = fleet3.placement()
    on_c2 = sorted(t for t, c in placed.items() if c == "c2")

    notices: list[str] = []
    errors: list[BaseException] = []

    def rollout() -> None:
        try:
            with connect(fleet3.admin.info.dsn) as conn:
                conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                conn.execute("CALL admmgt.applyScripts(t_raise => false)")
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=rollout)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        # Wait for the template wave to finish (3 template rows in the run log),
        # then stop c2 while its first tenant sleeps inside its transaction.
        while time.monotonic() < deadline:
            done = fleet3.admin.execute(
                "SELECT count(*) FROM admmgt.run_log WHERE dbname = %s AND outcome = 'ok'"
                " AND run_id = (SELECT max(id) FROM admmgt.runs WHERE operation = 'applyScripts')",
                (fleet3.template,),
            ).fetchone()
            if done and done[0] == 3:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        fleet3.remotes["c2"].stop()
        worker.join(120)
    finally:
        fleet3.remotes["c2"].start()
    assert not worker.is_alive() and not errors, errors

    down = [x for x in notices if 'cluster "c2" is unreachable' in x]
    assert len(down) == 1, "\n".join(notices)  # reported once
    for t in on_c2:
        assert fleet3.history("c2", fleet3.prefix + t) == [], t  # still at the old version
    for t, c in placed.items():
        if c != "c2":
            assert fleet3.history(c, fleet3.prefix + t) == [(1, "apply")], t
    outcomes = fleet3.admin.execute(
        "SELECT cluster_name, outcome, count(*) FROM admmgt.run_log"
        " WHERE run_id = (SELECT max(id) FROM admmgt.runs) AND dbname <> %s GROUP BY 1, 2",
        (fleet3.template,),
    ).fetchall()
    assert sorted(outcomes) == sorted(
        [("c2", "unreachable", 3), ("c3", "ok", 3), ("local", "ok", 3)]
    )
    versions = dict(
        fleet3.admin.execute(
            "SELECT cluster_name, array_agg(DISTINCT coalesce(scriptversion, 0))"
            " FROM admmgt.vendor_db_settings WHERE NOT istemplate AND status = 2 GROUP BY 1"
        ).fetchall()
    )
    assert versions == {"c2": [0], "c3": [1], "local": [1]}  # the registry agrees

    lines = fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    assert not [x for x in lines if "unreachable" in x]
    for t in on_c2:
        assert fleet3.history("c2", fleet3.prefix + t) == [(1, "apply")]
    status = fleet3.admin.execute("SELECT status FROM admmgt.scripts WHERE id = 1").fetchone()
    assert status == (2,)


def test_a_cluster_down_before_the_run_is_reported_once(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.register("d1", "d2", "d3", cluster="c2")
    fleet3.register("d4")
    fleet3.run("CALL admmgt.create_database()")
    orders_script(fleet3.admin)
    fleet3.remotes["c2"].stop()
    try:
        lines = fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    finally:
        fleet3.remotes["c2"].start()
    assert len([x for x in lines if 'cluster "c2" is unreachable' in x]) == 1
    assert not [x for x in lines if "@c2" in x and "[" in x]  # no line per tenant
    assert lines[-1].startswith("applyScripts: ")
    # c2's template and its three tenants; the home template and d4 were updated.
    assert "4 unreachable" in lines[-1] and "2 updated" in lines[-1]
    assert fleet3.history("local", fleet3.prefix + "d4") == [(1, "apply")]
    fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    for t in ("d1", "d2", "d3"):
        assert fleet3.history("c2", fleet3.prefix + t) == [(1, "apply")]


# -------------------------------------------------------------- credentials


def test_no_password_in_code_tables_run_log_or_notices(fleet3: Fleet3) -> None:
    password = fleet3.remotes["c3"].password
    assert password
    said = fleet3.add("c3")
    fleet3.register("p1", "p2", cluster="c3")
    said += fleet3.run("CALL admmgt.create_database()")
    orders_script(fleet3.admin)
    said += fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    said += fleet3.run("CALL admmgt.refresh_stored_procedures()")
    assert fleet3.databases("c3") == {fleet3.template, fleet3.prefix + "p1", fleet3.prefix + "p2"}
    assert fleet3.history("c3", fleet3.prefix + "p1") == [(1, "apply")]

    # A wrong password: refused clearly, and neither password is echoed.
    wrong = "Wr0ng-" + password[::-1]
    fleet3.admin.execute(
        f"ALTER USER MAPPING FOR CURRENT_USER SERVER c3_server OPTIONS (SET password '{wrong}')"
    )
    said += fleet3.run(
        "CALL admmgt.applyScripts(t_raise => false)"
    )  # nothing pending: no connection
    s.script(fleet3.admin, 2)
    s.table(fleet3.admin, 2, "later", [s.ID])
    said += fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    assert any(
        'cluster "c3" is unreachable' in x and "password authentication failed" in x for x in said
    )
    with pytest.raises(psycopg.Error) as refused:
        fleet3.admin.execute("CALL admmgt.add_cluster('c3')")
    said.append(str(refused.value))

    everything = "\n".join(said)
    for secret in (password, wrong):
        assert secret not in everything
        routines = fleet3.admin.execute(
            "SELECT count(*) FROM pg_proc WHERE prosrc LIKE %s", (f"%{secret}%",)
        ).fetchone()
        assert routines == (0,)
        tables = fleet3.admin.execute(
            "SELECT c.oid::regclass::text FROM pg_class AS c"
            " WHERE c.relnamespace = 'admmgt'::regnamespace AND c.relkind IN ('r', 'p')"
        ).fetchall()
        assert len(tables) > 10
        for (name,) in tables:
            found = fleet3.admin.execute(
                f"SELECT count(*) FROM {name} AS t WHERE t::text LIKE %s", (f"%{secret}%",)
            ).fetchone()
            assert found == (0,), name


def test_a_passfile_on_the_admin_server_works(fleet3: Fleet3) -> None:
    remote = fleet3.remotes["c3"]
    passfile = remote.sandbox.root / f"{fleet3.prefix}pgpass"
    passfile.write_text(f"*:{remote.sandbox.port}:*:{REMOTE_ROLE}:{remote.password}\n")
    passfile.chmod(0o600)
    if os.geteuid() == 0:  # the server runs as postgres and libpq wants the file its own
        owner = pwd.getpwnam("postgres")
        os.chown(passfile, owner.pw_uid, owner.pw_gid)
    try:
        call(
            fleet3.admin,
            "add_cluster",
            "c3",
            remote.host,
            remote.sandbox.port,
            f"user={REMOTE_ROLE} passfile={passfile}",
        )
        fleet3.register("f1", cluster="c3")
        fleet3.run("CALL admmgt.create_database()")
        assert fleet3.databases("c3") == {fleet3.template, fleet3.prefix + "f1"}
        options = fleet3.admin.execute(
            "SELECT options FROM admmgt.clusters WHERE name = 'c3'"
        ).fetchone()
        assert options is not None and remote.password not in options[0]
    finally:
        passfile.unlink()


def test_a_password_in_the_options_is_refused(fleet3: Fleet3) -> None:
    for _ in range(2):  # new, then already registered: refused before it is compared
        with pytest.raises(psycopg.Error, match="holds a password") as refused:
            fleet3.admin.execute(
                "CALL admmgt.add_cluster('c2', '/tmp', 5432, 'user=x password=hunter2')"
            )
        assert "hunter2" not in str(refused.value)
        fleet3.admin.execute(
            "INSERT INTO admmgt.clusters (name) VALUES ('c2') ON CONFLICT DO NOTHING"
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        fleet3.admin.execute(
            "INSERT INTO admmgt.clusters (name, options) VALUES ('c5', 'password = hunter2')"
        )


# ----------------------------------------------------------- template copies


def test_a_cluster_added_after_five_scripts_gets_the_home_templates_catalog(
    fleet3: Fleet3,
) -> None:
    clock.pin(fleet3.admin, "2026-12-01")  # the partitions below follow from this date
    fleet3.admin.execute(s.POC_DEMO)  # scripts 1, 2, 4, 5
    s.script(fleet3.admin, 6, "a function, changed later by refresh")
    s.step(
        fleet3.admin,
        6,
        1,
        "CREATE FUNCTION mgttest.order_count() RETURNS bigint LANGUAGE sql"
        " AS 'SELECT count(*) FROM mgttest.orders'",
    )
    fleet3.register("h1")
    fleet3.run("CALL admmgt.create_database()")
    fleet3.run("CALL admmgt.applyScripts()")
    fleet3.run("CALL admmgt.applyMaintenance(t_numdays => 40)")
    with fleet3.connect("local", fleet3.template) as conn:  # a routine changed since
        conn.execute(
            "CREATE OR REPLACE FUNCTION mgttest.order_count() RETURNS bigint LANGUAGE sql"
            " AS 'SELECT count(*) + 0 FROM mgttest.orders'"
        )
    fleet3.run("CALL admmgt.refresh_stored_procedures()")

    lines = fleet3.add("c3")
    assert lines[-1].startswith("add_cluster: ") and "failed" not in lines[-1], lines
    status = fleet3.admin.execute(
        "SELECT status, scriptversion FROM admmgt.vendor_db_settings"
        " WHERE istemplate AND cluster_name = 'c3'"
    ).fetchone()
    assert status == (2, 6)
    catalogs = []
    for cluster in ("local", "c3"):
        with fleet3.connect(cluster, fleet3.template) as conn:
            catalogs.append(sorted(conn.execute(OBJECTS).fetchall()))
    assert catalogs[0] == catalogs[1]
    # Script 1 made December's sub-partitions (its anchor is the pinned day);
    # maintenance 40 days ahead added January's: the copy has exactly these.
    with fleet3.connect("c3", fleet3.template) as conn:
        assert clock.partitions(conn) == [
            ("orders", "orders_region_eu", "FOR VALUES IN ('EU')"),
            ("orders", "orders_region_us", "FOR VALUES IN ('US')"),
            *[
                (
                    f"orders_region_{r}",
                    f"orders_region_{r}_{y}_{m}",
                    f"FOR VALUES FROM ('{lo}') TO ('{hi}')",
                )
                for r in ("eu", "us")
                for y, m, lo, hi in (
                    ("2026", "12", "2026-12-01", "2027-01-01"),
                    ("2027", "01", "2027-01-01", "2027-02-01"),
                )
            ],
        ]
    assert [h[0] for h in fleet3.history("c3", fleet3.template)] == [1, 2, 4, 5, 6]

    # A second call re-checks and builds nothing; tenants can now live there.
    again = fleet3.run("CALL admmgt.add_cluster('c3')")
    assert not [x for x in again if "applied" in x]
    assert again[-1].startswith('add_cluster: cluster "c3" is ready for tenants: its template ')
    assert "at script 6 and its catalog equals the home template's" in again[-1]
    assert again[-1].endswith(" s)")
    fleet3.register("h2", cluster="c3")
    fleet3.run("CALL admmgt.create_database()")
    with fleet3.connect("c3", fleet3.prefix + "h2") as conn:
        assert sorted(conn.execute(OBJECTS).fetchall()) == catalogs[0]


def test_a_copy_that_differs_is_not_used(fleet3: Fleet3) -> None:
    with fleet3.connect("local", fleet3.template) as conn:  # made by hand, outside scripts
        conn.execute("CREATE TABLE mgttest.handmade (id int)")
    with pytest.raises(psycopg.Error, match="handmade") as refused:
        fleet3.add("c2")
    assert "differs from the home template" in str(refused.value)
    row = fleet3.admin.execute(
        "SELECT status FROM admmgt.vendor_db_settings WHERE istemplate AND cluster_name = 'c2'"
    ).fetchone()
    assert row == (3,)
    fleet3.register("x1", cluster="c2")
    fleet3.run("CALL admmgt.create_database(t_raise => false)")
    assert fleet3.databases("c2") == {fleet3.template}  # no tenant was made from it


def test_a_call_in_a_transaction_with_uncommitted_tenants_is_refused(fleet3: Fleet3) -> None:
    """The run log and registry are written from another session, which cannot see
    rows this transaction has not committed: refuse instead of losing updates (as
    any transaction block is refused, before anything is done)."""
    with (
        pytest.raises(psycopg.Error, match="cannot run inside a transaction block") as refused,
        fleet3.admin.transaction(),
    ):
        fleet3.register("u1")
        fleet3.admin.execute("CALL admmgt.create_database()")
    assert refused.value.sqlstate == "25001"
    assert "on its own" in str(refused.value.diag.message_hint)
    assert fleet3.databases("local") == {fleet3.template}  # nothing was created


def test_maintenance_sync_and_rollback_reach_every_cluster(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.add("c3")
    fleet3.register("r1", cluster="c2")
    fleet3.register("r2", cluster="c3")
    fleet3.register("r3")
    fleet3.run("CALL admmgt.create_database()")
    range_table(fleet3.admin, 1, "events", "day")
    fleet3.run("CALL admmgt.applyScripts()")

    def children(cluster: str, db: str) -> int:
        with fleet3.connect(cluster, db) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'mgttest.events'::regclass"
            ).fetchone()
            return int(row[0]) if row else -1

    before = children("c2", fleet3.prefix + "r1")
    lines = fleet3.run("CALL admmgt.applyMaintenance(t_numdays => 10)")
    everywhere = [("local", fleet3.template), ("c2", fleet3.template), ("c3", fleet3.template)]
    everywhere += [("c2", fleet3.prefix + "r1"), ("c3", fleet3.prefix + "r2")]
    everywhere += [("local", fleet3.prefix + "r3")]
    assert {children(c, db) for c, db in everywhere} == {before + 10}, lines
    assert any(x.startswith(f"template {fleet3.template}@c3: ") for x in lines)

    with fleet3.connect("local", fleet3.template) as conn:
        conn.execute("CREATE FUNCTION mgttest.answer() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    fleet3.run("CALL admmgt.refresh_stored_procedures()")
    for cluster, db in everywhere:
        with fleet3.connect(cluster, db) as conn:
            assert conn.execute("SELECT mgttest.answer()").fetchone() == (42,), (cluster, db)

    lines = fleet3.run("CALL admmgt.rollbackScript(1)")
    for cluster, db in everywhere:
        assert fleet3.history(cluster, db)[-1] == (1, "rollback"), (cluster, db, lines)


def test_tenants_wait_while_their_clusters_template_is_not_ready(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.register("w1", cluster="c2")
    fleet3.register("w2")
    fleet3.run("CALL admmgt.create_database()")
    with fleet3.connect("local", fleet3.template) as conn:
        conn.execute("CREATE TABLE mgttest.handmade (id int)")
    with pytest.raises(psycopg.Error, match="handmade"):
        fleet3.run("CALL admmgt.add_cluster('c2')")  # a re-check that finds a difference
    orders_script(fleet3.admin)
    lines = fleet3.run("CALL admmgt.applyScripts()")
    assert fleet3.history("c2", fleet3.prefix + "w1") == []  # template first, per cluster
    assert fleet3.history("local", fleet3.prefix + "w2") == [(1, "apply")]
    held = [x for x in lines if f"{fleet3.prefix}w1@c2: SKIPPED: held back" in x]
    assert held and 'the template on cluster "c2" is not ready (status 3' in held[0], lines
    error = fleet3.admin.execute(
        "SELECT last_error FROM admmgt.vendor_db_settings WHERE dbname = %s",
        (fleet3.prefix + "w1",),
    ).fetchone()
    assert error is not None and "held back" in error[0]

    with fleet3.connect("local", fleet3.template) as conn:
        conn.execute("DROP TABLE mgttest.handmade")
    again = fleet3.run("CALL admmgt.add_cluster('c2')")
    assert "is ready for tenants" in again[-1] and "at script 1" in again[-1]
    fleet3.run("CALL admmgt.applyScripts()")
    assert fleet3.history("c2", fleet3.prefix + "w1") == [(1, "apply")]


def test_a_baselined_home_template_is_copied(fleet3: Fleet3) -> None:
    """A fleet moved from the proof of concept is baselined, not replayed."""
    orders_script(fleet3.admin)
    plan = fleet3.admin.execute("SELECT statement FROM admmgt.plan_script(1)").fetchall()
    with fleet3.connect("local", fleet3.template) as conn:
        for (statement,) in plan:
            conn.execute(statement)
    fleet3.admin.execute("CALL admmgt.baseline(%s, 1)", (fleet3.template,))
    lines = fleet3.add("c2")
    assert "at script 1 and its catalog equals the home template's" in lines[-1], lines
    assert fleet3.history("c2", fleet3.template) == [(1, "apply")]


def test_a_rollback_waits_for_a_clusters_template_and_converges(fleet3: Fleet3) -> None:
    fleet3.add("c2")
    fleet3.register("k1", cluster="c2")
    fleet3.register("k2")
    fleet3.run("CALL admmgt.create_database()")
    orders_script(fleet3.admin)
    fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    fleet3.remotes["c2"].stop()
    try:
        lines = fleet3.run("CALL admmgt.rollbackScript(1, t_raise => false)")
    finally:
        fleet3.remotes["c2"].start()
    assert fleet3.history("local", fleet3.prefix + "k2")[-1] == (1, "rollback")
    assert fleet3.history("c2", fleet3.prefix + "k1") == [(1, "apply")]
    assert any("still has script 1, so it stays applied there" in x for x in lines), lines
    status = fleet3.admin.execute("SELECT status FROM admmgt.scripts WHERE id = 1").fetchone()
    assert status is not None and status[0] != 0

    fleet3.run("CALL admmgt.rollbackScript(1, t_raise => false)")
    for cluster, db in [("c2", fleet3.template), ("c2", fleet3.prefix + "k1")]:
        assert fleet3.history(cluster, db)[-1] == (1, "rollback"), (cluster, db)
    status = fleet3.admin.execute("SELECT status FROM admmgt.scripts WHERE id = 1").fetchone()
    assert status == (0,)


def test_a_script_failing_on_a_clusters_template_holds_back_only_that_cluster(
    fleet3: Fleet3,
) -> None:
    fleet3.add("c2")
    fleet3.register("h1", cluster="c2")
    fleet3.register("h2")
    fleet3.run("CALL admmgt.create_database()")
    orders_script(fleet3.admin)
    port = fleet3.remotes["c2"].sandbox.port
    s.step(
        fleet3.admin,
        1,
        2,
        "DO $x$ BEGIN IF current_setting('port')::int = " + str(port) + " AND current_database()"
        f" = '{fleet3.template}' THEN RAISE EXCEPTION 'no room on c2'; END IF; END $x$",
    )
    lines = fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    assert any(f"{fleet3.template}@c2: FAILED: " in x and "no room on c2" in x for x in lines)
    held = [x for x in lines if f"{fleet3.prefix}h1@c2: SKIPPED: held back at script" in x]
    assert held and 'the template on cluster "c2" lacks script 1' in held[0], lines
    assert fleet3.history("c2", fleet3.prefix + "h1") == []
    assert fleet3.history("local", fleet3.prefix + "h2") == [(1, "apply")]
    status = fleet3.admin.execute("SELECT status FROM admmgt.scripts WHERE id = 1").fetchone()
    assert status == (1,)  # not applied everywhere yet: the next run tries c2 again


# ------------------------------------------------------- routing (issue 20)


class _Listener:
    """Counts TCP connections to 127.0.0.1:port: where a redirected libpq would go."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.accepted = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stopped = True
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize(
    "options",
    [
        "hostaddr=127.0.0.1",
        " hostaddr = '127.0.0.1' sslmode=disable",
        "host=127.0.0.1 hostaddr=127.0.0.1",
        "service=elsewhere",
        "passfile=/tmp/elsewhere",
    ],
)
def test_an_operator_cannot_send_a_mapped_password_elsewhere(fleet3: Fleet3, options: str) -> None:
    fleet3.add("c3")
    port = fleet3.remotes["c3"].sandbox.port  # the foreign server's port, on another address
    listener = _Listener(port)
    try:
        fleet3.admin.execute(
            "UPDATE admmgt.clusters SET options = %s WHERE name = 'c3'", (options,)
        )
        with pytest.raises(psycopg.Error) as refused:
            fleet3.admin.execute("CALL admmgt.add_cluster('c3')")
        orders_script(fleet3.admin)  # the template wave reaches c3's template copy
        said = [str(refused.value)]
        try:
            said += fleet3.run("CALL admmgt.applyScripts()")
        except psycopg.Error as exc:
            said += [str(exc), *fleet3.notices.take()]
    finally:
        listener.close()
    assert listener.accepted == 0
    assert 'cluster "c3": admmgt.clusters.options sets' in said[0]
    assert "from its foreign server only" in said[0]
    assert any('cluster "c3": admmgt.clusters.options sets' in x for x in said[1:])
    assert fleet3.history("c3", fleet3.template) == []
    assert fleet3.databases("c3") == {fleet3.template}
