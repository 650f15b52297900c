"""Scripts as the engine sees them: metadata rows loaded, compiled and checked.

A script's metadata checksum is taken over its rows (without status columns,
which admmgt itself changes) when it first reaches the template; a later run
that finds the rows changed refuses to go on, as Flyway's validate does. The
checksum of the compiled statements is what each database's history records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from admmgt_plpy._compile import CompiledScript, compile_script
from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._metadata import ScriptMetadata
from admmgt_plpy._types import Plpy

# Each query takes the script id as $1. Rows come in id order, so the
# metadata checksum does not depend on the plan.
QUERIES = {
    "tables": "SELECT * FROM admmgt.script_tables WHERE scriptid = $1 ORDER BY id",
    "columns": "SELECT * FROM admmgt.script_table_columns WHERE scriptid = $1 ORDER BY id",
    "referenced_tables": """
        SELECT * FROM admmgt.script_tables AS t WHERE t.scriptid <> $1 AND (
            t.id IN (SELECT tableid FROM admmgt.script_table_columns WHERE scriptid = $1
                     UNION SELECT tableid FROM admmgt.script_column_changes WHERE scriptid = $1
                     UNION SELECT tableid FROM admmgt.script_indexes WHERE scriptid = $1)
            OR (lower(t.schemaname), lower(t.tablename)) IN (
                SELECT lower(schemaname), lower(childtablename)
                FROM admmgt.script_table_fkeys WHERE scriptid = $1))
        ORDER BY id""",
    "fkeys": "SELECT * FROM admmgt.script_table_fkeys WHERE scriptid = $1 ORDER BY id",
    "partitions": """
        SELECT p.* FROM admmgt.script_table_partitions AS p
        JOIN admmgt.script_tables AS t ON t.id = p.tableid
        WHERE t.scriptid = $1 ORDER BY p.id""",
    "procs": "SELECT * FROM admmgt.script_procs WHERE scriptid = $1 ORDER BY id",
    "column_changes": "SELECT * FROM admmgt.script_column_changes WHERE scriptid = $1 ORDER BY id",
    "indexes": "SELECT * FROM admmgt.script_indexes WHERE scriptid = $1 ORDER BY id",
    "steps": "SELECT * FROM admmgt.script_steps WHERE scriptid = $1 ORDER BY id",
}
# Columns admmgt writes itself, or that do not change what a script does.
NOT_CHECKSUMMED = {"status", "created_date"}
# Columns added to the metadata tables after metadata checksums were first
# recorded: left out while NULL (what every older row holds), so an upgrade
# does not make the scripts applied before it look changed.
CHECKSUMMED_WHEN_SET = {"tenantcolumn", "tenanttype"}


@dataclass(frozen=True)
class Script:
    id: int
    description: str | None
    status: int
    compiled: CompiledScript
    metadata_checksum: str
    recorded_checksum: str | None  # metadata checksum when it reached the template
    snapshot: str = ""  # its rows now, as scripts.applied_rows keeps them (JSON text)
    # What it was compiled from, to compile it again for a schema tenant.
    meta: ScriptMetadata | None = field(default=None, compare=False, repr=False)
    anchor: date | None = None
    # Compiled for schema tenants in this run, by (template schema, schema).
    _mapped: dict[tuple[str, str], Script] = field(default_factory=dict, compare=False, repr=False)

    def for_schema(self, template_schema: str, schema: str) -> Script:
        """This script as a schema tenant gets it: compiled with the template
        schema mapped to ``schema`` (once per run and schema), its steps naming
        ``schema``. Its checksum stays the template's: the script's identity,
        which every history records, so histories compare across tenants and
        modes. MetadataError when the script names another schema."""
        key = (template_schema, schema)
        found = self._mapped.get(key)
        if found is not None:
            return found
        if self.meta is None or self.anchor is None:
            raise AdmmgtError(f"script {self.id} was loaded without its metadata")
        compiled = compile_script(
            self.meta, anchor=self.anchor, schema_map={template_schema: schema}
        )
        found = replace(
            self, compiled=replace(compiled, checksum=self.compiled.checksum), _mapped={}
        )
        self._mapped[key] = found
        return found

    @property
    def changed_since_applied(self) -> bool:
        return (
            self.recorded_checksum is not None and self.recorded_checksum != self.metadata_checksum
        )


def load_rows(plpy: Plpy, script_id: int) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The scripts row and every metadata row of one script, as QUERIES reads them."""
    head = plpy.execute(
        plpy.prepare(
            """SELECT id, description, status, created_date, metadata_checksum,
                  applied_rows::text AS applied_rows,
                  (created_date AT TIME ZONE 'UTC')::date::text AS anchor
           FROM admmgt.scripts WHERE id = $1""",
            ["int4"],
        ),
        [script_id],
    )
    if not head:
        raise AdmmgtError(
            f"script {script_id} does not exist",
            hint="SELECT id, status, description FROM admmgt.scripts ORDER BY id;",
        )
    row = dict(head[0])
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, query in QUERIES.items():
        plan = plpy.prepare(query, ["int4"])
        rows[name] = [dict(r) for r in plpy.execute(plan, [script_id])]
    return row, rows


def load_script(plpy: Plpy, script_id: int) -> Script:
    """Load and compile one script; MetadataError lists every problem in its rows."""
    row, rows = load_rows(plpy, script_id)
    meta = ScriptMetadata.from_rows(
        {k: row[k] for k in ("id", "description", "status", "created_date")}, **rows
    )
    anchor = date.fromisoformat(row["anchor"])
    compiled = compile_script(meta, anchor=anchor)
    return Script(
        id=script_id,
        description=row["description"],
        status=row["status"],
        compiled=compiled,
        metadata_checksum=metadata_checksum(row["anchor"], rows),
        recorded_checksum=row["metadata_checksum"],
        snapshot=snapshot(row["anchor"], rows),
        meta=meta,
        anchor=anchor,
    )


def snapshot(anchor: str, rows: dict[str, list[dict[str, Any]]]) -> str:
    """The rows as kept in scripts.applied_rows (JSON text): every column, so that
    repair_script can put them back; NOT_CHECKSUMMED columns are not compared."""
    return json.dumps({"anchor": anchor, "rows": rows}, sort_keys=True, default=str)


def metadata_checksum(anchor: str, rows: dict[str, list[dict[str, Any]]]) -> str:
    """The checksum of a script's rows (QUERIES), as recorded when it reached the template."""
    canonical = {
        name: [
            {
                k: v
                for k, v in sorted(r.items())
                if k not in NOT_CHECKSUMMED and not (v is None and k in CHECKSUMMED_WHEN_SET)
            }
            for r in items
        ]
        for name, items in rows.items()
    }
    text = json.dumps({"anchor": anchor, "rows": canonical}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def refuse_changed(scripts: Iterable[Script], operation: str, problems: Sequence[str] = ()) -> None:
    """Stop ``operation`` if a script that reached the template no longer matches its rows."""
    found = list(problems) + [
        f"script {s.id}: its metadata rows changed after it was applied"
        for s in scripts
        if s.changed_since_applied
    ]
    if found:
        raise AdmmgtError(
            f"{operation} refused: applied scripts were changed:\n  " + "\n  ".join(found),
            hint="SELECT * FROM admmgt.validate_scripts(); names each changed table, row and "
            "field, and admmgt.scripts.applied_rows keeps the rows as applied. Put them back "
            "(CALL admmgt.repair_script(<id>, 'restore');) and make the change a new script, or, "
            "if the databases already match the new rows, CALL admmgt.repair_script(<id>, "
            "'accept');",
        )


def load_applied(plpy: Plpy, ids: Iterable[int], operation: str) -> list[Script]:
    """Load scripts that reached the template, once each, refusing any that changed."""
    scripts, problems = [], []
    for script_id in ids:
        try:
            scripts.append(load_script(plpy, script_id))
        except MetadataError as exc:
            problems.append(f"script {script_id}: its rows no longer compile ({exc.message})")
    refuse_changed(scripts, operation, problems)
    return scripts


def on_template(plpy: Plpy, up_to: int | None = None) -> list[int]:
    """Ids of the scripts applied to the template (and not rolled back), in order."""
    return [
        r["id"]
        for r in plpy.execute(
            plpy.prepare(
                """SELECT id FROM admmgt.scripts WHERE applied_to_template_at IS NOT NULL
                   AND status IN (1, 2) AND id <= coalesce($1, id) ORDER BY id""",
                ["int4"],
            ),
            [up_to],
        )
    ]
