"""Schema tenants end to end, through the proof of concept's calls only:
register, create_schema, applyScripts(0) beside applyScripts(1), a tenant
registered later, tenant roles, then promotion to a database of its own."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from tests.db import scripts as s
from tests.db.fleet import Hosted, dsn_of, make_fleet, schema_history
from tests.fix_db import connect

Conn = psycopg.Connection[Any]


def _status(admin: Conn, script_id: int) -> int:
    row = admin.execute("SELECT status FROM admmgt.scripts WHERE id = %s", (script_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _tables(host: Conn, schema: str) -> set[str]:
    rows = host.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (schema,),
    )
    return {r[0] for r in rows}


def test_from_registration_to_promotion_with_the_proof_of_concepts_calls(
    cluster_dsn: str,
    admin: Conn,
    tenant_prefix: str,
    hosted: Hosted,
) -> None:
    databases = make_fleet(cluster_dsn, admin, tenant_prefix, 2)
    first, second, third = (f"{tenant_prefix}s{i}" for i in range(3))
    hosted.register("mgttest", template=True)
    hosted.register(first, second, third)
    admin.execute("CALL admmgt.create_schema(t_roles => true)")
    assert hosted.rows() == {n: (2, None, None) for n in (first, second, third)}

    s.script(admin, 1)
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    admin.execute("CALL admmgt.applyScripts(0)")  # the proof of concept's form
    with hosted.connect() as host:
        for schema in ("mgttest", first, second, third):
            assert _tables(host, schema) == {"orders", "admmgt_history"}, schema
            assert schema_history(host, schema) == [(1, "apply")], schema
    assert _status(admin, 1) == 1  # the database tenants do not have it yet
    admin.execute("CALL admmgt.applyScripts(t_separatedb => 1)")
    assert _status(admin, 1) == 2
    for db in databases.databases:
        assert databases.history(db) == [(1, "apply")]

    # A tenant registered later is cloned at the template schema's version.
    late = f"{tenant_prefix}s9"
    hosted.register(late)
    admin.execute("CALL admmgt.create_schema(t_roles => true)")
    assert hosted.rows()[late] == (2, 1, None)
    with hosted.connect() as host:
        assert _tables(host, late) == {"orders", "admmgt_history"}
        assert schema_history(host, late) == [(1, "apply")]
        # Each tenant's role reads its own rows and never another tenant's.
        for schema in (first, second):
            host.execute(
                sql.SQL("INSERT INTO {} (note) VALUES (%s), (%s)").format(
                    sql.Identifier(schema, "orders")
                ),
                (f"{schema} one", f"{schema} two"),
            )
        host.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(f"{tenant_prefix}r_{second}")))
        own = host.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(second, "orders"))
        )
        assert own.fetchone() == (2,)
        with pytest.raises(errors.InsufficientPrivilege):
            host.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(first, "orders")))
        host.execute("RESET ROLE")

    # Promotion: the first tenant becomes a database tenant with every row.
    admin.execute("CALL admmgt.promote_tenant(%s)", (first,))
    row = admin.execute(
        "SELECT separatedb, scriptversion, status FROM admmgt.vendor_db_settings"
        " WHERE dbname = %s AND NOT deleted",
        (first,),
    ).fetchone()
    assert row == (1, 1, 2)
    dsn = dsn_of(admin, first)
    with connect(dsn) as promoted:
        notes = promoted.execute("SELECT note FROM mgttest.orders ORDER BY id").fetchall()
        assert notes == [(f"{first} one",), (f"{first} two",)]
        promoted.execute("INSERT INTO mgttest.orders (note) VALUES ('after')")  # identity goes on
    with hosted.connect() as host:
        found = host.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s", (first,))
        assert found.fetchall() == []  # renamed <schema>_promoted_<id>

    # The next script reaches it as a database tenant, and the rest as schemas.
    s.script(admin, 2)
    s.table(admin, 2, "invoices", [s.ID])
    admin.execute("CALL admmgt.applyScripts()")
    with connect(dsn) as promoted:
        assert promoted.execute("SELECT to_regclass('mgttest.invoices')").fetchone() != (None,)
    assert _status(admin, 2) == 1
    admin.execute("CALL admmgt.applyScripts(0)")
    assert _status(admin, 2) == 2
    with hosted.connect() as host:
        for schema in ("mgttest", second, third, late):
            assert _tables(host, schema) == {"orders", "invoices", "admmgt_history"}, schema
