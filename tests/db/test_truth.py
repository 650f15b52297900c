"""Runs you can trust (issue 13, invariant 11 of docs/concepts.md): a CALL
inside a transaction block is refused, failures reach exit codes, an
interrupted run is seen and resumed, and status never says "up to date" while
a database disagrees."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from admmgt import _detach
from admmgt.cli import main
from tests.db import scripts as s
from tests.db.fleet import Fleet, call, make_fleet, registry
from tests.fix_db import connect

Conn = psycopg.Connection[Any]


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> Fleet:
    return make_fleet(cluster_dsn, admin, tenant_prefix, 3)


def orders(admin: Conn, script_id: int = 1) -> None:
    s.script(admin, script_id, "orders")
    s.table(admin, script_id, "orders", [s.ID, ("note", "text")])


def libpq(conn: Conn) -> str:
    """The connection's conninfo for the psql binary (whose libpq may be older)."""
    i = conn.info
    return f"host={i.host} port={i.port} user={i.user} dbname={i.dbname}"


def psql(dsn: str, sql: str, *, script: bool = False) -> subprocess.CompletedProcess[str]:
    """psql -c ``sql``; ``script``: ``sql`` is read as a script (one statement a line)."""
    return subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            *(["-f", "-"] if script else ["-c", sql]),
            dsn,
        ],
        input=sql if script else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def status(admin: Conn) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--dsn", admin.info.dsn, "status"], terminal_width=250)
    return result.exit_code, result.output


# ------------------------------------------------------------ transaction blocks

# Every public procedure that commits in another database, with arguments that
# would change something if it ran.
COMMITTING = [
    ("applyscripts", ()),
    ("create_database", ()),
    ("drop_database", ("{t0}", "drop")),
    ("baseline", ("{t0}", 1)),
    ("replayscripts", ("{t0}", 1)),
    ("rollbackscript", (1,)),
    ("applymaintenance", ()),
    ("lifecyclemgt", ()),
    ("refresh_stored_procedures", ()),
    ("refesh_stored_procedures", ()),
    ("refresh_views", ()),
    ("refesh_views", ()),
    ("add_cluster", ("c9",)),
]


@pytest.mark.parametrize(("procedure", "args"), COMMITTING, ids=[p for p, _ in COMMITTING])
def test_every_committing_procedure_refuses_a_transaction_block(
    fleet: Fleet, procedure: str, args: tuple[Any, ...]
) -> None:
    orders(fleet.admin)
    if procedure in ("rollbackscript", "replayscripts"):
        call(fleet.admin, "applyscripts")
    before = fleet.runs()
    values = [a.format(t0=fleet.tenants[0]) if isinstance(a, str) else a for a in args]
    with pytest.raises(psycopg.Error) as refused, fleet.admin.transaction():
        call(fleet.admin, procedure, *values)
    assert refused.value.sqlstate == "25001"
    assert f"admmgt.{procedure} cannot run inside a transaction block" in str(refused.value)
    assert "Nothing was done" in str(refused.value)
    assert fleet.runs() == before


def test_begin_call_rollback_in_psql_is_refused_and_changes_nothing(fleet: Fleet) -> None:
    orders(fleet.admin)
    dsn = libpq(fleet.admin)
    # psql sends each statement of a script separately: an explicit block.
    script = psql(dsn, "BEGIN;\nCALL admmgt.applyscripts();\nROLLBACK;\n", script=True)
    # psql -c with one string sends it at once: one implicit transaction block.
    one_string = psql(dsn, "BEGIN; CALL admmgt.applyscripts(); ROLLBACK;")
    for result in (script, one_string):
        assert result.returncode != 0
        assert "admmgt.applyscripts cannot run inside a transaction block" in result.stderr
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == []
    assert fleet.runs() == 1  # create_database's only
    # alone it runs, and a dry run inside a block is harmless and allowed
    with fleet.admin.transaction():
        call(fleet.admin, "applyscripts", 1, True)
    assert psql(dsn, "CALL admmgt.applyscripts()").returncode == 0
    assert fleet.history(fleet.tenants[0]) == [(1, "apply")]


# ----------------------------------------------------------------- exit codes


def test_psql_exits_non_zero_when_one_tenant_fails_and_the_log_survives(fleet: Fleet) -> None:
    broken = fleet.tenants[1]
    with connect(fleet.dsn(broken)) as conn:
        conn.execute("CREATE TABLE mgttest.orders (x int)")
    orders(fleet.admin)
    result = psql(libpq(fleet.admin), "CALL admmgt.applyscripts()")
    assert result.returncode == 1, result  # psql -c: the command failed
    assert f"applyScripts run 2 failed: 1 database(s) failed ({broken});" in result.stderr
    # raised after the outcomes were committed: the run and its log survive
    run = fleet.admin.execute("SELECT outcome, summary FROM admmgt.runs WHERE id = 2").fetchone()
    assert run == ("failed", {"ok": 3, "failed": 1})
    assert registry(fleet.admin)[broken][2].startswith(f'tenant "{broken}": script 1 failed')
    # t_raise => false: NOTICEs only, as before
    again = psql(libpq(fleet.admin), "CALL admmgt.applyscripts(t_raise => false)")
    assert again.returncode == 0, again
    assert f"{broken}: FAILED" in again.stderr


def test_a_script_refused_by_validation_fails_the_run_and_psql(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID, ("x", "moneyy(12,2)")])
    result = psql(libpq(fleet.admin), "CALL admmgt.applyscripts()")
    assert result.returncode == 1, result
    assert "validation on the template failed" in result.stderr
    assert "moneyy" in result.stderr
    assert fleet.admin.execute("SELECT status FROM admmgt.scripts").fetchone() == (3,)
    row = fleet.admin.execute(
        "SELECT r.outcome, l.dbname, l.outcome FROM admmgt.runs AS r"
        " JOIN admmgt.run_log AS l ON l.run_id = r.id WHERE r.operation = 'applyScripts'"
    ).fetchone()
    assert row == ("failed", fleet.template, "failed")  # no longer "noop"
    code, output = status(fleet.admin)
    assert code == 1 and "failed" in output


def test_out_of_order_ids_are_refused_through_the_same_channel(fleet: Fleet) -> None:
    orders(fleet.admin, 5)
    call(fleet.admin, "applyscripts")
    s.script(fleet.admin, 3)
    s.table(fleet.admin, 3, "late", [s.ID])
    with pytest.raises(psycopg.Error, match="the template already has script 5") as refused:
        call(fleet.admin, "applyscripts")
    assert refused.value.sqlstate == "ZA001"
    row = fleet.admin.execute("SELECT status, last_error FROM admmgt.scripts WHERE id = 3")
    assert row.fetchone() == (
        3,
        "the template already has script 5; scripts apply in id order, so give this one a "
        "higher id (a new scripts row); a script rolled back and then overtaken is never "
        "applied out of order",
    )


# ------------------------------------------------------------ interrupted runs


def slow_rollback(admin: Conn, script_id: int, seconds: float) -> None:
    """A hand-written rollback that takes ``seconds`` per database."""
    admin.execute(
        "INSERT INTO admmgt.script_rollback_steps (scriptid, steporder, sqltext, status)"
        " VALUES (%s, 1, %s, 1), (%s, 2, 'DROP TABLE mgttest.orders', 1)",
        (script_id, f"SELECT pg_sleep({seconds})", script_id),
    )


def start_psql(dsn: str, sql: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def wait_for(admin: Conn, query: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = admin.execute(query).fetchone()
        if row and row[0]:
            return row[0]
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {query}")


def test_a_rollback_whose_client_was_killed_is_shown_and_finished_by_the_next_call(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 8)
    orders(admin, 1)
    call(admin, "applyscripts")
    slow_rollback(admin, 1, 0.4)
    admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")
    client = start_psql(libpq(admin), "CALL admmgt.rollbackscript(1)")
    # kill -9 the client once the template and a tenant or two are done
    wait_for(
        admin,
        "SELECT count(*) >= 2 FROM admmgt.run_log AS l JOIN admmgt.runs AS r ON r.id = l.run_id"
        " WHERE r.operation = 'rollbackScript'",
    )
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    # its backend dies at its next NOTICE; then the run is interrupted
    run_id = wait_for(
        admin, "SELECT run_id FROM admmgt.unfinished_runs WHERE state = 'interrupted'"
    )
    ahead = [t for t, v in registry(admin).items() if v[1] == 1]
    assert ahead and len(ahead) < len(fleet.tenants), "the kill must split the fleet"
    code, output = status(admin)
    assert code == 1
    assert f"run {run_id} (rollbackScript: script 1, drop_data false) interrupted" in output
    assert f"{len(ahead)} tenant(s) ahead of the template" in output
    flagged = admin.execute(
        "SELECT dbname FROM admmgt.fleet_status WHERE ahead_of_template ORDER BY dbname"
    ).fetchall()
    assert [r[0] for r in flagged] == sorted(ahead)
    assert admin.execute(
        "SELECT run_outcome FROM admmgt.run_history WHERE run_id = %s LIMIT 1", (run_id,)
    ).fetchone() == ("interrupted",)

    # the same call again finishes it (it used to refuse: "script 1 is not the
    # latest script applied to the template (none is)")
    admin.execute(
        "UPDATE admmgt.script_rollback_steps SET sqltext = 'SELECT 1' WHERE steporder = 1"
    )
    call(admin, "rollbackscript", 1)
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == [(1, "apply"), (1, "rollback")], db
    assert {v[1] for v in registry(admin).values()} == {None}
    assert admin.execute("SELECT outcome FROM admmgt.runs WHERE id = %s", (run_id,)).fetchone() == (
        "interrupted",
    )
    assert admin.execute("SELECT count(*) FROM admmgt.unfinished_runs").fetchone() == (0,)
    code, output = status(admin)
    assert code == 0, output


def test_rollback_of_a_script_nobody_has_says_so(fleet: Fleet) -> None:
    with pytest.raises(psycopg.Error, match="script 4 is not applied to the template"):
        call(fleet.admin, "rollbackscript", 4)


def test_status_flags_a_registry_its_own_history_contradicts(fleet: Fleet) -> None:
    orders(fleet.admin)
    call(fleet.admin, "applyscripts")
    assert status(fleet.admin)[0] == 0
    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET scriptversion = 0 WHERE dbname = %s",
        (fleet.tenants[0],),
    )
    code, output = status(fleet.admin)
    assert code == 1
    assert "0 (history:" in output, output
    row = fleet.admin.execute(
        "SELECT history_version, registry_disagrees FROM admmgt.fleet_status WHERE dbname = %s",
        (fleet.tenants[0],),
    ).fetchone()
    assert row == (1, True)


# ------------------------------------------------------------ detached runs


def test_a_detached_apply_outlives_its_command_and_is_followed_from_another(
    fleet: Fleet,
) -> None:
    orders(fleet.admin)
    s.step(fleet.admin, 1, 1, "SELECT pg_sleep(0.5)")
    fleet.admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")
    runner = CliRunner()
    started = runner.invoke(main, ["--dsn", fleet.admin.info.dsn, "apply", "--detach"])
    assert started.exit_code == 0, started.output
    assert "run 2 started" in started.output
    # the command is gone, its run is not: nothing is said to a client any more
    row = fleet.admin.execute("SELECT outcome FROM admmgt.runs WHERE id = 2").fetchone()
    assert row == (None,)
    followed = runner.invoke(main, ["--dsn", fleet.admin.info.dsn, "log", "--follow", "--run", "2"])
    assert followed.exit_code == 0, followed.output
    for db in [fleet.template, *fleet.tenants]:
        assert f"{db} ok" in followed.output
    assert "run outcome: ok" in followed.output
    for db in [fleet.template, *fleet.tenants]:
        assert fleet.history(db) == [(1, "apply")]


def test_a_detached_run_that_cannot_start_says_why(fleet: Fleet) -> None:
    orders(fleet.admin)
    with connect(fleet.admin.info.dsn) as first, first.transaction():
        first.execute("SELECT pg_advisory_xact_lock(1634560109, 2)")
        result = CliRunner().invoke(main, ["--dsn", fleet.admin.info.dsn, "apply", "--detach"])
    assert result.exit_code == 1
    assert "applyScripts is already running" in result.output


def test_a_detached_run_slow_to_start_is_left_running_with_a_hint(fleet: Fleet) -> None:
    orders(fleet.admin)
    with connect(fleet.admin.info.dsn) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE admmgt.vendor_db_settings IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(_detach.DetachError) as raised:
            _detach.start(fleet.admin.info.dsn, "applyscripts", (), timeout_s=1.0)
        message, hint = str(raised.value), raised.value.hint or ""
        pid = int(re.search(r"pid (\d+)", message).group(1))  # type: ignore[union-attr]
        assert "has not recorded a run within 1 s" in message
        assert f"pg_cancel_backend({pid})" in hint and "admmgt log --follow" in hint
        locker.execute("COMMIT")
    # it was left running: once the lock is gone, it records and ends its run
    wait_for(
        fleet.admin,
        f"SELECT EXISTS (SELECT FROM admmgt.runs WHERE pid = {pid} AND outcome = 'ok')",
        120,
    )
    assert fleet.history(fleet.tenants[0]) == [(1, "apply")]


def test_an_interrupted_run_of_an_operation_with_nothing_left_to_do_is_ended_by_its_next_call(
    fleet: Fleet,
) -> None:
    # As a create_database whose client was killed after its last tenant: its
    # backend (a pid that is no backend's) is gone, and nothing is pending.
    fleet.admin.execute(
        "INSERT INTO admmgt.runs (operation, pid, backend_start) VALUES"
        " ('create_database', 0, now())"
    )
    assert fleet.admin.execute(
        "SELECT operation, state FROM admmgt.unfinished_runs"
    ).fetchall() == [("create_database", "interrupted")]
    assert status(fleet.admin)[0] == 1
    call(fleet.admin, "create_database")  # nothing pending
    assert fleet.admin.execute("SELECT count(*) FROM admmgt.unfinished_runs").fetchone() == (0,)
    outcomes = fleet.admin.execute(
        "SELECT outcome FROM admmgt.runs WHERE operation = 'create_database' ORDER BY id"
    ).fetchall()
    assert [r[0] for r in outcomes] == ["ok", "interrupted", "noop"]
    assert status(fleet.admin)[0] == 0
