"""applyMaintenance's planning, pure: which range partitions a database lacks.

The range parents the metadata describes (``range_sets``, named exactly as the
compiler names them), what a database's catalog says exists
(``partitions_query``, ``parent_states``, ``parse_range_bound``), and the
children to create (``plan_parent``, ``create_statements``). No plpy, no
dblink: admmgt_plpy._maintenance runs it over the fleet, and lifecycleMgt
reads the same catalog rows (docs/maintenance.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from admmgt_plpy._calendar import child_name, child_suffix, periods
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._hashparts import hash_bound, hash_child
from admmgt_plpy._metadata import PartitionRow
from admmgt_plpy._names import check_identifier, qualified, quote_ident, quote_literal
from admmgt_plpy._partitioning import Problems, read_partitioning
from admmgt_plpy._tenancy import POLICY_SUFFIX, check_tenant_type, policy_sql, rls_sql

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

    def placed(self, schema: str | None) -> RangeSet:
        """The same parent as a place holds it: in ``schema`` (a schema tenant's,
        for a table the metadata puts in the template schema); None: as named."""
        return self if schema is None or schema == self.schema else replace(self, schema=schema)


def for_schema_tenants(
    sets: list[RangeSet], template_schema: str
) -> tuple[list[RangeSet], list[str]]:
    """The range sets schema tenants have: those of tables in the template schema
    (each tenant holds them in its own schema, :meth:`RangeSet.placed`); the
    others, with why they are left out (scripts for schema tenants name only
    the template schema)."""
    kept = [rs for rs in sets if rs.schema == template_schema]
    left = sorted(
        {
            f"{rs.schema}.{rs.table} is not in the template schema {template_schema}, so schema "
            "tenants do not have it; nothing is done for it in them"
            for rs in sets
            if rs.schema != template_schema
        }
    )
    return kept, left


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
    (admmgt_plpy._partitioning.read_partitioning), so that they are named exactly
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


PARTITIONS_AND_NAMES_COLUMNS = "k text, " + CATALOG_COLUMNS


def partitions_and_names_query(sets: list[RangeSet], wanted: dict[int, list[Child]]) -> str:
    """One statement: ``partitions_query``'s rows (k = 'partition'), then a row
    (k = 'taken', ps = schema, p = name) for each relation, of any kind, that
    already has the name of a child in ``wanted`` (``id(set)`` -> children)."""
    names = ", ".join(
        f"({quote_literal(rs.schema)}, {quote_literal(c.name)})"
        for rs in sets
        for c in wanted[id(rs)]
    )
    query = f"SELECT 'partition' AS k, q.* FROM ({partitions_query(sets)}) AS q"
    if not names:
        return query
    return (
        f"{query}\n        UNION ALL\n"
        "        SELECT 'taken', n.nspname::text, c.relname::text, NULL, NULL, NULL, NULL\n"
        "        FROM pg_catalog.pg_class AS c"
        " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace\n"
        f"        WHERE (n.nspname, c.relname) IN (VALUES {names})"
    )


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


def create_statements(rs: RangeSet, child: Child) -> list[str]:
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
