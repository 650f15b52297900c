"""One remote transaction with lock_timeout, retried on lock timeouts and deadlocks.

Shared by the migration engine, applyMaintenance and lifecycleMgt: a job
fragment (see _remote.py) that runs ``body`` between BEGIN and COMMIT on one
connection. A lock timeout or a deadlock rolls the transaction back and runs
it again, up to ``settings.lock_retries`` times, with exponential backoff and
jitter; any other error, or the last retryable one, is raised as
:class:`TransactionFailed` after the rollback -- for a lock, with the sessions
that held locks in that database when admmgt gave up (_transient.py).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Generator
from typing import Any

from admmgt_plpy._remote import RemoteError, Run, Sleep
from admmgt_plpy._settings import Settings
from admmgt_plpy._transient import LOCK_STATES, connection_lost, find_blockers

RETRYABLE = LOCK_STATES  # lock_not_available, deadlock_detected


class TransactionFailed(Exception):
    """The transaction was rolled back for good: ``error`` after ``attempts`` tries.

    ``index``: for :func:`in_one_trip`, which of its ``statements`` failed
    (0-based; None: BEGIN, the settings or COMMIT).

    ``in_doubt``: the connection was lost while the COMMIT was under way, so
    the transaction may have committed (the server goes on with a COMMIT it
    received, e.g. when only the relay carrying it ended). Only the database
    can tell: the caller reads it again (_migration.settle)."""

    def __init__(
        self,
        error: RemoteError,
        attempts: int,
        blockers: list[dict[str, Any]] | None = None,
        index: int | None = None,
        in_doubt: bool = False,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts
        self.blockers = blockers or []  # rows of _transient.BLOCKERS, for a lock
        self.index = index
        self.in_doubt = in_doubt

    @property
    def locked(self) -> bool:
        return self.error.sqlstate in RETRYABLE


def _config(settings: Settings, utc: bool) -> str:
    """One statement, one text column: the transaction's lock_timeout (and TimeZone)."""
    config = f"SELECT set_config('lock_timeout', '{int(settings.lock_timeout_ms)}ms', true)"
    if utc:
        config += " || set_config('TimeZone', 'UTC', true)"
    return config


def in_one_trip(
    conn: str,
    settings: Settings,
    statements: list[str],
    *,
    commit: bool = True,
    utc: bool = False,
) -> Generator[Any, Any, None]:
    """Job fragment: BEGIN, the settings and ``statements`` sent as ONE query,
    then COMMIT as a second round trip, retried like :func:`in_transaction`.

    The server runs all of the first query whatever admmgt reads of it, so the
    COMMIT goes only once every result was read without error: a statement
    whose result admmgt could not read (e.g. a rowtype that does not match)
    rolls the transaction back like one the server rejected, and a run
    cancelled or killed before the COMMIT leaves the database as it was.
    ``commit=False`` ends the one query with ROLLBACK instead.

    Each of ``statements`` must be one statement whose result has at most one
    column. A failure raises :class:`TransactionFailed` whose ``index`` names
    the statement that failed (None for a lost connection). A failure of the
    query as a whole (a syntax error: the server parses it all before running
    any of it) is run again statement by statement, once, to name the
    statement.
    """
    delay = max(settings.retry_backoff_ms, 10) / 1000.0
    attempt = 0
    batch = ["BEGIN", _config(settings, utc), *statements]
    if not commit:
        batch.append("ROLLBACK")
    stepwise = False
    while True:
        attempt += 1
        committing = False
        try:
            if stepwise:
                for number, sql in enumerate(batch):
                    try:
                        yield Run(conn, sql)
                    except RemoteError as exc:
                        exc.index = number
                        raise
            else:
                # A line break before each ';': a step may end in a -- comment.
                yield Run(conn, "\n;\n".join(batch), statements=len(batch))
            if commit:
                committing = True
                yield Run(conn, "COMMIT")
            return
        except RemoteError as exc:
            if committing and connection_lost(exc.sqlstate):
                raise TransactionFailed(exc, attempt, in_doubt=True) from None
            with contextlib.suppress(RemoteError):  # if the connection is gone, so is the work
                yield Run(conn, "ROLLBACK")
            last = len(batch) - (0 if commit else 1)
            index = None
            # A lost connection names no statement: the server may have been
            # past the one whose result admmgt was reading when it ended.
            lost = connection_lost(exc.sqlstate)
            if exc.index is not None and 2 <= exc.index < last and not lost:
                index = exc.index - 2
            if exc.sqlstate in RETRYABLE and attempt <= settings.lock_retries:
                yield Sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
                continue
            if (
                index is None
                and exc.index is not None  # not the COMMIT
                and not stepwise
                and exc.sqlstate not in RETRYABLE
                and not lost
            ):
                stepwise = True  # once, to name the statement
                attempt -= 1
                continue
            blockers = []
            if exc.sqlstate in RETRYABLE:
                blockers = yield from find_blockers(conn)
            raise TransactionFailed(exc, attempt, blockers, index) from None


def in_transaction(
    conn: str,
    settings: Settings,
    body: Callable[[], Generator[Any, Any, Any]],
    *,
    commit: bool = True,
    utc: bool = False,
) -> Generator[Any, Any, Any]:
    """Job fragment: ``body()`` in one transaction; returns what ``body`` returns.

    ``commit=False`` rolls back at the end instead (a dry run changes nothing);
    ``utc`` sets TimeZone to UTC for the transaction.
    """
    delay = max(settings.retry_backoff_ms, 10) / 1000.0
    attempt = 0
    config = _config(settings, utc)
    columns = "a text"
    while True:
        attempt += 1
        committing = False
        try:
            yield Run(conn, "BEGIN")
            yield Run(conn, config, columns)
            result = yield from body()
            committing = commit
            yield Run(conn, "COMMIT" if commit else "ROLLBACK")
            return result
        except RemoteError as exc:
            if committing and connection_lost(exc.sqlstate):
                raise TransactionFailed(exc, attempt, in_doubt=True) from None
            with contextlib.suppress(RemoteError):  # if the connection is gone, so is the work
                yield Run(conn, "ROLLBACK")
            if exc.sqlstate in RETRYABLE and attempt <= settings.lock_retries:
                yield Sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
                continue
            blockers = []
            if exc.sqlstate in RETRYABLE:
                blockers = yield from find_blockers(conn)
            raise TransactionFailed(exc, attempt, blockers) from None
