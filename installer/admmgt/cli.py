"""The `admmgt` command: install and manage the control plane, run a sandbox.

Exit codes (docs/cli.md): 0 ok, 1 needs attention, 2 usage, 3 cannot connect,
4 admmgt not installed or internal error. `--dsn` goes before or after the
subcommand; `-h` is help (libpq's host is part of --dsn or PGHOST).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import psycopg

from admmgt import _backup_cli, _detach, _fleet, _install, _shell
from admmgt._sandbox import DEFAULT_PORT, Sandbox, SandboxError
from admmgt._shell import Failure, connect, dumps
from admmgt._version import __version__

F = TypeVar("F", bound=Callable[..., Any])

console = _shell.make_console()
err = _shell.make_console(stderr=True)

CONTEXT = {"help_option_names": ["-h", "--help"]}


class AdmmgtGroup(click.Group):
    """Maps whatever escapes a subcommand to one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except psycopg.Error as exc:
            raise _shell.server_failure(exc, _shell.INTERNAL) from None
        except Exception as exc:
            if os.environ.get("ADMMGT_DEBUG"):
                traceback.print_exc()
            raise Failure(
                f"internal error: {type(exc).__name__}: {exc}",
                _shell.INTERNAL,
                "set ADMMGT_DEBUG=1 to see the traceback, and report it",
            ) from None


def _set_dsn(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """--dsn after the subcommand wins over the one before it."""
    if value is not None:
        ctx.obj = value


def dsn_option(fn: Any) -> Any:
    return click.option(
        "--dsn",
        default=None,
        expose_value=False,
        callback=_set_dsn,
        help="libpq connection string of the admin database (also before the command).",
    )(fn)


@click.group(cls=AdmmgtGroup, context_settings=CONTEXT)
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
    """admmgt: a control plane for database-per-tenant PostgreSQL fleets.

    Exit codes: 0 ok, 1 needs attention (a failed run, drift, failed tenants),
    2 usage, 3 cannot connect, 4 admmgt not installed or internal error.
    """
    ctx.obj = dsn


@main.command()
@dsn_option
@click.pass_obj
def install(dsn: str) -> None:
    """Install admmgt into the admin database (a no-op if already installed)."""
    with connect(dsn, need_admmgt=False) as conn:
        console.print(str(_install.install(conn)), highlight=False)


@main.command()
@dsn_option
@click.pass_obj
def upgrade(dsn: str) -> None:
    """Apply new incremental SQL, then re-create routines and code (a no-op at the same version)."""
    with connect(dsn, need_admmgt=False) as conn:
        console.print(str(_install.upgrade(conn)), highlight=False)


@main.command()
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON: version and problems.")
@click.pass_obj
def verify(dsn: str, as_json: bool) -> None:
    """Compare the installed SQL and Python with this package; exit 1 on any difference."""
    with connect(dsn) as conn:  # exit 4 where admmgt is not installed
        problems = _install.verify(conn)
    if as_json:
        click.echo(
            dumps({"package_version": __version__, "ok": not problems, "problems": problems})
        )
    elif problems:
        for problem in problems:
            err.print(f"[red]✗[/red] {problem}", highlight=False)
    else:
        console.print(
            f"admmgt {__version__}: installed SQL and Python match the package", highlight=False
        )
    if problems:
        sys.exit(_shell.ATTENTION)


@main.command()
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts and CI.")
@click.option(
    "--rls",
    is_flag=True,
    help="Also audit row-level security in every database (admmgt.check_rls).",
)
@click.pass_obj
def status(dsn: str, as_json: bool, rls: bool) -> None:
    """The fleet at a glance; exit 1 when anything needs attention.

    Exit 1 for a database with an error or failed, a tenant ahead of its
    template, a registry row its own history contradicts, a failed or changed
    applied script, a run still running or interrupted, or (with --rls) a
    row-level security finding.

    Version, template, tenants by status, scripts and how far each has spread,
    and the tenants that are behind, held back or failing (admmgt.fleet_status,
    admmgt.script_status). With --rls, the findings of admmgt.check_rls() too,
    and exit 1 when there are any.
    """
    with connect(dsn) as conn:
        report = _fleet.status_report(conn)
        if rls:
            with err.status("auditing row-level security ..."):
                report["rls"] = _fleet.rls_findings(conn)
    if as_json:
        click.echo(dumps(report))
    else:
        _fleet.render_status(console, report)
        if rls:
            _fleet.render_rls(console, report["rls"])
    if _fleet.problems(report):
        sys.exit(_shell.ATTENTION)


@main.command()
@dsn_option
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
        with connect(dsn) as conn:
            outcome = _detach.follow(conn, run_id, _show_progress)
        console.print(f"run outcome: {outcome}")
        if outcome not in ("ok", "noop"):
            sys.exit(_shell.ATTENTION)
        return
    with connect(dsn) as conn:
        rows = _fleet.history(conn, limit, failed_only)
    if as_json:
        click.echo(dumps(rows))
    else:
        _fleet.render_log(console, rows)


def _show_progress(r: dict[str, Any]) -> None:
    message = (r["message"] or "").removeprefix(f'tenant "{r["dbname"]}": ')
    console.print(
        f"run {r['run_id']} {r['operation']}: {r['dbname']} {r['outcome']}"
        + (f" ({message})" if message else ""),
        highlight=False,
    )


def _start_detached(dsn: str, procedure: str, args: tuple[Any, ...]) -> None:
    """--detach: CALL admmgt.<procedure>(args) on a connection that outlives this
    command (_detach: it sends nothing to a client that could vanish)."""
    try:
        run_id, pid = _detach.start(dsn, procedure, args)
    except _detach.DetachError as exc:
        raise Failure(str(exc), _shell.ATTENTION, exc.hint) from None
    except psycopg.Error as exc:
        raise _shell.server_failure(exc) from None
    console.print(
        f"run {run_id} started (backend pid {pid}); it goes on without this command. "
        f"Watch it: admmgt log --follow --run {run_id}",
        highlight=False,
    )


_DETACH = click.option(
    "--detach", is_flag=True, help="Start the run and return; it survives this command."
)


@main.command()
@dsn_option
@click.option("--dbname", default=None, help="Check this tenant only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (admmgt.detect_drift rows).")
@click.pass_obj
def drift(dsn: str, dbname: str | None, as_json: bool) -> None:
    """Compare every tenant's schemas with the template's; exit 1 on any difference."""
    with connect(dsn) as conn:
        if dbname is not None and not _fleet.is_registered(conn, dbname):
            raise Failure(
                f'no database "{dbname}" is registered in admmgt.vendor_db_settings',
                _shell.USAGE,
                "--dbname takes a tenant's name as in `admmgt status`; the admin database "
                "goes in --dsn",
            )
        with err.status("comparing tenants with the template ..."):
            rows = _fleet.drift(conn, dbname)
    if as_json:
        click.echo(dumps(rows))
    else:
        _fleet.render_drift(console, rows)
    if rows:
        sys.exit(_shell.ATTENTION)


@main.command()
@dsn_option
@click.argument("script_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (admmgt.plan_script rows).")
@click.pass_obj
def plan(dsn: str, script_id: int, as_json: bool) -> None:
    """The statements script SCRIPT_ID compiles to, in order (admmgt.plan_script)."""
    with connect(dsn) as conn:
        if not _fleet.script_exists(conn, script_id):
            raise Failure(
                f"script {script_id} does not exist in admmgt.scripts",
                _shell.USAGE,
                "`admmgt status` lists the scripts",
            )
        rows = _fleet.plan(conn, script_id)
    if as_json:
        click.echo(dumps(rows))
    else:
        _fleet.render_plan(console, rows)


def _run(
    dsn: str, title: str, statement: str, params: tuple[Any, ...] = (), dry_run: bool = False
) -> None:
    """CALL a procedure with a progress bar; print a summary; exit 1 if anything failed.

    A dry run records no run: it exits 1 when a ready script would be refused
    (the dry run ends with an ERROR naming each).
    """
    feed = _shell.ProgressFeed(err, title)
    with connect(dsn, on_notice=feed) as conn:
        result = _shell.call(conn, statement, params, feed)
    if result.error is not None:
        result.error.show()
    if dry_run:
        # The dry run ends with an ERROR listing every script a real run would refuse.
        if result.error is not None:
            console.print("dry run: a real run would refuse what the ERROR above names")
        console.print("dry run: nothing was changed", highlight=False)
        sys.exit(_shell.ATTENTION if result.error else _shell.OK)
    _shell.print_summary(console, result, title)
    sys.exit(result.exit_code)


_SCHEMA_TENANTS = click.option(
    "--schema-tenants",
    is_flag=True,
    help="Schema tenants (t_separatedb => 0) instead of database tenants.",
)


@main.command()
@dsn_option
@click.option("--dry-run", is_flag=True, help="Say what would be applied, changing nothing.")
@_SCHEMA_TENANTS
@_DETACH
@click.pass_obj
def apply(dsn: str, dry_run: bool, schema_tenants: bool, detach: bool) -> None:
    """Apply the ready scripts: template first, then every tenant (CALL admmgt.applyScripts);
    --schema-tenants: the template schema, then the schema tenants (applyScripts(0))."""
    separatedb = 0 if schema_tenants else 1
    if detach:
        if dry_run:
            raise click.UsageError("--dry-run changes nothing: run it without --detach")
        _start_detached(dsn, "applyscripts", (separatedb,) if schema_tenants else ())
        return
    if schema_tenants:
        statement = "CALL admmgt.applyScripts(%s, dry_run => %s)"
        _run(dsn, "applyScripts", statement, (separatedb, dry_run), dry_run)
        return
    _run(dsn, "applyScripts", "CALL admmgt.applyScripts(dry_run => %s)", (dry_run,), dry_run)


@main.command()
@dsn_option
@click.argument("script_id", type=int)
@_DETACH
@click.pass_obj
def rollback(dsn: str, script_id: int, detach: bool) -> None:
    """Undo script SCRIPT_ID everywhere, newest script only (CALL admmgt.rollbackScript);
    again to finish an interrupted one."""
    if detach:
        _start_detached(dsn, "rollbackscript", (script_id,))
        return
    _run(dsn, "rollbackScript", "CALL admmgt.rollbackScript(%s)", (script_id,))


@main.command()
@dsn_option
@click.argument("dbname")
@click.argument("target_script_id", type=int)
@_SCHEMA_TENANTS
@_DETACH
@click.pass_obj
def replay(
    dsn: str, dbname: str, target_script_id: int, schema_tenants: bool, detach: bool
) -> None:
    """Bring tenant DBNAME to TARGET_SCRIPT_ID, script by script (CALL admmgt.replayScripts);
    --schema-tenants for a schema tenant."""
    args: tuple[Any, ...] = (dbname, target_script_id)
    statement = "CALL admmgt.replayScripts(%s, %s)"
    if schema_tenants:
        args = (0, dbname, target_script_id)
        statement = "CALL admmgt.replayScripts(%s, %s, %s)"
    if detach:
        _start_detached(dsn, "replayscripts", args)
        return
    _run(dsn, "replayScripts", statement, args)


@main.command()
@dsn_option
@click.option(
    "--days",
    type=click.IntRange(0, 3660),
    default=30,
    show_default=True,
    help="Create partitions this many days ahead (t_numdays).",
)
@click.option("--move-default-rows", is_flag=True, help="t_move_default_rows => true.")
@click.pass_obj
def maintain(dsn: str, days: int, move_default_rows: bool) -> None:
    """Partition maintenance in the template and every tenant (CALL admmgt.applyMaintenance)."""
    _run(
        dsn,
        "applyMaintenance",
        "CALL admmgt.applyMaintenance(t_numdays => %s, t_move_default_rows => %s)",
        (days, move_default_rows),
    )


@main.group(context_settings=CONTEXT)
def script() -> None:
    """Scripts from SQL files (Flyway-style V7__add_tier.sql) and back to SQL."""


@script.command("add")
@dsn_option
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--draft", is_flag=True, help="Store as a draft (status 0) instead of ready (status 1)."
)
@click.pass_obj
def script_add(dsn: str, path: Path, draft: bool) -> None:
    """Store PATH (a V<version>__<description>.sql file, or a folder of them) as scripts.

    Each file's statements become the script's raw steps, split by admmgt's
    lexer; a file added before with the same checksum is left as it is. Then
    `admmgt apply` applies them.
    """
    from admmgt import _scriptfiles

    try:
        files = _scriptfiles.read(path)
    except _scriptfiles.ScriptFileError as exc:
        raise Failure(str(exc), _shell.USAGE) from None
    for f in files:
        for warning in _scriptfiles.warnings(f):
            err.print(f"warning: {warning}", highlight=False, markup=False)
    with connect(dsn) as conn:
        try:
            lines = _scriptfiles.add(conn, files, ready=not draft)
        except _scriptfiles.ScriptFileError as exc:
            raise Failure(str(exc), _shell.ATTENTION) from None
    for line in lines:
        console.print(line, highlight=False, markup=False)


@script.command("export")
@dsn_option
@click.argument("script_id", type=int)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of stdout.",
)
@click.pass_obj
def script_export(dsn: str, script_id: int, output: Path | None) -> None:
    """Write script SCRIPT_ID's compiled SQL (as applyScripts would run it)."""
    from admmgt import _scriptfiles

    with connect(dsn) as conn:
        try:
            text = _scriptfiles.export(conn, script_id)
        except _scriptfiles.ScriptFileError as exc:
            raise Failure(str(exc), _shell.USAGE, "`admmgt status` lists the scripts") from None
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}", highlight=False, markup=False)


@script.command("drop")
@dsn_option
@click.argument("script_id", type=int)
@click.pass_obj
def script_drop(dsn: str, script_id: int) -> None:
    """Discard script SCRIPT_ID, never applied, with its rows (CALL admmgt.drop_script)."""
    with connect(dsn) as conn:
        conn.execute("CALL admmgt.drop_script(%s)", (script_id,))


@main.command()
@dsn_option
@click.option("--force", is_flag=True, help="Uninstall even while tenants are registered.")
@click.pass_obj
def uninstall(dsn: str, force: bool) -> None:
    """Drop schema admmgt (tenant databases are left alone)."""
    with connect(dsn, need_admmgt=False) as conn:
        console.print(str(_install.uninstall(conn, force=force)), highlight=False)


def default_sandbox_dir() -> Path:
    """Where `sandbox` and `demo` keep their cluster unless --dir says otherwise.

    Never relative to the current folder. Root's server runs as the postgres
    OS user, which cannot enter /root, so root's sandbox lives in /var/tmp.
    """
    if os.geteuid() == 0:
        return Path("/var/tmp/admmgt/sandbox")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "admmgt" / "sandbox"


def _dir_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--dir",
        "root",
        type=click.Path(path_type=Path),
        default=None,
        envvar="ADMMGT_SANDBOX_DIR",
        show_envvar=True,
        help=f"{help_text} [default: {default_sandbox_dir()}]",
    )


@main.group(context_settings=CONTEXT)
@_dir_option("Folder of the sandbox cluster.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
@click.pass_context
def sandbox(ctx: click.Context, root: Path | None, port: int) -> None:
    """A throwaway local PostgreSQL 15 cluster (Unix socket only)."""
    ctx.obj = Sandbox((root or default_sandbox_dir()).resolve(), port)


def _sandbox_call(action: str, box: Sandbox) -> None:
    try:
        if action == "start":
            box.start()
        elif action == "stop":
            box.stop()
        elif action == "destroy":
            box.destroy()
    except SandboxError as exc:
        raise Failure(str(exc), _shell.INTERNAL) from None


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
    """Say whether the cluster runs, and its DSN; exit 3 when it does not run."""
    if box.is_running():
        click.echo(f"running: {box.dsn()}")
    else:
        click.echo(f"not running ({box.root})")
        sys.exit(_shell.CANNOT_CONNECT)


@sandbox.command("destroy")
@click.pass_obj
def sandbox_destroy(box: Sandbox) -> None:
    """Stop the cluster and delete its folder."""
    _sandbox_call("destroy", box)
    click.echo(f"sandbox {box.root} removed")


@main.command()
@_dir_option("Folder of the throwaway cluster.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
@click.option("--yes", "-y", is_flag=True, help="Destroy a running sandbox without asking.")
def demo(root: Path | None, port: int, yes: bool) -> None:
    """Start a sandbox cluster and walk through admmgt on it (rebuilt from nothing)."""
    from admmgt._demo import run_demo

    root = (root or default_sandbox_dir()).resolve()
    if not yes and Sandbox(root, port).is_running():
        question = f"The sandbox in {root} is running; the demo destroys it. Go on?"
        if not sys.stdin.isatty():
            raise Failure(
                f"the sandbox in {root} is running and the demo would destroy it",
                _shell.USAGE,
                "pass --yes to destroy it, or --dir for another folder",
            )
        click.confirm(question, abort=True)
    try:
        run_demo(root, port, console)
    except (SandboxError, _install.InstallError) as exc:
        raise Failure(str(exc), _shell.INTERNAL) from None


@main.command()
@dsn_option
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
@click.option("--json", "as_json", is_flag=True, help="With --list: print the jobs as JSON.")
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
    as_json: bool,
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
            if as_json:
                click.echo(dumps([dataclasses.asdict(job) for job in jobs]))
                return
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
        raise Failure(str(exc), _shell.NOT_INSTALLED) from None
    except psycopg.OperationalError as exc:
        raise Failure(
            f"cannot connect to PostgreSQL: {str(exc).strip()}", _shell.CANNOT_CONNECT
        ) from None


# backup, restore and top (docs/backup.md) live in their own module.
for _command in _backup_cli.COMMANDS:
    main.add_command(dsn_option(_command))


if __name__ == "__main__":
    main()
