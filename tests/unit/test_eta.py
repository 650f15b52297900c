"""The ETA NOTICE of a long fan-out, with a pinned clock."""

from __future__ import annotations

from admmgt_plpy._eta import Eta, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_eta_line_comes_at_most_every_few_seconds_from_the_waves_pace() -> None:
    clock = Clock()
    eta = Eta("applyScripts", clock, every=5.0)
    clock.now += 2
    assert eta.line("applyScripts: template t: script 1 applied") is None
    clock.now += 1
    assert eta.line("[1/100] a: script 1 applied") is None  # 1 s in: too soon
    clock.now += 9
    # 10 s for 10 tenants since the template line: 90 left at 1 s each.
    assert eta.line("[10/100] j: script 1 applied") == (
        "applyScripts: 10 of 100 done in 10 s; about 1 min 30 s left"
    )
    clock.now += 1
    assert eta.line("[11/100] k: FAILED: boom") is None  # said 1 s ago
    clock.now += 100
    assert eta.line("[100/100] z: script 1 applied") is None  # done: nothing left to say


def test_a_new_wave_starts_its_own_pace() -> None:
    clock = Clock()
    eta = Eta("applyScripts", clock, every=0)
    clock.now += 50
    assert eta.line("template [1/2] c@x: applied") is not None
    clock.now += 1
    assert eta.line("template [2/2] d@y: applied") is None
    clock.now += 4
    assert eta.line("[2/4] b: applied") == "applyScripts: 2 of 4 done in 4 s; about 4 s left"


def test_durations_read_as_a_dba_would_say_them() -> None:
    assert [duration(x) for x in (0.4, 59, 61, 3599, 3660)] == [
        "0 s",
        "59 s",
        "1 min 1 s",
        "59 min 59 s",
        "1 h 1 min",
    ]
