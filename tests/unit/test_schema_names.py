"""names_schema: SQL that schema tenants cannot run, found by the splitter's lexer."""

from __future__ import annotations

import pytest

from admmgt_plpy._definitions import (
    Definition,
    TemplateDefinition,
    refusals,
    setting_line,
    setting_of,
    split_guc_list,
)
from admmgt_plpy._search_path import names_schema
from admmgt_plpy._sqlsplit import tokens


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("SELECT * FROM mgttest.orders", "mgttest.orders at line 1"),
        ('SELECT * FROM "mgttest".orders', '"mgttest".orders at line 1'),
        ("SELECT 1;\nUPDATE MgtTest.Orders SET n = 1", "MgtTest.Orders at line 2"),
        ('INSERT INTO mgttest . "Odd name" VALUES (1)', 'mgttest."Odd name" at line 1'),
        ("SELECT * FROM db.mgttest.orders", "mgttest.orders at line 1"),
        ("SET search_path = mgttest", "SET search_path at line 1"),
        ("SET LOCAL search_path TO public", "SET search_path at line 1"),
        ("set session search_path to x", "SET search_path at line 1"),
        ("SELECT set_config('search_path', 'x', true)", "set_config('search_path', ...) at line 1"),
        (
            "SELECT pg_catalog.set_config(E'SEARCH_PATH', 'x', false)",
            "set_config(E'SEARCH_PATH', ...) at line 1",
        ),
        ("ALTER TABLE orders SET SCHEMA archive", "SET SCHEMA at line 1"),
        ("SET SCHEMA 'other'", "SET SCHEMA at line 1"),
        ("GRANT USAGE ON SCHEMA mgttest TO app", "SCHEMA mgttest at line 1"),
        ("CREATE SCHEMA IF NOT EXISTS mgttest", "SCHEMA mgttest at line 1"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\n"
            "SET search_path = mgttest AS $$ SELECT 1 $$",
            "SET search_path at line 2",
        ),
    ],
)
def test_what_schema_tenants_cannot_run_is_named_with_its_line(sql: str, found: str) -> None:
    assert names_schema(sql, "mgttest") == found


def test_references_inside_dollar_quoted_bodies_are_found_at_their_line() -> None:
    sql = """DO $body$
BEGIN
    -- a comment naming mgttest.orders does not count
    RAISE NOTICE 'nor does mgttest in a string without a dot';
    DELETE FROM mgttest.orders;
END
$body$"""
    assert names_schema(sql, "mgttest") == "mgttest.orders at line 5"
    nested = "DO $a$ BEGIN EXECUTE $q$\n\nSELECT mgttest.f()$q$; END $a$"
    assert names_schema(nested, "mgttest") == "mgttest.f at line 3"
    plpgsql = "BEGIN\n  PERFORM set_config('search_path', 'x', true);\nEND"
    assert names_schema(plpgsql, "mgttest", language="plpgsql") == (
        "set_config('search_path', ...) at line 2"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'mgttest orders', 'mgttest_old.orders', 'xmgttest.orders'",
        "SELECT E'it\\'s mgttest'",
        "SELECT 1 -- mgttest.orders\n",
        "SELECT 1 /* mgttest.orders /* nested */ set search_path */",
        'SELECT "mgttest.orders" FROM orders',
        "SELECT $$mgttest's text$$",  # a body the lexer cannot read: plain text, no dot
        "DO $$ BEGIN RAISE NOTICE 'mgttest'; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "DO 'BEGIN RAISE NOTICE ''set by mgttest''; END'",
        "SELECT 'SET search_path = x'",  # outside a body, only qualified names count
        "DO $$ BEGIN -- mgttest.orders\n NULL; END $$",
        "SELECT $mgttest$ x $mgttest$",
        "SELECT orders.mgttest FROM orders",
        "SELECT mgttest FROM orders",
        "SELECT mgttest_old.orders, xmgttest.orders, other.orders",
        'SELECT "MGTTEST".orders',  # quoted: its own case, another schema
        "UPDATE settings SET schema = 'x', search = 1",
        "SELECT current_setting('search_path')",
        "SELECT set_config('work_mem', '1MB', true)",
        "RESET search_path",
        "CREATE TABLE orders (id int)",
    ],
)
def test_strings_comments_and_other_names_do_not_match(sql: str) -> None:
    assert names_schema(sql, "mgttest") is None


WHY = (
    "in a string literal, which the server resolves as a name (nextval('...'), "
    "'...'::regclass, to_regclass, routine bodies)"
)


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        (
            "ALTER TABLE orders ALTER COLUMN note SET DEFAULT nextval('mgttest.note_seq')::text",
            f"mgttest.note_seq at line 1, {WHY}",
        ),
        ("SELECT 'mgttest.orders'::regclass", f"mgttest.orders at line 1, {WHY}"),
        ("SELECT 1;\nSELECT to_regclass('MgtTest.x')", f"MgtTest.x at line 2, {WHY}"),
        ("SELECT '\"mgttest\".orders'::regclass", f'"mgttest".orders at line 1, {WHY}'),
        ("SELECT E'it\\'s\n mgttest . orders'", f"mgttest . orders at line 2, {WHY}"),
        ("DO $$ BEGIN RAISE NOTICE 'mgttest.orders'; END $$", f"mgttest.orders at line 1, {WHY}"),
    ],
)
def test_a_string_holding_a_template_qualified_name_is_refused_and_says_why(
    sql: str, found: str
) -> None:
    assert names_schema(sql, "mgttest") == found


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        (
            "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql\nAS 'SELECT 1;\n"
            "SELECT count(*) FROM mgttest.orders'",
            "mgttest.orders at line 3",
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE plpgsql AS 'BEGIN\n"
            "PERFORM set_config(''search_path'', ''x'', true); END'",
            "set_config('search_path', ...) at line 2",
        ),
        ("DO 'BEGIN SET search_path = x; END'", "SET search_path at line 1"),
        ("DO LANGUAGE plpgsql 'BEGIN DELETE FROM \"mgttest\".t; END'", '"mgttest".t at line 1'),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'x = 1\n"
            'plpy.execute("SET search_path TO a")\'',
            "SET search_path at line 2",
        ),
    ],
)
def test_single_quoted_bodies_are_lexed_as_dollar_quoted_ones(sql: str, found: str) -> None:
    assert names_schema(sql, "mgttest") == found


def test_a_schema_with_capitals_matches_only_quoted() -> None:
    assert names_schema('SELECT "MgtTest".t', "MgtTest") == '"MgtTest".t at line 1'
    assert names_schema("SELECT MgtTest.t", "MgtTest") is None  # folds to mgttest


def test_bodies_in_other_languages_are_searched_as_text() -> None:
    python = """CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $$
# it's not SQL: 'quotes' do not pair up
return plpy.execute("SELECT n FROM mgttest.orders")[0]["n"]
$$"""
    assert names_schema(python, "mgttest") == "mgttest.orders at line 3"
    body = 'x = 1\nplpy.execute("SET search_path TO a")'
    assert names_schema(body, "mgttest", language="plpython3u") == "SET search_path at line 2"
    assert names_schema('plpy.execute("SELECT 1")', "mgttest", language="plpython3u") is None
    unreadable = 'SELECT "MGTTEST".t,\n mgttest . t, \'never closed'
    assert names_schema(unreadable, "mgttest") == "mgttest . t at line 2"
    body_unreadable = 'SELECT $$ \'unclosed mgttest.t $$, "MGTTEST".t'
    assert names_schema(body_unreadable, "mgttest") == "mgttest.t at line 1"


def test_tokens_give_the_text_back_with_lines() -> None:
    text = "SELECT 'a\nb', \"x\"\"y\" -- c\n/* d\n */ $t$\n$t$ E'\\'' $1 x$y;"
    got = list(tokens(text))
    assert "".join(t.text for t in got) == text
    kinds = [(t.kind, t.text, t.line) for t in got if t.kind != "space"]
    assert kinds == [
        ("word", "SELECT", 1),
        ("string", "'a\nb'", 1),
        ("punct", ",", 2),
        ("ident", '"x""y"', 2),
        ("comment", "-- c", 2),
        ("comment", "/* d\n */", 3),
        ("dollar", "$t$\n$t$", 4),
        ("string", "E'\\''", 5),
        ("punct", "$", 5),
        ("word", "1", 5),
        ("word", "x$y", 5),
        ("punct", ";", 5),
    ]


# ----------------------------------------------- a routine made for a tenant schema

DEF = """CREATE OR REPLACE FUNCTION total(a integer)
 RETURNS bigint
 LANGUAGE plpgsql
 SET search_path TO 'mgttest', 'public'
AS $function$
BEGIN
 SET search_path TO 'mgttest', 'public'
END $function$
"""


def test_a_list_setting_is_split_as_postgresql_does() -> None:
    assert split_guc_list('mgttest, "Odd, ""name""",public') == ["mgttest", 'Odd, "name"', "public"]
    assert split_guc_list("") == []
    assert split_guc_list('"$user", public') == ["$user", "public"]


def test_the_setting_is_rewritten_in_the_header_only() -> None:
    t = TemplateDefinition.of(Definition("function", "total(a integer)", DEF))
    assert t.search_path == ("mgttest", "public")
    made = t.for_schema("mgttest", "acme").sql
    assert " SET search_path TO 'acme', 'public'\nAS $function$" in made
    assert made.endswith("BEGIN\n SET search_path TO 'mgttest', 'public'\nEND $function$\n")
    assert t.for_schema("mgttest", "mgttest").sql == DEF
    odd = DEF.replace("'mgttest', 'public'", "E'we\\\\ird', 'it''s'", 1)
    assert setting_of(odd) == ("we\\ird", "it's")
    assert setting_line(["we\\ird", "it's"]) == " SET search_path TO E'we\\\\ird', 'it''s'\n"
    plain = Definition("function", "f()", "CREATE OR REPLACE FUNCTION f()\n RETURNS int\nAS $$1$$")
    assert TemplateDefinition.of(plain).for_schema("mgttest", "acme") == plain


def test_refusals_name_the_routine_and_the_fix() -> None:
    setting = ("mgttest", "public")
    in_body = TemplateDefinition(Definition("function", "total(a integer)", DEF), setting)
    assert refusals("mgttest", [in_body]) == [  # the header's SET is the supported form
        "function mgttest.total(a integer) changes search_path in its definition (SET "
        "search_path at line 7); tenants run it in their own schema: give it SET "
        "search_path = mgttest instead"
    ]
    body = DEF.replace("SET search_path TO 'mgttest', 'public'\nEND", "PERFORM 1;\nEND")
    assert (
        refusals("mgttest", [TemplateDefinition(Definition("function", "a()", body), setting)])
        == []
    )
    names = DEF.replace(
        " SET search_path TO 'mgttest', 'public'\nEND", " DELETE FROM mgttest.t;\nEND"
    )
    secdef = body.replace(" SET search_path TO 'mgttest', 'public'\n", " SECURITY DEFINER\n")
    got = refusals(
        "mgttest",
        [
            TemplateDefinition(Definition("function", "a()", body), ("mgttest", "public")),
            TemplateDefinition(Definition("function", "b()", names), ("mgttest", "public")),
            TemplateDefinition(Definition("function", "c()", secdef), None, secdef=True),
        ],
    )
    assert got == [
        'function mgttest.b() names schema "mgttest" in its definition (mgttest.t at line 7); '
        "give it SET search_path = mgttest and bare names",
        "function mgttest.c() is SECURITY DEFINER without SET search_path (the caller would "
        "choose what its names resolve to); give it SET search_path = mgttest",
    ]
