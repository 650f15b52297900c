"""Schema tenants: create_schema and drop_schema (issue 16).

A schema tenant is the schema lower(dbname) in its cluster's host database
(admmgt.schema_hosts; created here as ``admmgt_schemas`` when a cluster has
none). create_schema makes, in this order: the host, each pending template
schema (empty, with its history table), then each pending tenant as a clone
of its cluster's template schema, read once per run (_schema_clone), in one
transaction per tenant over the engine's parallel connections, with the
template's history rows and, optionally, its tenant role. The registry row
follows through the run's recorder. docs/schema-tenants.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import FleetRun, fleet_run
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._provision import created_line, created_registry
from admmgt_plpy._registry import (
    SCHEMA_MODE,
    Place,
    Tenant,
    database_name_problem,
    pending_tenants,
    place_conninfo,
    schema_host,
    templates,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run
from admmgt_plpy._schema_clone import Clone, catalog_sql, plan_clone
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import TransactionFailed, in_one_trip
from admmgt_plpy._types import APPLIED, FAILED, READY, Plpy

DEFAULT_HOST = "admmgt_schemas"
NOT_TENANT_SCHEMAS = {"public", "admmgt", "information_schema", "pg_catalog", "pg_toast"}
HOST_MARKER = "admmgt host database of schema tenants"


@dataclass(frozen=True)
class SchemaSettings:
    """The settings of schema tenants (admmgt.settings, 020-settings.sql)."""

    roles: bool  # schema_tenant_roles
    role_pattern: str  # schema_role_pattern, "%s" = the tenant's schema
    host_name: str  # schema_host_name: the host create_schema makes on a cluster with none

    def role(self, schema: str) -> str:
        return self.role_pattern.replace("%s", schema)


def schema_settings(plpy: Plpy) -> SchemaSettings:
    values = {
        r["name"]: r["value"]
        for r in plpy.execute(
            "SELECT name, value FROM admmgt.settings WHERE name IN "
            "('schema_tenant_roles', 'schema_role_pattern', 'schema_host_name')"
        )
    }
    roles = values.get("schema_tenant_roles", "false").lower()
    if roles not in ("true", "false"):
        raise AdmmgtError(
            f"setting schema_tenant_roles = {roles!r} is not true or false",
            hint="UPDATE admmgt.settings SET value = 'false' WHERE name = 'schema_tenant_roles';",
        )
    pattern = values.get("schema_role_pattern", "tenant_%s")
    if pattern.count("%s") != 1 or "%" in pattern.replace("%s", ""):
        raise AdmmgtError(
            f"setting schema_role_pattern = {pattern!r} must contain %s exactly once "
            "(it stands for the tenant's schema) and no other %",
            hint="UPDATE admmgt.settings SET value = 'tenant_%s' "
            "WHERE name = 'schema_role_pattern';",
        )
    host = values.get("schema_host_name", DEFAULT_HOST)
    problem = database_name_problem(host)
    if problem:
        raise AdmmgtError(
            f"setting schema_host_name = {host!r} cannot be used: {problem}",
            hint=f"UPDATE admmgt.settings SET value = '{DEFAULT_HOST}' "
            "WHERE name = 'schema_host_name';",
        )
    return SchemaSettings(roles == "true", pattern, host.lower())


def schema_name_problem(schema: str) -> str | None:
    """Why ``schema`` (a lower(dbname)) cannot be a tenant's schema."""
    problem = database_name_problem(schema)
    if problem and "system database" not in problem:
        return problem
    if schema in NOT_TENANT_SCHEMAS or schema.startswith("pg_"):
        return f'"{schema}" is a system or admmgt schema'
    return None


@dataclass(frozen=True)
class Source:
    """What a cluster's tenants are made from: its template schema, read once."""

    template: Tenant
    clone: Clone
    version: int | None


# ------------------------------------------------------------------ create_schema


def create_schema(plpy: Plpy, *, roles: bool | None = None) -> None:
    """Create the host databases, template schemas and tenant schemas that are pending."""
    with fleet_run(
        plpy,
        "create_schema",
        lock="create_database",
        lock_name="create_database/create_schema",
        locks=[("migrations", "applyScripts/create_schema")],
    ) as run:
        own = schema_settings(plpy)
        with_roles = own.roles if roles is None else bool(roles)
        pending_templates = [
            dict(r)
            for r in plpy.execute(
                f"""SELECT id, dbname, cluster_name, NULL::int AS scriptversion, separatedb
                   FROM admmgt.vendor_db_settings
                   WHERE istemplate AND separatedb = {SCHEMA_MODE} AND NOT deleted
                     AND status IN ({READY}, {FAILED})
                   ORDER BY id"""
            )
        ]
        rows = pending_tenants(plpy, SCHEMA_MODE)
        if not rows and not pending_templates:
            run.nothing_to_do(
                "create_schema: no schema tenant or template schema is pending creation "
                "(status 1, or 3 to retry); nothing to do"
            )
            return
        if rows and not pending_templates:
            templates(plpy, SCHEMA_MODE)  # none at all: the error says how to register one
        _check_names(plpy, rows, own if with_roles else None)
        recorder = run.start(
            {"tenants": len(rows), "templates": len(pending_templates), "roles": with_roles},
            words={"ok": "created"},
        )
        clusters_used = sorted({r["cluster_name"] or "local" for r in rows + pending_templates})
        hosts = {c: _ensure_host(plpy, run, c, own) for c in clusters_used}
        if with_roles:
            for cluster in sorted({r["cluster_name"] or "local" for r in rows}):
                _ensure_group(run, cluster, hosts[cluster])
        if pending_templates:
            made = [_with_host(r, hosts) for r in pending_templates]
            run.wave(
                made,
                lambda t: _create_template(t, run.settings, run.clusters),
                created_line,
                templates=True,
                registry=created_registry,
            )
            recorder.flush()
        if not rows:
            run.end()
            return
        sources = _read_sources(plpy, run, {r["cluster_name"] or "local" for r in rows}, hosts)
        tenants = [_with_host(r, hosts) for r in rows]
        settings = run.settings
        connections = HostConnections(run.dblink, run.clusters)
        try:
            run.wave(
                tenants,
                lambda t: _create_one(
                    t,
                    sources.get(t.cluster),
                    settings,
                    connections,
                    own.role(t.database) if with_roles else None,
                ),
                created_line,
                registry=created_registry,
            )
        finally:
            connections.close()
        run.end()


def _with_host(row: dict[str, Any], hosts: dict[str, str]) -> Tenant:
    cluster = row["cluster_name"] or "local"
    return Tenant(row["id"], row["dbname"], cluster, None, SCHEMA_MODE, hosts[cluster])


def _check_names(plpy: Plpy, rows: list[dict[str, Any]], own: SchemaSettings | None) -> None:
    """Refuse the whole run, before anything is made, if a name cannot be used."""
    template_names = {
        r["d"]
        for r in plpy.execute(
            f"""SELECT lower(dbname) AS d FROM admmgt.vendor_db_settings
               WHERE istemplate AND NOT deleted AND separatedb = {SCHEMA_MODE}"""
        )
    }
    problems = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        schema = row["dbname"].lower()
        key = (row["cluster_name"] or "local", schema)
        problem = schema_name_problem(schema)
        if problem is None and schema in template_names:
            problem = f'"{schema}" is a template schema'
        if problem is None and key in seen:
            problem = f'it folds to "{schema}", as does id {seen[key]}'
        if problem is None and own is not None:
            role = own.role(schema)
            if len(role.encode("utf-8")) > 63:
                problem = (
                    f'its role "{role}" (schema_role_pattern) would be '
                    f"{len(role.encode('utf-8'))} bytes; PostgreSQL allows 63"
                )
        if problem:
            problems.append(f"  id {row['id']} dbname {row['dbname']!r}: {problem}")
        seen.setdefault(key, row["id"])
    if problems:
        raise AdmmgtError(
            f"create_schema: {len(problems)} schema tenant name(s) cannot be used; "
            "nothing was created:\n" + "\n".join(problems),
            hint="Fix or delete these rows in admmgt.vendor_db_settings, then call again.",
        )


def _ensure_host(plpy: Plpy, run: FleetRun, cluster: str, own: SchemaSettings) -> str:
    """The host database of ``cluster``'s schema tenants: the registered one
    (which must exist), or ``schema_host_name`` made now (CONNECT and CREATE
    on public revoked from PUBLIC) and recorded in admmgt.schema_hosts."""
    dblink, clusters = run.dblink, run.clusters
    registered = schema_host(plpy, cluster)
    name = registered or own.host_name
    with dblink.session(clusters.conninfo(cluster, clusters.maintenance_db(cluster))) as conn:
        found = dblink.query(
            conn,
            "SELECT shobj_description(oid, 'pg_database') AS c FROM pg_catalog.pg_database"
            f" WHERE datname = {quote_literal(name)}",
            "c text",
        )
        if registered:
            if not found:
                raise AdmmgtError(
                    f'create_schema: the host database "{name}" of cluster "{cluster}" is '
                    "registered in admmgt.schema_hosts but does not exist; nothing was created",
                    hint=f"CREATE DATABASE {quote_ident(name)} on that cluster (and REVOKE "
                    "CONNECT ON it FROM PUBLIC), or DELETE FROM admmgt.schema_hosts WHERE "
                    f"cluster_name = {quote_literal(cluster)}; so that create_schema makes "
                    f"{own.host_name}.",
                )
            return name
        if found and found[0]["c"] != HOST_MARKER:
            raise AdmmgtError(
                f'create_schema: database "{name}" already exists on cluster "{cluster}" but '
                "admmgt did not create it as the host of schema tenants; nothing was created",
                hint="To use it as the host, INSERT INTO admmgt.schema_hosts (cluster_name, "
                f"dbname) VALUES ({quote_literal(cluster)}, {quote_literal(name)}); "
                "otherwise set schema_host_name to another name.",
            )
        db = quote_ident(name)
        try:
            if not found:
                dblink.query(conn, f"CREATE DATABASE {db}")
                dblink.query(conn, f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC")
                dblink.query(conn, f"COMMENT ON DATABASE {db} IS {quote_literal(HOST_MARKER)}")
        except RemoteError as exc:
            raise AdmmgtError(
                f'create_schema: creating the host database "{name}" on cluster "{cluster}" '
                f"failed ({exc.describe()}); nothing was created"
            ) from None
    with dblink.session(clusters.conninfo(cluster, name)) as conn:
        dblink.query(conn, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    run.recorder.execute(
        "INSERT INTO admmgt.schema_hosts (cluster_name, dbname) VALUES "
        f"({quote_literal(cluster)}, {quote_literal(name)}) ON CONFLICT (cluster_name) DO NOTHING"
    )
    plpy.notice(
        f'create_schema: host database "{name}" '
        + ("created" if not found else "found, made by an earlier interrupted run")
        + f' on cluster "{cluster}" and recorded in admmgt.schema_hosts'
    )
    return name


def group_role(host: str) -> str:
    """The role every tenant role of ``host`` is a member of: it alone holds
    CONNECT on the host (one ACL entry, not one per tenant, and no concurrent
    updates of the pg_database row while tenants are made in parallel)."""
    return f"{host[:50]}_tenants"


def _ensure_group(run: FleetRun, cluster: str, host: str) -> None:
    dblink, clusters = run.dblink, run.clusters
    group = group_role(host)
    marker = f"admmgt: tenant roles of the schema tenants in database {host}"
    with dblink.session(clusters.conninfo(cluster, clusters.maintenance_db(cluster))) as conn:
        found = dblink.query(
            conn,
            "SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_catalog.pg_roles"
            f" WHERE rolname = {quote_literal(group)}",
            "c text",
        )
        if found and found[0]["c"] != marker:
            raise AdmmgtError(
                f'create_schema: role "{group}" exists on cluster "{cluster}" but admmgt did '
                "not make it for the tenant roles of that host; nothing was created",
                hint=f"Rename or drop that role (tenant roles are members of {group}, which "
                "holds CONNECT on the host), or call create_schema(t_roles => false).",
            )
        if not found:
            dblink.query(conn, f"CREATE ROLE {quote_ident(group)} NOLOGIN")
            dblink.query(conn, f"COMMENT ON ROLE {quote_ident(group)} IS {quote_literal(marker)}")
        dblink.query(conn, f"GRANT CONNECT ON DATABASE {quote_ident(host)} TO {quote_ident(group)}")


def _create_template(template: Tenant, settings: Settings, clusters: Clusters) -> Job:
    """The template schema: the schema (kept if the DBA made it) and its history table."""
    conn = yield Connect(place_conninfo(clusters, Place(template.cluster, str(template.host))))
    schema = template.database
    found = yield Run(
        conn,
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = "
        f"{quote_literal(schema)}) AS found",
        "found boolean",
    )
    table = _history.history_table(schema)
    try:
        yield from in_one_trip(
            conn,
            settings,
            [
                f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}",
                _history.ensure_table_sql(table),
            ],
        )
    except TransactionFailed as exc:
        return Outcome.failed(
            exc.error,
            f'template schema "{schema}": creating it failed ({exc.error.describe()}); '
            "fix the cause and call create_schema again",
        )
    _, state = yield from _history.read_state(conn, table)
    note = "it existed; its history table is ensured" if found[0]["found"] else "empty"
    return Outcome("ok", note, details={"scriptversion": _history.version_of(state)})


def _read_sources(
    plpy: Plpy, run: FleetRun, clusters_used: set[str], hosts: dict[str, str]
) -> dict[str, Source]:
    """Each cluster's template schema, its catalog read once (one statement),
    planned into a Clone; refused, naming the object, before any tenant is made."""
    any_ready = plpy.execute(
        f"""SELECT 1 FROM admmgt.vendor_db_settings WHERE istemplate AND NOT deleted
           AND status = {APPLIED} AND separatedb = {SCHEMA_MODE} LIMIT 1"""
    )
    # None ready: its creation failed in this run; each tenant says its cluster has none.
    ready = templates(plpy, SCHEMA_MODE) if any_ready else []
    found = {t.cluster: t for t in ready if t.cluster in clusters_used}
    dblink, clusters = run.dblink, run.clusters
    sources = {}
    for cluster, template in sorted(found.items()):
        template = Tenant(
            template.id, template.dbname, cluster, template.scriptversion, SCHEMA_MODE,
            hosts[cluster],
        )  # fmt: skip
        with dblink.session(place_conninfo(clusters, template.place)) as conn:
            doc = dblink.query(conn, catalog_sql(template.database), "doc text")[0]["doc"]
            has, state = _history.read_state_now(
                dblink, conn, _history.history_table(template.database)
            )
        if not has:
            raise AdmmgtError(
                f'template schema "{template.label}" has no history table '
                f"{_history.history_table(template.database)}; no tenant was created",
                hint="Set its registry row's status to 1 and call create_schema: it adds the "
                "table (the schema is kept).",
            )
        sources[cluster] = Source(
            template, plan_clone(json.loads(doc), template.database), _history.version_of(state)
        )
    return sources


def tenant_marker(tenant: Tenant) -> str:
    """The comment admmgt puts on a schema it created, to recognise it after a crash."""
    return f"admmgt schema tenant {tenant.id}"


def role_marker(schema: str, host: str) -> str:
    return f"admmgt tenant role of schema {schema} in database {host}"


class HostConnections:
    """Connections to the host databases kept across tenants for one wave: a
    tenant's job takes one and gives it back, so a run opens about
    ``max_parallel`` connections per host instead of one per tenant (a new
    connection costs a backend start, and dblink_connect blocks the run). A
    connection whose tenant failed is closed, not reused; so is one that has
    made ``REUSE`` tenants, whose backend caches every relation it created."""

    REUSE = 50

    def __init__(self, dblink: Dblink, clusters: Clusters) -> None:
        self.dblink = dblink
        self.clusters = clusters
        self.free: dict[Place, list[str]] = {}
        self.opened: set[str] = set()
        self.uses: dict[str, int] = {}

    def take(self, place: Place) -> str:
        free = self.free.setdefault(place, [])
        if free:
            return free.pop()
        name = self.dblink.connect(place_conninfo(self.clusters, place))
        self.opened.add(name)
        return name

    def give(self, place: Place, name: str, *, reuse: bool) -> None:
        self.uses[name] = self.uses.get(name, 0) + 1
        if reuse and self.uses[name] < self.REUSE:
            self.free.setdefault(place, []).append(name)
        else:
            self.opened.discard(name)
            self.dblink.disconnect(name)

    def close(self) -> None:
        for name in sorted(self.opened):
            self.dblink.disconnect(name)
        self.opened.clear()
        self.free.clear()


def _create_one(
    tenant: Tenant,
    source: Source | None,
    settings: Settings,
    connections: HostConnections,
    role: str | None,
) -> Job:
    """One tenant schema, on a kept connection to its host."""
    if source is None:
        return Outcome(
            "failed",
            f'schema tenant "{tenant.label}": cluster "{tenant.cluster}" has no template '
            "schema (a vendor_db_settings row with istemplate, separatedb = 0); register it "
            "and call create_schema again",
            "0A000",
        )
    place = Place(tenant.cluster, str(tenant.host))
    conn = connections.take(place)
    outcome = Outcome("failed", "interrupted")
    try:
        outcome = yield from _make_schema(tenant, source, settings, conn, role)
    finally:
        connections.give(place, conn, reuse=outcome.outcome == "ok")
    return outcome


def _make_schema(
    tenant: Tenant, source: Source, settings: Settings, conn: str, role: str | None
) -> Job:
    """One tenant schema, in one transaction: the clone, its history, its role."""
    schema, host = tenant.database, str(tenant.host)
    probe = yield Run(
        conn,
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = "
        f"{quote_literal(schema)}) AS schema_found, (SELECT obj_description(oid, "
        f"'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = {quote_literal(schema)})"
        " AS schema_note, EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = "
        f"{quote_literal(role or '')}) AS role_found, (SELECT shobj_description(oid, "
        f"'pg_authid') FROM pg_catalog.pg_roles WHERE rolname = {quote_literal(role or '')})"
        " AS role_note",
        "schema_found boolean, schema_note text, role_found boolean, role_note text",
    )
    found = probe[0]
    if found["schema_found"]:
        if found["schema_note"] != tenant_marker(tenant):
            return Outcome(
                "failed",
                f'schema "{schema}" already exists in database "{host}" but admmgt did not '
                "create it for this tenant; drop or rename it, or register it with status 2 "
                "if it is a tenant",
                "42P06",
            )
        _, state = yield from _history.read_state(conn, _history.history_table(schema))
        return Outcome(
            "ok",
            "found already created by an earlier interrupted run",
            details={"scriptversion": _history.version_of(state)},
        )
    statements = source.clone.ddl(schema)
    statements.append(
        f"COMMENT ON SCHEMA {quote_ident(schema)} IS {quote_literal(tenant_marker(tenant))}"
    )
    if role is not None:
        marker = role_marker(schema, host)
        if found["role_found"] and found["role_note"] != marker:
            return Outcome(
                "failed",
                f'schema tenant "{tenant.label}": role "{role}" already exists and admmgt did '
                "not make it for this tenant; drop or rename it, or change "
                "schema_role_pattern; nothing was created",
                "42710",
            )
        if not found["role_found"]:
            statements += [
                f"CREATE ROLE {quote_ident(role)} NOLOGIN",
                f"COMMENT ON ROLE {quote_ident(role)} IS {quote_literal(marker)}",
            ]
        statements += [
            f"GRANT {quote_ident(group_role(host))} TO {quote_ident(role)}",
            # Routines without SET search_path resolve at call time: in its own schema.
            f"ALTER ROLE {quote_ident(role)} IN DATABASE {quote_ident(host)}"
            f" SET search_path = {quote_ident(schema)}",
        ]
        statements += source.clone.grants(schema, role)
    try:
        yield from in_one_trip(conn, settings, statements)
    except TransactionFailed as exc:
        step = ""
        if exc.index is not None and exc.index < len(statements):
            step = f" at: {statements[exc.index][:200]}"
        return Outcome(
            "failed",
            f'schema tenant "{tenant.label}": creating it failed ({exc.error.describe()}){step};'
            " its transaction was rolled back, nothing of it was made; fix the cause and call "
            "create_schema again",
            exc.error.sqlstate,
            exc.error.statement,
        )
    return Outcome("ok", "", details={"scriptversion": source.version})
