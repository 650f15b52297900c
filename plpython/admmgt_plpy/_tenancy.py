"""Shared tables: the tenant key, its row-level security policy and tenant context.

Pure: SQL text only. The compiler (``_compile``) emits these statements for a
``script_tables`` row with ``tenantcolumn``/``tenanttype``; ``_rls_audit``
reads the same names back when it audits a database.

The setting every policy reads is named once, here: ``TENANT_SETTING``. It is
not configurable per table, because ``set_tenant_context`` must set the one
setting that every policy of the database compares with; and it is compiled
into each policy (and so into each script's checksum), so changing it would be
a migration, not a setting.

A policy reads the setting through a sub-select, ``(SELECT ...)``, which the
planner runs once per query as an InitPlan instead of once per row. ``NULLIF``
maps the empty string to NULL: once a transaction-local setting has ended, the
session reads it back as ``''``, not as unset, and an empty context must see
no rows rather than fail on ``''::bigint``.
"""

from __future__ import annotations

import re

from admmgt_plpy._errors import MetadataError
from admmgt_plpy._names import fold, qualified, quote_ident, quote_literal

__all__ = [
    "CONTEXT_FUNCTION",
    "POLICY_SUFFIX",
    "TENANT_SETTING",
    "check_tenant_type",
    "context_function_sql",
    "policy_sql",
    "rls_sql",
]

TENANT_SETTING = "app.current_tenant_id"
CONTEXT_FUNCTION = "set_tenant_context"
POLICY_SUFFIX = "tenant_isolation"

# Types a tenant key may have, as written in metadata -> as compiled.
_TENANT_TYPES = {
    "smallint": "smallint",
    "int2": "smallint",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "uuid": "uuid",
    "text": "text",
}
_VARCHAR = re.compile(r"^(?:varchar|character varying)\s*\(\s*([1-9][0-9]{0,6})\s*\)$")


def check_tenant_type(value: object, *, what: str) -> str:
    """The tenant key's type in canonical spelling, or MetadataError.

    An allow-list, not a pre-check: the type is cast to in every policy, so
    only scalar types that compare exactly and cast from text are accepted.
    """
    text = " ".join(value.split()) if isinstance(value, str) else None
    folded = fold(text) if text else None
    if folded is not None and folded in _TENANT_TYPES:
        return _TENANT_TYPES[folded]
    m = _VARCHAR.match(folded or "")
    if m is not None:
        return f"character varying({int(m.group(1))})"
    raise MetadataError(
        f"{what}: {value!r} is not a type for a tenant key; use smallint, integer, bigint, "
        "uuid, text or varchar(n)"
    )


def same_type(a: str, b: str) -> bool:
    """Whether two type spellings name the same tenant key type."""
    try:
        return check_tenant_type(a, what="") == check_tenant_type(b, what="")
    except MetadataError:
        return False


def current_tenant(datatype: str) -> str:
    """The typed tenant context, evaluated once per query; NULL when none is set."""
    return (
        f"(SELECT NULLIF(pg_catalog.current_setting({quote_literal(TENANT_SETTING)}, true), "
        f"'')::{datatype})"
    )


def rls_sql(schema: str, table: str) -> str:
    """Enable row-level security, and force it on the table's owner too."""
    return (
        f"ALTER TABLE {qualified(schema, table)} ENABLE ROW LEVEL SECURITY, "
        "FORCE ROW LEVEL SECURITY"
    )


def policy_sql(schema: str, table: str, policy: str, column: str, datatype: str) -> str:
    """One permissive policy for every command; WITH CHECK keeps writes in the tenant."""
    test = f"{quote_ident(column)} = {current_tenant(datatype)}"
    return (
        f"CREATE POLICY {quote_ident(policy)} ON {qualified(schema, table)} AS PERMISSIVE "
        f"FOR ALL TO PUBLIC USING ({test}) WITH CHECK ({test})"
    )


def context_function_sql(schema: str, datatype: str) -> str:
    """``<schema>.set_tenant_context(tenant_id, is_local DEFAULT true)`` for one key type.

    Transaction-local by default: with a pooling proxy (pgbouncer in
    transaction mode) the next client on the same server connection cannot
    inherit the tenant. A NULL tenant is refused rather than ignored.
    """
    body = (
        "BEGIN\n"
        "    IF tenant_id IS NULL THEN\n"
        f"        RAISE EXCEPTION '{CONTEXT_FUNCTION}: tenant_id is NULL'\n"
        "            USING HINT = 'Pass the id of the tenant whose rows this transaction "
        "may see.';\n"
        "    END IF;\n"
        f"    PERFORM pg_catalog.set_config({quote_literal(TENANT_SETTING)}, "
        "tenant_id::text, is_local);\n"
        "END\n"
    )
    return (
        f"CREATE OR REPLACE FUNCTION {qualified(schema, CONTEXT_FUNCTION)}"
        f"(tenant_id {datatype}, is_local boolean DEFAULT true) RETURNS void "
        f"LANGUAGE plpgsql AS $admmgt$\n{body}$admmgt$"
    )
