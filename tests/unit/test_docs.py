"""The docs describe what exists: no issue numbers, no promises of what is built.

A "Not yet" section (or a line saying "not built yet", "not implemented yet")
may name only what does not exist: the test fails when one names a procedure
(sql/idempotent) or an `admmgt` command that now exists, so a doc cannot keep
promising what has shipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from admmgt.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
ISSUE = re.compile(r"\bissues? #?\d+|\(#\d+\)", re.IGNORECASE)
FUTURE = re.compile(
    r"\bwhen [^.]{0,60}\bships\b|\bwill ship\b|\b(is|are) planned\b|\bcoming soon\b"
    r"|\bin a (later|future) release\b",
    re.IGNORECASE,
)
NOT_YET_HEADING = re.compile(r"^#+ .*\bnot (built |implemented )?yet\b", re.IGNORECASE)
NOT_YET_LINE = re.compile(r"\bnot (built|implemented|available) yet\b|^Not yet\b", re.IGNORECASE)
NAME = re.compile(r"`(?:admmgt\.)?([A-Za-z_]\w*)\s*\(")
COMMAND = re.compile(r"`admmgt ([a-z]+)")


def routines() -> set[str]:
    text = "\n".join(p.read_text() for p in (ROOT / "sql" / "idempotent").glob("*.sql"))
    found = re.findall(r"CREATE OR REPLACE (?:PROCEDURE|FUNCTION) admmgt\.(\w+)", text)
    return {name.lower() for name in found if not name.startswith("_")}


def promises(text: str) -> list[tuple[int, str]]:
    """(line number, line) of what a doc says does not exist yet."""
    out = []
    in_section = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            in_section = bool(NOT_YET_HEADING.match(line))
        elif in_section and line.strip():
            out.append((number, line))
        else:
            # Only the table cell or sentence that says "not ... yet".
            out += [(number, c) for c in re.split(r"[|;]|\. ", line) if NOT_YET_LINE.search(c)]
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_no_issue_numbers_and_make_no_promises(doc: Path) -> None:
    text = doc.read_text()
    for number, line in enumerate(text.splitlines(), start=1):
        assert not ISSUE.search(line), f"{doc.name}:{number} names an issue: {line}"
    promise = FUTURE.search(" ".join(text.split()))  # a phrase may span lines
    assert promise is None, f"{doc.name} promises: ...{promise.group(0)}..."


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_what_docs_call_not_yet_built_does_not_exist(doc: Path) -> None:
    exists = routines()
    commands = set(main.commands)
    for number, line in promises(doc.read_text()):
        for name in NAME.findall(line):
            assert name.lower() not in exists, (
                f"{doc.name}:{number} says admmgt.{name} is not built, but it exists: {line}"
            )
        for command in COMMAND.findall(line):
            assert command not in commands, (
                f"{doc.name}:{number} says `admmgt {command}` is not built, but it exists: {line}"
            )


def test_the_check_sees_a_stale_promise() -> None:
    stale = "## Not yet\n\nA `rollbackScript(n)` and `admmgt apply`.\n"
    [(_, text)] = promises(stale)
    assert NAME.findall(text) == ["rollbackScript"] and COMMAND.findall(text) == ["apply"]
    assert "rollbackscript" in routines()
