"""How long a fan-out has left, for a NOTICE every few seconds.

A run's per-database NOTICE lines start with "[n/N]" (after "template " for
the template wave). :class:`Eta` watches them and, at most every
``EVERY_S`` seconds, answers a line such as "applyScripts: 120 of 1000 done
in 30 s; about 3 min 40 s left", extrapolated from the wave's pace so far.
Pure: the clock is a parameter, so tests need no server and no waiting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

EVERY_S = 5.0
STEP = re.compile(r"^(?:template )?\[(\d+)/(\d+)\]")


def duration(seconds: float) -> str:
    """12 s, 3 min 20 s, 1 h 5 min."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Eta:
    def __init__(
        self, operation: str, clock: Callable[[], float] = time.monotonic, every: float = EVERY_S
    ) -> None:
        self.operation = operation
        self.clock = clock
        self.every = every
        self.wave_total = 0
        self.wave_start = clock()
        self.last_seen = self.wave_start
        self.last_said = self.wave_start

    def line(self, notice: str) -> str | None:
        """The ETA line to add after ``notice``, or None (not a step, or too soon)."""
        step = STEP.match(notice)
        now = self.clock()
        if not step:
            self.last_seen = now
            return None
        done, total = int(step.group(1)), int(step.group(2))
        if total != self.wave_total or done == 1:
            # A new wave starts where the last line left off.
            self.wave_total, self.wave_start = total, self.last_seen
        self.last_seen = now
        if done >= total or now - self.last_said < self.every:
            return None
        self.last_said = now
        spent = now - self.wave_start
        left = spent / done * (total - done)
        return (
            f"{self.operation}: {done} of {total} done in {duration(spent)}; "
            f"about {duration(left)} left"
        )
