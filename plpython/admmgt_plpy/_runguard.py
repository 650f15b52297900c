"""A run is honest about its end (ARCHITECTURE.md, invariant 11).

Three pieces every operation that commits remotely shares:

1. :func:`refuse_transaction_block`, called first, before anything changes:
   the tenants' transactions commit through dblink, so a caller's ROLLBACK
   could not undo them. Such a CALL is refused the way ``CREATE DATABASE``
   is, inside ``BEGIN ... COMMIT`` and inside a query string of several
   statements (which PostgreSQL runs as one implicit transaction block).
2. :func:`mark_interrupted`: runs whose backend is gone (killed client,
   crash, restart) get the outcome ``interrupted`` instead of a NULL for good.
3. :func:`end_run`: the run's summary NOTICE, then, when any database failed
   or a script was refused, one ERROR with SQLSTATE ``ZA001`` (RunFailed),
   raised after every outcome is committed, so psql ``ON_ERROR_STOP``,
   pg_cron's job_run_details and CI see the failure and the run log keeps it.

How a procedure tells it is in a transaction block (a PL/Python procedure
declared SECURITY DEFINER always runs in an atomic context, so
``plpy.commit`` availability says nothing):

- ``transaction_timestamp() <> statement_timestamp()``: a transaction that
  started before this statement, i.e. a BEGIN sent earlier (psql, psql -f,
  a driver outside autocommit, an extended-protocol pipeline). PostgreSQL
  sets the transaction's start to the first statement's start, so a CALL
  that opened its own transaction always has the two equal.
- ``current_query()`` holding more than one statement: the message's
  statements share one timestamp, so ``psql -c "BEGIN; CALL ...; ROLLBACK"``
  is caught by counting statements in the query string (outside comments,
  quotes and dollar quotes).
A CALL nested in a function or DO block is not detected (docs/operations.md).
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy._errors import AdmmgtError, RunFailed


class InTransactionBlock(AdmmgtError):
    sqlstate = "25001"  # active_sql_transaction, as CREATE DATABASE reports it


def statements_in(text: str) -> int:
    """How many non-empty SQL statements ``text`` holds (split at top-level ``;``)."""
    count = 0
    pending = False  # a statement has started and not ended yet
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "-" and nxt == "-":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c == ";":
            count += pending
            pending = False
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        pending = True
        if c in "'\"":
            backslashes = c == "'" and i > 0 and text[i - 1] in "eE"
            i += 1
            while i < n:
                if backslashes and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == c:
                    if i + 1 < n and text[i + 1] == c:  # doubled quote
                        i += 2
                        continue
                    break
                i += 1
            i += 1
            continue
        if c == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = text.find("$", i + 1)
            tag = text[i : close + 1] if close > 0 else ""
            if (
                tag
                and all(ch.isalnum() or ch == "_" for ch in tag[1:-1])
                and not tag[1:2].isdigit()
            ):
                end = text.find(tag, close + 1)
                i = n if end < 0 else end + len(tag)
                continue
        i += 1
    return count + pending


def refuse_transaction_block(plpy: Any, operation: str) -> None:
    """Raise InTransactionBlock when the CALL runs inside a transaction block."""
    row = plpy.execute(
        "SELECT transaction_timestamp() <> statement_timestamp() AS began, current_query() AS query"
    )[0]
    several = statements_in(row["query"] or "") > 1
    if not (row["began"] or several):
        return
    where = (
        "inside a transaction block (BEGIN ... COMMIT)"
        if row["began"]
        else "in a query string of several statements, which PostgreSQL runs as one "
        "transaction block"
    )
    raise InTransactionBlock(
        f"admmgt.{operation} cannot run {where}: it commits in every database it "
        "touches as it goes, which a later ROLLBACK could not undo. Nothing was done",
        hint=f"CALL admmgt.{operation}(...) on its own, outside BEGIN and as the only "
        "statement of its query string (psql: one statement per line, or -c per statement).",
    )


# A run is alive while its backend is: same pid, same backend start. A NULL
# outcome whose backend is gone (killed, crashed, server restarted) never ends.
INTERRUPTED = """
UPDATE admmgt.runs AS r SET outcome = 'interrupted', finished_at = clock_timestamp(),
       summary = coalesce(r.summary, '{}'::jsonb) || jsonb_build_object(
           'interrupted', 'its backend (pid ' || coalesce(r.pid::text, '?') || ') is gone')
WHERE r.outcome IS NULL AND NOT EXISTS (
    SELECT FROM pg_catalog.pg_stat_activity AS a
    WHERE a.pid = r.pid AND a.backend_start = r.backend_start)
"""


def end_run(
    plpy: Any,
    recorder: Any,
    words: dict[str, str] | None = None,
    *,
    raise_failure: bool = True,
) -> None:
    """Close ``recorder``'s run (committed), say its summary, then raise RunFailed
    if a database failed or a script was refused (unless ``raise_failure``
    is false: NOTICE only, the behaviour before 0.4.0)."""
    summary = recorder.finish(words)
    plpy.notice(summary)
    if recorder.outcome != "failed" or not raise_failure:
        return
    refused = recorder.refusals
    failed = recorder.counts.get("failed", 0) + recorder.counts.get("unreachable", 0) - len(refused)
    parts = list(refused)
    if failed > 0:
        parts.append(f"{failed} database(s) failed")
    raise RunFailed(
        f"{recorder.operation} run {recorder.run_id} failed: "
        + ("; ".join(parts) or "see its run log")
        + "; every outcome is recorded",
        hint=f"SELECT * FROM admmgt.run_history WHERE run_id = {recorder.run_id} "
        "AND outcome <> 'ok'; (or admmgt log). Fix what it names and call "
        f"{recorder.operation} again; t_raise => false reports failures as NOTICEs only.",
    )
