"""Pure parts of the retryable-failure words (issue 21, issue 13's lock holder)."""

from __future__ import annotations

from admmgt_plpy._remote import RemoteError
from admmgt_plpy._transient import (
    connection_cause,
    describe_blockers,
    lock_timeout_words,
    retryable,
)


def _lock(pid: int, relation: str, mode: str = "AccessShareLock") -> dict[str, object]:
    return {
        "pid": pid,
        "app": "psql",
        "mode": mode,
        "relation": relation,
        "plain": relation.replace('"', ""),
    }


def test_locks_and_lost_connections_are_retryable_and_script_errors_are_not() -> None:
    for sqlstate in ("55P03", "40P01", "57P01", "57P02", "57P03", "08006", "08001"):
        assert retryable(sqlstate), sqlstate
    for other in ("42P07", "23505", "XX000", "", None):
        assert not retryable(other), other


def test_a_terminated_connection_is_named_for_what_happened() -> None:
    terminated = RemoteError("57P01", "terminating connection due to administrator command")
    assert connection_cause(terminated).startswith(
        "its connection was terminated by the administrator (57P01 terminating"
    )
    restarted = RemoteError("57P02", "terminating connection because of crash of another")
    assert connection_cause(restarted).startswith("the server restarted")
    lost = RemoteError("08006", "could not send the statement: the connection is lost")
    assert connection_cause(lost).startswith("its connection was lost (08006")


def test_the_lock_on_the_failed_statements_relation_is_named_first() -> None:
    rows = [
        _lock(11, "app.other", "AccessExclusiveLock"),
        _lock(22, '"App".accounts'),
    ]
    named = describe_blockers(rows, "App.accounts")
    assert named == 'a lock held by pid 22 (application "psql", AccessShareLock on "App".accounts)'
    assert "pid 11 " in describe_blockers(rows, None)  # unknown relation: the strongest first
    assert "gone by the time admmgt looked" in describe_blockers([], "app.accounts")


def test_a_lock_wait_that_ran_out_is_worded_once_for_every_operation() -> None:
    error = RemoteError("55P03", "canceling statement due to lock timeout")
    assert lock_timeout_words(error, 3) == (
        "could not get a lock within lock_timeout after 3 tries "
        "(55P03 canceling statement due to lock timeout)"
    )
    assert "tries" not in lock_timeout_words(error, 1)
