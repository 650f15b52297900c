"""`admmgt demo`: the main job on a throwaway PostgreSQL, told as a DBA would see it."""

from __future__ import annotations

from pathlib import Path

import psycopg
from rich.console import Console

from admmgt import _install
from admmgt._sandbox import Sandbox


def run_demo(root: Path, port: int, console: Console) -> None:
    box = Sandbox(root, port)
    console.rule("[bold]1. A throwaway PostgreSQL 15")
    dsn = box.start()
    console.print(f"sandbox cluster in {root}\nDSN: {dsn}")
    with psycopg.connect(dsn, autocommit=True, application_name="admmgt demo") as conn:
        console.rule("[bold]2. Install admmgt into the admin database (postgres)")
        console.print(str(_install.install(conn)))
        console.print(str(_install.install(conn)) + "  [dim](a second install is a no-op)[/dim]")
        problems = _install.verify(conn)
        console.print("verify: " + ("; ".join(problems) if problems else "SQL and Python match"))
        console.rule("[bold]3. Status")
        info = _install.status(conn)
        console.print(f"version {info['version']}; tenants: {info['tenants'] or 'none yet'}")
    console.print(
        f'\nTry it yourself:  psql "{dsn}"\n'
        "Stop the sandbox: .venv/bin/admmgt sandbox --dir .sandbox/demo stop"
    )
