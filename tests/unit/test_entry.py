"""The error boundary (admmgt_plpy._entry): what psql sees when an entry point fails."""

from __future__ import annotations

from typing import Any

import pytest

from admmgt_plpy._entry import entry
from admmgt_plpy._errors import AdmmgtError, BusyError
from admmgt_plpy._remote import RemoteError


class FakePlpy:
    """The part of plpy the boundary uses: its Error class."""

    class Error(Exception):
        pass


@entry
def fails_with(plpy: Any, error: Exception) -> None:
    raise error


def test_an_admmgt_error_becomes_one_plpy_error_named_admmgt_with_sqlstate_and_hint() -> None:
    with pytest.raises(FakePlpy.Error) as raised:
        fails_with(FakePlpy(), BusyError("applyScripts is running", hint="Wait for it."))
    error: Any = raised.value
    assert type(error).__name__ == "admmgt" and type(error).__module__ == "builtins"
    assert str(error) == "applyScripts is running"
    assert (error.sqlstate, error.hint) == ("55P03", "Wait for it.")
    assert error.__suppress_context__  # no Python traceback of the cause


def test_no_hint_is_no_hint_not_the_word_none() -> None:
    with pytest.raises(FakePlpy.Error) as raised:
        fails_with(FakePlpy(), AdmmgtError("bad"))
    assert not hasattr(raised.value, "hint")
    assert raised.value.sqlstate == "P0001"  # type: ignore[attr-defined]


def test_an_unhandled_remote_error_is_one_line_naming_the_entry_point() -> None:
    remote = RemoteError("08006", "connection lost", detail="server closed the connection\n")
    with pytest.raises(FakePlpy.Error) as raised:
        fails_with(FakePlpy(), remote)
    error: Any = raised.value
    assert str(error) == (
        "fails_with: a remote database failed (08006 connection lost: server closed the"
        " connection); each database's own transaction rolled back what it had not committed"
    )
    assert error.sqlstate == "08006" and "run_log" in error.hint


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(ZeroDivisionError):
        fails_with(FakePlpy(), ZeroDivisionError("x"))


def test_one_error_class_per_plpy_module() -> None:
    plpy = FakePlpy()
    classes = set()
    for _ in range(2):
        with pytest.raises(FakePlpy.Error) as raised:
            fails_with(plpy, AdmmgtError("x"))
        classes.add(type(raised.value))
    assert len(classes) == 1
