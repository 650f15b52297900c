"""Shared tables (issue 17): row-level security and hash partitioning by tenant, as
metadata, on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors, sql

from admmgt.cli import main
from tests.db import scripts as s
from tests.db.fleet import Fleet, call
from tests.db.test_lifecycle import lifecycle, policy, tables_in

Conn = psycopg.Connection[Any]


def shared_table(
    admin: Conn,
    script_id: int,
    name: str,
    columns: list[tuple[Any, ...]],
    *,
    tenantcolumn: str = "tenant_id",
    tenanttype: str = "bigint",
    haspart: int = 0,
) -> int:
    table_id = s.table(admin, script_id, name, columns, haspart=haspart)
    admin.execute(
        "UPDATE admmgt.script_tables SET tenantcolumn = %s, tenanttype = %s WHERE id = %s",
        (tenantcolumn, tenanttype, table_id),
    )
    return table_id


def partition(
    admin: Conn,
    table_id: int,
    column: str,
    kind: str,
    value: str,
    sub: tuple[str, str, str] | None = None,
) -> None:
    """sub: (subpartcolumnname, subparttype, subpartvalue)."""
    admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
        " partvalue, subpartcolumnname, subparttype, subpartvalue)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            table_id,
            column,
            kind,
            value,
            *(sub or (None, None, None)),
        ),
    )


def drift(fleet: Fleet) -> list[tuple[Any, ...]]:
    return fleet.admin.execute(
        "SELECT dbname, object_kind, object_name, difference FROM admmgt.detect_drift()"
    ).fetchall()


def findings(fleet: Fleet, db: str | None = None) -> set[tuple[str, str]]:
    rows = fleet.admin.execute(
        "SELECT finding, object_name FROM admmgt.check_rls(%s)", (db,)
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


@pytest.fixture
def roles(fleet: Fleet, tenant_prefix: str) -> Iterator[dict[str, str]]:
    """Cluster-wide roles named after the test: an application role, a table owner and
    a role with BYPASSRLS; dropped after."""
    names = {k: f"{tenant_prefix}{k}" for k in ("app", "owner", "bypass")}
    fleet.admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names["app"])))
    fleet.admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names["owner"])))
    fleet.admin.execute(
        sql.SQL("CREATE ROLE {} NOLOGIN BYPASSRLS").format(sql.Identifier(names["bypass"]))
    )
    yield names
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    for name in names.values():
        fleet.admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        fleet.admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def notes_script(admin: Conn, script_id: int = 1) -> None:
    s.script(admin, script_id, "shared notes")
    shared_table(admin, script_id, "notes", [s.ID, ("body", "text")])


def grant_app(conn: Conn, role: str) -> None:
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA mgttest TO {}").format(sql.Identifier(role)))
    conn.execute(
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON mgttest.notes TO {}").format(
            sql.Identifier(role)
        )
    )


def test_a_tenant_context_sees_only_its_rows_and_cannot_write_anothers(
    fleet: Fleet, roles: dict[str, str]
) -> None:
    notes_script(fleet.admin)
    fleet.apply()
    db = fleet.tenants[0]
    with fleet.connect(db) as conn:
        grant_app(conn, roles["app"])
        # Rows of two tenants, written by the superuser admmgt connects as.
        conn.execute(
            "INSERT INTO mgttest.notes (tenant_id, body) VALUES (1, 'a1'), (1, 'a2'), (2, 'b1')"
        )
        app = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(roles["app"]))
        with conn.transaction():
            conn.execute(app)
            conn.execute("SELECT mgttest.set_tenant_context(1)")
            rows = conn.execute("SELECT body FROM mgttest.notes ORDER BY body").fetchall()
            assert rows == [("a1",), ("a2",)]
            conn.execute("INSERT INTO mgttest.notes (tenant_id, body) VALUES (1, 'a3')")
            # Another tenant's rows can neither be changed nor moved into.
            assert (
                conn.execute("UPDATE mgttest.notes SET body = 'x' WHERE tenant_id = 2").rowcount
                == 0
            )
        with (
            pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
            conn.transaction(),
        ):
            conn.execute(app)
            conn.execute("SELECT mgttest.set_tenant_context(1)")
            conn.execute("INSERT INTO mgttest.notes (tenant_id, body) VALUES (2, 'b2')")
        with (
            pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
            conn.transaction(),
        ):
            conn.execute(app)
            conn.execute("SELECT mgttest.set_tenant_context(1)")
            conn.execute("UPDATE mgttest.notes SET tenant_id = 2 WHERE body = 'a1'")
        # The context was transaction-local: the next transaction of the same session
        # (the next client of a pooled connection) sees nothing, and cannot insert.
        with conn.transaction():
            conn.execute(app)
            assert conn.execute("SELECT count(*) FROM mgttest.notes").fetchone() == (0,)
        with (
            pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
            conn.transaction(),
        ):
            conn.execute(app)
            conn.execute("INSERT INTO mgttest.notes (tenant_id, body) VALUES (1, 'x')")
        with pytest.raises(errors.RaiseException, match="tenant_id is NULL"):
            conn.execute("SELECT mgttest.set_tenant_context(NULL)")
        # Tenant 2, in a fresh session that never set a context before.
    with fleet.connect(db) as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(roles["app"])))
        assert conn.execute("SELECT count(*) FROM mgttest.notes").fetchone() == (0,)
        conn.execute("SELECT mgttest.set_tenant_context(2)")
        assert conn.execute("SELECT body FROM mgttest.notes").fetchall() == [("b1",)]


def test_force_closes_the_owners_bypass(fleet: Fleet, roles: dict[str, str]) -> None:
    notes_script(fleet.admin)
    fleet.apply()
    owner = sql.Identifier(roles["owner"])
    with fleet.connect(fleet.tenants[0]) as conn:
        conn.execute("INSERT INTO mgttest.notes (tenant_id, body) VALUES (1, 'a'), (2, 'b')")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA mgttest TO {}").format(owner))
        conn.execute(sql.SQL("ALTER TABLE mgttest.notes OWNER TO {}").format(owner))

        def owner_sees() -> int:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
                row = conn.execute("SELECT count(*) FROM mgttest.notes").fetchone()
                assert row is not None
                return int(row[0])

        assert owner_sees() == 0  # forced: the owner is bound by the policy too
        conn.execute("ALTER TABLE mgttest.notes NO FORCE ROW LEVEL SECURITY")
        assert owner_sees() == 2  # without FORCE the owner reads every tenant
        conn.execute("ALTER TABLE mgttest.notes FORCE ROW LEVEL SECURITY")
        conn.execute("ALTER TABLE mgttest.notes OWNER TO CURRENT_USER")


def test_check_rls_flags_what_would_leak_and_drift_sees_rls_changes(
    fleet: Fleet, roles: dict[str, str]
) -> None:
    notes_script(fleet.admin)
    fleet.apply()
    assert drift(fleet) == []
    tenant = fleet.tenants[0]
    before = findings(fleet, tenant)
    # The compiled table itself is clean.
    assert not [f for f in before if f[1] == "mgttest.notes"]
    assert ("bypassrls_role", roles["bypass"]) in before  # made by the fixture
    with fleet.connect(tenant) as conn:
        conn.execute("CREATE TABLE mgttest.handmade (tenant_id bigint, body text)")
        conn.execute("CREATE VIEW mgttest.all_notes AS SELECT * FROM mgttest.notes")
        conn.execute(
            "CREATE VIEW mgttest.own_notes WITH (security_invoker = true) AS"
            " SELECT * FROM mgttest.notes"
        )
        conn.execute("ALTER TABLE mgttest.notes NO FORCE ROW LEVEL SECURITY")
        # A policy calling a function that is not LEAKPROOF, on a table whose owner
        # has BYPASSRLS (which FORCE does not bind).
        conn.execute(
            "CREATE FUNCTION mgttest.is_mine(t bigint) RETURNS boolean LANGUAGE sql STABLE"
            " AS $$ SELECT t = current_setting('app.current_tenant_id', true)::bigint $$"
        )
        conn.execute("CREATE TABLE mgttest.leaky (tenant_id bigint NOT NULL)")
        conn.execute(
            "ALTER TABLE mgttest.leaky ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"
        )
        conn.execute("CREATE POLICY p ON mgttest.leaky USING (mgttest.is_mine(tenant_id))")
        conn.execute(
            sql.SQL("ALTER TABLE mgttest.leaky OWNER TO {}").format(sql.Identifier(roles["bypass"]))
        )
    found = findings(fleet, tenant)
    assert ("leaky_policy_function", "mgttest.is_mine(bigint)") in found
    assert ("owner_bypasses", "mgttest.leaky") in found
    assert not [f for f in found if f[1] == "mgttest.leaky" and f[0] != "owner_bypasses"]
    assert ("no_policy", "mgttest.handmade") in found
    assert ("not_forced", "mgttest.notes") in found
    assert ("view_not_invoker", "mgttest.all_notes") in found
    assert not [f for f in found if f[1] == "mgttest.own_notes"]
    # The whole fleet: the template is clean but for the cluster's role, reported once.
    everywhere = fleet.admin.execute(
        "SELECT dbname, finding, object_name FROM admmgt.check_rls()"
    ).fetchall()
    assert [r for r in everywhere if r[1] == "bypassrls_role" and r[2] == roles["bypass"]] != []
    assert len([r for r in everywhere if r[2] == roles["bypass"]]) == 1
    assert {(r[1], r[2]) for r in everywhere if r[0] == tenant} >= {
        ("no_policy", "mgttest.handmade"),
        ("not_forced", "mgttest.notes"),
    }
    assert not [r for r in everywhere if r[0] == fleet.template and r[1] != "bypassrls_role"]
    # Drift sees the forced flag that went away.
    changed = drift(fleet)
    assert (tenant, "table", "mgttest.notes", "different") in changed
    assert (tenant, "table", "mgttest.handmade", "extra") in changed
    # `admmgt status --rls` shows the findings and exits 1.
    runner = CliRunner()
    shown = runner.invoke(main, ["--dsn", fleet.admin.info.dsn, "status", "--rls", "--json"])
    assert shown.exit_code == 1, shown.output
    report = json.loads(shown.stdout)
    assert {"dbname": tenant, "finding": "no_policy", "object_name": "mgttest.handmade"} in [
        {k: r[k] for k in ("dbname", "finding", "object_name")} for r in report["rls"]
    ]
    plain = runner.invoke(main, ["--dsn", fleet.admin.info.dsn, "status", "--rls"])
    assert plain.exit_code == 1
    assert "no_policy" in plain.output and "mgttest.handmade" in plain.output
    assert runner.invoke(main, ["--dsn", fleet.admin.info.dsn, "status"]).exit_code == 0


def test_a_policy_dropped_by_hand_is_drift(fleet: Fleet) -> None:
    notes_script(fleet.admin)
    fleet.apply()
    with fleet.connect(fleet.tenants[1]) as conn:
        conn.execute("DROP POLICY notes_tenant_isolation ON mgttest.notes")
    assert (
        fleet.tenants[1],
        "policy",
        "mgttest.notes.notes_tenant_isolation",
        "missing",
    ) in drift(fleet)
    assert ("no_policy", "mgttest.notes") in findings(fleet, fleet.tenants[1])


def test_hash_partitioned_and_hash_sub_partitioned_tables_apply_take_rows_and_pass_drift(
    fleet: Fleet,
) -> None:
    s.script(fleet.admin, 1, "hash by tenant")
    accounts = shared_table(fleet.admin, 1, "accounts", [s.ID, ("name", "text")], haspart=1)
    partition(fleet.admin, accounts, "tenant_id", "hash", "4")
    events = shared_table(fleet.admin, 1, "events", [s.ID, ("happened_on", "date", 0)], haspart=1)
    partition(fleet.admin, events, "happened_on", "range", "month", ("tenant_id", "hash", "2"))
    orders = s.table(
        fleet.admin,
        1,
        "orders",
        [s.ID, ("region", "text", 0), ("customer", "bigint", 0)],
        haspart=1,
    )
    for region in ("eu", "us"):
        partition(fleet.admin, orders, "region", "list", region, ("customer", "hash", "3"))
    fleet.apply()
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.accounts") == {f"accounts_h{i}" for i in range(4)}
        assert fleet.children(db, "mgttest.orders_region_eu") == {
            f"orders_region_eu_h{i}" for i in range(3)
        }
    with fleet.connect(fleet.tenants[0]) as conn:
        conn.execute(
            "INSERT INTO mgttest.accounts (tenant_id, name)"
            " SELECT t, 'tenant ' || t FROM generate_series(1, 40) AS t"
        )
        conn.execute(
            "INSERT INTO mgttest.events (tenant_id, happened_on)"
            " SELECT t, (now() AT TIME ZONE 'UTC')::date FROM generate_series(1, 20) AS t"
        )
        conn.execute(
            "INSERT INTO mgttest.orders (region, customer)"
            " SELECT CASE WHEN c % 2 = 0 THEN 'eu' ELSE 'us' END, c"
            " FROM generate_series(1, 30) AS c"
        )
        used = conn.execute("SELECT count(DISTINCT tableoid) FROM mgttest.accounts").fetchone()
        assert used is not None and used[0] == 4  # 40 tenants spread over all 4
        with conn.transaction():
            conn.execute("SELECT mgttest.set_tenant_context(7)")
            # The superuser bypasses RLS; the partition pruned by the key is what is read.
            row = conn.execute(
                "SELECT tableoid::regclass::text FROM mgttest.accounts WHERE tenant_id = 7"
            ).fetchone()
            assert row is not None and row[0].startswith("mgttest.accounts_h")
        assert conn.execute("SELECT count(*) FROM mgttest.orders").fetchone() == (30,)
    assert drift(fleet) == []
    # Maintenance makes the next range children of events, each with its hash set.
    lines = fleet.maintain(numdays=40)
    assert not [line for line in lines if "FAILED" in line or "skipped" in line], lines
    for db in fleet.databases:
        months = fleet.children(db, "mgttest.events")
        assert len(months) >= 2
        for month in months:
            assert fleet.children(db, f"mgttest.{month}") == {f"{month}_h0", f"{month}_h1"}
    assert drift(fleet) == []
    assert (
        findings(fleet, fleet.tenants[0])
        & {
            ("no_policy", "mgttest.accounts"),
            ("no_policy", "mgttest.events"),
        }
        == set()
    )


def test_a_changed_modulus_is_refused_before_the_template_is_touched(fleet: Fleet) -> None:
    s.script(fleet.admin, 1, "hash by tenant")
    accounts = shared_table(fleet.admin, 1, "accounts", [s.ID], haspart=1)
    partition(fleet.admin, accounts, "tenant_id", "hash", "4")
    fleet.apply()
    fleet.admin.execute(
        "UPDATE admmgt.script_table_partitions SET partvalue = '8' WHERE tableid = %s",
        (accounts,),
    )
    s.script(fleet.admin, 2, "later")
    s.table(fleet.admin, 2, "later", [s.ID])
    with pytest.raises(psycopg.Error, match="applied scripts were changed"):
        call(fleet.admin, "applyscripts")
    for db in fleet.databases:
        assert fleet.children(db, "mgttest.accounts") == {f"accounts_h{i}" for i in range(4)}
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT to_regclass('mgttest.later')").fetchone() == (None,)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tenantcolumn", 'tenant_id"; DROP TABLE x; --', "is not a valid identifier"),
        ("tenantcolumn", "tenant id", "is not a valid identifier"),
        ("tenanttype", "bigint; DROP TABLE x", "is not a type for a tenant key"),
        ("tenanttype", "bigint) USING (true", "is not a type for a tenant key"),
        ("tenanttype", "int[]", "is not a type for a tenant key"),
    ],
)
def test_hostile_tenant_columns_and_types_are_refused_before_the_template_is_touched(
    fleet: Fleet, field: str, value: str, message: str
) -> None:
    s.script(fleet.admin, 1)
    table_id = shared_table(fleet.admin, 1, "notes", [s.ID])
    fleet.admin.execute(
        sql.SQL("UPDATE admmgt.script_tables SET {} = %s WHERE id = %s").format(
            sql.Identifier(field)
        ),
        (value, table_id),
    )
    with pytest.raises(psycopg.Error, match="script 1 cannot be compiled") as caught:
        call(fleet.admin, "applyscripts")
    assert f"script 1, script_tables row {table_id}, {field}" in str(caught.value)
    assert message in str(caught.value)
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'mgttest'"
            ).fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)


def test_rollback_drops_the_policies_and_the_table(fleet: Fleet) -> None:
    s.script(fleet.admin, 1, "plain")
    s.table(fleet.admin, 1, "plain", [s.ID])
    notes_script(fleet.admin, 2)
    fleet.apply()
    call(fleet.admin, "rollbackscript", 2)
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT to_regclass('mgttest.notes')").fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)
            assert conn.execute("SELECT to_regclass('mgttest.plain')").fetchone() != (None,)
    assert drift(fleet) == []


def test_a_held_back_tenant_replayed_gets_the_shared_table_as_the_template_has_it(
    fleet: Fleet,
) -> None:
    held = fleet.tenants[0]
    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET updateflag = false WHERE dbname = %s", (held,)
    )
    notes_script(fleet.admin)
    fleet.apply()
    with fleet.connect(held) as conn:
        assert conn.execute("SELECT to_regclass('mgttest.notes')").fetchone() == (None,)
    call(fleet.admin, "replayscripts", held, 1)
    assert drift(fleet) == []
    with fleet.connect(held) as conn:
        assert conn.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE oid = 'mgttest.notes'::regclass"
        ).fetchone() == (True, True)


def test_an_archived_range_child_takes_its_hash_partitions_along(fleet: Fleet) -> None:
    s.script(fleet.admin, 1, "events by day, hashed by tenant")
    fleet.admin.execute(
        "UPDATE admmgt.scripts SET created_date = now() - interval '4 days' WHERE id = 1"
    )
    events = shared_table(fleet.admin, 1, "events", [s.ID, ("on_day", "date", 0)], haspart=1)
    partition(fleet.admin, events, "on_day", "range", "day", ("tenant_id", "hash", "2"))
    policy(
        fleet.admin, "events", {"retention": "2 days", "action": "archive", "archive_schema": "old"}
    )
    fleet.apply()
    fleet.maintain(1)
    first = f"events_{fleet.today() - timedelta(days=4):%Y_%m_%d}"
    assert fleet.children(fleet.template, f"mgttest.{first}") == {f"{first}_h0", f"{first}_h1"}
    lines = lifecycle(fleet)
    assert lines[-1].startswith("lifecycleMgt: "), lines
    for db in fleet.databases:
        assert tables_in(fleet, db, "old") == {first, f"{first}_h0", f"{first}_h1"}
        assert not {first, f"{first}_h0", f"{first}_h1"} & tables_in(fleet, db, "mgttest")
        assert fleet.children(db, f"old.{first}") == {f"{first}_h0", f"{first}_h1"}
