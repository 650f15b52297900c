"""One round trip per tenant transaction (issue 14), driven by hand: what the
job yields, and how a failing statement of the batch names its step."""

from __future__ import annotations

from typing import Any

import pytest

from admmgt_plpy._compile import CompiledScript, Step
from admmgt_plpy._migration import StepFailed, _transactional_part
from admmgt_plpy._remote import RemoteError, Run, Sleep
from admmgt_plpy._scripts import Script
from admmgt_plpy._sync import SyncPlan
from admmgt_plpy._transaction import TransactionFailed, in_one_trip
from tests.unit.fakes import settings

SETTINGS = settings()

STEPS = (
    Step("CREATE TABLE app.t (id int)", True, "create_table", "app.t"),
    Step("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON app.t (id)", False, "create_index", "app.t"),
    Step("ALTER TABLE app.t ADD COLUMN c int", True, "add_column", "app.t"),
)


def script(steps: tuple[Step, ...] = STEPS) -> Script:
    return Script(7, "t", 1, CompiledScript(7, steps, "sum", ()), "meta", None)


def test_the_transaction_is_one_query_with_every_transactional_step_then_its_commit() -> None:
    job = _transactional_part("c1", script(), SETTINGS, 42, SyncPlan("app"), has_table=True)
    op = job.send(None)
    assert isinstance(op, Run) and op.conn == "c1"
    parts = op.sql.split("\n;\n")
    assert op.statements == len(parts) == 5
    assert parts[0] == "BEGIN" and "lock_timeout" in parts[1] and "TimeZone" in parts[1]
    assert parts[2:4] == [STEPS[0].sql, STEPS[2].sql]  # not the CONCURRENTLY one
    assert parts[4].startswith("INSERT INTO admmgt.script_history") and "'partial'" in parts[4]
    assert "COMMIT" not in parts
    # The COMMIT is a second round trip, sent only once every result was read.
    assert job.send([{"status": "INSERT 0 1"}]) == Run("c1", "COMMIT")
    with pytest.raises(StopIteration):
        job.send([{"status": "COMMIT"}])


def test_a_result_admmgt_could_not_read_rolls_back_instead_of_committing() -> None:
    # 42804: the server ran the statement (and the rest of the query), but its
    # result did not match what admmgt reads: nothing may be committed.
    job = in_one_trip("c1", SETTINGS, ["SELECT * FROM t", "INSERT INTO h VALUES (1)"])
    job.send(None)
    mismatch = RemoteError("42804", "remote query result rowtype does not match", index=2)
    assert job.throw(mismatch) == Run("c1", "ROLLBACK")
    with pytest.raises(TransactionFailed) as failed:
        job.send([])
    assert failed.value.index == 0 and failed.value.error.sqlstate == "42804"


def test_a_dry_run_rolls_back_in_the_same_query() -> None:
    job = in_one_trip("c1", SETTINGS, ["SELECT 1"], commit=False)
    op = job.send(None)
    assert op.sql.split("\n;\n")[-1] == "ROLLBACK" and op.statements == 4
    with pytest.raises(StopIteration):
        job.send([])


def test_a_failing_commit_is_the_transaction_s_own() -> None:
    job = in_one_trip("c1", SETTINGS, ["SELECT 1"])
    job.send(None)
    assert job.send([]) == Run("c1", "COMMIT")
    assert job.throw(RemoteError("40001", "could not serialize")) == Run("c1", "ROLLBACK")
    with pytest.raises(TransactionFailed) as failed:
        job.send([])
    assert failed.value.index is None and failed.value.attempts == 1


def test_a_query_rejected_as_a_whole_is_run_again_step_by_step_to_name_the_step() -> None:
    job = in_one_trip("c1", SETTINGS, ["SELECT 1", "SELEC 2", "SELECT 3"])
    job.send(None)
    # A syntax error: the server parsed the whole query first; result 0 has it.
    syntax = RemoteError("42601", 'syntax error at or near "SELEC"', index=0)
    assert job.throw(syntax) == Run("c1", "ROLLBACK")
    assert job.send([]) == Run("c1", "BEGIN")
    assert isinstance(job.send([]), Run)  # the settings
    assert job.send([]) == Run("c1", "SELECT 1")
    assert job.send([]) == Run("c1", "SELEC 2")
    assert job.throw(RemoteError("42601", 'syntax error at or near "SELEC"')) == Run(
        "c1", "ROLLBACK"
    )
    with pytest.raises(TransactionFailed) as failed:
        job.send([])
    assert failed.value.index == 1 and failed.value.attempts == 1


def test_a_lost_connection_is_not_run_again_step_by_step() -> None:
    job = in_one_trip("c1", SETTINGS, ["SELECT 1"])
    job.send(None)
    assert job.throw(RemoteError("08006", "server closed the connection", index=0)) == Run(
        "c1", "ROLLBACK"
    )
    with pytest.raises(TransactionFailed) as failed:
        job.send([])
    assert failed.value.index is None


def test_a_database_without_history_table_gets_it_in_the_same_query() -> None:
    job = _transactional_part("c1", script(), SETTINGS, 42, SyncPlan("app"), has_table=False)
    op = job.send(None)
    parts = op.sql.split("\n;\n")
    assert "CREATE TABLE IF NOT EXISTS admmgt.script_history" in parts[4]
    assert parts[5].startswith("INSERT INTO admmgt.script_history")


def test_the_failing_statement_names_its_step() -> None:
    job = _transactional_part("c1", script(), SETTINGS, 42, SyncPlan("app"), has_table=True)
    job.send(None)
    # Statement 3 of the query (0-based) is the second transactional step: step 3.
    rollback = job.throw(RemoteError("42701", 'column "c" already exists', index=3))
    assert rollback == Run("c1", "ROLLBACK")
    with pytest.raises(StepFailed) as failed:
        job.send([])
    assert failed.value.number == 3 and failed.value.step is STEPS[2]
    assert failed.value.error.sqlstate == "42701" and failed.value.attempts == 1


def test_a_failing_history_row_or_commit_is_the_transaction_s_own() -> None:
    job = _transactional_part("c1", script(), SETTINGS, 42, SyncPlan("app"), has_table=True)
    job.send(None)
    job.throw(RemoteError("23505", "duplicate key", index=4))  # the history row
    with pytest.raises(StepFailed) as failed:
        job.send([])
    assert failed.value.number == 0 and failed.value.step is None


def test_a_lock_timeout_retries_the_whole_query_then_gives_up() -> None:
    job = in_one_trip("c1", SETTINGS, ["SELECT 1"])
    first = job.send(None)
    ops: list[Any] = []
    for _ in range(SETTINGS.lock_retries):
        assert job.throw(RemoteError("55P03", "lock timeout", index=2)) == Run("c1", "ROLLBACK")
        ops.append(job.send([]))  # the backoff
        ops.append(job.send(None))  # the query again
    assert all(isinstance(op, Sleep) for op in ops[::2]) and ops[1::2] == [first] * 2
    assert job.throw(RemoteError("55P03", "lock timeout", index=2)) == Run("c1", "ROLLBACK")
    blockers = job.send([])  # then who held the lock
    assert isinstance(blockers, Run) and blockers.conn == "c1"
    with pytest.raises(TransactionFailed) as failed:
        job.send([])
    assert failed.value.attempts == 3 and failed.value.index == 0 and failed.value.locked


def test_routines_to_follow_or_a_step_of_several_statements_go_step_by_step() -> None:
    sync = SyncPlan("app", logged={(7, True): {"function": ["f"]}})  # type: ignore[list-item]
    job = _transactional_part("c1", script(), SETTINGS, 42, sync, has_table=True)
    op = job.send(None)
    assert op == Run("c1", "BEGIN")
    two = (Step("CREATE TABLE a (i int); CREATE TABLE b (i int)", True, "sql", "row 1"),)
    job = _transactional_part("c1", script(two), SETTINGS, 42, SyncPlan("app"), has_table=True)
    assert job.send(None) == Run("c1", "BEGIN")
