"""What the one-query tenant transaction (issue 14) must not break, found by
review: a tenant reported FAILED has not committed its script; cancelling a
run rolls back the tenants in flight; a killed client keeps a record of every
database it changed (recorded before said)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import Fleet, make_fleet
from tests.db.test_truth import libpq, start_psql, wait_for

Conn = psycopg.Connection[Any]

TENANT_ROWS = (
    "SELECT count(*) >= {n} FROM admmgt.run_log AS l JOIN admmgt.runs AS r ON r.id = l.run_id"
    " WHERE r.operation = 'applyScripts'"
)


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> Fleet:
    return make_fleet(cluster_dsn, admin, tenant_prefix, 1)


def orders(admin: Conn, step: str) -> None:
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    s.step(admin, 1, 1, step)


def test_a_tenant_reported_failed_has_not_committed_the_script(fleet: Fleet) -> None:
    # A raw step whose result has one column on the template, two on a drifted
    # tenant: the tenant's server runs it fine, admmgt cannot read its result.
    fleet.execute(fleet.template, "CREATE TABLE mgttest.probe (a int)")
    tenant = fleet.tenants[0]
    fleet.execute(tenant, "CREATE TABLE mgttest.probe (a int, b int)")
    orders(fleet.admin, "SELECT * FROM mgttest.probe")
    lines = fleet.apply(fails=True)
    assert fleet.history(fleet.template) == [(1, "apply")]
    assert any(tenant in line and "FAILED" in line for line in lines), lines
    # The run says the tenant failed: then it must not have the script.
    assert fleet.history(tenant) == []
    assert not fleet.has_table(tenant, "mgttest.orders")


def test_a_killed_client_keeps_a_record_of_every_database_it_changed(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 12)
    orders(admin, "SELECT pg_sleep(0.03)")
    admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")
    client = start_psql(libpq(admin), "CALL admmgt.applyscripts()")
    wait_for(admin, TENANT_ROWS.format(n=3))
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    wait_for(admin, "SELECT run_id FROM admmgt.unfinished_runs WHERE state = 'interrupted'")
    changed = {db for db in fleet.tenants if fleet.history(db) == [(1, "apply")]}
    logged = {
        r[0]
        for r in admin.execute(
            "SELECT DISTINCT dbname FROM admmgt.script_log WHERE scriptid = 1"
        ).fetchall()
    }
    run_logged = {
        r[0] for r in admin.execute("SELECT DISTINCT dbname FROM admmgt.run_log").fetchall()
    }
    assert changed and len(changed) < len(fleet.tenants), "the kill must split the fleet"
    assert changed <= logged, f"no script_log for {sorted(changed - logged)}"
    assert changed <= run_logged, f"no run_log for {sorted(changed - run_logged)}"


def test_cancelling_the_run_rolls_back_the_tenants_in_flight(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 3)
    orders(admin, "SELECT pg_sleep(3)")
    client = start_psql(libpq(admin), "CALL admmgt.applyscripts()")
    wait_for(admin, TENANT_ROWS.format(n=1), seconds=30)  # the template is done
    time.sleep(1.0)  # and the tenants are in their step
    pid = admin.execute(
        "SELECT pid FROM admmgt.runs WHERE operation = 'applyScripts' AND outcome IS NULL"
    ).fetchone()
    assert pid is not None, "the run ended before it could be cancelled"
    admin.execute("SELECT pg_cancel_backend(%s)", (pid[0],))
    assert client.wait(timeout=30) != 0
    time.sleep(4.0)  # the tenants' step would have ended by now
    histories = {db: fleet.history(db) for db in fleet.tenants}
    assert all(h == [] for h in histories.values()), histories
    assert not any(fleet.has_table(db, "mgttest.orders") for db in fleet.tenants)
