"""`admmgt demo`: the main job on a throwaway PostgreSQL, told as a DBA sees it.

Every step shows the SQL a DBA would type in psql and the NOTICE lines admmgt
answers with. The sandbox is rebuilt each time, so the demo always starts clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table

from admmgt import _fleet, _install
from admmgt._sandbox import Sandbox

TENANTS = ["BigClient", "ClientB", *[f"Tenant_{i:03d}" for i in range(3, 21)]]

# Written the way docs/quickstart.md teaches: no explicit ids (script_tables.id
# is an identity), rows found by script and table name, drafted with status 0.
SCRIPT_1 = """\
INSERT INTO admmgt.scripts (id, description, status) VALUES (1, 'customers and orders', 0);
INSERT INTO admmgt.script_tables (scriptid, schemaname, tablename, status, haspart)
VALUES (1, 'mgttest', 'customers', 1, 0), (1, 'mgttest', 'orders', 1, 1);
INSERT INTO admmgt.script_table_columns
    (tableid, scriptid, columnname, datatype, nullable, isprimarykey, isidentity, status)
SELECT t.id, 1, c.columnname, c.datatype, 0, c.isprimarykey, c.isidentity, 1
FROM admmgt.script_tables AS t
JOIN (VALUES
    ('customers', 'id', 'bigint', 1, 1), ('customers', 'name', 'varchar(100)', 0, 0),
    ('orders', 'id', 'bigint', 1, 1), ('orders', 'customerid', 'bigint', 0, 0),
    ('orders', 'region', 'varchar(10)', 0, 0), ('orders', 'orderdate', 'date', 0, 0)
) AS c (tablename, columnname, datatype, isprimarykey, isidentity) USING (tablename)
WHERE t.scriptid = 1;
INSERT INTO admmgt.script_table_partitions
    (tableid, partcolumnname, parttype, partvalue, subpartcolumnname, subparttype, subpartvalue)
SELECT t.id, 'region', 'list', p.region, 'orderdate', 'range', 'month'
FROM admmgt.script_tables AS t CROSS JOIN (VALUES ('EU'), ('US')) AS p (region)
WHERE t.scriptid = 1 AND t.tablename = 'orders';
INSERT INTO admmgt.script_table_fkeys (scriptid, schemaname, childtablename, childcolumnname,
    parenttablename, parentcolumnname, keyorder, delrule, status)
VALUES (1, 'mgttest', 'orders', 'customerid', 'customers', 'id', 1, 'CASCADE', 1);
UPDATE admmgt.scripts SET status = 1 WHERE id = 1;"""

SCRIPT_2 = """\
INSERT INTO admmgt.scripts (id, description, status) VALUES (2, 'invoices; a note on orders', 0);
INSERT INTO admmgt.script_tables (scriptid, schemaname, tablename, status)
VALUES (2, 'mgttest', 'invoices', 1);
INSERT INTO admmgt.script_table_columns
    (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity,
     status)
SELECT t.id, 2, c.columnname, c.datatype, c.nullable, c.defaultval, c.isprimarykey,
       c.isidentity, 1
FROM admmgt.script_tables AS t
JOIN (VALUES
    ('invoices', 'id', 'bigint', 0, NULL, 1, 1),
    ('invoices', 'total', 'numeric(12,2)', 0, '0', 0, 0),
    ('orders', 'note', 'jsonb', 1, '''{}''::jsonb', 0, 0)   -- on script 1's table
) AS c (tablename, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    USING (tablename)
WHERE t.schemaname = 'mgttest';
UPDATE admmgt.scripts SET status = 1 WHERE id = 2;"""


class Story:
    def __init__(self, console: Console, conn: psycopg.Connection[Any]) -> None:
        self.console = console
        self.conn = conn
        conn.add_notice_handler(self._notice)

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        line = escape(diag.message_primary or "")
        self.console.print(f"[cyan]NOTICE:[/cyan]  {line}", highlight=False)
        if diag.message_hint:
            self.console.print(f"HINT:  {escape(diag.message_hint)}", highlight=False)

    def chapter(self, title: str, text: str) -> None:
        _rule(self.console, f"[bold]{title}")
        self.console.print(text)

    def sql(self, statement: str, conn: psycopg.Connection[Any] | None = None) -> None:
        self.console.print(
            Syntax(statement, "sql", theme="ansi_dark", background_color="default", word_wrap=True)
        )
        try:
            (conn or self.conn).execute(statement)
        except psycopg.Error as exc:
            self.console.print(f"[red]ERROR:[/red]  {escape(exc.diag.message_primary or '')}")
            if exc.diag.message_hint:
                self.console.print(f"HINT:  {escape(exc.diag.message_hint)}", highlight=False)

    def query(self, statement: str) -> None:
        self.console.print(
            Syntax(statement, "sql", theme="ansi_dark", background_color="default", word_wrap=True)
        )
        cur = self.conn.execute(statement)
        table = Table(*[c.name for c in cur.description or []])
        for row in cur.fetchall():
            table.add_row(*[_cell(v) for v in row])
        self.console.print(table)


def _rule(console: Console, title: str = "") -> None:
    """A chapter line, at most 100 columns even where output is not wrapped."""
    console.print(Rule(title), width=min(console.width, 100))


def _cell(value: Any) -> str:
    """A value as psql prints it: jsonb as JSON, never a Python repr."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def run_demo(root: Path, port: int, console: Console) -> None:
    box = Sandbox(root, port)
    box.destroy()  # throwaway: every demo starts from nothing
    dsn = box.start()
    _rule(console, "[bold]admmgt demo")
    console.print(f"A throwaway PostgreSQL 15 in {root}, reached at:\n  {dsn}\n")
    with psycopg.connect(dsn, autocommit=True, application_name="admmgt demo") as conn:
        story = Story(console, conn)
        story.chapter("1. Install the control plane", "$ admmgt install   (twice)")
        console.print(str(_install.install(conn)))
        console.print(str(_install.install(conn)))

        story.chapter(
            "2. A template and 20 tenants",
            "The template holds the application schema; tenants are copies of it.",
        )
        story.sql("CREATE DATABASE unitemplate;")
        with psycopg.connect(
            dsn.replace("dbname=postgres", "dbname=unitemplate"), autocommit=True
        ) as tpl:
            story.sql("CREATE SCHEMA mgttest;  -- in unitemplate", tpl)
        story.sql(
            "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status)"
            " VALUES ('unitemplate', true, 2);"
        )
        values = ", ".join(f"('{t}', 1)" for t in TENANTS)
        conn.execute(f"INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES {values}")
        console.print(
            Syntax(
                "INSERT INTO admmgt.vendor_db_settings (dbname, status) VALUES "
                "('BigClient', 1), ('ClientB', 1), ... 20 rows;",
                "sql",
                theme="ansi_dark",
                background_color="default",
                word_wrap=True,
            )
        )
        story.sql("CALL admmgt.create_database();")

        story.chapter(
            "3. A migration as metadata: the proof of concept's script 1",
            "Related tables, a list/range composite partitioned table, a foreign key.",
        )
        console.print(
            Syntax(SCRIPT_1, "sql", theme="ansi_dark", background_color="default", word_wrap=True)
        )
        conn.execute(SCRIPT_1)
        story.query("SELECT step, kind, target FROM admmgt.plan_script(1);")
        story.sql("CALL admmgt.applyScripts();")

        story.chapter(
            "4. A tenant that fails, and its recovery",
            "Someone created mgttest.invoices by hand in clientb; script 2 collides "
            "with it there. Each tenant is migrated atomically: clientb keeps script 1 "
            "with nothing half-done, and the other 19 go on.",
        )
        with psycopg.connect(
            dsn.replace("dbname=postgres", "dbname=clientb"), autocommit=True
        ) as clientb:
            story.sql("CREATE TABLE mgttest.invoices (x int);  -- in clientb", clientb)
            console.print(
                Syntax(
                    SCRIPT_2, "sql", theme="ansi_dark", background_color="default", word_wrap=True
                )
            )
            conn.execute(SCRIPT_2)
            story.sql("CALL admmgt.applyScripts();")
            story.query(
                "SELECT dbname, scriptversion, last_error FROM admmgt.vendor_db_settings"
                " WHERE last_error IS NOT NULL;"
            )
            story.sql("DROP TABLE mgttest.invoices;  -- in clientb: fixed", clientb)
        story.sql("CALL admmgt.applyScripts();")
        story.sql("CALL admmgt.applyScripts();  -- nothing left: answered without connecting")

        story.chapter(
            "5. Partition maintenance",
            "orders is partitioned by region, then by month. Create every month "
            "through 90 days ahead, in the template and every tenant; then again.",
        )
        story.sql("CALL admmgt.applyMaintenance(t_numdays => 90);")
        story.sql("CALL admmgt.applyMaintenance(t_numdays => 90);  -- nothing left to create")

        story.chapter(
            "6. Drift",
            "Someone adds an index by hand in tenant_007. detect_drift() compares every "
            "tenant with the template (a fingerprint first, details only where it "
            "differs).",
        )
        with psycopg.connect(
            dsn.replace("dbname=postgres", "dbname=tenant_007"), autocommit=True
        ) as tenant:
            story.sql(
                "CREATE INDEX customers_name_idx ON mgttest.customers (name);  -- in tenant_007",
                tenant,
            )
            story.query(
                "SELECT dbname, object_kind, object_name, difference FROM admmgt.detect_drift();"
            )
            story.sql("DROP INDEX mgttest.customers_name_idx;  -- in tenant_007: undone", tenant)
        story.query("SELECT count(*) AS differences FROM admmgt.detect_drift();")

        story.chapter("7. Where it is recorded", "Per run, per database:")
        story.query("SELECT id, operation, outcome, summary FROM admmgt.runs ORDER BY id;")
        story.query(
            "SELECT database, scriptversion, scripts_behind, size_bytes FROM admmgt.fleet_status"
            " ORDER BY size_bytes DESC NULLS LAST LIMIT 5;"
        )

        story.chapter("8. admmgt status", "$ admmgt status")
        _fleet.render_status(console, _fleet.status_report(conn))
    _rule(console)
    console.print(
        f'Explore it yourself:  psql "{dsn}"\n'
        f"Stop it:              .venv/bin/admmgt sandbox --dir {root} stop"
    )
