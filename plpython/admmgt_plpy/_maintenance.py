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

One remote transaction per database, with lock_timeout and retries as the
migration engine has. A period is skipped and reported, never failing the
database, when it overlaps an existing partition, when its name is taken, or
when the parent's default partition holds rows of it; with
``t_move_default_rows`` those rows are moved into the new partition instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from admmgt_plpy import _clock
from admmgt_plpy._calendar import child_name, child_suffix, periods
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._fleetrun import Progress, database_failure, fleet_run, utc_session
from admmgt_plpy._hashparts import hash_bound, hash_child
from admmgt_plpy._metadata import PartitionRow, Problems, read_partitioning
from admmgt_plpy._names import check_identifier, qualified, quote_ident, quote_literal
from admmgt_plpy._registry import Tenant, check_mode, templates, updating_tenants
from admmgt_plpy._remote import Job, Outcome, RemoteError, Run
from admmgt_plpy._settings import Settings
from admmgt_plpy._tenancy import POLICY_SUFFIX, check_tenant_type, policy_sql, rls_sql
from admmgt_plpy._transaction import TransactionFailed, in_transaction
from admmgt_plpy._types import Fragment, Plpy

MAX_NUMDAYS = 3660  # ten years ahead; more is almost certainly a typo
NOTICE_ITEMS = 5  # per database; the run log's details hold every one

# Tables whose script reached the template (the one-time partitions exist there).
METADATA_QUERY = """
    SELECT t.id AS tableid, t.schemaname, t.tablename, p.id AS partid, p.partcolumnname,
           p.parttype, p.partvalue, p.parttbs, p.subpartcolumnname, p.subparttype,
           p.subpartvalue, p.subparttbs, t.tenantcolumn, t.tenanttype
    FROM admmgt.script_tables AS t
    JOIN admmgt.scripts AS s ON s.id = t.scriptid
    JOIN admmgt.script_table_partitions AS p ON p.tableid = t.id
    WHERE t.haspart = 1 AND t.status <> 0
      AND (s.status = 2 OR s.applied_to_template_at IS NOT NULL)
    ORDER BY t.id, p.id"""


# ------------------------------------------------------------------ metadata


@dataclass(frozen=True)
class RangeSet:
    """A range-partitioned parent and how its children are named and placed."""

    table_id: int
    schema: str
    table: str  # the metadata table (the root)
    parent: str  # the relation whose partitions these are: the table or a list child
    name_parts: tuple[str, ...]  # a child is child_name(*name_parts, suffix)
    column: str
    interval: str
    tablespace: str | None
    # Range-over-hash: each new range child is itself hash-partitioned, with all of
    # its hash children made at once (a hash set never grows).
    hash_column: str | None = None
    hash_modulus: int | None = None
    hash_tablespace: str | None = None
    # A tenant-scoped table's key (column, type): every child gets its policy.
    tenant: tuple[str, str] | None = None

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.parent}"

    def children(self, first: date, through: date) -> list[Child]:
        return [
            Child(child_name(*self.name_parts, child_suffix(self.interval, lo)), lo, hi)
            for lo, hi in periods(self.interval, first, through)
        ]


@dataclass(frozen=True)
class Child:
    name: str
    lo: date
    hi: date

    @property
    def period(self) -> str:
        return f"[{self.lo.isoformat()}, {self.hi.isoformat()})"

    @property
    def bound(self) -> str:
        return (
            f"FOR VALUES FROM ({quote_literal(self.lo.isoformat())}) "
            f"TO ({quote_literal(self.hi.isoformat())})"
        )


def range_sets(rows: list[dict[str, Any]]) -> tuple[list[RangeSet], list[str]]:
    """The range parents described by METADATA_QUERY rows, and the problems of the
    tables refused (every problem of each, as the compiler words them)."""
    by_table: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_table.setdefault(int(row["tableid"]), []).append(row)
    result: list[RangeSet] = []
    problems: list[str] = []
    for table_rows in by_table.values():
        try:
            result.extend(_table_range_sets(table_rows))
        except MetadataError as exc:
            problems.extend(exc.problems)
    return result, problems


def _table_range_sets(rows: list[dict[str, Any]]) -> list[RangeSet]:
    """A table's range parents, from the partitioning the compiler reads
    (admmgt_plpy._metadata.read_partitioning), so that they are named exactly
    as the compiler names the table's first partitions."""
    first = rows[0]
    tid = int(first["tableid"])
    w = f"script_tables row {tid}"
    schema = check_identifier(first["schemaname"], what=f"{w}, schemaname")
    table = check_identifier(first["tablename"], what=f"{w}, tablename")
    tenant: tuple[str, str] | None = None
    if str(first.get("tenantcolumn") or "").strip() and str(first.get("tenanttype") or "").strip():
        tenant = (
            check_identifier(first["tenantcolumn"], what=f"{w}, tenantcolumn"),
            check_tenant_type(first["tenanttype"], what=f"{w}, tenanttype"),
        )
    checks = Problems()
    plan = read_partitioning(
        [PartitionRow.from_row({**row, "id": row["partid"]}) for row in rows],
        f"{schema}.{table}",
        checks,
    )
    if plan is not None and plan.kind == "hash":
        return []  # a hash set is made whole with its table and never grows
    checks.raise_any()
    if plan is None:
        return []
    if plan.kind == "range" and plan.interval is not None:
        hashed: dict[str, Any] = {}
        if plan.sub_modulus is not None:
            hashed = {
                "hash_column": plan.subcolumn,
                "hash_modulus": plan.sub_modulus,
                "hash_tablespace": plan.sub_tablespace,
            }
        return [
            RangeSet(
                tid,
                schema,
                table,
                table,
                (table,),
                plan.column,
                plan.interval,
                plan.tablespace,
                **hashed,
                tenant=tenant,
            )
        ]
    return [
        RangeSet(
            tid,
            schema,
            table,
            child_name(table, plan.column, child.value),
            (table, plan.column, child.value),
            plan.subcolumn,
            child.sub_interval,
            child.sub_tablespace,
            tenant=tenant,
        )
        # A plain list child has nothing to maintain; a hash set under one is
        # made whole with it and never grows.
        for child in plan.children
        if child.sub_interval is not None and plan.subcolumn is not None
    ]


# ------------------------------------------------------------------ the catalog


_BOUND = re.compile(r"^FOR VALUES FROM \((.+)\) TO \((.+)\)$")
_LITERAL = re.compile(
    r"^'(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}):(\d{2}(?:\.\d+)?))?(?:\+00(?::00)?)?'$"
)


@dataclass(frozen=True)
class ExistingRange:
    """An existing range partition as whole days: [lo, hi) covers it (exact: it is [lo, hi))."""

    name: str
    lo: date
    hi: date
    exact: bool
    schema: str = ""  # the partition's own schema, where the catalog said

    @property
    def period(self) -> str:
        lo = "MINVALUE" if self.lo == date.min else self.lo.isoformat()
        hi = "MAXVALUE" if self.hi == date.max else self.hi.isoformat()
        return f"[{lo}, {hi})"


def _bound_value(token: str, *, upper: bool) -> tuple[date, bool] | None:
    token = token.strip()
    if token in ("MINVALUE", "'-infinity'"):
        return date.min, False
    if token in ("MAXVALUE", "'infinity'"):
        return date.max, False
    m = _LITERAL.match(token)
    if m is None:
        return None
    try:
        d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    midnight = m.group(4) is None or (
        int(m.group(4)) == 0 and int(m.group(5)) == 0 and float(m.group(6)) == 0
    )
    if not midnight and upper:
        d = date.max if d == date.max else d + timedelta(days=1)
    return d, midnight


def parse_range_bound(name: str, text: str) -> ExistingRange | None:
    """``FOR VALUES FROM (...) TO (...)`` as printed with TimeZone UTC and DateStyle ISO.

    A bound with a time of day widens to whole days (a half-day partition still
    overlaps its days). None when the bound is not one date-like value each side.
    """
    m = _BOUND.match(text.strip())
    if m is None:
        return None
    lo = _bound_value(m.group(1), upper=False)
    hi = _bound_value(m.group(2), upper=True)
    if lo is None or hi is None:
        return None
    return ExistingRange(name, lo[0], hi[0], lo[1] and hi[1])


@dataclass
class ParentState:
    """What one database has of one parent: from pg_class, pg_inherits and friends."""

    strategy: str | None = None  # pg_partitioned_table.partstrat; None: not partitioned
    ranges: list[ExistingRange] = field(default_factory=list)
    default: tuple[str, str] | None = None  # (schema, name) of the default partition
    unreadable: list[str] = field(default_factory=list)


CATALOG_COLUMNS = "ps text, p text, strat text, cs text, c text, bound text"


def partitions_query(sets: list[RangeSet]) -> str:
    values = ", ".join(
        f"({quote_literal(s.schema)}, {quote_literal(s.parent)})"
        for s in {(r.schema, r.parent): r for r in sets}.values()
    )
    return f"""
        SELECT ps.nspname::text AS ps, p.relname::text AS p, pt.partstrat::text AS strat,
               cs.nspname::text AS cs, c.relname::text AS c,
               pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_catalog.pg_class AS p
        JOIN pg_catalog.pg_namespace AS ps ON ps.oid = p.relnamespace
        LEFT JOIN pg_catalog.pg_partitioned_table AS pt ON pt.partrelid = p.oid
        LEFT JOIN pg_catalog.pg_inherits AS i ON i.inhparent = p.oid
        LEFT JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
        LEFT JOIN pg_catalog.pg_namespace AS cs ON cs.oid = c.relnamespace
        WHERE p.relkind IN ('r', 'p') AND (ps.nspname, p.relname) IN (VALUES {values})"""


def parent_states(rows: list[dict[str, Any]]) -> dict[tuple[str, str], ParentState]:
    states: dict[tuple[str, str], ParentState] = {}
    for r in rows:
        state = states.setdefault((r["ps"], r["p"]), ParentState(r["strat"]))
        if r["c"] is None:
            continue
        bound = r["bound"] or ""
        if bound == "DEFAULT":
            state.default = (r["cs"], r["c"])
            continue
        existing = parse_range_bound(r["c"], bound)
        if existing is None:
            state.unreadable.append(f"{r['cs']}.{r['c']} ({bound})")
        else:
            state.ranges.append(replace(existing, schema=r["cs"]))
    return states


# ------------------------------------------------------------------ planning


@dataclass
class ParentPlan:
    rangeset: RangeSet
    default: tuple[str, str] | None
    create: list[Child] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was not made, and why


def plan_parent(
    rs: RangeSet, wanted: list[Child], state: ParentState | None, taken: set[tuple[str, str]]
) -> ParentPlan | None:
    """The children of ``wanted`` that ``state`` lacks; None if the parent is missing."""
    if state is None:
        return None
    plan = ParentPlan(rs, state.default)
    if state.strategy != "r":
        plan.skipped.append(
            f"{rs.target} is not range-partitioned in this database; nothing was created for it"
        )
        return plan
    if state.unreadable:
        plan.skipped.append(
            f"{rs.target}: cannot read the bounds of partition {state.unreadable[0]}, so "
            "overlaps cannot be ruled out; nothing was created for it (create its partitions "
            "by hand, or detach that partition)"
        )
        return plan
    for child in wanted:
        if any(e.exact and (e.lo, e.hi) == (child.lo, child.hi) for e in state.ranges):
            continue
        over = [e for e in state.ranges if e.lo < child.hi and child.lo < e.hi]
        if over:
            plan.skipped.append(
                f"{rs.schema}.{child.name} {child.period} not created: it overlaps partition "
                f"{over[0].name} {over[0].period} of {rs.target}"
            )
        elif (rs.schema, child.name) in taken:
            plan.skipped.append(
                f"{rs.schema}.{child.name} {child.period} not created: a relation of that "
                "name exists and is not a partition of "
                f"{rs.target}; rename or drop it, then re-run applyMaintenance"
            )
        else:
            plan.create.append(child)
    return plan


# ------------------------------------------------------------------ entry point


def applymaintenance(
    plpy: Plpy, *, separatedb: int, numdays: int, move_default_rows: bool = False
) -> None:
    check_mode(separatedb)
    if numdays is None or numdays < 0 or numdays > MAX_NUMDAYS:
        raise AdmmgtError(
            f"t_numdays must be between 0 and {MAX_NUMDAYS}, not {numdays}",
            hint="CALL admmgt.applyMaintenance(t_numdays => 30);",
        )
    with fleet_run(plpy, "applyMaintenance", lock="maintenance") as run:
        all_templates = templates(plpy)
        today = _clock.announce(plpy, "applyMaintenance")
        through = today + timedelta(days=numdays)
        sets, problems = range_sets([dict(r) for r in plpy.execute(METADATA_QUERY)])
        for problem in problems:
            plpy.notice(f"applyMaintenance: table skipped: {problem}")
        if not sets:
            run.nothing_to_do(
                "applyMaintenance: no range-partitioned table of a script applied to the "
                "template; nothing to do"
            )
            return
        tenants = updating_tenants(plpy)
        arguments = {
            "numdays": numdays,
            "from": today.isoformat(),
            "through": through.isoformat(),
            "move_default_rows": move_default_rows,
            "parents": len(sets),
        }
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
    """Make one database's missing partitions in one transaction (retried on lock timeouts)."""
    try:
        conn = yield from utc_session(target, clusters)
    except RemoteError as exc:
        return _not_maintained(target, exc, "connecting", 1)
    progress = Progress()

    def body() -> Fragment:
        progress.doing = "reading the catalog"
        details = yield from _make_partitions(
            conn, sets, first, through, move_default_rows, progress
        )
        progress.doing = "committing"
        return details

    try:
        details = yield from in_transaction(conn, settings, body)
    except TransactionFailed as failed:
        return _not_maintained(
            target, failed.error, progress.doing, failed.attempts, failed.blockers
        )
    outcome = Outcome("ok" if details["created"] else "noop", details=details)
    outcome.message = _warnings_text(details, limit=None)
    return outcome


def _make_partitions(
    conn: str,
    sets: list[RangeSet],
    first: date,
    through: date,
    move: bool,
    progress: Progress,
) -> Fragment:
    rows = yield Run(conn, partitions_query(sets), CATALOG_COLUMNS)
    states = parent_states(rows)
    wanted = {id(rs): rs.children(first, through) for rs in sets}
    candidates = [
        f"({quote_literal(rs.schema)}, {quote_literal(c.name)})"
        for rs in sets
        for c in wanted[id(rs)]
    ]
    taken: set[tuple[str, str]] = set()
    if candidates:
        found = yield Run(
            conn,
            "SELECT n.nspname::text AS s, c.relname::text AS c FROM pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
            f" WHERE (n.nspname, c.relname) IN (VALUES {', '.join(candidates)})",
            "s text, c text",
        )
        taken = {(r["s"], r["c"]) for r in found}
    details: dict[str, list[Any]] = {
        "created": [],
        "blocked": [],
        "moved": [],
        "skipped": [],
        "missing": [],
    }
    missing_tables: set[str] = set()
    for rs in sets:
        plan = plan_parent(rs, wanted[id(rs)], states.get((rs.schema, rs.parent)), taken)
        if plan is None:
            missing_tables.add(
                f"{rs.target} does not exist in this database (has its script reached it?)"
            )
            continue
        details["skipped"] += plan.skipped
        if plan.create and plan.default is not None:
            yield from _default_rows(conn, plan, move, details, progress)
        for child in plan.create:
            progress.doing = f"creating partition {rs.schema}.{child.name}"
            for sql in _create_statements(rs, child):
                yield Run(conn, sql)
            details["created"].append(f"{rs.schema}.{child.name}")
    details["missing"] = sorted(missing_tables)
    return {k: v for k, v in details.items() if v or k == "created"}


def _create_statements(rs: RangeSet, child: Child) -> list[str]:
    """The range child, and, under range-over-hash, all of its hash children.

    Each child of a tenant-scoped table is bound like the table itself (ENABLE
    and FORCE row-level security, the same policy): a partition queried by
    name applies its own policies, not its parent's.
    """
    sql = (
        f"CREATE TABLE {qualified(rs.schema, child.name)} PARTITION OF "
        f"{qualified(rs.schema, rs.parent)} {child.bound}"
    )
    if rs.hash_column is not None:
        sql += f" PARTITION BY HASH ({quote_ident(rs.hash_column)})"
    elif rs.tablespace is not None:
        sql += f" TABLESPACE {quote_ident(rs.tablespace)}"
    statements = [sql]
    if rs.hash_column is not None and rs.tablespace is not None:
        # A partitioned relation takes its tablespace this way, whatever the
        # database's default is (the compiler's set_partitioned_tablespace).
        statements.append(
            f"ALTER TABLE {qualified(rs.schema, child.name)} SET TABLESPACE "
            f"{quote_ident(rs.tablespace)}"
        )
    if rs.hash_column is not None and rs.hash_modulus is not None:
        for remainder in range(rs.hash_modulus):
            sub = (
                f"CREATE TABLE {qualified(rs.schema, hash_child(child.name, remainder=remainder))}"
                f" PARTITION OF {qualified(rs.schema, child.name)}"
                f" {hash_bound(rs.hash_modulus, remainder)}"
            )
            if rs.hash_tablespace is not None:
                sub += f" TABLESPACE {quote_ident(rs.hash_tablespace)}"
            statements.append(sub)
    if rs.tenant is not None:
        column, datatype = rs.tenant
        policy = child_name(rs.table, POLICY_SUFFIX)
        names = [child.name]
        if rs.hash_column is not None and rs.hash_modulus is not None:
            names += [hash_child(child.name, remainder=r) for r in range(rs.hash_modulus)]
        for name in names:
            statements.append(rls_sql(rs.schema, name))
            statements.append(policy_sql(rs.schema, name, policy, column, datatype))
    return statements


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
        for sql in _create_statements(rs, child):
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
    """A database applyMaintenance could not maintain: nothing was created there."""
    return database_failure(
        target,
        exc,
        doing,
        attempts,
        "maintenance",
        "applyMaintenance",
        "nothing was created",
        blockers,
    )
