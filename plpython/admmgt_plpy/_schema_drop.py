"""drop_schema: a schema tenant renamed away and its role dropped (issue 16).

As drop_database archives a database, drop_schema keeps the schema, renamed
to ``<schema>_dropped_<id>``, and drops the tenant role create_schema made
for it, in one transaction of the host; then the registry row is marked
deleted. docs/schema-tenants.md, Creating schema tenants.
"""

from __future__ import annotations

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import fleet_run
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._registry import (
    SCHEMA_MODE,
    Place,
    Tenant,
    place_conninfo,
    registered,
    registry_update,
    schema_host,
)
from admmgt_plpy._remote import RemoteError
from admmgt_plpy._schemas import role_marker, schema_settings
from admmgt_plpy._types import APPLIED, Plpy


def dropped_name(schema: str, tenant_id: int) -> str:
    """What a dropped tenant's schema is renamed to: ``<schema>_dropped_<id>``,
    the schema cut (at a character) so that the name fits in 63 bytes."""
    suffix = f"_dropped_{tenant_id}"
    head = schema
    while len((head + suffix).encode("utf-8")) > 63:
        head = head[:-1]
    return head + suffix


def drop_schema(plpy: Plpy, *, dbname: str, drop_role: bool = True) -> None:
    """Remove a schema tenant: rename its schema to <schema>_dropped_<id> (kept,
    as drop_database archives), drop the tenant role admmgt made for it (with
    ``drop_role``), and mark its registry row deleted; one host transaction."""
    with fleet_run(
        plpy,
        "drop_schema",
        lock="create_database",
        lock_name="create_database/drop_schema",
        read_settings=False,
    ) as run:
        row = registered(plpy, dbname)
        if row["separatedb"] != SCHEMA_MODE:
            raise AdmmgtError(
                f'"{row["dbname"]}" is a database tenant; drop_schema removes schema tenants',
                hint=f"CALL admmgt.drop_database({quote_literal(row['dbname'])}, 'archive');",
            )
        if row["istemplate"]:
            raise AdmmgtError(
                f'"{row["dbname"]}" is the template schema; drop_schema refuses it',
                hint="Register another template schema first, then set istemplate = false.",
            )
        cluster = row["cluster_name"] or "local"
        tenant = Tenant(row["id"], row["dbname"], cluster, None, SCHEMA_MODE,
                        schema_host(plpy, cluster))  # fmt: skip
        if row["status"] != APPLIED or tenant.host is None:
            plpy.execute(registry_update(tenant.id, deleted=True))
            plpy.notice(
                f'drop_schema: schema tenant "{tenant.database}" was never created (status '
                f"{row['status']}); marked deleted"
            )
            return
        own = schema_settings(plpy)
        schema, host = tenant.database, tenant.host
        target = dropped_name(schema, tenant.id)
        role = own.role(schema)
        dblink = run.dblink
        with dblink.session(place_conninfo(run.clusters, Place(cluster, host))) as conn:
            found = dblink.query(
                conn,
                "SELECT (SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = "
                f"{quote_literal(schema)})::int AS schema, (SELECT count(*) FROM "
                f"pg_catalog.pg_roles WHERE rolname = {quote_literal(role)} AND "
                f"shobj_description(oid, 'pg_authid') = {quote_literal(role_marker(schema, host))}"
                ")::int AS role",
                "schema int, role int",
            )[0]
            if not found["schema"]:
                raise AdmmgtError(
                    f'drop_schema: schema "{schema}" does not exist in database "{host}"; '
                    "nothing was changed",
                    hint="If it is gone for good, mark the row deleted: UPDATE "
                    "admmgt.vendor_db_settings SET deleted = true, deletedon = now() WHERE id = "
                    f"{tenant.id};",
                )
            statements = [
                f"ALTER SCHEMA {quote_ident(schema)} RENAME TO {quote_ident(target)}",
                f"COMMENT ON SCHEMA {quote_ident(target)} IS "
                + quote_literal(f"admmgt: schema tenant {tenant.id} ({schema}), dropped"),
            ]
            dropped_role = bool(drop_role and found["role"])
            if dropped_role:
                statements += [
                    f"DROP OWNED BY {quote_ident(role)}",
                    f"DROP ROLE {quote_ident(role)}",
                ]
            try:
                dblink.query(
                    conn, "BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT"
                )  # one transaction: all or nothing
            except RemoteError as exc:
                raise AdmmgtError(
                    f'drop_schema "{tenant.label}" failed ({exc.describe()}); nothing was changed',
                    hint="A lock held by another session is the usual cause: retry.",
                ) from None
        plpy.execute(registry_update(tenant.id, deleted=True, archived_as=target))
    plpy.notice(
        f'drop_schema: schema "{schema}" in database "{host}" renamed to "{target}"'
        + (f' and its role "{role}" dropped' if dropped_role else "")
        + "; its registry row is marked deleted"
    )
