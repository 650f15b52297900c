"""Reaching other databases through dblink, and the job protocol.

:class:`Dblink` makes the dblink calls. Work on a target (a tenant, the
template) is written as a generator -- a job -- that yields remote
operations -- ``Connect``, ``Run``, ``Sleep`` -- and returns an ``Outcome``;
the fan-out (admmgt_plpy._fanout) drives many jobs at once. Connection
strings are admmgt_plpy._conninfo's.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_literal

# password='...' (as _conninfo.libpq_quote writes it) or password=word, in any conninfo.
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def holds_password(conninfo: str) -> bool:
    """Whether a connection string sets a password."""
    return _PASSWORD.search(conninfo) is not None


def redact(text: str, conninfo: str | None = None) -> str:
    """``text`` with every password of a connection string (and, given the
    conninfo it came from, that password wherever it appears) replaced by ***."""
    if conninfo:
        for match in _PASSWORD.finditer(conninfo):
            value = match.group(2)
            if value.startswith("'"):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if value:
                text = text.replace(value, "***")
    return _PASSWORD.sub(r"\1***", text)


# ------------------------------------------------------------------ dblink


class RemoteError(Exception):
    """An error reported by a remote database (or by dblink reaching it)."""

    def __init__(
        self,
        sqlstate: str,
        message: str,
        detail: str | None = None,
        hint: str | None = None,
        statement: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.statement = statement
        self.index = index  # of a Run with several statements: the one that failed (0-based)

    def describe(self) -> str:
        """SQLSTATE, message and, when the server gave one, its detail (e.g. libpq's reason)."""
        text = f"{self.sqlstate} {self.message}"
        return f"{text}: {self.detail.strip()}" if self.detail else text


class Dblink:
    """dblink calls through prepared plans, wherever the extension is installed."""

    def __init__(self, plpy: Any) -> None:
        self.plpy = plpy
        found = plpy.execute(
            """SELECT quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension AS e
               JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
               WHERE e.extname = 'dblink'"""
        )
        if not found:
            raise AdmmgtError(
                "the dblink extension is missing from the admin database",
                hint="Run `admmgt upgrade`, which creates it.",
            )
        s = found[0]["s"]
        self.schema = s
        prep = plpy.prepare
        # dblink reports a lost connection as NOTICEs ("could not send query",
        # the server's FATAL text) on top of the error admmgt reports in words;
        # these calls raise client_min_messages around themselves, in one statement.
        level = plpy.execute("SELECT current_setting('client_min_messages') AS v")[0]["v"]
        quiet = "pg_catalog.set_config('client_min_messages', 'warning', false)"
        loud = f"pg_catalog.set_config('client_min_messages', {quote_literal(level)}, false)"
        self._quiet, self._loud = prep(f"SELECT {quiet}", []), prep(f"SELECT {loud}", [])
        self._connect = prep(f"SELECT {s}.dblink_connect($1, $2)", ["text", "text"])
        self._disconnect = prep(
            f"SELECT {quiet} AS a, {s}.dblink_disconnect($1) AS ok, {loud} AS b", ["text"]
        )
        self._send = prep(
            f"SELECT {quiet} AS a, {s}.dblink_send_query($1, $2) AS ok, {loud} AS b",
            ["text", "text"],
        )
        self._busy = prep(
            f"SELECT n FROM unnest($1::text[]) AS n WHERE {s}.dblink_is_busy(n) = 1", ["text[]"]
        )
        self._drain = prep(f"SELECT * FROM {s}.dblink_get_result($1, false) AS t(x text)", ["text"])
        # The end of the last result read (see result()), then the next send:
        # one call. The CTE is read before the row that sends is made.
        self._drain_send = prep(
            f"WITH d AS MATERIALIZED (SELECT count(*) AS n FROM {s}.dblink_get_result($1, false)"
            f" AS t(x text)) SELECT {quiet} AS a, d.n, {s}.dblink_send_query($1, $2) AS ok,"
            f" {loud} AS b FROM d",
            ["text", "text"],
        )
        # Connections whose last result was read but not the end of it (None).
        self._undrained: set[str] = set()
        self._connections = prep(f"SELECT unnest({s}.dblink_get_connections()) AS n", [])
        self._result_plans: dict[str, Any] = {}
        self._query_plans: dict[str, Any] = {}
        self.counter = 0

    def _call(self, plan: Any, args: list[Any], statement: str | None = None) -> Any:
        try:
            with self.plpy.subtransaction():
                return self.plpy.execute(plan, args)
        except self.plpy.SPIError as exc:
            # PL/Python keeps DETAIL and HINT in spidata (sqlstate, detail, hint, ...).
            spidata = getattr(exc, "spidata", None) or (None, None, None)
            raise RemoteError(
                getattr(exc, "sqlstate", None) or "XX000",
                str(exc.args[0] if exc.args else exc),
                spidata[1],
                spidata[2],
                statement,
            ) from None

    def new_name(self) -> str:
        """A connection name no other connection of this session has had."""
        self.counter += 1
        return f"admmgt_{self.counter}"

    def connect(self, conninfo: str) -> str:
        name = self.new_name()
        try:
            self._call(self._connect, [name, conninfo])
        except RemoteError as exc:
            raise connect_error(exc, conninfo) from None
        return name

    @contextlib.contextmanager
    def session(self, conninfo: str) -> Iterator[str]:
        """A connection for the ``with`` block, closed however it ends."""
        name = self.connect(conninfo)
        try:
            yield name
        finally:
            self.disconnect(name)

    def disconnect(self, name: str) -> None:
        self._undrained.discard(name)
        with contextlib.suppress(RemoteError):  # already gone
            self._call(self._disconnect, [name])

    def disconnect_all(self) -> None:
        """Close every admmgt dblink connection of this session."""
        for row in self.plpy.execute(self._connections):
            if row["n"].startswith("admmgt_"):
                self.disconnect(row["n"])

    def send(self, name: str, sql: str, statement: str | None = None) -> None:
        """Send ``sql`` on ``name`` without waiting; an error names ``statement``
        (by default ``sql``)."""
        if name in self._undrained:
            self._undrained.discard(name)
            plan = self._drain_send
        else:
            plan = self._send
        if self._call(plan, [name, sql], statement or sql)[0]["ok"] != 1:
            raise RemoteError("08006", "could not send the statement: the connection is lost")

    def busy(self, names: list[str]) -> set[str]:
        return {r["n"] for r in self.plpy.execute(self._busy, [names])}

    def result(
        self, name: str, columns: str, statement: str, last: bool = True
    ) -> list[dict[str, Any]]:
        """Rows of the query last sent on ``name``; raises its RemoteError.

        ``last=False``: the next result of a query of several statements, more
        to come (its end is not read, so the call never waits for the others).
        """
        plan = self._result_plans.get(columns)
        if plan is None:
            plan = self.plpy.prepare(
                f"SELECT * FROM {self.schema}.dblink_get_result($1) AS t({columns})", ["text"]
            )
            self._result_plans[columns] = plan
        try:
            rows = [dict(r) for r in self._call(plan, [name], statement)]
            if not last:
                return rows
        except RemoteError:
            self.plpy.execute(self._quiet)
            try:
                self._call(self._drain, [name])
            finally:
                self.plpy.execute(self._loud)
            raise
        # The end of the results (None) is read with the next send, if any:
        # libpq needs it read before another query; a disconnect does not.
        self._undrained.add(name)
        return rows

    def query(self, name: str, sql: str, columns: str = "status text") -> list[dict[str, Any]]:
        """Run ``sql`` synchronously on an open connection."""
        plan = self._query_plans.get(columns)
        if plan is None:
            plan = self.plpy.prepare(
                f"SELECT * FROM {self.schema}.dblink($1, $2) AS t({columns})", ["text", "text"]
            )
            self._query_plans[columns] = plan
        if name in self._undrained:  # libpq refuses a query while a result is unread
            self._undrained.discard(name)
            self._call(self._drain, [name])
        return [dict(r) for r in self._call(plan, [name, sql], sql)]


def connect_error(exc: RemoteError, conninfo: str) -> RemoteError:
    """A failed connect's error, without the password: libpq quotes a malformed
    connection string back."""
    return RemoteError(
        exc.sqlstate,
        redact(exc.message, conninfo),
        redact(exc.detail, conninfo) if exc.detail else None,
        exc.hint,
    )


# ------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Connect:
    """Open a connection; the job receives its name.

    ``reuse``: the fan-out may hand out a connection to the same conninfo that
    an earlier job of the same run left (its job ended ok or noop, outside any
    transaction), and keeps this one for a later job likewise. A job that asks
    for it resets what its session may carry first (schema tenants: DISCARD ALL
    and its search_path, _migration.schema_session)."""

    conninfo: str
    reuse: bool = False


@dataclass(frozen=True)
class Run:
    """Send one statement on a connection; the job receives its rows."""

    conn: str
    sql: str
    columns: str = "status text"
    # How many statements ``sql`` holds (each with at most one column when
    # more than one): one round trip; the job receives the last one's rows, or
    # the RemoteError of the one that failed with its ``index``.
    statements: int = 1


@dataclass(frozen=True)
class Sleep:
    """Park the job (e.g. backoff before a retry) without blocking the others."""

    seconds: float


@dataclass
class Outcome:
    outcome: str  # ok | failed | skipped | noop | unreachable (its cluster is down)
    message: str = ""
    sqlstate: str | None = None
    statement: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the run log
    private: dict[str, Any] = field(default_factory=dict)  # for the caller only

    @classmethod
    def failed(cls, error: RemoteError, message: str) -> Outcome:
        return cls("failed", message, error.sqlstate, error.statement)


Job = Generator[Connect | Run | Sleep, Any, Outcome]
