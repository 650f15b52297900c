"""Durable records of a run: admmgt.runs, admmgt.run_log and the registry.

The procedures are SECURITY DEFINER and so cannot COMMIT; their own
transaction ends only with the CALL. Records are therefore written through a
dblink connection back to the admin database, each committed at once: other
sessions see progress as it happens, and a run that dies half-way keeps what
it had recorded.

Per-database records (run_log rows, registry updates, script_log rows) are
batched: written together, in one commit, once ``FLUSH_ROWS`` are waiting or
``FLUSH_SECONDS`` after the first of them, and always before any other
statement (``execute``) and at the end of the run (``finish``, which the
operations call on their error paths too). A batch is due only where a
database's records are complete (``say``, ``end_record`` or the fan-out's
tick between results), never between its run_log row and its script_log.

Recorded before said: the progress NOTICEs (``say``, ``notice``) wait with the
records they report and are sent by the same ``flush``, after its commit. A
client that vanished turns the next NOTICE into a FATAL of this backend; by
then every record that NOTICE reports is committed, so a killed client loses
no record of a database that was said to be done. A run killed half-way loses
at most the records not said yet; the next run reconciles the registry from
the databases' own histories, and the run itself is marked interrupted.

That side session can be lost (terminated by the administrator, a restart of
a pooler in between): a record that could not be written is written again on
a new session, once; if that fails too the CALL ends with one clear ERROR.
What each database did is in its own history either way.
"""

from __future__ import annotations

import json
import time
from typing import Any

from admmgt_plpy import _fanout
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._eta import Eta
from admmgt_plpy._registry import touched_at
from admmgt_plpy._remote import Dblink, Outcome, RemoteError
from admmgt_plpy._runguard import INTERRUPTED
from admmgt_plpy._transient import connection_cause, connection_lost

# A batch of per-database records is written once this many wait, or this long
# after the first of them; each write is one commit (one flush to disk).
FLUSH_ROWS = 50
FLUSH_SECONDS = 0.1


class RunRecorder:
    def __init__(
        self,
        plpy: Any,
        dblink: Dblink,
        clusters: Clusters,
        operation: str,
        arguments: dict[str, Any],
    ) -> None:
        self.plpy = plpy
        self.dblink = dblink
        self.operation = operation
        self.started = time.monotonic()
        self.eta = Eta(operation)
        self.counts: dict[str, int] = {}
        self.outcome: str | None = None
        self.refusals: list[str] = []
        self.failed_databases: list[str] = []  # failed or unreachable, refusals aside
        self._pending: list[str] = []  # statements not yet written (see FLUSH_ROWS)
        self._pending_since = 0.0
        self._records = 0  # in _pending: a database's run_log row and registry update are one
        self._notices: list[str] = []  # NOTICEs to send once the records before them are written
        _fanout.TICK[0] = self._tick  # the fan-out writes a due batch between results too
        row = plpy.execute(
            "SELECT session_user AS u, pg_current_xact_id_if_assigned() IS NOT NULL AS wrote,"
            " pg_backend_pid() AS pid, (SELECT backend_start FROM pg_catalog.pg_stat_activity"
            " WHERE pid = pg_backend_pid()) AS since"
        )[0]
        if row["wrote"]:
            # Our records go through another session: it could not see the
            # caller's uncommitted rows (e.g. tenants just INSERTed) and would
            # wait forever on rows the caller has locked.
            raise AdmmgtError(
                f"{operation} was called in a transaction that has already changed data; "
                "admmgt records progress from a separate session, which cannot see those "
                "changes until they are committed. Nothing was done",
                hint=f"COMMIT first, then CALL admmgt.{operation}() on its own "
                "(in psql, not in the same -c string or BEGIN block as the INSERTs).",
            )
        who = row["u"]
        self.run_id = 0
        self.conninfo = clusters.admin_conninfo()
        self.conn = self._connect()
        # Earlier runs whose backend is gone are marked interrupted first; this
        # run records its backend so that a later one can tell it died.
        self._query(INTERRUPTED)
        self.run_id = int(
            self._query(
                "INSERT INTO admmgt.runs (operation, run_by, arguments, pid, backend_start)"
                f" VALUES ({self._q(operation)}, {self._q(who)},"
                f" {self._q(json.dumps(arguments))}::jsonb, {int(row['pid'])},"
                f" {self._q(row['since'])}::timestamptz) RETURNING id",
                "id bigint",
            )[0]["id"]
        )

    def _connect(self) -> str:
        try:
            return self.dblink.connect(self.conninfo)
        except RemoteError as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: RemoteError) -> AdmmgtError:
        run = f" run {self.run_id}" if self.run_id else ""
        return AdmmgtError(
            f"{self.operation}{run}: admmgt could not record its progress in the admin "
            f"database ({exc.describe()}); what each database did is in its own "
            "admmgt.script_history, and the next run reconciles the registry from it",
            hint=f"Check the admin database, then CALL admmgt.{self.operation}() again.",
        )

    def _query(self, sql: str, columns: str = "status text") -> list[dict[str, Any]]:
        """Run and commit ``sql`` on the side session; on a lost session, once
        more on a new one."""
        try:
            return self.dblink.query(self.conn, sql, columns)
        except RemoteError as exc:
            if not connection_lost(exc.sqlstate):
                raise self._lost(exc) from None
            self.dblink.disconnect(self.conn)
            self.conn = self._connect()
            self.plpy.notice(
                f"{self.operation}: the session recording this run lost its connection to the "
                f"admin database ({connection_cause(exc)}); reconnected, the run goes on"
            )
        try:
            return self.dblink.query(self.conn, sql, columns)
        except RemoteError as exc:
            raise self._lost(exc) from None

    def _q(self, value: Any) -> str:
        return str(self.plpy.quote_nullable(None if value is None else str(value)))

    def target(
        self,
        dbname: str,
        cluster: str,
        outcome: Outcome,
        elapsed_ms: float,
        *,
        scriptid: int | None = None,
        registry: str | None = None,
        refusal: bool = False,
    ) -> None:
        """Log one target's outcome; ``registry`` is an UPDATE of its row, run alongside.
        A database of an unreachable cluster keeps its row as it was: nothing was
        learnt about it."""
        if outcome.outcome == "unreachable":
            registry = None
        self.counts[outcome.outcome] = self.counts.get(outcome.outcome, 0) + 1
        if outcome.outcome in ("failed", "unreachable") and not refusal:
            self.failed_databases.append(dbname)
        q = self._q
        details = json.dumps(outcome.details) if outcome.details else None
        # The record may be written up to a batch later: its times are taken
        # now, from this server's clock (the admin database's own).
        finished = f"to_timestamp({time.time():.6f})"
        sql = (
            "INSERT INTO admmgt.run_log (run_id, dbname, cluster_name, scriptid, outcome, sqlstate,"
            " message, statement, started_at, finished_at, duration_ms, details) VALUES ("
            f"{self.run_id}, {q(dbname)}, {q(cluster)}, {q(scriptid)}, {q(outcome.outcome)},"
            f" {q(outcome.sqlstate)}, {q(outcome.message)}, {q(outcome.statement)},"
            f" {finished} - make_interval(secs => {elapsed_ms / 1000.0:.6f}), {finished},"
            f" {elapsed_ms:.1f}, {q(details)}::jsonb)"
        )
        if registry:
            # fleet_status trusts a run_log row only if it is not older than
            # the registry row's modifiedon: both get the same time.
            self._defer(sql, touched_at(registry, finished))
        else:
            self._defer(sql)

    def _defer(self, *statements: str) -> None:
        """Queue one record (its statements together) for the next batch. It is
        written when due, checked only once the database's records are complete
        (:meth:`end_record`): a batch never splits them."""
        if not self._pending:
            self._pending_since = time.monotonic()
            self._records = 0
        self._pending.extend(statements)
        self._records += 1

    def end_record(self) -> None:
        """A database's records are complete: write the batch (and send the
        NOTICEs waiting for it) if it is due; with no record waiting, the
        NOTICEs go at once."""
        waited = time.monotonic() - self._pending_since
        if not self._pending or self._records >= FLUSH_ROWS or waited >= FLUSH_SECONDS:
            self.flush()

    def _tick(self) -> None:
        # Between the fan-out's results: every on_done has finished its records.
        if self._pending and time.monotonic() - self._pending_since >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write and commit the waiting records now, in one transaction; then
        send the NOTICEs that waited for them."""
        if self._pending:
            batch, self._pending = self._pending, []
            self._query(";\n".join(batch))
        notices, self._notices = self._notices, []
        for text in notices:
            self.plpy.notice(text)

    def notice(self, text: str) -> None:
        """A NOTICE sent in order with :meth:`say`'s, after the records before it."""
        self._notices.append(text)
        self.end_record()

    def refused(self, dbname: str, cluster: str, scriptid: int, message: str) -> None:
        """Log a script refused before it ran (compile error, validation, id order)
        as a failure of ``dbname`` (the template): the run's outcome becomes failed."""
        self.refusals.append(message)
        self.target(
            dbname, cluster, Outcome("failed", message), 0.0, scriptid=scriptid, refusal=True
        )
        self.end_record()

    def say(self, outcome: Outcome, line: str) -> None:
        """One target's progress NOTICE; none for a database of an unreachable
        cluster, which the fan-out reported once for the whole cluster. Every
        few seconds of a long wave, a NOTICE with what is left (_eta). The
        NOTICEs are sent once the records before them are committed."""
        if outcome.outcome != "unreachable":
            self._notices.append(line)
        eta = self.eta.line(line)
        if eta:
            self._notices.append(eta)
        self.end_record()  # say() comes last of a database's records

    def execute(self, sql: str) -> None:
        """Run and commit one statement in the admin database at once, after
        the records still waiting (it may read them)."""
        self.flush()
        self._query(sql)

    def script_log(self, dbname: str, executed: list[tuple[int, str]]) -> None:
        """The proof of concept's admmgt.script_log: every statement run, per database."""
        if not executed:
            return
        q = self._q
        values = ", ".join(f"({sid}, {q(dbname)}, {q(sql)})" for sid, sql in executed)
        self._defer(f"INSERT INTO admmgt.script_log (scriptid, dbname, commstat) VALUES {values}")

    def finish(self, words: dict[str, str] | None = None, counted: str | None = None) -> str:
        """Close the run and return its one-line summary for the final NOTICE.

        ``words`` names outcomes for the reader, e.g. {"ok": "created"};
        ``counted`` says what the counts are of, e.g. "the template included".
        """
        if self.counts.get("failed") or self.counts.get("unreachable"):
            outcome = "failed"
        elif self.counts.get("skipped") and not self.counts.get("ok"):
            outcome = "aborted"
        elif self.counts.get("ok"):
            outcome = "ok"
        else:
            outcome = "noop"
        self.outcome = outcome
        summary = dict(self.counts)
        # The records still waiting and the run's end, in one commit.
        self._pending.append(
            f"UPDATE admmgt.runs SET finished_at = clock_timestamp(), outcome = {self._q(outcome)},"
            f" summary = {self._q(json.dumps(summary))}::jsonb WHERE id = {self.run_id}"
        )
        self.flush()
        if _fanout.TICK[0] == self._tick:
            _fanout.TICK[0] = None
        self.dblink.disconnect(self.conn)
        elapsed = time.monotonic() - self.started
        words = words or {}
        parts = (
            ", ".join(f"{n} {words.get(k, k)}" for k, n in sorted(self.counts.items()))
            or "nothing done"
        )
        of = f"; {counted}" if counted and self.counts else ""
        return f"{self.operation}: {parts} in {elapsed:.1f} s (run {self.run_id}{of})"
