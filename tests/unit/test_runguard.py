"""How a run ends (pure): one ERROR after the summary, only when something failed."""

from __future__ import annotations

from typing import Any

import pytest

from admmgt_plpy._errors import RunFailed
from admmgt_plpy._runguard import end_run
from tests.unit.fakes import NoticePlpy


class FakeRecorder:
    operation = "applyScripts"
    run_id = 7

    def __init__(
        self,
        counts: dict[str, int],
        refusals: list[str] | None = None,
        failed_databases: list[str] | None = None,
    ) -> None:
        self.counts = counts
        self.refusals = refusals or []
        self.failed_databases = failed_databases or []
        self.outcome: str | None = None
        self.finished = 0

    def finish(self, words: Any = None, counted: str | None = None) -> str:
        self.finished += 1
        self.outcome = "failed" if self.counts.get("failed") else "ok"
        return "applyScripts: summary"


def test_a_clean_run_says_its_summary_and_raises_nothing() -> None:
    plpy, recorder = NoticePlpy(), FakeRecorder({"ok": 3})
    end_run(plpy, recorder)
    assert plpy.notices == ["applyScripts: summary"] and recorder.finished == 1


def test_a_failed_run_is_closed_and_said_before_it_raises_za001() -> None:
    plpy = NoticePlpy()
    recorder = FakeRecorder(
        {"ok": 2, "failed": 2}, ["script 4: validation on the template failed"], ["acme"]
    )
    with pytest.raises(RunFailed) as failed:
        end_run(plpy, recorder)
    assert recorder.finished == 1 and plpy.notices == ["applyScripts: summary"]
    assert failed.value.sqlstate == "ZA001"
    assert failed.value.message == (
        "applyScripts run 7 failed: script 4: validation on the template failed; "
        "1 database(s) failed (acme); every outcome is recorded"
    )
    assert failed.value.hint is not None and "run_id = 7" in failed.value.hint


def test_the_error_names_the_first_three_failed_databases() -> None:
    recorder = FakeRecorder({"failed": 4, "unreachable": 1}, [], ["a", "b", "c", "d", "e"])
    with pytest.raises(RunFailed) as failed:
        end_run(NoticePlpy(), recorder)
    assert "failed: 5 database(s) failed (a, b, c, ...);" in failed.value.message


def test_t_raise_false_keeps_notices_only() -> None:
    plpy, recorder = NoticePlpy(), FakeRecorder({"failed": 1})
    end_run(plpy, recorder, raise_failure=False)
    assert plpy.notices == ["applyScripts: summary"]
