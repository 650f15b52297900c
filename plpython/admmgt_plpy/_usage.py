"""What each tenant uses: the rows of the view ``admmgt.tenant_usage``.

Order of operations:

1. Read the registry: every tenant that is not deleted (templates excluded).
2. Per cluster that holds any of them, one dblink connection to the
   cluster's maintenance database (the admin database on the local cluster,
   ``postgres`` elsewhere), one cluster after the other:
   ``pg_database`` and ``pg_stat_database`` for size, connections, commits,
   rollbacks, deadlocks, temp bytes and cache hits; then, when the
   pg_stat_statements extension is installed in that maintenance database,
   each tenant's slowest statements (the view is cluster-wide, by dbid).
3. One row per tenant. A cluster that cannot be reached, or a tenant whose
   database is not there, gives NULL numbers (unknown) and says why in
   ``problem``: unknown is never shown as 0.

No tenant database is connected to, so a tenant's own connection count is
not raised by looking at it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._remote import Dblink, RemoteError, redact
from admmgt_plpy._types import APPLIED, Plpy

SLOWEST = 5  # statements per tenant, by mean execution time
QUERY_CHARS = 500  # of each statement's (normalized) text

USAGE_COLUMNS = (
    "dbname",
    "database",
    "cluster_name",
    "status",
    "size_bytes",
    "connections",
    "xact_commit",
    "xact_rollback",
    "deadlocks",
    "temp_bytes",
    "cache_hit_ratio",
    "stats_reset",
    "slowest_statements",
    "problem",
)

_STATS_COLUMNS = (
    "datname text, size_bytes bigint, connections integer, xact_commit bigint,"
    " xact_rollback bigint, deadlocks bigint, temp_bytes bigint, cache_hit_ratio numeric,"
    " stats_reset timestamptz"
)


def stats_query(databases: list[str]) -> str:
    names = ", ".join(quote_literal(d) for d in databases)
    return f"""SELECT d.datname::text, pg_catalog.pg_database_size(d.oid),
       s.numbackends, s.xact_commit, s.xact_rollback, s.deadlocks, s.temp_bytes,
       round(s.blks_hit::numeric / nullif(s.blks_hit + s.blks_read, 0), 4),
       s.stats_reset
FROM pg_catalog.pg_database AS d
LEFT JOIN pg_catalog.pg_stat_database AS s ON s.datid = d.oid
WHERE d.datname = ANY (ARRAY[{names}]::text[])"""


FIND_STATEMENTS = """SELECT n.nspname::text AS status FROM pg_catalog.pg_extension AS e
JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'"""


def statements_query(schema: str, databases: list[str]) -> str:
    names = ", ".join(quote_literal(d) for d in databases)
    return f"""SELECT d.datname::text, jsonb_agg(jsonb_build_object(
           'query', left(s.query, {QUERY_CHARS}), 'calls', s.calls,
           'mean_ms', round(s.mean_exec_time::numeric, 3),
           'max_ms', round(s.max_exec_time::numeric, 3),
           'total_ms', round(s.total_exec_time::numeric, 3), 'rows', s.rows)
       ORDER BY s.mean_exec_time DESC)::text
FROM (SELECT p.*, row_number() OVER (PARTITION BY p.dbid ORDER BY p.mean_exec_time DESC) AS rank
      FROM {schema}.pg_stat_statements AS p) AS s
JOIN pg_catalog.pg_database AS d ON d.oid = s.dbid
WHERE s.rank <= {SLOWEST} AND d.datname = ANY (ARRAY[{names}]::text[])
GROUP BY d.datname"""


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
HIDDEN = "'***'"


def hide_literals(query: str) -> str:
    """``query`` with every string constant replaced by ``'***'``.

    pg_stat_statements replaces the constants of SELECT, INSERT, UPDATE,
    DELETE and MERGE with $n, but keeps a utility statement's text as it was
    sent: ``ALTER ROLE x PASSWORD 'secret'``, ``CREATE USER MAPPING ...
    OPTIONS (password 'secret')`` or a dblink connection string would reach the
    operator who reads tenant_usage. Quoted identifiers and comments are
    skipped, so a quote inside them starts nothing; an unterminated constant
    (the text is cut at QUERY_CHARS) is hidden to the end.
    """
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        prev = query[i - 1] if i else " "
        if c == "-" and query.startswith("--", i):
            end = query.find("\n", i)
            end = n if end < 0 else end
            out.append(query[i:end])
            i = end
        elif c == "/" and query.startswith("/*", i):
            end = query.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(query[i:end])
            i = end
        elif c == '"':
            end = i + 1
            while end < n:
                if query[end] == '"':
                    if query.startswith('""', end):
                        end += 2
                        continue
                    end += 1
                    break
                end += 1
            out.append(query[i:end])
            i = end
        elif c == "'" or (
            c in "eE" and query.startswith("'", i + 1) and not (prev.isalnum() or prev in "_$")
        ):
            backslash = c != "'"
            end = i + (2 if backslash else 1)
            closed = False
            while end < n:
                if backslash and query[end] == "\\":
                    end += 2
                elif query[end] == "'":
                    if query.startswith("''", end):
                        end += 2
                        continue
                    end += 1
                    closed = True
                    break
                else:
                    end += 1
            out.append(HIDDEN if closed else HIDDEN[:-1] + "...")
            i = min(end, n)
        elif c == "$" and not (prev.isalnum() or prev in "_$"):
            tag = _DOLLAR.match(query, i)
            if tag is None:
                out.append(c)
                i += 1
                continue
            end = query.find(tag.group(0), tag.end())
            out.append(HIDDEN if end >= 0 else HIDDEN[:-1] + "...")
            i = n if end < 0 else end + len(tag.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _hide_statement_literals(statements: str) -> str:
    listed = json.loads(statements)
    for item in listed:
        if isinstance(item.get("query"), str):
            item["query"] = hide_literals(item["query"])
    return json.dumps(listed)


def tenant_usage(plpy: Plpy) -> list[dict[str, Any]]:
    tenants = plpy.execute(
        """SELECT dbname, lower(dbname) AS database, coalesce(cluster_name, 'local') AS cluster,
                  status
           FROM admmgt.vendor_db_settings
           WHERE NOT deleted AND NOT istemplate AND separatedb = 1 ORDER BY id"""
    )
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for t in tenants:
        if t["status"] == APPLIED:
            by_cluster[t["cluster"]].append(t["database"])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    problems: dict[str, str] = {}
    if by_cluster:
        dblink = Dblink(plpy)
        clusters = Clusters(plpy)
        for cluster, databases in sorted(by_cluster.items()):
            try:
                for stats in _read_cluster(dblink, clusters, cluster, databases):
                    found[(cluster, stats["datname"])] = stats
            except (RemoteError, AdmmgtError) as exc:
                text = exc.describe() if isinstance(exc, RemoteError) else exc.message
                problems[cluster] = f'cluster "{cluster}" cannot be reached: {redact(text)}'
    rows = []
    for t in tenants:
        row: dict[str, Any] = dict.fromkeys(USAGE_COLUMNS)
        row.update(
            dbname=t["dbname"],
            database=t["database"],
            cluster_name=t["cluster"],
            status=t["status"],
        )
        known = found.get((t["cluster"], t["database"]))
        if t["status"] != APPLIED:
            row["problem"] = f"not created (status {t['status']})"
        elif t["cluster"] in problems:
            row["problem"] = problems[t["cluster"]]
        elif known is None:
            row["problem"] = (
                f'database "{t["database"]}" does not exist on cluster "{t["cluster"]}"'
            )
        else:
            row.update({k: v for k, v in known.items() if k != "datname"})
        rows.append(row)
    return rows


def _read_cluster(
    dblink: Dblink, clusters: Clusters, cluster: str, databases: list[str]
) -> list[dict[str, Any]]:
    with dblink.session(clusters.conninfo(cluster, clusters.maintenance_db(cluster))) as conn:
        stats = dblink.query(conn, stats_query(databases), _STATS_COLUMNS)
        for row in stats:
            row["slowest_statements"] = None  # unknown unless pg_stat_statements answers
        extension = dblink.query(conn, FIND_STATEMENTS)
        if extension:
            schema = quote_ident(extension[0]["status"])
            statements = {
                r["datname"]: _hide_statement_literals(r["statements"])
                for r in dblink.query(
                    conn,
                    statements_query(schema, databases),
                    "datname text, statements text",
                )
            }
            for row in stats:
                row["slowest_statements"] = statements.get(row["datname"], "[]")
        return stats
