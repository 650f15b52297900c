"""Identifier rules, quoting and the pre-checks of SQL text from metadata."""

from __future__ import annotations

import pytest

from admmgt_plpy import _errors
from admmgt_plpy._names import (
    AdmmgtError,
    MetadataError,
    check_datatype,
    check_expression,
    check_identifier,
    check_statement,
    fold,
    qualified,
    quote_ident,
    quote_literal,
)

WHAT = "script 4, script_tables row 12, tablename"


def test_metadata_error_is_the_package_error_with_a_hint() -> None:
    error = MetadataError("bad", hint="fix it")
    assert isinstance(error, _errors.MetadataError)
    assert isinstance(error, AdmmgtError)
    assert error.hint == "fix it"
    assert error.problems == ("bad",)


NOT_FOLDED = "a letter outside ASCII that would be created as '{}'; write the name in lower case"


def test_fold_lowers_like_unquoted_names() -> None:
    assert fold("BigClient") == "bigclient"
    assert fold("Straße") == "straße"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Orders", "orders"),
        ("_tmp", "_tmp"),
        ("order_2026$x", "order_2026$x"),
        ("Größe", "größe"),
        ("a" * 63, "a" * 63),
        ("é" * 31, "é" * 31),  # 62 bytes
    ],
)
def test_check_identifier_accepts_and_folds(name: str, expected: str) -> None:
    assert check_identifier(name, what=WHAT) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        ("a" * 64, "it is 64 bytes long"),
        ("é" * 32, "it is 64 bytes long"),
        ("1orders", "it starts with '1'"),
        ("$x", "it starts with '$'"),
        ('or"ders', "it contains '\"'"),
        ("orders; drop table x", "it contains ';'"),
        ("my table", "it contains ' '"),
        ("tab\x00le", "it contains '\\x00'"),
        ("tab\nle", "it contains '\\n'"),
        ("a-b", "it contains '-'"),
        # issue 20: Python would fold these to another name than PostgreSQL keeps
        ("\u212a_idx", f"it contains '\u212a', {NOT_FOLDED.format('k')}"),
        ("\u00c9tat", f"it contains '\u00c9', {NOT_FOLDED.format(chr(0xE9))}"),
        ("e\u0301tat", "it is not in Unicode normal form NFC; retype it as composed characters"),
    ],
)
def test_check_identifier_refuses_with_what_value_and_rule(name: str, reason: str) -> None:
    with pytest.raises(MetadataError) as caught:
        check_identifier(name, what=WHAT)
    assert caught.value.message == (
        f"{WHAT}: {name!r} is not a valid identifier: {reason}; "
        "use 1 to 63 bytes of letters, digits, _ or $, starting with a letter or _"
    )


def test_check_identifier_refuses_missing_value() -> None:
    with pytest.raises(MetadataError, match=r"None is not a valid identifier: it is missing"):
        check_identifier(None, what=WHAT)


def test_quote_ident_always_quotes_and_doubles_quotes() -> None:
    assert quote_ident("orders") == '"orders"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert qualified("mgttest", "orders") == '"mgttest"."orders"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eu", "'eu'"),
        ("O'Brien", "'O''Brien'"),
        ("a\\b", "E'a\\\\b'"),
        ("it's a\\b", "E'it''s a\\\\b'"),
        ("", "''"),
    ],
)
def test_quote_literal_matches_postgresql(value: str, expected: str) -> None:
    assert quote_literal(value) == expected


@pytest.mark.parametrize(
    "text",
    [
        "bigint",
        "numeric(12,2)",
        "character varying(20)",
        "timestamp with time zone",
        "text[]",
        "int[][]",
        "mgttest.my_type",
        'mgttest."MyType"',
        "double precision",
    ],
)
def test_check_datatype_accepts_types(text: str) -> None:
    assert check_datatype(f"  {text} ", what="w") == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("int; drop table x", "it contains ';'"),
        ("int -- x", "it contains '-'"),
        ("int /* x */", "it contains '/'"),
        ("numeric(12,2", "it has an unmatched '('"),
        ("numeric)12(", "it has an unmatched ')'"),
        ("text]", "it has an unmatched ']'"),
        ('"MyType', "its double quotes are unbalanced"),
        ("int\tarray", "it contains '\\t'"),
    ],
)
def test_check_datatype_refuses(text: str, reason: str) -> None:
    with pytest.raises(MetadataError) as caught:
        check_datatype(text, what="script 1, script_table_columns row 3, datatype")
    assert caught.value.message.startswith(
        f"script 1, script_table_columns row 3, datatype: {text!r} is not a data type: {reason};"
    )


def test_check_datatype_refuses_empty() -> None:
    with pytest.raises(MetadataError, match="it is missing or empty"):
        check_datatype("  ", what="w")


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "now()",
        "'open'",
        "'a;b'",
        "'it''s; fine'",
        "E'it\\'s; fine'",
        "e'\\\\'",
        '"weird;col" > 0',
        "$$a;b$$",
        "$tag$ ; -- /* $tag$",
        "coalesce(a, b) + (1 * 2)",
        "amount::numeric(12,2)",
        "status = ANY (ARRAY['a', 'b'])",
        "a$b$c > 1",
        "x - 1",
        "'--not a comment'",
        "U&'d\\0061t'",
        # commas inside parentheses, brackets or quotes are one expression
        "coalesce(a, b)",
        "ARRAY[1, 2]",
        "'a, evil int'",
        "x IN (1, 2)",
        "now()::timestamp with time zone",
        '"select" > 0',
        "selected > 0",
    ],
)
def test_check_expression_accepts(text: str) -> None:
    assert check_expression(f" {text} ", what="w") == text


TOP_LEVEL_COMMA = (
    "it contains ',' outside parentheses, which would end the expression and start another "
    "item of the statement"
)
SUBQUERY = (
    "it contains a subquery ({} after '('), which PostgreSQL does not allow in a default, "
    "USING expression or index predicate"
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0); drop table x; --", "it has an unmatched ')'"),
        ("0; drop table x", "it contains ';' outside quotes"),
        ("1 -- comment", "it contains a comment (--) outside quotes"),
        ("1 /* c */", "it contains a comment (/*) outside quotes"),
        ("(1", "it has an unmatched '('"),
        ("'open", "it has an unterminated string"),
        ("'it''s", "it has an unterminated string"),
        ('"col', "it has an unterminated quoted identifier"),
        ("E'\\'; drop table x", "it has an unterminated E'...' string"),
        ("$$a;b", "it has an unterminated dollar-quoted string $$"),
        ("$x$a$y$", "it has an unterminated dollar-quoted string $x$"),
        # A standard string ends at the second quote: the ; is outside.
        ("'\\'; drop table x; 'y'", "it contains ';' outside quotes"),
        # After a number an E string starts (PostgreSQL 15 lexes 1e'..' as 1, e'..'),
        # so the ; here is outside quotes and must be seen.
        ("1e'\\'' ; 'x'", "it contains ';' outside quotes"),
        ("a]", "it has an unmatched ']'"),
        ("ARRAY[1", "it has an unmatched '['"),
        ("a$b$c > $1", "it contains a parameter ($1), which nothing would fill in"),
        # issue 20: a top-level comma ends one item of ALTER/CREATE TABLE and starts another
        ("'a', evil int", TOP_LEVEL_COMMA),
        ("'x', drop column k1", TOP_LEVEL_COMMA),
        ("'x', owner to pg_monitor", TOP_LEVEL_COMMA),
        ("v::bigint, drop column k3", TOP_LEVEL_COMMA),
        ("'a', constraint fz_evil check (true)", TOP_LEVEL_COMMA),
        # issue 20: subqueries are allowed in no expression field
        ("(select pg_sleep(5))", SUBQUERY.format("SELECT")),
        ("(select 1) is null", SUBQUERY.format("SELECT")),
        ("exists ( (SELECT 1) )", SUBQUERY.format("SELECT")),
        ("x in (values (1))", SUBQUERY.format("VALUES")),
        ("array(table t)", SUBQUERY.format("TABLE")),
        ("(with q as (select 1) select * from q)", SUBQUERY.format("WITH")),
    ],
)
def test_check_expression_refuses(text: str, reason: str) -> None:
    what = "script 2, script_table_columns row 9, defaultval"
    with pytest.raises(MetadataError) as caught:
        check_expression(text, what=what)
    assert caught.value.message == (
        f"{what}: {text!r} is refused as an SQL expression: {reason}; "
        "write one expression, with no ';', top-level ',', subquery, parameter or comments "
        "outside quotes"
    )


def test_check_expression_refuses_empty() -> None:
    with pytest.raises(MetadataError, match="is not an expression: it is missing or empty"):
        check_expression("", what="w")


def test_identifier_with_dollar_is_not_a_dollar_quote() -> None:
    # abc$def$ is one identifier, so the ; after it is a second statement.
    with pytest.raises(MetadataError, match="outside quotes"):
        check_expression("abc$def$ ; $def$", what="w")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call mgttest.testproc1()", "call mgttest.testproc1()"),
        ("call mgttest.testproc1();", "call mgttest.testproc1()"),
        ("call mgttest.testproc1() ;  \n", "call mgttest.testproc1()"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
            "BEGIN\n  PERFORM 1; -- one\n  RETURN 2;\nEND\n$body$;",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
            "BEGIN\n  PERFORM 1; -- one\n  RETURN 2;\nEND\n$body$",
        ),
        ("DO $$BEGIN RAISE NOTICE 'x;y'; END$$", "DO $$BEGIN RAISE NOTICE 'x;y'; END$$"),
    ],
)
def test_check_statement_allows_one_statement(text: str, expected: str) -> None:
    assert check_statement(text, what="w") == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("call a(); call b()", "it contains more than one statement (a ';' outside quotes)"),
        ("call a();;", "it contains more than one statement (a ';' outside quotes)"),
        ("select 1; -- x", "it contains a comment (--) outside quotes"),
        (";", "it is empty"),
        ("DO $$BEGIN END$", "it has an unterminated dollar-quoted string $$"),
    ],
)
def test_check_statement_refuses(text: str, reason: str) -> None:
    what = "script 5, script_steps row 2, sqltext"
    with pytest.raises(MetadataError) as caught:
        check_statement(text, what=what)
    assert caught.value.message == (
        f"{what}: {text!r} is refused as an SQL statement: {reason}; give exactly one "
        "statement, with no comments outside quotes, and split several statements into "
        "separate rows"
    )
