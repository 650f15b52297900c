"""names_schema: SQL that schema tenants cannot run, found by the splitter's lexer."""

from __future__ import annotations

import pytest

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
    RAISE NOTICE 'nor does mgttest.orders in a string';
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
        "SELECT 'mgttest.orders'",
        "SELECT E'it\\'s mgttest.orders'",
        "SELECT 1 -- mgttest.orders\n",
        "SELECT 1 /* mgttest.orders /* nested */ set search_path */",
        'SELECT "mgttest.orders" FROM orders',
        "SELECT $$mgttest's text$$",  # a body the lexer cannot read: plain text, no dot
        "DO $$ BEGIN RAISE NOTICE 'mgttest.orders'; END $$",
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
