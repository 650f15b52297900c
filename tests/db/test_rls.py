"""Shared tables (issue 17): row-level security and hash partitioning by tenant, as
metadata, on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors, sql

from admmgt.cli import main
from admmgt_plpy import _preflight
from admmgt_plpy._compile import Step
from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, call
from tests.db.test_lifecycle import lifecycle, policy, tables_in

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def pinned_clock(admin: Conn) -> None:
    """Every test here runs at noon UTC on 15 June 2026 on the fleet's clock (scripts are
    anchored there, maintenance and lifecycle count from it); rows in tenants are dated
    from that day, never from the server's now()."""
    clock.pin(admin, "2026-06-15")


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
            " SELECT t, DATE '2026-06-15' FROM generate_series(1, 20) AS t"
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
        "UPDATE admmgt.scripts SET created_date = admmgt.fleet_now() - interval '4 days'"
        " WHERE id = 1"
    )
    events = shared_table(fleet.admin, 1, "events", [s.ID, ("on_day", "date", 0)], haspart=1)
    partition(fleet.admin, events, "on_day", "range", "day", ("tenant_id", "hash", "2"))
    policy(
        fleet.admin, "events", {"retention": "2 days", "action": "archive", "archive_schema": "old"}
    )
    fleet.apply()
    fleet.maintain(1)
    first = "events_2026_06_11"  # four days before the pinned 15 June 2026
    assert fleet.children(fleet.template, f"mgttest.{first}") == {f"{first}_h0", f"{first}_h1"}
    lines = lifecycle(fleet)
    assert lines[-1].startswith("lifecycleMgt: "), lines
    for db in fleet.databases:
        assert tables_in(fleet, db, "old") == {first, f"{first}_h0", f"{first}_h1"}
        assert not {first, f"{first}_h0", f"{first}_h1"} & tables_in(fleet, db, "mgttest")
        assert fleet.children(db, f"old.{first}") == {f"{first}_h0", f"{first}_h1"}


def partitioned_shared_tables(admin: Conn) -> None:
    """Script 1: tenant-scoped tables partitioned every way the metadata allows."""
    s.script(admin, 1, "shared, partitioned")
    accounts = shared_table(admin, 1, "accounts", [s.ID, ("name", "text")], haspart=1)
    partition(admin, accounts, "tenant_id", "hash", "2")
    events = shared_table(admin, 1, "events", [s.ID, ("on_day", "date", 0)], haspart=1)
    partition(admin, events, "on_day", "range", "month", ("tenant_id", "hash", "2"))
    orders = shared_table(
        admin, 1, "orders", [s.ID, ("region", "text", 0), ("on_day", "date", 0)], haspart=1
    )
    admin.execute("UPDATE admmgt.script_tables SET hasdefault = 1 WHERE id = %s", (orders,))
    for region in ("eu", "us"):
        partition(admin, orders, "region", "list", region, ("on_day", "range", "month"))
    tickets = shared_table(admin, 1, "tickets", [s.ID, ("kind", "text", 0)], haspart=1)
    for kind in ("bug", "ask"):
        partition(admin, tickets, "kind", "list", kind, ("tenant_id", "hash", "2"))


SHARED_ROOTS = ("accounts", "events", "orders", "tickets")


def partition_tree(conn: Conn) -> list[str]:
    """Every partition (all levels) of the shared roots, qualified."""
    return [
        r[0]
        for root in SHARED_ROOTS
        for r in conn.execute(
            "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass)"
            " WHERE relid <> %s::regclass ORDER BY 1",
            (f"mgttest.{root}", f"mgttest.{root}"),
        )
    ]


def test_every_partition_of_a_shared_table_applies_the_policy_when_queried_by_name(
    fleet: Fleet, roles: dict[str, str]
) -> None:
    partitioned_shared_tables(fleet.admin)
    fleet.apply()
    lines = fleet.maintain(numdays=40)  # July 2026: new range children, hash sets under them
    assert not [line for line in lines if "FAILED" in line or "skipped" in line], lines
    tenant = fleet.tenants[0]
    app = sql.Identifier(roles["app"])
    with fleet.connect(tenant) as conn:
        parts = partition_tree(conn)
        made = {p.split(".")[1] for p in parts}
        # compiled at every level, and made by maintenance (range child + its hash set)
        assert {
            "accounts_h1",
            "events_2026_06_h0",
            "events_2026_07",
            "events_2026_07_h1",
            "orders_region_eu_2026_07",
            "orders_region_us_default",
            "tickets_kind_bug_h1",
        } <= made, made
        for root, on_day in (("accounts", None), ("events", 1), ("orders", 1), ("tickets", None)):
            for tenant_id in (1, 2):
                for day in ("2026-06-15", "2026-07-10") if on_day else (None,):
                    columns = ["tenant_id"] + (["on_day"] if day else [])
                    values: list[Any] = [tenant_id] + ([day] if day else [])
                    if root == "orders":
                        columns.append("region")
                        values.append("eu" if tenant_id == 1 else "us")
                    if root == "tickets":
                        columns.append("kind")
                        values.append("bug")
                    conn.execute(
                        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                            sql.Identifier("mgttest", root),
                            sql.SQL(", ").join(map(sql.Identifier, columns)),
                            sql.SQL(", ").join(sql.Placeholder() * len(values)),
                        ),
                        values,
                    )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA mgttest TO {}").format(app))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA mgttest TO {}").format(app))
        leaked: dict[str, int] = {}
        seen = 0
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(app))
            conn.execute("SELECT mgttest.set_tenant_context(1)")
            for part in parts:
                row = conn.execute(
                    sql.SQL(
                        "SELECT count(*) FILTER (WHERE tenant_id <> 1), count(*) FILTER"
                        " (WHERE tenant_id = 1 AND tableoid = {}::regclass) FROM {}"
                    ).format(sql.Literal(part), sql.SQL(part)),
                ).fetchone()
                assert row is not None
                if row[0]:
                    leaked[part] = row[0]
                seen += row[1]
        assert leaked == {}
        assert seen == 6  # tenant 1's own rows are still read through its partitions
        # A partition made by hand, without the policy, is what check_rls reports.
        conn.execute(
            "CREATE TABLE mgttest.events_hand PARTITION OF mgttest.events"
            " FOR VALUES FROM ('2030-01-01') TO ('2030-02-01')"
        )
    found = findings(fleet, tenant)
    assert {f for f in found if f[1].startswith("mgttest.")} == {
        ("no_policy", "mgttest.events_hand")
    }
    with fleet.connect(tenant) as conn:
        conn.execute("DROP TABLE mgttest.events_hand")
        conn.execute("ALTER TABLE mgttest.events_2026_07_h0 NO FORCE ROW LEVEL SECURITY")
    assert ("not_forced", "mgttest.events_2026_07_h0") in findings(fleet, tenant)
    with fleet.connect(tenant) as conn:
        conn.execute("ALTER TABLE mgttest.events_2026_07_h0 FORCE ROW LEVEL SECURITY")
    assert drift(fleet) == []
    # The generated rollback drops the partitions' policies and the tables.
    call(fleet.admin, "rollbackscript", 1, True)
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)
            assert conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'mgttest'"
            ).fetchone() == (0,)
    assert drift(fleet) == []


def test_an_archived_partition_of_a_shared_table_keeps_its_policy(fleet: Fleet) -> None:
    s.script(fleet.admin, 1, "events by day, hashed by tenant")
    fleet.admin.execute(
        "UPDATE admmgt.scripts SET created_date = admmgt.fleet_now() - interval '4 days'"
        " WHERE id = 1"
    )
    events = shared_table(fleet.admin, 1, "events", [s.ID, ("on_day", "date", 0)], haspart=1)
    partition(fleet.admin, events, "on_day", "range", "day", ("tenant_id", "hash", "2"))
    policy(
        fleet.admin, "events", {"retention": "2 days", "action": "archive", "archive_schema": "old"}
    )
    fleet.apply()
    fleet.maintain(1)
    lifecycle(fleet)
    db = fleet.tenants[0]
    with fleet.connect(db) as conn:
        archived = conn.execute(
            "SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity,"
            " (SELECT count(*) FROM pg_policy AS p WHERE p.polrelid = c.oid)"
            " FROM pg_class AS c WHERE c.relnamespace = 'old'::regnamespace AND c.relkind IN"
            " ('r', 'p') ORDER BY 1"
        ).fetchall()
    # 11 June, the first child (compiled), is past 2 days: detached, moved, still bound.
    assert archived == [
        (name, True, 1)
        for name in ("events_2026_06_11", "events_2026_06_11_h0", "events_2026_06_11_h1")
    ]
    assert not {f for f in findings(fleet, db) if f[1].startswith(("mgttest.", "old."))}


def test_rollback_counts_rows_an_owner_bound_by_force_cannot_see(
    fleet: Fleet, roles: dict[str, str]
) -> None:
    """A remote role that owns a tenant-scoped table and does not bypass row-level security
    counts 0 rows under FORCE; rollback's count must fail for it, not read 0."""
    notes_script(fleet.admin)
    fleet.apply()
    (stake,) = _preflight.data_at_stake(
        [Step("DROP TABLE IF EXISTS mgttest.notes", True, "undo_create_table", "mgttest.notes")]
    )
    owner = sql.Identifier(roles["owner"])
    with fleet.connect(fleet.tenants[0]) as conn:
        conn.execute("INSERT INTO mgttest.notes (tenant_id, body) VALUES (1, 'a'), (2, 'b')")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA mgttest TO {}").format(owner))
        conn.execute(sql.SQL("ALTER TABLE mgttest.notes OWNER TO {}").format(owner))
        try:
            assert conn.execute(stake.query).fetchone() == (2,)  # as a superuser: every row
            with (
                pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
                conn.transaction(),
            ):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
                conn.execute(stake.query)
            # The setting was transaction-local: the session's own is untouched.
            assert conn.execute("SHOW row_security").fetchone() == ("on",)
        finally:
            conn.execute("ALTER TABLE mgttest.notes OWNER TO CURRENT_USER")


def reach_as_owner(fleet: Fleet, tenant: str, role: str, table: str) -> None:
    """The tenant's cluster is reached as ``role`` (the same server, another cluster name),
    which owns mgttest.<table> and is neither a superuser nor BYPASSRLS."""
    owner = sql.Identifier(role)
    fleet.admin.execute(sql.SQL("ALTER ROLE {} LOGIN").format(owner))
    fleet.admin.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(tenant), owner)
    )
    with fleet.connect(tenant) as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA mgttest, admmgt TO {}").format(owner))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA admmgt TO {}").format(owner))
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier("mgttest", table), owner)
        )
    info = fleet.admin.info
    fleet.admin.execute(
        "INSERT INTO admmgt.clusters (name, host, port, options) VALUES ('asowner', %s, %s, %s)",
        (info.host, info.port, f"user={role}"),
    )
    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET cluster_name = 'asowner' WHERE dbname = %s",
        (tenant,),
    )


def reach_as_superuser(fleet: Fleet, tenant: str, table: str) -> None:
    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET cluster_name = 'local' WHERE dbname = %s",
        (tenant,),
    )
    with fleet.connect(tenant) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO CURRENT_USER").format(sql.Identifier("mgttest", table))
        )


def test_rollback_as_an_owner_bound_by_force_is_refused_not_told_zero_rows(
    fleet: Fleet, roles: dict[str, str]
) -> None:
    notes_script(fleet.admin)
    fleet.apply()
    tenant = fleet.tenants[0]
    with fleet.connect(tenant) as conn:
        conn.execute("INSERT INTO mgttest.notes (tenant_id, body) VALUES (1, 'a'), (2, 'b')")
    reach_as_owner(fleet, tenant, roles["owner"], "notes")
    try:
        with pytest.raises(psycopg.Error, match="rollbackScript\\(1\\) refused") as refused:
            call(fleet.admin, "rollbackscript", 1)
        assert f"{tenant}@asowner: could not count the rows" in str(refused.value)
        assert "row-level security" in str(refused.value)
    finally:
        reach_as_superuser(fleet, tenant, "notes")
    with fleet.connect(tenant) as conn:
        assert conn.execute("SELECT count(*) FROM mgttest.notes").fetchone() == (2,)


def test_lifecycle_as_an_owner_bound_by_force_fails_rather_than_deleting_nothing(
    fleet: Fleet, roles: dict[str, str]
) -> None:
    """admmgt's remote role owns the tables and is not a superuser (docs/clusters.md):
    FORCE binds it, so its expired-row batches would see no rows and report success."""
    s.script(fleet.admin, 1, "shared logs")
    shared_table(fleet.admin, 1, "logs", [s.ID, ("created_at", "timestamptz", 0)])
    policy(fleet.admin, "logs", {"retention": "30 days", "column": "created_at"})
    fleet.apply()
    tenant = fleet.tenants[0]
    with fleet.connect(tenant) as conn:
        conn.execute(
            "INSERT INTO mgttest.logs (tenant_id, created_at)"
            " VALUES (1, '2026-01-01 00:00+00'), (2, '2026-01-01 00:00+00')"
        )
    reach_as_owner(fleet, tenant, roles["owner"], "logs")
    try:
        for dry_run in (True, False):
            notices = Notices(fleet.admin)
            with pytest.raises(psycopg.Error) as failed:
                fleet.admin.execute("CALL admmgt.lifecycleMgt(t_dry_run => %s)", (dry_run,))
            assert failed.value.sqlstate == "ZA001", failed.value
            assert "(databases: 1 failed, 2 noop)" in str(failed.value)
            lines = notices.take_without_clock()
            line = next(x for x in lines if f"{tenant}@asowner: " in x)
            assert "FAILED" in line and "row-level security" in line, line
    finally:
        reach_as_superuser(fleet, tenant, "logs")
    with fleet.connect(tenant) as conn:
        assert conn.execute("SELECT count(*) FROM mgttest.logs").fetchone() == (2,)
