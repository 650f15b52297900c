"""Generated rollbacks (pure)."""

from __future__ import annotations

import pytest

from admmgt_plpy._compile import CompiledScript, Step
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._rollback import rollback_steps


def compiled(*steps: Step) -> CompiledScript:
    return CompiledScript(7, steps, "x", ())


def test_creations_are_undone_newest_first_and_schemas_are_left() -> None:
    undo = rollback_steps(
        compiled(
            Step('CREATE SCHEMA IF NOT EXISTS "s"', True, "create_schema", "s"),
            Step("CREATE TABLE ...", True, "create_table", "s.orders"),
            Step("CREATE TABLE ... PARTITION OF", True, "create_partition", "s.orders_2026_01"),
            Step("ALTER TABLE ... ADD COLUMN", True, "add_column", "s.customers", name='"note"'),
            Step(
                "ALTER TABLE ... ADD CONSTRAINT",
                True,
                "foreign_key",
                "s.orders",
                name='"orders_c_fkey"',
            ),
            Step(
                "CREATE INDEX CONCURRENTLY",
                False,
                "create_index",
                "s.orders",
                name='"s"."orders_x_idx"',
            ),
        ),
        [],
    )
    assert [u.sql for u in undo] == [
        'DROP INDEX IF EXISTS "s"."orders_x_idx"',
        'ALTER TABLE "s"."orders" DROP CONSTRAINT IF EXISTS "orders_c_fkey"',
        'ALTER TABLE "s"."customers" DROP COLUMN IF EXISTS "note"',
        'DROP TABLE IF EXISTS "s"."orders_2026_01"',
        'DROP TABLE IF EXISTS "s"."orders"',
    ]
    assert all(u.transactional for u in undo)


def test_steps_that_cannot_be_undone_need_handwritten_rows() -> None:
    script = compiled(
        Step("CREATE TABLE ...", True, "create_table", "s.t"),
        Step("ALTER TABLE ... DROP COLUMN", True, "drop_column", "s.u"),
        Step("call p()", True, "proc_call", "script_procs row 4"),
    )
    with pytest.raises(
        MetadataError,
        match=r"step 2 \(a DROP COLUMN \(its data is gone\) on "
        r"s.u\); step 3 \(a procedure call on script_procs row 4\)",
    ):
        rollback_steps(script, [])
    undo = rollback_steps(
        script,
        [
            {"id": 1, "sqltext": "ALTER TABLE s.u ADD COLUMN c int;"},
            {"id": 2, "sqltext": "DROP TABLE s.t"},
        ],
    )
    assert [u.sql for u in undo] == ["ALTER TABLE s.u ADD COLUMN c int", "DROP TABLE s.t"]


def test_a_handwritten_step_with_two_statements_is_refused() -> None:
    with pytest.raises(MetadataError):
        rollback_steps(compiled(), [{"id": 1, "sqltext": "DELETE FROM t; DROP TABLE t"}])
