"""How applyScripts, replayScripts, rollbackScript and add_cluster record one
database's outcome: its run_log row, its statements in the script log, its
registry row reconciled from its own history, and a NOTICE.

Until the fleet-run engine (issue 15) takes this over.
"""

from __future__ import annotations

from collections.abc import Callable

from admmgt_plpy._fanout import Fanout
from admmgt_plpy._migration import migrated, name_of
from admmgt_plpy._registry import KEEP, Tenant, registry_update
from admmgt_plpy._remote import Dblink, Job, Outcome
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._types import Plpy

TEMPLATE_INCLUDED = "the template included"


def record(
    plpy: Plpy,
    recorder: RunRecorder,
    target: Tenant,
    outcome: Outcome,
    elapsed_ms: float,
    label: str,
    scriptid: int | None = None,
) -> None:
    """Record one database's outcome, reconcile its registry row from its history,
    log its statements, and say "<label>: ..."."""
    recorder.target(
        target.database,
        target.cluster,
        outcome,
        elapsed_ms,
        scriptid=scriptid if scriptid is not None else outcome.details.get("script"),
        registry=reconcile(target, outcome),
    )
    recorder.script_log(target.database, list(migrated(outcome).executed))
    recorder.say(outcome, f"{label}: {outcome_text(target, outcome, elapsed_ms)}")


def progress(
    plpy: Plpy, recorder: RunRecorder, total: int, scriptid: int | None = None, who: str = ""
) -> Callable[[Tenant, Outcome, float], None]:
    """on_done for a fan-out: record with a "<who>[i/N] <database>[@cluster]" label."""
    done = [0]

    def on_done(tenant: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        done[0] += 1
        label = f"{who}[{done[0]}/{total}] {tenant.label}"
        record(plpy, recorder, tenant, outcome, elapsed_ms, label, scriptid)

    return on_done


def single(
    plpy: Plpy,
    dblink: Dblink,
    target: Tenant,
    job: Job,
    recorder: RunRecorder,
    scriptid: int | None = None,
    label: str | None = None,
    before: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Run one job on one database, record it, and return its outcome;
    ``before`` is called with the outcome before it is recorded and said."""
    result: list[Outcome] = []

    def on_done(t: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        result.append(outcome)
        if before is not None:
            before(outcome)
        record(plpy, recorder, t, outcome, elapsed_ms, label or t.database, scriptid)

    Fanout(dblink, 1, 0, on_done).run([target], lambda _: job)
    return result[0]


def skip(why: str) -> Job:
    """A job that touches nothing and says why."""
    return Outcome("skipped", why)
    yield  # pragma: no cover -- makes this a generator, as every job is


def reconcile(target: Tenant, outcome: Outcome) -> str:
    """The registry row as the outcome found the database: its version, when the
    job read its history (a job that could not connect did not), and its error."""
    version = outcome.details.get("version", KEEP)
    failed = outcome.outcome in ("failed", "skipped")
    return registry_update(
        target.id, scriptversion=version, error=outcome.message if failed else None
    )


def outcome_text(target: Tenant, outcome: Outcome, elapsed_ms: float) -> str:
    """The NOTICE text after "<database>: " (so the message's own name prefix goes)."""
    applied = outcome.details.get("applied", [])
    if outcome.outcome == "ok" and applied:
        noun = "script" if len(applied) == 1 else "scripts"
        return f"{noun} {', '.join(map(str, applied))} applied in {elapsed_ms:.0f} ms"
    if outcome.outcome == "ok":
        return f"{outcome.message} in {elapsed_ms:.0f} ms"
    if outcome.outcome == "noop":
        return outcome.message or (
            f"already at script {outcome.details.get('version')}; registry reconciled"
        )
    message = outcome.message
    for who in ("tenant", "template"):
        message = message.removeprefix(f'{who} "{name_of(target)}": ')
    return f"{outcome.outcome.upper()}: {message}"
