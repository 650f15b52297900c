"""lifecycleMgt: retention from script_tables.lifecycle, everywhere.

A table's ``lifecycle`` JSON is its retention policy (docs/maintenance.md):

- a partitioned table: ``{"retention": "90 days", "action": "drop"}`` (or
  ``"detach"``, or ``"archive"`` with an optional ``"archive_schema"``):
  range children -- and the range sub-partitions of list children -- whose
  upper bound is at or before today (UTC, the fleet's clock: _clock) - retention
  are dropped, detached or detached and moved to the archive schema. The newest child of each
  parent and default partitions are never touched;
- a plain table: ``{"retention": "30 days", "column": "created_at"}`` (and an
  optional ``"batch_size"``): rows whose column is older than fleet_now() -
  retention are deleted in batches, each batch its own short transaction.

Every policy is checked (keys, types, identifiers, and the interval by the
admin server itself) before any database is touched; a bad one refuses the
whole run. Then the template and every created tenant with updateflag, as
applyMaintenance does: one transaction per database for the partitions (with
lock_timeout and retries), the batches after it. ``dry_run`` reads each
database's catalog and counts rows, lists what would go, and changes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from admmgt_plpy import _clock
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._fleetrun import Progress, database_failure, fleet_run, utc_session
from admmgt_plpy._maintenance import NOTICE_ITEMS
from admmgt_plpy._names import check_identifier, qualified, quote_ident, quote_literal
from admmgt_plpy._partition_plan import (
    CATALOG_COLUMNS,
    METADATA_QUERY,
    ExistingRange,
    ParentState,
    RangeSet,
    parent_states,
    partitions_query,
    range_sets,
)
from admmgt_plpy._registry import Tenant, check_mode, templates, updating_tenants
from admmgt_plpy._remote import Job, Outcome, RemoteError, Run
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import TransactionFailed, in_transaction
from admmgt_plpy._types import Fragment, Plpy

ACTIONS = ("drop", "detach", "archive")
PARTITIONED_KEYS = ("retention", "action", "archive_schema")
PLAIN_KEYS = ("retention", "column", "batch_size")
DEFAULT_ARCHIVE_SCHEMA = "archive"
DEFAULT_BATCH_SIZE = 10000
MAX_BATCH_SIZE = 1_000_000
DATETIME_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")
PAST = {"drop": "dropped", "detach": "detached", "archive": "archived"}

# Tables with a policy whose script reached the template (the table exists there).
POLICY_QUERY = """
    SELECT t.id AS tableid, t.schemaname, t.tablename, t.haspart, t.lifecycle::text AS lifecycle
    FROM admmgt.script_tables AS t
    JOIN admmgt.scripts AS s ON s.id = t.scriptid
    WHERE t.lifecycle IS NOT NULL AND jsonb_typeof(t.lifecycle) <> 'null' AND t.status <> 0
      AND (s.status = 2 OR s.applied_to_template_at IS NOT NULL)
    ORDER BY t.id"""

EXAMPLES = {
    True: '{"retention": "90 days", "action": "detach"}',
    False: '{"retention": "30 days", "column": "created_at"}',
}


# ------------------------------------------------------------------ the policy


@dataclass(frozen=True)
class Policy:
    """One table's retention policy, checked; ``cutoff`` is filled in by the server."""

    table_id: int
    schema: str
    table: str
    partitioned: bool
    retention: str
    action: str | None = None  # partitioned: drop | detach | archive
    archive_schema: str | None = None  # action archive
    column: str | None = None  # plain tables
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.table}"


_POC_AGE = re.compile(r"\s*current_date\s*-\s*(\d+)\s*", re.IGNORECASE)


def _poc_form(value: dict[str, Any]) -> tuple[str, int] | None:
    """(column, days) if ``value`` is the proof of concept's lifecycle form,
    ``{"status": "X", "inactive_date": "current_date-100"}``; else None."""
    if "retention" in value:
        return None
    for key, item in value.items():
        match = _POC_AGE.fullmatch(item) if isinstance(item, str) else None
        if match:
            return str(key), int(match.group(1))
    return None


def parse_policy(row: dict[str, Any]) -> Policy:
    """A script_tables row's ``lifecycle`` as a Policy, or MetadataError saying what to write.

    The interval itself is checked by the server (check_retention), not here.
    """
    tid = int(row["tableid"])
    where = f"script_tables row {tid}"
    schema = check_identifier(row["schemaname"], what=f"{where}, schemaname")
    table = check_identifier(row["tablename"], what=f"{where}, tablename")
    partitioned = row["haspart"] == 1
    w = f"{where} ({schema}.{table}), lifecycle"
    example = f"for example {EXAMPLES[partitioned]}"
    raw = row["lifecycle"]
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise MetadataError(f"{w}: {raw!r} is not a JSON object; write {example}")
    poc = _poc_form(value)
    if poc is not None:
        column, days = poc
        if partitioned:
            instead = f'{{"retention": "{days} days", "action": "drop"}}'
            scope = "whole range partitions and sub-partitions of the table"
        else:
            instead = f'{{"retention": "{days} days", "column": "{column}"}}'
            scope = f"every row whose {column} is older, whatever its other columns hold"
        raise MetadataError(
            f"{w}: {json.dumps(value)} is the proof of concept's form (rows matching the other "
            f"keys whose {column} is before current_date - {days}); admmgt's retention removes "
            f"{scope}: write {instead} (docs/from-poc.md)"
        )
    allowed = PARTITIONED_KEYS if partitioned else PLAIN_KEYS
    for key in value:
        if key in allowed:
            continue
        if partitioned and key in PLAIN_KEYS:
            why = (
                "the table is partitioned, so retention removes whole partitions by their "
                f'bounds; remove "{key}"'
            )
        elif not partitioned and key in PARTITIONED_KEYS:
            why = f'the table is not partitioned, so expired rows are deleted; remove "{key}"'
        else:
            why = f"use only {', '.join(repr(k) for k in allowed)}"
        raise MetadataError(f'{w}: unknown key "{key}": {why} ({example})')
    retention = value.get("retention")
    if not isinstance(retention, str) or not retention.strip() or len(retention) > 100:
        raise MetadataError(
            f'{w}: "retention" must be an interval as text, such as "90 days", "12 months" or '
            f'"1 year", not {json.dumps(retention)}'
        )
    policy = Policy(tid, schema, table, partitioned, retention.strip())
    if partitioned:
        action = value.get("action")
        if action not in ACTIONS:
            raise MetadataError(
                f'{w}: "action" must be "detach" (keep expired partitions as standalone tables), '
                f'"archive" (detach them and move them to "archive_schema") or "drop", not '
                f"{json.dumps(action)}"
            )
        archive = value.get("archive_schema")
        if archive is not None and action != "archive":
            raise MetadataError(
                f'{w}: "archive_schema" is only used with "action": "archive"; remove it or '
                'write "action": "archive"'
            )
        if action == "archive":
            archive = check_identifier(
                DEFAULT_ARCHIVE_SCHEMA if archive is None else archive,
                what=f'{w}, "archive_schema"',
            )
            if archive == schema:
                raise MetadataError(
                    f'{w}: "archive_schema" is the table\'s own schema "{schema}"; name another '
                    'schema, or use "action": "detach"'
                )
        return Policy(tid, schema, table, True, policy.retention, action, archive)
    column = check_identifier(value.get("column"), what=f'{w}, "column"')
    batch = value.get("batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH_SIZE:
        raise MetadataError(
            f'{w}: "batch_size" must be a whole number from 1 to {MAX_BATCH_SIZE}, not '
            f"{json.dumps(batch)}"
        )
    return Policy(tid, schema, table, False, policy.retention, column=column, batch_size=batch)


def check_retention(plpy: Any, policy: Policy) -> tuple[date, str]:
    """The server's reading of the interval: (last day a partition may end on, row cutoff).

    A partition is expired when its upper bound is at or before the first value,
    today (UTC) - retention; a row when its column is before the second,
    now() - retention, as UTC text. Raises MetadataError naming the table.
    """
    w = f"script_tables row {policy.table_id} ({policy.target}), lifecycle"
    plan = plpy.prepare(
        f"""SELECT $1::interval > interval '0' AS positive,
                  ((({_clock.NOW_SQL} AT TIME ZONE 'UTC')::date - $1::interval)::date)::text
                  AS day,
                  to_char(({_clock.NOW_SQL} - $1::interval) AT TIME ZONE 'UTC',
                          'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS cutoff""",
        ["text"],
    )
    try:
        with plpy.subtransaction():
            row = plpy.execute(plan, [policy.retention])[0]
    except plpy.SPIError as exc:
        raise MetadataError(
            f'{w}: "retention" {json.dumps(policy.retention)} is not an interval PostgreSQL '
            f'accepts ({exc.args[0] if exc.args else exc!s}); write e.g. "90 days", '
            '"12 months" or "1 year"'
        ) from None
    if not row["positive"]:
        raise MetadataError(
            f'{w}: "retention" {json.dumps(policy.retention)} is not a positive interval; '
            'write e.g. "90 days"'
        )
    return date.fromisoformat(row["day"]), row["cutoff"]


@dataclass
class Rule:
    """A checked policy with its cutoffs and, for a partitioned table, its range parents."""

    policy: Policy
    last_day: date
    cutoff: str
    sets: list[RangeSet] = field(default_factory=list)


def load_rules(plpy: Any) -> list[Rule]:
    """Every policy, checked; any problem refuses the run before a database is touched."""
    problems: list[str] = []
    rules: list[Rule] = []
    for row in plpy.execute(POLICY_QUERY):
        try:
            policy = parse_policy(dict(row))
            rules.append(Rule(policy, *check_retention(plpy, policy)))
        except MetadataError as exc:
            problems.append(exc.message)
    partitioned = {r.policy.table_id: r for r in rules if r.policy.partitioned}
    if partitioned:
        rows = [dict(r) for r in plpy.execute(METADATA_QUERY)]
        sets, refused = range_sets([r for r in rows if int(r["tableid"]) in partitioned])
        problems += refused
        for rs in sets:
            partitioned[rs.table_id].sets.append(rs)
        for rule in partitioned.values():
            if not rule.sets and not refused:
                problems.append(
                    f"script_tables row {rule.policy.table_id} ({rule.policy.target}), lifecycle: "
                    "the table has no range partitions (script_table_partitions: parttype "
                    "'range', or list partitions with subparttype 'range'), so retention has "
                    "nothing to remove; set lifecycle to NULL"
                )
    for rule in rules:
        if rule.policy.partitioned:
            continue
        found = plpy.execute(
            plpy.prepare(
                "SELECT 1 FROM admmgt.script_table_columns WHERE tableid = $1"
                " AND lower(columnname) = $2",
                ["int8", "text"],
            ),
            [rule.policy.table_id, rule.policy.column],
        )
        if not found:
            problems.append(
                f"script_tables row {rule.policy.table_id} ({rule.policy.target}), lifecycle: "
                f'"column" "{rule.policy.column}" is not a column of the table in '
                "script_table_columns; name its date or timestamp column"
            )
    if problems:
        raise MetadataError(
            "lifecycleMgt refused; nothing was changed: " + "; ".join(problems),
            hint="Fix script_tables.lifecycle (docs/maintenance.md, Retention), then re-run.",
        )
    return rules


# ------------------------------------------------------------------ planning


def expired_children(
    rs: RangeSet, last_day: date, state: ParentState
) -> tuple[list[ExistingRange], list[str]]:
    """The range children of ``state`` wholly before ``last_day``, and what was not considered.

    The newest child (the highest upper bound) is never expired, however old;
    default partitions are not in ``state.ranges``. A parent whose bounds cannot
    all be read is left alone: its newest child cannot be known.
    """
    if state.strategy != "r":
        return [], [f"{rs.target} is not range-partitioned in this database; nothing was removed"]
    if state.unreadable:
        return [], [
            f"{rs.target}: cannot read the bounds of partition {state.unreadable[0]}; nothing "
            "was removed from it (detach or drop that partition by hand)"
        ]
    if not state.ranges:
        return [], []
    newest = max(state.ranges, key=lambda e: (e.hi, e.lo))
    expired = [e for e in state.ranges if e is not newest and e.hi <= last_day]
    return sorted(expired, key=lambda e: (e.lo, e.name)), []


# ------------------------------------------------------------------ entry point


def lifecyclemgt(plpy: Plpy, *, separatedb: int, dry_run: bool) -> None:
    check_mode(separatedb)
    with fleet_run(plpy, "lifecycleMgt", lock="lifecycle") as run:
        all_templates = templates(plpy)
        rules = load_rules(plpy)
        name = "lifecycleMgt (dry run)" if dry_run else "lifecycleMgt"
        _clock.announce(plpy, name)
        if not rules:
            plpy.notice(
                f"{name}: no table of a script applied to the template has a retention policy "
                "(script_tables.lifecycle); nothing to do"
            )
            return
        tenants = updating_tenants(plpy)
        arguments = {
            "dry_run": dry_run,
            "policies": [
                {
                    "table": r.policy.target,
                    "retention": r.policy.retention,
                    "until": r.last_day.isoformat() if r.policy.partitioned else r.cutoff,
                }
                for r in rules
            ],
        }
        words = (
            {"ok": "with data to expire", "noop": "nothing expired"}
            if dry_run
            else {"ok": "with expired data removed", "noop": "nothing expired"}
        )
        run.start(arguments, words=words)
        totals = {"dropped": 0, "detached": 0, "archived": 0, "rows": 0}

        def tally(outcome: Outcome, elapsed_ms: float) -> str:
            for key in PAST.values():
                totals[key] += len(outcome.details.get(key, []))
            totals["rows"] += sum(d["rows"] for d in outcome.details.get("deleted", []))
            return notice_line(outcome, elapsed_ms, dry_run)

        def job(target: Tenant) -> Job:
            return expire(target, rules, run.settings, run.clusters, dry_run)

        run.wave(all_templates, job, tally, templates=True)
        run.wave(tenants, job, tally)
        if dry_run:
            extra = (
                f"; would drop {totals['dropped']}, detach {totals['detached']} and archive "
                f"{totals['archived']} partitions and delete {totals['rows']} rows; "
                "nothing was changed"
            )
        else:
            extra = (
                f"; {totals['dropped']} partitions dropped, {totals['detached']} detached, "
                f"{totals['archived']} archived, {totals['rows']} rows deleted"
            )
        run.end(extra, name=name)


# ------------------------------------------------------------- one database's job


def expire(
    target: Tenant, rules: list[Rule], settings: Settings, clusters: Clusters, dry_run: bool
) -> Job:
    """One database: expired partitions in one transaction, then rows in batches."""
    details: dict[str, list[Any]] = {}
    progress = Progress()
    try:
        conn = yield from utc_session(target, clusters)
    except RemoteError as exc:
        return _not_expired(target, exc, "connecting", 1, details)
    if any(r.policy.partitioned for r in rules):

        def body() -> Fragment:
            progress.doing = "reading the catalog"
            return (yield from _partitions(conn, rules, dry_run, progress))

        try:
            details.update((yield from in_transaction(conn, settings, body, commit=not dry_run)))
        except TransactionFailed as failed:
            return _not_expired(
                target, failed.error, progress.doing, failed.attempts, details, failed.blockers
            )
    for rule in rules:
        if rule.policy.partitioned:
            continue
        try:
            yield from _rows(conn, rule, settings, dry_run, progress, details)
        except TransactionFailed as failed:
            return _not_expired(
                target, failed.error, progress.doing, failed.attempts, details, failed.blockers
            )
        except RemoteError as exc:
            return _not_expired(target, exc, progress.doing, 1, details)
    done = sum(len(details.get(k, [])) for k in PAST.values())
    done += sum(d["rows"] for d in details.get("deleted", []))
    details = {k: v for k, v in details.items() if v}
    outcome = Outcome("ok" if done else "noop", details=details)
    outcome.message = _notes(details, dry_run, limit=None)
    return outcome


def _partitions(conn: str, rules: list[Rule], dry_run: bool, progress: Progress) -> Fragment:
    """Inside the database's transaction: detach, archive or drop each expired child."""
    sets = [(rule, rs) for rule in rules for rs in rule.sets]
    rows = yield Run(conn, partitions_query([rs for _, rs in sets]), CATALOG_COLUMNS)
    states = parent_states(rows)
    details: dict[str, list[Any]] = {"dropped": [], "detached": [], "archived": []}
    details["skipped"], details["missing"] = [], []
    plans = []
    for rule, rs in sets:
        state = states.get((rs.schema, rs.parent))
        if state is None:
            details["missing"].append(
                f"{rs.target} does not exist in this database (has its script reached it?)"
            )
            continue
        expired, skipped = expired_children(rs, rule.last_day, state)
        details["skipped"] += skipped
        plans += [(rule, rs, child) for child in expired]
    archives = {r.policy.archive_schema for r, _, _ in plans if r.policy.action == "archive"}
    taken: set[tuple[str, str]] = set()
    if archives:
        candidates = ", ".join(
            f"({quote_literal(str(r.policy.archive_schema))}, {quote_literal(c.name)})"
            for r, _, c in plans
            if r.policy.action == "archive"
        )
        found = yield Run(
            conn,
            "SELECT n.nspname::text AS s, c.relname::text AS c FROM pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
            f" WHERE (n.nspname, c.relname) IN (VALUES {candidates})",
            "s text, c text",
        )
        taken = {(r["s"], r["c"]) for r in found}
    made: set[str] = set()
    for rule, rs, child in plans:
        action = str(rule.policy.action)
        name = f"{child.schema}.{child.name}"
        me = qualified(child.schema, child.name)
        archive = str(rule.policy.archive_schema)
        if action == "archive":
            if (archive, child.name) in taken:
                details["skipped"].append(
                    f"{name} {child.period} not archived: {archive}.{child.name} exists; "
                    "rename or drop it, then re-run lifecycleMgt"
                )
                continue
            if archive not in made and not dry_run:
                progress.doing = f"creating schema {archive}"
                yield Run(conn, f"CREATE SCHEMA IF NOT EXISTS {quote_ident(archive)}")
            made.add(archive)
        if not dry_run:
            if action == "drop":
                progress.doing = f"dropping partition {name} of {rs.target}"
                yield Run(conn, f"DROP TABLE {me}")
            else:
                progress.doing = f"detaching partition {name} from {rs.target}"
                yield Run(
                    conn, f"ALTER TABLE {qualified(rs.schema, rs.parent)} DETACH PARTITION {me}"
                )
            if action == "archive":
                progress.doing = f"moving {name} to schema {archive}"
                # A range child that is hash-partitioned itself (range-over-hash): SET
                # SCHEMA moves only the parent, so its hash partitions are moved too.
                inner = yield Run(
                    conn,
                    "SELECT c.oid::regclass::text AS c FROM pg_catalog.pg_inherits AS i"
                    " JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid"
                    f" WHERE i.inhparent = {quote_literal(me)}::regclass ORDER BY 1",
                    "c text",
                )
                yield Run(conn, f"ALTER TABLE {me} SET SCHEMA {quote_ident(archive)}")
                for row in inner:
                    yield Run(conn, f"ALTER TABLE {row['c']} SET SCHEMA {quote_ident(archive)}")
        details[PAST[action]].append(
            f"{name} -> {archive}.{child.name}" if action == "archive" else name
        )
    progress.doing = "committing"
    return details


def _rows(
    conn: str,
    rule: Rule,
    settings: Settings,
    dry_run: bool,
    progress: Progress,
    details: dict[str, list[Any]],
) -> Fragment:
    """Delete (or count) one plain table's expired rows, one short transaction per batch."""
    policy = rule.policy
    assert policy.column is not None
    progress.doing = f"reading {policy.target}"
    found = yield Run(
        conn,
        "SELECT c.oid IS NOT NULL AS table_found, (SELECT pg_catalog.format_type(a.atttypid,"
        " a.atttypmod) FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = c.oid AND"
        f" a.attname = {quote_literal(policy.column)} AND NOT a.attisdropped) AS type"
        " FROM (SELECT to_regclass("
        f"{quote_literal(qualified(policy.schema, policy.table))}) AS oid) AS c",
        "table_found boolean, type text",
    )
    if not found[0]["table_found"]:
        details.setdefault("missing", []).append(
            f"{policy.target} does not exist in this database (has its script reached it?)"
        )
        return
    kind = found[0]["type"]
    if kind not in DATETIME_TYPES:
        why = "has no column" if kind is None else f"has {policy.column} as {kind}, not"
        raise RemoteError(
            "42804" if kind else "42703",
            f'{policy.target} {why} "{policy.column}" of type date or timestamp; fix the table '
            'or its lifecycle "column"',
        )
    table = qualified(policy.schema, policy.table)
    expired = f"{quote_ident(policy.column)} < {quote_literal(rule.cutoff)}::timestamptz"
    # row_security off: a tenant-scoped table forces its policies on its owner, so
    # a remote role that owns it without bypassing row-level security would see
    # (and delete) no rows and report success; off, it gets an error instead.
    if dry_run:
        progress.doing = f"counting expired rows of {policy.target}"

        def count() -> Fragment:
            yield Run(conn, "SET LOCAL row_security = off")
            rows = yield Run(conn, f"SELECT count(*) AS n FROM {table} WHERE {expired}", "n bigint")
            return int(rows[0]["n"])

        n = yield from in_transaction(conn, settings, count, commit=False)
        if n:
            details.setdefault("deleted", []).append(
                {"table": policy.target, "rows": n, "before": rule.cutoff}
            )
        return
    batch = (
        f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY (ARRAY("
        f"SELECT ctid FROM {table} WHERE {expired} LIMIT {int(policy.batch_size)}))"
        " RETURNING 1) SELECT count(*) AS n FROM gone"
    )
    total, batches = 0, 0
    record = {"table": policy.target, "rows": 0, "batches": 0, "before": rule.cutoff}

    def one_batch() -> Fragment:
        yield Run(conn, "SET LOCAL row_security = off")
        rows = yield Run(conn, batch, "n bigint")
        return int(rows[0]["n"])

    while True:
        progress.doing = f"deleting expired rows of {policy.target} ({total} deleted so far)"
        n = yield from in_transaction(conn, settings, one_batch)
        batches += 1
        total += n
        record.update(rows=total, batches=batches)
        if n and record not in details.get("deleted", []):
            details.setdefault("deleted", []).append(record)
        if n < policy.batch_size:
            return


# ------------------------------------------------------------------ reporting


def _notes(details: dict[str, Any], dry_run: bool, limit: int | None) -> str:
    verb = {"dropped": "drop", "detached": "detach", "archived": "archive"}
    items: list[str] = []
    for d in details.get("deleted", []):
        if dry_run:
            items.append(f"would delete {d['rows']} rows of {d['table']} (before {d['before']})")
        else:
            items.append(
                f"deleted {d['rows']} rows of {d['table']} in {d['batches']} "
                f"batch{'es' if d['batches'] != 1 else ''} (before {d['before']})"
            )
    for key in ("dropped", "detached", "archived"):
        items += [
            f"would {verb[key]} {name}" if dry_run else f"{key} {name}"
            for name in details.get(key, [])
        ]
    items += details.get("missing", [])
    items += details.get("skipped", [])
    if limit is not None and len(items) > limit:
        items = [*items[:limit], f"... and {len(items) - limit} more (admmgt.run_log.details)"]
    return "\n".join(items)


def notice_line(outcome: Outcome, elapsed_ms: float, dry_run: bool) -> str:
    """The NOTICE text of one database."""
    if outcome.outcome in ("failed", "skipped"):
        line = f"{outcome.outcome.upper()}: {outcome.message}"
        done = _notes(outcome.details, dry_run, NOTICE_ITEMS)
        return line + ("\n  before that: " + done.replace("\n", "\n  ") if done else "")
    counts = [
        f"{len(outcome.details[k])} partition{'s' if len(outcome.details[k]) != 1 else ''} {k}"
        for k in ("dropped", "detached", "archived")
        if outcome.details.get(k)
    ]
    rows = sum(d["rows"] for d in outcome.details.get("deleted", []))
    if rows:
        counts.append(f"{rows} row{'s' if rows != 1 else ''} deleted")
    if not counts:
        line = "nothing expired"
    elif dry_run:
        line = "would go: " + ", ".join(counts).replace(" dropped", " to drop").replace(
            " detached", " to detach"
        ).replace(" archived", " to archive").replace(" deleted", " to delete")
    else:
        line = ", ".join(counts) + f" in {elapsed_ms:.0f} ms"
    notes = _notes(outcome.details, dry_run, NOTICE_ITEMS)
    return line + ("\n  " + notes.replace("\n", "\n  ") if notes else "")


def _not_expired(
    target: Tenant,
    exc: RemoteError,
    doing: str,
    attempts: int,
    details: dict[str, list[Any]],
    blockers: list[dict[str, Any]] | None = None,
) -> Outcome:
    partial = " (the batches already deleted stay deleted)" if details.get("deleted") else ""
    outcome = database_failure(
        target,
        exc,
        doing,
        attempts,
        "lifecycle",
        "lifecycleMgt",
        "the work in progress was rolled back" + partial,
        blockers,
    )
    outcome.details = {k: v for k, v in details.items() if v}
    return outcome
