"""Template object sync: functions, procedures and views copied to tenants.

Definitions are read from the template's catalog -- pg_get_functiondef for
every function and procedure (trigger functions included, overloads told apart
by their argument types), a CREATE OR REPLACE VIEW per view in dependency
order -- and compared with each tenant's by md5. Only what differs is
replaced, inside the caller's transaction, so a tenant's sync is atomic with
whatever else that transaction does (a script, when applyScripts syncs before
and after each one).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._definitions import (
    TEMPLATE_COLUMNS,
    Definition,
    TemplateDefinition,
    refusals,
    refuse,
    schema_definitions_query,
    template_definition,
    views_in_order,
)
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import fleet_run
from admmgt_plpy._names import quote_literal
from admmgt_plpy._registry import (
    SCHEMA_MODE,
    Tenant,
    mode_of,
    place_conninfo,
    registry_update,
    templates,
    updating_tenants,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run
from admmgt_plpy._runguard import failures_raised
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import TransactionFailed, in_transaction
from admmgt_plpy._transient import describe_blockers
from admmgt_plpy._types import Fragment, Plpy

KINDS = ("routines", "views")
__all__ = ["Definition"]  # re-exported: _definitions has it, the engine imports it from here


def schemas_expression(schemas: tuple[str, ...]) -> str:
    """SQL for the text[] of schemas whose objects are synced, in the connected database."""
    if schemas:
        return "ARRAY[" + ", ".join(quote_literal(s) for s in schemas) + "]::text[]"
    return (
        "ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace"
        " WHERE nspname NOT IN ('admmgt', 'information_schema')"
        " AND nspname NOT LIKE 'pg\\_%')"
    )


def _routines(schemas: str, text: bool) -> str:
    definition = "d.def" if text else "md5(d.def)"
    return f"""
SELECT d.name, d.kind, {definition} AS definition FROM (
    SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname)
               || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS name,
           CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END AS kind,
           pg_catalog.pg_get_functiondef(p.oid) AS def
    FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname::text = ANY ({schemas}) AND p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS e
                      WHERE e.classid = 'pg_catalog.pg_proc'::regclass AND e.objid = p.oid
                        AND e.deptype = 'e')) AS d
ORDER BY d.name"""


def _views(schemas: str, text: bool) -> str:
    definition = "v.def" if text else "md5(v.def)"
    return views_in_order(
        where=f"n.nspname::text = ANY ({schemas})",
        qualified=True,
        columns=f"{definition} AS definition",
    )


def definitions_query(kind: str, schemas: str, *, text: bool) -> str:
    """Definitions (text) or their md5s, of one kind, in the order they can be created."""
    return _routines(schemas, text) if kind == "routines" else _views(schemas, text)


DEFINITION_COLUMNS = "name text, kind text, definition text"


def read_definitions(conn: str, kind: str, schemas: str) -> Fragment:
    """Job fragment: the connected database's definitions of one kind, in order."""
    rows = yield Run(conn, definitions_query(kind, schemas, text=True), DEFINITION_COLUMNS)
    return [Definition(r["kind"], r["name"], r["definition"]) for r in rows]


def read_fingerprints(conn: str, kind: str, schemas: str) -> Fragment:
    """Job fragment: {name: (kind, md5)} of the connected database."""
    rows = yield Run(conn, definitions_query(kind, schemas, text=False), DEFINITION_COLUMNS)
    return {r["name"]: (r["kind"], r["definition"]) for r in rows}


def sync_into(conn: str, wanted: list[Definition], current: dict[str, tuple[str, str]]) -> Fragment:
    """Job fragment, inside an open transaction: make ``wanted`` true; return names changed.

    CREATE OR REPLACE cannot change a function's result type or drop a view's
    columns; then the object is dropped and created again (a dependent object
    makes that fail, and the caller's transaction rolls it all back).
    """
    changed = []
    for d in wanted:
        if current.get(d.name, ("", ""))[1] == d.md5:
            continue
        yield Run(conn, "SAVEPOINT admmgt_sync")
        try:
            yield Run(conn, d.sql)
        except RemoteError as exc:
            if exc.sqlstate not in ("42P13", "42P16", "42809"):
                raise
            yield Run(conn, "ROLLBACK TO SAVEPOINT admmgt_sync")
            yield Run(conn, d.drop)
            yield Run(conn, d.sql)
        yield Run(conn, "RELEASE SAVEPOINT admmgt_sync")
        changed.append(d.name)
    return changed


# ------------------------------------------------------------ standalone refresh


LOG_TABLES = {"routines": "admmgt.script_proc_log", "views": "admmgt.script_view_log"}
NOUNS = {"routines": "routine", "views": "view"}


def log_definitions(
    plpy: Plpy,
    recorder: RunRecorder,
    kind: str,
    definitions: list[Definition],
    scriptid: int | None,
    premigration: bool | None,
) -> None:
    """Keep what was synced (the proof of concept's script_proc_log / script_view_log)."""
    if not definitions:
        return
    q = plpy.quote_nullable
    sid = "NULL" if scriptid is None else str(int(scriptid))
    pre = "NULL" if premigration is None else str(premigration).lower()
    values = ", ".join(
        f"({sid}, {pre}, {q(d.sql)}, {q(d.kind)}, {q(d.name)}, {recorder.run_id})"
        for d in definitions
    )
    recorder.execute(
        f"INSERT INTO {LOG_TABLES[kind]} (scriptid, ispremigration, commstat, object_kind,"
        f" object_name, run_id) VALUES {values}"
    )


def logged_definitions(
    plpy: Plpy, kind: str, script_ids: list[int]
) -> dict[tuple[int, bool], list[Definition]]:
    """Definitions captured around each script: {(script id, ispremigration): [...]}, in order."""
    if not script_ids:
        return {}
    rows = plpy.execute(
        plpy.prepare(
            f"""SELECT scriptid, ispremigration, object_kind, object_name, commstat
            FROM {LOG_TABLES[kind]}
            WHERE scriptid = ANY ($1) AND ispremigration IS NOT NULL AND run_id = (
                SELECT max(l.run_id) FROM {LOG_TABLES[kind]} AS l
                WHERE l.scriptid = {LOG_TABLES[kind]}.scriptid AND l.ispremigration IS NOT NULL)
            ORDER BY id""",
            ["int4[]"],
        ),
        [script_ids],
    )
    found: dict[tuple[int, bool], list[Definition]] = {}
    for r in rows:
        found.setdefault((r["scriptid"], r["ispremigration"]), []).append(
            Definition(r["object_kind"], r["object_name"], r["commstat"])
        )
    return found


def template_definitions(
    dblink: Dblink, clusters: Clusters, template: Tenant, schemas: str, kinds: tuple[str, ...]
) -> dict[str, list[Definition]]:
    """The template's current definitions of each kind, read over one connection."""
    with dblink.session(place_conninfo(clusters, template.place)) as conn:
        return {
            kind: [
                Definition(r["kind"], r["name"], r["definition"])
                for r in dblink.query(
                    conn, definitions_query(kind, schemas, text=True), DEFINITION_COLUMNS
                )
            ]
            for kind in kinds
        }


# ------------------------------------------------ around each script (migrations)


@dataclass(frozen=True)
class SyncPlan:
    """How routines and views follow the template around each script.

    The template's are captured before and after each script inside its
    transaction (``capture``); a tenant gets the captured definitions applied
    before and after the same script inside its own transaction (``logged``,
    keyed by (script id, before?) then kind), so the sync is atomic with the
    script and a replay sees each step as the template had it.

    Schema tenants: ``template_schema`` names the template schema; its
    definitions are captured bare (admmgt_plpy._definitions), and a tenant's
    plan (:meth:`at`) makes them for the tenant's schema.
    """

    schemas: str
    capture: bool = False
    logged: dict[tuple[int, bool], dict[str, list[Definition]]] = field(default_factory=dict)
    template_schema: str | None = None  # schema tenants: the template schema
    schema: str | None = None  # schema tenants: the tenant's schema (see at())

    @classmethod
    def for_tenants(
        cls, plpy: Plpy, schemas: str, script_ids: list[int], template_schema: str | None = None
    ) -> SyncPlan:
        logged: dict[tuple[int, bool], dict[str, list[Definition]]] = {}
        for kind in KINDS:
            for key, defs in logged_definitions(plpy, kind, script_ids).items():
                logged.setdefault(key, {})[kind] = defs
        return cls(schemas, logged=logged, template_schema=template_schema)

    def at(self, tenant: Tenant) -> SyncPlan:
        """The plan for one tenant: for a schema tenant, its schema's."""
        if self.template_schema is None or not tenant.is_schema:
            return self
        return replace(self, schema=tenant.database)

    def has_work(self, script_id: int) -> bool:
        """Whether anything is captured or applied around ``script_id``."""
        return self.capture or any(
            any(self.logged.get((script_id, before), {}).values()) for before in (True, False)
        )


def follow_template(conn: str, sync: SyncPlan, script_id: int, before: bool) -> Fragment:
    """Job fragment: capture (template) or apply (tenant) the definitions at one point.

    It runs inside the script's own remote transaction, opened by the caller
    (_migration: _transaction.in_transaction; a script whose SyncPlan has
    nothing to do around it goes as one query, _transaction.in_one_trip,
    without calling this), so the sync commits or rolls back with the script.
    """
    found: dict[str, list[Definition]] = {}
    template = sync.template_schema
    for kind in KINDS:
        if sync.capture:
            if template is None:
                found[kind] = yield from read_definitions(conn, kind, sync.schemas)
            else:
                query = schema_definitions_query(kind, template, text=True)
                rows = yield Run(conn, query, TEMPLATE_COLUMNS)
                found[kind] = [template_definition(r).definition for r in rows]
            continue
        wanted = sync.logged.get((script_id, before), {}).get(kind)
        if not wanted:
            continue
        if template is None:
            current = yield from read_fingerprints(conn, kind, sync.schemas)
        else:
            schema = sync.schema or template
            wanted = [TemplateDefinition.of(d).for_schema(template, schema) for d in wanted]
            query = schema_definitions_query(kind, schema, text=False)
            rows = yield Run(conn, query, DEFINITION_COLUMNS)
            current = {r["name"]: (r["kind"], r["definition"]) for r in rows}
        yield from sync_into(conn, wanted, current)
    return found


OPERATIONS = {"routines": "refresh_stored_procedures", "views": "refresh_views"}


def refresh(
    plpy: Plpy,
    kind: str,
    *,
    separatedb: int,
    scriptid: int | None,
    drop_orphans: bool,
    raise_failure: bool = True,
) -> None:
    """Copy the template's routines (or views) to every created, updating tenant.

    The one path of refresh_stored_procedures and refresh_views (and of the
    proof of concept's refesh_* aliases, which call the same SQL bodies)."""
    with failures_raised(plpy, OPERATIONS[kind], raise_failure):
        if mode_of(separatedb) == SCHEMA_MODE:
            refresh_schemas(plpy, kind, scriptid=scriptid, drop_orphans=drop_orphans)
        else:
            _refresh(plpy, kind, scriptid=scriptid, drop_orphans=drop_orphans)


def _refresh(plpy: Plpy, kind: str, *, scriptid: int | None, drop_orphans: bool) -> None:
    operation = OPERATIONS[kind]
    with fleet_run(plpy, operation, lock="sync") as run:
        settings = run.settings
        template, *copies = templates(plpy)
        schemas = schemas_expression(settings.sync_schemas)
        try:
            wanted = template_definitions(run.dblink, run.clusters, template, schemas, (kind,))[
                kind
            ]
        except RemoteError as exc:
            raise AdmmgtError(
                f'{operation}: reading the template "{template.database}" failed ({exc.describe()})'
            ) from None
        tenants = copies + updating_tenants(plpy)  # the other clusters' templates too
        recorder = run.start(
            {"scriptid": scriptid, "drop_orphans": drop_orphans},
            words={"ok": "updated", "noop": "already in sync"},
        )
        log_definitions(plpy, recorder, kind, wanted, scriptid, None)
        plpy.notice(
            f"{operation}: the template has {len(wanted)} {NOUNS[kind]}(s) in the synced "
            f"schemas; {len(tenants)} tenant(s) to check"
        )
        job = partial(
            refresh_one,
            kind=kind,
            wanted=wanted,
            schemas=schemas,
            drop_orphans=drop_orphans,
            clusters=run.clusters,
            settings=settings,
        )
        run.wave(tenants, job, lambda outcome, _ms: outcome.message, registry=last_error)
        run.end()  # the summary; failures_raised (the caller) raises ZA001 if asked


def last_error(tenant: Tenant, outcome: Outcome) -> str:
    """A tenant's row after its sync: the error if it failed, else none."""
    failed = outcome.outcome == "failed"
    return registry_update(tenant.id, error=outcome.message if failed else None, touch=False)


def refresh_one(
    tenant: Tenant,
    kind: str,
    wanted: list[Definition],
    schemas: str,
    drop_orphans: bool,
    clusters: Clusters,
    settings: Settings,
) -> Job:
    """Job: make one database tenant's routines (or views) the template's."""
    query = definitions_query(kind, schemas, text=False)
    return (yield from sync_tenant(tenant, kind, wanted, query, drop_orphans, clusters, settings))


def sync_tenant(
    tenant: Tenant,
    kind: str,
    wanted: list[Definition],
    fingerprints: str,
    drop_orphans: bool,
    clusters: Clusters,
    settings: Settings,
) -> Job:
    """Job: ``wanted`` made true at the tenant's place in one transaction;
    ``fingerprints`` is the query of its current definitions' md5s
    (:data:`DEFINITION_COLUMNS`), read in that transaction."""
    noun = NOUNS[kind]
    conn = yield Connect(place_conninfo(clusters, tenant.place))

    def body() -> Fragment:
        rows = yield Run(conn, fingerprints, DEFINITION_COLUMNS)
        current = {r["name"]: (r["kind"], r["definition"]) for r in rows}
        changed = yield from sync_into(conn, wanted, current)
        names = {d.name for d in wanted}
        orphans = [Definition(k, n, "") for n, (k, _) in current.items() if n not in names]
        if drop_orphans:
            for orphan in orphans:
                yield Run(conn, orphan.drop)
        return changed, orphans

    try:
        # lock_timeout, and a lock timeout or deadlock retried with backoff
        # (lock_retries, retry_backoff_ms), as every remote transaction is.
        changed, orphans = yield from in_transaction(conn, settings, body)
    except TransactionFailed as failed:
        exc = failed.error
        tries = f" after {failed.attempts} tries" if failed.attempts > 1 else ""
        held = f"{describe_blockers(failed.blockers)}; " if failed.locked else ""
        name = tenant.label if tenant.is_schema else tenant.database
        return Outcome.failed(
            exc,
            (
                f'tenant "{name}": {noun} sync failed{tries} ({held}{exc.describe()});'
                " nothing was changed there; fix the tenant or hold it back with updateflag = false"
            ),
        )
    parts = []
    if changed:
        parts.append(
            f"{len(changed)} {noun}(s) updated: {', '.join(changed[:5])}"
            + (" ..." if len(changed) > 5 else "")
        )
    if orphans:
        listed = ", ".join(o.name for o in orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        parts.append(
            f"{len(orphans)} orphan(s) {'dropped' if drop_orphans else 'kept'}: {listed}"
            + ("" if drop_orphans else " (not in the template; t_drop_orphans => true drops them)")
        )
    details = {"changed": changed, "orphans": [o.name for o in orphans]}
    if not parts:
        return Outcome("noop", "already in sync", details=details)
    return Outcome("ok", "; ".join(parts), details=details)


# ------------------------------------------------------------ schema tenants


def template_schema_definitions(
    dblink: Dblink, clusters: Clusters, template: Tenant, kinds: tuple[str, ...] = KINDS
) -> dict[str, list[TemplateDefinition]]:
    """The template schema's definitions of each kind, bare, read over one
    connection whose search_path is the template schema."""
    with dblink.session(place_conninfo(clusters, template.place)) as conn:
        return {
            kind: [
                template_definition(r)
                for r in dblink.query(
                    conn,
                    schema_definitions_query(kind, template.database, text=True),
                    TEMPLATE_COLUMNS,
                )
            ]
            for kind in kinds
        }


def template_schema_problems(
    dblink: Dblink, clusters: Clusters, template: Tenant, kinds: tuple[str, ...] = KINDS
) -> list[str]:
    """Why routines or views of the template schema cannot be made in a tenant
    schema, each naming the object and the fix (empty: none): for a check
    before a run touches anything."""
    found = template_schema_definitions(dblink, clusters, template, kinds)
    return refusals(template.database, [t for kind in kinds for t in found[kind]])


def refresh_schemas(plpy: Plpy, kind: str, *, scriptid: int | None, drop_orphans: bool) -> None:
    """refresh_stored_procedures(0) / refresh_views(0): the template schema's
    routines (or views) made in every created, updating schema tenant, one
    transaction per schema, the other clusters' template schemas first."""
    operation = OPERATIONS[kind]
    with fleet_run(plpy, operation, lock="sync") as run:
        home, *copies = templates(plpy, SCHEMA_MODE)
        template = home.database
        try:
            found = template_schema_definitions(run.dblink, run.clusters, home, (kind,))[kind]
        except RemoteError as exc:
            raise AdmmgtError(
                f'{operation}(0): reading the template schema "{home.label}" failed '
                f"({exc.describe()})",
                hint="Check that the host database and the template schema exist "
                "(admmgt.schema_hosts, vendor_db_settings); nothing was changed.",
            ) from None
        refuse(operation, home.label, refusals(template, found))
        tenants = copies + updating_tenants(plpy, mode=SCHEMA_MODE)
        recorder = run.start(
            {"scriptid": scriptid, "drop_orphans": drop_orphans, "separatedb": SCHEMA_MODE},
            words={"ok": "updated", "noop": "already in sync"},
        )
        log_definitions(plpy, recorder, kind, [t.definition for t in found], scriptid, None)
        plpy.notice(
            f'{operation}: the template schema "{home.label}" has {len(found)} {NOUNS[kind]}(s); '
            f"{len(tenants)} schema tenant(s) to check"
        )
        job = partial(
            refresh_schema,
            kind=kind,
            found=found,
            template=template,
            drop_orphans=drop_orphans,
            clusters=run.clusters,
            settings=run.settings,
        )
        run.wave(tenants, job, lambda outcome, _ms: outcome.message, registry=last_error)
        run.end()  # the summary; failures_raised (the caller) raises ZA001 if asked


def refresh_schema(
    tenant: Tenant,
    kind: str,
    found: list[TemplateDefinition],
    template: str,
    drop_orphans: bool,
    clusters: Clusters,
    settings: Settings,
) -> Job:
    """Job: one schema tenant's routines (or views) made the template schema's."""
    schema = tenant.database
    wanted = [t.for_schema(template, schema) for t in found]
    query = schema_definitions_query(kind, schema, text=False)
    return (yield from sync_tenant(tenant, kind, wanted, query, drop_orphans, clusters, settings))
