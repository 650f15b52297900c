"""The fan-out: many jobs (admmgt_plpy._remote.Job) at once over dblink.

:class:`Fanout` drives up to N jobs at once with dblink's asynchronous
calls, sends each job the result of its last operation (or throws the remote
error into it), and reports each outcome as it comes. A job therefore reads
as straight-line code while the fleet is worked in parallel.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._relay import Relay, Relays, connect_sql, relayable, run_sql
from admmgt_plpy._remote import (
    Connect,
    Dblink,
    Job,
    Outcome,
    RemoteError,
    Run,
    Sleep,
    connect_error,
)
from admmgt_plpy._settings import Settings
from admmgt_plpy._transient import connection_lost


@dataclass
class _Active:
    target: Any
    cluster: str
    job: Job
    started: float
    connections: list[str] = field(default_factory=list)
    # Of those, the ones that may serve a later job (Connect.reuse): by conninfo.
    reusable: dict[str, str] = field(default_factory=dict)
    waiting_on: tuple[str, str, str] | None = None  # (conn, columns, sql)
    relay: Relay | None = None  # the job's relay, from its first relayed Connect
    connecting: Connect | None = None  # what the relay is opening, as ``name``
    name: str = ""
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

    With ``relays`` (and ``clusters``, and more than one target at a time),
    jobs connect and send through relay sessions (admmgt_plpy._relay), so
    that no connection being opened holds up the others.
    """

    def __init__(
        self,
        dblink: Dblink,
        parallel: int,
        failure_limit: int,
        on_done: Callable[[Any, Outcome, float], None],
        clusters: Clusters | None = None,
        relays: bool = False,
    ) -> None:
        self.dblink = dblink
        self.use_relays = relays
        self.parallel = max(1, parallel)
        self.failure_limit = failure_limit
        self.on_done = on_done
        self.clusters = clusters
        self.failures = 0
        self._queues: dict[str, deque[Any]] = {}
        # Connections kept between jobs (Connect.reuse), idle, by conninfo.
        self._kept: dict[str, list[str]] = {}
        self._relays: Relays | None = None
        # The relay of each connection opened through one, by connection name.
        self._route: dict[str, Relay] = {}

    @classmethod
    def over_fleet(
        cls,
        dblink: Dblink,
        settings: Settings,
        on_done: Callable[[Any, Outcome, float], None],
        clusters: Clusters,
        *,
        stop_early: bool = True,
    ) -> Fanout:
        """The fan-out of a wave of tenants as admmgt.settings say: max_parallel
        at once (per cluster), relays, and (with ``stop_early``) failure_limit."""
        limit = settings.failure_limit if stop_early else 0
        return cls(dblink, settings.max_parallel, limit, on_done, clusters, settings.relays)

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
        self._relays = self._open_relays(queues)
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
                    if name not in self._route:
                        self.dblink.disconnect(name)
            for names in self._kept.values():
                for name in names:
                    self.dblink.disconnect(name)
            self._kept.clear()
            if self._relays is not None:  # their connections end with them
                self._relays.close()
            self._route.clear()

    def _open_relays(self, queues: dict[str, deque[Any]]) -> Relays | None:
        """The run's relays (opened as jobs need them), if it uses any."""
        if not self.use_relays or self.clusters is None:
            return None
        in_flight = sum(min(len(q), self._limit(name)) for name, q in queues.items())
        if in_flight < 2:
            return None
        try:
            conninfo = self.clusters.relay_conninfo()
        except AdmmgtError:
            return None  # the jobs report what is wrong with the local cluster
        if not relayable(conninfo):
            return None
        return Relays(self.dblink, conninfo, in_flight)

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
                    self._check_relay(state, conn, exc)
                    if state.connecting is not None:
                        exc = connect_error(exc, state.connecting.conninfo)
                        state.connecting = None
                    self._advance(state, None, exc)
                    continue
                if not last:
                    state.read += 1  # the next result is read when it is there
                    continue
                state.waiting_on = None
                if state.connecting is not None:  # its relay opened it
                    assert state.relay is not None
                    self._opened(state, state.name, state.connecting, state.relay)
                    state.connecting = None
                    self._advance(state, state.name, None)
                    continue
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
        resend: Connect | None = None  # a Connect whose relay was gone: again
        while True:
            try:
                op: Connect | Run | Sleep
                if resend is not None:
                    op, resend = resend, None
                elif error is not None:
                    op = state.job.throw(error)
                else:
                    op = state.job.send(value)
            except StopIteration as stop:
                self._finish(state, stop.value)
                return
            except RemoteError as exc:  # one the job did not expect, e.g. connecting
                todo = (
                    "; retryable: check that it is reachable, then re-run"
                    if connection_lost(exc.sqlstate)
                    else ""
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
                relay = self._relay_of(state, op.conninfo)
                kept = (relay.kept if relay else self._kept).get(op.conninfo) if op.reuse else None
                if kept:
                    value = kept.pop()
                    self._opened(state, value, op, relay)
                elif relay is not None:  # sent; the job resumes when it is open
                    state.name = self.dblink.new_name()
                    sql = connect_sql(self.dblink.schema, relay, state.name, op.conninfo)
                    try:
                        self.dblink.send(relay.name, sql, "dblink_connect")
                    except RemoteError as exc:
                        self._check_relay(state, relay.name, exc)
                        if state.relay is None:  # that relay is gone: open it another way
                            resend = op
                            continue
                        error = exc
                    else:
                        state.connecting = op
                        state.waiting_on = (relay.name, "status text", "dblink_connect")
                        state.results, state.read = 1, 0
                        return
                else:
                    try:
                        value = self.dblink.connect(op.conninfo)
                    except RemoteError as exc:
                        error = exc
                    else:
                        self._opened(state, value, op, None)
            elif isinstance(op, Run):
                relay = self._route.get(op.conn)
                conn, sql = op.conn, op.sql
                if relay is not None:
                    conn = relay.name
                    sql = run_sql(
                        self.dblink.schema, relay, op.conn, op.sql, op.columns, op.statements
                    )
                try:
                    self.dblink.send(conn, sql, op.sql)
                except RemoteError as exc:
                    error = exc
                    self._check_relay(state, conn, exc)
                else:
                    state.waiting_on = (conn, op.columns, op.sql)
                    state.results, state.read = max(1, op.statements), 0
                    return
            else:
                state.wake_at = time.monotonic() + op.seconds
                return

    def _relay_of(self, state: _Active, conninfo: str) -> Relay | None:
        """The relay through which the job opens a connection to ``conninfo``, if any."""
        if self._relays is None or not relayable(conninfo):
            return None
        if state.relay is None:
            state.relay = self._relays.take()
        return state.relay

    def _opened(self, state: _Active, name: str, op: Connect, relay: Relay | None) -> None:
        state.connections.append(name)
        if op.reuse:
            state.reusable[name] = op.conninfo
        if relay is not None:
            self._route[name] = relay

    def _finish(self, state: _Active, outcome: Outcome) -> None:
        # A job that ended ok or noop left its connections outside any
        # transaction: the reusable ones wait for the next job; any other
        # outcome may have left one in a bad state, so they all close (on a
        # relay, with the relay's next statement or with the relay).
        keep = outcome.outcome in ("ok", "noop")
        for name in state.connections:
            conninfo = state.reusable.get(name)
            relay = self._route.pop(name, None)
            if keep and conninfo is not None:
                (relay.kept if relay else self._kept).setdefault(conninfo, []).append(name)
            elif relay is not None:
                relay.closing.append(name)
            else:
                self.dblink.disconnect(name)
        state.connections.clear()
        state.reusable.clear()
        if state.relay is not None:  # a relay found gone was dropped (_check_relay)
            assert self._relays is not None
            self._relays.give_back(state.relay)
            state.relay = None
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

    def _check_relay(self, state: _Active, conn: str, exc: RemoteError) -> None:
        """After a lost connection on the job's relay: if the relay itself is gone
        (not only its tenant's connection), drop it with the connections it
        carried, so that the job's next Connect (e.g. _migration.settle) takes
        another relay. A relay that died unseen is found by the next job's
        first send (whose Connect then goes another way)."""
        relay = state.relay
        if relay is None or conn != relay.name or not connection_lost(exc.sqlstate):
            return
        assert self._relays is not None
        try:
            self.dblink.query(relay.name, "SELECT 'alive' AS status")
        except RemoteError:
            for name in [n for n, r in self._route.items() if r is relay]:
                del self._route[name]
                if name in state.connections:
                    state.connections.remove(name)
            self._relays.drop(relay)
            state.relay = None


def _cluster_unreachable(cluster: str, error: RemoteError) -> Outcome:
    return Outcome(
        "unreachable", f'cluster "{cluster}" is unreachable ({error.describe()})', error.sqlstate
    )
