"""refresh_stored_procedures(0) / refresh_views(0): the template schema's routines
and views made in each schema tenant, bound to the tenant's own tables (issue 16)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from admmgt_plpy._registry import Tenant
from admmgt_plpy._sync import SyncPlan, follow_template
from tests.db.fleet import Notices, SchemaFleet, call, make_schema_fleet

Conn = psycopg.Connection[Any]


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> SchemaFleet:
    """A template schema and two tenant schemas, each with its own orders rows:
    the template has one order of 5, tenants[i] has i + 1 orders of 100."""
    fleet = make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)
    with fleet.connect() as conn:
        for i, schema in enumerate(fleet.schemas):
            conn.execute(
                sql.SQL("CREATE TABLE {}.orders (id int PRIMARY KEY, amount int)").format(
                    sql.Identifier(schema)
                )
            )
            rows = [(1, 5)] if schema == fleet.template else [(k, 100) for k in range(1, i + 1)]
            conn.cursor().executemany(
                sql.SQL("INSERT INTO {}.orders VALUES (%s, %s)").format(sql.Identifier(schema)),
                rows,
            )
    return fleet


def in_template(fleet: SchemaFleet, statements: str) -> None:
    """Run ``statements`` in the host with search_path = the template schema."""
    with fleet.connect() as conn:
        conn.execute("SET search_path = mgttest")
        conn.execute(statements)


def one(fleet: SchemaFleet, query: str, *args: Any) -> Any:
    with fleet.connect() as conn:
        row = conn.execute(query, args).fetchone()
        assert row is not None
        return row[0]


def routines(fleet: SchemaFleet, schema: str) -> dict[str, Any]:
    """{name(args): (proconfig, body)} of the routines in ``schema``."""
    with fleet.connect() as conn:
        rows = conn.execute(
            "SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',"
            " p.proconfig, p.prosrc FROM pg_proc AS p"
            " JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_routines_and_views_reach_each_schema_bound_to_its_own_tables(fleet: SchemaFleet) -> None:
    in_template(
        fleet,
        """
        CREATE FUNCTION mgttest.total() RETURNS bigint LANGUAGE plpgsql
            SET search_path = mgttest, public
            AS $$ BEGIN RETURN (SELECT sum(amount) FROM orders); END $$;
        CREATE FUNCTION mgttest.counted() RETURNS bigint LANGUAGE sql
            BEGIN ATOMIC SELECT count(*) FROM orders; END;
        CREATE PROCEDURE mgttest.add_order(a int) LANGUAGE sql
            SET search_path = mgttest
            AS 'INSERT INTO orders SELECT coalesce(max(id), 0) + 1, a FROM orders';
        CREATE VIEW mgttest.big_orders AS SELECT id, amount FROM mgttest.orders WHERE amount > 10;
        CREATE VIEW mgttest.big_total AS SELECT sum(amount) AS total FROM mgttest.big_orders;
        """,
    )
    notices = Notices(fleet.admin)
    call(fleet.admin, "refresh_stored_procedures", 0)
    lines = notices.take()
    assert lines[0].startswith(
        f'refresh_stored_procedures: the template schema "{fleet.host}.mgttest" has 3 routine(s);'
        " 2 schema tenant(s) to check"
    ), lines
    call(fleet.admin, "refesh_views", 0)  # the proof of concept's name

    for i, schema in enumerate(fleet.tenants):
        ident = sql.Identifier(schema)
        got = routines(fleet, schema)
        assert set(got) == {"total()", "counted()", "add_order(IN a integer)"}
        assert got["total()"][0] == [f"search_path={schema}, public"]
        assert got["add_order(IN a integer)"][0] == [f"search_path={schema}"]
        with fleet.connect() as conn:  # called from elsewhere: the setting decides
            conn.execute("SET search_path = public")
            total = conn.execute(sql.SQL("SELECT {}.total()").format(ident)).fetchone()
            assert total == (100 * (i + 1),)
            conn.execute(sql.SQL("CALL {}.add_order(7)").format(ident))
            counted = conn.execute(sql.SQL("SELECT {}.counted()").format(ident)).fetchone()
            assert counted == (i + 2,)  # bound at creation to the tenant's orders
            big = conn.execute(sql.SQL("SELECT total FROM {}.big_total").format(ident)).fetchone()
            assert big == (100 * (i + 1),)
            bound = conn.execute(
                "SELECT pg_get_viewdef(%s::regclass)", (f'"{schema}".big_orders',)
            ).fetchone()
            assert bound is not None and f"FROM {schema}.orders" in bound[0]
    # the template's own are untouched, and its rows too
    assert routines(fleet, fleet.template)["total()"][0] == ["search_path=mgttest, public"]
    assert one(fleet, "SELECT count(*) FROM mgttest.orders") == 1

    notices.take()
    call(fleet.admin, "refresh_stored_procedures", 0)
    call(fleet.admin, "refresh_views", 0)
    summaries = [x for x in notices.take() if "already in sync in" in x]
    assert [x.split(":")[0] for x in summaries] == [
        "refresh_stored_procedures",
        "refresh_views",
    ]
    assert all(x.split(": ")[1].startswith("2 already in sync") for x in summaries), summaries


def test_a_changed_routine_is_replaced_and_an_orphan_kept_until_asked(fleet: SchemaFleet) -> None:
    in_template(
        fleet,
        "CREATE FUNCTION mgttest.g() RETURNS int LANGUAGE sql SET search_path = mgttest"
        " AS 'SELECT 1'",
    )
    call(fleet.admin, "refresh_stored_procedures", 0)
    in_template(
        fleet,
        "DROP FUNCTION mgttest.g(); CREATE FUNCTION mgttest.g() RETURNS text LANGUAGE sql"
        " SET search_path = mgttest AS $$SELECT 'x'$$",
    )
    first = fleet.tenants[0]
    with fleet.connect() as conn:
        conn.execute(
            sql.SQL("CREATE FUNCTION {}.leftover() RETURNS int LANGUAGE sql AS 'SELECT 1'").format(
                sql.Identifier(first)
            )
        )
    notices = Notices(fleet.admin)
    call(fleet.admin, "refresh_stored_procedures", 0)
    line = next(x for x in notices.take() if x.startswith("[") and first in x)
    assert "1 routine(s) updated: g()" in line and "1 orphan(s) kept: leftover()" in line
    for schema in fleet.tenants:
        assert (
            one(fleet, sql.SQL("SELECT {}.g()").format(sql.Identifier(schema)).as_string()) == "x"
        )
    call(fleet.admin, "refresh_stored_procedures", 0, None, True)  # drop orphans
    assert set(routines(fleet, first)) == {"g()"}


@pytest.mark.parametrize(
    ("statement", "names", "says"),
    [
        (
            "CREATE FUNCTION mgttest.bad() RETURNS bigint LANGUAGE plpgsql"
            " AS $$ BEGIN RETURN (SELECT count(*) FROM mgttest.orders); END $$",
            "function mgttest.bad()",
            'names schema "mgttest" in its definition (mgttest.orders at line',
        ),
        (
            "CREATE FUNCTION mgttest.bad() RETURNS bigint LANGUAGE sql SECURITY DEFINER"
            " AS 'SELECT count(*) FROM orders'",
            "function mgttest.bad()",
            "is SECURITY DEFINER without SET search_path",
        ),
        (
            "CREATE FUNCTION mgttest.bad() RETURNS void LANGUAGE plpgsql"
            " AS $$ BEGIN PERFORM set_config('search_path', 'mgttest', true); END $$",
            "function mgttest.bad()",
            "changes search_path in its definition (set_config('search_path', ...)",
        ),
    ],
)
def test_a_routine_tenants_cannot_run_is_refused_by_name_before_any_change(
    fleet: SchemaFleet, statement: str, names: str, says: str
) -> None:
    in_template(
        fleet,
        "CREATE FUNCTION mgttest.good() RETURNS int LANGUAGE sql SET search_path = mgttest"
        f" AS 'SELECT 1'; {statement}",
    )
    with pytest.raises(psycopg.Error) as refused:
        call(fleet.admin, "refresh_stored_procedures", 0)
    message = str(refused.value)
    assert "refresh_stored_procedures(0): 1 definition(s) in the template schema" in message
    assert names in message and says in message, message
    diag = refused.value.diag
    assert diag.message_hint is not None and "no tenant was changed" in diag.message_hint
    for schema in fleet.tenants:
        assert routines(fleet, schema) == {}


def test_a_view_that_still_names_the_template_schema_is_refused(fleet: SchemaFleet) -> None:
    # a table named like a pg_catalog relation prints qualified: pg_catalog comes first
    in_template(
        fleet,
        "CREATE TABLE mgttest.pg_class (x int);"
        " CREATE VIEW mgttest.shadowed AS SELECT x FROM mgttest.pg_class",
    )
    with pytest.raises(psycopg.Error) as refused:
        call(fleet.admin, "refresh_views", 0)
    message = str(refused.value)
    assert 'view mgttest.shadowed names schema "mgttest" in its definition' in message, message
    assert "mgttest.pg_class at line" in message


def drive(conn: Conn, fragment: Any) -> tuple[Any, list[str]]:
    """Run a job fragment's statements on ``conn`` as the engine would; return
    its value and the statements it sent."""
    sent: list[str] = []
    try:
        request = next(fragment)
        while True:
            sent.append(request.sql)
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(request.sql)
                rows = cur.fetchall() if cur.description else []
            request = fragment.send(rows)
    except StopIteration as done:
        return done.value, sent


def test_around_a_script_the_template_schema_is_captured_and_made_for_each_tenant(
    fleet: SchemaFleet,
) -> None:
    in_template(
        fleet,
        """
        CREATE FUNCTION mgttest.total() RETURNS bigint LANGUAGE sql
            SET search_path = mgttest AS 'SELECT sum(amount) FROM orders';
        CREATE VIEW mgttest.big_orders AS SELECT id FROM orders WHERE amount > 10;
        """,
    )
    with fleet.connect() as conn:
        conn.execute("SET search_path = mgttest")
        capture = SyncPlan("", capture=True, template_schema="mgttest")
        found, _ = drive(conn, follow_template("c", capture, 7, False))
    assert [d.name for d in found["routines"]] == ["total()"]
    assert [d.name for d in found["views"]] == ["big_orders"]
    plan = SyncPlan("", logged={(7, False): found}, template_schema="mgttest")
    for i, schema in enumerate(fleet.tenants):
        tenant = Tenant(1, schema.upper(), "local", separatedb=0, host=fleet.host)
        with fleet.connect() as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            with conn.transaction():  # the script's transaction
                drive(conn, follow_template("c", plan.at(tenant), 7, False))
            with conn.transaction():
                _, sent = drive(conn, follow_template("c", plan.at(tenant), 7, False))
            assert not any(s.startswith("CREATE") for s in sent), sent  # in sync: nothing made
            conn.execute("SET search_path = public")
            ident = sql.Identifier(schema)
            assert conn.execute(sql.SQL("SELECT {}.total()").format(ident)).fetchone() == (
                100 * (i + 1),
            )
            assert conn.execute(
                sql.SQL("SELECT count(*) FROM {}.big_orders").format(ident)
            ).fetchone() == (i + 1,)
        assert routines(fleet, schema)["total()"][0] == [f"search_path={schema}"]


def test_a_tenant_that_fails_keeps_its_old_definitions_and_the_others_are_made(
    fleet: SchemaFleet,
) -> None:
    in_template(fleet, "CREATE VIEW mgttest.big_orders AS SELECT id FROM orders WHERE amount > 10")
    broken, fine = fleet.tenants
    with fleet.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE {}.orders").format(sql.Identifier(broken)))
    notices = Notices(fleet.admin)
    with pytest.raises(psycopg.Error) as failed:
        call(fleet.admin, "refresh_views", 0)
    assert failed.value.sqlstate == "ZA001"
    line = next(x for x in notices.take() if x.startswith("[") and broken in x)
    assert f'tenant "{fleet.host}.{broken}": view sync failed' in line, line
    assert 'relation "orders" does not exist' in line
    assert one(fleet, "SELECT to_regclass(%s)::text", f"{broken}.big_orders") is None
    assert one(fleet, "SELECT count(*) FROM " + f"{fine}.big_orders") == 2
    error = fleet.admin.execute(
        "SELECT last_error FROM admmgt.vendor_db_settings WHERE dbname = %s", (broken,)
    ).fetchone()
    assert error is not None and "view sync failed" in error[0]


def test_an_unreachable_host_is_named_before_anything_runs(fleet: SchemaFleet) -> None:
    fleet.admin.execute(
        "UPDATE admmgt.schema_hosts SET dbname = %s WHERE cluster_name = 'local'",
        (fleet.host + "_gone",),
    )
    with pytest.raises(psycopg.Error) as refused:
        call(fleet.admin, "refresh_stored_procedures", 0)
    message = str(refused.value)
    assert (
        f'refresh_stored_procedures(0): reading the template schema "{fleet.host}_gone.mgttest"'
        " failed" in message
    ), message
    runs = fleet.admin.execute(
        "SELECT count(*) FROM admmgt.runs WHERE operation = 'refresh_stored_procedures'"
    ).fetchone()
    assert runs == (0,)


def test_a_schema_name_with_quotes_and_spaces_gets_its_own_setting(
    fleet: SchemaFleet, tenant_prefix: str
) -> None:
    odd = f'{tenant_prefix}we"ird sch'
    ident = sql.Identifier(odd)
    with fleet.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL("CREATE TABLE {}.orders (id int, amount int)").format(ident))
        conn.execute(sql.SQL("INSERT INTO {}.orders VALUES (1, 42)").format(ident))
    fleet.admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status, separatedb) VALUES (%s, 2, 0)",
        (odd,),
    )
    in_template(
        fleet,
        """
        CREATE FUNCTION mgttest.total() RETURNS bigint LANGUAGE sql
            SET search_path = mgttest, public AS 'SELECT sum(amount) FROM orders';
        CREATE VIEW mgttest.big_orders AS SELECT id FROM orders WHERE amount > 10;
        """,
    )
    call(fleet.admin, "refresh_stored_procedures", 0)
    call(fleet.admin, "refresh_views", 0)
    assert routines(fleet, odd)["total()"][0] == [
        f'search_path="{odd.replace(chr(34), 2 * chr(34))}", public'
    ]
    with fleet.connect() as conn:
        assert conn.execute(sql.SQL("SELECT {}.total()").format(ident)).fetchone() == (42,)
        assert conn.execute(sql.SQL("SELECT id FROM {}.big_orders").format(ident)).fetchall() == [
            (1,)
        ]
    notices = Notices(fleet.admin)
    call(fleet.admin, "refresh_stored_procedures", 0)
    assert notices.take()[-1].startswith("refresh_stored_procedures: 3 already in sync"), notices
