"""The joints the package's layers meet at: the ``plpy`` module's shape,
a job fragment, and the status codes shared by scripts and databases.

Standard library only; imports nothing of the package, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

# A job fragment: a generator that yields Connect/Run/Sleep requests to the
# fan-out (admmgt_plpy._fanout.Fanout), is sent their results, and returns a
# value (``yield from`` it inside a job).
Fragment = Generator[Any, Any, Any]


class Plpy(Protocol):
    """What admmgt uses of PL/Python's ``plpy`` module (and tests fake)."""

    def execute(self, query: Any, args: Any = ..., limit: int = ...) -> Any: ...

    def prepare(self, query: str, argtypes: Any = ...) -> Any: ...

    def notice(self, message: str) -> None: ...

    def quote_nullable(self, value: Any) -> str: ...

    def subtransaction(self) -> Any: ...


# Status codes, the same numbers everywhere (docs/reference.md):
# a script in admmgt.scripts, a database in admmgt.vendor_db_settings.
DESIGNING = 0  # a script being written; a database row not yet in use
READY = 1  # a script ready to apply; a database pending creation
APPLIED = 2  # a script applied to the template; a database created
FAILED = 3  # refused or failed; last_error says why
