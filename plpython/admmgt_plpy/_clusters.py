"""add_cluster: register another PostgreSQL cluster and build its template.

CREATE DATABASE ... TEMPLATE works within one cluster, so every cluster that
holds tenants keeps its own copy of the template (docs/clusters.md). The copy
is built the way a held-back tenant is replayed: an empty database with the
home template's extensions gets every script the home template has, in
order, each atomically with the routines and views the template had around
it, then the home template's current routines and views. It is used only once
its catalog equals the home template's: until then its registry row stays at
status 1 (building) or 3 (failed), and create_database places no tenant there.
Calling add_cluster again resumes or re-checks; nothing is built twice.
"""

from __future__ import annotations

import time
from typing import Any

from admmgt_plpy import _drift, _history, _sync
from admmgt_plpy._conninfo import Clusters, check_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._fleetrun import fleet_run, utc_session
from admmgt_plpy._migration import migrate
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._recording import single
from admmgt_plpy._registry import Tenant, place_conninfo, registry_update, templates
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run, redact
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._scripts import load_applied
from admmgt_plpy._settings import Settings
from admmgt_plpy._types import APPLIED, FAILED, Plpy

SHOWN_DIFFERENCES = 10
CLUSTER_COLUMNS = ("host", "port", "options", "fdw_server", "max_parallel", "description")
HOLD_STILL = (  # the operation locks add_cluster takes: every writer of the home template
    ("migrations", "a migration or add_cluster"),
    ("maintenance", "applyMaintenance"),
    ("lifecycle", "lifecycleMgt"),
    ("sync", "a refresh of routines or views"),
)


def copy_marker(home: Tenant) -> str:
    """The comment admmgt puts on a template copy it created."""
    return f"admmgt template copy of {home.database}"


def add_cluster(plpy: Plpy, *, name: str, given: dict[str, Any]) -> None:
    # The home template must hold still while it is copied and compared.
    with fleet_run(plpy, "add_cluster", locks=HOLD_STILL) as run:
        if not name or not name.strip():
            raise AdmmgtError(
                "add_cluster: t_name must name the cluster",
                hint="CALL admmgt.add_cluster('eu2', t_host => 'pg-eu2.internal', t_port => 5432);",
            )
        home, *_ = templates(plpy)
        existing = plpy.execute(
            plpy.prepare(
                f"SELECT {', '.join(CLUSTER_COLUMNS)} FROM admmgt.clusters WHERE name = $1",
                ["text"],
            ),
            [name],
        )
        options = given.get("options")
        if options and redact(options) != options:  # checked first: never echoed below
            raise AdmmgtError(
                f'add_cluster "{name}": t_options holds a password; admmgt never stores one',
                hint="Put it in a user mapping (t_fdw_server) or a passfile (docs/clusters.md).",
            )
        if existing:
            _check_same(name, dict(existing[0]), given)
        fdw_server = given.get("fdw_server") or (existing[0]["fdw_server"] if existing else None)
        check_options(name, options, mapped=bool(fdw_server))  # routing: host, port, server only
        if name == home.cluster:
            raise AdmmgtError(
                f'cluster "{name}" holds the home template "{home.database}"; nothing to build',
            )

        recorder = run.start({"cluster": name, "new": not existing})
        if not existing:
            _register(plpy, recorder, name, given)
        clusters = run.reload_clusters()  # now with the new row
        unreachable = clusters.probe(run.dblink, name)
        if unreachable is not None:
            raise AdmmgtError(
                f'add_cluster: cluster "{name}" cannot be reached ({unreachable.describe()}); '
                "its row is registered, but no template was built",
                hint="Check host, port and options in admmgt.clusters and the user mapping or "
                "passfile (docs/clusters.md), then CALL admmgt.add_cluster again.",
            )
        copy = _template_row(plpy, recorder, home, name)
        problem = _build(plpy, run.dblink, clusters, run.settings, recorder, home, copy)
        recorder.execute(
            registry_update(copy.id, status=FAILED if problem else APPLIED, error=problem)
        )
        run.finish()
    if problem:
        raise AdmmgtError(
            f'add_cluster: the template copy "{copy.label}" was not made ready: {problem}',
            hint="It stays at status 3: no tenant is created from it and its cluster's tenants "
            "get no new scripts. Fix it on that cluster, then CALL admmgt.add_cluster again to "
            "re-check (or drop the database to rebuild it).",
        )
    version = plpy.execute(
        f"SELECT scriptversion FROM admmgt.vendor_db_settings WHERE id = {int(copy.id)}"
    )
    plpy.notice(
        f'add_cluster: cluster "{name}" is ready for tenants: its template {copy.label} is at '
        f"script {version[0]['scriptversion']} and its catalog equals the home template's"
        f" (run {recorder.run_id}, {time.monotonic() - recorder.started:.1f} s)"
    )


def _check_same(name: str, row: dict[str, Any], given: dict[str, Any]) -> None:
    """A second add_cluster of a registered cluster may repeat, not change, its row."""
    changed = [
        f"{c} (registered {row[c]!r}, given {given[c]!r})"
        for c in CLUSTER_COLUMNS
        if given.get(c) is not None and given[c] != row[c]
    ]
    if changed:
        raise AdmmgtError(
            f'cluster "{name}" is already registered with other values: {", ".join(changed)}; '
            "nothing was changed",
            hint=f"UPDATE admmgt.clusters SET ... WHERE name = {quote_literal(name)}; then "
            f"CALL admmgt.add_cluster({quote_literal(name)});",
        )


def _register(plpy: Plpy, recorder: RunRecorder, name: str, given: dict[str, Any]) -> None:
    q = plpy.quote_nullable
    values = ", ".join(
        q(None if given.get(c) is None else str(given[c]))
        + ("::int" if c in ("port", "max_parallel") else "")
        for c in CLUSTER_COLUMNS
    )
    try:
        recorder.execute(
            f"INSERT INTO admmgt.clusters (name, {', '.join(CLUSTER_COLUMNS)})"
            f" VALUES ({q(name)}, {values})"
        )
    except RemoteError as exc:
        raise AdmmgtError(
            f'add_cluster: cluster "{name}" could not be registered ({exc.describe()}); '
            "nothing was changed"
        ) from None


def _template_row(plpy: Plpy, recorder: RunRecorder, home: Tenant, cluster: str) -> Tenant:
    """This cluster's template database row, registered (status 1, building) if
    missing (a template schema registered there is schema tenants' business)."""
    rows = plpy.execute(
        plpy.prepare(
            """SELECT id, dbname, cluster_name, scriptversion, status
               FROM admmgt.vendor_db_settings
               WHERE istemplate AND NOT deleted AND cluster_name = $1 AND separatedb = 1""",
            ["text"],
        ),
        [cluster],
    )
    if rows and rows[0]["dbname"].lower() != home.database:
        raise AdmmgtError(
            f'cluster "{cluster}" already has template "{rows[0]["dbname"]}" (id {rows[0]["id"]}),'
            f' not a copy of "{home.database}"',
            hint="Set istemplate = false (or deleted = true) on it first.",
        )
    if not rows:
        recorder.execute(
            "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status, cluster_name,"
            f" updateflag) VALUES ({quote_literal(home.dbname)}, true, 1,"
            f" {quote_literal(cluster)}, true)"
        )
        rows = plpy.execute(
            plpy.prepare(
                """SELECT id, dbname, cluster_name, scriptversion FROM admmgt.vendor_db_settings
                   WHERE istemplate AND NOT deleted AND cluster_name = $1 AND separatedb = 1""",
                ["text"],
            ),
            [cluster],
        )
    return Tenant.of(rows[0])


def _build(
    plpy: Plpy,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    recorder: RunRecorder,
    home: Tenant,
    copy: Tenant,
) -> str | None:
    """Create, fill and check the copy; None when it equals the home template."""
    label = f"template {copy.label}"
    schemas = _sync.schemas_expression(settings.sync_schemas)
    created = single(plpy, dblink, copy, _create(home, copy, clusters), recorder, label=label)
    if created.outcome == "failed":
        return created.message
    ids = _home_scripts(dblink, clusters, home)
    chain = load_applied(plpy, ids, "add_cluster")
    sync = _sync.SyncPlan.for_tenants(plpy, schemas, ids)
    job = migrate(copy, chain, settings, clusters, recorder.run_id, sync, who="template")
    replayed = single(plpy, dblink, copy, job, recorder, label=label)
    if replayed.outcome == "failed":
        return replayed.message
    made = single(plpy, dblink, copy, _copy_partitions(home, copy, clusters), recorder, label=label)
    if made.outcome == "failed":
        return made.message
    try:
        current = _sync.template_definitions(dblink, clusters, home, schemas, _sync.KINDS)
    except RemoteError as exc:
        return f"reading the home template's routines and views failed ({exc.describe()})"
    for kind, definitions in current.items():
        job = _sync.refresh_one(copy, kind, definitions, schemas, False, clusters, settings)
        synced = single(plpy, dblink, copy, job, recorder, label=f"{label} ({kind})")
        if synced.outcome == "failed":
            return synced.message
    return _compare(dblink, clusters, home, copy)


def _create(home: Tenant, copy: Tenant, clusters: Clusters) -> Job:
    """CREATE DATABASE the copy (like the home template's encoding and locale), with
    the home template's extensions; adopt one an interrupted call made."""
    source = yield Connect(place_conninfo(clusters, home.place))
    settings = yield Run(  # to_jsonb: the ICU columns exist from PostgreSQL 15 on
        source,
        """SELECT pg_catalog.pg_encoding_to_char(d.encoding) AS encoding, d.datcollate,
                  d.datctype, to_jsonb(d) ->> 'datlocprovider' AS provider,
                  to_jsonb(d) ->> 'daticulocale' AS icu
           FROM pg_catalog.pg_database AS d WHERE d.datname = current_database()""",
        "encoding text, datcollate text, datctype text, provider text, icu text",
    )
    schemas = yield Run(source, _MANAGED_SCHEMAS, "nspname text")
    extensions = yield Run(
        source,
        """SELECT x.extname, x.extversion, n.nspname FROM pg_catalog.pg_extension AS x
           JOIN pg_catalog.pg_namespace AS n ON n.oid = x.extnamespace
           WHERE x.extname <> 'plpgsql' ORDER BY x.oid""",
        "extname text, extversion text, nspname text",
    )
    db = quote_ident(copy.database)
    conn = yield Connect(clusters.conninfo(copy.cluster, clusters.maintenance_db(copy.cluster)))
    marker = copy_marker(home)
    found = yield Run(
        conn,
        "SELECT shobj_description(oid, 'pg_database') AS c FROM pg_catalog.pg_database"
        f" WHERE datname = {quote_literal(copy.database)}",
        "c text",
    )
    note = "created"
    if found and found[0]["c"] != marker:
        return Outcome(
            "failed",
            f'database "{copy.database}" already exists on cluster "{copy.cluster}" but admmgt '
            f"did not create it as a template copy; drop or rename it there, or "
            f"COMMENT ON DATABASE {db} IS {quote_literal(marker)} to have it checked and used",
            "42P04",
        )
    if found:
        note = "found from an earlier call"
    else:
        s = settings[0]
        icu = (
            f" LOCALE_PROVIDER icu ICU_LOCALE {quote_literal(s['icu'])}"
            if s["provider"] == "i"
            else ""
        )
        yield Run(
            conn,
            f"CREATE DATABASE {db} TEMPLATE template0 ENCODING {quote_literal(s['encoding'])}"
            f" LC_COLLATE {quote_literal(s['datcollate'])} LC_CTYPE {quote_literal(s['datctype'])}"
            + icu,
        )
        yield Run(conn, f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC")
        yield Run(conn, f"COMMENT ON DATABASE {db} IS {quote_literal(marker)}")
    target = yield Connect(place_conninfo(clusters, copy.place))
    for x in schemas:  # the POC's application schema is made by hand, not by a script
        yield Run(target, f"CREATE SCHEMA IF NOT EXISTS {x['nspname']}")
    for x in extensions:
        yield Run(target, f"CREATE SCHEMA IF NOT EXISTS {quote_ident(x['nspname'])}")
        yield Run(
            target,
            f"CREATE EXTENSION IF NOT EXISTS {quote_ident(x['extname'])}"
            f" WITH SCHEMA {quote_ident(x['nspname'])} VERSION {quote_literal(x['extversion'])}",
        )
    yield Run(target, _history.ENSURE_TABLE)
    return Outcome("noop" if found else "ok", f"database {note}")


# The schemas detect_drift compares (the application's), already quoted.
_MANAGED_SCHEMAS = (
    f"SELECT o.object_name AS nspname FROM ({_drift.OBJECTS}) AS o WHERE o.object_kind = 'schema'"
)

# Every partition of the application's tables, parents before children, with
# its bound as PostgreSQL prints it (in a UTC, ISO-dates session: utc_session)
# and, for a partition that is partitioned itself, its key.
_PARTITIONS = r"""
WITH RECURSIVE tree AS (
    SELECT i.inhrelid AS oid, i.inhparent AS parent, 1 AS depth
    FROM pg_catalog.pg_inherits AS i JOIN pg_catalog.pg_class AS p ON p.oid = i.inhparent
    WHERE p.relkind = 'p' AND NOT p.relispartition
  UNION ALL
    SELECT i.inhrelid, i.inhparent, t.depth + 1
    FROM pg_catalog.pg_inherits AS i JOIN tree AS t ON t.oid = i.inhparent
)
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name,
       pg_catalog.format('%I.%I', pn.nspname, p.relname) AS parent,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partkey,
       (SELECT pg_catalog.quote_ident(s.spcname) FROM pg_catalog.pg_tablespace AS s
        WHERE s.oid = c.reltablespace) AS tablespace
FROM tree AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.oid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class AS p ON p.oid = t.parent
JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.relnamespace
WHERE c.relispartition AND n.nspname <> 'admmgt'
ORDER BY t.depth, 1"""
_PARTITION_COLUMNS = "name text, parent text, bound text, partkey text, tablespace text"


def _copy_partitions(home: Tenant, copy: Tenant, clusters: Clusters) -> Job:
    """The partitions applyMaintenance (or a DBA) made in the home template since
    the scripts ran, made the same in the copy, in one transaction."""
    source = yield from utc_session(home, clusters)
    wanted = yield Run(source, _PARTITIONS, _PARTITION_COLUMNS)
    target = yield from utc_session(copy, clusters)
    have = {r["name"] for r in (yield Run(target, _PARTITIONS, _PARTITION_COLUMNS))}
    missing = [r for r in wanted if r["name"] not in have]
    if not missing:
        return Outcome("noop", "partitions: all there")
    yield Run(target, "BEGIN")
    try:
        for r in missing:
            key = f" PARTITION BY {r['partkey']}" if r["partkey"] else ""
            where = f" TABLESPACE {r['tablespace']}" if r["tablespace"] else ""
            yield Run(
                target,
                f"CREATE TABLE {r['name']} PARTITION OF {r['parent']} {r['bound']}{key}{where}",
            )
        yield Run(target, "COMMIT")
    except RemoteError as exc:
        return Outcome.failed(exc, f"copying partitions failed ({exc.describe()}); none made")
    return Outcome("ok", f"{len(missing)} partition(s) made as in the home template")


def _home_scripts(dblink: Dblink, clusters: Clusters, home: Tenant) -> list[int]:
    """The scripts the home template has, by its own history: applied or baselined
    (a fleet moved from the proof of concept is baselined, not replayed)."""
    with dblink.session(place_conninfo(clusters, home.place)) as conn:
        _, state = _history.read_state_now(dblink, conn)
    return _history.have(state)


def _compare(dblink: Dblink, clusters: Clusters, home: Tenant, copy: Tenant) -> str | None:
    """None if the copy's catalog equals the home template's, else the differences
    (detect_drift's reading and comparison)."""
    read: dict[int, Outcome] = {}
    Fanout(dblink, 2, 0, lambda t, outcome, _ms: read.__setitem__(t.id, outcome)).run(
        [home, copy], lambda t: _drift.read_template(t, clusters)
    )
    for target in (home, copy):
        if read[target.id].outcome != "ok":
            return f"{target.label} could not be read ({read[target.id].message})"
    home_snapshot: _drift.Snapshot = read[home.id].details["snapshot"]
    copy_snapshot: _drift.Snapshot = read[copy.id].details["snapshot"]
    home_version, copy_version = home_snapshot.version, copy_snapshot.version
    if home_version != copy_version:
        return f"it is at script {copy_version}, the home template at {home_version}"
    found = _drift.compare(home_snapshot.objects, copy_snapshot.objects)
    if not found:
        return None
    shown = "; ".join(
        f"{d.object_kind} {d.object_name} {d.difference} ({d.detail})"
        for d in found[:SHOWN_DIFFERENCES]
    )
    more = f"; and {len(found) - SHOWN_DIFFERENCES} more" if len(found) > SHOWN_DIFFERENCES else ""
    return (
        f"its catalog differs from the home template's in {len(found)} object(s): {shown}{more}"
        " (objects made by hand in the home template, outside scripts, are not copied)"
    )
