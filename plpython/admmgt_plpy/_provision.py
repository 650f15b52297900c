"""Tenant databases: create_database and drop_database.

A tenant's database is its registered ``dbname`` folded to lower case (as the
proof of concept does), always quoted when used, so a hostile name is created
as a name, never executed. CREATE DATABASE cannot run in a transaction, so it
goes through dblink, in parallel, one job per tenant.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._locks import take_operation_lock
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._remote import (
    Clusters,
    Connect,
    Dblink,
    Fanout,
    Job,
    Outcome,
    RemoteError,
    Run,
    Sleep,
)
from admmgt_plpy._runguard import end_interrupted
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._settings import Settings, load_settings

RESERVED = {"postgres", "template0", "template1"}
MAX_NAME_BYTES = 63


@dataclass(frozen=True)
class Tenant:
    id: int
    dbname: str  # as registered
    cluster: str
    scriptversion: int | None = None

    @classmethod
    def of(cls, row: Any) -> Tenant:
        """From a registry row; a row that names no cluster is on the local one."""
        return cls(row["id"], row["dbname"], row["cluster_name"] or "local", row["scriptversion"])

    @property
    def database(self) -> str:
        return self.dbname.lower()

    @property
    def label(self) -> str:
        """How NOTICEs name it: the database, and its cluster unless local."""
        return self.database if self.cluster == "local" else f"{self.database}@{self.cluster}"


def database_name_problem(dbname: str) -> str | None:
    """Why PostgreSQL (or a sane DBA) cannot use lower(dbname) as a database name."""
    name = dbname.lower()
    if not name.strip():
        return "the name is empty"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"lower(dbname) is {len(name.encode('utf-8'))} bytes; PostgreSQL allows 63"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "the name contains control characters (newline, tab, ...)"
    if name in RESERVED:
        return f'"{name}" is a system database'
    return None


def updating_tenants(plpy: Any, *, below: int | None = None, at: int | None = None) -> list[Tenant]:
    """Created, live tenants with updateflag: the ones operations work on.

    ``below``: only those the registry shows behind that script; ``at``: only
    those the registry shows exactly at it.
    """
    rows = plpy.execute(
        plpy.prepare(
            """SELECT id, dbname, cluster_name, scriptversion FROM admmgt.vendor_db_settings
               WHERE NOT deleted AND NOT istemplate AND status = 2 AND updateflag
                 AND ($1::int IS NULL OR coalesce(scriptversion, 0) < $1)
                 AND ($2::int IS NULL OR scriptversion = $2)
               ORDER BY id""",
            ["int4", "int4"],
        ),
        [below, at],
    )
    return [Tenant.of(r) for r in rows]


def registered(plpy: Any, dbname: str) -> dict[str, Any]:
    """The live registry row of ``dbname`` (matched case-insensitively), or a clear error."""
    rows = plpy.execute(
        plpy.prepare(
            """SELECT id, dbname, cluster_name, scriptversion, status, updateflag, istemplate
               FROM admmgt.vendor_db_settings WHERE upper(dbname) = upper($1) AND NOT deleted
               ORDER BY id LIMIT 1""",
            ["text"],
        ),
        [dbname],
    )
    if not rows:
        raise AdmmgtError(
            f'no database is registered as "{dbname}"',
            hint="SELECT dbname, status FROM admmgt.vendor_db_settings WHERE NOT deleted;",
        )
    return dict(rows[0])


def check_mode(separatedb: int) -> None:
    """The proof of concept's t_separatedb: 1 = database per tenant, 0 = schema per tenant."""
    if separatedb == 0:
        raise AdmmgtError(
            "schema per tenant (t_separatedb => 0) is not available yet",
            hint="Use database per tenant: CALL admmgt.applyScripts();",
        )
    if separatedb != 1:
        raise AdmmgtError(f"t_separatedb must be 1 (database per tenant), not {separatedb}")


def templates(plpy: Any) -> list[Tenant]:
    """Every created template, the home template first.

    Each cluster keeps its own copy of the template (CREATE DATABASE ...
    TEMPLATE works within one cluster). The home template is the one
    registered first; the others are the copies add_cluster built from it.
    """
    rows = plpy.execute(
        """SELECT id, dbname, cluster_name, scriptversion FROM admmgt.vendor_db_settings
           WHERE istemplate AND status = 2 AND NOT deleted ORDER BY id"""
    )
    if not rows:
        raise AdmmgtError(
            "no template is registered: admmgt needs one vendor_db_settings row with "
            "istemplate = true and status = 2",
            hint="INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status) "
            "VALUES ('unitemplate', true, 2);",
        )
    found = [Tenant.of(r) for r in rows]
    for cluster in {t.cluster for t in found}:
        here = [t for t in found if t.cluster == cluster]
        if len(here) > 1:
            names = ", ".join(f"{t.dbname} (id {t.id})" for t in here)
            raise AdmmgtError(
                f'{len(here)} templates are registered on cluster "{cluster}" ({names}); '
                "admmgt uses exactly one per cluster",
                hint="Set istemplate = false (or deleted = true) on all but one.",
            )
    return found


def templates_not_ready(plpy: Any) -> dict[str, str]:
    """Why each cluster whose template copy exists but is not ready (status 1 or 3)
    must hold its tenants back from new scripts."""
    rows = plpy.execute(
        """SELECT coalesce(t.cluster_name, 'local') AS c, t.status, t.last_error
           FROM admmgt.vendor_db_settings AS t
           WHERE t.istemplate AND NOT t.deleted AND t.status <> 2 AND NOT EXISTS (
               SELECT FROM admmgt.vendor_db_settings AS u
               WHERE u.istemplate AND NOT u.deleted AND u.status = 2
                 AND coalesce(u.cluster_name, 'local') = coalesce(t.cluster_name, 'local'))"""
    )
    return {
        r["c"]: (
            f'held back: the template on cluster "{r["c"]}" is not ready (status {r["status"]}'
            + (f": {r['last_error'][:300]}" if r["last_error"] else "")
            + f"); fix it, then CALL admmgt.add_cluster({quote_literal(r['c'])}) to re-check"
        )
        for r in rows
    }


def create_database(plpy: Any) -> None:
    """Create every tenant with status 1 (pending) or 3 (failed before) from its
    cluster's template, placing those that name no cluster first."""
    settings = load_settings(plpy)
    take_operation_lock(plpy, "create_database", "create_database")
    by_cluster = {t.cluster: t for t in templates(plpy)}
    template = next(iter(by_cluster.values()))  # the home template
    rows = plpy.execute(
        """SELECT id, dbname, cluster_name, NULL::int AS scriptversion
           FROM admmgt.vendor_db_settings
           WHERE NOT deleted AND NOT istemplate AND status IN (1, 3) ORDER BY id"""
    )
    if not rows:
        plpy.notice(
            "create_database: no tenant is pending creation (status 1, or 3 to retry);"
            " nothing to do"
        )
        end_interrupted(plpy, "create_database")
        return
    _check_names(plpy, [Tenant.of(r) for r in rows], template)
    _check_template_exists(plpy, template)
    if settings.tenant_owner:
        found = plpy.execute(
            plpy.prepare("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", ["text"]),
            [settings.tenant_owner],
        )
        if not found:
            raise AdmmgtError(
                f'setting tenant_owner names role "{settings.tenant_owner}", which does not exist',
                hint="CREATE ROLE it, or UPDATE admmgt.settings SET value = '' "
                "WHERE name = 'tenant_owner';",
            )

    dblink = Dblink(plpy)
    dblink.disconnect_all()  # our own sessions on the template would block CREATE DATABASE
    clusters = Clusters(plpy)
    placement = _placement(plpy, clusters, set(by_cluster), rows)
    recorder = RunRecorder(plpy, dblink, clusters, "create_database", {"tenants": len(rows)})
    tenants = [Tenant.of(r) for r in rows]
    if placement:
        # Committed before anything is created, so a tenant is never made on
        # one cluster while its row names none.
        for cluster in sorted(set(placement.values())):
            ids = ", ".join(str(i) for i, c in placement.items() if c == cluster)
            recorder.execute(
                f"UPDATE admmgt.vendor_db_settings SET cluster_name = {quote_literal(cluster)},"
                f" modifiedon = now() WHERE id IN ({ids}) AND cluster_name IS NULL"
            )
        tenants = [Tenant(t.id, t.dbname, placement.get(t.id, t.cluster)) for t in tenants]
        counts = ", ".join(f"{c} +{n}" for c, n in sorted(Counter(placement.values()).items()))
        plpy.notice(
            f"create_database: {len(placement)} tenant(s) named no cluster; placed on the "
            f"clusters with the fewest tenants: {counts}"
        )
    total = len(tenants)
    done = [0]

    def on_done(tenant: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        q = plpy.quote_nullable
        registry: str | None = None
        if outcome.outcome == "ok":
            version = outcome.details.get("scriptversion")
            registry = (
                "UPDATE admmgt.vendor_db_settings SET status = 2, modifiedon = now(),"
                f" scriptversion = {q(None if version is None else str(version))}::int,"
                f" last_error = NULL, last_error_at = NULL WHERE id = {tenant.id}"
            )
            line = f"created in {elapsed_ms:.0f} ms"
            if outcome.message:
                line += f" ({outcome.message})"
        else:
            if outcome.outcome == "failed":
                registry = (
                    "UPDATE admmgt.vendor_db_settings SET status = 3, modifiedon = now(),"
                    f" last_error = {q(outcome.message)}, last_error_at = now()"
                    f" WHERE id = {tenant.id}"
                )
            line = f"{outcome.outcome.upper()}: {outcome.message}"
        recorder.target(tenant.database, tenant.cluster, outcome, elapsed_ms, registry=registry)
        done[0] += 1
        recorder.say(outcome, f"[{done[0]}/{total}] {tenant.label}: {line}")

    fanout = Fanout(dblink, settings.max_parallel, settings.failure_limit, on_done, clusters)
    try:
        fanout.run(tenants, lambda t: _create_one(t, by_cluster.get(t.cluster), settings, clusters))
    finally:
        summary = recorder.finish({"ok": "created"})
    plpy.notice(summary)


def _placement(
    plpy: Any, clusters: Clusters, with_template: set[str], rows: list[Any]
) -> dict[int, str]:
    """A cluster for each pending tenant whose row names none: the one holding the
    fewest tenants (ties: the name that sorts first) among those that accept new
    tenants and have a template. Tenant count, not size: a new tenant is empty,
    and counts are what the registry knows without asking any server."""
    unplaced = [r["id"] for r in rows if r["cluster_name"] is None]
    if not unplaced:
        return {}
    candidates = sorted(
        name for name, c in clusters.by_name.items() if c.accepts_tenants and name in with_template
    )
    if not candidates:
        raise AdmmgtError(
            f"create_database: {len(unplaced)} tenant(s) name no cluster, and no cluster both "
            "accepts new tenants and has a template; nothing was created",
            hint="Set vendor_db_settings.cluster_name on those rows, or "
            "UPDATE admmgt.clusters SET accepts_tenants = true WHERE name = '...';",
        )
    load = dict.fromkeys(candidates, 0)
    for r in plpy.execute(
        """SELECT coalesce(cluster_name, 'local') AS c, count(*) AS n
           FROM admmgt.vendor_db_settings
           WHERE NOT deleted AND NOT istemplate AND (cluster_name IS NOT NULL OR status = 2)
           GROUP BY 1"""
    ):
        if r["c"] in load:
            load[r["c"]] = r["n"]
    placement = {}
    for tenant_id in unplaced:
        chosen = min(candidates, key=lambda c: (load[c], c))
        placement[tenant_id] = chosen
        load[chosen] += 1
    return placement


def _check_names(plpy: Any, tenants: list[Tenant], template: Tenant) -> None:
    """Refuse the whole run, before anything is created, if any name is unusable."""
    problems = []
    seen: dict[str, Tenant] = {}
    admin_db = plpy.execute("SELECT current_database() AS d")[0]["d"]
    for t in tenants:
        problem = database_name_problem(t.dbname)
        if problem is None and t.database in (template.database, admin_db):
            problem = f'"{t.database}" is the template or the admin database'
        if problem is None and t.database in seen:
            problem = f'it folds to "{t.database}", as does id {seen[t.database].id}'
        if problem:
            problems.append(f"  id {t.id} dbname {t.dbname!r}: {problem}")
        seen.setdefault(t.database, t)
    if problems:
        raise AdmmgtError(
            f"create_database: {len(problems)} tenant name(s) cannot be used; "
            "nothing was created:\n" + "\n".join(problems),
            hint="Fix or delete these rows in admmgt.vendor_db_settings, then call again.",
        )


def _check_template_exists(plpy: Any, template: Tenant) -> None:
    if template.cluster != "local":
        return  # checked by CREATE DATABASE on that cluster
    found = plpy.execute(
        plpy.prepare("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", ["text"]),
        [template.database],
    )
    if not found:
        raise AdmmgtError(
            f'template database "{template.database}" is registered but does not exist',
            hint=f"CREATE DATABASE {quote_ident(template.database)} with the application schema, "
            "or fix the template row in admmgt.vendor_db_settings.",
        )


def tenant_marker(tenant: Tenant) -> str:
    """The comment admmgt puts on a database it created, to recognise it after a crash."""
    return f"admmgt tenant {tenant.id}"


def _create_one(
    tenant: Tenant, template: Tenant | None, settings: Settings, clusters: Clusters
) -> Job:
    db, name = quote_ident(tenant.database), tenant.database
    if template is None:
        return Outcome(
            "failed",
            f'tenant "{name}" is on cluster "{tenant.cluster}", which has no template yet '
            "(CREATE DATABASE ... TEMPLATE works within one cluster); "
            f"CALL admmgt.add_cluster({quote_literal(tenant.cluster)}) builds its copy, "
            "then call create_database again",
            "0A000",
        )
    conn = yield Connect(clusters.conninfo(tenant.cluster, clusters.maintenance_db(tenant.cluster)))
    create = (
        f"CREATE DATABASE {db} TEMPLATE {quote_ident(template.database)}"
        f" STRATEGY {settings.create_strategy}"
    )
    if settings.tenant_owner:
        create += f" OWNER {quote_ident(settings.tenant_owner)}"
    deadline = time.monotonic() + settings.template_busy_timeout_s
    delay = max(settings.retry_backoff_ms, 50) / 1000.0
    note = ""
    while True:
        try:
            yield Run(conn, create)
            break
        except RemoteError as exc:
            if exc.sqlstate == "55006" and time.monotonic() < deadline:
                yield Sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
                continue
            if exc.sqlstate == "55006":
                who = yield Run(
                    conn,
                    (
                        "SELECT string_agg(format('pid %s %s/%s', pid, usename, "
                        "coalesce(nullif(application_name, ''), '-')), ', ') AS who "
                        f"FROM pg_catalog.pg_stat_activity WHERE datname = "
                        f"{quote_literal(template.database)}"
                    ),
                    "who text",
                )
                return Outcome.failed(
                    exc,
                    (
                        f'template "{template.database}" stayed in use by other sessions for '
                        f"{settings.template_busy_timeout_s} s ({who[0]['who'] or 'now gone'}); "
                        "close them and call create_database again"
                    ),
                )
            if exc.sqlstate == "42P04":
                comment = yield Run(
                    conn,
                    (
                        "SELECT shobj_description(oid, 'pg_database') AS c"
                        " FROM pg_catalog.pg_database"
                        f" WHERE datname = {quote_literal(name)}"
                    ),
                    "c text",
                )
                if comment and comment[0]["c"] == tenant_marker(tenant):
                    note = "found already created by an earlier interrupted run"
                    break
                return Outcome.failed(
                    exc,
                    (
                        f'database "{name}" already exists but admmgt did not create it for this '
                        "tenant; drop or rename it, or register it with status 2 if it is a tenant"
                    ),
                )
            return Outcome.failed(exc, f"CREATE DATABASE failed: {exc.describe()}")
    try:
        yield Run(conn, f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC")
        yield Run(conn, f"COMMENT ON DATABASE {db} IS {quote_literal(tenant_marker(tenant))}")
        if settings.tenant_login_role:
            yield from _tenant_role(conn, tenant)
    except RemoteError as exc:
        if not note:  # never drop a database this run did not create
            with contextlib.suppress(RemoteError):
                yield Run(conn, f"DROP DATABASE IF EXISTS {db}")
        return Outcome.failed(
            exc, f"securing the new database failed, so it was dropped: {exc.describe()}"
        )
    version = template.scriptversion
    tconn = yield Connect(clusters.conninfo(tenant.cluster, name))
    has = yield Run(tconn, _history.HAS_TABLE, "has boolean")
    if has[0]["has"]:
        version = (yield Run(tconn, _history.VERSION, _history.VERSION_COLUMNS))[0]["version"]
    return Outcome("ok", note, details={"scriptversion": version})


def _tenant_role(conn: str, tenant: Tenant) -> Job:
    role = quote_ident(tenant.database)
    found = yield Run(
        conn,
        (
            "SELECT rolsuper OR rolcreaterole OR rolbypassrls AS powerful,"
            " shobj_description(oid, 'pg_authid') AS c FROM pg_catalog.pg_roles"
            f" WHERE rolname = {quote_literal(tenant.database)}"
        ),
        "powerful boolean, c text",
    )
    if not found:
        yield Run(conn, f"CREATE ROLE {role} LOGIN")
        yield Run(
            conn,
            f"COMMENT ON ROLE {role} IS "
            f"{quote_literal(f'admmgt tenant role of database {tenant.database}')}",
        )
    elif found[0]["powerful"]:
        raise RemoteError(
            "42501",
            f'role "{tenant.database}" already exists with superuser, '
            "createrole or bypassrls; admmgt will not make it a tenant role",
        )
    yield Run(conn, f"GRANT CONNECT, TEMPORARY ON DATABASE {role} TO {role}")
    return Outcome("ok")


def drop_database(
    plpy: Any,
    *,
    dbname: str,
    mode: str,
    terminate: bool,
    archive_name: str | None,
    missing_ok: bool = False,
) -> None:
    """Remove a tenant: mark its row deleted, then drop or archive (rename) its database.

    A database already gone from its cluster is refused, unless ``missing_ok``
    (then only the registry row is marked deleted)."""
    mode = (mode or "").lower()
    if mode not in ("drop", "archive"):
        raise AdmmgtError(
            f"drop_database: t_mode must be 'drop' or 'archive', not {mode!r}",
            hint="CALL admmgt.drop_database('bigclient', t_mode => 'archive');",
        )
    take_operation_lock(plpy, "create_database", "create_database/drop_database")
    row = registered(plpy, dbname)
    tenant = Tenant.of(row)
    if row["istemplate"]:
        raise AdmmgtError(
            f'"{tenant.database}" is the template; drop_database refuses it',
            hint="Register another template first, then set istemplate = false.",
        )
    plpy.execute(
        "UPDATE admmgt.vendor_db_settings SET deleted = true, deletedon = now(),"
        f" modifiedon = now() WHERE id = {tenant.id}"
    )
    if row["status"] != 2:
        plpy.notice(
            f'drop_database: "{tenant.database}" was never created (status '
            f"{row['status']}); marked deleted"
        )
        return
    target = archive_name or f"{tenant.database[:40]}_archived_" + time.strftime("%Y%m%d_%H%M%S")
    problem = database_name_problem(target)
    if mode == "archive" and problem:
        raise AdmmgtError(
            f"archive name {target!r} cannot be used: {problem}",
            hint="Pass a shorter t_archive_name.",
        )
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    conn = dblink.connect(
        clusters.conninfo(tenant.cluster, clusters.maintenance_db(tenant.cluster))
    )
    db = quote_ident(tenant.database)
    try:
        found = dblink.query(
            conn,
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = "
            f"{quote_literal(tenant.database)}) AS found",
            "found boolean",
        )[0]["found"]
        if not found:
            if not missing_ok:
                raise AdmmgtError(
                    f'drop_database: database "{tenant.database}" does not exist on cluster '
                    f'"{tenant.cluster}"; nothing was changed',
                    hint="If it is gone for good, unregister it with CALL admmgt.drop_database("
                    f"{quote_literal(tenant.database)}, {quote_literal(mode)}, "
                    "t_missing_ok => true);",
                )
            role = _drop_tenant_role(dblink, conn, tenant) if mode == "drop" else ""
            plpy.notice(
                f'drop_database: database "{tenant.database}" was already gone from cluster '
                f'"{tenant.cluster}"{role}; its registry row is marked deleted (t_missing_ok)'
            )
            return
        if terminate:
            dblink.query(
                conn,
                (
                    "SELECT count(pg_terminate_backend(pid))::text FROM pg_catalog.pg_stat_activity"
                    f" WHERE datname = {quote_literal(tenant.database)} AND pid <> pg_backend_pid()"
                ),
            )
        if mode == "drop":
            dblink.query(conn, f"DROP DATABASE {db}")
            done = f'dropped database "{tenant.database}"' + _drop_tenant_role(dblink, conn, tenant)
        else:
            dblink.query(conn, f"ALTER DATABASE {db} RENAME TO {quote_ident(target)}")
            done = f'archived database "{tenant.database}" as "{target}"'
            # `admmgt backup --all` finds the archive by this name (docs/backup.md).
            plpy.execute(
                "UPDATE admmgt.vendor_db_settings SET archived_as = "
                f"{quote_literal(target)} WHERE id = {tenant.id}"
            )
    except RemoteError as exc:
        if exc.sqlstate == "55006":
            raise AdmmgtError(
                f'database "{tenant.database}" is in use by other sessions; nothing was changed',
                hint="Close them, or pass t_terminate => true to end them.",
            ) from None
        raise AdmmgtError(
            f'drop_database "{tenant.database}" failed ({exc.describe()}); nothing was changed'
        ) from None
    finally:
        dblink.disconnect(conn)
    plpy.notice(f"drop_database: {done}; its registry row is marked deleted")


def _drop_tenant_role(dblink: Dblink, conn: str, tenant: Tenant) -> str:
    """Drop the tenant's login role if admmgt made it; a failure only warns."""
    marker = quote_literal(f"admmgt tenant role of database {tenant.database}")
    try:
        rows = dblink.query(
            conn,
            (
                "SELECT count(*)::text AS status FROM pg_catalog.pg_roles WHERE rolname = "
                f"{quote_literal(tenant.database)}"
                f" AND shobj_description(oid, 'pg_authid') = {marker}"
            ),
        )
        if rows[0]["status"] == "0":
            return ""
        dblink.query(conn, f"DROP ROLE {quote_ident(tenant.database)}")
    except RemoteError as exc:
        return f" (its login role was kept: {exc.describe()})"
    return " and its login role"
