"""The one reader of a database's history (_history.read_state), driven by hand:
one query; a database without the table has no history; any other error is
the caller's. And what a state says: the scripts a database has, its version."""

from __future__ import annotations

from typing import Any

import pytest

from admmgt_plpy import _history
from admmgt_plpy._migration import Migrated, carrying, migrated
from admmgt_plpy._remote import Outcome, RemoteError, Run

ROWS = [
    {"script_id": 1, "action": "baseline", "checksum": None},
    {"script_id": 2, "action": "apply", "checksum": "a"},
    {"script_id": 3, "action": "partial", "checksum": "b"},
]


def finish(job: Any, value: Any = None, error: Exception | None = None) -> Any:
    with pytest.raises(StopIteration) as stop:
        if error is not None:
            job.throw(error)
        job.send(value)
    return stop.value.value


def test_the_history_is_read_in_one_query() -> None:
    job = _history.read_state("c1")
    op = job.send(None)
    assert isinstance(op, Run) and op.conn == "c1" and op.sql == _history.STATE
    assert finish(job, ROWS) == (True, {1: "baseline", 2: "apply", 3: "partial"})


def test_a_database_without_the_table_has_no_history() -> None:
    job = _history.read_state("c1")
    job.send(None)
    missing = RemoteError("42P01", 'relation "admmgt.script_history" does not exist')
    assert finish(job, error=missing) == (False, {})


def test_any_other_error_reading_the_history_is_the_callers() -> None:
    job = _history.read_state("c1")
    job.send(None)
    with pytest.raises(RemoteError, match="lock timeout"):
        job.throw(RemoteError("55P03", "lock timeout"))


class FakeDblink:
    def __init__(self, error: RemoteError | None = None) -> None:
        self.error = error
        self.sent: list[str] = []

    def query(self, conn: str, sql: str, columns: str = "") -> list[dict[str, Any]]:
        self.sent.append(sql)
        if self.error is not None:
            raise self.error
        return ROWS


def test_the_plain_connection_reader_reads_the_same_way() -> None:
    dblink = FakeDblink()
    assert _history.read_state_now(dblink, "c1") == (  # type: ignore[arg-type]
        True,
        {1: "baseline", 2: "apply", 3: "partial"},
    )
    assert dblink.sent == [_history.STATE]
    missing = FakeDblink(RemoteError("42P01", "no table"))
    assert _history.read_state_now(missing, "c1") == (False, {})  # type: ignore[arg-type]
    with pytest.raises(RemoteError):
        _history.read_state_now(FakeDblink(RemoteError("08006", "gone")), "c1")  # type: ignore[arg-type]


def test_a_partial_script_is_not_had_and_the_version_is_the_highest_had() -> None:
    state = {3: "partial", 1: "baseline", 2: "apply"}
    assert _history.have(state) == [1, 2]
    assert _history.version_of(state) == 2
    assert _history.version_of({4: "partial"}) is None


def test_an_outcome_carries_its_migration_result_or_an_empty_one() -> None:
    assert migrated(Outcome("unreachable")) == Migrated()
    result = Migrated((1, 2), ((2, "SELECT 1"),))
    outcome = carrying(Outcome("ok"), result)
    assert migrated(outcome) is result and migrated(outcome).have == (1, 2)
