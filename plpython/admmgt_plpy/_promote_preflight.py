"""promote_tenant's preflight (step 1): everything checked before anything
changes, each refusal naming the tenant and the fix. See admmgt_plpy._promote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._conninfo import Clusters, parse_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_literal
from admmgt_plpy._promote_sql import Catalog
from admmgt_plpy._registry import (
    DATABASE_MODE,
    SCHEMA_MODE,
    TENANT_SELECT,
    Tenant,
    database_name_problem,
    templates,
)
from admmgt_plpy._remote import Dblink
from admmgt_plpy._types import APPLIED, Plpy


@dataclass
class Plan:
    """What the preflight found: everything the steps need."""

    tenant: Tenant
    to_cluster: str
    template: Tenant  # the database template of to_cluster
    app_schema: str  # the template's application schema: the tenant's tables go there
    source: Catalog  # the tenant's schema in its host
    version: int | None
    grants: list[dict[str, Any]] = field(default_factory=list)


def tenant_by_id(plpy: Plpy, tenant_id: int) -> Tenant:
    """The registry row ``tenant_id`` (TENANT_SELECT: with its host)."""
    rows = plpy.execute(f"{TENANT_SELECT} WHERE v.id = {int(tenant_id)}")
    return Tenant.of(rows[0])


def preflight(
    plpy: Plpy, dblink: Dblink, clusters: Clusters, tenant_id: int, cluster: str | None
) -> Plan:
    """The plan of a promotion of ``tenant_id`` to ``cluster`` (None: its own),
    or an AdmmgtError saying why not; nothing is changed either way."""
    return _Checks(plpy, dblink, clusters).preflight(tenant_id, cluster)


class _Checks:
    def __init__(self, plpy: Plpy, dblink: Dblink, clusters: Clusters) -> None:
        self.plpy = plpy
        self.dblink = dblink
        self.clusters = clusters

    def preflight(self, tenant_id: int, cluster: str | None) -> Plan:
        """Everything checked before anything changes; a refusal names the fix."""
        row = self.plpy.execute(
            f"SELECT istemplate, status, separatedb FROM admmgt.vendor_db_settings"
            f" WHERE id = {int(tenant_id)}"
        )[0]
        tenant = tenant_by_id(self.plpy, tenant_id)
        name = tenant.dbname
        if row["istemplate"]:
            raise AdmmgtError(
                f'"{name}" is a template; promote_tenant moves schema tenants only',
                hint="Name a schema tenant (vendor_db_settings.separatedb = 0).",
            )
        if tenant.separatedb != SCHEMA_MODE:
            raise AdmmgtError(
                f'tenant "{name}" is a database tenant already (separatedb = 1); '
                "promote_tenant moves schema tenants into a database of their own",
                hint="Nothing to do; demotion (database to schema) is not built.",
            )
        if row["status"] != APPLIED:
            raise AdmmgtError(
                f'schema tenant "{name}" is not created (status {row["status"]}); '
                "there is nothing to promote",
                hint="CALL admmgt.create_schema(); first.",
            )
        problem = database_name_problem(name)
        if problem:
            raise AdmmgtError(
                f'schema tenant "{name}" cannot become a database: {problem}',
                hint="Promotion keeps the tenant's name; such a tenant stays a schema.",
            )
        place = tenant.place  # raises if its cluster has no host
        to_cluster = cluster or tenant.cluster
        self.clusters.get(to_cluster)
        by_cluster = {t.cluster: t for t in templates(self.plpy, DATABASE_MODE)}
        template = by_cluster.get(to_cluster)
        if template is None:
            raise AdmmgtError(
                f'promote_tenant "{name}": cluster "{to_cluster}" has no template database; '
                "nothing was changed",
                hint=f"CALL admmgt.add_cluster({quote_literal(to_cluster)}); builds its copy.",
            )
        app_schema = self._app_schema(tenant)

        host = self.dblink.connect(self.clusters.conninfo(tenant.cluster, place.database))
        try:
            source = Catalog.read(self.dblink, host, tenant.database)
            if not source.exists:
                raise AdmmgtError(
                    f'schema tenant "{tenant.label}": schema "{tenant.database}" does not exist '
                    f'in host database "{place.database}"; nothing was changed',
                    hint="Check the registry row (separatedb, status) and admmgt.schema_hosts.",
                )
            _, tenant_state = _history.read_state_now(
                self.dblink, host, _history.history_table(tenant.database)
            )
        finally:
            self.dblink.disconnect(host)
        unknown = [n for n, r in source.relations.items() if r["kind"] in ("f", "m")]
        if unknown:
            raise AdmmgtError(
                f'schema tenant "{tenant.label}": promote_tenant does not copy foreign tables or '
                f"materialized views ({', '.join(sorted(unknown))}); nothing was changed",
                hint="Drop them from the tenant's schema (they are not in the template), then "
                "call again.",
            )

        tpl = self.dblink.connect(self.clusters.conninfo(to_cluster, template.database))
        try:
            target = Catalog.read(self.dblink, tpl, app_schema)
            _, template_state = _history.read_state_now(self.dblink, tpl)
        finally:
            self.dblink.disconnect(tpl)
        have, want = _history.have(tenant_state), _history.have(template_state)
        if have != want:
            version = _history.version_of(tenant_state)
            theirs = _history.version_of(template_state)
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            detail = "; ".join(
                part
                for part in (
                    f"it lacks script(s) {', '.join(map(str, missing))}" if missing else "",
                    f"it has script(s) {', '.join(map(str, extra))} the template has not"
                    if extra
                    else "",
                )
                if part
            )
            raise AdmmgtError(
                f'schema tenant "{tenant.label}" is at script {version} and the template '
                f'"{template.database}" at {theirs} ({detail}); a promoted tenant is made from '
                "the template, so both must have the same scripts; nothing was changed",
                hint="Bring it to the template's version first: CALL admmgt.applyScripts("
                "t_separatedb => 0); (or replayScripts for this tenant), then call again.",
            )
        if not target.exists:
            raise AdmmgtError(
                f'template database "{template.database}" has no schema "{app_schema}" (the '
                "template schema's name, where a promoted tenant's tables go); nothing was changed",
                hint="Create the application schema in the template database, or fix the "
                "template schema's registry row.",
            )
        self._compare(tenant, source, target, template.database, app_schema)
        self._check_target(tenant, to_cluster)
        grants = [
            {"on": r, "kind": k, "role": g, "privilege": p, "grantable": o}
            for r, k, g, p, o in source.grants
        ]
        return Plan(
            tenant,
            to_cluster,
            template,
            app_schema,
            source,
            _history.version_of(tenant_state),
            grants,
        )

    def _app_schema(self, tenant: Tenant) -> str:
        for t in templates(self.plpy, SCHEMA_MODE):
            if t.cluster == tenant.cluster:
                return t.database
        raise AdmmgtError(
            f'schema tenant "{tenant.label}": cluster "{tenant.cluster}" has no template schema, '
            "which names the application schema a promoted tenant's tables go to",
            hint="Register the template schema (istemplate, separatedb = 0, status 2).",
        )

    def _compare(
        self, tenant: Tenant, source: Catalog, target: Catalog, template_db: str, app: str
    ) -> None:
        """The tenant's tables and columns must be the template's: a column only
        the tenant has would be lost in the copy."""
        problems: list[str] = []
        mine, theirs = source.tables(), target.tables()
        for n in sorted(set(mine) - set(theirs)):
            problems.append(f"table {n} is not in the template")
        for n in sorted(set(theirs) - set(mine)):
            problems.append(f"table {n} of the template is missing")
        for n in sorted(set(mine) & set(theirs)):
            a, b = set(mine[n]["columns"]), set(theirs[n]["columns"])
            if a - b:
                problems.append(f"{n}: column(s) {', '.join(sorted(a - b))} not in the template")
            if b - a:
                problems.append(f"{n}: template column(s) {', '.join(sorted(b - a))} missing")
            if mine[n]["kind"] != theirs[n]["kind"]:
                problems.append(f"{n}: partitioned in one and not in the other")
        for n, seq in source.sequences().items():
            if seq["owned_by"] is None and n not in target.sequences():
                problems.append(f"sequence {n} is not in the template")
        if problems:
            raise AdmmgtError(
                f'schema tenant "{tenant.label}" differs from the template database '
                f'"{template_db}" (schema {app}): ' + "; ".join(problems) + "; nothing was changed",
                hint="Make the tenant's schema match the template (detect_drift lists the "
                "differences), then call again.",
            )

    def _check_target(self, tenant: Tenant, to_cluster: str) -> None:
        host = dict(
            parse_options(
                tenant.cluster, self.clusters.conninfo(tenant.cluster, tenant.place.database)
            )
        )
        if "password" in host or "sslpassword" in host:
            # The copy's postgres_fdw user mapping would carry it: into the new
            # database's WAL, and into the server log under log_statement = ddl.
            raise AdmmgtError(
                f'promote_tenant "{tenant.label}": cluster "{tenant.cluster}" is reached with '
                "a password, which the copy would have to write into the new database's "
                "catalog (and so its WAL and statement log); nothing was changed",
                hint="Give the procedures' owner a passfile (~/.pgpass of the server's OS user) "
                "or a client certificate for that cluster instead of the fdw_server password, "
                "then call again.",
            )
        conn = self.dblink.connect(
            self.clusters.conninfo(to_cluster, self.clusters.maintenance_db(to_cluster))
        )
        try:
            found = self.dblink.query(
                conn,
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = "
                f"{quote_literal(tenant.database)}) AS db, EXISTS (SELECT FROM "
                "pg_catalog.pg_available_extensions WHERE name = 'postgres_fdw') AS fdw",
                "db boolean, fdw boolean",
            )[0]
        finally:
            self.dblink.disconnect(conn)
        if found["db"]:
            raise AdmmgtError(
                f'promote_tenant "{tenant.label}": a database "{tenant.database}" already exists '
                f'on cluster "{to_cluster}"; the promoted tenant keeps its name; nothing was '
                "changed",
                hint="Drop or rename that database (or pass another t_cluster), then call again.",
            )
        if not found["fdw"]:
            raise AdmmgtError(
                f'promote_tenant "{tenant.label}": the postgres_fdw extension is not available on '
                f'cluster "{to_cluster}"; the copy needs it; nothing was changed',
                hint="Install PostgreSQL's contrib package there (postgresql-contrib, part of the "
                "postgresql-15 package on Debian), then call again.",
            )
