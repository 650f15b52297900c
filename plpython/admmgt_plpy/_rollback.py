"""The rollback of a script: hand-written steps, or the inverse of its compiled steps.

Pure. A step whose effect the compiler knows how to undo is inverted (a table
created is dropped, a column added is dropped, a key, index or row-level
security policy added is dropped); one it cannot undo (ALTER or DROP COLUMN,
procedure calls, raw SQL) makes the whole script need hand-written rollback
steps, which then replace the generated ones entirely. Schemas created with IF NOT EXISTS, and the
``set_tenant_context`` function created with OR REPLACE, are left alone: the
script cannot know whether it made them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from admmgt_plpy._compile import CompiledScript, Step
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._names import check_statement, qualified

NOT_INVERTIBLE = {
    "alter_column": "an ALTER COLUMN",
    "drop_column": "a DROP COLUMN (its data is gone)",
    "proc_call": "a procedure call",
    "sql": "a raw SQL step",
}


def _table(target: str) -> str:
    schema, name = target.split(".", 1)  # compiled targets are checked identifiers: no dots
    return qualified(schema, name)


def invert(step: Step) -> Step | None:
    """The step undoing ``step``; None when there is nothing to undo."""
    if step.kind in ("create_table", "create_partition"):
        sql = f"DROP TABLE IF EXISTS {_table(step.target)}"
    elif step.kind == "add_column" and step.name:
        sql = f"ALTER TABLE {_table(step.target)} DROP COLUMN IF EXISTS {step.name}"
    elif step.kind == "foreign_key" and step.name:
        sql = f"ALTER TABLE {_table(step.target)} DROP CONSTRAINT IF EXISTS {step.name}"
    elif step.kind == "create_index" and step.name:
        sql = f"DROP INDEX IF EXISTS {step.name}"
    elif step.kind == "create_policy" and step.name:
        sql = f"DROP POLICY IF EXISTS {step.name} ON {_table(step.target)}"
    elif step.kind == "enable_rls":
        sql = (
            f"ALTER TABLE IF EXISTS {_table(step.target)} NO FORCE ROW LEVEL SECURITY, "
            "DISABLE ROW LEVEL SECURITY"
        )
    elif step.kind in ("create_schema", "tenant_context", "set_tablespace"):
        # Made with IF NOT EXISTS / OR REPLACE: the script cannot know it made them,
        # and another script's tables may rely on them.
        return None
    else:
        raise ValueError(step.kind)
    return Step(sql, True, f"undo_{step.kind}", step.target, name=step.name)


def rollback_steps(
    script: CompiledScript, handwritten: Iterable[Mapping[str, object]]
) -> tuple[Step, ...]:
    """The steps that undo ``script``, to run in one transaction; MetadataError if none can."""
    rows = list(handwritten)
    if rows:
        steps = []
        for row in rows:
            what = f"script {script.script_id}, script_rollback_steps row {row['id']}, sqltext"
            steps.append(
                Step(
                    check_statement(row["sqltext"], what=what),
                    True,
                    "rollback_sql",
                    f"script_rollback_steps row {row['id']}",
                )
            )
        return tuple(steps)
    blocking = [
        f"step {n} ({NOT_INVERTIBLE[s.kind]} on {s.target})"
        for n, s in enumerate(script.steps, 1)
        if s.kind in NOT_INVERTIBLE
    ]
    if blocking:
        raise MetadataError(
            f"script {script.script_id} cannot be rolled back automatically: "
            + "; ".join(blocking),
            hint=f"Write its rollback as rows of admmgt.script_rollback_steps (scriptid = "
            f"{script.script_id}, status = 1); they replace the generated rollback.",
        )
    return tuple(undo for undo in (invert(s) for s in reversed(script.steps)) if undo is not None)
