"""How a CALL tells it was sent together with other statements (pure)."""

from __future__ import annotations

import pytest

from admmgt_plpy._runguard import statements_in


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("CALL admmgt.applyscripts()", 1),
        ("CALL admmgt.applyscripts();", 1),
        ("  CALL admmgt.applyscripts() ;  -- go\n", 1),
        ("BEGIN; CALL admmgt.applyscripts(); ROLLBACK;", 3),
        ("CALL admmgt.applyscripts(); SELECT 1", 2),
        ("CALL admmgt.replayscripts('a;b', 3)", 1),
        ("CALL admmgt.replayscripts(E'a\\';b', 3)", 1),
        ('CALL admmgt.replayscripts("x;y", 3)', 1),
        ("CALL x($$;$$); /* ; */", 1),
        ("CALL x($t$ $$ ; $$ $t$) -- ;\n", 1),
        ("/* a /* nested ; */ ; */ CALL x()", 1),
        ("CALL x($1, $2); CALL y()", 2),
        (";;", 0),
        ("", 0),
    ],
)
def test_statements_are_counted_outside_quotes_and_comments(text: str, count: int) -> None:
    assert statements_in(text) == count
