"""The boundary between SQL procedures and admmgt's Python.

Every SQL-callable entry point is wrapped by :func:`entry`, so an
:class:`AdmmgtError` reaches psql as a plain ERROR with its HINT and SQLSTATE
rather than as a Python traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from admmgt_plpy._errors import AdmmgtError, NotImplementedYet
from admmgt_plpy._remote import RemoteError

P = ParamSpec("P")
R = TypeVar("R")


def entry(fn: Callable[P, R]) -> Callable[P, R]:
    """Report AdmmgtError as ERROR + HINT, and a RemoteError no operation handled
    as one ERROR line; let everything else propagate as is."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AdmmgtError as exc:
            plpy: Any = args[0]
            extra = {"hint": exc.hint} if exc.hint else {}  # hint=None would print "None"
            plpy.error(exc.message, sqlstate=exc.sqlstate, **extra)
            raise  # plpy.error raises; this line is for type checkers
        except RemoteError as exc:
            # A remote failure no operation handled: one line, not a traceback.
            plpy = args[0]
            plpy.error(
                f"{fn.__name__}: a remote database failed ({exc.describe()}); "
                "each database's own transaction rolled back what it had not committed",
                sqlstate=exc.sqlstate,
                hint="Re-run once the cause is fixed; admmgt.run_log shows what was done.",
            )
            raise

    return wrapper


def not_implemented(name: str, issue: str) -> NotImplementedYet:
    """The error of a procedure declared now and built in a later release."""
    return NotImplementedYet(
        f"admmgt.{name} is not implemented yet in this release",
        hint=f"It is planned ({issue}); docs/status.md lists what works today.",
    )
