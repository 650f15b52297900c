"""check_rls: audit databases for the ways row-level security fails to isolate tenants.

Read-only, like detect_drift: no lock, no run recorded. Each database answers
one query (``AUDIT``) in a read-only session; its rows are the findings:

- ``no_policy``: a table with a tenant column (a ``script_tables.tenantcolumn``
  of the metadata, or ``tenant_id``) whose row-level security is off or that
  has no policy: every role that may read it sees every tenant;
- ``not_forced``: row-level security is on but not forced, so the table's
  owner bypasses the policies;
- ``owner_bypasses``: a table with row-level security owned by a role with
  BYPASSRLS, which FORCE does not bind;
- ``bypassrls_role``: a role (not a superuser) with BYPASSRLS; roles belong to
  the cluster, so each is reported once per cluster;
- ``view_not_invoker``: a view over a table with row-level security without
  ``security_invoker``: it reads as its owner, so the owner's bypass leaks
  through it; a materialized view over one is reported too (its rows were
  read by whoever refreshed it);
- ``leaky_policy_function``: a function (outside pg_catalog) called by a
  policy that is not LEAKPROOF: it sees other tenants' rows, and its errors
  or notices can reveal them.

Superusers bypass row-level security always; they are not reported, since
admmgt itself connects as one. Partitions are audited like any table: one
queried by name applies its own row-level security and policies, not its
parent's, so a partition of a tenant-scoped table without them shows every
tenant's rows to a role granted on it (``GRANT ... ON ALL TABLES IN SCHEMA``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._names import quote_literal
from admmgt_plpy._registry import (
    CREATED,
    DATABASE_MODE,
    SCHEMA_MODE,
    Tenant,
    place_conninfo,
    templates,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run
from admmgt_plpy._settings import load_settings
from admmgt_plpy._types import APPLIED, Plpy

SESSION = """\
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false) AS a,
       pg_catalog.set_config('default_transaction_read_only', 'on', false) AS b"""
SESSION_COLUMNS = "a text, b text"
DEFAULT_TENANT_COLUMN = "tenant_id"
CLUSTER_WIDE = ("bypassrls_role",)

AUDIT_COLUMNS = "finding text, object_name text, detail text"


def audit_query(tenant_columns: Iterable[str]) -> str:
    """The audit of one database; ``tenant_columns`` name the columns that mark a tenant key."""
    names = sorted({c.lower() for c in tenant_columns} | {DEFAULT_TENANT_COLUMN})
    array = "ARRAY[" + ", ".join(quote_literal(n) for n in names) + "]::pg_catalog.name[]"
    return rf"""
WITH schemas AS (
    SELECT n.oid FROM pg_catalog.pg_namespace AS n
    WHERE n.nspname NOT IN ('admmgt', 'pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS e
                      WHERE e.deptype = 'e' AND e.classid = 'pg_catalog.pg_namespace'::regclass
                        AND e.objid = n.oid)
),
tables AS (
    SELECT c.oid, c.oid::regclass::text AS qname, c.relkind, c.relrowsecurity,
           c.relforcerowsecurity, r.rolname, r.rolsuper, r.rolbypassrls, c.reloptions,
           CASE WHEN c.relispartition
                THEN (SELECT ' (a partition of ' || i.inhparent::regclass::text
                             || ', queried by name it applies its own policies)'
                      FROM pg_catalog.pg_inherits AS i WHERE i.inhrelid = c.oid LIMIT 1)
                ELSE '' END AS partition_of
    FROM pg_catalog.pg_class AS c
    JOIN schemas AS s ON s.oid = c.relnamespace
    JOIN pg_catalog.pg_roles AS r ON r.oid = c.relowner
    WHERE c.relkind IN ('r', 'p', 'v', 'm')
),
keyed AS (
    SELECT t.*, (SELECT a.attname FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname = ANY ({array}) ORDER BY a.attnum LIMIT 1) AS keycol
    FROM tables AS t WHERE t.relkind IN ('r', 'p')
)
SELECT 'no_policy' AS finding, k.qname AS object_name,
       'has tenant column ' || pg_catalog.quote_ident(k.keycol) || ' but '
       || CASE WHEN NOT k.relrowsecurity THEN 'row-level security is not enabled'
               ELSE 'no policy' END
       || k.partition_of
       || ': every role that may read it sees every tenant''s rows; declare it tenant-scoped '
       || '(script_tables.tenantcolumn) or add ENABLE and FORCE ROW LEVEL SECURITY and a policy'
       AS detail
FROM keyed AS k
WHERE k.keycol IS NOT NULL AND (NOT k.relrowsecurity OR NOT EXISTS (
    SELECT FROM pg_catalog.pg_policy AS p WHERE p.polrelid = k.oid))
UNION ALL
SELECT 'not_forced', k.qname,
       'row-level security is enabled but not forced' || k.partition_of || ', so its owner '
       || pg_catalog.quote_ident(k.rolname) || ' bypasses the policies; '
       || 'ALTER TABLE ' || k.qname || ' FORCE ROW LEVEL SECURITY'
FROM keyed AS k
WHERE k.relrowsecurity AND NOT k.relforcerowsecurity
UNION ALL
SELECT 'owner_bypasses', k.qname,
       'owned by ' || pg_catalog.quote_ident(k.rolname)
       || ', which has BYPASSRLS, so FORCE does not bind it; give the table an owner '
       || 'without BYPASSRLS, or do not let the application use that role'
FROM keyed AS k
WHERE k.relrowsecurity AND k.rolbypassrls AND NOT k.rolsuper
UNION ALL
SELECT 'bypassrls_role', pg_catalog.quote_ident(r.rolname),
       'role has BYPASSRLS: it reads and writes every tenant''s rows regardless of policies; '
       || 'ALTER ROLE ' || pg_catalog.quote_ident(r.rolname) || ' NOBYPASSRLS unless it is '
       || 'meant to (backups, admin tools)'
FROM pg_catalog.pg_roles AS r
WHERE r.rolbypassrls AND NOT r.rolsuper
UNION ALL
SELECT 'view_not_invoker', v.qname,
       CASE WHEN v.relkind = 'm'
            THEN 'materialized view over a table with row-level security: its rows were read '
                 || 'by whoever refreshed it, for every tenant; drop it or give it its own '
                 || 'tenant column and policy'
            ELSE 'view over a table with row-level security, without security_invoker: it '
                 || 'reads as its owner ' || pg_catalog.quote_ident(v.rolname)
                 || ', whose bypass leaks through it; ALTER VIEW ' || v.qname
                 || ' SET (security_invoker = true)' END
FROM tables AS v
WHERE v.relkind IN ('v', 'm')
  AND (v.relkind = 'm' OR NOT EXISTS (
      SELECT FROM pg_catalog.unnest(v.reloptions) AS o (opt)
      WHERE pg_catalog.lower(o.opt) IN ('security_invoker=true', 'security_invoker=on',
                                        'security_invoker=1', 'security_invoker=yes')))
  AND EXISTS (
      SELECT FROM pg_catalog.pg_rewrite AS rw
      JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
           AND d.objid = rw.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
      JOIN pg_catalog.pg_class AS t ON t.oid = d.refobjid
      WHERE rw.ev_class = v.oid AND t.oid <> v.oid AND t.relrowsecurity)
UNION ALL
SELECT DISTINCT 'leaky_policy_function', f.oid::regprocedure::text,
       'called by policy ' || pg_catalog.quote_ident(pol.polname) || ' on '
       || pol.polrelid::regclass::text || ' and not LEAKPROOF: it is given other tenants'' '
       || 'rows, and its errors or notices can reveal them; make it LEAKPROOF after review '
       || '(superuser), or compare with the setting directly'
FROM pg_catalog.pg_policy AS pol
JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_catalog.pg_policy'::regclass
     AND d.objid = pol.oid AND d.refclassid = 'pg_catalog.pg_proc'::regclass
JOIN pg_catalog.pg_proc AS f ON f.oid = d.refobjid
WHERE NOT f.proleakproof AND f.pronamespace <> 'pg_catalog'::regnamespace
"""


def _audit(target: Tenant, clusters: Clusters, query: str) -> Job:
    try:
        conn = yield Connect(place_conninfo(clusters, target.place))
        yield Run(conn, SESSION, SESSION_COLUMNS)
        rows = yield Run(conn, query, AUDIT_COLUMNS)
    except RemoteError as exc:
        message = f"{exc.sqlstate} {exc.message}"
        return Outcome("failed", message, exc.sqlstate, exc.statement)
    findings = [dict(r) for r in rows]
    return Outcome("ok" if findings else "noop", details={"findings": findings})


def tenant_columns(plpy: Plpy) -> list[str]:
    rows = plpy.execute(
        "SELECT DISTINCT lower(btrim(tenantcolumn)) AS c FROM admmgt.script_tables"
        " WHERE tenantcolumn IS NOT NULL AND status <> 0"
    )
    return [r["c"] for r in rows if r["c"]]


def _targets(plpy: Plpy, dbname: str | None) -> list[Tenant]:
    if dbname is None:
        rows = plpy.execute(
            f"""SELECT id, dbname, cluster_name, scriptversion FROM admmgt.vendor_db_settings
               WHERE {CREATED} AND separatedb = {DATABASE_MODE} ORDER BY id"""
        )
        return templates(plpy) + [Tenant.of(r) for r in rows]
    rows = plpy.execute(
        plpy.prepare(
            f"""SELECT id, dbname, cluster_name, scriptversion, separatedb
               FROM admmgt.vendor_db_settings
               WHERE NOT deleted AND lower(dbname) = lower($1)
               ORDER BY status = {APPLIED} DESC, id
               LIMIT 1""",
            ["text"],
        ),
        [dbname],
    )
    if rows and rows[0]["separatedb"] == SCHEMA_MODE:
        raise AdmmgtError(
            f'check_rls: "{dbname}" is a schema tenant; check_rls audits databases (a schema '
            "tenant's rows are kept apart by its schema and its role, not by row-level security)",
            hint="SELECT * FROM admmgt.check_rls(); audits every database tenant.",
        )
    if rows:
        return [Tenant.of(rows[0])]
    local = plpy.execute(
        plpy.prepare("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", ["text"]),
        [dbname],
    )
    if not local:
        raise AdmmgtError(
            f'check_rls: "{dbname}" is neither a registered database nor a database of the '
            "local cluster; nothing was audited",
            hint="SELECT dbname, status_word FROM admmgt.fleet_status; lists the databases.",
        )
    return [Tenant(0, dbname, "local")]


def check_rls(plpy: Plpy, *, dbname: str | None) -> list[dict[str, Any]]:
    """Rows of (dbname, finding, object_name, detail), sorted; no rows: nothing found."""
    started = time.monotonic()
    settings = load_settings(plpy)
    targets = _targets(plpy, dbname)
    query = audit_query(tenant_columns(plpy))
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    rows: list[dict[str, Any]] = []
    seen_cluster_wide: set[tuple[str, str, str]] = set()
    unreachable = [0]

    def on_done(target: Tenant, outcome: Outcome, _elapsed_ms: float) -> None:
        if outcome.outcome not in ("ok", "noop"):
            unreachable[0] += 1
            rows.append(
                {
                    "dbname": target.label,
                    "finding": "unreachable",
                    "object_name": target.database,
                    "detail": f"not audited: {outcome.message}",
                }
            )
            return
        for f in outcome.details["findings"]:
            if f["finding"] in CLUSTER_WIDE:
                key = (target.cluster, f["finding"], f["object_name"])
                if key in seen_cluster_wide:
                    continue
                seen_cluster_wide.add(key)
            rows.append({"dbname": target.label, **f})

    Fanout.over_fleet(dblink, settings, on_done, clusters, stop_early=False).run(
        targets, lambda t: _audit(t, clusters, query)
    )
    rows.sort(key=lambda r: (r["dbname"], r["finding"], r["object_name"]))
    plpy.notice(
        f"check_rls: {len(targets)} database(s) audited, {len(rows)} finding(s)"
        + (f", {unreachable[0]} unreachable" if unreachable[0] else "")
        + f" in {time.monotonic() - started:.1f} s"
    )
    return rows
