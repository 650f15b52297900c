"""The history table each managed database keeps of itself: the truth of its version.

``admmgt.script_history`` lives in the template and every tenant. It is written
in the same remote transaction as the script it records, travels into new
tenants with CREATE DATABASE ... TEMPLATE, and is what the admin registry
(vendor_db_settings.scriptversion) is reconciled from.

Each row is an event. A script counts as applied when its latest event is
``apply`` or ``baseline``; ``partial`` means its transactional part committed
but its declared non-transactional steps have not all finished; ``rollback``
undoes it.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy._remote import Dblink, RemoteError, Run
from admmgt_plpy._types import Fragment

# One statement, because async dblink sends take one statement each.
ENSURE_TABLE = """\
DO $admmgt$ BEGIN
    IF to_regclass('admmgt.script_history') IS NOT NULL THEN
        RETURN;  -- the usual case: nothing to lock, change or log
    END IF;
    CREATE SCHEMA IF NOT EXISTS admmgt;
    REVOKE ALL ON SCHEMA admmgt FROM PUBLIC;
    CREATE TABLE IF NOT EXISTS admmgt.script_history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        script_id integer NOT NULL,
        action text NOT NULL CHECK (action IN ('apply', 'partial', 'baseline', 'rollback')),
        checksum text,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        duration_ms numeric,
        applied_by text NOT NULL DEFAULT session_user,
        admin_run_id bigint
    );
    COMMENT ON TABLE admmgt.script_history IS
    'admmgt: scripts applied to this database, written in the same transaction as '
    'each script. The truth of this database''s version.';
END $admmgt$"""

HAS_TABLE = "SELECT to_regclass('admmgt.script_history') IS NOT NULL AS has"

# Latest event per script; the applied ones, highest first.
STATE = """\
SELECT script_id, action, checksum FROM (
    SELECT DISTINCT ON (script_id) script_id, action, checksum
    FROM admmgt.script_history ORDER BY script_id, id DESC) AS latest
WHERE action <> 'rollback' ORDER BY script_id"""
STATE_COLUMNS = "script_id integer, action text, checksum text"

VERSION = f"SELECT max(script_id) AS version FROM ({STATE}) AS s WHERE action <> 'partial'"
VERSION_COLUMNS = "version integer"

UNDEFINED_TABLE = "42P01"

# What the history says: the latest action per script (STATE's rows).
State = dict[int, str]


def read_state(conn: str) -> Fragment:
    """Job fragment: (whether the history table exists, the latest action per
    script), in one round trip. A database without the table (it gets it with
    its first script) has no history; any other error goes to the caller."""
    try:
        rows = yield Run(conn, STATE, STATE_COLUMNS)
    except RemoteError as exc:
        if exc.sqlstate != UNDEFINED_TABLE:
            raise
        return False, {}
    return True, state_of(rows)


def read_state_now(dblink: Dblink, conn: str) -> tuple[bool, State]:
    """read_state on a plain (synchronous) dblink connection outside a transaction."""
    try:
        rows = dblink.query(conn, STATE, STATE_COLUMNS)
    except RemoteError as exc:
        if exc.sqlstate != UNDEFINED_TABLE:
            raise
        return False, {}
    return True, state_of(rows)


def state_of(rows: list[dict[str, Any]]) -> State:
    return {r["script_id"]: r["action"] for r in rows}


def have(state: State) -> list[int]:
    """The scripts the database has (applied or baselined), in order."""
    return sorted(i for i, a in state.items() if a in ("apply", "baseline"))


def version_of(state: State) -> int | None:
    """The database's version: the highest script it has (None: none)."""
    applied = have(state)
    return applied[-1] if applied else None
