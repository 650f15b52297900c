"""pg_cron sees a failed run as failed (issue 13): admmgt ends a run in which a
database failed with ERROR ZA001, so cron.job_run_details says 'failed' and
carries the run's message, not 'succeeded'."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.db import scripts as s
from tests.db.fleet import Fleet, wait_for_cron_run
from tests.fix_db import connect

Conn = psycopg.Connection[Any]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pg_cron_reports_failed_when_a_scheduled_apply_run_fails(
    fleet: Fleet, cluster_dsn: str
) -> None:
    broken = fleet.tenants[1]
    s.script(fleet.admin, 1, "t1")
    s.table(fleet.admin, 1, "t1", [s.ID])
    s.step(
        fleet.admin,
        1,
        1,
        "DO $x$ BEGIN IF current_database() = "
        f"'{broken}' THEN RAISE EXCEPTION 'no room on this tenant'; END IF; END $x$",
    )
    admin_db = fleet.admin.info.dbname
    name = f"admmgt-test-failed-apply-{admin_db}"
    cron_db = fleet.admin.execute("SELECT current_setting('cron.database_name')").fetchone()
    assert cron_db is not None
    with connect(make_conninfo(cluster_dsn, dbname=cron_db[0])) as pg:
        pg.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        # pg_cron 1.4 (the sandbox's) has no seconds syntax: every minute is the
        # fastest schedule, so this waits for the next minute boundary.
        pg.execute(
            "SELECT cron.schedule_in_database(%s, '* * * * *', %s, %s)",
            (name, "CALL admmgt.applyScripts()", admin_db),
        )
        try:
            status, message = wait_for_cron_run(cluster_dsn, name, 150)
        finally:
            pg.execute("SELECT cron.unschedule(%s)", (name,))
    run = fleet.admin.execute(
        "SELECT id, outcome FROM admmgt.runs WHERE operation = 'applyScripts' ORDER BY id LIMIT 1"
    ).fetchone()
    assert run is not None and run[1] == "failed", run
    assert status == "failed", (status, message)
    assert f"applyScripts run {run[0]} failed: 1 database(s) failed" in message, message
    assert "every outcome is recorded" in message, message
    # the other databases were applied; the broken one was not
    for db in (fleet.template, fleet.tenants[0]):
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT to_regclass('mgttest.t1')").fetchone() != (None,), db
    with fleet.connect(broken) as conn:
        assert conn.execute("SELECT to_regclass('mgttest.t1')").fetchone() == (None,)
