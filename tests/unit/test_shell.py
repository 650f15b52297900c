"""The CLI's plumbing without a server: progress from NOTICEs, output width."""

from __future__ import annotations

import io
from dataclasses import dataclass

from rich.console import Console

from admmgt import _shell


@dataclass
class Diag:
    message_primary: str
    message_hint: str | None = None
    severity: str = "NOTICE"
    severity_nonlocalized: str = "NOTICE"


def test_the_progress_bar_follows_the_n_of_N_in_notice_lines() -> None:
    out = io.StringIO()
    feed = _shell.ProgressFeed(Console(file=out, force_terminal=True, width=120), "apply")
    with feed:
        feed(Diag("applyScripts: template t: script 1 applied"))  # type: ignore[arg-type]
        assert feed.task is None
        feed(Diag("template [1/2] copy@c2: script 1 applied"))  # type: ignore[arg-type]
        feed(Diag("template [2/2] copy@c3: script 1 applied"))  # type: ignore[arg-type]
        assert (feed.waves, feed.done, feed.total) == (1, 2, 2)
        feed(Diag("[1/3] a: script 1 applied"))  # type: ignore[arg-type]
        feed(Diag("[2/3] b: FAILED: boom", "fix b"))  # type: ignore[arg-type]
        assert feed.waves == 2  # the tenants are a second bar
        assert feed.task is not None
        task = feed.progress.tasks[-1]
        assert (task.completed, task.total) == (2, 3)
    text = out.getvalue()
    assert "NOTICE:  [2/3] b: FAILED: boom" in text
    assert "HINT:  fix b" in text


def test_piped_output_is_not_wrapped_at_80_columns() -> None:
    out = io.StringIO()
    console = _shell.make_console(file=out)
    line = "x " * 100
    console.print(line)
    assert out.getvalue() == line + "\n"


def test_counts_are_words_not_a_python_dict() -> None:
    assert _shell.counts({"ok": 20, "failed": 1}) == "databases: 1 failed, 20 ok"
    assert _shell.counts(None) == "nothing done"


def test_json_keeps_times_with_their_zone() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    text = _shell.dumps({"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "n": Decimal(3)})
    assert '"at": "2026-01-02T03:04:05+00:00"' in text
    assert '"n": 3' in text
