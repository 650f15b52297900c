"""Applied scripts' metadata: kept, compared, repaired (Flyway's validate and repair).

When a script first reaches the template, admmgt keeps its metadata rows as
they were (``scripts.applied_rows``, canonical JSON: every column of every row
the compiler read) beside their hash (``metadata_checksum``).

- ``validate_scripts()`` compares every applied script's rows with what was
  kept, naming the table, the row and the field that changed; a script applied
  before 0.4.0 has only its hash, so only "changed" can be said of it.
- ``repair_script(id, 'accept')`` takes the rows as they are now as the applied
  ones (the DBA says the databases already match them, or that the change does
  not matter); ``repair_script(id, 'restore')`` puts the kept rows back.

Neither touches a tenant or the template: they reconcile metadata only.
"""

from __future__ import annotations

import json
from typing import Any

from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._locks import take_operation_lock
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._scripts import NOT_CHECKSUMMED, load_rows, load_script, metadata_checksum

# Where each part of a script's rows lives, in the order rows can be inserted.
PART_TABLES = {
    "tables": "script_tables",
    "referenced_tables": "script_tables",
    "columns": "script_table_columns",
    "fkeys": "script_table_fkeys",
    "partitions": "script_table_partitions",
    "procs": "script_procs",
    "column_changes": "script_column_changes",
    "indexes": "script_indexes",
    "steps": "script_steps",
}
RAW_PARTS = ("procs", "steps")  # statements run as written, as superuser


def _canonical(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows as JSON gives them back (dates and numbers as the snapshot holds them)."""
    return json.loads(json.dumps(rows, sort_keys=True, default=str))  # type: ignore[no-any-return]


def _compared(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in NOT_CHECKSUMMED}


def differences(
    script_id: int,
    kept: dict[str, Any],
    anchor: str,
    rows: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Each difference between the kept snapshot and the rows now, one per field. Pure."""
    found: list[dict[str, Any]] = []

    def add(part: str, row_id: Any, field: str | None, old: Any, new: Any, problem: str) -> None:
        found.append(
            {
                "script_id": script_id,
                "table_name": f"admmgt.{PART_TABLES.get(part, 'scripts')}",
                "row_id": row_id,
                "field": field,
                "applied_value": None if old is None else str(old),
                "current_value": None if new is None else str(new),
                "problem": problem,
            }
        )

    if kept.get("anchor") != anchor:
        add("scripts", script_id, "created_date", kept.get("anchor"), anchor, "changed")
    now = _canonical(rows)
    for part in PART_TABLES:
        before = {r["id"]: r for r in kept.get("rows", {}).get(part, [])}
        after = {r["id"]: r for r in now.get(part, [])}
        for row_id in sorted(before.keys() | after.keys()):
            if row_id not in after:
                add(part, row_id, None, None, None, "row deleted")
            elif row_id not in before:
                add(part, row_id, None, None, None, "row added")
            else:
                old, new = _compared(before[row_id]), _compared(after[row_id])
                for field in sorted(old.keys() | new.keys()):
                    if old.get(field) != new.get(field):
                        add(part, row_id, field, old.get(field), new.get(field), "changed")
    return found


def _applied_ids(plpy: Any, script_id: int | None) -> list[int]:
    return [
        r["id"]
        for r in plpy.execute(
            plpy.prepare(
                """SELECT id FROM admmgt.scripts WHERE metadata_checksum IS NOT NULL
                   AND id = coalesce($1, id) ORDER BY id""",
                ["int4"],
            ),
            [script_id],
        )
    ]


def validate_scripts(plpy: Any, *, script_id: int | None = None) -> list[dict[str, Any]]:
    """Every change to the rows of scripts that reached the template; none: all intact."""
    found: list[dict[str, Any]] = []
    for sid in _applied_ids(plpy, script_id):
        head, rows = load_rows(plpy, sid)
        if metadata_checksum(head["anchor"], rows) == head["metadata_checksum"]:
            continue
        if head["applied_rows"] is None:
            found.append(
                {
                    "script_id": sid,
                    "table_name": None,
                    "row_id": None,
                    "field": None,
                    "applied_value": None,
                    "current_value": None,
                    "problem": "its rows changed after it was applied (applied before admmgt "
                    "0.4.0 kept the rows: only their hash can be compared)",
                }
            )
            continue
        found += differences(sid, json.loads(head["applied_rows"]), head["anchor"], rows)
    return found


def repair_script(plpy: Any, *, script_id: int, action: str, caller_is_superuser: bool) -> None:
    """Make an applied script's rows and its kept snapshot agree again."""
    action = (action or "").lower()
    if action not in ("accept", "restore"):
        raise AdmmgtError(
            f"repair_script: t_action must be 'accept' or 'restore', not {action!r}",
            hint=f"CALL admmgt.repair_script({script_id}, 'restore');",
        )
    take_operation_lock(plpy, "migrations", "repair_script")
    if script_id not in _applied_ids(plpy, script_id):
        raise AdmmgtError(
            f"repair_script: script {script_id} has not reached the template; only applied "
            "scripts are kept and repaired",
            hint="Edit the rows of a script that is not applied freely.",
        )
    head, rows = load_rows(plpy, script_id)
    changes = validate_scripts(plpy, script_id=script_id)
    if not changes:
        plpy.notice(
            f"repair_script: script {script_id}'s rows match the applied ones; nothing to do"
        )
        return
    if action == "accept":
        _accept(plpy, script_id, rows, caller_is_superuser)
    else:
        if head["applied_rows"] is None:
            raise AdmmgtError(
                f"repair_script: script {script_id} was applied before admmgt 0.4.0 kept rows; "
                "only its hash is known, so its rows cannot be restored",
                hint=f"Put the rows back by hand, or CALL admmgt.repair_script({script_id}, "
                "'accept');",
            )
        _restore(plpy, script_id, head["status"], json.loads(head["applied_rows"]), rows)
        left = validate_scripts(plpy, script_id=script_id)
        if left:
            raise AdmmgtError(
                f"repair_script: script {script_id}'s rows still differ after the restore "
                f"({len(left)} difference(s), first: {_describe(left[0])}); nothing was changed",
                hint="Set admmgt.scripts.created_date back by hand if it changed.",
            )
    plpy.notice(
        f"repair_script: script {script_id}: {len(changes)} difference(s) "
        + ("accepted as applied" if action == "accept" else "restored to the applied rows")
        + ": "
        + "; ".join(_describe(c) for c in changes[:10])
        + (" ..." if len(changes) > 10 else "")
    )


def _shown(value: Any) -> str:
    """A value as SQL writes it: NULL, or a quoted literal (never Python's None)."""
    return "NULL" if value is None else quote_literal(str(value))


def _describe(change: dict[str, Any]) -> str:
    where = f"{change['table_name']} row {change['row_id']}"
    if change["field"]:
        return (
            f"{where} {change['field']}: {_shown(change['applied_value'])} -> "
            f"{_shown(change['current_value'])}"
        )
    return f"{where}: {change['problem']}"


def _accept(
    plpy: Any, script_id: int, rows: dict[str, list[dict[str, Any]]], superuser: bool
) -> None:
    try:
        script = load_script(plpy, script_id)
    except MetadataError as exc:
        raise AdmmgtError(
            f"repair_script: script {script_id}'s rows no longer compile, so they cannot be "
            f"accepted; nothing was changed:\n{exc.message}",
            hint=f"Fix them, or CALL admmgt.repair_script({script_id}, 'restore');",
        ) from None
    if any(rows.get(p) for p in RAW_PARTS) and not superuser:
        raise AdmmgtError(
            f"repair_script: script {script_id} has raw SQL steps or procedure calls, which run "
            "as superuser when it is replayed; only a superuser may accept changed rows for it; "
            "nothing was changed",
            hint="Ask a superuser, or restore the rows (t_action => 'restore').",
        )
    plpy.execute(
        plpy.prepare(
            """UPDATE admmgt.scripts SET metadata_checksum = $2, applied_rows = $3::jsonb
               WHERE id = $1""",
            ["int4", "text", "text"],
        ),
        [script_id, script.metadata_checksum, script.snapshot],
    )


def _restore(
    plpy: Any,
    script_id: int,
    status: int,
    kept: dict[str, Any],
    rows: dict[str, list[dict[str, Any]]],
) -> None:
    """Rows added since are deleted (children first), changed fields are set back,
    deleted rows are inserted again (parents first). Rows of other scripts that
    this one references are set back or re-inserted, never deleted."""
    now = _canonical(rows)
    parts = list(PART_TABLES)
    json_columns = {
        (r["relname"], r["attname"])
        for r in plpy.execute(
            """SELECT c.relname, a.attname FROM pg_catalog.pg_attribute AS a
               JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
               WHERE c.relnamespace = 'admmgt'::regnamespace AND a.attnum > 0
                 AND a.atttypid IN ('json'::regtype, 'jsonb'::regtype)"""
        )
    }

    def record(part: str, row: dict[str, Any]) -> str:
        """The row as jsonb_populate_record reads it: json columns as JSON, not text."""
        table = PART_TABLES[part]
        return json.dumps(
            {
                k: json.loads(v) if (table, k) in json_columns and isinstance(v, str) else v
                for k, v in row.items()
            }
        )

    for part in reversed(parts):
        if part == "referenced_tables":
            continue
        before = {r["id"] for r in kept["rows"].get(part, [])}
        for row in now.get(part, []):
            if row["id"] not in before:
                plpy.execute(
                    plpy.prepare(
                        f"DELETE FROM admmgt.{quote_ident(PART_TABLES[part])} WHERE id = $1",
                        ["int4"],
                    ),
                    [row["id"]],
                )
    for part in parts:
        table = f"admmgt.{quote_ident(PART_TABLES[part])}"
        after = {r["id"]: r for r in now.get(part, [])}
        for old in kept["rows"].get(part, []):
            new = after.get(old["id"])
            if new is None:
                if status == 2 and "status" in old:
                    old = {**old, "status": 2}
                columns = ", ".join(quote_ident(c) for c in sorted(old))
                plpy.execute(
                    plpy.prepare(
                        f"INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE"
                        f" SELECT {columns} FROM jsonb_populate_record(NULL::{table}, $1::jsonb)",
                        ["text"],
                    ),
                    [record(part, old)],
                )
                continue
            changed = sorted(
                c for c in _compared(old) if _compared(old).get(c) != _compared(new).get(c)
            )
            if changed:
                columns = ", ".join(quote_ident(c) for c in changed)
                plpy.execute(
                    plpy.prepare(
                        f"UPDATE {table} SET ({columns}) = (SELECT {columns} FROM"
                        f" jsonb_populate_record(NULL::{table}, $1::jsonb)) WHERE id = $2",
                        ["text", "int4"],
                    ),
                    [record(part, old), old["id"]],
                )
