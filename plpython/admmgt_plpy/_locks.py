"""One run of an operation at a time, per admin database.

Transaction-level advisory locks: a CALL runs in one transaction (the
procedures are SECURITY DEFINER, so they cannot commit), and the lock goes
with it however the call ends, so a failed run never leaves a lock behind.
"""

from __future__ import annotations

from admmgt_plpy._errors import BusyError
from admmgt_plpy._types import Plpy

# classid "admm"; objid 0 is the installer's (admmgt._install.INSTALL_LOCK).
LOCK_CLASS = 1634560109
OPERATION_LOCKS = {
    "create_database": 1,
    "migrations": 2,  # applyScripts, replayScripts, rollbackScript, baseline
    "maintenance": 3,
    "lifecycle": 4,
    "sync": 5,
}


def take_operation_lock(plpy: Plpy, operation: str, display_name: str) -> None:
    """Take the operation's lock or raise BusyError naming who holds it."""
    objid = OPERATION_LOCKS[operation]
    plan = plpy.prepare("SELECT pg_try_advisory_xact_lock($1, $2) AS ok", ["int4", "int4"])
    if plpy.execute(plan, [LOCK_CLASS, objid])[0]["ok"]:
        return
    holder = plpy.execute(
        plpy.prepare(
            """SELECT a.pid, a.usename, a.application_name,
                      to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since,
                      round(extract(epoch FROM clock_timestamp() - a.xact_start)) AS secs
               FROM pg_catalog.pg_locks AS l
               JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                         SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                 AND l.classid = $1::oid AND l.objid = $2::oid""",
            ["int4", "int4"],
        ),
        [LOCK_CLASS, objid],
    )
    if holder:
        h = holder[0]
        who = (
            f"pid {h['pid']}, user {h['usename']}, application {h['application_name'] or '-'}, "
            f"running since {h['since']} ({h['secs']} s)"
        )
        hint = f"Wait for it to finish, or stop it with SELECT pg_cancel_backend({h['pid']});"
    else:
        who, hint = "a session that just finished", "Try again."
    raise BusyError(f"{display_name} is already running ({who})", hint=hint)
