"""Validation on the template refuses only what PostgreSQL would refuse:

- what an earlier script of the same run creates with a raw SQL step or a
  procedure call (a sequence, a function, a schema, a column) is not on the
  template when the ready scripts are checked, so an expression that only
  names it is left to the template run, while every other refusal stands;
- a default or USING value converts to its column's type by assignment, as in
  DDL: assignment-only casts are accepted, explicit-only ones refused.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pytest

from tests.db.fleet import Notices, call
from tests.db.scripts import step
from tests.db.test_hostile_metadata import (
    SCHEMA,
    Conn,
    base_tables,
    change,
    index,
    new_column,
    new_script,
    new_table,
    snapshot,
    template,
)
from tests.fix_db import connect

__all__ = ["template"]  # the fixture, shared with the fuzz test


def status(admin: Conn) -> dict[int, tuple[int, str | None]]:
    rows = admin.execute("SELECT id, status, last_error FROM admmgt.scripts ORDER BY id")
    return {r[0]: (r[1], r[2]) for r in rows}


def template_dsn(admin: Conn, template: str) -> str:
    return admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")


def run(admin: Conn) -> list[str]:
    notices = Notices(admin)
    with contextlib.suppress(psycopg.Error):  # a refused script ends the call with an error
        call(admin, "applyscripts")
    return notices.take()


def test_what_an_earlier_scripts_raw_steps_create_is_left_to_the_template_run(
    admin: Conn, template: str
) -> None:
    dsn = template_dsn(admin, template)
    base = base_tables(admin, ["b1"])
    call(admin, "applyscripts")
    # Script 2: raw steps only, making a schema, a sequence, a function and a column.
    new_script(admin, 2)
    step(admin, 2, 1, "CREATE SCHEMA fvapp")
    step(admin, 2, 2, "CREATE SEQUENCE fvapp.s")
    step(
        admin,
        2,
        3,
        "CREATE FUNCTION fvapp.pos(integer) RETURNS boolean IMMUTABLE LANGUAGE sql"
        " AS 'SELECT $1 > 0'",
    )
    step(admin, 2, 4, f"ALTER TABLE {SCHEMA}.b1 ADD COLUMN extra integer")
    # Script 3 uses all four.
    new_script(admin, 3)
    tid = new_table(admin, 3, "t3")
    new_column(admin, 3, tid, "n", "bigint", "nextval('fvapp.s')")
    index(admin, 3, base["b1"], "i3", "fvapp.pos(k1)")
    index(admin, 3, base["b1"], "i3e", columns=("extra",))
    change(admin, 3, base["b1"], "v", newdatatype="bigint", usingexpr="v + extra")
    # Script 4: structural problems are refused all the same.
    new_script(admin, 4)
    t4 = new_table(admin, 4, "t4")
    r1 = new_column(admin, 4, t4, "c", "bigint", "count(*)")
    r2 = new_column(admin, 4, t4, "d", "integer", "nosuchcolumn")
    r3 = index(admin, 4, base["b1"], "i4", "random() > 0.5")

    notices = run(admin)

    found = status(admin)
    assert found[2] == (2, None)
    assert found[3] == (2, None), found[3]
    assert [x for x in notices if "left to the template run" in x and "script 3" in x], notices
    error = found[4][1] or ""
    assert found[4][0] == 3
    assert error.startswith("validation on the template failed, 3 problems:"), error
    assert f"script 4, script_table_columns row {r1}, defaultval" in error
    assert "aggregate functions are not allowed" in error
    assert f"script 4, script_table_columns row {r2}, defaultval" in error
    assert "a default cannot refer to columns" in error
    assert f"script 4, script_indexes row {r3}, wherepredicate" in error
    assert "allows only IMMUTABLE functions" in error
    with connect(dsn) as conn:
        default = conn.execute(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d"
            " WHERE d.adrelid = 'mgttest.t3'::regclass"
        ).fetchone()
        assert default == ("nextval('fvapp.s'::regclass)",)
        predicate = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'i3'"
        ).fetchone()
        assert predicate is not None and "WHERE fvapp.pos(k1)" in predicate[0]
        assert conn.execute("SELECT to_regclass('mgttest.i3e') IS NOT NULL").fetchone() == (True,)
        assert conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'b1' AND column_name = 'v'"
        ).fetchone() == ("bigint",)


def test_a_scripts_own_raw_step_runs_too_late_for_its_expressions(
    admin: Conn, template: str
) -> None:
    """Raw steps run after the script's tables, columns and indexes, so what they
    create cannot be used there: refused before the template is touched, with
    what to do."""
    dsn = template_dsn(admin, template)
    base_tables(admin, ["b1"])
    call(admin, "applyscripts")
    before = snapshot(dsn)
    new_script(admin, 2)
    step(admin, 2, 1, f"CREATE SEQUENCE {SCHEMA}.s")
    tid = new_table(admin, 2, "t2")
    row = new_column(admin, 2, tid, "n", "bigint", f"nextval('{SCHEMA}.s')")

    run(admin)

    found = status(admin)[2]
    assert found[0] == 3
    error = found[1] or ""
    assert error.startswith(
        f"validation on the template failed: script 2, script_table_columns row {row}, defaultval"
    ), error
    assert "42P01" in error
    assert "raw SQL steps and procedure calls run after its tables" in error
    assert "create it in an earlier script" in error
    assert snapshot(dsn) == before


# (column type, default): what PostgreSQL accepts in CREATE TABLE, by assignment.
ACCEPTED = [
    ("money", "0"),
    ("json", "'{}'::jsonb"),
    ("integer", "2.5"),
    ("integer", "'5'"),
    ("integer", "NULL"),
    ("text", "5"),
    ("character varying(10)", "now()"),
    ("smallint[]", "ARRAY[1, 2]"),
    ("date", "now()"),
    ("bigint", "1"),
]
# ... and what it refuses, with what the refusal says.
REFUSED = [
    ("integer", "now()", "42846 cannot cast type timestamp with time zone to integer"),
    ("date", "1", "42846 cannot cast type integer to date"),
    ("integer", "'5'::text", "42804 the value is of type text, which PostgreSQL converts"),
    ("boolean", "1", "42804 the value is of type integer, which PostgreSQL converts"),
]


def test_a_default_converts_by_assignment_as_in_ddl(admin: Conn, template: str) -> None:
    dsn = template_dsn(admin, template)
    # PostgreSQL's own verdict first, so that the lists above cannot be wrong.
    for datatype, default in [(t, d) for t, d in ACCEPTED] + [(t, d) for t, d, _ in REFUSED]:
        with connect(dsn) as conn:
            try:
                conn.execute(f"CREATE TEMP TABLE probe (c {datatype} DEFAULT {default})")
                accepted = True
            except psycopg.errors.DatatypeMismatch:
                accepted = False
        assert accepted == ((datatype, default) in ACCEPTED), (datatype, default)

    new_script(admin, 1)
    tid = new_table(admin, 1, "ok")
    for i, (datatype, default) in enumerate(ACCEPTED):
        new_column(admin, 1, tid, f"c{i}", datatype, default)
    new_script(admin, 2)
    t2 = new_table(admin, 2, "bad")
    rows = [new_column(admin, 2, t2, f"c{i}", t, d) for i, (t, d, _) in enumerate(REFUSED)]

    run(admin)

    found = status(admin)
    assert found[1] == (2, None), found[1]
    with connect(dsn) as conn:
        count = conn.execute(
            "SELECT count(*) FROM pg_attrdef WHERE adrelid = 'mgttest.ok'::regclass"
        ).fetchone()
        assert count == (len(ACCEPTED) - 1,)  # DEFAULT NULL stores no default
    assert found[2][0] == 3
    error = found[2][1] or ""
    assert error.startswith(f"validation on the template failed, {len(REFUSED)} problems:"), error
    for row, (datatype, _, reason) in zip(rows, REFUSED, strict=True):
        line = next(x for x in error.splitlines() if f"script_table_columns row {row}," in x)
        assert line.startswith(f"script 2, script_table_columns row {row}, defaultval"), line
        assert f"of type {datatype}" in line and reason in line, line


@pytest.mark.parametrize(
    ("newtype", "using", "ok"),
    [
        ("smallint", None, True),  # integer to smallint: an assignment cast
        ("money", None, True),  # integer to money: an assignment cast
        ("boolean", None, False),  # integer to boolean: explicit only
        ("money", "v * 2", True),
        ("boolean", "v + 1", False),
    ],
)
def test_a_type_change_converts_by_assignment(
    admin: Conn, template: str, newtype: str, using: str | None, ok: bool
) -> None:
    base = base_tables(admin, ["b1"])
    call(admin, "applyscripts")
    new_script(admin, 2)
    row = change(admin, 2, base["b1"], "v", newdatatype=newtype, usingexpr=using)
    run(admin)
    found: Any = status(admin)[2]
    if ok:
        assert found == (2, None)
    else:
        assert found[0] == 3
        assert f"script 2, script_column_changes row {row}" in found[1]
        assert "42804 the value is of type integer" in found[1], found[1]
