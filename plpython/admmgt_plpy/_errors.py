"""Errors admmgt raises on purpose: each says what went wrong and what to do."""

from __future__ import annotations


class AdmmgtError(Exception):
    """An expected failure, reported to the DBA as a plain ERROR with a HINT.

    ``sqlstate`` lets callers (and tests) tell kinds of failure apart without
    parsing messages.
    """

    sqlstate = "P0001"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class MetadataError(AdmmgtError):
    """Metadata rows that cannot be compiled into safe SQL; ``problems`` lists each one.

    The one class for every refused metadata row: the compiler, the metadata
    readers, maintenance and lifecycle all raise it (admmgt_plpy._names
    re-exports it).
    """

    sqlstate = "22023"  # invalid_parameter_value

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        problems: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems if problems else (message,)


class BusyError(AdmmgtError):
    """Another run of the same operation holds its lock."""

    sqlstate = "55P03"  # lock_not_available


class RunFailed(AdmmgtError):
    """A run ended with a failed database or a refused script; every outcome
    was committed to the run log before this was raised (invariant 11)."""

    sqlstate = "ZA001"  # admmgt's own class ZA: run_failed
