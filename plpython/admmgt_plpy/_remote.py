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
import re
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._settings import load_settings

# ---------------------------------------------------------------- conninfo


def libpq_quote(value: str) -> str:
    """A libpq connection-string value: single-quoted, \\ and ' escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# password='...' (as libpq_quote writes it) or password=word, in any conninfo.
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


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


# libpq keywords that decide which server a connection reaches, or (service,
# servicefile) read those from a file, or name the database admmgt chooses. They
# come from clusters.host and clusters.port or, for a cluster whose password is
# in a user mapping, from its foreign server only: libpq prefers hostaddr to
# host, so a hostaddr in clusters.options would send that password elsewhere.
ROUTING_KEYWORDS = ("host", "hostaddr", "port", "service", "servicefile", "dbname")
# A mapped cluster's password goes only where its foreign server says, with the
# credentials of its user mapping.
MAPPED_KEYWORDS = ("passfile",)
_KEYWORD = re.compile(r"[a-z_]+")


def parse_options(cluster_name: str, text: str | None) -> list[tuple[str, str]]:
    """(keyword, value) pairs of ``clusters.options``, read the way libpq reads a
    connection string; anything else (a URI, a keyword without ``=``, an open
    quote) is refused. Values are never echoed: one may be a secret."""
    pairs: list[tuple[str, str]] = []
    if text is None:
        return pairs
    i, n = 0, len(text)

    def refuse(reason: str) -> AdmmgtError:
        return AdmmgtError(
            f'cluster "{cluster_name}": admmgt.clusters.options is not a list of libpq '
            f"keyword=value settings: {reason}; nothing was connected",
            hint="Write settings such as sslmode=verify-full connect_timeout=5, quoting a value "
            "with spaces in single quotes (docs/clusters.md).",
        )

    if text.lstrip().startswith(("postgresql://", "postgres://")):
        raise refuse("it is a URI")
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return pairs
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        keyword = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=" or not _KEYWORD.fullmatch(keyword):
            raise refuse(f"{keyword[:40]!r} is not followed by = or is not a keyword")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise refuse(f"the value of {keyword} has no closing quote")
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        pairs.append((keyword, "".join(value)))


def check_options(cluster_name: str, text: str | None, *, mapped: bool) -> list[tuple[str, str]]:
    """``parse_options``, refusing the keywords that are admmgt's or the foreign server's."""
    pairs = parse_options(cluster_name, text)
    refused = ROUTING_KEYWORDS + (MAPPED_KEYWORDS if mapped else ())
    taken = sorted({k for k, _ in pairs if k in refused or k == "password"})
    if taken:
        where = (
            "the host, port and credentials of a cluster with a user mapping come from its "
            "foreign server only"
            if mapped
            else "the host and port come from admmgt.clusters.host and .port"
        )
        raise AdmmgtError(
            f'cluster "{cluster_name}": admmgt.clusters.options sets {", ".join(taken)}, which '
            f"admmgt does not take from options: {where}; nothing was connected",
            hint="Remove "
            + ", ".join(taken)
            + " from admmgt.clusters.options"
            + (
                " and set them on the foreign server (ALTER SERVER ... OPTIONS (SET host ...))."
                if mapped
                else " and set admmgt.clusters.host and port."
            ),
        )
    return pairs


@dataclass(frozen=True)
class Cluster:
    name: str
    host: str | None
    port: int | None
    options: str | None
    fdw_server: str | None = None
    max_parallel: int | None = None
    accepts_tenants: bool = True


class Clusters:
    """Connection strings for databases on the registered clusters.

    The local cluster is reached over the admin server's own Unix socket as
    the role running admmgt (the procedures' owner): no password anywhere.
    Another cluster adds its non-secret ``options``; its password comes from a
    passfile, or from the user mapping of its ``fdw_server``, read here when a
    connection is made and never written anywhere (docs/clusters.md).
    """

    def __init__(self, plpy: Any) -> None:
        self.plpy = plpy
        rows = plpy.execute(
            """SELECT name, host, port, options, fdw_server, max_parallel, accepts_tenants
               FROM admmgt.clusters ORDER BY name"""
        )
        self.by_name = {r["name"]: Cluster(**dict(r)) for r in rows}
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
        # Every statement admmgt sends waits at most this long for a lock: a
        # session setting, so it also bounds what runs outside a transaction
        # (history and catalog reads, CREATE INDEX CONCURRENTLY waiting for old
        # transactions). A script's transaction sets its own lock_timeout.
        self.wait_timeout_ms = load_settings(plpy).wait_timeout_ms
        self._fdw: dict[str, dict[str, str]] = {}
        # Per run (one Clusters per run): checked once, and once down, down for the run.
        self.checked: set[str] = set()
        self.down: dict[str, RemoteError] = {}

    def get(self, cluster_name: str) -> Cluster:
        cluster = self.by_name.get(cluster_name)
        if cluster is None:
            raise AdmmgtError(
                f'cluster "{cluster_name}" is not registered in admmgt.clusters',
                hint="CALL admmgt.add_cluster(...), or fix vendor_db_settings.cluster_name.",
            )
        return cluster

    def conninfo(self, cluster_name: str, dbname: str) -> str:
        """A libpq connection string; it may hold a password, so it is never shown.

        The cluster's own ``options`` are parsed and may not set a routing
        keyword (``ROUTING_KEYWORDS``; for a cluster with a user mapping also
        ``passfile``): the host and port come from admmgt.clusters, or for a
        cluster with a user mapping from its foreign server only, so that
        editing admmgt.clusters cannot send that password elsewhere.
        """
        cluster = self.get(cluster_name)
        mapped = bool(cluster.fdw_server)
        # Parsed, checked and written again, never pasted: a keyword admmgt
        # sets below cannot be given twice, nor hidden in a malformed string.
        parts = dict(check_options(cluster_name, cluster.options, mapped=mapped))
        if cluster_name != "local" and "connect_timeout" not in parts:
            parts["connect_timeout"] = "10"  # a silent host must not stall every cluster
        if cluster.host is None and cluster_name == "local":
            parts.update(
                host=self.local_host, port=str(cluster.port or self.local_port), user=self.user
            )
        elif not mapped:
            if cluster.host:
                parts["host"] = cluster.host
            if cluster.port:
                parts["port"] = str(cluster.port)
        if mapped:
            # Host, hostaddr and port of the foreign server only (not
            # clusters.host or .port, which an operator may edit).
            parts.update(self._fdw_options(cluster))
        # NOTICEs of remote sessions ("already exists, skipping") would go to
        # the server log through dblink's libpq; admmgt reports what matters.
        parts.update(
            dbname=dbname,
            application_name="admmgt",
            options=f"-c client_min_messages=warning -c lock_timeout={self.wait_timeout_ms}",
        )
        return " ".join(f"{k}={libpq_quote(v)}" for k, v in parts.items())

    def _fdw_options(self, cluster: Cluster) -> dict[str, str]:
        """The foreign server's options, then its user mapping's (user, password)."""
        if cluster.name in self._fdw:
            return self._fdw[cluster.name]
        rows = self.plpy.execute(
            self.plpy.prepare(
                """SELECT s.srvoptions AS server, (
                       SELECT m.umoptions FROM pg_catalog.pg_user_mappings AS m
                       WHERE m.srvid = s.oid AND m.umuser IN (r.oid, 0)
                       ORDER BY m.umuser DESC LIMIT 1) AS mapping,
                       EXISTS (SELECT FROM pg_catalog.pg_user_mappings AS m
                               WHERE m.srvid = s.oid AND m.umuser IN (r.oid, 0)) AS mapped
                   FROM pg_catalog.pg_foreign_server AS s, pg_catalog.pg_roles AS r
                   WHERE s.srvname = $1 AND r.rolname = current_user""",
                ["text"],
            ),
            [cluster.fdw_server],
        )
        if not rows:
            raise AdmmgtError(
                f'cluster "{cluster.name}": foreign server "{cluster.fdw_server}" '
                "(clusters.fdw_server) does not exist",
                hint=f"CREATE SERVER {quote_ident(cluster.fdw_server or '')} FOREIGN DATA WRAPPER"
                " dblink_fdw OPTIONS (host '...', port '...'); then CREATE USER MAPPING for the"
                " owner of the admmgt procedures (docs/clusters.md).",
            )
        if not rows[0]["mapped"]:
            raise AdmmgtError(
                f'cluster "{cluster.name}": foreign server "{cluster.fdw_server}" has no user '
                f'mapping for role "{self.user}" (the owner of the admmgt procedures) or PUBLIC',
                hint=f"CREATE USER MAPPING FOR {quote_ident(self.user)} SERVER "
                f"{quote_ident(cluster.fdw_server or '')} OPTIONS (user '...', password '...');",
            )
        options: dict[str, str] = {}
        for item in list(rows[0]["server"] or []) + list(rows[0]["mapping"] or []):
            key, _, value = item.partition("=")
            if key != "dbname":  # each connection names its own database
                options[key] = value
        if "host" not in options:
            raise AdmmgtError(
                f'cluster "{cluster.name}": foreign server "{cluster.fdw_server}" has no host '
                "option; a cluster whose password is in a user mapping is reached only at the "
                "host (and port) of its foreign server",
                hint=f"ALTER SERVER {quote_ident(cluster.fdw_server or '')} OPTIONS "
                "(ADD host '...', ADD port '...');",
            )
        self._fdw[cluster.name] = options
        return options

    def admin_conninfo(self) -> str:
        return self.conninfo("local", self.admin_db)

    def maintenance_db(self, cluster_name: str) -> str:
        """Where CREATE DATABASE and DROP DATABASE run on a cluster."""
        return self.admin_db if cluster_name == "local" else "postgres"

    def parallel(self, cluster_name: str, default: int) -> int:
        cluster = self.by_name.get(cluster_name)
        return cluster.max_parallel if cluster and cluster.max_parallel else default

    def probe(self, dblink: Dblink, cluster_name: str) -> RemoteError | None:
        """None if the cluster accepts a connection now, else why not."""
        try:
            conninfo = self.conninfo(cluster_name, self.maintenance_db(cluster_name))
        except AdmmgtError as exc:
            return RemoteError("08000", exc.message)
        try:
            name = dblink.connect(conninfo)
        except RemoteError as exc:
            return exc
        dblink.disconnect(name)
        return None


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

    def connect(self, conninfo: str) -> str:
        self.counter += 1
        name = f"admmgt_{self.counter}"
        try:
            self._call(self._connect, [name, conninfo])
        except RemoteError as exc:
            # libpq quotes a malformed connection string back; a password must not follow.
            raise RemoteError(
                exc.sqlstate,
                redact(exc.message, conninfo),
                redact(exc.detail, conninfo) if exc.detail else None,
                exc.hint,
            ) from None
        return name

    def disconnect(self, name: str) -> None:
        self._undrained.discard(name)
        with contextlib.suppress(RemoteError):  # already gone
            self._call(self._disconnect, [name])

    def disconnect_all(self) -> None:
        """Close every admmgt dblink connection of this session."""
        for row in self.plpy.execute(self._connections):
            if row["n"].startswith("admmgt_"):
                self.disconnect(row["n"])

    def send(self, name: str, sql: str) -> None:
        if name in self._undrained:
            self._undrained.discard(name)
            plan = self._drain_send
        else:
            plan = self._send
        if self._call(plan, [name, sql], sql)[0]["ok"] != 1:
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


@dataclass
class _Active:
    target: Any
    cluster: str
    job: Job
    started: float
    connections: list[str] = field(default_factory=list)
    waiting_on: tuple[str, str, str] | None = None  # (conn, columns, sql)
    wake_at: float | None = None
    results: int = 1  # of the statement(s) waited on, still to read
    read: int = 0  # of those, read already


# Called on every turn of the fan-out's loop when set: the run recorder's
# timed batch write (_runlog.py), so its records wait at most about that long
# even while no database finishes. One at a time: a new recorder takes it.
TICK: list[Callable[[], None] | None] = [None]

# The fan-out's wait when no connection has a result: from IDLE_MIN_S, doubling
# while nothing comes, to IDLE_MAX_S.
IDLE_MIN_S = 0.00025
IDLE_MAX_S = 0.002

# Errors after which the server itself may be gone, not just one database:
# connection exceptions and administrator shutdown/crash/cannot-connect-now.
_SERVER_GONE = ("08", "57P01", "57P02", "57P03")


class Fanout:
    """Drive jobs, ``parallel`` at a time, stopping early after ``failure_limit``.

    With ``clusters``, the limit is per cluster (clusters.max_parallel, else
    ``parallel``) and clusters take turns, so one server is not flooded while
    the others idle. A cluster that does not answer -- checked before its first
    target, and again when a target loses its connection -- is reported once:
    its remaining targets end as "unreachable" without being tried and do not
    count towards the failure limit; the other clusters go on.
    """

    def __init__(
        self,
        dblink: Dblink,
        parallel: int,
        failure_limit: int,
        on_done: Callable[[Any, Outcome, float], None],
        clusters: Clusters | None = None,
    ) -> None:
        self.dblink = dblink
        self.parallel = max(1, parallel)
        self.failure_limit = failure_limit
        self.on_done = on_done
        self.clusters = clusters
        self.failures = 0
        self._queues: dict[str, deque[Any]] = {}

    def _cluster(self, target: Any) -> str:
        if self.clusters is None:
            return ""  # one limit for all
        return getattr(target, "cluster", None) or "local"

    def run(self, targets: Iterable[Any], job: Callable[[Any], Job]) -> None:
        """Run ``job(target)`` for every target; report each through ``on_done``."""
        queues: dict[str, deque[Any]] = {}
        self._queues = queues
        for target in targets:
            queues.setdefault(self._cluster(target), deque()).append(target)
        running = dict.fromkeys(queues, 0)
        active: list[_Active] = []
        idle = 0
        try:
            while any(queues.values()) or active:
                started = True
                while started and not self._stopped():
                    started = False
                    for name, queue in queues.items():  # one each, in turn
                        if queue and running[name] < self._limit(name) and self._answers(name):
                            target = queue.popleft()
                            state = _Active(target, name, job(target), time.monotonic())
                            active.append(state)
                            running[name] += 1
                            started = True
                            self._advance(state, None, None)
                if self._stopped():
                    for queue in queues.values():
                        while queue:
                            self.on_done(
                                queue.popleft(),
                                Outcome(
                                    "skipped",
                                    f"not attempted: the failure limit ({self.failure_limit}) "
                                    "was reached",
                                ),
                                0.0,
                            )
                progressed = self._poll(active)
                tick = TICK[0]
                if tick is not None:
                    tick()
                for state in active:
                    if state.job is None:
                        running[state.cluster] -= 1
                active = [a for a in active if a.job is not None]
                if progressed or not active:
                    idle = 0
                else:
                    # Nothing ready: wait briefly, longer the longer nothing comes
                    # (0.25 ms up to 2 ms), so a result is picked up soon without
                    # the admin backend spinning on a CPU the tenants need.
                    time.sleep(min(IDLE_MAX_S, IDLE_MIN_S * (1 << idle)))
                    idle = min(idle + 1, 4)
        finally:
            for state in active:
                for name in state.connections:
                    self.dblink.disconnect(name)

    def _limit(self, cluster: str) -> int:
        return self.clusters.parallel(cluster, self.parallel) if self.clusters else self.parallel

    def _stopped(self) -> bool:
        return self.failure_limit > 0 and self.failures >= self.failure_limit

    def _answers(self, cluster: str) -> bool:
        """Whether targets of ``cluster`` may start; checks it once per run."""
        if self.clusters is None or cluster == "local":
            return True
        if cluster not in self.clusters.checked:
            self.clusters.checked.add(cluster)
            error = self.clusters.probe(self.dblink, cluster)
            if error is not None:
                self._mark_down(cluster, error)
        if cluster in self.clusters.down:
            self._mark_down(cluster, self.clusters.down[cluster])
            return False
        return True

    def _mark_down(self, cluster: str, error: RemoteError) -> None:
        """Say once per run that ``cluster`` is unreachable; end its queued targets so."""
        assert self.clusters is not None
        if cluster not in self.clusters.down:
            self.clusters.down[cluster] = error
            self.dblink.plpy.notice(
                f'cluster "{cluster}" is unreachable ({error.describe()}); its databases are '
                "left as they are in this run (outcome unreachable in the run log); "
                "re-run once it is back"
            )
        queue = self._queues.get(cluster, deque())
        while queue:
            self.on_done(queue.popleft(), _cluster_unreachable(cluster, error), 0.0)

    def _server_gone(self, cluster: str, outcome: Outcome) -> bool:
        """After a lost connection: is the whole cluster down (then say so once)?"""
        if not self.clusters or cluster == "local" or not outcome.sqlstate:
            return False
        if not outcome.sqlstate.startswith(_SERVER_GONE):
            return False
        if cluster not in self.clusters.down:
            error = self.clusters.probe(self.dblink, cluster)
            if error is None:
                return False
            self._mark_down(cluster, error)
        return True

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
                progressed = True
                last = state.read + 1 >= state.results
                try:
                    rows = self.dblink.result(conn, columns, sql, last)
                except RemoteError as exc:
                    if state.results > 1:
                        exc.index = state.read
                    state.waiting_on = None
                    self._advance(state, None, exc)
                    continue
                if not last:
                    state.read += 1  # the next result is read when it is there
                    continue
                state.waiting_on = None
                self._advance(state, rows, None)
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
                    state.results, state.read = max(1, op.statements), 0
                    return
            else:
                state.wake_at = time.monotonic() + op.seconds
                return

    def _finish(self, state: _Active, outcome: Outcome) -> None:
        for name in state.connections:
            self.dblink.disconnect(name)
        state.connections.clear()
        if outcome.outcome == "failed" and self._server_gone(state.cluster, outcome):
            assert self.clusters is not None
            interrupted = _cluster_unreachable(state.cluster, self.clusters.down[state.cluster])
            interrupted.message += f"; interrupted: {outcome.message}"
            interrupted.details, interrupted.private = outcome.details, outcome.private
            outcome = interrupted
        if outcome.outcome == "failed":
            self.failures += 1
        elapsed_ms = (time.monotonic() - state.started) * 1000
        state.job = None  # type: ignore[assignment]
        self.on_done(state.target, outcome, elapsed_ms)


def _cluster_unreachable(cluster: str, error: RemoteError) -> Outcome:
    return Outcome(
        "unreachable", f'cluster "{cluster}" is unreachable ({error.describe()})', error.sqlstate
    )
