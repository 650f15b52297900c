"""Snapshots of the admmgt schema's catalog, for verify and for upgrade tests.

A snapshot maps an object's stable name (never its OID) to its definition, so
two installs, or an install before and after a change, compare with ``==``.
"""

from __future__ import annotations

from typing import Any

from psycopg import Cursor

# Routines and views of schema admmgt that are not members of an extension
# (dblink may live in the schema): the objects the idempotent SQL defines.
REPLACEABLE = """
SELECT 'routine' AS kind, p.oid::regprocedure::text AS name,
       pg_catalog.pg_get_functiondef(p.oid) AS definition,
       p.proacl::text AS acl, pg_catalog.obj_description(p.oid, 'pg_proc') AS comment
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = %(schema)s::regnamespace
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                    AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'view', c.oid::regclass::text, pg_catalog.pg_get_viewdef(c.oid),
       c.relacl::text, pg_catalog.obj_description(c.oid, 'pg_class')
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind IN ('v', 'm')
"""

TABLES = """
SELECT c.relname, c.relkind::text, c.relacl::text,
       pg_catalog.obj_description(c.oid, 'pg_class')
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind IN ('r', 'p', 'S')
"""

COLUMNS = """
SELECT c.relname || '.' || a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity::text,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attacl::text,
       pg_catalog.col_description(c.oid, a.attnum)
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind IN ('r', 'p')
"""

CONSTRAINTS_AND_INDEXES = """
SELECT 'constraint ' || c.conrelid::regclass::text || '.' || c.conname,
       pg_catalog.pg_get_constraintdef(c.oid)
FROM pg_catalog.pg_constraint AS c
WHERE c.connamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'index ' || i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid)
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
WHERE c.relnamespace = %(schema)s::regnamespace
"""


def replaceable_objects(cur: Cursor[Any], schema: str = "admmgt") -> dict[str, tuple[Any, ...]]:
    """Routines and views with definition, privileges and comment, by kind and name."""
    cur.execute(REPLACEABLE, {"schema": schema})
    return {f"{row[0]} {row[1]}": tuple(row[2:]) for row in cur.fetchall()}


def schema_snapshot(cur: Cursor[Any], schema: str = "admmgt") -> dict[str, tuple[Any, ...]]:
    """Everything in a schema a DBA could see differ between two installs or databases."""
    snapshot = {f"table {k}": v for k, v in _rows(cur, TABLES, schema).items()}
    snapshot.update({f"column {k}": v for k, v in _rows(cur, COLUMNS, schema).items()})
    snapshot.update(_rows(cur, CONSTRAINTS_AND_INDEXES, schema))
    snapshot.update(replaceable_objects(cur, schema))
    return snapshot


def _rows(cur: Cursor[Any], query: str, schema: str) -> dict[str, tuple[Any, ...]]:
    cur.execute(query, {"schema": schema})
    return {row[0]: tuple(row[1:]) for row in cur.fetchall()}
