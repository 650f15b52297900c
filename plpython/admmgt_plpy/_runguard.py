"""A run is honest about its end (docs/concepts.md, invariant 11).

1. A CALL inside a transaction block is refused before anything changes, the
   way CREATE DATABASE is: not here but in SQL (630-outside-transaction-block.sql),
   since a SECURITY DEFINER procedure always runs atomic and cannot tell.
2. :data:`INTERRUPTED`: runs whose backend is gone (killed client, crash,
   restart) get the outcome ``interrupted`` instead of a NULL for good. Every
   new run applies it first; fleet_status and run_history compute the same.
3. :func:`end_run` (and _fleetrun.FleetRun.end): the run's summary NOTICE,
   then, when any database failed or a script was refused, one ERROR with
   SQLSTATE ``ZA001`` (RunFailed), raised after every outcome is committed,
   so psql ``ON_ERROR_STOP``, pg_cron's job_run_details and CI see the failure
   and the run log keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from admmgt_plpy._errors import RunFailed
from admmgt_plpy._types import Plpy

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
    plpy: Any,  # only its notice()
    recorder: Any,
    words: dict[str, str] | None = None,
    *,
    raise_failure: bool = True,
    counted: str | None = None,
) -> None:
    """Close ``recorder``'s run (committed), say its summary, then raise RunFailed
    if a database failed or a script was refused (unless ``raise_failure``
    is false: NOTICE only, the behaviour before 0.4.0)."""
    summary = recorder.finish(words, counted)
    plpy.notice(summary)
    failed = failure_of(recorder) if raise_failure else None
    if failed is not None:
        raise failed


def failure_of(recorder: Any) -> RunFailed | None:
    """The ERROR that ends ``recorder``'s finished run, or None if it did not fail."""
    if recorder.outcome != "failed":
        return None
    refused = recorder.refusals
    failed = recorder.counts.get("failed", 0) + recorder.counts.get("unreachable", 0) - len(refused)
    parts = list(refused)
    if failed > 0:
        parts.append(f"{failed} database(s) failed ({_first(recorder.failed_databases)})")
    return _run_failed(
        recorder.operation, recorder.run_id, ": " + ("; ".join(parts) or "see its run log")
    )


def _first(names: list[str], shown: int = 3) -> str:
    """The first few names, for an ERROR line a DBA reads at once."""
    more = ", ..." if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _run_failed(operation: str, run_id: int, what: str) -> RunFailed:
    """The ERROR that ends a failed run, once its every outcome is committed."""
    return RunFailed(
        f"{operation} run {run_id} failed{what}; every outcome is recorded",
        hint=f"SELECT * FROM admmgt.run_history WHERE run_id = {run_id} "
        "AND outcome <> 'ok'; (or admmgt log) names each database and why. Fix that and call "
        f"{operation} again; t_raise => false reports failures as NOTICEs only.",
    )


@contextmanager
def failures_raised(plpy: Plpy, operation: str, raise_failure: bool) -> Iterator[None]:
    """For operations that close their run themselves: once the body returned,
    raise RunFailed if a run it recorded (by this backend) failed."""
    before = plpy.execute("SELECT coalesce(max(id), 0) AS id FROM admmgt.runs")[0]["id"]
    yield
    if not raise_failure:
        return
    rows = plpy.execute(
        plpy.prepare(
            """SELECT id, summary::text AS summary FROM admmgt.runs
               WHERE id > $1 AND pid = pg_backend_pid() AND outcome = 'failed' ORDER BY id""",
            ["int8"],
        ),
        [before],
    )
    if rows:
        run = rows[-1]
        counts = json.loads(run["summary"] or "{}")
        said = ", ".join(f"{n} {word}" for word, n in sorted(counts.items()) if isinstance(n, int))
        raise _run_failed(operation, run["id"], f" (databases: {said})" if said else "")
