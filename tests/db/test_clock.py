"""The fleet's clock (issue 12): one function, pinned by the owner only, announced."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors

import admmgt
from admmgt.cli import main
from tests.db import clock
from tests.db.fleet import Fleet

Conn = psycopg.Connection[Any]


def test_an_unpinned_clock_is_the_servers(admin: Conn) -> None:
    row = admin.execute("SELECT admmgt.fleet_now() = now(), count(*) FROM admmgt._clock")
    assert row.fetchone() == (True, 0)


def test_the_owner_pins_and_unpins_it_and_new_scripts_take_it(admin: Conn) -> None:
    clock.pin(admin, "2028-02-29", "23:30:00")
    assert admin.execute(
        "SELECT to_char(admmgt.fleet_now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')"
    ).fetchone() == ("2028-02-29 23:30",)
    admin.execute("INSERT INTO admmgt.scripts (id, description) VALUES (1, 'anchored')")
    assert admin.execute(
        "SELECT created_date = admmgt.fleet_now() FROM admmgt.scripts WHERE id = 1"
    ).fetchone() == (True,)
    # An upgrade re-creates the routines and keeps the default on the clock.
    admmgt.upgrade(admin)
    admin.execute("INSERT INTO admmgt.scripts (id, description) VALUES (2, 'after upgrade')")
    assert admin.execute(
        "SELECT created_date = admmgt.fleet_now() FROM admmgt.scripts WHERE id = 2"
    ).fetchone() == (True,)
    admin.execute("CALL admmgt._unpin_clock()")
    assert admin.execute("SELECT admmgt.fleet_now() = now()").fetchone() == (True,)


def test_an_operator_reads_the_clock_but_cannot_move_it(admin: Conn) -> None:
    admin.execute(
        "DO $$ BEGIN CREATE ROLE admmgt_test_clock; EXCEPTION WHEN duplicate_object THEN NULL;"
        " END $$"
    )
    admin.execute("GRANT admmgt_operator TO admmgt_test_clock")
    clock.pin(admin, "2027-02-28")
    admin.execute("SET ROLE admmgt_test_clock")
    try:
        assert admin.execute("SELECT admmgt.fleet_now()::date::text").fetchone() == ("2027-02-28",)
        for statement in (
            "CALL admmgt._pin_clock('2030-01-01')",
            "CALL admmgt._unpin_clock()",
            "UPDATE admmgt._clock SET pinned_at = '2030-01-01'",
            "DELETE FROM admmgt._clock",
            "INSERT INTO admmgt._clock (singleton, pinned_at) VALUES (true, now())",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                admin.execute(statement)
        # A session setting of the same name moves nothing.
        admin.execute("SET admmgt.clock = '2030-01-01'")
        assert admin.execute("SELECT admmgt.fleet_now()::date::text").fetchone() == ("2027-02-28",)
    finally:
        admin.execute("RESET ROLE")


def test_every_date_dependent_run_says_the_clock_is_pinned(fleet: Fleet) -> None:
    admin = fleet.admin
    lines: list[str] = []
    admin.add_notice_handler(lambda d: lines.append(d.message_primary or ""))
    admin.execute("CALL admmgt.applyMaintenance(t_numdays => 1)")
    assert not [x for x in lines if "pinned" in x]
    clock.pin(admin, "2026-06-30")
    lines.clear()
    admin.execute("CALL admmgt.applyMaintenance(t_numdays => 1)")
    admin.execute("CALL admmgt.lifecycleMgt()")
    pinned = [x for x in lines if "the fleet's clock is pinned at 2026-06-30 12:00:00 UTC" in x]
    assert [x.split(":")[0] for x in pinned] == ["applyMaintenance", "lifecycleMgt"], lines
    assert "pinned by postgres (test)" in pinned[0]


def test_admmgt_status_shows_a_pinned_clock(fleet: Fleet, admin_dsn: str) -> None:
    def status(*args: str) -> str:
        result = CliRunner().invoke(main, ["--dsn", admin_dsn, "status", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "clock" not in status()
    assert json.loads(status("--json"))["clock"] is None
    clock.pin(fleet.admin, "2026-12-31")
    assert "clock: pinned at 2026-12-31 12:00:00 UTC by postgres (test)" in status()
    assert json.loads(status("--json"))["clock"] == {
        "pinned_at": "2026-12-31 12:00:00 UTC",
        "pinned_by": "postgres",
        "reason": "test",
    }
