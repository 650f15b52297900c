"""Three defects of schema tenants a review proved (issue 16), each shown
failing before its fix: a template-qualified name in a string literal, session
state carried by a reused connection to the next schema tenant, and a raw step
refused for schema tenants marking failed a script database tenants have."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tests.db import scripts as s
from tests.db.fleet import make_fleet, make_schema_fleet
from tests.db.test_schema_apply import apply, schema_rows, script_row

Conn = psycopg.Connection[Any]


def one_worker(admin: Conn) -> None:
    admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'max_parallel'")


def test_a_nextval_of_the_template_schemas_sequence_is_refused_before_the_template(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID, ("note", "text")])
    s.step(admin, 1, 1, "CREATE SEQUENCE note_seq")
    # Run as written, every tenant's default would draw from mgttest.note_seq.
    s.step(
        admin,
        1,
        2,
        "ALTER TABLE orders ALTER COLUMN note SET DEFAULT nextval('mgttest.note_seq')::text",
    )
    lines = apply(admin, 0, fails=True)
    status, error, _ = script_row(admin, 1)
    assert status == 3  # no database tenant has it: it touches no tenant
    assert error.startswith(
        'cannot be applied to schema tenants (template schema "mgttest"): step 4 (raw SQL '
        'step): raw SQL names the template\'s schema "mgttest" (mgttest.note_seq at line 1, '
        "in a string literal, which the server resolves as a name (nextval('...'), "
        "'...'::regclass, to_regclass, routine bodies)); schema tenants run it with "
        "search_path set to their own schema: write note_seq"
    ), error
    assert any(error in line for line in lines), lines
    for schema in fleet.schemas:  # the template schema was not touched either
        assert fleet.history(schema) == [], schema
        assert not fleet.has_table(schema, "orders"), schema
        assert not fleet.has_table(schema, "note_seq"), schema


def test_a_temporary_table_of_one_schema_tenant_is_gone_for_the_next(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 3)
    one_worker(admin)
    s.script(admin, 1, "scratch")
    s.step(admin, 1, 1, "CREATE TEMP TABLE scratch AS SELECT 1 AS x")
    s.step(admin, 1, 2, "CREATE TABLE done AS SELECT x, pg_backend_pid() AS pid FROM scratch")
    apply(admin, 0)
    pids = set()
    with fleet.connect() as conn:
        for schema in fleet.tenants:
            assert fleet.history(schema) == [(1, "apply")], schema
            table = sql.Identifier(schema, "done")
            row = conn.execute(sql.SQL("SELECT x, pid FROM {}").format(table)).fetchone()
            assert row is not None and row[0] == 1, schema
            pids.add(row[1])
    assert len(pids) == 1, pids  # one connection served all three: it was reused
    assert script_row(admin, 1)[:2] == (2, None)


def test_set_role_and_a_session_advisory_lock_do_not_reach_the_next_schema_tenant(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 3)
    role = f"{tenant_prefix}someone"
    admin.execute(sql.SQL("CREATE ROLE {} SUPERUSER NOLOGIN").format(sql.Identifier(role)))
    try:
        one_worker(admin)
        s.script(admin, 1, "session state")
        # What the session carried when the tenant's script started ...
        s.step(
            admin,
            1,
            1,
            "CREATE TABLE seen AS SELECT current_user::text AS who, pg_backend_pid() AS pid,"
            " (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid()) AS locks",
        )
        # ... then what it leaves: a session lock and a role (neither LOCAL).
        s.step(admin, 1, 2, "SELECT pg_catalog.pg_advisory_lock(4242)")
        s.step(admin, 1, 3, f"SET ROLE {role}")
        apply(admin, 0)
        with fleet.connect() as conn:
            rows = []
            for schema in fleet.tenants:
                table = sql.Identifier(schema, "seen")
                row = conn.execute(sql.SQL("SELECT who, pid, locks FROM {}").format(table))
                rows.append(row.fetchone())
            me = conn.execute("SELECT current_user::text").fetchone()
        assert me is not None
        assert len({r[1] for r in rows if r is not None}) == 1, rows  # one reused connection
        assert [(r[0], r[2]) for r in rows if r is not None] == [(me[0], 0)] * 3, rows
    finally:
        with fleet.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_schema_only_refusal_keeps_the_status_of_a_script_database_tenants_have(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs = make_fleet(cluster_dsn, admin, tenant_prefix, 2)
    schemas = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    s.script(admin, 1, "notes")
    s.table(admin, 1, "orders", [s.ID])
    s.step(admin, 1, 1, "CREATE TABLE mgttest.notes (id int)")  # fine in a database
    apply(admin, 1)
    assert all(dbs.history(db) == [(1, "apply")] for db in dbs.databases)
    assert script_row(admin, 1)[0] == 1  # waiting for the schema tenants

    lines = apply(admin, 0, fails=True)  # ZA001
    status, error, _ = script_row(admin, 1)
    assert status == 1, error  # not 3: the database tenants have it
    assert error.startswith(
        'script 1: cannot be applied to schema tenants (template schema "mgttest"): step 3 '
        '(raw SQL step): raw SQL names the template\'s schema "mgttest" (mgttest.notes at '
        "line 1); schema tenants run it with search_path set to their own schema: write "
        "notes; database tenants already have it, so its status stays as it is"
    ), error
    assert "CALL admmgt.repair_script(1, 'accept')" in error
    assert any(error in line for line in lines), lines
    for schema in schemas.schemas:
        assert schemas.history(schema) == [], schema
        assert not schemas.has_table(schema, "orders"), schema
    assert {v[0] for v in schema_rows(admin).values()} == {None}
    assert all(dbs.history(db) == [(1, "apply")] for db in dbs.databases)
    failed = admin.execute(
        "SELECT run_outcome FROM admmgt.run_history WHERE operation = 'applyScripts'"
        " ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    assert failed == ("failed",)
