"""Relays (issue 14): a fan-out of several databases reaches them through
sessions it opens into the admin database, so that connections open in
parallel. What must hold: the jobs go through them (and not with relays =
off), none outlives the run, and a relay that dies fails only the database it
was working on, rolled back and retryable."""

from __future__ import annotations

import subprocess
from typing import Any

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import Fleet, make_fleet
from tests.db.test_truth import libpq, wait_for

Conn = psycopg.Connection[Any]

RELAYS = "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = 'admmgt relay'"


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> Fleet:
    return make_fleet(cluster_dsn, admin, tenant_prefix, 4)


def seen_relays(fleet: Fleet, db: str) -> int:
    with fleet.connect(db) as conn:
        row = conn.execute("SELECT n FROM mgttest.seen").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("relays", ["on", "off"])
def test_tenants_are_worked_through_relays_unless_they_are_off(fleet: Fleet, relays: str) -> None:
    fleet.admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = 'relays'", (relays,))
    fleet.admin.execute("UPDATE admmgt.settings SET value = '4' WHERE name = 'max_parallel'")
    s.script(fleet.admin, 1, "seen")
    s.step(fleet.admin, 1, 1, "CREATE TABLE mgttest.seen AS " + RELAYS.replace("(*)", "(*) AS n"))
    fleet.apply()
    assert seen_relays(fleet, fleet.template) == 0  # templates go one at a time, directly
    seen = {db: seen_relays(fleet, db) for db in fleet.tenants}
    if relays == "on":
        assert all(1 <= n <= 4 for n in seen.values()), seen
    else:
        assert set(seen.values()) == {0}, seen
    # None outlives the run (a closed relay's backend ends a moment later).
    wait_for(fleet.admin, f"SELECT ({RELAYS}) = 0", seconds=30)


def test_a_relay_that_dies_fails_only_its_database_which_a_rerun_applies(
    fleet: Fleet,
) -> None:
    admin = fleet.admin
    admin.execute("UPDATE admmgt.settings SET value = '2' WHERE name = 'max_parallel'")
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    s.step(admin, 1, 2, "SELECT pg_sleep(1)")
    client = subprocess.Popen(
        (
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CALL admmgt.applyscripts()",
            libpq(admin),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = wait_for(
        admin,
        "SELECT pid FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = 'admmgt relay' AND state = 'active' LIMIT 1",
    )
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    out, err = client.communicate(timeout=120)
    assert client.returncode != 0, out + err
    failed = [line for line in (out + err).splitlines() if "FAILED" in line]
    assert len(failed) == 1, out + err
    assert "retryable" in failed[0] and "57P01" in failed[0], failed
    loser = next(db for db in fleet.tenants if db in failed[0])
    # Its transaction ended with its relay: nothing of the script is left.
    assert fleet.history(loser) == []
    assert not fleet.has_table(loser, "mgttest.orders")
    assert all(fleet.history(db) == [(1, "apply")] for db in fleet.tenants if db != loser)
    wait_for(admin, f"SELECT ({RELAYS}) = 0", seconds=30)
    fleet.apply()
    assert all(fleet.history(db) == [(1, "apply")] for db in fleet.tenants)


def test_through_a_relay_a_tenant_reported_failed_has_not_committed_the_script(
    fleet: Fleet,
) -> None:
    # As test_one_trip_truth's, with several tenants so that they go through
    # relays: the drifted tenant's server runs the step fine, admmgt cannot
    # read its result (two columns where the template has one).
    fleet.execute(fleet.template, "CREATE TABLE mgttest.probe (a int)")
    drifted, *others = fleet.tenants
    for db in others:
        fleet.execute(db, "CREATE TABLE mgttest.probe (a int)")
    fleet.execute(drifted, "CREATE TABLE mgttest.probe (a int, b int)")
    s.script(fleet.admin, 1, "orders")
    s.table(fleet.admin, 1, "orders", [s.ID, ("note", "text")])
    s.step(fleet.admin, 1, 1, "SELECT * FROM mgttest.probe")
    lines = fleet.apply(fails=True)
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and drifted in failed[0], lines
    assert fleet.history(drifted) == []
    assert not fleet.has_table(drifted, "mgttest.orders")
    assert all(fleet.history(db) == [(1, "apply")] for db in others)
