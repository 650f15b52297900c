"""detect_drift: how each tenant's schemas differ from the template's.

Read-only, so it takes no operation lock and records no run. Every created
tenant is visited in parallel (Fanout), in three steps:

1. its own history (admmgt.script_history) gives its version; a tenant at
   another version than the template is expected to differ and is reported
   as such, not compared object by object;
2. one query returns a sha256 over a canonical description of every managed
   object, computed by the tenant's server (``FINGERPRINT``); a tenant whose
   fingerprint equals the template's is identical and costs nothing more;
3. only a tenant that differs sends its object list (``OBJECTS``), which is
   compared here with the template's.

Managed schemas are every schema except admmgt's own, the system schemas and
those of extensions. Objects belonging to an extension are left out (the
extension itself is compared, with its version). Privileges, owners and
comments are not compared. Row-level security is: whether a table has it
enabled and forced, and every policy.

Schema tenants (``t_separatedb => 0``, or both modes by default) are compared
with the template schema, in the same way, through a connection to their host
database: only their own schema is read, with it on the search_path so that
its objects print bare, and what still names it (an index's table, a
routine's header, a ``SET search_path`` value) is mapped to ``<schema>`` on
both sides (``objects_sql``). A tenant object that names the template schema
is therefore reported, not mapped away. Extensions are the host database's,
shared, and not compared per schema.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._registry import (
    DATABASE_MODE,
    SCHEMA_MODE,
    TENANT_SELECT,
    Tenant,
    mode_of,
    mode_sql,
    place_conninfo,
    templates,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run
from admmgt_plpy._settings import load_settings
from admmgt_plpy._types import APPLIED, Fragment, Plpy

# The remote session: names printed fully qualified (so the same object reads
# the same in every database), and nothing it runs can write.
SESSION = """\
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false) AS a,
       pg_catalog.set_config('default_transaction_read_only', 'on', false) AS b"""
SESSION_COLUMNS = "a text, b text"

# What a schema place's own name is mapped to, on both sides (objects_sql).
SCHEMA_WORD = "<schema>"


def session_sql(schema: str | None) -> str:
    """SESSION for a place: a schema place has its schema on the search_path,
    after pg_catalog (nothing in it can stand in for a catalog function or
    operator), so that its own objects print bare."""
    if schema is None:
        return SESSION
    path = quote_literal(f"pg_catalog, {quote_ident(schema)}, pg_temp")
    return SESSION.replace("'pg_catalog, pg_temp'", path, 1)


# (object_kind, object_name, definition) of every managed object.
OBJECTS = r"""
WITH extension_members AS (  -- by pg_depend's reference index, not a scan of it all
    SELECT classid, objid FROM pg_catalog.pg_depend
    WHERE refclassid = 'pg_catalog.pg_extension'::regclass AND deptype = 'e'
),
schemas AS (
    SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace AS n
    WHERE @SCHEMAS@
),@MEMBERS@
rels AS (
    SELECT c.oid, c.relkind, c.relispartition, c.relpersistence, c.reltablespace,
           c.relpartbound, c.relrowsecurity, c.relforcerowsecurity,
           c.oid::regclass::text AS qname
    FROM pg_catalog.pg_class AS c JOIN schemas AS s ON s.oid = c.relnamespace@IN_PG_CLASS@
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT EXISTS (SELECT FROM extension_members AS e
                      WHERE e.classid = 'pg_catalog.pg_class'::regclass AND e.objid = c.oid)
)
@DATABASE@SELECT CASE WHEN r.relispartition THEN 'partition'
            WHEN r.relkind = 'f' THEN 'foreign table' ELSE 'table' END,
       r.qname,
       CASE WHEN r.relispartition
            THEN 'partition of ' || (SELECT i.inhparent::regclass::text
                                     FROM pg_catalog.pg_inherits AS i
                                     WHERE i.inhrelid = r.oid LIMIT 1)
                 || ' ' || pg_catalog.pg_get_expr(r.relpartbound, r.oid)
            ELSE CASE r.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
                                ELSE 'table' END END
       || CASE WHEN r.relkind = 'p'
               THEN ' partitioned by ' || pg_catalog.pg_get_partkeydef(r.oid) ELSE '' END
       || CASE r.relpersistence WHEN 'u' THEN ' unlogged' ELSE '' END
       || CASE WHEN r.relrowsecurity THEN ' row level security' ELSE '' END
       || CASE WHEN r.relforcerowsecurity THEN ' forced' ELSE '' END
       || coalesce(' tablespace ' || (SELECT t.spcname FROM pg_catalog.pg_tablespace AS t
                                      WHERE t.oid = r.reltablespace), '')
FROM rels AS r WHERE r.relkind IN ('r', 'p', 'f')
UNION ALL
SELECT 'column', r.qname || '.' || pg_catalog.quote_ident(a.attname),
       pg_catalog.format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || CASE WHEN a.attgenerated = 's'
               THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                    || ') STORED'
               ELSE coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') END
       || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                             WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
FROM rels AS r
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE r.relkind IN ('r', 'p', 'f') AND NOT r.relispartition
UNION ALL
SELECT 'constraint', r.qname || '.' || pg_catalog.quote_ident(co.conname),
       pg_catalog.pg_get_constraintdef(co.oid)
FROM pg_catalog.pg_constraint AS co JOIN rels AS r ON r.oid = co.conrelid
WHERE co.conparentid = 0 AND co.conislocal
UNION ALL
SELECT 'policy', r.qname || '.' || pg_catalog.quote_ident(pol.polname),
       CASE WHEN pol.polpermissive THEN 'permissive' ELSE 'restrictive' END
       || ' for ' || CASE pol.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert'
                                     WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete'
                                     ELSE 'all' END
       || ' to ' || pg_catalog.array_to_string(ARRAY(
              SELECT CASE WHEN x.oid = 0 THEN 'public'
                          ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.oid)) END
              FROM pg_catalog.unnest(pol.polroles) AS x (oid) ORDER BY 1), ', ')
       || coalesce(' using (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) || ')', '')
       || coalesce(' with check (' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid)
                   || ')', '')
FROM pg_catalog.pg_policy AS pol JOIN rels AS r ON r.oid = pol.polrelid
UNION ALL
SELECT 'index', ic.oid::regclass::text,
       pg_catalog.pg_get_indexdef(i.indexrelid)
       || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END
FROM pg_catalog.pg_index AS i
JOIN rels AS r ON r.oid = i.indrelid
JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
WHERE NOT ic.relispartition
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS co
                  WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid
                    AND co.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.qname,
       pg_catalog.pg_get_viewdef(r.oid, true)
FROM rels AS r WHERE r.relkind IN ('v', 'm')
UNION ALL
SELECT 'trigger', r.qname || '.' || pg_catalog.quote_ident(t.tgname),
       pg_catalog.pg_get_triggerdef(t.oid)
FROM pg_catalog.pg_trigger AS t JOIN rels AS r ON r.oid = t.tgrelid
WHERE NOT t.tgisinternal AND t.tgparentid = 0
UNION ALL
SELECT 'sequence', r.qname,
       pg_catalog.format_type(q.seqtypid, NULL) || ' increment ' || q.seqincrement
       || ' minvalue ' || q.seqmin || ' maxvalue ' || q.seqmax || ' start ' || q.seqstart
       || ' cache ' || q.seqcache || CASE WHEN q.seqcycle THEN ' cycle' ELSE '' END
FROM rels AS r JOIN pg_catalog.pg_sequence AS q ON q.seqrelid = r.oid
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d   -- identity: part of its column
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = r.oid
                    AND d.deptype = 'i')
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                      ELSE 'function' END,
       p.oid::regprocedure::text,
       CASE WHEN p.prokind = 'a' THEN 'aggregate'
            ELSE pg_catalog.pg_get_functiondef(p.oid) END
FROM pg_catalog.pg_proc AS p JOIN schemas AS s ON s.oid = p.pronamespace@IN_PG_PROC@
WHERE NOT EXISTS (SELECT FROM extension_members AS e
                  WHERE e.classid = 'pg_catalog.pg_proc'::regclass AND e.objid = p.oid)
UNION ALL
SELECT 'type', t.oid::regtype::text,
       CASE t.typtype
           WHEN 'e' THEN 'enum (' || (SELECT string_agg(pg_catalog.quote_literal(e.enumlabel),
                                                        ', ' ORDER BY e.enumsortorder)
                                      FROM pg_catalog.pg_enum AS e
                                      WHERE e.enumtypid = t.oid) || ')'
           ELSE 'domain over ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                || coalesce(' DEFAULT ' || t.typdefault, '')
                || coalesce(' ' || (SELECT string_agg(pg_catalog.pg_get_constraintdef(c.oid),
                                                      ' ' ORDER BY c.conname)
                                    FROM pg_catalog.pg_constraint AS c
                                    WHERE c.contypid = t.oid), '')
       END
FROM pg_catalog.pg_type AS t JOIN schemas AS s ON s.oid = t.typnamespace@IN_PG_TYPE@
WHERE t.typtype IN ('e', 'd')
  AND NOT EXISTS (SELECT FROM extension_members AS e
                  WHERE e.classid = 'pg_catalog.pg_type'::regclass AND e.objid = t.oid)
"""
OBJECTS_COLUMNS = "object_kind text, object_name text, definition text"

# A database's managed schemas: all but admmgt's, the system's and extensions'.
_DATABASE_SCHEMAS = r"""n.nspname NOT IN ('admmgt', 'pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
      AND NOT EXISTS (SELECT FROM extension_members AS e
                      WHERE e.classid = 'pg_catalog.pg_namespace'::regclass AND e.objid = n.oid)"""
# A database's schemas and extensions (a schema place has neither: it is one
# schema, and the extensions are its host database's).
_DATABASE_ROWS = """SELECT 'schema' AS object_kind,
       pg_catalog.quote_ident(s.nspname) AS object_name, '' AS definition
FROM schemas AS s
UNION ALL
SELECT 'extension', pg_catalog.quote_ident(x.extname),
       'version ' || x.extversion || ' in schema ' || pg_catalog.quote_ident(n.nspname)
FROM pg_catalog.pg_extension AS x JOIN pg_catalog.pg_namespace AS n ON n.oid = x.extnamespace
UNION ALL
"""
_OBJECTS_TEMPLATE = OBJECTS
# A schema place finds its relations, routines and types through pg_depend's
# reference index (every one depends on its schema), not by scanning pg_class,
# pg_proc and pg_type: a host of 1,000 schemas has over 100,000 pg_class rows,
# and every schema's read would scan them all.
_MEMBERS = """
members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend AS d
    WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
      AND d.refobjid = (SELECT s.oid FROM schemas AS s)
),"""
_ALIASES = {"pg_class": "c", "pg_proc": "p", "pg_type": "t"}


def _objects(schemas: str, database_rows: str, *, members: bool) -> str:
    """OBJECTS over the schemas ``schemas`` selects (SQL on pg_namespace AS n);
    ``members``: through pg_depend (one schema)."""
    text = _OBJECTS_TEMPLATE.replace("@SCHEMAS@", schemas).replace("@DATABASE@", database_rows)
    text = text.replace("@MEMBERS@", _MEMBERS if members else "")
    for catalog, alias in _ALIASES.items():
        found = (
            f"\n    AND {alias}.oid IN (SELECT m.objid FROM members AS m"
            f" WHERE m.classid = 'pg_catalog.{catalog}'::regclass)"
        )
        text = text.replace(f"@IN_{catalog.upper()}@", found if members else "")
    return text


OBJECTS = _objects(_DATABASE_SCHEMAS, _DATABASE_ROWS, members=False)


def _as_are(expression: str) -> str:
    """SQL: the text ``expression`` as a regular expression (ARE) matching exactly it."""
    return rf"pg_catalog.regexp_replace({expression}, '([^[:alnum:]_])', '\\\1', 'g')"


def map_schema_sql(expression: str, schema: str) -> str:
    """SQL: ``expression`` with schema ``schema`` named as SCHEMA_WORD where it
    names it: ``<schema>.`` (quoted as PostgreSQL prints it, not inside another
    name) and ``'<schema>'`` (a SET search_path value). The server quotes the
    name, as it does when it prints it."""
    name = quote_literal(schema)
    prefix = (
        "'(^|[^[:alnum:]_$.\"])' || " + _as_are(f"pg_catalog.quote_ident({name})") + r" || '\.'"
    )
    word = quote_literal(r"\1" + SCHEMA_WORD + ".")
    value = _as_are(f"pg_catalog.quote_literal({name})")
    value_word = quote_literal(quote_literal(SCHEMA_WORD))
    return (
        f"pg_catalog.regexp_replace(pg_catalog.regexp_replace({expression}, {prefix}, {word},"
        f" 'g'), {value}, {value_word}, 'g')"
    )


def objects_sql(schema: str | None) -> str:
    """OBJECTS of a database (None) or of one schema place, its name mapped."""
    if schema is None:
        return OBJECTS
    inner = _objects(f"n.nspname = {quote_literal(schema)}", "", members=True)
    return (
        f"SELECT o.object_kind, {map_schema_sql('o.object_name', schema)} AS object_name,"
        f" {map_schema_sql('o.definition', schema)} AS definition"
        f" FROM ({inner}) AS o (object_kind, object_name, definition)"
    )


def fingerprint_sql(schema: str | None) -> str:
    """FINGERPRINT of a database (None) or of one schema place."""
    return FINGERPRINT if schema is None else FINGERPRINT.replace(OBJECTS, objects_sql(schema), 1)


# The same description, hashed by the database's own server: byte order ("C"),
# so the order cannot depend on a database's collation.
FINGERPRINT = f"""
SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(coalesce(
           string_agg(o.object_kind || ' ' || o.object_name || ' '
                      || coalesce(o.definition, ''), E'\\n'
                      ORDER BY o.object_kind COLLATE "C", o.object_name COLLATE "C"),
           ''), 'UTF8')), 'hex') AS fingerprint,
       count(*)::integer AS objects
FROM ({OBJECTS}) AS o"""
FINGERPRINT_COLUMNS = "fingerprint text, objects integer"

# Kinds whose name is "<table>.<name>": left out when their table is missing or extra.
TABLE_PARTS = ("column", "constraint", "trigger", "policy")
DETAIL_WIDTH = 160

Objects = dict[tuple[str, str], str]


@dataclass(frozen=True)
class Difference:
    object_kind: str
    object_name: str
    difference: str  # missing | extra | different | unreachable
    detail: str


@dataclass
class Snapshot:
    """What was read from one database."""

    version: int | None
    fingerprint: str
    objects: Objects = field(default_factory=dict)


# --------------------------------------------------------------- pure parts


def shorten(text: str, width: int = DETAIL_WIDTH) -> str:
    """One line, whitespace collapsed, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def describe_change(template: str, tenant: str) -> str:
    """A short account of how two definitions differ."""
    a, b = template.strip().splitlines() or [""], tenant.strip().splitlines() or [""]
    half = DETAIL_WIDTH // 2 - 12
    if len(a) == 1 and len(b) == 1:
        return f"template: {shorten(a[0], half)}; tenant: {shorten(b[0], half)}"
    for number, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if " ".join(x.split()) != " ".join(y.split()):
            return f"line {number}: template: {shorten(x, half)}; tenant: {shorten(y, half)}"
    if len(a) != len(b):
        return f"template has {len(a)} lines, tenant {len(b)}"
    return "whitespace differs"


def compare(template: Objects, tenant: Objects) -> list[Difference]:
    """Every object missing from, extra in or different in the tenant, in name order."""
    gone = {name for kind, name in template if kind in ("table", "foreign table")} - {
        name for kind, name in tenant if kind in ("table", "foreign table")
    }
    added = {name for kind, name in tenant if kind in ("table", "foreign table")} - {
        name for kind, name in template if kind in ("table", "foreign table")
    }

    def part_of(tables: set[str], kind: str, name: str) -> bool:
        return kind in TABLE_PARTS and name.rpartition(".")[0] in tables

    found: list[Difference] = []
    for key in sorted(set(template) | set(tenant)):
        kind, name = key
        if key not in tenant:
            if not part_of(gone, kind, name):
                found.append(
                    Difference(kind, name, "missing", "template: " + shorten(template[key]))
                )
        elif key not in template:
            if not part_of(added, kind, name):
                found.append(Difference(kind, name, "extra", "tenant: " + shorten(tenant[key])))
        elif template[key] != tenant[key]:
            found.append(
                Difference(kind, name, "different", describe_change(template[key], tenant[key]))
            )
    return found


def objects_of(rows: Iterable[dict[str, Any]]) -> Objects:
    return {(r["object_kind"], r["object_name"]): r["definition"] or "" for r in rows}


# --------------------------------------------------------------- the jobs


def _schema_of(place: Tenant) -> str | None:
    """The schema a schema place's objects are read from (None: a database)."""
    return place.database if place.is_schema else None


def _read(conn: str, place: Tenant) -> Fragment:
    """Version and fingerprint of the place on ``conn`` (a sub-generator)."""
    schema = _schema_of(place)
    yield Run(conn, session_sql(schema), SESSION_COLUMNS)
    if schema is not None:
        found = yield Run(
            conn,
            f"SELECT pg_catalog.to_regnamespace({quote_literal(quote_ident(schema))}) IS NOT NULL"
            " AS found",
            "found boolean",
        )
        if not found[0]["found"]:
            raise RemoteError(
                "3F000",
                f'schema "{schema}" does not exist in host database "{place.host}"',
            )
    # autocommit: a missing table is harmless
    _, state = yield from _history.read_state(conn, place.history_table)
    version = _history.version_of(state)
    fingerprint = (yield Run(conn, fingerprint_sql(schema), FINGERPRINT_COLUMNS))[0]["fingerprint"]
    return Snapshot(version, fingerprint)


def _not_read(exc: RemoteError) -> Outcome:
    """A database detect_drift could not read (its own failure, not a cluster down)."""
    message = f"{exc.sqlstate} {exc.message}"
    if exc.detail:
        message += ": " + exc.detail
    return Outcome("failed", shorten(message), exc.sqlstate, exc.statement)


def read_template(template: Tenant, clusters: Clusters) -> Job:
    try:
        conn = yield Connect(place_conninfo(clusters, template.place))
        snapshot: Snapshot = yield from _read(conn, template)
        objects = yield Run(conn, objects_sql(_schema_of(template)), OBJECTS_COLUMNS)
        snapshot.objects = objects_of(objects)
    except RemoteError as exc:
        return _not_read(exc)
    return Outcome("ok", details={"snapshot": snapshot})


def _check_tenant(tenant: Tenant, template: Snapshot, clusters: Clusters) -> Job:
    try:
        conn = yield Connect(place_conninfo(clusters, tenant.place))
        mine: Snapshot = yield from _read(conn, tenant)
        if mine.version != template.version:
            found = [
                Difference(
                    "version",
                    _history.SCHEMA_HISTORY if tenant.is_schema else _history.DATABASE_HISTORY,
                    "different",
                    f"tenant at script {mine.version}, template at script {template.version}: "
                    "objects not compared (held back, failed, or not yet migrated; see "
                    "admmgt.fleet_status)",
                )
            ]
            return Outcome("ok", details={"differences": found})
        if mine.fingerprint == template.fingerprint:
            return Outcome("noop", details={"differences": []})
        objects = objects_of((yield Run(conn, objects_sql(_schema_of(tenant)), OBJECTS_COLUMNS)))
    except RemoteError as exc:
        return _not_read(exc)
    return Outcome("ok", details={"differences": compare(template.objects, objects)})


# ------------------------------------------------------------------ entry


def _tenants(plpy: Plpy, dbname: str | None, mode: int) -> list[Tenant]:
    query = f"""{TENANT_SELECT}
               WHERE NOT v.deleted AND NOT v.istemplate AND v.status = {APPLIED}
                 AND {mode_sql("v", mode)}
                 AND ($1::text IS NULL OR lower(v.dbname) = lower($1::text)) ORDER BY v.id"""
    rows = plpy.execute(plpy.prepare(query, ["text"]), [dbname])
    return [Tenant.of(r) for r in rows]


def _modes(plpy: Plpy, dbname: str | None, separatedb: int | None) -> list[int]:
    """The tenancy modes to compare: ``separatedb``'s; else ``dbname``'s; else
    each mode that has a created template or tenant (database tenants when
    none has: the usual error then says what is missing)."""
    if separatedb is not None:
        return [mode_of(separatedb)]
    rows = plpy.execute(
        plpy.prepare(
            f"""SELECT DISTINCT coalesce(separatedb, 1) AS mode
               FROM admmgt.vendor_db_settings
               WHERE NOT deleted AND status = {APPLIED}
                 AND ($1::text IS NULL OR (NOT istemplate AND lower(dbname) = lower($1::text)))
               ORDER BY 1 DESC""",
            ["text"],
        ),
        [dbname],
    )
    if dbname is not None and not rows:
        raise AdmmgtError(
            f'detect_drift: "{dbname}" is not a created tenant (a vendor_db_settings row '
            "with status 2, not the template, not deleted)",
            hint="SELECT dbname, status_word FROM admmgt.fleet_status; lists the databases.",
        )
    return [int(r["mode"]) for r in rows] or [DATABASE_MODE]


def _local_reason(plpy: Plpy, tenant: Tenant) -> str | None:
    """Why a database of the local cluster may be out of reach, as far as the catalog tells."""
    rows = plpy.execute(
        plpy.prepare(
            "SELECT datallowconn FROM pg_catalog.pg_database WHERE datname = $1", ["text"]
        ),
        [tenant.place.database],
    )
    what = "the database" if not tenant.is_schema else f'host database "{tenant.place.database}"'
    if not rows:
        return f"{what} does not exist"
    if not rows[0]["datallowconn"]:
        return f"{what} does not allow connections (datallowconn is false)"
    return None


def detect_drift(
    plpy: Plpy, *, dbname: str | None, separatedb: int | None = None
) -> list[dict[str, Any]]:
    """Rows of (dbname, object_kind, object_name, difference, detail), sorted.

    ``separatedb``: database tenants (1) or schema tenants (0) only; None:
    every mode with created tenants (or ``dbname``'s)."""
    settings = load_settings(plpy)
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    rows: list[dict[str, Any]] = []
    for mode in _modes(plpy, dbname, separatedb):
        rows += _detect(plpy, dbname, mode, settings.max_parallel, dblink, clusters)
    rows.sort(key=lambda r: (r["dbname"], r["object_kind"], r["object_name"]))
    return rows


def _detect(
    plpy: Plpy,
    dbname: str | None,
    mode: int,
    max_parallel: int,
    dblink: Dblink,
    clusters: Clusters,
) -> list[dict[str, Any]]:
    """detect_drift's rows for one tenancy mode, and its NOTICE."""
    started = time.monotonic()
    template, *copies = templates(plpy, mode)
    # The other clusters' templates are compared too, as "<name>@<cluster>".
    tenants = (copies if dbname is None else []) + _tenants(plpy, dbname, mode)
    kind = "template schema" if mode == SCHEMA_MODE else "template"

    read: list[Outcome] = []
    Fanout(dblink, 1, 0, lambda _t, outcome, _ms: read.append(outcome)).run(
        [template], lambda t: read_template(t, clusters)
    )
    if read[0].outcome != "ok":
        raise AdmmgtError(
            f'detect_drift: {kind} "{template.label}" could not be read '
            f"({read[0].message}); nothing was compared",
            hint=f"Check that the {kind} exists and admmgt can connect to "
            f"{'its host database' if mode == SCHEMA_MODE else 'it'}.",
        )
    snapshot: Snapshot = read[0].details["snapshot"]

    rows: list[dict[str, Any]] = []
    counts = {"identical": 0, "differ": 0, "unreachable": 0}

    def on_done(tenant: Tenant, outcome: Outcome, _elapsed_ms: float) -> None:
        if outcome.outcome != "ok" and outcome.outcome != "noop":
            counts["unreachable"] += 1
            why = _local_reason(plpy, tenant) if tenant.cluster == "local" else None
            detail = f"{outcome.message}: {why}" if why else outcome.message
            found = [
                Difference(
                    "schema" if tenant.is_schema else "database",
                    tenant.database,
                    "unreachable",
                    detail,
                )
            ]
        else:
            found = outcome.details["differences"]
            counts["differ" if found else "identical"] += 1
        rows.extend(
            {
                "dbname": tenant.label,
                "object_kind": d.object_kind,
                "object_name": d.object_name,
                "difference": d.difference,
                "detail": d.detail,
            }
            for d in found
        )

    Fanout(dblink, max_parallel, 0, on_done, clusters).run(
        tenants, lambda t: _check_tenant(t, snapshot, clusters)
    )
    which = "schema tenant(s)" if mode == SCHEMA_MODE else "tenant(s)"
    name = template.label if mode == SCHEMA_MODE else template.database
    plpy.notice(
        f"detect_drift: {len(tenants)} {which} compared with {kind} {name} "
        f"({len(snapshot.objects)} objects): {counts['identical']} identical, "
        f"{counts['differ']} differ, {counts['unreachable']} unreachable "
        f"in {time.monotonic() - started:.1f} s"
    )
    return rows
