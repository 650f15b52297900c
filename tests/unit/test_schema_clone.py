"""The clone of a template schema (_schema_clone): catalog rows in, DDL out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from admmgt_plpy._schema_clone import (
    MARK,
    CloneRefused,
    catalog_sql,
    map_search_path,
    names_schema,
    plan_clone,
)


def rel(name: str, kind: str = "r", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "persistence": "p",
        "oid": 0,
        "options": None,
        "is_partition": False,
        "parents": None,
        "bound": None,
        "partkey": None,
        "rls": False,
        "force_rls": False,
        "viewdef": None,
        "columns": None,
    }
    row.update(extra)
    return row


def col(name: str, typ: str = "integer", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "type": typ,
        "identity": "",
        "generated": "",
        "default": None,
        "notnull": False,
        "collation": None,
    }
    row.update(extra)
    return row


def routine(name: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "kind": "f",
        "args": "",
        "identity": "",
        "result": "integer",
        "language": "sql",
        "volatility": "s",
        "strict": False,
        "definer": False,
        "leakproof": False,
        "parallel": "u",
        "cost": "100",
        "rows": "0",
        "retset": False,
        "config": None,
        "body": " SELECT 1 ",
        "sqlbody": None,
    }
    row.update(extra)
    return row


def seq(name: str, dep: str | None, table: str | None, column: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "type": "bigint",
        "start": "1",
        "increment": "1",
        "min": "1",
        "max": "9223372036854775807",
        "cache": "1",
        "cycle": False,
        "dep": dep,
        "table": table,
        "table_here": table is not None,
        "column": column,
    }


def catalog() -> dict[str, Any]:
    """A small template schema: an enum, a serial and an identity, a foreign-key
    chain given in the wrong order, a partitioned table with a partition and an
    index, a view, a routine with SET search_path and a trigger."""
    return {
        "found": True,
        "enums": [{"name": "state", "labels": ["new", "it's"]}],
        "types": [],
        "relations": [
            rel(
                "orders",
                columns=[
                    col("id", "bigint", default="nextval('orders_id_seq'::regclass)", notnull=True),
                    col("customer_id", "bigint"),
                ],
            ),
            rel(
                "customers",
                columns=[
                    col("id", "bigint", identity="d", notnull=True),
                    col("state", "state", default="'new'::state"),
                ],
            ),
            rel("events", "p", partkey="RANGE (at)", columns=[col("at", "date", notnull=True)]),
            rel(
                "events_a",
                is_partition=True,
                parents=[{"name": "events", "here": True}],
                bound="FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
            ),
            rel("admmgt_history", columns=[col("id", "bigint")]),
            rel("totals", "v", viewdef=" SELECT count(*) AS n FROM orders;"),
        ],
        "sequences": [
            seq("orders_id_seq", "a", "orders", "id"),
            seq("customers_id_seq", "i", "customers", "id"),
        ],
        "constraints": [
            {
                "table": "orders",
                "name": "orders_customer_fkey",
                "kind": "f",
                "definition": "FOREIGN KEY (customer_id) REFERENCES customers(id)",
                "target": "customers",
                "target_here": True,
            },
            {
                "table": "customers",
                "name": "customers_pkey",
                "kind": "p",
                "definition": "PRIMARY KEY (id)",
                "target": None,
                "target_here": None,
            },
        ],
        "indexes": [
            {
                "table": "events",
                "name": "events_at_idx",
                "on": "mgttest.events",
                "definition": "CREATE INDEX events_at_idx ON ONLY mgttest.events USING btree (at)",
            },
        ],
        "routines": [
            routine(
                "total",
                args="p bigint",
                identity="p bigint",
                config=["search_path=mgttest, public"],
            ),
        ],
        "triggers": [{"table": "orders", "name": "t", "definition": "CREATE TRIGGER t ..."}],
        "others": [],
    }


def test_the_ddl_comes_in_dependency_order_with_the_tenant_schema_mapped() -> None:
    clone = plan_clone(catalog(), "mgttest")
    ddl = clone.ddl('acme "x"')
    s = '"acme ""x"""'
    assert ddl[:3] == [
        f"CREATE SCHEMA {s}",
        f"SET LOCAL search_path = {s}",
        "SET LOCAL check_function_bodies = off",
    ]
    assert ddl[3] == """CREATE TYPE "state" AS ENUM ('new', 'it''s')"""
    assert not any(MARK in x for x in ddl)

    def at(start: str) -> int:
        return next(i for i, x in enumerate(ddl) if x.startswith(start))

    # the referenced table first, its key inside CREATE TABLE; the FK inside the referencing one
    assert at('CREATE TABLE "customers"') < at('CREATE TABLE "orders"')
    assert 'CONSTRAINT "orders_customer_fkey" FOREIGN KEY' in ddl[at('CREATE TABLE "orders"')]
    # a serial's sequence before its table, owned by it after; an identity keeps its options
    assert at('CREATE SEQUENCE "orders_id_seq"') < at('CREATE TABLE "orders"')
    assert at('ALTER SEQUENCE "orders_id_seq" OWNED BY "orders"."id"') > at('CREATE TABLE "orders"')
    assert not any(x.startswith('CREATE SEQUENCE "customers_id_seq"') for x in ddl)
    assert (
        '"id" bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY 1'
        in ddl[at('CREATE TABLE "customers"')]
    )
    # the partitioned table, its index (ON ONLY dropped, table bare), then its partition
    parent = at('CREATE TABLE "events"')
    assert ddl[parent].endswith("PARTITION BY RANGE (at)")
    assert ddl[parent + 1] == 'CREATE INDEX events_at_idx ON "events" USING btree (at)'
    assert ddl[parent + 2] == (
        """CREATE TABLE "events_a" PARTITION OF "events" FOR VALUES FROM ('2026-01-01') TO"""
        " ('2026-02-01')"
    )
    # the routine in the tenant, SET search_path mapped; the view; the trigger last
    total = ddl[at("CREATE FUNCTION")]
    assert total.startswith(f'CREATE FUNCTION {s}."total"(p bigint) RETURNS integer')
    assert f"SET search_path = {s}, public AS $body$ SELECT 1 $body$" in total
    assert ddl[at("CREATE VIEW")] == 'CREATE VIEW "totals" AS  SELECT count(*) AS n FROM orders'
    assert ddl[-2] == "CREATE TRIGGER t ..."
    assert ddl[-1].startswith(f"INSERT INTO {s}.admmgt_history (script_id, action,")
    assert ddl[-1].endswith('FROM "mgttest".admmgt_history ORDER BY id')


def test_grants_name_each_object_and_only_read_the_history() -> None:
    grants = plan_clone(catalog(), "mgttest").grants("acme", "tenant_acme")
    joined = "\n".join(grants)
    assert "ALL TABLES IN SCHEMA" not in joined and "ALL SEQUENCES" not in joined
    assert 'GRANT USAGE ON SCHEMA "acme" TO "tenant_acme"' in grants
    assert (
        'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "acme"."orders", "acme"."customers", '
        '"acme"."events", "acme"."events_a", "acme"."totals" TO "tenant_acme"'
    ) in grants
    assert 'GRANT SELECT ON TABLE "acme".admmgt_history TO "tenant_acme"' in grants
    assert 'GRANT USAGE, SELECT ON SEQUENCE "acme"."orders_id_seq" TO "tenant_acme"' in grants
    assert 'GRANT EXECUTE ON ROUTINE "acme"."total"(p bigint) TO "tenant_acme"' in grants
    assert sum(x.startswith('ALTER DEFAULT PRIVILEGES IN SCHEMA "acme"') for x in grants) == 3


def test_a_foreign_key_cycle_is_broken_with_one_alter_table() -> None:
    cat = catalog()
    cat["constraints"].append(
        {
            "table": "customers",
            "name": "customers_last_order_fkey",
            "kind": "f",
            "definition": "FOREIGN KEY (id) REFERENCES orders(id)",
            "target": "orders",
            "target_here": True,
        }
    )
    ddl = plan_clone(cat, "mgttest").ddl("t")
    alters = [x for x in ddl if x.startswith("ALTER TABLE")]
    assert len(alters) == 1 and " ADD CONSTRAINT " in alters[0]
    assert sum(x.startswith("CREATE TABLE") for x in ddl) == 5


def test_a_routine_naming_a_table_type_comes_after_the_tables() -> None:
    cat = catalog()
    cat["routines"].append(routine("all_orders", result="SETOF orders", retset=True))
    ddl = plan_clone(cat, "mgttest").ddl("t")
    made = next(i for i, x in enumerate(ddl) if '"all_orders"' in x)
    assert made > next(i for i, x in enumerate(ddl) if x.startswith('CREATE TABLE "orders"'))
    assert ddl[made].endswith("ROWS 0 AS $body$ SELECT 1 $body$")
    early = next(i for i, x in enumerate(ddl) if '"total"' in x)
    assert early < next(i for i, x in enumerate(ddl) if x.startswith("CREATE TABLE"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c["types"].append({"name": "posint", "kind": "d"}), "domain posint"),
        (lambda c: c["relations"].append(rel("mv", "m")), "materialized view mv"),
        (lambda c: c["others"].append({"kind": "rule", "name": "r on orders"}), "rule r on orders"),
        (
            lambda c: c["routines"].append(routine("bad", body="SELECT * FROM MgtTest.orders")),
            'function bad(): its body names schema "mgttest"',
        ),
        (
            lambda c: c["routines"].append(routine("sd", definer=True)),
            "function sd(): SECURITY DEFINER without SET search_path",
        ),
        (
            lambda c: c["relations"].append(
                rel("p", is_partition=True, parents=[{"name": "x", "here": False}])
            ),
            "partition p: its parent is outside the schema",
        ),
    ],
)
def test_what_the_clone_does_not_know_is_refused_naming_it(change: Any, named: str) -> None:
    cat = copy.deepcopy(catalog())
    change(cat)
    with pytest.raises(CloneRefused) as refused:
        plan_clone(cat, "mgttest")
    assert named in refused.value.message
    assert 'template schema "mgttest"' in refused.value.message
    assert refused.value.hint and "Remove them from the template schema mgttest" in (
        refused.value.hint
    )


def test_a_missing_template_schema_is_named() -> None:
    with pytest.raises(CloneRefused, match='template schema "mgttest" does not exist'):
        plan_clone({"found": False}, "mgttest")


def test_names_schema_finds_qualifiers_in_any_case_and_quoting_only() -> None:
    assert names_schema("select * from mgttest.t", "mgttest")
    assert names_schema('select * from "mgttest" . t', "mgttest")
    assert names_schema("select * from MGTTEST.t", "mgttest")
    assert not names_schema("select * from my_mgttest.t", "mgttest")
    assert not names_schema("select 'mgttest' as s", "mgttest")


def test_map_search_path_replaces_only_the_template() -> None:
    assert map_search_path('mgttest, "$user", public', "mgttest") == f'{MARK}, "$user", public'
    assert map_search_path('"MgtTest", mgttest', "mgttest") == f'"MgtTest", {MARK}'
    assert map_search_path('""', "mgttest") == "''"


def test_the_catalog_query_quotes_the_template_as_a_literal() -> None:
    text = catalog_sql("o'brien")
    assert "nspname = 'o''brien'" in text
    assert text.startswith("SELECT json_build_object('found', EXISTS")


def test_row_level_security_and_policies_are_copied() -> None:
    cat = catalog()
    cat["relations"][0].update(rls=True, force_rls=True)
    cat["policies"] = [
        {
            "table": "orders",
            "name": "own rows",
            "permissive": False,
            "cmd": "r",
            "roles": ["PUBLIC", '"App"'],
            "qual": "(customer_id = 1)",
            "check": None,
        },
    ]
    ddl = plan_clone(cat, "mgttest").ddl("t")
    enable = ddl.index('ALTER TABLE "orders" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY')
    policy = ddl.index(
        'CREATE POLICY "own rows" ON "orders" AS RESTRICTIVE FOR SELECT TO PUBLIC, "App"'
        " USING ((customer_id = 1))"
    )
    assert ddl.index(next(x for x in ddl if x.startswith('CREATE TABLE "orders"'))) < enable
    assert enable < policy
