"""promote_tenant's SQL: what it reads of a schema's catalog, and the
statements it writes (grants, partitions, foreign tables, checksums).

Every name is quoted, every value a literal (admmgt_plpy._names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._remote import Dblink

# What the write block revokes, by relation kind (the rest is kept).
WRITES = {
    "r": ("INSERT", "UPDATE", "DELETE", "TRUNCATE"),
    "p": ("INSERT", "UPDATE", "DELETE", "TRUNCATE"),
    "S": ("USAGE", "UPDATE"),
}
# Output settings both sides of the verification share: a row's text (and so
# its checksum) must not depend on either session's defaults.
SAME_TEXT = (
    "SELECT set_config('DateStyle', 'ISO, YMD', false), set_config('TimeZone', 'UTC', false),"
    " set_config('extra_float_digits', '3', false), set_config('bytea_output', 'hex', false),"
    " set_config('IntervalStyle', 'postgres', false)"
)
SAME_TEXT_COLUMNS = "a text, b text, c text, d text, e text"
HISTORY_TABLE = "admmgt.script_history"


def catalog_sql(schema: str) -> str:
    """One query: the tables, partitions and sequences of ``schema`` (and the
    privileges other roles than the owners hold on them), as JSON text."""
    s = quote_literal(schema)
    return f"""\
WITH ns AS (SELECT oid, nspowner, nspacl FROM pg_catalog.pg_namespace WHERE nspname = {s}),
rels AS (
    SELECT c.oid, c.relname, c.relkind, c.relispartition, c.relowner, c.relacl, c.relpartbound
    FROM pg_catalog.pg_class AS c JOIN ns ON c.relnamespace = ns.oid
    WHERE c.relkind IN ('r', 'p', 'S', 'f', 'm'))
SELECT json_build_object(
  'exists', EXISTS (SELECT FROM ns),
  'relations', (SELECT coalesce(json_agg(json_build_object(
      'name', r.relname, 'kind', r.relkind, 'partition', r.relispartition,
      'parent', (SELECT p.relname FROM pg_catalog.pg_inherits AS i
                 JOIN pg_catalog.pg_class AS p ON p.oid = i.inhparent
                 WHERE i.inhrelid = r.oid AND r.relispartition),
      'bound', CASE WHEN r.relispartition THEN pg_catalog.pg_get_expr(r.relpartbound, r.oid) END,
      'partkey', CASE WHEN r.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(r.oid) END,
      'depth', CASE WHEN r.relispartition
                    THEN (SELECT count(*) FROM pg_catalog.pg_partition_ancestors(r.oid)) - 1
                    ELSE 0 END,
      'columns', (SELECT coalesce(json_agg(a.attname ORDER BY a.attname), '[]')
                  FROM pg_catalog.pg_attribute AS a
                  WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped),
      'copied', (SELECT coalesce(json_agg(json_build_array(a.attname,
                     pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum), '[]')
                 FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = ''),
      'owned_by', (SELECT json_build_array(t.relname, a.attname)
                   FROM pg_catalog.pg_depend AS d
                   JOIN pg_catalog.pg_class AS t ON t.oid = d.refobjid
                   JOIN pg_catalog.pg_attribute AS a
                     ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                   WHERE r.relkind = 'S' AND d.classid = 'pg_catalog.pg_class'::regclass
                     AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
                     AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0 LIMIT 1)
    ) ORDER BY r.relname), '[]') FROM rels AS r),
  'grants', (SELECT coalesce(json_agg(json_build_array(r.relname, r.relkind,
                 CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                      ELSE pg_catalog.pg_get_userbyid(x.grantee) END,
                 x.privilege_type, x.is_grantable) ORDER BY r.relname, x.grantee, x.privilege_type),
                 '[]')
             FROM rels AS r CROSS JOIN LATERAL pg_catalog.aclexplode(r.relacl) AS x
             WHERE x.grantee <> r.relowner AND r.relkind IN ('r', 'p', 'S')),
  'schema_grants', (SELECT coalesce(json_agg(json_build_array(
                 CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                      ELSE pg_catalog.pg_get_userbyid(x.grantee) END,
                 x.privilege_type, x.is_grantable)), '[]')
             FROM ns CROSS JOIN LATERAL pg_catalog.aclexplode(ns.nspacl) AS x
             WHERE x.grantee <> ns.nspowner),
  'database_grants', (SELECT coalesce(json_agg(json_build_array(
                 pg_catalog.pg_get_userbyid(x.grantee), x.privilege_type, x.is_grantable)), '[]')
             FROM pg_catalog.pg_database AS db
             CROSS JOIN LATERAL pg_catalog.aclexplode(db.datacl) AS x
             WHERE db.datname = current_database() AND x.grantee NOT IN (0, db.datdba))
)::text AS j"""


@dataclass
class Catalog:
    """What :func:`catalog_sql` says of one schema."""

    exists: bool
    relations: dict[str, dict[str, Any]]
    grants: list[list[Any]]
    schema_grants: list[list[Any]]
    database_grants: list[list[Any]]

    @classmethod
    def read(cls, dblink: Dblink, conn: str, schema: str) -> Catalog:
        raw = json.loads(dblink.query(conn, catalog_sql(schema), "j text")[0]["j"])
        return cls(
            raw["exists"],
            {r["name"]: r for r in raw["relations"]},
            raw["grants"],
            raw["schema_grants"],
            raw["database_grants"],
        )

    def tables(self) -> dict[str, dict[str, Any]]:
        """The tables that are not partitions (the tenant's history left out)."""
        return {
            n: r
            for n, r in self.relations.items()
            if r["kind"] in ("r", "p") and not r["partition"] and n != _history.SCHEMA_HISTORY
        }

    def partitions(self) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.relations.items() if r["partition"]}

    def leaves(self) -> list[str]:
        """Tables that hold rows: plain tables and leaf partitions."""
        return sorted(
            n
            for n, r in self.relations.items()
            if r["kind"] == "r" and n != _history.SCHEMA_HISTORY
        )

    def sequences(self) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.relations.items() if r["kind"] == "S"}


def fit_name(name: str, reserve: int) -> str:
    """``name`` cut (at a character) so that it and ``reserve`` more bytes fit 63."""
    while len(name.encode("utf-8")) + reserve > 63:
        name = name[:-1]
    return name


def grant_statements(
    schema: str, grants: list[dict[str, Any]], *, revoke: bool, only_writes: bool = True
) -> list[str]:
    """GRANT (or REVOKE) statements for recorded grants on ``schema``'s
    relations, one per relation and role; ``only_writes``: the privileges the
    write block takes away."""
    by: dict[tuple[str, str, str, bool], list[str]] = {}
    for g in grants:
        if only_writes and g["privilege"] not in WRITES.get(g["kind"], ()):
            continue
        key = (g["on"], g["kind"], g["role"], bool(g["grantable"]) and not revoke)
        by.setdefault(key, []).append(g["privilege"])
    statements = []
    for (on, kind, role, grantable), privileges in sorted(by.items()):
        what = "SEQUENCE" if kind == "S" else "TABLE"
        who = "PUBLIC" if role == "PUBLIC" else quote_ident(role)
        privs = ", ".join(sorted(set(privileges)))
        target = f"{what} {qualified(schema, on)}"
        if revoke:
            statements.append(f"REVOKE {privs} ON {target} FROM {who}")
        else:
            option = " WITH GRANT OPTION" if grantable else ""
            statements.append(f"GRANT {privs} ON {target} TO {who}{option}")
    return statements


def partition_statements(source: Catalog, target: Catalog, app: str) -> list[str]:
    """Make the new database's partitions (in ``app``) the tenant's: drop those
    the tenant has not (or bound otherwise), create those it lacks, level by
    level; and empty its tables (the template's rows are not the tenant's)."""
    mine, theirs = source.partitions(), target.partitions()

    def same(n: str) -> bool:
        a, b = mine.get(n), theirs.get(n)
        return bool(
            a
            and b
            and a["bound"] == b["bound"]
            and a["parent"] == b["parent"]
            and a["partkey"] == b["partkey"]
        )

    statements = []
    dropped: set[str] = set()
    for n, _r in sorted(theirs.items(), key=lambda x: -int(x[1]["depth"])):
        if not same(n):
            # Dropping a partitioned partition drops its own partitions with it.
            statements.append(f"DROP TABLE IF EXISTS {qualified(app, n)}")
            dropped.add(n)
    for n, r in sorted(mine.items(), key=lambda x: (int(x[1]["depth"]), x[0])):
        if n in theirs and n not in dropped:
            continue
        create = (
            f"CREATE TABLE {qualified(app, n)} PARTITION OF {qualified(app, r['parent'])}"
            f" {r['bound']}"
        )
        if r["partkey"]:
            create += f" PARTITION BY {r['partkey']}"
        statements.append(create)
    tops = sorted(n for n in target.tables())
    if tops:
        statements.append(f"TRUNCATE {', '.join(qualified(app, n) for n in tops)}")
    if not statements:
        statements.append("SELECT 'nothing to change'")
    return statements


def foreign_table(
    name: str,
    server: str,
    columns: list[list[str]] | list[tuple[str, str]],
    schema: str,
    table: str,
) -> str:
    cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns)
    return (
        f"CREATE FOREIGN TABLE {name} ({cols}) SERVER {server} OPTIONS"
        f" (schema_name {quote_literal(schema)}, table_name {quote_literal(table)})"
    )


def table_sums(
    dblink: Dblink, conn: str, tables: list[tuple[str, list[str]]]
) -> list[tuple[int, str]]:
    """(count, checksum) of each table: the sum of a hash of each row's text,
    its columns in name order, so that column order and row order do not matter."""
    parts = []
    for i, (table, columns) in enumerate(tables):
        row = ", ".join(quote_ident(c) for c in columns)
        parts.append(
            f"SELECT {i} AS i, count(*)::text AS n, coalesce(sum(pg_catalog.hashtextextended("
            f"ROW({row})::text, 0)::numeric), 0)::text AS h FROM {table}"
        )
    rows = dblink.query(conn, " UNION ALL ".join(parts), "i integer, n text, h text")
    by = {r["i"]: (int(r["n"]), r["h"]) for r in rows}
    return [by[i] for i in range(len(tables))]
