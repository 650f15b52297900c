"""What a run through relays must report and leave, as a run without them does
(issue 14, from the review of relays). Each test runs a fleet of several
tenants with max_parallel > 1, so that the tenants go through relays."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import Fleet, make_fleet
from tests.db.test_clusters import Fleet3, fleet3, orders_script  # noqa: F401
from tests.db.test_truth import libpq, wait_for
from tests.fix_db import connect

Conn = psycopg.Connection[Any]

RELAYS = "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = 'admmgt relay'"


class Call:
    """``CALL admmgt.applyscripts()`` on a new session, in a thread: what it says
    (NOTICEs) and raises, and its session (to cancel it, or to call again)."""

    def __init__(self, admin: Conn) -> None:
        self.notices: list[str] = []
        self.errors: list[psycopg.Error] = []
        self.session = connect(libpq(admin))
        self.session.add_notice_handler(lambda d: self.notices.append(d.message_primary or ""))
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.session.execute("CALL admmgt.applyscripts()")
        except psycopg.Error as exc:
            self.errors.append(exc)

    def join(self) -> None:
        self.thread.join(120)
        assert not self.thread.is_alive()

    def failed(self) -> list[str]:
        return [line for line in self.notices if "FAILED" in line]


def settings(admin: Conn, **values: str) -> None:
    for name, value in values.items():
        admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))


def failure(admin: Conn, db: str) -> tuple[Any, ...]:
    row = admin.execute(
        "SELECT sqlstate, message, statement, details->>'step', details->>'retryable'"
        " FROM admmgt.run_log WHERE dbname = %s AND outcome = 'failed'"
        " ORDER BY id DESC LIMIT 1",
        (db,),
    ).fetchone()
    assert row is not None, f"no failure logged for {db}"
    return tuple(row)


def test_a_tenants_error_in_a_one_trip_transaction_reads_the_same_through_a_relay(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 4)
    settings(admin, max_parallel="4")
    drifted = fleet.tenants[1]
    fleet.execute(drifted, "CREATE TABLE mgttest.probe (a int)")
    s.script(admin, 1, "probe")
    s.step(admin, 1, 1, "CREATE TABLE mgttest.first (a int)")
    s.step(admin, 1, 2, "CREATE TABLE mgttest.probe (a int)")
    s.step(admin, 1, 3, "CREATE TABLE mgttest.last (a int)")
    seen = {}
    for relays in ("off", "on"):
        settings(admin, relays=relays)
        fleet.apply(fails=True)
        seen[relays] = failure(admin, drifted)
        assert fleet.history(drifted) == []
        assert not fleet.has_table(drifted, "mgttest.first")
    assert seen["on"] == seen["off"]
    sqlstate, message, statement, step, _ = seen["on"]
    assert sqlstate == "42P07" and step == "2", seen
    assert 'relation "probe" already exists' in message, message
    assert statement == "CREATE TABLE mgttest.probe (a int)", statement


def test_a_tenant_whose_own_connection_is_terminated_fails_alone_and_its_relay_goes_on(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 4)
    settings(admin, max_parallel="2")
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    s.step(admin, 1, 2, "SELECT pg_sleep(1.5)")
    call = Call(admin)
    names = ", ".join(f"'{db}'" for db in fleet.tenants)
    pid = wait_for(
        admin,
        "SELECT pid FROM pg_catalog.pg_stat_activity WHERE application_name = 'admmgt'"
        f" AND datname IN ({names}) AND query LIKE '%pg_sleep%' LIMIT 1",
    )
    loser = admin.execute(
        "SELECT datname FROM pg_catalog.pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    assert loser is not None
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    call.join()
    call.session.close()
    assert call.errors and call.errors[0].sqlstate == "ZA001", call.errors
    failed = call.failed()
    assert len(failed) == 1 and loser[0] in failed[0], call.notices
    assert "57P01" in failed[0] and "retryable" in failed[0], failed
    assert all(fleet.history(db) == [(1, "apply")] for db in fleet.tenants if db != loser[0])
    assert fleet.history(loser[0]) == []
    wait_for(admin, f"SELECT ({RELAYS}) = 0", seconds=30)


def test_a_cancelled_run_ends_its_relays_and_tenants_and_its_session_can_run_again(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet: Fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 3)
    settings(admin, max_parallel="4")
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    s.step(admin, 1, 2, "SELECT pg_sleep(2)")
    names = ", ".join(f"'{db}'" for db in fleet.tenants)
    call = Call(admin)  # a client that stays connected
    with call.session:
        wait_for(
            admin,
            "SELECT count(*) = 3 FROM pg_catalog.pg_stat_activity WHERE application_name"
            f" = 'admmgt' AND datname IN ({names}) AND query LIKE '%pg_sleep%'",
        )
        admin.execute("SELECT pg_cancel_backend(%s)", (call.session.info.backend_pid,))
        call.join()
        assert call.errors and call.errors[0].sqlstate == "57014", call.errors
        # Relays and tenant connections end (once the tenants' step is over).
        wait_for(admin, f"SELECT ({RELAYS}) = 0", seconds=30)
        wait_for(
            admin,
            f"SELECT count(*) = 0 FROM pg_catalog.pg_stat_activity WHERE datname IN ({names})",
            seconds=30,
        )
        assert all(fleet.history(db) == [] for db in fleet.tenants)
        # The same session runs again, and through relays again.
        call.session.execute("CALL admmgt.applyscripts()")
    assert all(fleet.history(db) == [(1, "apply")] for db in fleet.tenants)


def test_no_password_reaches_the_admin_servers_log_while_relays_log_every_statement(
    fleet3: Fleet3,  # noqa: F811
) -> None:
    password = fleet3.remotes["c3"].password
    assert password
    admin = fleet3.admin
    fleet3.add("c3")  # its password is in a user mapping
    fleet3.register("p1", "p2", "p3", cluster="c3")
    fleet3.register("l1", "l2", "l3")
    fleet3.run("CALL admmgt.create_database()")
    settings(admin, max_parallel="4")
    data = admin.execute("SELECT current_setting('data_directory')").fetchone()
    assert data is not None
    log = Path(data[0]).parent / "postgres.log"
    start = log.stat().st_size
    db = admin.info.dbname
    admin.execute(f"ALTER DATABASE \"{db}\" SET log_statement = 'all'")  # relays log all
    try:
        orders_script(admin)
        fleet3.run("CALL admmgt.applyScripts(t_raise => false)")
    finally:
        admin.execute(f'ALTER DATABASE "{db}" RESET log_statement')
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    assert "dblink_send_query('admmgt_" in text  # relays were used, and logged
    assert password not in text
    for name in ("p1", "p2", "p3", "l1", "l2", "l3"):
        cluster = "c3" if name.startswith("p") else "local"
        assert fleet3.history(cluster, fleet3.prefix + name) == [(1, "apply")], name


SLOW_COMMIT = [
    "CREATE TABLE mgttest.slowcommit (a int)",
    "CREATE FUNCTION mgttest.slow() RETURNS trigger LANGUAGE plpgsql"
    " AS $f$BEGIN PERFORM pg_sleep(2.5); RETURN NULL; END$f$",
    "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON mgttest.slowcommit"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mgttest.slow()",
    "INSERT INTO mgttest.slowcommit VALUES (1)",
]


@pytest.mark.parametrize("relays", ["off", "on"])
def test_a_rollout_through_relays_ignores_the_admin_databases_statement_timeout(
    cluster_dsn: str, admin: Conn, tenant_prefix: str, relays: str
) -> None:
    # A DBA's usual guard: a statement_timeout on the admin database, lifted in
    # the session that runs a long rollout (SET statement_timeout = 0; CALL
    # ...). The relays are new sessions into that database: they get the
    # database's 1 s, not the caller's 0. The tenants' COMMIT takes 2.5 s
    # (a deferred constraint trigger), which the caller waits for.
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 3)
    settings(admin, max_parallel="4", relays=relays)
    s.script(admin, 1, "slow commit")
    for order, sql in enumerate(SLOW_COMMIT, 1):
        s.step(admin, 1, order, sql)
    db = admin.info.dbname
    admin.execute("SET statement_timeout = 0")
    admin.execute(f"ALTER DATABASE \"{db}\" SET statement_timeout = '1s'")
    try:
        notices: list[str] = []
        admin.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with contextlib.suppress(psycopg.Error):  # ZA001 when a tenant failed
            admin.execute("CALL admmgt.applyscripts()")
    finally:
        admin.execute(f'ALTER DATABASE "{db}" RESET statement_timeout')
    time.sleep(4)  # a COMMIT still running in a tenant is over by now
    failed = {t for t in fleet.tenants for line in notices if "FAILED" in line and t in line}
    committed = {t for t in fleet.tenants if fleet.history(t) == [(1, "apply")]}
    assert not failed & committed, (
        f"reported FAILED but committed: {sorted(failed & committed)}",
        [line for line in notices if "FAILED" in line],
    )
    logged = admin.execute(
        "SELECT dbname, sqlstate, message FROM admmgt.run_log WHERE outcome = 'failed'"
    ).fetchall()
    assert committed == set(fleet.tenants), logged  # as with relays = off


def test_a_relay_that_dies_while_its_tenant_commits_does_not_report_the_commit_failed(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    # A COMMIT the tenant received finishes although the relay carrying it
    # ends: the run reads the tenant's history before it says anything.
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 3)
    settings(admin, max_parallel="4")
    s.script(admin, 1, "slow commit")
    for order, sql in enumerate(SLOW_COMMIT, 1):
        s.step(admin, 1, order, sql)
    names = ", ".join(f"'{db}'" for db in fleet.tenants)
    call = Call(admin)
    with call.session:
        wait_for(
            admin,
            "SELECT count(*) = 3 FROM pg_catalog.pg_stat_activity WHERE application_name"
            f" = 'admmgt' AND datname IN ({names}) AND query = 'COMMIT' AND state = 'active'",
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
            " WHERE application_name = 'admmgt relay'"
        )
        call.join()
    time.sleep(4)  # the COMMITs are over
    failed = {t for t in fleet.tenants for line in call.failed() if t in line}
    committed = {t for t in fleet.tenants if fleet.history(t) == [(1, "apply")]}
    assert not failed & committed, (
        f"reported FAILED but committed: {sorted(failed & committed)}",
        call.failed(),
    )
    # Here every COMMIT finished: every tenant has the script, and says so.
    assert committed == set(fleet.tenants) and not call.errors, (call.failed(), call.errors)
