"""Failures that a plain re-run fixes: a lock not released in time, a lost connection.

A lock timeout or a deadlock says nothing against the script, and neither does
a connection that the administrator terminated or a server that restarted:
each database's own transaction rolled back, so nothing is half-applied. Such
a failure is reported as retryable, in words that name what happened (and, for
a lock, who held it), and never leaves a script failed for good.

Who held the lock is asked on the same connection once the wait has ended
(pg_locks, the sessions holding locks in that database), because a connection
busy waiting cannot be asked anything; the lock usually outlives the wait, so
its holder is still there to be named.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy._remote import RemoteError, Run

LOCK_STATES = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected

# A session admmgt talks to ended under it, or the server is (re)starting.
_GONE = {
    "57P01": "its connection was terminated by the administrator",
    "57P02": "the server restarted (crash shutdown)",
    "57P03": "the server is starting up or shutting down",
    "08001": "it could not be reached",
    "08004": "it refused the connection",
}


def connection_lost(sqlstate: str | None) -> bool:
    return bool(sqlstate) and (str(sqlstate)[:2] == "08" or sqlstate in _GONE)


def retryable(sqlstate: str | None) -> bool:
    """A failure that a plain re-run fixes, not a defect of the script."""
    return sqlstate in LOCK_STATES or connection_lost(sqlstate)


def lock_timeout_words(error: RemoteError, attempts: int) -> str:
    """What a lock wait that ran out says, the same in every operation."""
    tries = f" after {attempts} tries" if attempts > 1 else ""
    return f"could not get a lock within lock_timeout{tries} ({error.sqlstate} {error.message})"


def connection_cause(error: RemoteError) -> str:
    """What happened to the connection, in words, with the server's own text."""
    cause = _GONE.get(error.sqlstate, "its connection was lost")
    return f"{cause} ({error.describe()})"


# Granted relation locks of other sessions in this database, strongest and
# oldest first. Reading pg_locks takes no heavyweight lock, so this cannot
# wait on what it looks for; the session's lock_timeout bounds it anyway.
BLOCKERS = """\
SELECT l.pid, coalesce(nullif(a.application_name, ''), '(none)') AS app, l.mode,
       coalesce(quote_ident(n.nspname) || '.' || quote_ident(c.relname), l.relation::text)
           AS relation,
       coalesce(n.nspname || '.' || c.relname, l.relation::text) AS plain
FROM pg_catalog.pg_locks AS l
LEFT JOIN pg_catalog.pg_class AS c ON c.oid = l.relation
LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND coalesce(n.nspname, '') NOT IN ('pg_catalog', 'information_schema')
  AND coalesce(n.nspname, '') NOT LIKE 'pg\\_toast%'
ORDER BY l.mode = 'AccessExclusiveLock' DESC, a.xact_start NULLS LAST, l.pid
LIMIT 20"""
BLOCKERS_COLUMNS = "pid integer, app text, mode text, relation text, plain text"


def find_blockers(conn: str) -> Any:
    """Job fragment: the sessions holding locks in this database (rows of BLOCKERS).
    Never raises: a connection that is gone names nobody."""
    try:
        rows = yield Run(conn, BLOCKERS, BLOCKERS_COLUMNS)
    except RemoteError:
        return []
    return list(rows)


def describe_blockers(rows: list[dict[str, Any]], relation: str | None = None) -> str:
    """ "a lock held by pid 123 (application "psql", AccessExclusiveLock on app.accounts)";
    the locks on ``relation`` (the one the failed statement needed, when known) first."""
    if not rows:
        return "a lock held by another session (gone by the time admmgt looked)"
    wanted = {relation, (relation or "").replace('"', "")} - {None, ""}
    mine = [r for r in rows if r["relation"] in wanted or r["plain"] in wanted]
    chosen = (mine or rows)[:3]
    held = ", ".join(
        f'pid {r["pid"]} (application "{r["app"]}", {r["mode"]} on {r["relation"]})' for r in chosen
    )
    return f"a lock held by {held}"
