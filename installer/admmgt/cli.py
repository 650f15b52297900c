"""The `admmgt` command: install and manage the control plane, run a sandbox."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import psycopg
import psycopg.sql
from rich.console import Console

from admmgt import _detach, _fleet, _install
from admmgt._sandbox import DEFAULT_PORT, Sandbox, SandboxError
from admmgt._version import __version__

console = Console()
err = Console(stderr=True)


@contextmanager
def _connect(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """Connect with --dsn, or the PG* environment variables when it is empty."""
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name="admmgt")
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
    with conn:
        conn.add_notice_handler(lambda diag: err.print(f"[dim]{diag.message_primary}[/dim]"))
        try:
            yield conn
        except _install.InstallError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(__version__, prog_name="admmgt")
@click.option(
    "--dsn",
    envvar="ADMMGT_DSN",
    default="",
    show_envvar=True,
    help="libpq connection string of the admin database; empty = PG* environment variables.",
)
@click.pass_context
def main(ctx: click.Context, dsn: str) -> None:
    """admmgt: a control plane for database-per-tenant PostgreSQL fleets."""
    ctx.obj = dsn


@main.command()
@click.pass_obj
def install(dsn: str) -> None:
    """Install admmgt into the admin database (a no-op if already installed)."""
    with _connect(dsn) as conn:
        console.print(str(_install.install(conn)))


@main.command()
@click.pass_obj
def upgrade(dsn: str) -> None:
    """Apply new incremental SQL, then re-create routines and code."""
    with _connect(dsn) as conn:
        console.print(str(_install.upgrade(conn)))


@main.command()
@click.pass_obj
def verify(dsn: str) -> None:
    """Compare the installed SQL and Python with this package; exit 1 on any difference."""
    with _connect(dsn) as conn:
        problems = _install.verify(conn)
    if problems:
        for problem in problems:
            err.print(f"[red]✗[/red] {problem}")
        sys.exit(1)
    console.print(f"admmgt {__version__}: installed SQL and Python match the package")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts and CI.")
@click.pass_obj
def status(dsn: str, as_json: bool) -> None:
    """The fleet at a glance; exit 1 when anything needs attention.

    Exit 1 for a database with an error or failed, a tenant ahead of its
    template, a registry row its own history contradicts, a failed script, or a
    run still running or interrupted.

    Version, template, tenants by status, scripts and how far each has spread,
    and the tenants that are behind, held back or failing (admmgt.fleet_status,
    admmgt.script_status).
    """
    with _connect(dsn) as conn:
        report = _fleet.status_report(conn)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _fleet.render_status(console, report)
    if _fleet.problems(report):
        sys.exit(1)


@main.command()
@click.option("--limit", default=20, show_default=True, help="How many rows to show.")
@click.option("--failed", "failed_only", is_flag=True, help="Only targets that failed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (admmgt.run_history rows).")
@click.option(
    "--follow", is_flag=True, help="Print a run's databases as they finish, until it ends."
)
@click.option("--run", "run_id", type=int, default=None, help="With --follow: this run.")
@click.pass_obj
def log(
    dsn: str, limit: int, failed_only: bool, as_json: bool, follow: bool, run_id: int | None
) -> None:
    """Recent runs and what each did to every database, newest first (admmgt.run_history).

    --follow watches one run (the newest, or --run) from any session, e.g. one
    started with --detach; it exits 1 unless the run ends ok or noop.
    """
    if follow:
        with _connect(dsn) as conn:
            outcome = _detach.follow(conn, run_id, _show_progress)
        console.print(f"run outcome: {outcome}")
        if outcome not in ("ok", "noop"):
            sys.exit(1)
        return
    with _connect(dsn) as conn:
        rows = _fleet.history(conn, limit, failed_only)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _fleet.render_log(console, rows)


def _show_progress(r: dict[str, Any]) -> None:
    message = (r["message"] or "").removeprefix(f'tenant "{r["dbname"]}": ')
    console.print(
        f"run {r['run_id']} {r['operation']}: {r['dbname']} {r['outcome']}"
        + (f" ({message})" if message else ""),
        highlight=False,
    )


def _call(dsn: str, procedure: str, args: tuple[Any, ...], detach: bool) -> None:
    """CALL admmgt.<procedure>(args) here (NOTICEs on stderr, exit 1 on its ERROR), or
    --detach: on a connection that outlives this command (see _detach)."""
    if detach:
        try:
            run_id, pid = _detach.start(dsn, procedure, args)
        except (_detach.DetachError, psycopg.Error) as exc:
            raise click.ClickException(str(exc)) from exc
        console.print(
            f"run {run_id} started (backend pid {pid}); it goes on without this command. "
            f"Watch it: admmgt log --follow --run {run_id}",
            highlight=False,
        )
        return
    with _connect(dsn) as conn:
        try:
            conn.execute(
                psycopg.sql.SQL("CALL admmgt.{}({})").format(
                    psycopg.sql.Identifier(procedure),
                    psycopg.sql.SQL(", ").join(psycopg.sql.Literal(a) for a in args),
                )
            )
        except psycopg.Error as exc:
            err.print(f"[red]{exc.diag.message_primary or exc}[/red]")
            if exc.diag.message_hint:
                err.print(exc.diag.message_hint)
            sys.exit(1)


_DETACH = click.option(
    "--detach", is_flag=True, help="Start the run and return; it survives this command."
)


@main.command()
@_DETACH
@click.pass_obj
def apply(dsn: str, detach: bool) -> None:
    """CALL admmgt.applyscripts(): every ready script, template first."""
    _call(dsn, "applyscripts", (), detach)


@main.command()
@click.argument("script_id", type=int)
@_DETACH
@click.pass_obj
def rollback(dsn: str, script_id: int, detach: bool) -> None:
    """CALL admmgt.rollbackscript(SCRIPT_ID); again to finish an interrupted one."""
    _call(dsn, "rollbackscript", (script_id,), detach)


@main.command()
@click.argument("dbname")
@click.argument("script_id", type=int)
@_DETACH
@click.pass_obj
def replay(dsn: str, dbname: str, script_id: int, detach: bool) -> None:
    """CALL admmgt.replayscripts(DBNAME, SCRIPT_ID): one tenant up to a script."""
    _call(dsn, "replayscripts", (dbname, script_id), detach)


@main.command()
@click.option("--dbname", default=None, help="Check this tenant only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (admmgt.detect_drift rows).")
@click.pass_obj
def drift(dsn: str, dbname: str | None, as_json: bool) -> None:
    """Compare every tenant's schemas with the template's; exit 1 on any difference."""
    with _connect(dsn) as conn, err.status("comparing tenants with the template ..."):
        rows = _fleet.drift(conn, dbname)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _fleet.render_drift(console, rows)
    if rows:
        sys.exit(1)


@main.command()
@click.option("--force", is_flag=True, help="Uninstall even while tenants are registered.")
@click.pass_obj
def uninstall(dsn: str, force: bool) -> None:
    """Drop schema admmgt (tenant databases are left alone)."""
    with _connect(dsn) as conn:
        console.print(str(_install.uninstall(conn, force=force)))


@main.group()
@click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=Path(".sandbox/demo"),
    show_default=True,
    help="Folder of the sandbox cluster.",
)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
@click.pass_context
def sandbox(ctx: click.Context, root: Path, port: int) -> None:
    """A throwaway local PostgreSQL 15 cluster (Unix socket only)."""
    ctx.obj = Sandbox(root.resolve(), port)


def _sandbox_call(action: str, box: Sandbox) -> None:
    try:
        if action == "start":
            box.start()
        elif action == "stop":
            box.stop()
        elif action == "destroy":
            box.destroy()
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from exc


@sandbox.command("start")
@click.pass_obj
def sandbox_start(box: Sandbox) -> None:
    """Create (first time) and start the cluster; print its DSN."""
    _sandbox_call("start", box)
    click.echo(box.dsn())


@sandbox.command("stop")
@click.pass_obj
def sandbox_stop(box: Sandbox) -> None:
    """Stop the cluster, keeping its data."""
    _sandbox_call("stop", box)
    click.echo(f"sandbox {box.root} stopped")


@sandbox.command("status")
@click.pass_obj
def sandbox_status(box: Sandbox) -> None:
    """Say whether the cluster runs, and its DSN."""
    if box.is_running():
        click.echo(f"running: {box.dsn()}")
    else:
        click.echo(f"not running ({box.root})")
        sys.exit(3)


@sandbox.command("destroy")
@click.pass_obj
def sandbox_destroy(box: Sandbox) -> None:
    """Stop the cluster and delete its folder."""
    _sandbox_call("destroy", box)
    click.echo(f"sandbox {box.root} removed")


@main.command()
@click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=Path(".sandbox/demo"),
    show_default=True,
    help="Folder of the throwaway cluster.",
)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def demo(root: Path, port: int) -> None:
    """Start a sandbox cluster and walk through admmgt on it."""
    from admmgt._demo import run_demo

    try:
        run_demo(root.resolve(), port, console)
    except (SandboxError, _install.InstallError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option(
    "--maintenance",
    "maintenance",
    metavar="CRON",
    help="Schedule applyMaintenance, e.g. '0 3 * * *' (03:00 every day, server time).",
)
@click.option(
    "--days",
    type=click.IntRange(0, 3660),
    default=30,
    show_default=True,
    help="t_numdays of the scheduled applyMaintenance.",
)
@click.option(
    "--move-default-rows",
    is_flag=True,
    help="Schedule applyMaintenance with t_move_default_rows => true.",
)
@click.option(
    "--lifecycle",
    metavar="CRON",
    help="Schedule lifecycleMgt (retention), e.g. '0 4 * * *' (04:00 every day, server time).",
)
@click.option("--list", "list_jobs", is_flag=True, help="List this admin database's jobs.")
@click.option(
    "--remove",
    type=click.Choice(["maintenance", "lifecycle", "all"]),
    help="Unschedule a job of this admin database.",
)
@click.pass_obj
def schedule(
    dsn: str,
    maintenance: str | None,
    days: int,
    move_default_rows: bool,
    lifecycle: str | None,
    list_jobs: bool,
    remove: str | None,
) -> None:
    """Run admmgt's periodic procedures with pg_cron (docs/maintenance.md).

    Jobs are named admmgt-<kind>-<admin database> and run in the admin database
    through cron.schedule_in_database, wherever cron.database_name points.
    """
    from admmgt._schedule import (
        KINDS,
        LIFECYCLE_COMMAND,
        Cron,
        ScheduleError,
        maintenance_command,
    )

    if not (maintenance or lifecycle or list_jobs or remove):
        raise click.UsageError("give --maintenance CRON, --lifecycle CRON, --list or --remove KIND")
    try:
        cron = Cron(dsn)
        if remove:
            kinds = KINDS if remove == "all" else (remove,)
            removed = cron.remove(kinds)
            click.echo(
                "removed " + ", ".join(removed) if removed else "no such job; nothing removed"
            )
        wanted = [
            ("maintenance", maintenance, maintenance_command(days, move_default_rows)),
            ("lifecycle", lifecycle, LIFECYCLE_COMMAND),
        ]
        for kind, when, command in wanted:
            if not when:
                continue
            jobid = cron.schedule(kind, when, command)
            if cron.created_extension:
                click.echo(f'created extension pg_cron in database "{cron.cron_db}"')
                cron.created_extension = False
            click.echo(
                f"scheduled job {jobid} admmgt-{kind}-{cron.admin_db}: '{when}' "
                f"{command} in database {cron.admin_db}"
            )
        if list_jobs:
            jobs = cron.jobs()
            if not jobs:
                click.echo(f"no admmgt jobs for database {cron.admin_db}")
            for job in jobs:
                last = (
                    f"last run {job.last_status} at {job.last_start}"
                    if job.last_status
                    else "not run yet"
                )
                state = "" if job.active else " (inactive)"
                click.echo(
                    f"{job.jobid}  {job.jobname}  '{job.schedule}'  {job.command}"
                    f"  in {job.database}{state}; {last}"
                )
    except ScheduleError as exc:
        raise click.ClickException(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to PostgreSQL: {exc}".strip()) from exc


if __name__ == "__main__":
    main()
