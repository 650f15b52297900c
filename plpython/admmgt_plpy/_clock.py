"""The fleet's clock: the one source of "now" for every date admmgt computes.

Maintenance horizons, partition names and bounds, retention cutoffs and the
anchor of a new script's first partitions (``scripts.created_date`` defaults
to it) all come from ``admmgt.fleet_now()``: the server's ``now()``, or the
instant the owner pinned with ``CALL admmgt._pin_clock(...)`` (a row in the
owner-only table ``admmgt._clock``). Tests pin it to run the calendar at the
dates they choose; a DBA cannot, because neither the table nor the procedure is
granted to ``admmgt_operator``. A pinned clock is announced by every run that
depends on it, so nobody runs a pinned fleet unknowingly.

Audit times (run log, ``modifiedon``, history rows) stay real: they record
when something happened, they do not compute a calendar.
"""

from __future__ import annotations

from datetime import date
from typing import Any

__all__ = ["NOW_SQL", "announce"]

# The SQL expression for "now" in every date computation.
NOW_SQL = "admmgt.fleet_now()"

_READ = f"""SELECT ({NOW_SQL} AT TIME ZONE 'UTC')::date::text AS today,
       (SELECT to_char(c.pinned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
               || ' UTC, pinned by ' || c.pinned_by
               || coalesce(' (' || c.reason || ')', '')
        FROM admmgt._clock AS c) AS pinned"""


def announce(plpy: Any, operation: str) -> date:
    """Today (UTC) on the fleet's clock; a NOTICE first if the clock is pinned."""
    row = plpy.execute(_READ)[0]
    if row["pinned"] is not None:
        plpy.notice(
            f"{operation}: the fleet's clock is pinned at {row['pinned']}; dates are computed "
            "from it, not from the server's clock (the owner unpins it with "
            "CALL admmgt._unpin_clock();)"
        )
    return date.fromisoformat(row["today"])
