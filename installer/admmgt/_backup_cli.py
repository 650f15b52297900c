"""The `admmgt backup`, `admmgt restore` and `admmgt top` commands (docs/backup.md).

Kept apart from cli.py, which adds them to the `admmgt` group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import psycopg
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from admmgt import _backup, _fleet, _shell
from admmgt._shell import connect as _connect

console = _shell.make_console()
err = _shell.make_console(stderr=True)


@click.command()
@click.option(
    "--all", "all_tenants", is_flag=True, help="Every created tenant (and archives once)."
)
@click.option("--tenant", help="This tenant only.")
@click.option(
    "--to",
    "root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("admmgt-backups"),
    show_default=True,
    help="Folder the dumps go to: <to>/<cluster>/<database>/backup-<id>.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Tenants dumped at once.",
)
@click.option(
    "--prune",
    "keep",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Then keep only the N newest good backups per tenant (alone: prune every tenant).",
)
@click.pass_obj
def backup(
    dsn: str, all_tenants: bool, tenant: str | None, root: Path, jobs: int, keep: int | None
) -> None:
    """pg_dump each tenant database (directory format), several at a time.

    Each backup is recorded in admmgt.backups with the tenant's version (from
    its own history), size and sha256. Archived tenants are backed up once.
    Exit 1 when any tenant failed. Passwords come from a passfile or service.
    """
    if all_tenants and tenant:
        raise click.UsageError("give --all or --tenant X, not both")
    if not (all_tenants or tenant or keep):
        raise click.UsageError("give --all, --tenant X or --prune N")
    failed: list[_backup.Result] = []
    with _connect(dsn) as conn:
        try:
            if all_tenants or tenant:
                failed = _run_backup(conn, tenant, root, jobs)
            if keep:
                names = [tenant.lower()] if tenant else None
                pruned = _backup.prune(conn, keep, names)
                click.echo(
                    f"pruned {len(pruned)} backup(s), kept the {keep} newest per tenant"
                    + (f": {', '.join(map(str, pruned))}" if pruned else "")
                )
        except _backup.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
    if failed:
        for r in failed:
            err.print(f"[red]✗[/red] {r.message}")
        sys.exit(1)


def _run_backup(
    conn: psycopg.Connection[Any], tenant: str | None, root: Path, jobs: int
) -> list[_backup.Result]:
    found, skipped = _backup.targets(conn, tenant)
    for line in skipped:
        click.echo(line)
    if not found:
        click.echo("nothing to back up")
        return []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]}/{task.fields[count]} tenants"),
        DownloadColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    # The bar counts bytes, each tenant by its size (tenant_usage) as it finishes.
    total = sum(max(t.estimate, 1) for t in found)
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("backup", total=total, done=0, count=len(found))

        def done(result: _backup.Result) -> None:
            fields = progress.tasks[task].fields
            progress.update(task, advance=max(result.target.estimate, 1), done=fields["done"] + 1)
            if not result.ok:
                progress.console.print(f"[red]failed[/red] {result.target.label}")

        results = _backup.backup(conn, found, root, jobs, done)
    good = [r for r in results if r.ok]
    click.echo(
        f"backed up {len(good)} of {len(results)} tenant(s), "
        f"{_fleet._size(sum(r.size for r in good))} in {root}"
        + (f"; backups {good[0].backup_id}..{good[-1].backup_id}" if good else "")
    )
    return [r for r in results if not r.ok]


@click.command()
@click.option("--tenant", required=True, help="Tenant the backup is of.")
@click.option("--backup", "backup_id", type=int, required=True, help="admmgt.backups id.")
@click.option("--as", "new_name", help="Restore as a new tenant with this name.")
@click.option("--replace", is_flag=True, help="Replace the live tenant (ends its sessions).")
@click.pass_obj
def restore(dsn: str, tenant: str, backup_id: int, new_name: str | None, replace: bool) -> None:
    """Verify a backup's checksums, restore it into a new database and register it.

    The tenant's version comes from its restored history, so the next
    applyScripts brings an older backup up to date. A live tenant is only
    overwritten with --replace.
    """
    with _connect(dsn) as conn, err.status(f"restoring backup {backup_id} ..."):
        try:
            done = _backup.restore(conn, tenant, backup_id, new_name, replace)
        except _backup.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
    where = "" if done.cluster == "local" else f" on cluster {done.cluster}"
    click.echo(
        f'restored backup {done.backup_id} as database "{done.database}"{where}'
        f"{' (replaced the old one)' if done.replaced else ''}; {done.registered} at script "
        f"{done.scriptversion if done.scriptversion is not None else 'none'}"
        " (CALL admmgt.applyScripts() brings it up to date)"
    )


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many tenants to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (admmgt.tenant_usage rows).")
@click.pass_obj
def top(dsn: str, limit: int, as_json: bool) -> None:
    """The heaviest tenants by size, with activity and slowest statements (admmgt.tenant_usage)."""
    with _connect(dsn) as conn:
        rows = _fleet.usage(conn, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(
        "tenant",
        "size",
        "conn",
        "commits",
        "rollbacks",
        "deadlocks",
        "temp",
        "hit %",
        "slowest statement",
    )
    table.columns[0].no_wrap = True
    table.columns[-1].overflow = "fold"
    for r in rows:
        if r["problem"]:
            table.add_row(
                r["database"], "?", "?", "?", "?", "?", "?", "?", f"[red]{r['problem']}[/red]"
            )
            continue
        slowest = (r["slowest_statements"] or [None])[0]
        table.add_row(
            r["database"] + ("" if r["cluster_name"] == "local" else f"@{r['cluster_name']}"),
            _fleet._size(r["size_bytes"]),
            str(r["connections"]),
            str(r["xact_commit"]),
            str(r["xact_rollback"]),
            str(r["deadlocks"]),
            _fleet._size(r["temp_bytes"]),
            "-" if r["cache_hit_ratio"] is None else f"{100 * r['cache_hit_ratio']:.1f}",
            f"{slowest['mean_ms']:.1f} ms  {_fleet._short(slowest['query'], 80)}"
            if slowest
            else "-",
        )
    console.print(table)


COMMANDS = (backup, restore, top)
