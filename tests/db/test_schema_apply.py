"""applyScripts on schema tenants (issue 16): applyScripts(0) and
applyScripts(t_separatedb => 0), beside database tenants."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from admmgt.cli import main
from admmgt_plpy import _history
from tests.db import scripts as s
from tests.db.fleet import (
    Notices,
    SchemaFleet,
    call,
    called,
    history,
    make_fleet,
    make_schema_fleet,
)

Conn = psycopg.Connection[Any]


def apply(admin: Conn, *args: Any, fails: bool = False) -> list[str]:
    """applyScripts(*args)'s NOTICE lines; ``fails``: it must end with ZA001."""
    return called(admin, "applyscripts", *args, fails=fails)


def script_row(admin: Conn, script_id: int) -> tuple[Any, ...]:
    row = admin.execute(
        "SELECT status, last_error, checksum FROM admmgt.scripts WHERE id = %s", (script_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def schema_rows(admin: Conn) -> dict[str, tuple[Any, ...]]:
    """dbname -> (scriptversion, last_error) of every schema tenant and template schema."""
    rows = admin.execute(
        "SELECT dbname, scriptversion, last_error FROM admmgt.vendor_db_settings"
        " WHERE separatedb = 0 AND NOT deleted"
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def schema_history(fleet: SchemaFleet, schema: str) -> list[tuple[int, str]]:
    """(script_id, action) of <schema>.admmgt_history, for any schema name."""
    with fleet.connect() as conn:
        table = sql.Identifier(schema, "admmgt_history")
        rows = conn.execute(sql.SQL("SELECT script_id, action FROM {} ORDER BY id").format(table))
        return [(r[0], r[1]) for r in rows]


def checksums(conn: Conn, table: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT checksum FROM {table}")}


def orders_script(admin: Conn, script_id: int = 1) -> None:
    """A table, and a raw step that names it bare (as schema tenants need)."""
    s.script(admin, script_id, "orders")
    s.table(admin, script_id, "orders", [s.ID, ("note", "text")])
    s.step(admin, script_id, 1, "CREATE TABLE raw_notes (id int)")


def test_done_when_fifty_schema_and_twenty_database_tenants_side_by_side(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs = make_fleet(cluster_dsn, admin, tenant_prefix, 20)
    schemas = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 50)
    broken = schemas.tenants[7]
    with schemas.connect() as conn:  # collides with the script's table in one schema
        conn.execute(sql.SQL("CREATE TABLE {}.orders (x int)").format(sql.Identifier(broken)))
    orders_script(admin)

    # Database tenants first: the script waits for the schema tenants to be applied.
    lines = apply(admin, 1)
    assert lines[0].startswith(f"template {dbs.template}: script 1 applied in ")
    assert all(dbs.history(db) == [(1, "apply")] for db in dbs.databases)
    assert script_row(admin, 1)[0] == 1
    assert any("stays ready (status 1) until 51 schema tenant(s)" in x for x in lines), lines
    assert all(schemas.history(x) == [] for x in schemas.schemas)

    # applyScripts(0): the template schema first, then each schema tenant
    # atomically; the broken one fails alone.
    lines = apply(admin, 0, fails=True)
    assert lines[0].startswith(f"template {schemas.host}.mgttest: script 1 applied in "), lines
    failed = [x for x in lines if "FAILED" in x]
    assert len(failed) == 1, failed
    assert (
        f"{schemas.host}.{broken}: FAILED: script 1 failed at step 2 (create_table " in (failed[0])
    )
    assert 'relation "orders" already exists' in failed[0]
    for schema in schemas.schemas:
        if schema == broken:
            assert schemas.history(schema) == []
            assert not schemas.has_table(schema, "raw_notes")
        else:
            assert schemas.history(schema) == [(1, "apply")], schema
            assert schemas.has_table(schema, "orders"), schema
            # the raw step ran under the tenant's search_path: its table is there
            assert schemas.has_table(schema, "raw_notes"), schema
    registry = schema_rows(admin)
    assert registry[broken][0] is None
    assert 'relation "orders" already exists' in registry[broken][1]
    assert {v[0] for k, v in registry.items() if k != broken} == {1}
    assert script_row(admin, 1)[0] == 1  # one schema tenant still lacks it
    with schemas.connect() as conn:  # nothing landed in the host's public schema
        assert conn.execute("SELECT to_regclass('public.raw_notes')").fetchone() == (None,)

    # The fix, then a re-run: the broken tenant gets it; the script is applied.
    with schemas.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE {}.orders").format(sql.Identifier(broken)))
    admin.execute("CALL admmgt.applyScripts(t_separatedb => 0)")
    assert schemas.history(broken) == [(1, "apply")]
    assert {v for v in schema_rows(admin).values()} == {(1, None)}
    status, error, checksum = script_row(admin, 1)
    assert (status, error) == (2, None)

    # Every history records the script's (template) checksum, in both modes.
    with schemas.connect() as conn:
        for schema in schemas.schemas:
            assert checksums(conn, _history.history_table(schema)) == {checksum}, schema
    for db in dbs.databases:
        with dbs.connect(db) as conn:
            assert checksums(conn, "admmgt.script_history") == {checksum}
    # A no-op knows from the registry alone, per mode.
    assert apply(admin, 0) == [
        "applyScripts: nothing to apply; template schema and all 50 updating schema tenants "
        "are at script 1"
    ]


def hostile_fleet(cluster_dsn: str, admin: Conn, prefix: str) -> tuple[SchemaFleet, list[str]]:
    """A schema fleet whose tenants have names with a quote, a space, upper case."""
    fleet = make_schema_fleet(cluster_dsn, admin, prefix, 1)
    names = [f'{prefix}O"Brien & Co', f"{prefix}Big Corp", f"{prefix}x;drop"]
    with fleet.connect() as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name.lower())))
    admin.cursor().executemany(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status, separatedb) VALUES (%s, 2, 0)",
        [(n,) for n in names],
    )
    return fleet, [n.lower() for n in names]


def test_hostile_schema_names_and_no_database_template(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet, hostile = hostile_fleet(cluster_dsn, admin, tenant_prefix)
    orders_script(admin)
    s.script(admin, 2, "an index")
    admin.execute(
        "INSERT INTO admmgt.script_indexes (scriptid, tableid, columnnames, status)"
        " SELECT 2, id, ARRAY['note'], 1 FROM admmgt.script_tables WHERE scriptid = 1"
    )
    lines = apply(admin, 0)  # no database template is registered, none is needed
    assert lines[0].startswith(f"template {fleet.host}.mgttest: scripts 1, 2 applied"), lines
    for schema in [*fleet.schemas, *hostile]:
        assert schema_history(fleet, schema) == [(1, "apply"), (2, "apply")], schema
        assert fleet.has_table(schema, "orders"), schema
        assert fleet.has_table(schema, "raw_notes"), schema
    with fleet.connect() as conn:
        indexed = conn.execute(
            "SELECT n.nspname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE c.relname = 'orders' AND NOT i.indisprimary"
        ).fetchall()
    assert sorted(r[0] for r in indexed) == sorted([*fleet.schemas, *hostile])
    assert script_row(admin, 1)[0] == 2 and script_row(admin, 2)[0] == 2


def test_a_script_naming_another_schema_is_refused_before_the_template_schema(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    s.script(admin, 1, "elsewhere")
    s.table(admin, 1, "orders", [s.ID])
    s.table(admin, 1, "audit", [s.ID], schema="public")
    lines = apply(admin, 0, fails=True)
    assert any(
        'script_tables row 2, schemaname: schema "public" is not the template schema "mgttest"'
        in line
        for line in lines
    ), lines
    status, error, _ = script_row(admin, 1)
    assert status == 3
    assert error.startswith('cannot be applied to schema tenants (template schema "mgttest")')
    assert all(fleet.history(x) == [] for x in fleet.schemas)
    assert not fleet.has_table("mgttest", "orders")


def test_a_dry_run_in_schema_mode_plans_the_template_schema_and_its_tenants(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 3)
    orders_script(admin)
    notices = Notices(admin)
    admin.execute("CALL admmgt.applyScripts(0, dry_run => true, t_execute => true)")
    lines = notices.take()
    assert lines[0].startswith("script 1 (orders), 3 statements")
    assert any(x.startswith("applyScripts (hard dry run): script 1:") for x in lines), lines
    plan = f"applyScripts (dry run): would apply script 1 to template {fleet.host}.mgttest "
    assert any(x.startswith(plan + "first, then to 3 tenant(s)") for x in lines), lines
    assert all(fleet.history(x) == [] for x in fleet.schemas)
    assert not fleet.has_table("mgttest", "orders")


def test_a_database_fleet_is_untouched_by_a_schema_run(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs = make_fleet(cluster_dsn, admin, tenant_prefix, 2)
    schemas = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    orders_script(admin)
    lines = apply(admin, 0)
    assert any("stays ready (status 1) until 3 database tenant(s)" in x for x in lines), lines
    assert all(schemas.history(x) == [(1, "apply")] for x in schemas.schemas)
    for db in dbs.databases:
        with dbs.connect(db) as conn:
            assert history(conn) == []
    apply(admin, 1)
    assert script_row(admin, 1)[0] == 2


def test_a_raw_step_naming_the_template_schema_is_refused_before_the_template(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID])
    s.step(admin, 1, 1, "INSERT INTO orders\nSELECT * FROM MgtTest.orders")
    lines = apply(admin, 0, fails=True)
    status, error, _ = script_row(admin, 1)
    assert status == 3
    assert error == (
        'cannot be applied to schema tenants (template schema "mgttest"): step 3 (raw SQL '
        'step): raw SQL names the template\'s schema "mgttest" (MgtTest.orders at line 2); '
        "schema tenants run it with search_path set to their own schema: write orders; "
        "nothing was applied"
    )
    assert any(error in line for line in lines), lines
    assert all(fleet.history(x) == [] for x in fleet.schemas)
    assert not fleet.has_table("mgttest", "orders")
    # The same script is fine once it names the table bare.
    admin.execute(
        "UPDATE admmgt.script_steps SET sqltext = 'INSERT INTO orders DEFAULT VALUES'"
        " WHERE scriptid = 1"
    )
    admin.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = 1")
    apply(admin, 0)
    with fleet.connect() as conn:
        for schema in fleet.schemas:
            table = sql.Identifier(schema, "orders")
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
            assert count == (1,), schema  # each tenant's own table got the row


def test_replay_brings_a_held_back_schema_tenant_to_the_template_schemas_script(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    held = fleet.tenants[1]
    admin.execute(
        "UPDATE admmgt.vendor_db_settings SET updateflag = false WHERE dbname = %s", (held,)
    )
    orders_script(admin)
    apply(admin, 0)
    assert fleet.history(fleet.tenants[0]) == [(1, "apply")]
    assert fleet.history(held) == []
    with pytest.raises(psycopg.Error, match=f'"{held}" is a schema tenant, and t_separatedb is 1'):
        call(admin, "replayscripts", 1, held, 1)
    call(admin, "replayscripts", 0, held, 1)
    assert fleet.history(held) == [(1, "apply")]
    assert fleet.has_table(held, "orders") and fleet.has_table(held, "raw_notes")
    assert schema_rows(admin)[held] == (1, None)


def test_rollback_undoes_the_script_in_schema_tenants_too(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    dbs = make_fleet(cluster_dsn, admin, tenant_prefix, 1)
    schemas = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 1)
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID])
    apply(admin, 1)
    apply(admin, 0)
    call(admin, "rollbackscript", 1)
    assert dbs.history(dbs.template) == [(1, "apply"), (1, "rollback")]
    assert schemas.history(schemas.template) == [(1, "apply"), (1, "rollback")]
    assert schemas.history(schemas.tenants[0]) == [(1, "apply"), (1, "rollback")]
    assert not schemas.has_table(schemas.tenants[0], "orders")
    assert script_row(admin, 1)[0] == 0


def test_baseline_records_a_schema_tenants_version_in_its_own_history(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 1)
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID])
    apply(admin, 0)
    legacy = f"{tenant_prefix}Legacy"  # its schema made by hand, as the script would
    with fleet.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(legacy.lower())))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint)").format(sql.Identifier(legacy.lower(), "orders"))
        )
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status, separatedb) VALUES (%s, 1, 0)",
        (legacy,),
    )
    call(admin, "baseline", legacy, 1)
    assert fleet.history(legacy.lower()) == [(1, "baseline")]
    assert schema_rows(admin)[legacy] == (1, None)
    with fleet.connect() as conn:  # nothing ran: the hand-made table is as it was
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (f'"{legacy.lower()}".orders',),
        ).fetchone() == (1,)


def test_the_cli_applies_to_schema_tenants_and_fleet_status_shows_their_place(
    cluster_dsn: str, admin: Conn, admin_dsn: str, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    broken = fleet.tenants[0]
    with fleet.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE {}.orders (x int)").format(sql.Identifier(broken)))
    orders_script(admin)
    runner = CliRunner()
    dry = runner.invoke(main, ["apply", "--schema-tenants", "--dry-run", "--dsn", admin_dsn])
    assert dry.exit_code == 0, dry.output
    assert all(fleet.history(x) == [] for x in fleet.schemas)
    result = runner.invoke(main, ["apply", "--schema-tenants", "--dsn", admin_dsn])
    assert result.exit_code == 1, result.output
    summary = result.stdout.splitlines()
    assert summary[0].endswith("applyScripts: failed (databases: 1 failed, 2 ok)"), summary
    assert summary[1].startswith(f"  failed: {broken}: ")
    assert fleet.history(fleet.tenants[1]) == [(1, "apply")]
    rows = admin.execute(
        "SELECT dbname, separatedb, place, size_bytes, scriptversion FROM admmgt.fleet_status"
        " ORDER BY id"
    ).fetchall()
    assert rows == [
        ("mgttest", 0, f"{fleet.host}.mgttest", None, 1),
        (broken, 0, f"{fleet.host}.{broken}", None, None),
        (fleet.tenants[1], 0, f"{fleet.host}.{fleet.tenants[1]}", None, 1),
    ]
    with fleet.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE {}.orders").format(sql.Identifier(broken)))
    replay = runner.invoke(main, ["replay", "--schema-tenants", broken, "1", "--dsn", admin_dsn])
    assert replay.exit_code == 0, replay.output
    assert fleet.history(broken) == [(1, "apply")]


def test_schema_tenants_share_connections_and_none_leaks_settings_to_the_next(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 12)
    admin.execute("UPDATE admmgt.settings SET value = '2' WHERE name = 'max_parallel'")
    s.script(admin, 1, "who ran me")
    # Each schema records the backend that ran its script, and what a session
    # setting was when it started: a raw step's SET (not LOCAL) outlives its
    # transaction, so a kept connection must not carry it to the next schema.
    s.step(
        admin,
        1,
        1,
        "CREATE TABLE who AS SELECT pg_backend_pid() AS pid,"
        " current_setting('application_name') AS app, current_schema() AS here",
    )
    s.step(admin, 1, 2, "SET application_name = 'leaked'")
    apply(admin, 0)
    with fleet.connect() as conn:
        rows = [
            conn.execute(
                sql.SQL("SELECT pid, app, here FROM {}").format(sql.Identifier(schema, "who"))
            ).fetchone()
            for schema in fleet.tenants
        ]
    assert all(r is not None for r in rows)
    pids = {r[0] for r in rows if r is not None}
    assert len(pids) <= 2, pids  # one connection per worker, not one per schema
    assert [r[2] for r in rows if r is not None] == fleet.tenants
    assert "leaked" not in {r[1] for r in rows if r is not None}


def test_a_locked_schema_tenant_is_retried_then_reported_and_the_others_go_on(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 3)
    s.script(admin, 1, "orders")
    table_id = s.table(admin, 1, "orders", [s.ID])
    apply(admin, 0)
    s.script(admin, 2, "a column")
    s.column(admin, table_id, 2, "extra", "int")
    for name, value in [("lock_timeout_ms", "100"), ("lock_retries", "2")]:
        admin.execute("UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name))
    locked = fleet.tenants[1]
    with fleet.connect() as holder:
        holder.execute("BEGIN")
        holder.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(locked, "orders")
            )
        )
        pid = holder.info.backend_pid
        lines = apply(admin, 0, fails=True)
        holder.execute("ROLLBACK")
    failure = next(line for line in lines if "FAILED" in line)
    assert f"/3] {fleet.host}.{locked}: FAILED: script 2 failed at step 1 (add_column " in (failure)
    assert "could not get a lock within lock_timeout after 3 tries (55P03" in failure
    assert f"retryable: a lock held by pid {pid} " in failure
    logged = admin.execute(
        "SELECT message FROM admmgt.run_log WHERE dbname = %s AND outcome = 'failed'", (locked,)
    ).fetchone()
    assert logged is not None
    assert logged[0].startswith(f'tenant "{fleet.host}.{locked}": script 2 failed')
    assert fleet.history(locked) == [(1, "apply")]
    assert schema_rows(admin)[locked][0] == 1
    for schema in (fleet.template, fleet.tenants[0], fleet.tenants[2]):
        assert fleet.history(schema) == [(1, "apply"), (2, "apply")]
    apply(admin, 0)  # the lock is gone: a plain re-run is the fix
    assert fleet.history(locked) == [(1, "apply"), (2, "apply")]
    assert script_row(admin, 2)[0] == 2
