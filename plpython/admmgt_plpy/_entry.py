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
from typing import Any, ParamSpec, TypeVar

from admmgt_plpy._errors import AdmmgtError, NotImplementedYet

P = ParamSpec("P")
R = TypeVar("R")


def entry(fn: Callable[P, R]) -> Callable[P, R]:
    """Report AdmmgtError as ERROR + HINT; let everything else propagate as is."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AdmmgtError as exc:
            plpy: Any = args[0]
            error: Any = _error_class(plpy)(exc.message)
            error.sqlstate = exc.sqlstate
            if exc.hint:  # hint=None would print "None"
                error.hint = exc.hint
            raise error from None

    return wrapper


_CLASSES: dict[int, type[Exception]] = {}


def _error_class(plpy: Any) -> type[Exception]:
    """plpy.Error under the name PL/Python prints before the message: "admmgt"."""
    base = plpy.Error
    found = _CLASSES.get(id(base))
    if found is None:
        found = type("admmgt", (base,), {"__module__": "builtins"})
        _CLASSES[id(base)] = found
    return found


def not_implemented(name: str, issue: str) -> NotImplementedYet:
    """The error of a procedure declared now and built in a later release."""
    return NotImplementedYet(
        f"admmgt.{name} is not implemented yet in this release",
        hint=f"It is planned ({issue}); docs/status.md lists what works today.",
    )
