"""docs/quickstart.md runs as written: every ```sql and ```sh block, in order.

The quickstart's names start with `shop_`; the test replaces that with the
test's tenant prefix, and `postgres` (the admin database there) with the
test's admin database, so the run is isolated and cleaned up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner

from admmgt.cli import main
from tests.fix_db import connect

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Shell lines that set up the environment the test provides itself.
ENVIRONMENT = ("pip install", "export ", "psql")


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(QUICKSTART.read_text())]


def statements(block: str) -> list[str]:
    """psql's view of a block: meta-commands (\\c) on their own, statements up to `;`."""
    found, current = [], []
    for line in block.splitlines():
        if line.startswith("\\"):
            found.append(line.strip())
            continue
        current.append(line)
        if line.split("--")[0].rstrip().endswith(";"):
            found.append("\n".join(current).strip())
            current = []
    assert not "\n".join(current).strip(), f"statement without a final ';': {current}"
    return found


def test_quickstart_blocks_are_sql_sh_or_text() -> None:
    kinds = [kind for kind, _ in blocks()]
    assert set(kinds) <= {"sql", "sh", "text"}
    assert kinds.count("sql") >= 5 and kinds.count("sh") >= 2


def test_every_block_of_the_quickstart_runs(
    admin: psycopg.Connection[Any], admin_dsn: str, tenant_prefix: str
) -> None:
    def local(text: str) -> str:
        return text.replace("shop_", tenant_prefix)

    def dsn_of(db: str) -> str:
        return admin_dsn.replace(f"dbname={admin.info.dbname}", f"dbname={db}")

    ran = 0
    conn = admin
    opened: list[psycopg.Connection[Any]] = []
    runner = CliRunner()
    try:
        for kind, text in blocks():
            if kind == "sql":
                for statement in statements(local(text)):
                    if statement.startswith("\\c "):  # psql closes the session it leaves
                        if conn is not admin:
                            conn.close()
                        db = statement.split()[1]
                        conn = admin if db == "postgres" else connect(dsn_of(db))
                        opened.append(conn)
                    else:
                        conn.execute(statement)
                    ran += 1
            elif kind == "sh":
                for line in text.splitlines():
                    command = line.split("#")[0].strip()
                    if not command or command.startswith(ENVIRONMENT):
                        continue
                    assert command.startswith("admmgt "), f"unexpected shell line: {line}"
                    result = runner.invoke(main, ["--dsn", admin_dsn, *command.split()[1:]])
                    assert result.exit_code == 0, f"{command}: {result.output}"
                    ran += 1
    finally:
        for c in opened:
            if c is not admin:
                c.close()
    assert ran > 15

    # The outcome the quickstart promises: three tenants at script 1, no drift.
    rows = admin.execute(
        "SELECT dbname, status, scriptversion, scripts_behind, last_error"
        " FROM admmgt.fleet_status WHERE NOT istemplate ORDER BY dbname"
    ).fetchall()
    assert rows == [
        (f"{tenant_prefix}{name}", 2, 1, 0, None) for name in ("Acme", "Globex", "Initech")
    ]
    assert admin.execute("SELECT status FROM admmgt.scripts WHERE id = 1").fetchone() == (2,)
    for name in ("acme", "globex", "initech"):
        with connect(dsn_of(f"{tenant_prefix}{name}")) as tenant:
            columns = tenant.execute(
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
                " WHERE attrelid = 'app.orders'::regclass AND attnum > 0"
            ).fetchone()
            assert columns == ("id,customer_id,placed_at,total",)
            assert tenant.execute(
                "SELECT script_id, action FROM admmgt.script_history"
            ).fetchall() == [(1, "apply")]
    assert admin.execute("SELECT count(*) FROM admmgt.detect_drift()").fetchone() == (0,)
