"""What a rollback would drop, and how applied rows are compared (pure)."""

from __future__ import annotations

from typing import Any

from admmgt_plpy._applied import differences
from admmgt_plpy._compile import Step
from admmgt_plpy._preflight import data_at_stake, guards


def test_only_dropping_steps_are_at_stake_and_each_gets_a_counting_query() -> None:
    undo = (
        Step('DROP INDEX IF EXISTS "s"."i"', True, "undo_create_index", "s.orders", name='"i"'),
        Step("ALTER TABLE ... DROP COLUMN", True, "undo_add_column", "s.orders", name='"No""te"'),
        Step('DROP TABLE IF EXISTS "s"."orders"', True, "undo_create_table", "s.orders"),
    )
    column, table = data_at_stake(undo)
    assert (column.step, column.what) == (2, 's.orders.No"te')
    assert 'WHERE "No""te" IS NOT NULL' in column.query.replace("''", "'")
    assert "attname = 'No\"te'" in column.query
    assert (table.step, table.what) == (3, "s.orders")
    assert table.query.startswith("SELECT CASE WHEN to_regclass(")
    # a missing object counts as nothing instead of failing
    assert table.query.endswith("ELSE 0 END AS n")


def test_guards_refuse_inside_the_transaction_and_never_break_their_quoting() -> None:
    (stake,) = data_at_stake((Step("DROP TABLE", True, "undo_create_table", "s.it's"),))
    (guard,) = guards([stake], 5)
    assert guard.kind == "guard" and guard.transactional
    assert guard.sql.startswith("DO $admmgt$ BEGIN IF (SELECT CASE")
    assert "rollbackScript(5, t_drop_data => true)" in guard.sql
    assert guard.sql.count("$admmgt$") == 2


def test_differences_name_each_changed_field_and_each_added_or_deleted_row() -> None:
    columns: list[dict[str, Any]] = [
        {"id": 1, "datatype": "text", "status": 1},
        {"id": 2, "datatype": "int", "status": 1},
    ]
    kept: dict[str, Any] = {
        "anchor": "2026-01-01",
        "rows": {"columns": columns},
    }
    now: dict[str, list[dict[str, Any]]] = {
        "columns": [{"id": 1, "datatype": "varchar(10)", "status": 2}, {"id": 3}]
    }
    found = differences(9, kept, "2026-01-01", now)
    assert [(d["row_id"], d["field"], d["problem"]) for d in found] == [
        (1, "datatype", "changed"),  # status is admmgt's own: not compared
        (2, None, "row deleted"),
        (3, None, "row added"),
    ]
    assert found[0]["table_name"] == "admmgt.script_table_columns"
    assert (found[0]["applied_value"], found[0]["current_value"]) == ("text", "varchar(10)")
    assert differences(9, kept, "2026-01-02", {"columns": columns})[0]["field"] == "created_date"
