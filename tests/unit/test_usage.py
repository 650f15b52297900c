"""tenant_usage hides every string constant of a statement's text."""

from __future__ import annotations

import json

import pytest

from admmgt_plpy._usage import _hide_statement_literals, hide_literals


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD '***'"),
        (
            "alter role bob with encrypted password 'it''s secret' valid until 'infinity'",
            "alter role bob with encrypted password '***' valid until '***'",
        ),
        ("ALTER ROLE bob PASSWORD E'a\\'b c'", "ALTER ROLE bob PASSWORD '***'"),
        ("CREATE ROLE x PASSWORD $pw$s3cret'$pw$ LOGIN", "CREATE ROLE x PASSWORD '***' LOGIN"),
        ("ALTER ROLE bob PASSWORD $$x$$", "ALTER ROLE bob PASSWORD '***'"),
        (
            "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password 'p')",
            "CREATE USER MAPPING FOR a SERVER s OPTIONS (user '***', password '***')",
        ),
        ("ALTER ROLE bob PASSWORD 'cut off by QUERY_CH", "ALTER ROLE bob PASSWORD '***..."),
        # Normalised statements have no constants; $n and names stay as they are.
        (
            "SELECT \"it's\", a$b FROM t WHERE x = $1 -- don't\n AND y = $2 /* it's */",
            "SELECT \"it's\", a$b FROM t WHERE x = $1 -- don't\n AND y = $2 /* it's */",
        ),
        ("SELECT name FROM t WHERE e = $1", "SELECT name FROM t WHERE e = $1"),
    ],
)
def test_string_constants_are_hidden(query: str, shown: str) -> None:
    assert hide_literals(query) == shown


def test_statements_json_keeps_everything_but_the_constants() -> None:
    text = json.dumps([{"query": "ALTER ROLE a PASSWORD 'pw'", "calls": 3, "mean_ms": 1.5}])
    assert json.loads(_hide_statement_literals(text)) == [
        {"query": "ALTER ROLE a PASSWORD '***'", "calls": 3, "mean_ms": 1.5}
    ]
