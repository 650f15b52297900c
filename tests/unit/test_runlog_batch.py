"""The run's per-database records are committed in batches (issue 14)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from admmgt_plpy import _runlog
from admmgt_plpy._remote import Outcome
from admmgt_plpy._runlog import RunRecorder


class FakePlpy:
    def __init__(self) -> None:
        self.log: list[str] | None = None  # shared with FakeDblink: what happened, in order

    def execute(self, sql: str) -> list[dict[str, Any]]:
        return [{"u": "me", "wrote": False, "pid": 1, "since": "2026-01-01"}]

    def quote_nullable(self, value: str | None) -> str:
        return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

    def notice(self, text: str) -> None:
        if self.log is not None:
            self.log.append("NOTICE " + text)


class FakeDblink:
    def __init__(self) -> None:
        self.queries: list[str] = []
        self.log: list[str] = []

    def connect(self, conninfo: str) -> str:
        return "side"

    def disconnect(self, name: str) -> None:
        pass

    def query(self, name: str, sql: str, columns: str = "status text") -> list[dict[str, Any]]:
        self.queries.append(sql)
        self.log.append("COMMIT " + sql)
        return [{"id": 9, "status": "x"}]


class FakeClusters:
    def admin_conninfo(self) -> str:
        return "dbname=admin"


def recorder() -> tuple[RunRecorder, FakeDblink]:
    dblink = FakeDblink()
    plpy = FakePlpy()
    rec = RunRecorder(plpy, dblink, FakeClusters(), "applyScripts", {})  # type: ignore[arg-type]
    dblink.queries.clear()  # the interrupted-runs check and the runs row
    dblink.log.clear()
    plpy.log = dblink.log
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
        rec.end_record()
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
    rec.end_record()
    assert dblink.queries == []
    clock[0] += _runlog.FLUSH_SECONDS / 2
    rec.target("db2", "local", Outcome("ok"), 1.0)
    rec.end_record()
    assert dblink.queries == []
    clock[0] += _runlog.FLUSH_SECONDS
    rec.target("db3", "local", Outcome("ok"), 1.0)
    rec.end_record()
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


def test_a_database_s_run_log_and_script_log_are_never_split_across_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, dblink = recorder()
    clock = [100.0]
    monkeypatch.setattr("admmgt_plpy._runlog.time.monotonic", lambda: clock[0])
    rec.target("db0", "local", Outcome("ok"), 1.0)
    clock[0] += _runlog.FLUSH_SECONDS * 2  # the batch is due ...
    rec.target("db1", "local", Outcome("ok"), 1.0)
    rec.script_log("db1", [(2, "ALTER TABLE t ADD c int")])
    assert dblink.queries == []  # ... but db1's records are not complete yet
    rec.say(Outcome("ok"), "db1: script 2 applied")
    assert len(dblink.queries) == 1
    assert "'db1'" in dblink.queries[0] and "script_log" in dblink.queries[0]


def test_a_notice_is_sent_only_after_the_records_it_reports_are_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, dblink = recorder()
    clock = [100.0]
    monkeypatch.setattr("admmgt_plpy._runlog.time.monotonic", lambda: clock[0])
    rec.target("db1", "local", Outcome("ok"), 1.0)
    rec.script_log("db1", [(2, "ALTER TABLE t ADD c int")])
    rec.say(Outcome("ok"), "db1: script 2 applied")
    assert dblink.log == []  # not due: neither written nor said
    clock[0] += _runlog.FLUSH_SECONDS * 2
    rec.target("db2", "local", Outcome("ok"), 1.0)
    rec.say(Outcome("ok"), "db2: script 2 applied")
    assert [entry.split(" ")[0] for entry in dblink.log] == ["COMMIT", "NOTICE", "NOTICE"]
    assert "'db1'" in dblink.log[0] and "'db2'" in dblink.log[0]
    assert dblink.log[1:] == ["NOTICE db1: script 2 applied", "NOTICE db2: script 2 applied"]


def test_the_run_s_end_and_another_statement_send_the_notices_after_their_commit() -> None:
    rec, dblink = recorder()
    rec.target("db1", "local", Outcome("ok"), 1.0)
    rec.say(Outcome("ok"), "db1: done")
    rec.execute("UPDATE admmgt.scripts SET status = 2 WHERE id = 2")
    assert [entry.split(" ")[0] for entry in dblink.log] == ["COMMIT", "NOTICE", "COMMIT"]
    rec.target("db2", "local", Outcome("ok"), 1.0)
    rec.notice("wave 2 done")
    rec.finish()
    assert dblink.log[-1] == "NOTICE wave 2 done" and "'db2'" in dblink.log[-2]
    assert "UPDATE admmgt.runs SET finished_at" in dblink.log[-2]


def test_with_no_record_waiting_a_notice_goes_at_once() -> None:
    rec, dblink = recorder()
    rec.say(Outcome("unreachable"), "ignored")
    rec.notice("cluster c is back")
    assert dblink.log == ["NOTICE cluster c is back"]


def test_a_record_s_start_keeps_microseconds() -> None:
    """started_at is finished_at minus the elapsed time: rounded to the
    millisecond, one database's start could fall before the previous one's end
    in a wave that runs one at a time."""
    rec, dblink = recorder()
    rec.target("db0", "local", Outcome("ok"), 1.2345678)
    rec.finish()
    assert "make_interval(secs => 0.001235)" in dblink.queries[0]
