"""The run's per-database records are committed in batches (issue 14)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from admmgt_plpy import _runlog
from admmgt_plpy._remote import Outcome
from admmgt_plpy._runlog import RunRecorder


class FakePlpy:
    def execute(self, sql: str) -> list[dict[str, Any]]:
        return [{"u": "me", "wrote": False, "pid": 1, "since": "2026-01-01"}]

    def quote_nullable(self, value: str | None) -> str:
        return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

    def notice(self, text: str) -> None:
        pass


class FakeDblink:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def connect(self, conninfo: str) -> str:
        return "side"

    def disconnect(self, name: str) -> None:
        pass

    def query(self, name: str, sql: str, columns: str = "status text") -> list[dict[str, Any]]:
        self.queries.append(sql)
        return [{"id": 9, "status": "x"}]


class FakeClusters:
    def admin_conninfo(self) -> str:
        return "dbname=admin"


def recorder() -> tuple[RunRecorder, FakeDblink]:
    dblink = FakeDblink()
    rec = RunRecorder(FakePlpy(), dblink, FakeClusters(), "applyScripts", {})  # type: ignore[arg-type]
    dblink.queries.clear()  # the interrupted-runs check and the runs row
    return rec, dblink


def test_records_wait_for_the_batch_and_go_with_the_run_s_end() -> None:
    rec, dblink = recorder()
    for n in range(3):
        registry = f"UPDATE admmgt.vendor_db_settings SET modifiedon = now() WHERE id = {n}"
        rec.target(f"db{n}", "local", Outcome("ok"), 5.0, registry=registry)
        rec.script_log(f"db{n}", [(2, "ALTER TABLE t ADD c int")])
    assert dblink.queries == []
    rec.finish()
    assert len(dblink.queries) == 1
    batch = dblink.queries[0]
    assert batch.count("INSERT INTO admmgt.run_log") == 3
    assert batch.count("INSERT INTO admmgt.script_log") == 3
    assert batch.count("UPDATE admmgt.vendor_db_settings") == 3
    assert batch.rstrip().split(";\n")[-1].startswith("UPDATE admmgt.runs SET finished_at")


def test_a_full_batch_is_written_at_once_with_each_run_log_row_s_registry_update() -> None:
    rec, dblink = recorder()
    for n in range(_runlog.FLUSH_ROWS):
        registry = f"UPDATE admmgt.vendor_db_settings SET modifiedon = now() WHERE id = {n}"
        rec.target(f"db{n}", "local", Outcome("noop"), 1.0, registry=registry)
    assert len(dblink.queries) == 1
    assert dblink.queries[0].count("INSERT INTO admmgt.run_log") == _runlog.FLUSH_ROWS
    # fleet_status trusts a run_log row no older than its registry row: one commit.
    assert dblink.queries[0].count("UPDATE admmgt.vendor_db_settings") == _runlog.FLUSH_ROWS


def test_a_batch_is_written_when_its_first_record_has_waited_long_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, dblink = recorder()
    clock = [100.0]
    monkeypatch.setattr("admmgt_plpy._runlog.time.monotonic", lambda: clock[0])
    rec.target("db1", "local", Outcome("ok"), 1.0)
    assert dblink.queries == []
    clock[0] += _runlog.FLUSH_SECONDS / 2
    rec.target("db2", "local", Outcome("ok"), 1.0)
    assert dblink.queries == []
    clock[0] += _runlog.FLUSH_SECONDS
    rec.target("db3", "local", Outcome("ok"), 1.0)
    assert len(dblink.queries) == 1 and dblink.queries[0].count("run_log") == 3


def test_another_statement_goes_after_the_waiting_records() -> None:
    rec, dblink = recorder()
    rec.target("db1", "local", Outcome("ok"), 1.0)
    rec.execute("UPDATE admmgt.scripts SET status = 2 WHERE id = 2")
    assert len(dblink.queries) == 2
    assert "run_log" in dblink.queries[0] and dblink.queries[1].startswith("UPDATE admmgt.scripts")


def test_a_record_keeps_the_time_it_was_made_not_the_time_it_was_written() -> None:
    rec, dblink = recorder()
    registry = "UPDATE admmgt.vendor_db_settings SET modifiedon = now() WHERE id = 1"
    rec.target("db1", "local", Outcome("ok"), 1.0, registry=registry)
    rec.flush()
    times = re.findall(r"to_timestamp\([0-9.]+\)", dblink.queries[0])
    # run_log's started_at (minus the duration) and finished_at, the registry's modifiedon
    assert len(times) == 3 and len(set(times)) == 1
    assert "now()" not in dblink.queries[0] and "clock_timestamp()" not in dblink.queries[0]
