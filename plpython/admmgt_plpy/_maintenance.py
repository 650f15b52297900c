"""applyMaintenance: the range partitions ahead of today, everywhere.

For every range-partitioned parent the metadata describes (a range table, or
each range-sub-partitioned list child of a list table) whose script reached the
template, every database -- the template first, then every created tenant with
updateflag -- gets each period from the one containing today (UTC) through
today + t_numdays that none of its partitions covers yet. What exists is read
from each database's own catalog, so gaps are filled, a re-run creates nothing
and a partition a DBA made by hand is respected (docs/maintenance.md).
Hash sets never grow: a hash-partitioned table or list child is left alone,
and a range table with hash sub-partitions gets each new range child with all
of its hash children.

Schema tenants (t_separatedb => 0): the template schema, then every updating
schema tenant, each through a connection to its host database. The metadata
names the template schema (``mgttest``); each schema tenant's catalog is read
and its partitions made in its own schema (RangeSet.placed). Tables the
metadata puts in another schema are left out, with a NOTICE.

One remote transaction per database, with lock_timeout and retries as the
migration engine has. A period is skipped and reported, never failing the
database, when it overlaps an existing partition, when its name is taken, or
when the parent's default partition holds rows of it; with
``t_move_default_rows`` those rows are moved into the new partition instead.

What to create is planned, pure, in admmgt_plpy._partition_plan; this module
runs the plan over the fleet.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from admmgt_plpy import _clock
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import Progress, database_failure, fleet_run, utc_session
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._partition_plan import (
    METADATA_QUERY,
    PARTITIONS_AND_NAMES_COLUMNS,
    Child,
    ParentPlan,
    RangeSet,
    create_statements,
    for_schema_tenants,
    parent_states,
    partitions_and_names_query,
    plan_parent,
    range_sets,
)
from admmgt_plpy._registry import SCHEMA_MODE, Tenant, mode_of, templates, updating_tenants
from admmgt_plpy._remote import Job, Outcome, RemoteError, Run, Sleep
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import RETRYABLE, TransactionFailed, in_one_trip, in_transaction
from admmgt_plpy._types import Fragment, Plpy

MAX_NUMDAYS = 3660  # ten years ahead; more is almost certainly a typo
NOTICE_ITEMS = 5  # per database; the run log's details hold every one

# ------------------------------------------------------------------ entry point


def applymaintenance(
    plpy: Plpy, *, separatedb: int, numdays: int, move_default_rows: bool = False
) -> None:
    mode = mode_of(separatedb)
    if numdays is None or numdays < 0 or numdays > MAX_NUMDAYS:
        raise AdmmgtError(
            f"t_numdays must be between 0 and {MAX_NUMDAYS}, not {numdays}",
            hint="CALL admmgt.applyMaintenance(t_numdays => 30);",
        )
    with fleet_run(plpy, "applyMaintenance", lock="maintenance") as run:
        all_templates = templates(plpy, mode)
        today = _clock.announce(plpy, "applyMaintenance")
        through = today + timedelta(days=numdays)
        sets, problems = range_sets([dict(r) for r in plpy.execute(METADATA_QUERY)])
        if mode == SCHEMA_MODE:
            sets, left_out = for_schema_tenants(sets, all_templates[0].database)
            problems += left_out
        for problem in problems:
            plpy.notice(f"applyMaintenance: table skipped: {problem}")
        if not sets:
            where = "template schema" if mode == SCHEMA_MODE else "template"
            run.nothing_to_do(
                f"applyMaintenance: no range-partitioned table of a script applied to the "
                f"{where}; nothing to do"
            )
            return
        tenants = updating_tenants(plpy, mode=mode)
        arguments = {
            "numdays": numdays,
            "from": today.isoformat(),
            "through": through.isoformat(),
            "move_default_rows": move_default_rows,
            "parents": len(sets),
        }
        if mode == SCHEMA_MODE:
            arguments["separatedb"] = mode
        run.start(
            arguments,
            words={"ok": "with new partitions", "noop": "nothing to create"},
            counted="the template included",
        )
        totals = {"created": 0, "blocked": 0, "moved": 0, "skipped": 0}

        def tally(outcome: Outcome, elapsed_ms: float) -> str:
            for key in totals:
                totals[key] += len(outcome.details.get(key, []))
            return notice_line(outcome, elapsed_ms)

        def job(target: Tenant) -> Job:
            return maintain(
                target, sets, today, through, run.settings, run.clusters, move_default_rows
            )

        run.wave(all_templates, job, tally, templates=True)
        run.wave(tenants, job, tally)
        extra = f"; {totals['created']} partitions created through {through.isoformat()}"
        if totals["moved"]:
            extra += f", {totals['moved']} after moving rows out of a default partition"
        if totals["blocked"]:
            extra += (
                f"; {totals['blocked']} not created because a default partition holds their "
                "rows (t_move_default_rows => true moves them)"
            )
        if totals["skipped"]:
            extra += f"; {totals['skipped']} skipped (overlap or name taken; see the run log)"
        run.end(extra)


# ------------------------------------------------------------- one database's job


def maintain(
    target: Tenant,
    sets: list[RangeSet],
    first: date,
    through: date,
    settings: Settings,
    clusters: Clusters,
    move_default_rows: bool,
) -> Job:
    """Make one place's missing partitions in one transaction (retried on lock
    timeouts); a schema tenant's in its own schema.

    The catalog is read first, outside any transaction: a place that lacks
    nothing (the usual day) costs a connection and that one statement. A
    place with something to create, and no default partition that could hold
    rows of it, gets its CREATEs in one round trip (in_one_trip). One with a
    default partition locks, counts and perhaps moves rows first, so its
    transaction goes statement by statement and reads the catalog again; so
    does a place whose one round trip met a lock, on each retry."""
    if target.is_schema:
        sets = [rs.placed(target.database) for rs in sets]
    wanted = {id(rs): rs.children(first, through) for rs in sets}
    here = _here(target)
    try:
        conn = yield from utc_session(target, clusters)
    except RemoteError as exc:
        return _not_maintained(target, exc, "connecting", 1)
    try:
        plans, details = yield from _look(conn, sets, wanted, here)
    except RemoteError as exc:
        return _not_maintained(target, exc, "reading the catalog", 1)
    creating, tried = [plan for plan in plans if plan.create], 0
    if creating and all(plan.default is None for plan in creating):
        steps = [
            (f"{plan.rangeset.schema}.{child.name}", sql)
            for plan in creating
            for child in plan.create
            for sql in create_statements(plan.rangeset, child)
        ]
        try:
            # Once: a lock timeout goes on below, where each retry reads the
            # catalog again (the session holding the lock may make a partition).
            yield from in_one_trip(conn, replace(settings, lock_retries=0), [s for _, s in steps])
        except TransactionFailed as failed:
            locked = failed.error.sqlstate in RETRYABLE and not failed.in_doubt
            if not locked or settings.lock_retries == 0:
                doing = "committing" if failed.in_doubt else "creating partitions"
                if failed.index is not None:
                    doing = f"creating partition {steps[failed.index][0]}"
                return _not_maintained(
                    target, failed.error, doing, failed.attempts, failed.blockers
                )
            # That was the first of the 1 + lock_retries tries.
            tried, settings = 1, replace(settings, lock_retries=settings.lock_retries - 1)
            yield Sleep(max(settings.retry_backoff_ms, 10) / 1000.0 * random.uniform(0.5, 1.5))
        else:
            details["created"] = list(dict.fromkeys(name for name, _ in steps))
            creating = []
    if creating:
        progress = Progress()

        def body() -> Fragment:
            progress.doing = "reading the catalog"
            plans, details = yield from _look(conn, sets, wanted, here)
            yield from _make_partitions(conn, plans, move_default_rows, progress, details)
            progress.doing = "committing"
            return details

        try:
            details = yield from in_transaction(conn, settings, body)
        except TransactionFailed as failed:
            return _not_maintained(
                target, failed.error, progress.doing, tried + failed.attempts, failed.blockers
            )
    details = {k: v for k, v in details.items() if v or k == "created"}
    outcome = Outcome("ok" if details["created"] else "noop", details=details)
    outcome.message = _warnings_text(details, limit=None)
    return outcome


def _look(
    conn: str, sets: list[RangeSet], wanted: dict[int, list[Child]], here: str
) -> Generator[Any, Any, tuple[list[ParentPlan], dict[str, list[Any]]]]:
    """Job fragment, one statement: each parent's plan from the catalog as it is
    now, and the details so far (what is skipped, which parents are missing)."""
    rows = yield Run(conn, partitions_and_names_query(sets, wanted), PARTITIONS_AND_NAMES_COLUMNS)
    states = parent_states([r for r in rows if r["k"] == "partition"])
    taken = {(r["ps"], r["p"]) for r in rows if r["k"] == "taken"}
    details: dict[str, list[Any]] = {
        "created": [],
        "blocked": [],
        "moved": [],
        "skipped": [],
        "missing": [],
    }
    plans = []
    for rs in sets:
        plan = plan_parent(rs, wanted[id(rs)], states.get((rs.schema, rs.parent)), taken)
        if plan is None:
            details["missing"].append(
                f"{rs.target} does not exist {here} (has its script reached it?)"
            )
            continue
        details["skipped"] += plan.skipped
        plans.append(plan)
    details["missing"] = sorted(set(details["missing"]))
    return plans, details


def _make_partitions(
    conn: str,
    plans: list[ParentPlan],
    move: bool,
    progress: Progress,
    details: dict[str, list[Any]],
) -> Fragment:
    """Create what ``plans`` lack, in the caller's transaction, adding to ``details``."""
    for plan in plans:
        rs = plan.rangeset
        if plan.create and plan.default is not None:
            yield from _default_rows(conn, plan, move, details, progress)
        for child in plan.create:
            progress.doing = f"creating partition {rs.schema}.{child.name}"
            for sql in create_statements(rs, child):
                yield Run(conn, sql)
            details["created"].append(f"{rs.schema}.{child.name}")


def _default_rows(
    conn: str, plan: ParentPlan, move: bool, details: dict[str, list[Any]], progress: Progress
) -> Fragment:
    """Find the new children whose rows sit in the default partition; move them or hold back.

    The parent, then its default partition, are locked first (the order CREATE
    TABLE ... PARTITION OF takes them), so no row can land in the default
    between the count and the CREATE.
    """
    rs = plan.rangeset
    assert plan.default is not None
    default = qualified(*plan.default)
    parent = qualified(rs.schema, rs.parent)
    progress.doing = f"locking {rs.target} and its default partition"
    yield Run(conn, f"LOCK TABLE {parent}, {default} IN ACCESS EXCLUSIVE MODE")
    col = quote_ident(rs.column)
    cases = " ".join(
        f"WHEN {col} >= {quote_literal(c.lo.isoformat())} "
        f"AND {col} < {quote_literal(c.hi.isoformat())} THEN {i}"
        for i, c in enumerate(plan.create)
    )
    lo = quote_literal(min(c.lo for c in plan.create).isoformat())
    hi = quote_literal(max(c.hi for c in plan.create).isoformat())
    progress.doing = f"counting rows in the default partition {plan.default[0]}.{plan.default[1]}"
    counts = yield Run(
        conn,
        f"SELECT k, count(*) AS n FROM (SELECT CASE {cases} END AS k FROM {default}"
        f" WHERE {col} >= {lo} AND {col} < {hi}) AS s WHERE k IS NOT NULL GROUP BY k",
        "k integer, n bigint",
    )
    rows_in = {int(r["k"]): int(r["n"]) for r in counts}
    if not rows_in:
        return
    referenced = False
    columns = ""
    if move:
        progress.doing = f"checking {rs.schema}.{rs.table} before moving rows"
        check = yield Run(
            conn,
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE contype = 'f' AND"
            " confrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree("
            f"{quote_literal(qualified(rs.schema, rs.table))}::regclass))) AS referenced,"
            " (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)"
            f" FROM pg_catalog.pg_attribute WHERE attrelid = {quote_literal(parent)}::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attgenerated = '') AS columns",
            "referenced boolean, columns text",
        )
        referenced, columns = bool(check[0]["referenced"]), check[0]["columns"]
    default_name = f"{plan.default[0]}.{plan.default[1]}"
    keep: list[Child] = []
    for i, child in enumerate(plan.create):
        n = rows_in.get(i)
        if n is None:
            keep.append(child)
            continue
        where = f"{rs.schema}.{child.name}"
        if not move or referenced:
            why = (
                "move them with CALL admmgt.applyMaintenance(t_numdays => ..., "
                "t_move_default_rows => true)"
                if not move
                else f"{rs.schema}.{rs.table} is referenced by a foreign key, so admmgt does "
                "not move rows out of it (a DELETE would cascade or fail); move them by hand"
            )
            details["blocked"].append(
                {
                    "table": f"{rs.schema}.{rs.table}",
                    "default": default_name,
                    "partition": where,
                    "period": child.period,
                    "rows": n,
                    "message": f"default partition {default_name} holds {n} row"
                    f"{'s' if n != 1 else ''} of {where} {child.period}, which was not "
                    f"created; {why}",
                }
            )
            continue
        # Move: rows out of the default into a temporary table, create the
        # partition, insert them back through the parent (which routes them).
        progress.doing = f"moving {n} rows from {default_name} into {where}"
        span = (
            f"{col} >= {quote_literal(child.lo.isoformat())} "
            f"AND {col} < {quote_literal(child.hi.isoformat())}"
        )
        yield Run(conn, f"CREATE TEMPORARY TABLE admmgt_moving (LIKE {default}) ON COMMIT DROP")
        yield Run(
            conn,
            f"WITH moved AS (DELETE FROM {default} WHERE {span} RETURNING *)"
            " INSERT INTO pg_temp.admmgt_moving SELECT * FROM moved",
        )
        progress.doing = f"creating partition {where}"
        for sql in create_statements(rs, child):
            yield Run(conn, sql)
        progress.doing = f"moving {n} rows from {default_name} into {where}"
        yield Run(
            conn,
            f"INSERT INTO {parent} ({columns}) OVERRIDING SYSTEM VALUE"
            f" SELECT {columns} FROM pg_temp.admmgt_moving",
        )
        yield Run(conn, "DROP TABLE pg_temp.admmgt_moving")
        details["created"].append(where)
        details["moved"].append({"partition": where, "from": default_name, "rows": n})
    plan.create = keep


# ------------------------------------------------------------------ reporting


def _here(target: Tenant) -> str:
    return "in this schema" if target.is_schema else "in this database"


def place_failure(outcome: Outcome, target: Tenant) -> Outcome:
    """A failed Outcome (_fleetrun.database_failure) worded for a schema tenant:
    it names the tenant as host.schema and says "in this schema"."""
    if target.is_schema and outcome.message:
        outcome.message = outcome.message.replace(
            f'database "{target.database}":', f'schema tenant "{target.label}":', 1
        ).replace(" in this database", " in this schema")
    return outcome


def _warnings_text(details: dict[str, Any], limit: int | None) -> str:
    items: list[str] = []
    items += [
        f"moved {m['rows']} row{'s' if m['rows'] != 1 else ''} from {m['from']} into "
        f"{m['partition']}"
        for m in details.get("moved", [])
    ]
    items += [b["message"] for b in details.get("blocked", [])]
    items += details.get("missing", [])
    items += details.get("skipped", [])
    if limit is not None and len(items) > limit:
        items = [*items[:limit], f"... and {len(items) - limit} more (admmgt.run_log.details)"]
    return "\n".join(items)


def notice_line(outcome: Outcome, elapsed_ms: float) -> str:
    """The NOTICE line of one database."""
    if outcome.outcome == "failed":
        return f"FAILED: {outcome.message}"
    if outcome.outcome == "skipped":
        return f"SKIPPED: {outcome.message}"
    created = len(outcome.details.get("created", []))
    if created:
        line = f"{created} partition{'s' if created != 1 else ''} created in {elapsed_ms:.0f} ms"
    else:
        line = "nothing to create"
    warnings = _warnings_text(outcome.details, NOTICE_ITEMS)
    if warnings:
        line += "\n  " + warnings.replace("\n", "\n  ")
    return line


def _not_maintained(
    target: Tenant,
    exc: RemoteError,
    doing: str,
    attempts: int,
    blockers: list[dict[str, Any]] | None = None,
) -> Outcome:
    """A place applyMaintenance could not maintain: nothing was created there."""
    return place_failure(
        database_failure(
            target,
            exc,
            doing,
            attempts,
            "maintenance",
            "applyMaintenance",
            "nothing was created",
            blockers,
        ),
        target,
    )
