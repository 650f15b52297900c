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

Schema tenants (t_separatedb => 0): the template schema, then every updating
schema tenant, through a connection to its host database; each rule is placed
in the tenant's schema, and an archived partition goes to the tenant's own
archive schema ``<tenant schema>_<archive_schema>`` (docs/maintenance.md).

The policies (parsing, checking, which children expire) are
admmgt_plpy._lifecycle_policy; this module applies them over the fleet.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy import _clock
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._fleetrun import Progress, database_failure, fleet_run, utc_session
from admmgt_plpy._lifecycle_policy import (
    DATETIME_TYPES,
    PAST,
    Rule,
    archive_conflicts,
    expired_children,
    load_rules,
    rules_for_schema_tenants,
)
from admmgt_plpy._maintenance import NOTICE_ITEMS, place_failure
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._partition_plan import (
    CATALOG_COLUMNS,
    parent_states,
    partitions_query,
)
from admmgt_plpy._registry import SCHEMA_MODE, Tenant, mode_of, templates, updating_tenants
from admmgt_plpy._remote import Job, Outcome, RemoteError, Run
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import TransactionFailed, in_transaction
from admmgt_plpy._types import Fragment, Plpy

# ------------------------------------------------------------------ entry point


def lifecyclemgt(plpy: Plpy, *, separatedb: int, dry_run: bool) -> None:
    mode = mode_of(separatedb)
    with fleet_run(plpy, "lifecycleMgt", lock="lifecycle") as run:
        all_templates = templates(plpy, mode)
        rules = load_rules(plpy)
        name = "lifecycleMgt (dry run)" if dry_run else "lifecycleMgt"
        _clock.announce(plpy, name)
        refused: dict[tuple[str, str], str] = {}
        if mode == SCHEMA_MODE:
            rules, left_out = rules_for_schema_tenants(rules, all_templates[0].database)
            for why in left_out:
                plpy.notice(f"{name}: table skipped: {why}")
            refused = archive_conflicts(
                _schema_places(plpy),
                {str(r.policy.archive_schema) for r in rules if r.policy.action == "archive"},
            )
        if not rules:
            where = "template schema" if mode == SCHEMA_MODE else "template"
            plpy.notice(
                f"{name}: no table of a script applied to the {where} has a retention policy "
                "(script_tables.lifecycle); nothing to do"
            )
            return
        tenants = updating_tenants(plpy, mode=mode)
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
        if mode == SCHEMA_MODE:
            arguments["separatedb"] = mode
        run.start(arguments, words=words)
        totals = {"dropped": 0, "detached": 0, "archived": 0, "rows": 0}

        def tally(outcome: Outcome, elapsed_ms: float) -> str:
            for key in PAST.values():
                totals[key] += len(outcome.details.get(key, []))
            totals["rows"] += sum(d["rows"] for d in outcome.details.get("deleted", []))
            return notice_line(outcome, elapsed_ms, dry_run)

        def job(target: Tenant) -> Job:
            # A schema tenant's rules name its schema and its own archive schema.
            mine = (
                [r.placed(target.database, refused) for r in rules] if target.is_schema else rules
            )
            return expire(target, mine, run.settings, run.clusters, dry_run)

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


def _schema_places(plpy: Plpy) -> list[str]:
    """Every registered schema (schema tenants and template schemas, live, any
    status): no archive schema may take one of their names."""
    return [
        r["name"]
        for r in plpy.execute(
            "SELECT DISTINCT lower(dbname) AS name FROM admmgt.vendor_db_settings"
            " WHERE NOT deleted AND separatedb = 0"
        )
    ]


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
    here = "in this schema" if target.is_schema else "in this database"
    if any(r.policy.partitioned for r in rules):

        def body() -> Fragment:
            progress.doing = "reading the catalog"
            return (yield from _partitions(conn, rules, dry_run, progress, here))

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
            yield from _rows(conn, rule, settings, dry_run, progress, details, here)
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


def _partitions(
    conn: str, rules: list[Rule], dry_run: bool, progress: Progress, here: str = "in this database"
) -> Fragment:
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
                f"{rs.target} does not exist {here} (has its script reached it?)"
            )
            continue
        expired, skipped = expired_children(rs, rule.last_day, state)
        details["skipped"] += skipped
        if rule.archive_refused and rule.policy.action == "archive":
            details["skipped"] += [
                f"{child.schema}.{child.name} {child.period} not archived: {rule.archive_refused}"
                for child in expired
            ]
            continue
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
    here: str = "in this database",
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
            f"{policy.target} does not exist {here} (has its script reached it?)"
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
    outcome = place_failure(
        database_failure(
            target,
            exc,
            doing,
            attempts,
            "lifecycle",
            "lifecycleMgt",
            "the work in progress was rolled back" + partial,
            blockers,
        ),
        target,
    )
    outcome.details = {k: v for k, v in details.items() if v}
    return outcome
