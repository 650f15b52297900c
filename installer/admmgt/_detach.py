"""Runs that outlive their client: `admmgt apply|rollback|replay --detach` and
`admmgt log --follow` (docs/operations.md, "Runs that outlive the client").

Why it works: a backend learns that its client is gone only when it writes to
it. An admmgt run writes a NOTICE per database, and the first one sent to a
vanished client ends the backend with FATAL half-way through the fleet. A
detached run is an ordinary CALL on its own connection with
``client_min_messages = error``: it sends nothing until its very end, so it
runs to completion whatever happens to the client (the ERROR or the command
tag it sends then is lost, harmlessly: every outcome was committed already).
Progress is read from the run log by any other session (`admmgt log
--follow`).

Chosen over pg_cron (may be missing, runs as its own schedule's user, and a
one-shot job needs cleaning up) and over a dblink session opened by the
server (it dies with the backend that owns it). What it does not survive: a
server restart, or ``client_connection_check_interval`` set on the server;
the run is then marked interrupted and the same command resumes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq, sql

POLL_S = 0.5


class DetachError(Exception):
    """The run ended before it recorded itself (e.g. refused, or busy), or has
    not recorded itself yet; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def start(
    dsn: str, procedure: str, args: tuple[Any, ...], timeout_s: float = 60.0
) -> tuple[int, int]:
    """Start ``CALL admmgt.<procedure>(args)`` on a connection of its own and
    return (run id, backend pid) once the run is recorded; the connection is
    then left to finish the run without us."""
    conn = psycopg.connect(dsn, autocommit=True, application_name=f"admmgt detached {procedure}")
    conn.execute("SET client_min_messages = error")
    pid = conn.info.backend_pid
    call = sql.SQL("CALL admmgt.{}({})").format(
        sql.Identifier(procedure), sql.SQL(", ").join(sql.Literal(a) for a in args)
    )
    pgconn = conn.pgconn
    pgconn.send_query(call.as_bytes(conn))
    while pgconn.flush():
        time.sleep(0.01)
    with psycopg.connect(dsn, autocommit=True, application_name="admmgt") as watcher:
        deadline = time.monotonic() + timeout_s
        while True:
            row = watcher.execute(
                "SELECT id FROM admmgt.runs WHERE pid = %s AND outcome IS NULL"
                " ORDER BY id DESC LIMIT 1",
                (pid,),
            ).fetchone()
            if row:
                break
            pgconn.consume_input()
            if not pgconn.is_busy():  # it ended before it recorded a run
                message = _result_error(pgconn)
                conn.close()
                raise DetachError(message or f"{procedure} ended at once without a run")
            if time.monotonic() > deadline:
                # Leave the CALL running, as a detached run would be: it may
                # be waiting for a lock and record its run later.
                conn.pgconn.finish()
                raise DetachError(
                    f"{procedure} has not recorded a run within {timeout_s:.0f} s; its backend "
                    f"(pid {pid}) is still working or waiting, and goes on without this command",
                    hint=f"see what it waits for: SELECT wait_event_type, wait_event, state FROM "
                    f"pg_stat_activity WHERE pid = {pid}; watch it: admmgt log --follow; stop "
                    f"it: SELECT pg_cancel_backend({pid});",
                )
            time.sleep(0.1)
    # Terminate is read by the backend only once the CALL is over; closing the
    # socket without it is just as harmless.
    conn.pgconn.finish()
    return int(row[0]), pid


def _result_error(pgconn: pq.abc.PGconn) -> str:
    messages = []
    while (result := pgconn.get_result()) is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            messages.append((result.error_message or b"").decode(errors="replace").strip())
    return "\n".join(messages)


def follow(
    conn: psycopg.Connection[Any],
    run_id: int | None,
    show: Callable[[dict[str, Any]], None],
    poll_s: float = POLL_S,
    timeout_s: float | None = None,
) -> str:
    """Call ``show`` for each run_history row of the run (default: the newest)
    as it is recorded, until the run ends or is interrupted; return its outcome."""
    if run_id is None:
        row = conn.execute("SELECT max(id) FROM admmgt.runs").fetchone()
        if not row or row[0] is None:
            return "none"
        run_id = int(row[0])
    seen = 0
    started = time.monotonic()
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        while True:
            outcome = cur.execute(
                "SELECT run_outcome FROM admmgt.run_history WHERE run_id = %s LIMIT 1", (run_id,)
            ).fetchone()
            rows = cur.execute(
                "SELECT * FROM admmgt.run_history WHERE run_id = %s AND dbname IS NOT NULL"
                " ORDER BY finished_at, started_at OFFSET %s",
                (run_id, seen),
            ).fetchall()
            for r in rows:
                show(r)
            seen += len(rows)
            if outcome is None:
                return "none"
            if outcome["run_outcome"] is not None:
                return str(outcome["run_outcome"])
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                return "running"
            time.sleep(poll_s)
