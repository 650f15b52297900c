"""Promotion of a schema tenant into a database of its own: promote_tenant.

The order of operations (docs/design/schema-tenants.md, "Promotion"):

1. Preflight, nothing changed yet: the tenant is a created schema tenant, its
   history has exactly the database template's scripts, its tables and
   columns are the template's, no database of its name exists, postgres_fdw
   is available. The operation locks of migrations, maintenance, lifecycle,
   sync and create_database are held for the whole call.
2. Record an ``admmgt.promotions`` row (state ``started``, the grants the
   write block will revoke), committed before anything changes.
3. Create the database from the template (``CREATE DATABASE ... TEMPLATE``,
   ``CONNECT`` revoked from ``PUBLIC``, marked with the promotion's id), and
   make its partitions the tenant's (all empty).
4. Block writes: revoke ``INSERT, UPDATE, DELETE, TRUNCATE`` on the schema's
   tables and ``USAGE, UPDATE`` on its sequences from every role but the
   owner (committed); then, in a host transaction held to the end, ``LOCK
   TABLE ... IN SHARE MODE`` every table of the schema, with
   ``lock_timeout`` and retries.
5. Copy, in the new database, in one transaction: a postgres_fdw server for
   the host, one foreign table per leaf table whose columns are the new
   table's, ``INSERT ... OVERRIDING SYSTEM VALUE`` under
   ``session_replication_role = replica``, the history, every sequence and
   identity set to the source's value, the grants; the scratch objects are
   dropped before the commit (a password of the user mapping is never
   committed).
6. Verify: per table, count and an order-independent checksum on both sides
   (the same output settings), the history included.
7. Switch the registry row to a database tenant (and the promotion to
   ``switched``) in one admin statement: the single commit point.
8. Rename the old schema to ``<schema>_promoted_<id>`` in the held host
   transaction and commit it (queued writers then fail: the relation is
   gone); the promotion is ``done``.

A failure before 7 undoes what was done (the new database dropped, the grants
restored, the promotion ``aborted``): the tenant is where it was. A call that
dies there leaves the promotion ``started``; the next call undoes it first
(``t_abort => true``: only that). After 7, the next call only renames.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._conninfo import Clusters, parse_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import FleetRun, fleet_run
from admmgt_plpy._locks import LOCK_CLASS
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._provision import tenant_marker
from admmgt_plpy._registry import (
    DATABASE_MODE,
    SCHEMA_MODE,
    TENANT_SELECT,
    Tenant,
    database_name_problem,
    registered,
    templates,
)
from admmgt_plpy._remote import Dblink, Outcome, RemoteError
from admmgt_plpy._settings import Settings
from admmgt_plpy._transient import LOCK_STATES
from admmgt_plpy._types import APPLIED, Plpy

OPERATION = "promote_tenant"
# The session setting that stops a promotion after a step (tests only):
# "<step>" fails there, "<step>:wait" waits for the advisory lock
# (LOCK_CLASS, FAULT_LOCK) in the admin database, which a test holds.
FAULT_SETTING = "admmgt.promote_fault"
FAULT_LOCK = 100
STEPS = ("record", "create", "block", "copy", "verify", "switch")

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


def promote_tenant(plpy: Plpy, *, dbname: str, cluster: str | None, abort: bool) -> None:
    """``CALL admmgt.promote_tenant(dbname [, t_cluster] [, t_abort])``: see the module."""
    with fleet_run(
        plpy,
        OPERATION,
        lock="migrations",
        lock_name="a migration (applyScripts, replayScripts, rollbackScript or promote_tenant)",
        locks=(
            ("maintenance", "applyMaintenance"),
            ("lifecycle", "lifecycleMgt"),
            ("sync", "refresh_stored_procedures / refresh_views"),
            ("create_database", "create_database / drop_database"),
        ),
    ) as run:
        Promotion(plpy, run).call(dbname, cluster, abort)


class Promotion:
    """One call of promote_tenant (one tenant)."""

    def __init__(self, plpy: Plpy, run: FleetRun) -> None:
        self.plpy = plpy
        self.run = run
        self.settings: Settings = run.settings
        self.dblink: Dblink = run.dblink
        self.clusters: Clusters = run.clusters
        self.fault = plpy.execute(
            f"SELECT coalesce(current_setting({quote_literal(FAULT_SETTING)}, true), '') AS f"
        )[0]["f"]
        self.started = time.monotonic()
        self.admin = ""  # a session on the admin database: each statement commits at once
        self.host = ""  # the host transaction holding the SHARE locks
        self.promotion_id = 0

    # ------------------------------------------------------------ the call

    def call(self, dbname: str, cluster: str | None, abort: bool) -> None:
        row = registered(self.plpy, dbname)
        self.admin = self.dblink.connect(self.clusters.admin_conninfo())
        try:
            unfinished = self._unfinished(int(row["id"]))
            if unfinished is not None:
                self.run.start({"dbname": dbname, "after": unfinished["state"], "abort": abort})
                if unfinished["state"] == "switched":
                    self._finish_switched(unfinished)
                    return
                self._undo_unfinished(unfinished)
                if abort:
                    self.run.end()
                    return
            elif abort:
                self.run.nothing_to_do(
                    f'promote_tenant: no promotion of "{dbname}" is unfinished; nothing to abort'
                )
                return
            plan = self._preflight(int(row["id"]), cluster)
            if unfinished is None:
                self.run.start({"dbname": dbname, "cluster": plan.to_cluster})
            self._promote(plan)
        finally:
            self.dblink.disconnect_all()

    def _say(self, text: str) -> None:
        self.plpy.notice(f"promote_tenant: {text}")

    def _fault_after(self, step: str) -> None:
        """The test hook (FAULT_SETTING): fail, or wait for the test, after ``step``."""
        if self.fault == step:
            raise AdmmgtError(
                f"promote_tenant: stopped after step {step!r} by the setting {FAULT_SETTING} "
                "(a test hook)",
                hint=f"RESET {FAULT_SETTING};",
            )
        if self.fault == f"{step}:wait":
            self._say(f"waiting after step {step!r} ({FAULT_SETTING})")
            self.plpy.execute(
                f"SELECT pg_catalog.pg_advisory_xact_lock({LOCK_CLASS}, {FAULT_LOCK})"
            )

    # ----------------------------------------------------------- preflight

    def _tenant(self, tenant_id: int) -> Tenant:
        rows = self.plpy.execute(f"{TENANT_SELECT} WHERE v.id = {int(tenant_id)}")
        return Tenant.of(rows[0])

    def _preflight(self, tenant_id: int, cluster: str | None) -> Plan:
        """Everything checked before anything changes; a refusal names the fix."""
        row = self.plpy.execute(
            f"SELECT istemplate, status, separatedb FROM admmgt.vendor_db_settings"
            f" WHERE id = {int(tenant_id)}"
        )[0]
        tenant = self._tenant(tenant_id)
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

    # -------------------------------------------------------- the promotion

    def _promote(self, plan: Plan) -> None:
        tenant = plan.tenant
        kept_prefix = _fit(tenant.database, len("_promoted_") + 19)
        self.promotion_id = int(
            self.dblink.query(
                self.admin,
                "WITH n AS (SELECT nextval(pg_catalog.pg_get_serial_sequence("
                "'admmgt.promotions', 'id')) AS id)"
                " INSERT INTO admmgt.promotions (id, tenant_id, dbname, from_cluster, from_host,"
                " to_cluster, scriptversion, grants, kept_as, run_id)"
                f" SELECT n.id, {int(tenant.id)}, {quote_literal(tenant.database)},"
                f" {quote_literal(tenant.cluster)}, {quote_literal(tenant.place.database)},"
                f" {quote_literal(plan.to_cluster)},"
                f" {'NULL' if plan.version is None else int(plan.version)},"
                f" {quote_literal(json.dumps(plan.grants))}::jsonb,"
                f" {quote_literal(kept_prefix + '_promoted_')} || n.id, {self.run.run_id}"
                " FROM n RETURNING id",
                "id bigint",
            )[0]["id"]
        )
        self._say(
            f'promotion {self.promotion_id} of "{tenant.label}" to database "{tenant.database}" '
            f'on cluster "{plan.to_cluster}" recorded'
        )
        step = "record"
        try:
            self._fault_after(step)
            step = "create"
            self._create(plan)
            self._fault_after(step)
            step = "block"
            self._block(plan)
            self._fault_after(step)
            step = "copy"
            counts = self._copy(plan)
            self._fault_after(step)
            step = "verify"
            self._verify(plan, counts)
            self._fault_after(step)
        except (AdmmgtError, RemoteError) as exc:
            why = exc.message if isinstance(exc, AdmmgtError) else exc.describe()
            message = f'promotion of "{tenant.label}" failed at step {step}: {why}'
            undone = self._undo(
                plan.tenant, plan.to_cluster, self.promotion_id, plan.grants, message
            )
            self._record(tenant, plan.to_cluster, Outcome("failed", message))
            raise AdmmgtError(
                f"promote_tenant: {message}; {undone}",
                hint=exc.hint
                if isinstance(exc, AdmmgtError) and exc.hint
                else "Fix the cause and call promote_tenant again.",
            ) from None
        rows = sum(counts.values())
        self._switch(plan, len(counts), rows)
        self._fault_after("switch")
        kept = self._rename(tenant, self.promotion_id)
        message = (
            f'"{tenant.label}" is now database "{tenant.database}" on cluster '
            f'"{plan.to_cluster}" at script {plan.version}: {rows} rows in {len(counts)} tables '
            f"copied and verified; the old schema is kept as {kept}"
        )
        self._record(tenant, plan.to_cluster, Outcome("ok", message))
        self._say(message)
        self.run.end()

    def _record(self, tenant: Tenant, cluster: str, outcome: Outcome) -> None:
        elapsed = (time.monotonic() - self.started) * 1000.0
        self.run.recorder.target(tenant.database, cluster, outcome, elapsed)

    def _maintenance(self, cluster: str) -> str:
        return self.dblink.connect(
            self.clusters.conninfo(cluster, self.clusters.maintenance_db(cluster))
        )

    def _marker(self, promotion_id: int) -> str:
        return f"admmgt promotion {int(promotion_id)}"

    def _create(self, plan: Plan) -> None:
        """Step 3: the database, from the template, with the tenant's partitions."""
        tenant, db = plan.tenant, quote_ident(plan.tenant.database)
        create = (
            f"CREATE DATABASE {db} TEMPLATE {quote_ident(plan.template.database)}"
            f" STRATEGY {self.settings.create_strategy}"
        )
        if self.settings.tenant_owner:
            create += f" OWNER {quote_ident(self.settings.tenant_owner)}"
        conn = self._maintenance(plan.to_cluster)
        try:
            deadline = time.monotonic() + self.settings.template_busy_timeout_s
            delay = max(self.settings.retry_backoff_ms, 50) / 1000.0
            while True:
                try:
                    self.dblink.query(conn, create)
                    break
                except RemoteError as exc:
                    if exc.sqlstate == "55006" and time.monotonic() < deadline:
                        time.sleep(delay * random.uniform(0.5, 1.5))
                        delay = min(delay * 2, 5.0)
                        continue
                    raise
            self.dblink.query(
                conn,
                f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;"
                f" COMMENT ON DATABASE {db} IS {quote_literal(self._marker(self.promotion_id))}",
            )
        finally:
            self.dblink.disconnect(conn)
        new = self._new_db(plan)
        try:
            target = Catalog.read(self.dblink, new, plan.app_schema)
            statements = _partition_statements(plan.source, target, plan.app_schema)
            self.dblink.query(new, ";\n".join(statements))
        finally:
            self.dblink.disconnect(new)
        self._say(f'created database "{tenant.database}" from "{plan.template.database}"')

    def _new_db(self, plan: Plan) -> str:
        return self.dblink.connect(self.clusters.conninfo(plan.to_cluster, plan.tenant.database))

    def _block(self, plan: Plan) -> None:
        """Step 4: writes revoked (committed), then the SHARE locks, held."""
        tenant, schema = plan.tenant, plan.tenant.database
        host_info = self.clusters.conninfo(tenant.cluster, tenant.place.database)
        revokes = _grant_statements(schema, plan.grants, revoke=True)
        if revokes:
            conn = self.dblink.connect(host_info)
            try:
                self.dblink.query(conn, ";\n".join(revokes))
                left = [
                    g
                    for g in Catalog.read(self.dblink, conn, schema).grants
                    if g[3] in WRITES.get(g[1], ())
                ]
            finally:
                self.dblink.disconnect(conn)
            if left:
                who = ", ".join(sorted({f"{g[3]} on {g[0]} to {g[2]}" for g in left}))
                raise AdmmgtError(
                    f"the write block could not revoke {who} (granted by another grantor)",
                    hint="REVOKE them yourself (or GRANT them as the owner), then call again.",
                )
        self.host = self.dblink.connect(host_info)
        self.dblink.query(self.host, SAME_TEXT, SAME_TEXT_COLUMNS)
        tables = sorted(
            n
            for n, r in plan.source.relations.items()
            if r["kind"] in ("r", "p") and not r["partition"]
        )
        lock = f"LOCK TABLE {', '.join(qualified(schema, n) for n in tables)} IN SHARE MODE"
        attempts = 0
        delay = max(self.settings.retry_backoff_ms, 50) / 1000.0
        while True:
            attempts += 1
            self.dblink.query(self.host, "BEGIN")
            try:
                self.dblink.query(
                    self.host,
                    f"SET LOCAL lock_timeout = {int(self.settings.lock_timeout_ms)}",
                )
                self.dblink.query(self.host, lock)
                break
            except RemoteError as exc:
                self.dblink.query(self.host, "ROLLBACK")
                if exc.sqlstate not in LOCK_STATES:
                    raise
                if attempts > self.settings.lock_retries:
                    raise AdmmgtError(
                        f'could not lock the {len(tables)} tables of schema "{schema}" within '
                        f"lock_timeout ({self.settings.lock_timeout_ms} ms) after {attempts} "
                        f"tries ({exc.sqlstate} {exc.message}): a transaction holds a lock on "
                        "one of them",
                        hint="Find it in pg_locks / pg_stat_activity of the host database, let "
                        "it finish, then call again.",
                    ) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
        self._say(
            f'writes to "{tenant.label}" blocked: {len(revokes)} privilege(s) revoked, '
            f"{len(tables)} table(s) locked in SHARE mode"
        )

    def _copy(self, plan: Plan) -> dict[str, int]:
        """Step 5: every leaf table, the history and the sequences, in one
        transaction of the new database; rows copied per table."""
        tenant, app, schema = plan.tenant, plan.app_schema, plan.tenant.database
        scratch = f"admmgt_promote_{self.promotion_id}"
        server = quote_ident(scratch)
        values = self._sequence_values(plan)
        new = self._new_db(plan)
        counts: dict[str, int] = {}
        try:
            target = Catalog.read(self.dblink, new, app)
            missing = [n for n in plan.source.leaves() if n not in target.relations]
            if missing:
                raise AdmmgtError(
                    f"the new database lacks table(s) {', '.join(missing)} of the tenant"
                )
            self.dblink.query(new, _history.ENSURE_TABLE)
            history_columns = self._history_columns(new)
            has_fdw = self.dblink.query(
                new,
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension"
                " WHERE extname = 'postgres_fdw') AS has",
                "has boolean",
            )[0]["has"]
            server_options, mapping_options = self._fdw_options(tenant)
            q = self.dblink.query
            q(new, "BEGIN")
            q(new, "SET LOCAL session_replication_role = replica")
            q(new, f"CREATE SCHEMA {server}")
            if not has_fdw:
                q(new, f"CREATE EXTENSION postgres_fdw SCHEMA {server}")
            q(
                new,
                f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                f"({server_options})",
            )
            q(
                new,
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS ({mapping_options})",
            )
            for i, leaf in enumerate(plan.source.leaves()):
                columns = target.relations[leaf]["copied"]
                foreign = f"{server}.{quote_ident(f'f{i}')}"
                q(new, _foreign_table(foreign, server, columns, schema, leaf))
                names = ", ".join(quote_ident(c) for c, _ in columns)
                status = q(
                    new,
                    f"INSERT INTO {qualified(app, leaf)} ({names}) OVERRIDING SYSTEM VALUE"
                    f" SELECT {names} FROM {foreign}",
                )[0]["status"]
                counts[leaf] = int(status.split()[-1])
            foreign = f"{server}.history"
            q(
                new,
                _foreign_table(foreign, server, history_columns, schema, _history.SCHEMA_HISTORY),
            )
            names = ", ".join(quote_ident(c) for c, _ in history_columns)
            q(new, f"DELETE FROM {HISTORY_TABLE}")
            status = q(
                new,
                f"INSERT INTO {HISTORY_TABLE} ({names}) OVERRIDING SYSTEM VALUE"
                f" SELECT {names} FROM {foreign}",
            )[0]["status"]
            counts[HISTORY_TABLE] = int(status.split()[-1])
            setvals = self._setvals(plan, target, values)
            if setvals:
                q(
                    new,
                    "SELECT " + ", ".join(setvals),
                    ", ".join(f"s{i} bigint" for i in range(len(setvals))),
                )
            existing = {
                r["n"] for r in q(new, "SELECT rolname AS n FROM pg_catalog.pg_roles", "n text")
            }
            for statement in self._new_grants(plan, target, existing):
                q(new, statement)
            q(new, f"DROP SERVER {server} CASCADE")
            if not has_fdw:
                q(new, "DROP EXTENSION postgres_fdw")
            q(new, f"DROP SCHEMA {server} CASCADE")
            q(new, "COMMIT")
        finally:
            self.dblink.disconnect(new)
        self._say(
            f"copied {sum(counts.values())} rows in {len(counts)} tables and set "
            f"{len(values)} sequence(s)"
        )
        return counts

    def _history_columns(self, conn: str) -> list[tuple[str, str]]:
        rows = self.dblink.query(
            conn,
            "SELECT a.attname AS n, pg_catalog.format_type(a.atttypid, a.atttypmod) AS t"
            " FROM pg_catalog.pg_attribute AS a"
            f" WHERE a.attrelid = {quote_literal(HISTORY_TABLE)}::regclass"
            " AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            "n text, t text",
        )
        return [(r["n"], r["t"]) for r in rows]

    def _fdw_options(self, tenant: Tenant) -> tuple[str, str]:
        """The postgres_fdw server's options and its user mapping's, from the
        connection string admmgt uses for the host (a password, if any, goes
        in the mapping, which is dropped before the copy commits)."""
        parts = dict(
            parse_options(
                tenant.cluster, self.clusters.conninfo(tenant.cluster, tenant.place.database)
            )
        )
        mapping: dict[str, str] = {
            k: parts.pop(k) for k in ("user", "password", "sslpassword") if k in parts
        }
        parts["application_name"] = "admmgt promote_tenant"
        parts.pop("options", None)
        parts["options"] = "-c client_min_messages=warning"

        def options(d: dict[str, str]) -> str:
            return ", ".join(f"{quote_ident(k)} {quote_literal(v)}" for k, v in d.items())

        return options(parts), options(mapping)

    def _sequence_values(self, plan: Plan) -> dict[str, tuple[int, bool]]:
        """Each sequence of the tenant's schema (and its history's identity):
        (last_value, is_called), read under the locks."""
        schema = plan.tenant.database
        names = sorted(plan.source.sequences())
        if not names:
            return {}
        union = " UNION ALL ".join(
            f"SELECT {quote_literal(n)} AS n, last_value::text AS v, is_called AS c"
            f" FROM {qualified(schema, n)}"
            for n in names
        )
        rows = self.dblink.query(self.host, union, "n text, v text, c boolean")
        return {r["n"]: (int(r["v"]), bool(r["c"])) for r in rows}

    def _setvals(
        self, plan: Plan, target: Catalog, values: dict[str, tuple[int, bool]]
    ) -> list[str]:
        """setval() of each sequence of the new database, from its source:
        the one owned by the same column, or (free) of the same name."""
        source = plan.source.sequences()
        by_owner = {tuple(r["owned_by"]): n for n, r in source.items() if r["owned_by"] is not None}
        # The history's identity: admmgt.script_history here, admmgt_history there.
        setvals: list[str] = []
        history_seq = by_owner.get((_history.SCHEMA_HISTORY, "id"))
        if history_seq is not None and history_seq in values:
            v, c = values[history_seq]
            setvals.append(
                "pg_catalog.setval(pg_catalog.pg_get_serial_sequence("
                f"{quote_literal(HISTORY_TABLE)}, 'id'), {v}, {'true' if c else 'false'})"
            )
        for n, r in sorted(target.sequences().items()):
            src = by_owner.get(tuple(r["owned_by"])) if r["owned_by"] is not None else n
            if src is None or src not in values:
                raise AdmmgtError(
                    f"sequence {n} of the new database has no counterpart in the tenant's schema"
                )
            v, c = values[src]
            setvals.append(
                f"pg_catalog.setval({quote_literal(qualified(plan.app_schema, n))}::regclass,"
                f" {v}, {'true' if c else 'false'})"
            )
        return setvals

    def _new_grants(self, plan: Plan, target: Catalog, existing: set[str]) -> list[str]:
        """The privileges other roles held on the tenant's schema, tables and
        sequences, granted on the new database's (to the roles that exist on
        its cluster: roles are cluster-wide)."""
        roles = {g["role"] for g in plan.grants} | {g[0] for g in plan.source.schema_grants}
        roles = {r for r in roles if r in existing}
        statements = [
            f"GRANT CONNECT ON DATABASE {quote_ident(plan.tenant.database)} TO {quote_ident(r)}"
            for r in sorted(roles)
        ]
        for role, privilege, grantable in plan.source.schema_grants:
            if role in roles and privilege == "USAGE":
                statements.append(
                    f"GRANT USAGE ON SCHEMA {quote_ident(plan.app_schema)} TO {quote_ident(role)}"
                    + (" WITH GRANT OPTION" if grantable else "")
                )
        known = [g for g in plan.grants if g["on"] in target.relations and g["role"] in roles]
        statements += _grant_statements(plan.app_schema, known, revoke=False, only_writes=False)
        return statements

    def _verify(self, plan: Plan, counts: dict[str, int]) -> None:
        """Step 6: count and checksum of every table on both sides."""
        schema, app = plan.tenant.database, plan.app_schema
        new = self._new_db(plan)
        try:
            self.dblink.query(new, SAME_TEXT, SAME_TEXT_COLUMNS)
            target = Catalog.read(self.dblink, new, app)
            tables = [
                (leaf, sorted(target.relations[leaf]["columns"])) for leaf in plan.source.leaves()
            ]
            history = sorted(c for c, _ in self._history_columns(new))
            there = _sums(
                self.dblink,
                new,
                [(qualified(app, t), c) for t, c in tables] + [(HISTORY_TABLE, history)],
            )
        finally:
            self.dblink.disconnect(new)
        here = _sums(
            self.dblink,
            self.host,
            [(qualified(schema, t), c) for t, c in tables]
            + [(_history.history_table(schema), history)],
        )
        names = [t for t, _ in tables] + [HISTORY_TABLE]
        problems = []
        for name, a, b in zip(names, here, there, strict=True):
            if a != b:
                problems.append(
                    f"{name}: {a[0]} rows in the schema, {b[0]} in the new database"
                    + ("" if a[0] != b[0] else " (same count, different contents)")
                )
        if problems:
            raise AdmmgtError(
                f"the copy does not match ({'; '.join(problems)})",
                hint="A trigger or rule of the template database that changes rows on INSERT "
                "(ENABLE ALWAYS), or a column default, can cause this; fix it and call again.",
            )
        self._say(f"verified: {len(names)} tables have the same counts and checksums on both sides")

    def _switch(self, plan: Plan, tables: int, rows: int) -> None:
        """Step 7, the commit point: the registry row becomes a database tenant."""
        tenant = plan.tenant
        version = "scriptversion" if plan.version is None else str(int(plan.version))
        sql = (
            "WITH u AS (UPDATE admmgt.vendor_db_settings SET separatedb = 1,"
            f" cluster_name = {quote_literal(plan.to_cluster)}, scriptversion = {version},"
            " last_error = NULL, last_error_at = NULL, modifiedon = now()"
            f" WHERE id = {int(tenant.id)} AND separatedb = 0 AND NOT deleted RETURNING id)"
            " UPDATE admmgt.promotions SET state = 'switched', switched_at = clock_timestamp(),"
            f" tables = {int(tables)}, rows_copied = {int(rows)}"
            f" WHERE id = {self.promotion_id} AND state = 'started' AND EXISTS (SELECT FROM u)"
            " RETURNING id"
        )
        try:
            done = self.dblink.query(self.admin, sql, "id bigint")
        except RemoteError as exc:
            # The commit may have happened before the connection went: ask again.
            state = self._state(self.promotion_id)
            if state != "switched":
                message = f"switching the registry failed ({exc.describe()})"
                undone = self._undo(
                    tenant, plan.to_cluster, self.promotion_id, plan.grants, message
                )
                raise AdmmgtError(f"promote_tenant: {message}; {undone}") from None
            done = [{"id": self.promotion_id}]
        if not done:
            message = (
                "the registry row changed during the promotion (deleted, or no longer a "
                "schema tenant)"
            )
            undone = self._undo(tenant, plan.to_cluster, self.promotion_id, plan.grants, message)
            raise AdmmgtError(f"promote_tenant: {message}; {undone}")
        try:
            conn = self._maintenance(plan.to_cluster)
            self.dblink.query(
                conn,
                f"COMMENT ON DATABASE {quote_ident(tenant.database)} IS "
                f"{quote_literal(tenant_marker(tenant))}",
            )
            self.dblink.disconnect(conn)
        except RemoteError:
            pass  # only a marker; the registry is what counts

    def _state(self, promotion_id: int) -> str | None:
        conn = self.dblink.connect(self.clusters.admin_conninfo())
        try:
            rows = self.dblink.query(
                conn,
                f"SELECT state FROM admmgt.promotions WHERE id = {int(promotion_id)}",
                "state text",
            )
        finally:
            self.dblink.disconnect(conn)
        return str(rows[0]["state"]) if rows else None

    def _rename(self, tenant: Tenant, promotion_id: int) -> str:
        """Step 8: the old schema renamed in the locking transaction, committed;
        the promotion done. Returns the new name."""
        kept = str(
            self.dblink.query(
                self.admin,
                f"SELECT kept_as FROM admmgt.promotions WHERE id = {int(promotion_id)}",
                "kept_as text",
            )[0]["kept_as"]
        )
        try:
            rename = f"ALTER SCHEMA {quote_ident(tenant.database)} RENAME TO {quote_ident(kept)}"
            if self.host:
                self.dblink.query(self.host, rename)
                self.dblink.query(self.host, "COMMIT")
            else:
                conn = self.dblink.connect(
                    self.clusters.conninfo(tenant.cluster, tenant.place.database)
                )
                try:
                    exists = self.dblink.query(
                        conn,
                        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = "
                        f"{quote_literal(tenant.database)}) AS e",
                        "e boolean",
                    )[0]["e"]
                    if exists:
                        self.dblink.query(conn, rename)
                finally:
                    self.dblink.disconnect(conn)
        except RemoteError as exc:
            raise AdmmgtError(
                f'promote_tenant: "{tenant.database}" is promoted (the registry names its new '
                f"database), but renaming its old schema to {kept} failed ({exc.describe()})",
                hint=f"CALL admmgt.promote_tenant({quote_literal(tenant.database)}); again "
                "renames it.",
            ) from None
        self.dblink.query(
            self.admin,
            "UPDATE admmgt.promotions SET state = 'done', finished_at = clock_timestamp(),"
            f" message = {quote_literal('old schema kept as ' + kept)}"
            f" WHERE id = {int(promotion_id)}",
        )
        return kept

    # ------------------------------------------------------ interruptions

    def _unfinished(self, tenant_id: int) -> dict[str, Any] | None:
        rows = self.plpy.execute(
            "SELECT id, dbname, from_cluster, from_host, to_cluster, state, grants::text AS g"
            " FROM admmgt.promotions WHERE state IN ('started', 'switched')"
            f" AND tenant_id = {int(tenant_id)}"
        )
        return dict(rows[0]) if rows else None

    def _finish_switched(self, unfinished: dict[str, Any]) -> None:
        """A promotion that died after the switch: only the rename is left."""
        row = self.plpy.execute(
            f"{TENANT_SELECT} WHERE v.id = (SELECT tenant_id FROM "
            f"admmgt.promotions WHERE id = {int(unfinished['id'])})"
        )[0]
        old = Tenant(
            int(row["id"]),
            row["dbname"],
            unfinished["from_cluster"],
            row["scriptversion"],
            SCHEMA_MODE,
            unfinished["from_host"],
        )
        kept = self._rename(old, int(unfinished["id"]))
        message = (
            f'promotion {unfinished["id"]} of "{old.label}" was interrupted after the registry '
            f"switched; its old schema is now kept as {kept}"
        )
        self._record(old, unfinished["to_cluster"], Outcome("ok", message))
        self._say(message)
        self.run.end()

    def _undo_unfinished(self, unfinished: dict[str, Any]) -> None:
        row = self.plpy.execute(
            f"{TENANT_SELECT} WHERE v.id = (SELECT tenant_id FROM "
            f"admmgt.promotions WHERE id = {int(unfinished['id'])})"
        )[0]
        tenant = Tenant.of(row)
        message = f"promotion {unfinished['id']} was interrupted before the registry switched"
        undone = self._undo(
            tenant,
            unfinished["to_cluster"],
            int(unfinished["id"]),
            json.loads(unfinished["g"]),
            message,
        )
        self._record(tenant, unfinished["to_cluster"], Outcome("ok", f"{message}; {undone}"))
        self._say(f"{message}; {undone}")

    def _undo(
        self,
        tenant: Tenant,
        to_cluster: str,
        promotion_id: int,
        grants: list[dict[str, Any]],
        message: str,
    ) -> str:
        """Put everything back before the switch; say what was undone. If that
        fails too, the promotion stays started for the next call."""
        if self.host:
            self.dblink.disconnect(self.host)  # its transaction (the locks) rolls back
            self.host = ""
        done: list[str] = []
        try:
            conn = self._maintenance(to_cluster)
            try:
                found = self.dblink.query(
                    conn,
                    "SELECT shobj_description(oid, 'pg_database') AS c FROM pg_catalog.pg_database"
                    f" WHERE datname = {quote_literal(tenant.database)}",
                    "c text",
                )
                if found and found[0]["c"] == self._marker(promotion_id):
                    self.dblink.query(
                        conn, f"DROP DATABASE {quote_ident(tenant.database)} WITH (FORCE)"
                    )
                    done.append(f'database "{tenant.database}" dropped')
            finally:
                self.dblink.disconnect(conn)
            restore = _grant_statements(tenant.database, grants, revoke=False)
            if restore:
                conn = self.dblink.connect(
                    self.clusters.conninfo(tenant.cluster, tenant.place.database)
                )
                try:
                    self.dblink.query(conn, ";\n".join(restore))
                finally:
                    self.dblink.disconnect(conn)
                done.append("write privileges granted back")
            self.dblink.query(
                self.admin,
                "UPDATE admmgt.promotions SET state = 'aborted', finished_at = clock_timestamp(),"
                f" message = {quote_literal(message)} WHERE id = {int(promotion_id)}"
                " AND state = 'started'",
            )
        except (AdmmgtError, RemoteError) as exc:
            why = exc.message if isinstance(exc, AdmmgtError) else exc.describe()
            return (
                f"undoing it failed too ({why}); the registry still names the schema tenant; "
                f"CALL admmgt.promote_tenant({quote_literal(tenant.database)}, t_abort => true) "
                "to finish undoing it"
            )
        return (
            "undone (" + (", ".join(done) or "nothing had changed") + f'): "{tenant.label}" is '
            "a schema tenant as before"
        )


# --------------------------------------------------------------- SQL text


def _fit(name: str, reserve: int) -> str:
    """``name`` cut (at a character) so that it and ``reserve`` more bytes fit 63."""
    while len(name.encode("utf-8")) + reserve > 63:
        name = name[:-1]
    return name


def _grant_statements(
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


def _partition_statements(source: Catalog, target: Catalog, app: str) -> list[str]:
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


def _foreign_table(
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


def _sums(dblink: Dblink, conn: str, tables: list[tuple[str, list[str]]]) -> list[tuple[int, str]]:
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
