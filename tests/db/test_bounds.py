"""Issue 21: no remote wait without a bound, and a lock or a lost connection
never fails a script for good (plus issue 13: a lock timeout names its holder).

Each lock holder below ends its own transaction after 60 s of idling
(idle_in_transaction_session_timeout): a wait without a bound then shows as a
run far slower than the bound, instead of a test that hangs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, call, history, registry
from tests.fix_db import connect

Conn = psycopg.Connection[Any]

HOLDER = "lock-holder"


def _settings(admin: Conn, **values: str) -> None:
    for name, value in values.items():
        updated = admin.execute(
            "UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name)
        ).rowcount
        assert updated == 1, name


def _apply(fleet: Fleet, fails: bool = True) -> tuple[list[str], float]:
    """applyScripts' NOTICE lines and how long it took; ``fails``: a database
    fails (retryable), so the CALL must end with ERROR ZA001."""
    notices = Notices(fleet.admin)
    started = time.monotonic()
    if fails:
        with pytest.raises(psycopg.Error) as failed:
            call(fleet.admin, "applyscripts")
        assert failed.value.sqlstate == "ZA001", failed.value
    else:
        call(fleet.admin, "applyscripts")
    return notices.take(), time.monotonic() - started


def _hold(fleet: Fleet, db: str, *statements: str) -> Conn:
    """A session in ``db`` with an open transaction that ran ``statements``."""
    holder = fleet.connect(db)
    holder.execute(f"SET application_name = '{HOLDER}'")
    holder.execute("SET idle_in_transaction_session_timeout = '60s'")
    holder.execute("BEGIN")
    for statement in statements:
        holder.execute(statement)
    return holder


def _release(holder: Conn) -> None:
    with contextlib.suppress(psycopg.Error):  # ended by its idle timeout: released too
        holder.execute("ROLLBACK")
    holder.close()


def _line(lines: list[str], db: str) -> str:
    return next(line for line in lines if f"{db}:" in line and "FAILED" in line)


def _orders(fleet: Fleet) -> int:
    """Script 1 (mgttest.orders) applied everywhere; returns the table's metadata id."""
    s.script(fleet.admin, 1)
    table_id = s.table(fleet.admin, 1, "orders", [s.ID, ("note", "text")])
    fleet.apply()
    return table_id


def _logged(fleet: Fleet, db: str) -> tuple[Any, ...]:
    row = fleet.admin.execute(
        "SELECT message, statement, details->'retryable' FROM admmgt.run_log"
        " WHERE dbname = %s AND outcome = 'failed' ORDER BY id DESC LIMIT 1",
        (db,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_lock_on_the_template_leaves_the_script_ready_for_the_next_run(fleet: Fleet) -> None:
    table_id = _orders(fleet)
    s.script(fleet.admin, 2)
    s.column(fleet.admin, table_id, 2, "extra", "int")
    _settings(fleet.admin, lock_timeout_ms="100", lock_retries="1", retry_backoff_ms="20")
    holder = _hold(fleet, fleet.template, "LOCK TABLE mgttest.orders IN ACCESS EXCLUSIVE MODE")
    try:
        pid = holder.info.backend_pid
        lines, elapsed = _apply(fleet)
    finally:
        _release(holder)
    assert elapsed < 30
    failure = _line(lines, fleet.template)
    assert "script 2 failed at step 1 (add_column mgttest.orders), retryable: " in failure
    assert (
        f'a lock held by pid {pid} (application "{HOLDER}", AccessExclusiveLock on '
        "mgttest.orders)" in failure
    )
    assert "after 2 tries (55P03" in failure and "re-run" in failure
    status, error = fleet.admin.execute(
        "SELECT status, last_error FROM admmgt.scripts WHERE id = 2"
    ).fetchone() or (None, None)
    assert status == 1, "a lock must not fail the script for good"
    assert error is not None and "retryable: a lock held by" in error
    for db in fleet.tenants:  # template first: no tenant was touched
        with fleet.connect(db) as conn:
            assert history(conn) == [(1, "apply")]
    fleet.apply()  # the next run, with no manual step
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert history(conn) == [(1, "apply"), (2, "apply")]
    row = fleet.admin.execute("SELECT status, last_error FROM admmgt.scripts WHERE id = 2")
    assert row.fetchone() == (2, None)


def test_a_locked_history_on_the_template_leaves_every_script_ready(fleet: Fleet) -> None:
    _orders(fleet)
    s.script(fleet.admin, 2)
    s.table(fleet.admin, 2, "invoices", [s.ID])
    _settings(fleet.admin, wait_timeout_ms="1000")
    holder = _hold(
        fleet, fleet.template, "LOCK TABLE admmgt.script_history IN ACCESS EXCLUSIVE MODE"
    )
    try:
        pid = holder.info.backend_pid
        lines, elapsed = _apply(fleet)
    finally:
        _release(holder)
    assert elapsed < 30, f"reading the template's locked history waited {elapsed:.0f} s"
    failure = _line(lines, fleet.template)
    assert f"retryable: a lock held by pid {pid} " in failure
    status = fleet.admin.execute("SELECT status FROM admmgt.scripts WHERE id = 2").fetchone()
    assert status == (1,)
    fleet.apply()
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert history(conn) == [(1, "apply"), (2, "apply")]


def test_an_idle_write_transaction_bounds_a_concurrent_index_build(fleet: Fleet) -> None:
    table_id = _orders(fleet)
    s.script(fleet.admin, 2)
    fleet.admin.execute(
        'INSERT INTO admmgt.script_indexes (scriptid, tableid, columnnames, "concurrently",'
        " status) VALUES (2, %s, '{note}', 1, 1)",
        (table_id,),
    )
    _settings(fleet.admin, wait_timeout_ms="1000")
    victim, other = fleet.tenants
    holder = _hold(fleet, victim, "INSERT INTO mgttest.orders (note) VALUES ('open')")
    try:
        pid = holder.info.backend_pid
        lines, elapsed = _apply(fleet)
    finally:
        _release(holder)
    assert elapsed < 30, f"the concurrent build waited {elapsed:.0f} s for the idle transaction"
    failure = _line(lines, victim)
    assert "retryable: a lock held by pid " in failure and f"pid {pid} " in failure
    message, _statement, is_retryable = _logged(fleet, victim)
    assert "retryable" in message and is_retryable is True
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'mgttest.orders_note_idx'::regclass"
    with fleet.connect(victim) as conn:
        assert history(conn) == [(1, "apply"), (2, "partial")]
    with fleet.connect(other) as conn:
        assert history(conn) == [(1, "apply"), (2, "partial"), (2, "apply")]
    lines, _ = _apply(fleet, fails=False)  # after the release: resumes, completes the index
    assert not [line for line in lines if "FAILED" in line], lines
    with fleet.connect(victim) as conn:
        assert history(conn) == [(1, "apply"), (2, "partial"), (2, "apply")]
        assert conn.execute(valid).fetchone() == (True,)


def test_a_locked_history_table_bounds_its_tenant_and_the_others_apply(fleet: Fleet) -> None:
    _orders(fleet)
    s.script(fleet.admin, 2)
    s.table(fleet.admin, 2, "invoices", [s.ID])
    _settings(fleet.admin, wait_timeout_ms="1000")
    victim, other = fleet.tenants
    holder = _hold(fleet, victim, "LOCK TABLE admmgt.script_history IN ACCESS EXCLUSIVE MODE")
    try:
        pid = holder.info.backend_pid
        lines, elapsed = _apply(fleet)
    finally:
        _release(holder)
    assert elapsed < 30, f"reading the locked history waited {elapsed:.0f} s"
    failure = _line(lines, victim)
    assert "its history (admmgt.script_history) could not be read, retryable: " in failure
    assert (
        f'a lock held by pid {pid} (application "{HOLDER}", AccessExclusiveLock on '
        "admmgt.script_history)" in failure
    )
    message, statement, _ = _logged(fleet, victim)
    assert message.startswith(f'tenant "{victim}": its history') and statement is None
    assert registry(fleet.admin)[victim][1] == 1  # nothing learnt, nothing changed
    with fleet.connect(other) as conn:
        assert history(conn) == [(1, "apply"), (2, "apply")]
    lines, _ = _apply(fleet, fails=False)
    with fleet.connect(victim) as conn:
        assert history(conn) == [(1, "apply"), (2, "apply")]


def _run_in_thread(dsn: str) -> tuple[threading.Thread, list[str], list[BaseException]]:
    """applyScripts on its own connection in a thread: (thread, notices, errors)."""
    lines: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(dsn) as conn:
                notices = Notices(conn)
                # NOTICEs only: what a failure says is checked, not that it raises.
                conn.execute("CALL admmgt.applyscripts(t_raise => false)")
                lines.extend(notices.take())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, lines, errors


def _sessions(
    fleet: Fleet, where: str, args: tuple[Any, ...], terminate: bool = False, seconds: float = 60
) -> int:
    """How many sessions of pg_stat_activity match ``where``, as soon as there
    is one (0 after ``seconds``); with ``terminate``, they are ended."""
    what = "pg_terminate_backend(pid)" if terminate else "*"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = fleet.admin.execute(
            f"SELECT count({what}) FROM pg_stat_activity WHERE {where}", args
        ).fetchone()
        if row and row[0]:
            return int(row[0])
        time.sleep(0.05)
    return 0


def test_a_terminated_recording_session_reconnects_and_finishes_the_run(fleet: Fleet) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID])
    with fleet.connect(fleet.template) as conn:  # only the template's step sleeps
        conn.execute("CREATE TABLE public.slow_marker ()")
    s.step(
        fleet.admin,
        1,
        1,
        "SELECT pg_sleep(CASE WHEN to_regclass('public.slow_marker') IS NULL THEN 0 ELSE 2 END)",
    )
    worker, lines, errors = _run_in_thread(fleet.admin.info.dsn)
    # Once the template's step runs, the recorder's side session is idle: end it.
    sleeping = _sessions(
        fleet, "datname = %s AND query LIKE 'SELECT pg_sleep%%'", (fleet.template,)
    )
    killed = _sessions(
        fleet,
        "datname = current_database() AND application_name = 'admmgt'",
        (),
        terminate=True,
        seconds=1,
    )
    worker.join(120)
    assert sleeping == 1 and killed == 1
    assert errors == [], f"the CALL failed: {errors}"
    assert any("the session recording this run lost its connection" in line for line in lines)
    assert not [line for line in lines if "FAILED" in line], lines
    run = fleet.admin.execute(
        "SELECT finished_at IS NOT NULL, outcome FROM admmgt.runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert run == (True, "ok")
    logged = fleet.admin.execute(
        "SELECT count(DISTINCT dbname) FROM admmgt.run_log WHERE outcome = 'ok'"
    ).fetchone()
    assert logged == (3,)


def test_a_terminated_tenant_connection_is_named_and_retryable(fleet: Fleet) -> None:
    _orders(fleet)
    s.script(fleet.admin, 2)
    s.table(fleet.admin, 2, "invoices", [s.ID])
    _settings(fleet.admin, lock_timeout_ms="60000")
    victim, other = fleet.tenants
    # SHARE lets the history be read but holds the history row's INSERT, so the
    # connection is cut while admmgt runs its own statement, not a step.
    holder = _hold(fleet, victim, "LOCK TABLE admmgt.script_history IN SHARE MODE")
    try:
        worker, lines, errors = _run_in_thread(fleet.admin.info.dsn)
        killed = _sessions(
            fleet,
            "datname = %s AND application_name = 'admmgt' AND wait_event_type = 'Lock'"
            " AND query LIKE '%%INSERT INTO admmgt.script_history%%'",
            (victim,),
            terminate=True,
        )
        worker.join(120)
    finally:
        _release(holder)
    assert killed == 1 and errors == []
    failure = _line(lines, victim)
    # Which error libpq surfaces for a connection cut mid-query is a race:
    # the server's FATAL (57P01), or the broken connection itself (08xxx).
    # Either way no step is blamed: the server may have been past any of them.
    lost = (
        "its connection was terminated by the administrator (57P01",
        "its connection was lost (08",
    )
    assert any(words in failure for words in lost), failure
    assert "failed at its transaction, retryable" in failure, failure
    assert "retryable" in failure and "a plain re-run is the fix" in failure
    assert "history row" not in failure and "fix the tenant" not in failure
    message, statement, is_retryable = _logged(fleet, victim)
    assert any(words in message for words in lost) and is_retryable is True
    assert statement is None  # admmgt's own INSERT is not the failing statement
    with fleet.connect(other) as conn:
        assert history(conn) == [(1, "apply"), (2, "apply")]
    with fleet.connect(victim) as conn:
        assert history(conn) == [(1, "apply")]
    fleet.apply()  # a plain re-run
    with fleet.connect(victim) as conn:
        assert history(conn) == [(1, "apply"), (2, "apply")]
