"""lifecycleMgt's policies: a table's ``lifecycle`` JSON, checked and typed.

``parse_policy`` checks one policy (keys, types, identifiers), and
``check_retention`` has the admin server read its interval; ``load_rules``
gives every table's rule, or refuses the whole run with every problem found;
``expired_children`` picks the range children a policy lets go. The
operation that applies them over the fleet is admmgt_plpy._lifecycle
(docs/maintenance.md).

Schema tenants: a rule is placed in each tenant's schema (``Rule.placed``),
and its archive schema is the tenant's own, ``<tenant schema>_<archive_schema>``
(``schema_archive``): tenants in one host database never share one.
``archive_conflicts`` refuses a name that would be truncated, that is a
registered schema, or that two (schema, archive) pairs would both get.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from admmgt_plpy import _clock
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._names import MAX_IDENTIFIER_BYTES, check_identifier
from admmgt_plpy._partition_plan import (
    METADATA_QUERY,
    ExistingRange,
    ParentState,
    RangeSet,
    for_schema_tenants,
    range_sets,
)

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
    # Why its archive schema cannot be used at this place (archive_conflicts).
    archive_refused: str | None = None

    def placed(self, schema: str | None, refused: dict[tuple[str, str], str] | None = None) -> Rule:
        """The rule as a schema tenant (``schema``) applies it: its tables in that
        schema, its archive schema the tenant's own (schema_archive), refused
        if ``refused`` (archive_conflicts) says so. None: the rule as it is."""
        if schema is None:
            return self
        policy = self.policy
        archive = policy.archive_schema
        why = None
        if archive is not None:
            why = (refused or {}).get((schema, archive))
            archive = schema_archive(schema, archive)
        return Rule(
            replace(policy, schema=schema, archive_schema=archive),
            self.last_day,
            self.cutoff,
            [rs.placed(schema) for rs in self.sets],
            why,
        )


def schema_archive(schema: str, archive: str) -> str:
    """A schema tenant's archive schema: ``<schema>_<archive>`` (acme_archive),
    beside the tenant's schema in the host database, never shared with another."""
    return f"{schema}_{archive}"


def archive_conflicts(
    schemas: Iterable[str], archives: Iterable[str]
) -> dict[tuple[str, str], str]:
    """Why a (schema, archive) pair's archive schema cannot be used, for each
    pair that cannot: the name would be cut at 63 bytes, it is one of
    ``schemas`` (the registered schema tenants and template schemas), or
    another pair gets the same name."""
    places = sorted(set(schemas))
    names = sorted(set(archives))
    registered = set(places)
    owners: dict[str, list[tuple[str, str]]] = {}
    for schema in places:
        for archive in names:
            owners.setdefault(schema_archive(schema, archive), []).append((schema, archive))
    refused: dict[tuple[str, str], str] = {}
    for name, pairs in owners.items():
        for schema, archive in pairs:
            if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
                why = (
                    f"its archive schema {schema}_{archive} would be "
                    f"{len(name.encode('utf-8'))} bytes, more than PostgreSQL's "
                    f'{MAX_IDENTIFIER_BYTES}; use a shorter "archive_schema"'
                )
            elif name in registered:
                why = (
                    f"its archive schema {name} is the schema of schema tenant {name}; "
                    'use another "archive_schema"'
                )
            elif len(pairs) > 1:
                other = next(p for p in pairs if p != (schema, archive))
                why = (
                    f"its archive schema {name} would also be schema tenant {other[0]}'s "
                    f'(archive_schema "{other[1]}"); use another "archive_schema"'
                )
            else:
                continue
            refused[(schema, archive)] = why
    return refused


def rules_for_schema_tenants(
    rules: list[Rule], template_schema: str
) -> tuple[list[Rule], list[str]]:
    """The rules schema tenants have: those of tables in the template schema;
    the others, with why they are left out."""
    kept: list[Rule] = []
    left: list[str] = []
    for rule in rules:
        if rule.policy.schema != template_schema:
            left.append(
                f"{rule.policy.target} is not in the template schema {template_schema}, so "
                "schema tenants do not have it; its retention policy is not applied to them"
            )
            continue
        sets, _ = for_schema_tenants(rule.sets, template_schema)
        kept.append(Rule(rule.policy, rule.last_day, rule.cutoff, sets))
    return kept, left


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
