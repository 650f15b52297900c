"""drop_script: discard a script that was never applied, with all its rows.

A script's rows live in a dozen tables that reference admmgt.scripts (and
script_tables), so a plain DELETE fails on their foreign keys. Order of
operations, in the caller's transaction (all or nothing):

1. lock the migrations operation, so no applyScripts is reading the script;
2. refuse a script that reached the template (status 2, or
   applied_to_template_at set): applied scripts are history;
3. refuse when another script's rows refer to one of its tables (a column
   added later to a table this script creates);
4. delete the rows of every table with a foreign key to script_tables, then
   to scripts (found in the catalog, so a table added in a later release is
   covered), then the script_tables rows, then the script.
"""

from __future__ import annotations

from typing import Any

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._locks import take_operation_lock

# Tables whose rows name both a script and a table (of possibly another script).
CROSS_SCRIPT = ("script_table_columns", "script_column_changes", "script_indexes")

CHILDREN = """
SELECT format('DELETE FROM %s WHERE %I {test}', c.conrelid::regclass, a.attname) AS sql
FROM pg_catalog.pg_constraint AS c
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.confrelid = $1::regclass AND cardinality(c.conkey) = 1
  AND c.conrelid <> 'admmgt.script_tables'::regclass
ORDER BY c.conrelid::regclass::text
"""


def drop_script(plpy: Any, *, script_id: int) -> None:
    take_operation_lock(plpy, "migrations", "drop_script")
    rows = plpy.execute(
        plpy.prepare(
            "SELECT status, applied_to_template_at IS NOT NULL AS applied"
            " FROM admmgt.scripts WHERE id = $1 FOR UPDATE",
            ["integer"],
        ),
        [script_id],
    )
    if not rows:
        raise AdmmgtError(
            f"script {script_id} does not exist; nothing was dropped",
            hint="SELECT id, status, description FROM admmgt.scripts ORDER BY id;",
        )
    if rows[0]["status"] == 2 or rows[0]["applied"]:
        raise AdmmgtError(
            f"script {script_id} has been applied to the template; applied scripts are "
            "history and are not dropped. Nothing was dropped",
            hint=f"CALL admmgt.rollbackScript({script_id}) undoes the newest script "
            "everywhere; to change what it does, write a new script.",
        )
    _refuse_when_referenced(plpy, script_id)
    deleted = 0
    tables = "(SELECT id FROM admmgt.script_tables WHERE scriptid = $1)"
    for parent, test in (("admmgt.script_tables", f"IN {tables}"), ("admmgt.scripts", "= $1")):
        for row in plpy.execute(plpy.prepare(CHILDREN.format(test=test), ["text"]), [parent]):
            result = plpy.execute(plpy.prepare(row["sql"], ["integer"]), [script_id])
            deleted += result.nrows()
    for table in ("admmgt.script_tables", "admmgt.scripts"):
        column = "scriptid" if table.endswith("script_tables") else "id"
        deleted += plpy.execute(
            plpy.prepare(f"DELETE FROM {table} WHERE {column} = $1", ["integer"]), [script_id]
        ).nrows()
    plpy.notice(f"drop_script: script {script_id} dropped with its metadata ({deleted} rows)")


def _refuse_when_referenced(plpy: Any, script_id: int) -> None:
    found = []
    for table in CROSS_SCRIPT:
        for row in plpy.execute(
            plpy.prepare(
                f"SELECT x.id, x.scriptid, t.tablename FROM admmgt.{table} AS x"
                " JOIN admmgt.script_tables AS t ON t.id = x.tableid"
                " WHERE t.scriptid = $1 AND x.scriptid <> $1 ORDER BY x.id",
                ["integer"],
            ),
            [script_id],
        ):
            found.append(
                f"{table} row {row['id']} of script {row['scriptid']} (table {row['tablename']})"
            )
    if found:
        others = sorted({int(f.split(" of script ")[1].split()[0]) for f in found})
        raise AdmmgtError(
            f"script {script_id} cannot be dropped: rows of other scripts refer to its "
            f"tables: {'; '.join(found)}. Nothing was dropped",
            hint="Drop those scripts first (CALL admmgt.drop_script(n) for "
            + ", ".join(str(o) for o in others)
            + "), or move their rows to tables of their own script.",
        )
