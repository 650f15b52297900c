"""The one-database migration job: a chain of scripts (or what a tenant lacks
of it) applied to one database, each script in one remote transaction with the
routines and views following the template (_sync.SyncPlan).

The operations that run it over the fleet: applyScripts (_rollout), baseline
and replayScripts (_replay), rollbackScript (_undo), add_cluster (_clusters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._compile import Step
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._names import quote_ident
from admmgt_plpy._registry import Tenant, place_conninfo
from admmgt_plpy._remote import Connect, Job, Outcome, RemoteError, Run, Sleep
from admmgt_plpy._scripts import Script
from admmgt_plpy._settings import Settings
from admmgt_plpy._sync import Definition, SyncPlan, follow_template
from admmgt_plpy._transaction import RETRYABLE, TransactionFailed, in_one_trip, in_transaction
from admmgt_plpy._transient import (
    connection_cause,
    connection_lost,
    describe_blockers,
    find_blockers,
    lock_timeout_words,
    retryable,
)
from admmgt_plpy._types import Fragment

# ------------------------------------------------------------- one database's job


@dataclass(frozen=True)
class Migrated:
    """What a migration job (or a rollback's) found and did on its database, for
    the operation that ran it (never recorded as such; see ``migrated``).

    ``have``: the scripts the database has afterwards (by its own history);
    ``executed``: (script id, statement) of every step run, for the script log;
    ``captured``: on the template, the definitions each script had around it,
    {script id: {before?: {kind: [Definition]}}}.
    """

    have: tuple[int, ...] = ()
    executed: tuple[tuple[int, str], ...] = ()
    captured: dict[int, dict[bool, dict[str, list[Definition]]]] = field(default_factory=dict)


MIGRATED = "migrated"  # the Outcome.private key that holds it


def migrated(outcome: Outcome) -> Migrated:
    """The Migrated an outcome carries (an empty one: the job never got that far)."""
    found = outcome.private.get(MIGRATED)
    return found if isinstance(found, Migrated) else Migrated()


def carrying(outcome: Outcome, result: Migrated) -> Outcome:
    """``outcome``, now carrying ``result``."""
    outcome.private[MIGRATED] = result
    return outcome


def migrate(
    target: Tenant,
    chain: list[Script],
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    sync: SyncPlan,
    who: str = "tenant",
    template_schema: str | None = None,
) -> Job:
    """Apply to one database every chain script its own history lacks.

    A schema tenant (or template schema) is a connection to its host database
    whose search_path is its schema, its own history table, and each script
    compiled with ``template_schema`` mapped to its schema (only the scripts
    it lacks: Script.for_schema)."""
    table = target.history_table
    if target.is_schema and target.host is None:
        return Outcome(
            "failed",
            f'{who} "{name_of(target)}": cluster "{target.cluster}" has no host database for '
            "schema tenants (admmgt.schema_hosts); register it, then re-run",
        )
    conn = yield from _session(clusters, target)
    try:
        has_table, state = yield from _history.read_state(conn, table)
    except RemoteError as exc:
        return (yield from history_unread(target, who, conn, exc))
    applied: list[int] = []
    executed: list[tuple[int, str]] = []
    dropped: list[str] = []
    captured: dict[int, dict[bool, dict[str, list[Definition]]]] = {}
    for script in chain:
        action = state.get(script.id)
        if action in ("apply", "baseline"):
            continue
        if target.is_schema:
            try:
                script = script.for_schema(template_schema or target.database, target.database)
            except MetadataError as exc:
                return unmappable(target, who, script, exc, state)
        steps = script.compiled.steps
        if action != "partial":
            try:
                captured[script.id] = yield from _transactional_part(
                    conn, script, settings, run_id, sync, has_table, table
                )
                has_table = True
            except StepFailed as failure:
                if not failure.in_doubt:
                    return step_failure(target, who, script, failure, state)
                try:
                    settled = yield from settle(clusters, settings, target, table, script.id)
                except RemoteError:
                    settled = None
                if settled is None:  # still unknown: say so
                    outcome = step_failure(target, who, script, failure, state)
                    outcome.message += IN_DOUBT
                    return outcome
                conn, committed = settled
                if not committed:
                    return step_failure(target, who, script, failure, state)
                # Committed; what the template's definitions were around it is
                # not known again (a later refresh_* copies them).
                captured[script.id], has_table = {True: {}, False: {}}, True
            executed += [(script.id, s.sql) for s in steps if s.transactional]
            dropped += [s.note for s in steps if s.kind == "drop_column" and s.note]
        later = [s for s in steps if not s.transactional]
        if later or action == "partial":
            try:
                for number, step in enumerate(steps, 1):
                    if not step.transactional:
                        yield from _run_outside_transaction(conn, step, number)
                yield Run(conn, history_insert(script, "apply", run_id, table))
            except StepFailed as failure:
                state[script.id] = "partial"
                return step_failure(target, who, script, failure, state)
            executed += [(script.id, s.sql) for s in later]
        state[script.id] = "apply"
        applied.append(script.id)
    details: dict[str, Any] = {"applied": applied, "version": _history.version_of(state)}
    if applied:
        details["script"] = applied[-1]
    if dropped:
        details["dropped_columns"] = dropped
    result = Migrated(tuple(_history.have(state)), tuple(executed), captured)
    return carrying(Outcome("ok" if applied else "noop", details=details), result)


def schema_session(clusters: Clusters, target: Tenant) -> Fragment:
    """Job fragment: a connection to a schema tenant's host database whose
    search_path is the tenant's schema. The fan-out may hand it one that an
    earlier schema tenant's job of the run left (Connect.reuse: one
    connection per worker, not per schema), so what that session may carry
    is discarded first: DISCARD ALL (temporary tables, SET ROLE and SESSION
    AUTHORIZATION, session advisory locks, settings, prepared statements,
    LISTEN), which RESET ALL alone would not. DISCARD ALL cannot run in a
    transaction block, a multi-statement query's implicit one included, so it
    is a round trip of its own, before the one that sets the search_path."""
    place = target.place
    assert place.schema is not None
    conn = yield Connect(clusters.conninfo(place.cluster, place.database), reuse=True)
    yield Run(conn, "DISCARD ALL")
    path = _lit(quote_ident(place.schema))
    yield Run(conn, f"SELECT pg_catalog.set_config('search_path', {path}, false)")
    return conn


def _session(clusters: Clusters, target: Tenant) -> Fragment:
    """Job fragment: a connection to the target's place (for a schema, its session)."""
    if target.is_schema:
        return (yield from schema_session(clusters, target))
    return (yield Connect(place_conninfo(clusters, target.place)))


# admmgt's own sessions in this database still running a COMMIT (not this one).
_COMMITTING = (
    "SELECT count(*) AS n FROM pg_catalog.pg_stat_activity WHERE datname = current_database()"
    " AND application_name = 'admmgt' AND pid <> pg_backend_pid() AND state = 'active'"
    " AND query = 'COMMIT'"
)
IN_DOUBT = (
    "; its COMMIT was cut off and whether it committed could not be read, so it may have"
    " the script: the next run reads its history and applies the script only if it is missing"
)


def settle(
    clusters: Clusters, settings: Settings, target: Tenant, table: str, script_id: int
) -> Fragment:
    """Job fragment, after a script's COMMIT was cut off (StepFailed.in_doubt):
    whether it committed, by the database's own history read on a new
    connection; returns (that connection, committed), or None while an admmgt
    COMMIT still runs there after wait_timeout_ms. A COMMIT that reached the
    server finishes there although the session carrying it ended (a relay,
    docs/concepts.md), and the history row is written in the same transaction."""
    conn = yield from _session(clusters, target)
    for _ in range(max(1, settings.wait_timeout_ms // 100)):
        if not (yield Run(conn, _COMMITTING, "n bigint"))[0]["n"]:
            break
        yield Sleep(0.1)
    else:
        return None
    _has_table, state = yield from _history.read_state(conn, table)
    return conn, state.get(script_id) in ("apply", "partial")


class StepFailed(Exception):
    """A step of one script (or its transaction around the steps) failed on one
    database; step_failure words it as the database's outcome."""

    def __init__(
        self,
        number: int,
        step: Step | None,
        error: RemoteError,
        attempts: int = 1,
        blockers: list[dict[str, Any]] | None = None,
        in_doubt: bool = False,
    ) -> None:
        super().__init__(error.message)
        self.number = number  # 0: the history row or the transaction itself
        self.step = step
        self.error = error
        self.attempts = attempts
        self.blockers = blockers or []  # for a lock: who held locks (_transient.BLOCKERS)
        self.in_doubt = in_doubt  # lost during its COMMIT: see settle()

    @classmethod
    def at(cls, number: int, steps: tuple[Step, ...], failed: TransactionFailed) -> StepFailed:
        """The transaction failed in step ``number`` of ``steps`` (0: outside them)."""
        step = steps[number - 1] if number else None
        return cls(number, step, failed.error, failed.attempts, failed.blockers, failed.in_doubt)


def in_step_transaction(
    conn: str, settings: Settings, steps: tuple[Step, ...], body: Callable[[list[int]], Fragment]
) -> Fragment:
    """Job fragment: ``body`` in one remote transaction, all of it or nothing.

    Run by _transaction.in_transaction (lock_timeout, retries with backoff;
    TimeZone UTC). ``body`` keeps the number of the step it is running in
    ``position[0]`` (0: none of ``steps``), so that a failure names its step.
    """
    position = [0]

    def attempt() -> Fragment:
        position[0] = 0
        return (yield from body(position))

    try:
        return (yield from in_transaction(conn, settings, attempt, utc=True))
    except TransactionFailed as failed:
        number = position[0]
        raise StepFailed.at(number, steps, failed) from None


def _transactional_part(
    conn: str,
    script: Script,
    settings: Settings,
    run_id: int,
    sync: SyncPlan,
    has_table: bool = False,
    table: str = _history.DATABASE_HISTORY,
) -> Fragment:
    """Synced objects, every transactional step and the history row, in one transaction.
    Returns what the template's definitions were before and after (when capturing).

    With no routines or views to follow, all of it goes in one round trip
    (_transaction.in_one_trip); its failure names the step from the statement
    that failed. ``has_table``: the history table was there when the history
    was read, so it is not made again."""
    steps = script.compiled.steps
    if _one_trip(sync, script.id, steps):
        action = "apply" if all(s.transactional for s in steps) else "partial"
        numbers = [i for i, s in enumerate(steps, 1) if s.transactional]
        # The steps first, so that pg_stat_activity (its first 1 kB of the
        # query) shows them, then the history table (if new) and its row.
        statements = [steps[i - 1].sql for i in numbers]
        if not has_table:
            statements.append(_history.ensure_table_sql(table))
        statements.append(history_insert(script, action, run_id, table))
        try:
            yield from in_one_trip(conn, settings, statements, utc=True)
        except TransactionFailed as failed:
            index = failed.index
            number = numbers[index] if index is not None and index < len(numbers) else 0
            raise StepFailed.at(number, steps, failed) from None
        return {True: {}, False: {}}

    def body(position: list[int]) -> Fragment:
        yield Run(conn, _history.ensure_table_sql(table))
        before = yield from follow_template(conn, sync, script.id, True)
        for index, step in enumerate(steps, 1):
            if step.transactional:
                position[0] = index
                yield Run(conn, step.sql)
        position[0] = 0
        after = yield from follow_template(conn, sync, script.id, False)
        action = "apply" if all(s.transactional for s in steps) else "partial"
        yield Run(conn, history_insert(script, action, run_id, table))
        return {True: before, False: after}

    return (yield from in_step_transaction(conn, settings, steps, body))


def _one_trip(sync: SyncPlan, script_id: int, steps: tuple[Step, ...]) -> bool:
    """Whether the script's transaction can go as one query: no definitions to
    capture or apply around it, and each transactional step one statement (a
    ';' anywhere but at its end, even quoted, or no text at all, sends it step
    by step: the query's results must be one per statement)."""
    if sync.has_work(script_id):
        return False
    return all(
        s.sql.strip().rstrip(";").strip() and ";" not in s.sql.strip().rstrip(";")
        for s in steps
        if s.transactional
    )


def _run_outside_transaction(conn: str, step: Step, number: int) -> Fragment:
    """A declared non-transactional step (idempotent by declaration), in autocommit."""
    try:
        if step.kind == "create_index" and step.name:
            # A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that
            # IF NOT EXISTS would then skip: drop such a leftover first.
            yield Run(
                conn,
                (
                    "DO $admmgt$ DECLARE i regclass := to_regclass(" + _lit(step.name) + ");"
                    " BEGIN IF i IS NOT NULL AND NOT (SELECT indisvalid FROM pg_catalog.pg_index"
                    " WHERE indexrelid = i) THEN EXECUTE format('DROP INDEX %s', i); END IF;"
                    " END $admmgt$"
                ),
            )
        yield Run(conn, step.sql)
    except RemoteError as exc:
        # The session's lock_timeout (wait_timeout_ms) bounds a concurrent
        # build's waits for older transactions; its INVALID leftover is
        # dropped above on the re-run.
        blockers = (yield from find_blockers(conn)) if exc.sqlstate in RETRYABLE else []
        raise StepFailed(number, step, exc, blockers=blockers) from None


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def history_insert(
    script: Script, action: str, run_id: int, table: str = _history.DATABASE_HISTORY
) -> str:
    """The history row of ``script`` (``action``: apply, partial, baseline or
    rollback) in ``table``, written in the same transaction as what it records."""
    return (
        f"INSERT INTO {table} (script_id, action, checksum, duration_ms,"
        f" admin_run_id) VALUES ({script.id}, {_lit(action)}, {_lit(script.compiled.checksum)},"
        f" extract(epoch FROM clock_timestamp() - now()) * 1000, {run_id})"
    )


def step_failure(
    target: Tenant,
    who: str,
    script: Script,
    failure: StepFailed,
    state: dict[int, str],
    doing: str = "",
) -> Outcome:
    exc = failure.error
    subject = f"script {script.id}" + (f" {doing}" if doing else "")
    if failure.step:
        where = f"step {failure.number} ({failure.step.kind} {failure.step.target})"
        statement = failure.step.sql  # not admmgt's own (e.g. its INVALID-index check)
    else:
        # BEGIN, the routine and view sync, the history row or COMMIT: admmgt's
        # own statements, never shown as the failing one. A connection lost
        # in a one-trip transaction names no statement at all.
        where = "its transaction"
        if not connection_lost(exc.sqlstate):
            where += " (outside its steps)"
        statement = None
    if retryable(exc.sqlstate):
        relation = failure.step.target if failure.step else None
        outcome = retryable_outcome(
            target,
            who,
            exc,
            failure.blockers,
            f"{subject} failed at {where}",
            relation,
            failure.attempts,
        )
        outcome.statement = statement
    else:
        todo = (
            "fix the template's script"
            if who == "template"
            else "fix the tenant or mark it held back with updateflag = false"
        )
        message = (
            f'{who} "{name_of(target)}": {subject} failed at {where} '
            f"({exc.sqlstate} {exc.message}); {todo}"
        )
        outcome = Outcome("failed", message, exc.sqlstate, statement)
    outcome.details = {
        "script": script.id,
        "step": failure.number,
        "version": _history.version_of(state),
    }
    outcome.details.update(retryable=retryable(exc.sqlstate))
    return carrying(outcome, Migrated(tuple(_history.have(state))))


def retryable_outcome(
    target: Tenant,
    who: str,
    exc: RemoteError,
    blockers: list[dict[str, Any]],
    what: str,
    relation: str | None,
    attempts: int = 1,
) -> Outcome:
    """A failure a plain re-run fixes, in words: who held the lock, or what
    happened to the connection. ``what``: what failed, e.g. "script 2 failed at
    step 1 (...)"."""
    if exc.sqlstate in RETRYABLE:
        why = (
            f"{describe_blockers(blockers, relation)}: {lock_timeout_words(exc, attempts)}; "
            "re-run once it is released"
        )
    else:
        why = f"{connection_cause(exc)}; a plain re-run is the fix"
    message = f'{who} "{name_of(target)}": {what}, retryable: {why}'
    return Outcome("failed", message, exc.sqlstate, details={"retryable": True})


def history_unread(target: Tenant, who: str, conn: str, exc: RemoteError) -> Job:
    """Job fragment: the outcome of a database whose history could not be read.
    Nothing was changed and its registry row keeps its version."""
    table = target.history_table
    where = "the schema" if target.is_schema else "the database"
    if not retryable(exc.sqlstate):
        return Outcome(
            "failed",
            f'{who} "{name_of(target)}": its history ({table}) could not be read '
            f"({exc.describe()}); fix that table in {where}, then re-run",
            exc.sqlstate,
        )
    blockers = (yield from find_blockers(conn)) if exc.sqlstate in RETRYABLE else []
    return retryable_outcome(
        target,
        who,
        exc,
        blockers,
        f"its history ({table}) could not be read",
        table,
    )


def unmappable(
    target: Tenant, who: str, script: Script, exc: MetadataError, state: dict[int, str]
) -> Outcome:
    """A script that cannot be compiled for a schema tenant (it names a schema
    other than the template's): nothing of it ran there."""
    outcome = Outcome(
        "failed",
        f'{who} "{name_of(target)}": script {script.id} cannot be compiled for a schema tenant '
        f"({exc.message}); nothing of it ran; fix the script's rows",
    )
    outcome.details = {"script": script.id, "step": 0, "version": _history.version_of(state)}
    return carrying(outcome, Migrated(tuple(_history.have(state))))


def name_of(target: Tenant) -> str:
    """How a failure message names a database, or a schema tenant (host.schema)."""
    return target.label if target.is_schema else target.database
