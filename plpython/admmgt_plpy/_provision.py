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
from typing import Any

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._copies import copy_version, read_template_history, record_versions
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import fleet_run
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._registry import (
    SCHEMA_MODE,
    Tenant,
    database_name_problem,
    pending_tenants,
    registered,
    registry_update,
    templates,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run, Sleep
from admmgt_plpy._settings import Settings
from admmgt_plpy._types import APPLIED, FAILED, Plpy


def create_database(plpy: Plpy) -> None:
    """Create every tenant with status 1 (pending) or 3 (failed before) from its
    cluster's template, placing those that name no cluster first."""
    with fleet_run(plpy, "create_database", lock="create_database") as run:
        settings = run.settings
        by_cluster = {t.cluster: t for t in templates(plpy)}
        template = next(iter(by_cluster.values()))  # the home template
        rows = pending_tenants(plpy)
        if not rows:
            run.nothing_to_do(
                "create_database: no tenant is pending creation (status 1, or 3 to retry);"
                " nothing to do"
            )
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
                    f'setting tenant_owner names role "{settings.tenant_owner}", which does '
                    "not exist",
                    hint="CREATE ROLE it, or UPDATE admmgt.settings SET value = '' "
                    "WHERE name = 'tenant_owner';",
                )

        # Our own sessions on the template would block CREATE DATABASE.
        run.dblink.disconnect_all()
        clusters = run.clusters
        placement = _placement(plpy, clusters, set(by_cluster), rows)
        tenants = [Tenant.of(r) for r in rows]
        tenants = [Tenant(t.id, t.dbname, placement.get(t.id, t.cluster)) for t in tenants]
        # Read before anything is copied, and again after: see TemplateHistory.
        histories = {
            cluster: read_template_history(run.dblink, clusters, by_cluster[cluster])
            for cluster in sorted({t.cluster for t in tenants})
            if cluster in by_cluster
        }
        recorder = run.start({"tenants": len(rows)}, words={"ok": "created"})
        if placement:
            # Committed before anything is created, so a tenant is never made on
            # one cluster while its row names none.
            for cluster in sorted(set(placement.values())):
                ids = [i for i, c in placement.items() if c == cluster]
                recorder.execute(registry_update(ids, cluster=cluster, if_no_cluster=True))
            counts = ", ".join(f"{c} +{n}" for c, n in sorted(Counter(placement.values()).items()))
            plpy.notice(
                f"create_database: {len(placement)} tenant(s) named no cluster; placed on the "
                f"clusters with the fewest tenants: {counts}"
            )
        copied: dict[str, list[Tenant]] = {}

        def registry(tenant: Tenant, outcome: Outcome) -> str | None:
            if outcome.private.get("copied"):
                copied.setdefault(tenant.cluster, []).append(tenant)
            return created_registry(tenant, outcome)

        run.wave(
            tenants,
            lambda t: _create_one(
                t,
                by_cluster.get(t.cluster),
                settings,
                clusters,
                template_read=histories.get(t.cluster) is not None,
            ),
            created_line,
            registry=registry,
        )
        extra = record_versions(run, by_cluster, histories, copied)
        run.end(extra)


def created_registry(tenant: Tenant, outcome: Outcome) -> str | None:
    """A created tenant is status 2 at its template's version; a failed one 3, with why."""
    if outcome.outcome == "ok":
        version = outcome.details.get("scriptversion")
        return registry_update(
            tenant.id,
            status=APPLIED,
            scriptversion=None if version is None else int(version),
            error=None,
        )
    if outcome.outcome == "failed":
        return registry_update(tenant.id, status=FAILED, error=outcome.message)
    return None


def created_line(outcome: Outcome, elapsed_ms: float) -> str:
    if outcome.outcome != "ok":
        return f"{outcome.outcome.upper()}: {outcome.message}"
    line = f"created in {elapsed_ms:.0f} ms"
    if outcome.message:
        line += f" ({outcome.message})"
    return line


def _placement(
    plpy: Plpy, clusters: Clusters, with_template: set[str], rows: list[Any]
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
    # Database tenants only: the schema tenants of a cluster share one host database.
    load = dict.fromkeys(candidates, 0)
    for r in plpy.execute(
        """SELECT coalesce(cluster_name, 'local') AS c, count(*) AS n
           FROM admmgt.vendor_db_settings
           WHERE NOT deleted AND NOT istemplate AND (cluster_name IS NOT NULL OR status = 2)
             AND separatedb = 1
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


def _check_names(plpy: Plpy, tenants: list[Tenant], template: Tenant) -> None:
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


def _check_template_exists(plpy: Plpy, template: Tenant) -> None:
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
    tenant: Tenant,
    template: Tenant | None,
    settings: Settings,
    clusters: Clusters,
    *,
    template_read: bool = False,
) -> Job:
    """One tenant's CREATE DATABASE. ``template_read``: the run read the
    template's history first (TemplateHistory), so a copy made now is not
    connected to; one adopted from an earlier run is read."""
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
    # The maintenance database's connection serves the next tenant too (one
    # backend per slot, not per tenant): nothing here changes its session.
    conn = yield Connect(
        clusters.conninfo(tenant.cluster, clusters.maintenance_db(tenant.cluster)), reuse=True
    )
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
        # One round trip, one implicit transaction: both or neither.
        yield Run(
            conn,
            f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;"
            f" COMMENT ON DATABASE {db} IS {quote_literal(tenant_marker(tenant))}",
            statements=2,
        )
        if settings.tenant_login_role:
            yield from _tenant_role(conn, tenant)
    except RemoteError as exc:
        if not note:  # never drop a database this run did not create
            with contextlib.suppress(RemoteError):
                yield Run(conn, f"DROP DATABASE IF EXISTS {db}")
        return Outcome.failed(
            exc, f"securing the new database failed, so it was dropped: {exc.describe()}"
        )
    if template_read and not note:
        return Outcome("ok", private={"copied": True})
    outcome = yield from copy_version(tenant, template, clusters)
    outcome.message = note
    return outcome


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
    plpy: Plpy,
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
    with fleet_run(
        plpy,
        "drop_database",
        lock="create_database",
        lock_name="create_database/drop_database",
        read_settings=False,
    ) as run:
        row = registered(plpy, dbname)
        tenant = Tenant.of(row)
        if row["separatedb"] == SCHEMA_MODE:
            raise AdmmgtError(
                f'"{tenant.dbname}" is a schema tenant; drop_database removes database '
                "tenants; nothing was changed",
                hint=f"CALL admmgt.drop_schema({quote_literal(tenant.dbname)});",
            )
        if row["istemplate"]:
            raise AdmmgtError(
                f'"{tenant.database}" is the template; drop_database refuses it',
                hint="Register another template first, then set istemplate = false.",
            )
        plpy.execute(registry_update(tenant.id, deleted=True))
        if row["status"] != APPLIED:
            plpy.notice(
                f'drop_database: "{tenant.database}" was never created (status '
                f"{row['status']}); marked deleted"
            )
            return
        target = archive_name or f"{tenant.database[:40]}_archived_" + time.strftime(
            "%Y%m%d_%H%M%S"
        )
        problem = database_name_problem(target)
        if mode == "archive" and problem:
            raise AdmmgtError(
                f"archive name {target!r} cannot be used: {problem}",
                hint="Pass a shorter t_archive_name.",
            )
        dblink, clusters = run.dblink, run.clusters
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
                        "SELECT count(pg_terminate_backend(pid))::text"
                        " FROM pg_catalog.pg_stat_activity"
                        f" WHERE datname = {quote_literal(tenant.database)}"
                        " AND pid <> pg_backend_pid()"
                    ),
                )
            if mode == "drop":
                dblink.query(conn, f"DROP DATABASE {db}")
                done = f'dropped database "{tenant.database}"' + _drop_tenant_role(
                    dblink, conn, tenant
                )
            else:
                dblink.query(conn, f"ALTER DATABASE {db} RENAME TO {quote_ident(target)}")
                done = f'archived database "{tenant.database}" as "{target}"'
                # `admmgt backup --all` finds the archive by this name (docs/backup.md).
                plpy.execute(registry_update(tenant.id, archived_as=target, touch=False))
        except RemoteError as exc:
            if exc.sqlstate == "55006":
                raise AdmmgtError(
                    f'database "{tenant.database}" is in use by other sessions; '
                    "nothing was changed",
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
