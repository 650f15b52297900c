"""Reaching other databases through dblink: connection strings and the fan-out.

Work on a target (a tenant, the template) is written as a generator that
yields remote operations -- ``Connect``, ``Run``, ``Sleep`` -- and returns an
``Outcome``. :class:`Fanout` drives up to N such jobs at once with dblink's
asynchronous calls, sends each job the result of its last operation (or
throws the remote error into it), and reports each outcome as it comes. A job
therefore reads as straight-line code while the fleet is worked in parallel.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy._errors import AdmmgtError

# ---------------------------------------------------------------- conninfo


def libpq_quote(value: str) -> str:
    """A libpq connection-string value: single-quoted, \\ and ' escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Cluster:
    name: str
    host: str | None
    port: int | None
    options: str | None


class Clusters:
    """Connection strings for databases on the registered clusters.

    The local cluster is reached over the admin server's own Unix socket as
    the role running admmgt (the procedures' owner): no password anywhere.
    Other clusters add their non-secret ``options``; passwords come from a
    passfile or user mapping (docs/security.md).
    """

    def __init__(self, plpy: Any) -> None:
        rows = plpy.execute("SELECT name, host, port, options FROM admmgt.clusters")
        self.by_name = {
            r["name"]: Cluster(r["name"], r["host"], r["port"], r["options"]) for r in rows
        }
        local = plpy.execute(
            """SELECT current_setting('unix_socket_directories') AS sockets,
                      current_setting('port') AS port, current_user AS me,
                      current_database() AS admin_db"""
        )[0]
        sockets = [s.strip() for s in local["sockets"].split(",") if s.strip()]
        self.local_host = sockets[0] if sockets else "localhost"
        self.local_port = int(local["port"])
        self.user = local["me"]
        self.admin_db = local["admin_db"]

    def conninfo(self, cluster_name: str, dbname: str) -> str:
        cluster = self.by_name.get(cluster_name)
        if cluster is None:
            raise AdmmgtError(
                f'cluster "{cluster_name}" is not registered in admmgt.clusters',
                hint="INSERT it into admmgt.clusters, or fix vendor_db_settings.cluster_name.",
            )
        # NOTICEs of remote sessions ("already exists, skipping") would go to
        # the server log through dblink's libpq; admmgt reports what matters.
        parts = {
            "dbname": dbname,
            "application_name": "admmgt",
            "options": "-c client_min_messages=warning",
        }
        if cluster.host is None and cluster_name == "local":
            parts.update(
                host=self.local_host, port=str(cluster.port or self.local_port), user=self.user
            )
        else:
            if cluster.host:
                parts["host"] = cluster.host
            if cluster.port:
                parts["port"] = str(cluster.port)
        text = " ".join(f"{k}={libpq_quote(v)}" for k, v in parts.items())
        return f"{text} {cluster.options}" if cluster.options else text

    def admin_conninfo(self) -> str:
        return self.conninfo("local", self.admin_db)


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
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.statement = statement

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
        self._connect = prep(f"SELECT {s}.dblink_connect($1, $2)", ["text", "text"])
        self._disconnect = prep(f"SELECT {s}.dblink_disconnect($1)", ["text"])
        self._send = prep(f"SELECT {s}.dblink_send_query($1, $2) AS ok", ["text", "text"])
        self._busy = prep(
            f"SELECT n FROM unnest($1::text[]) AS n WHERE {s}.dblink_is_busy(n) = 1", ["text[]"]
        )
        self._drain = prep(f"SELECT * FROM {s}.dblink_get_result($1, false) AS t(x text)", ["text"])
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

    def connect(self, conninfo: str) -> str:
        self.counter += 1
        name = f"admmgt_{self.counter}"
        self._call(self._connect, [name, conninfo])
        return name

    def disconnect(self, name: str) -> None:
        with contextlib.suppress(RemoteError):  # already gone
            self._call(self._disconnect, [name])

    def disconnect_all(self) -> None:
        """Close every admmgt dblink connection of this session."""
        for row in self.plpy.execute(self._connections):
            if row["n"].startswith("admmgt_"):
                self.disconnect(row["n"])

    def send(self, name: str, sql: str) -> None:
        self._call(self._send, [name, sql], sql)

    def busy(self, names: list[str]) -> set[str]:
        return {r["n"] for r in self.plpy.execute(self._busy, [names])}

    def result(self, name: str, columns: str, statement: str) -> list[dict[str, Any]]:
        """Rows of the query last sent on ``name``; raises its RemoteError."""
        plan = self._result_plans.get(columns)
        if plan is None:
            plan = self.plpy.prepare(
                f"SELECT * FROM {self.schema}.dblink_get_result($1) AS t({columns})", ["text"]
            )
            self._result_plans[columns] = plan
        try:
            rows = [dict(r) for r in self._call(plan, [name], statement)]
        finally:
            self._call(self._drain, [name])
        return rows

    def query(self, name: str, sql: str, columns: str = "status text") -> list[dict[str, Any]]:
        """Run ``sql`` synchronously on an open connection."""
        plan = self._query_plans.get(columns)
        if plan is None:
            plan = self.plpy.prepare(
                f"SELECT * FROM {self.schema}.dblink($1, $2) AS t({columns})", ["text", "text"]
            )
            self._query_plans[columns] = plan
        return [dict(r) for r in self._call(plan, [name, sql], sql)]


# ----------------------------------------------------------------- fan-out


@dataclass(frozen=True)
class Connect:
    """Open a connection; the job receives its name."""

    conninfo: str


@dataclass(frozen=True)
class Run:
    """Send one statement on a connection; the job receives its rows."""

    conn: str
    sql: str
    columns: str = "status text"


@dataclass(frozen=True)
class Sleep:
    """Park the job (e.g. backoff before a retry) without blocking the others."""

    seconds: float


@dataclass
class Outcome:
    outcome: str  # ok | failed | skipped | noop
    message: str = ""
    sqlstate: str | None = None
    statement: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the run log
    private: dict[str, Any] = field(default_factory=dict)  # for the caller only

    @classmethod
    def failed(cls, error: RemoteError, message: str) -> Outcome:
        return cls("failed", message, error.sqlstate, error.statement)


Job = Generator[Connect | Run | Sleep, Any, Outcome]


@dataclass
class _Active:
    target: Any
    job: Job
    started: float
    connections: list[str] = field(default_factory=list)
    waiting_on: tuple[str, str, str] | None = None  # (conn, columns, sql)
    wake_at: float | None = None


class Fanout:
    """Drive jobs, ``parallel`` at a time, stopping early after ``failure_limit``."""

    def __init__(
        self,
        dblink: Dblink,
        parallel: int,
        failure_limit: int,
        on_done: Callable[[Any, Outcome, float], None],
    ) -> None:
        self.dblink = dblink
        self.parallel = max(1, parallel)
        self.failure_limit = failure_limit
        self.on_done = on_done
        self.failures = 0

    def run(self, targets: Iterable[Any], job: Callable[[Any], Job]) -> None:
        """Run ``job(target)`` for every target; report each through ``on_done``."""
        queue = deque(targets)
        active: list[_Active] = []
        try:
            while queue or active:
                while queue and len(active) < self.parallel and not self._stopped():
                    target = queue.popleft()
                    state = _Active(target, job(target), time.monotonic())
                    active.append(state)
                    self._advance(state, None, None)
                if self._stopped():
                    while queue:
                        target = queue.popleft()
                        self.on_done(
                            target,
                            Outcome(
                                "skipped",
                                f"not attempted: the failure limit ({self.failure_limit}) "
                                "was reached",
                            ),
                            0.0,
                        )
                progressed = self._poll(active)
                active = [a for a in active if a.job is not None]
                if not progressed and active:
                    time.sleep(0.002)
        finally:
            for state in active:
                for name in state.connections:
                    self.dblink.disconnect(name)

    def _stopped(self) -> bool:
        return self.failure_limit > 0 and self.failures >= self.failure_limit

    def _poll(self, active: list[_Active]) -> bool:
        progressed = False
        waiting = {a.waiting_on[0]: a for a in active if a.waiting_on}
        if waiting:
            busy = self.dblink.busy(list(waiting))
            for name, state in waiting.items():
                if name in busy:
                    continue
                assert state.waiting_on is not None
                conn, columns, sql = state.waiting_on
                state.waiting_on = None
                try:
                    rows = self.dblink.result(conn, columns, sql)
                except RemoteError as exc:
                    self._advance(state, None, exc)
                else:
                    self._advance(state, rows, None)
                progressed = True
        now = time.monotonic()
        for state in active:
            if state.wake_at is not None and state.wake_at <= now and state.job is not None:
                state.wake_at = None
                self._advance(state, None, None)
                progressed = True
        return progressed

    def _advance(self, state: _Active, value: Any, error: RemoteError | None) -> None:
        """Resume the job until it waits on the network, sleeps or ends."""
        while True:
            try:
                op = state.job.throw(error) if error is not None else state.job.send(value)
            except StopIteration as stop:
                self._finish(state, stop.value)
                return
            except RemoteError as exc:  # one the job did not expect, e.g. connecting
                todo = (
                    "; check that it is reachable, then re-run" if exc.sqlstate[:2] == "08" else ""
                )
                self._finish(
                    state, Outcome("failed", exc.describe() + todo, exc.sqlstate, exc.statement)
                )
                return
            except Exception as exc:  # a bug in a job must not stop the fleet
                self._finish(state, Outcome("failed", f"internal error: {exc!r}", "XX000"))
                return
            value, error = None, None
            if isinstance(op, Connect):
                try:
                    name = self.dblink.connect(op.conninfo)
                except RemoteError as exc:
                    error = exc
                else:
                    state.connections.append(name)
                    value = name
            elif isinstance(op, Run):
                try:
                    self.dblink.send(op.conn, op.sql)
                except RemoteError as exc:
                    error = exc
                else:
                    state.waiting_on = (op.conn, op.columns, op.sql)
                    return
            else:
                state.wake_at = time.monotonic() + op.seconds
                return

    def _finish(self, state: _Active, outcome: Outcome) -> None:
        for name in state.connections:
            self.dblink.disconnect(name)
        state.connections.clear()
        if outcome.outcome == "failed":
            self.failures += 1
        elapsed_ms = (time.monotonic() - state.started) * 1000
        state.job = None  # type: ignore[assignment]
        self.on_done(state.target, outcome, elapsed_ms)
