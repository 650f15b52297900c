"""The boundary between SQL procedures and admmgt's Python.

Every SQL-callable entry point is wrapped by :func:`entry`, so an
:class:`AdmmgtError` reaches psql as a plain ERROR with its HINT and SQLSTATE
rather than as a Python traceback.

PL/Python always writes an exception's message as "<type>: <message>"
(plpy.error gives "plpy.Error: ..."). The error raised here is a subclass of
plpy.Error named ``admmgt`` in module ``builtins``, which PL/Python prints
without a module, so psql shows ``ERROR:  admmgt: <message>``. PL/Python
also adds the Python frames as CONTEXT; that cannot be turned off from the
function, and psql's ``\\set VERBOSITY terse`` hides it (docs/reference.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._remote import RemoteError
from admmgt_plpy._types import Plpy

P = ParamSpec("P")
R = TypeVar("R")


class _ErrorPlpy(Plpy, Protocol):
    """``plpy`` with the exception class PL/Python reports as an ERROR."""

    Error: type[Exception]


def entry(fn: Callable[P, R]) -> Callable[P, R]:
    """Report AdmmgtError as ERROR + HINT, and a RemoteError no operation handled
    as one ERROR line; let everything else propagate as is."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AdmmgtError as exc:
            raise _plpy_error(args[0], exc.message, exc.sqlstate, exc.hint) from None
        except RemoteError as exc:
            # A remote failure no operation handled: one line, not a traceback.
            raise _plpy_error(
                args[0],
                f"{fn.__name__}: a remote database failed ({exc.describe()}); "
                "each database's own transaction rolled back what it had not committed",
                exc.sqlstate,
                "Re-run once the cause is fixed; admmgt.run_log shows what was done.",
            ) from None

    return wrapper


def _plpy_error(plpy: Any, message: str, sqlstate: str, hint: str | None) -> Exception:
    """``plpy`` is the entry point's first argument (every one takes plpy first)."""
    error = _error_class(plpy)(message)
    error.sqlstate = sqlstate  # type: ignore[attr-defined]
    if hint:  # hint=None would print "None"
        error.hint = hint  # type: ignore[attr-defined]
    return error


_CLASSES: dict[int, type[Exception]] = {}


def _error_class(plpy: _ErrorPlpy) -> type[Exception]:
    """plpy.Error under the name PL/Python prints before the message: "admmgt"."""
    base = plpy.Error
    found = _CLASSES.get(id(base))
    if found is None:
        found = type("admmgt", (base,), {"__module__": "builtins"})
        _CLASSES[id(base)] = found
    return found
