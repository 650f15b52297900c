"""The fleet-run frame (pure): labels, counts, registry writes and how a run ends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import pytest

from admmgt_plpy import _fleetrun
from admmgt_plpy._errors import RunFailed
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._fleetrun import FleetRun, progress_label
from admmgt_plpy._registry import Tenant
from admmgt_plpy._remote import Job, Outcome, Sleep
from tests.unit.fakes import NoticePlpy, settings

SETTINGS = settings(
    max_parallel=7,
    lock_timeout_ms=1,
    wait_timeout_ms=1,
    lock_retries=0,
    retry_backoff_ms=0,
    failure_limit=3,
    template_busy_timeout_s=0,
)


class FakeRecorder:
    operation = "applyMaintenance"
    run_id = 11

    def __init__(self) -> None:
        self.targets: list[tuple[str, str, str, str | None]] = []
        self.said: list[str] = []
        self.finished: list[tuple[Any, Any]] = []
        self.counts: dict[str, int] = {}
        self.refusals: list[str] = []
        self.failed_databases: list[str] = []
        self.outcome: str | None = None

    def target(self, db: str, cluster: str, outcome: Outcome, ms: float, *, registry: Any) -> None:
        self.targets.append((db, cluster, outcome.outcome, registry))
        self.counts[outcome.outcome] = self.counts.get(outcome.outcome, 0) + 1
        if outcome.outcome == "failed":
            self.failed_databases.append(db)

    def say(self, outcome: Outcome, line: str) -> None:
        self.said.append(line)

    def finish(self, words: Any = None, counted: Any = None) -> str:
        self.finished.append((words, counted))
        self.outcome = "failed" if self.counts.get("failed") else "ok"
        return "applyMaintenance: 1 ok in 0.1 s (run 11)"


class FakeFanout(Fanout):
    """Fanout's constructors (over_fleet included), recording what they were
    given, and a run that drives each job to its end without a database."""

    made: ClassVar[list[tuple[int, int, bool]]] = []

    def __init__(
        self,
        dblink: Any,
        parallel: int,
        limit: int,
        on_done: Any,
        clusters: Any,
        relays: bool = False,
    ) -> None:
        FakeFanout.made.append((parallel, limit, relays))
        self.on_done = on_done

    def run(self, targets: Iterable[Any], job: Any) -> None:
        for t in targets:
            steps = job(t)
            next(steps)
            with pytest.raises(StopIteration) as done:
                steps.send(None)
            self.on_done(t, done.value.value, 5.0)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> FleetRun:
    monkeypatch.setattr(_fleetrun, "Fanout", FakeFanout)
    FakeFanout.made = []
    r = FleetRun(NoticePlpy(), "applyMaintenance", SETTINGS)  # type: ignore[arg-type]
    r._dblink = object()  # type: ignore[assignment]
    r._clusters = object()  # type: ignore[assignment]
    r._recorder = FakeRecorder()  # type: ignore[assignment]
    return r


def outcome_of(t: Tenant) -> Job:
    """A job: one request to the fan-out, then its outcome (id 3 fails)."""
    yield Sleep(0.0)
    return Outcome("failed", f"{t.database} broke") if t.id == 3 else Outcome("ok")


def test_progress_labels() -> None:
    assert progress_label("db", 2, 5, template=False) == "[2/5] db"
    assert progress_label("tpl@eu2", 0, 1, template=True) == "template tpl@eu2"


def test_waves_label_count_and_keep_a_failed_databases_error(run: FleetRun) -> None:
    recorder: FakeRecorder = run.recorder  # type: ignore[assignment]
    tenants = [Tenant(2, "A", "local"), Tenant(3, "b", "eu2")]
    run.wave([Tenant(1, "tpl", "local")], outcome_of, lambda o, ms: o.outcome, templates=True)
    run.wave(tenants, outcome_of, lambda o, ms: f"{o.outcome} in {ms:.0f} ms")
    assert recorder.said == [
        "template tpl: ok",
        "[1/2] a: ok in 5 ms",
        "[2/2] b@eu2: failed in 5 ms",
    ]
    # Templates one at a time without a failure limit or relays; tenants as the
    # settings say.
    assert FakeFanout.made == [(1, 0, False), (7, 3, True)]
    registry = {db: sql for db, _c, _o, sql in recorder.targets}
    assert registry["tpl"] is None and registry["a"] is None
    assert registry["b"] == (
        "UPDATE admmgt.vendor_db_settings SET last_error = 'b broke', last_error_at = now()"
        " WHERE id = 3"
    )


def test_a_wave_takes_its_own_registry_write(run: FleetRun) -> None:
    recorder: FakeRecorder = run.recorder  # type: ignore[assignment]
    run.wave([Tenant(2, "a", "local")], outcome_of, lambda o, ms: "", registry=lambda t, o: "X")
    assert recorder.targets == [("a", "local", "ok", "X")]


def test_end_says_the_summary_and_raises_only_when_asked(run: FleetRun) -> None:
    plpy: NoticePlpy = run.plpy  # type: ignore[assignment]
    run.words, run.counted = {"ok": "done"}, "the template included"
    run.wave([Tenant(3, "b", "local")], outcome_of, lambda o, ms: "")
    with pytest.raises(RunFailed) as failed:
        run.end("; 0 partitions", raise_failure=True, name="applyMaintenance (x)")
    assert plpy.notices == ["applyMaintenance (x): 1 ok in 0.1 s (run 11); 0 partitions"]
    assert failed.value.sqlstate == "ZA001" and "1 database(s) failed (b);" in failed.value.message
    recorder: FakeRecorder = run.recorder  # type: ignore[assignment]
    assert recorder.finished == [({"ok": "done"}, "the template included")]


def test_a_run_is_finished_once_also_when_its_body_raises(run: FleetRun) -> None:
    recorder: FakeRecorder = run.recorder  # type: ignore[assignment]
    run._close()
    run._close()
    assert len(recorder.finished) == 1
    unstarted = FleetRun(NoticePlpy(), "x", SETTINGS)  # type: ignore[arg-type]
    unstarted._close()  # nothing was recorded: nothing to finish
    with pytest.raises(RuntimeError):
        unstarted.recorder  # noqa: B018
