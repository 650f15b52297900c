"""The history table each managed place keeps of itself: the truth of its version.

``admmgt.script_history`` lives in the template and every database tenant;
a schema tenant (and the template schema) keeps ``<schema>.admmgt_history``,
with the same columns (:func:`history_table`). It is written
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

from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._remote import Dblink, RemoteError, Run
from admmgt_plpy._types import Fragment

# Where a place keeps its history: a database in admmgt.script_history, a
# schema tenant (or the template schema) in its own schema, so that the
# history travels with the schema (pg_dump -n, promotion, drop).
DATABASE_HISTORY = "admmgt.script_history"
SCHEMA_HISTORY = "admmgt_history"


def history_table(schema: str | None = None) -> str:
    """The history table of a place: its database's, or ``schema``'s own (qualified)."""
    if schema is None:
        return DATABASE_HISTORY
    return f"{quote_ident(schema)}.{SCHEMA_HISTORY}"


def ensure_table_sql(table: str = DATABASE_HISTORY) -> str:
    """One statement (async dblink sends take one statement each) that makes
    ``table`` if it is not there; a schema's table goes in that schema, which
    exists already."""
    database = table == DATABASE_HISTORY
    make_schema = (
        "CREATE SCHEMA IF NOT EXISTS admmgt;\n    REVOKE ALL ON SCHEMA admmgt FROM PUBLIC;\n    "
        if database
        else ""
    )
    what = "this database" if database else "this schema"
    return f"""\
DO $admmgt$ BEGIN
    IF to_regclass({quote_literal(table)}) IS NOT NULL THEN
        RETURN;  -- the usual case: nothing to lock, change or log
    END IF;
    {make_schema}CREATE TABLE IF NOT EXISTS {table} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        script_id integer NOT NULL,
        action text NOT NULL CHECK (action IN ('apply', 'partial', 'baseline', 'rollback')),
        checksum text,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        duration_ms numeric,
        applied_by text NOT NULL DEFAULT session_user,
        admin_run_id bigint
    );
    COMMENT ON TABLE {table} IS
    'admmgt: scripts applied to {what}, written in the same transaction as '
    'each script. The truth of {what}''s version.';
END $admmgt$"""


def has_table_sql(table: str = DATABASE_HISTORY) -> str:
    return f"SELECT to_regclass({quote_literal(table)}) IS NOT NULL AS has"


def state_sql(table: str = DATABASE_HISTORY) -> str:
    """Latest event per script; the applied ones, highest first."""
    return f"""\
SELECT script_id, action, checksum FROM (
    SELECT DISTINCT ON (script_id) script_id, action, checksum
    FROM {table} ORDER BY script_id, id DESC) AS latest
WHERE action <> 'rollback' ORDER BY script_id"""


def version_sql(table: str = DATABASE_HISTORY) -> str:
    return (
        f"SELECT max(script_id) AS version FROM ({state_sql(table)}) AS s WHERE action <> 'partial'"
    )


def events_sql(table: str = DATABASE_HISTORY) -> str:
    """One row: how many events the history holds, the last one's id and the
    version they make; read in one snapshot. Rows are only ever appended
    (a rollback is an event too) with ids that only grow, so two equal
    readings mean nothing was recorded between them."""
    return (
        f"SELECT (SELECT count(*) FROM {table}) AS events,"
        f" (SELECT max(id) FROM {table}) AS last_id, ({version_sql(table)}) AS version"
    )


# A database's (the statements above for admmgt.script_history).
ENSURE_TABLE = ensure_table_sql()
HAS_TABLE = has_table_sql()
STATE = state_sql()
STATE_COLUMNS = "script_id integer, action text, checksum text"
VERSION = version_sql()
EVENTS = events_sql()
EVENTS_COLUMNS = "events bigint, last_id bigint, version integer"

UNDEFINED_TABLE = "42P01"

# What the history says: the latest action per script (STATE's rows).
State = dict[int, str]


def read_state(conn: str, table: str = DATABASE_HISTORY) -> Fragment:
    """Job fragment: (whether the history table exists, the latest action per
    script), in one round trip. A place without the table (it gets it with
    its first script) has no history; any other error goes to the caller."""
    try:
        rows = yield Run(conn, state_sql(table), STATE_COLUMNS)
    except RemoteError as exc:
        if exc.sqlstate != UNDEFINED_TABLE:
            raise
        return False, {}
    return True, state_of(rows)


def read_state_now(dblink: Dblink, conn: str, table: str = DATABASE_HISTORY) -> tuple[bool, State]:
    """read_state on a plain (synchronous) dblink connection outside a transaction."""
    try:
        rows = dblink.query(conn, state_sql(table), STATE_COLUMNS)
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
