"""One fleet run: the frame every operation over the fleet stands on.

    with fleet_run(plpy, "applyMaintenance", lock="maintenance") as run:
        run.start(arguments)                      # records the run (admmgt.runs)
        run.wave(templates, job, line, templates=True)
        run.wave(tenants, job, line)
        run.end(extra)                            # summary NOTICE (ZA001 if asked)

The run carries the settings (read once), the operation's lock, the dblink
wrapper, the clusters and the run's recorder; a wave runs one job per target
through the fan-out, records each outcome with its registry row and says
"template <db>: ..." or "[i/N] <db>: ...". If the body raises, the run is
still closed (finished) before the error goes on. This module is the one
place a RunRecorder is made (docs/concepts.md, invariant 11: a run is honest
about its end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._locks import take_operation_lock
from admmgt_plpy._registry import Tenant, place_conninfo, registry_update
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError
from admmgt_plpy._runguard import failure_of
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._settings import Settings, load_settings
from admmgt_plpy._transaction import RETRYABLE
from admmgt_plpy._transient import describe_blockers, lock_timeout_words
from admmgt_plpy._types import Fragment, Plpy

# The NOTICE text of one target, after its label: (outcome, elapsed ms) -> text.
Line = Callable[[Outcome, float], str]
# The registry UPDATE for one target's outcome (None: leave the row).
Registry = Callable[[Tenant, Outcome], "str | None"]


def new_recorder(
    plpy: Plpy, dblink: Dblink, clusters: Clusters, operation: str, arguments: dict[str, Any]
) -> RunRecorder:
    """Record a new run of ``operation``: the one place a RunRecorder is made."""
    return RunRecorder(plpy, dblink, clusters, operation, arguments)


def progress_label(label: str, done: int, total: int, *, template: bool) -> str:
    """How a target's NOTICE starts: "template <db>" or "[i/N] <db>"."""
    return f"template {label}" if template else f"[{done}/{total}] {label}"


def keep_error(tenant: Tenant, outcome: Outcome) -> str | None:
    """The default registry write of a wave: a failed database's error in its row."""
    if outcome.outcome != "failed":
        return None
    return registry_update(tenant.id, error=outcome.message, touch=False)


class FleetRun:
    """One run of one operation: see the module's docstring."""

    def __init__(self, plpy: Plpy, operation: str, settings: Settings | None = None) -> None:
        self.plpy = plpy
        self.operation = operation
        self._settings = settings
        self._dblink: Dblink | None = None
        self._clusters: Clusters | None = None
        self._recorder: RunRecorder | None = None
        self._closed = False
        self.words: dict[str, str] | None = None
        self.counted: str | None = None

    @property
    def settings(self) -> Settings:
        """admmgt.settings, read once (at the start of the run, unless it does without)."""
        if self._settings is None:
            self._settings = load_settings(self.plpy)
        return self._settings

    @property
    def dblink(self) -> Dblink:
        if self._dblink is None:
            self._dblink = Dblink(self.plpy)
        return self._dblink

    @property
    def clusters(self) -> Clusters:
        if self._clusters is None:
            self._clusters = Clusters(self.plpy)
        return self._clusters

    def reload_clusters(self) -> Clusters:
        """admmgt.clusters read again (after registering one)."""
        self._clusters = Clusters(self.plpy)
        return self._clusters

    @property
    def recorder(self) -> RunRecorder:
        if self._recorder is None:
            raise RuntimeError(f"{self.operation}: the run was not started")
        return self._recorder

    @property
    def run_id(self) -> int:
        return self.recorder.run_id

    def start(
        self,
        arguments: dict[str, Any],
        *,
        words: dict[str, str] | None = None,
        counted: str | None = None,
    ) -> RunRecorder:
        """Record the run. ``words`` and ``counted`` are for its summary
        (RunRecorder.finish), also when the run ends by an error."""
        self.words, self.counted = words, counted
        self._recorder = new_recorder(
            self.plpy, self.dblink, self.clusters, self.operation, arguments
        )
        return self._recorder

    def wave(
        self,
        targets: Sequence[Tenant],
        job: Callable[[Tenant], Job],
        line: Line,
        *,
        templates: bool = False,
        registry: Registry = keep_error,
    ) -> None:
        """Run ``job`` on every target, each recorded (with ``registry``'s UPDATE
        of its row) and NOTICEd. Templates run one at a time and do not count
        towards the failure limit; tenants N at a time per cluster."""
        recorder = self.recorder
        total, done = len(targets), [0]

        def on_done(target: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
            recorder.target(
                target.database,
                target.cluster,
                outcome,
                elapsed_ms,
                registry=registry(target, outcome),
            )
            if not templates:
                done[0] += 1
            label = progress_label(target.label, done[0], total, template=templates)
            recorder.say(outcome, f"{label}: {line(outcome, elapsed_ms)}")

        if templates:
            fanout = Fanout(self.dblink, 1, 0, on_done, self.clusters)
        else:
            fanout = Fanout.over_fleet(self.dblink, self.settings, on_done, self.clusters)
        fanout.run(list(targets), job)

    def one(
        self,
        target: Tenant,
        job: Job,
        line: Line,
        *,
        label: str | None = None,
        registry: Registry | None = None,
    ) -> Outcome:
        """Run one job on one target, record and say it; return its outcome."""
        result: list[Outcome] = []
        recorder = self.recorder

        def on_done(t: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
            result.append(outcome)
            sql = registry(t, outcome) if registry is not None else None
            recorder.target(t.database, t.cluster, outcome, elapsed_ms, registry=sql)
            recorder.say(outcome, f"{label or t.label}: {line(outcome, elapsed_ms)}")

        Fanout(self.dblink, 1, 0, on_done, self.clusters).run([target], lambda _: job)
        return result[0]

    def finish(self) -> str:
        """Close the run; its one-line summary."""
        self._closed = True
        return self.recorder.finish(self.words, self.counted)

    def end(self, extra: str = "", *, raise_failure: bool = False, name: str | None = None) -> None:
        """Close the run and say its summary (``name`` in place of the operation's,
        ``extra`` after it); with ``raise_failure``, then RunFailed (ZA001) if a
        database failed or a script was refused (_runguard.end_run)."""
        summary = self.finish()
        if name is not None:
            summary = summary.replace(self.operation, name, 1)
        self.plpy.notice(summary + extra)
        failed = failure_of(self.recorder) if raise_failure else None
        if failed is not None:
            raise failed

    def nothing_to_do(self, message: str) -> None:
        """Say ``message`` and record no run, but end an interrupted run of this
        operation (see :func:`end_interrupted`)."""
        self.plpy.notice(message)
        end_interrupted(self.plpy, self.operation)

    def _close(self) -> None:
        """On the way out of the ``with``: a started run is finished, however it ended."""
        if self._recorder is not None and not self._closed:
            self.finish()


@contextmanager
def fleet_run(
    plpy: Plpy,
    operation: str,
    *,
    lock: str | None = None,
    lock_name: str | None = None,
    locks: Sequence[tuple[str, str]] = (),
    read_settings: bool = True,
) -> Iterator[FleetRun]:
    """A run of ``operation``: settings read (first, unless ``read_settings`` is
    false: then when first used), the operation lock taken (``lock``, a key of
    _locks.OPERATION_LOCKS; ``lock_name`` names it in the busy error), then
    each of ``locks`` ((lock, name) pairs), in that order."""
    settings = load_settings(plpy) if read_settings else None
    if lock is not None:
        take_operation_lock(plpy, lock, lock_name or operation)
    for key, name in locks:
        take_operation_lock(plpy, key, name)
    run = FleetRun(plpy, operation, settings)
    try:
        yield run
    finally:
        run._close()


def end_interrupted(plpy: Plpy, operation: str) -> None:
    """For an operation that found nothing to do and records no run: if a run of
    it was interrupted, record a noop run, which ends it (unfinished_runs lists
    an interrupted run until a later run of the same operation ends)."""
    row = plpy.execute(
        plpy.prepare(
            """SELECT EXISTS (SELECT FROM admmgt.unfinished_runs
                              WHERE operation = $1 AND state = 'interrupted') AS yes""",
            ["text"],
        ),
        [operation],
    )
    if not row[0]["yes"]:
        return
    recorder = new_recorder(plpy, Dblink(plpy), Clusters(plpy), operation, {"after": "interrupted"})
    plpy.notice(recorder.finish() + "; an interrupted run of it is now over")


# ------------------------------------------------------------- job helpers


class Progress:
    """What a job is doing, for the error message if it fails there."""

    def __init__(self, doing: str = "reading the catalog") -> None:
        self.doing = doing


UTC_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,YMD"


def utc_session(target: Tenant, clusters: Clusters) -> Fragment:
    """Job fragment: a connection to ``target``'s place whose dates are printed
    and read as UTC, ISO."""
    # Bounds are printed and compared as UTC dates, whatever the database's
    # defaults; set when the session starts, so it costs no round trip.
    return (yield Connect(place_conninfo(clusters, target.place, options=UTC_OPTIONS)))


def database_failure(
    target: Tenant,
    exc: RemoteError,
    doing: str,
    attempts: int,
    what: str,
    procedure: str,
    unchanged: str,
    blockers: list[dict[str, Any]] | None = None,
) -> Outcome:
    """A database's failed Outcome: what failed where, and what to do about it.
    ``blockers``: for a lock, who held locks there (_transient.BLOCKERS rows)."""
    if exc.sqlstate in RETRYABLE:
        why = lock_timeout_words(exc, attempts)
        todo = (
            f"retryable: {describe_blockers(blockers or [])}; re-run {procedure} once it is "
            f"released; {unchanged} in this database"
        )
    else:
        why = f"({exc.sqlstate} {exc.message})"
        todo = (
            f"{unchanged} in this database; fix the cause and re-run {procedure}, "
            "or hold the tenant back with updateflag = false"
        )
    return Outcome(
        "failed",
        f'database "{target.database}": {what} failed while {doing} {why}; {todo}',
        exc.sqlstate,
        exc.statement,
    )
