"""What the `admmgt` command needs around its subcommands: exit codes, errors
without tracebacks, consoles that do not wrap when piped, NOTICE lines with
their HINT, and procedure calls with a progress bar and an honest exit code.

Exit codes have one meaning each (docs/cli.md):

    0 ok
    1 something needs attention: a run failed or was refused, drift, failed tenants
    2 usage: a bad option or argument (click's own code)
    3 cannot connect to PostgreSQL
    4 admmgt is not installed in that database, or an internal error
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import click
import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from admmgt import _install

OK = 0
ATTENTION = 1
USAGE = 2
CANNOT_CONNECT = 3
NOT_INSTALLED = 4
INTERNAL = 4

# Output that is not a terminal (a pipe, a file, CI) is never wrapped: a table
# is as wide as its content and a message stays on one line.
UNWRAPPED_WIDTH = 10_000


def make_console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    probe = Console(stderr=stderr, file=file)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, file=file, width=UNWRAPPED_WIDTH, soft_wrap=True)


class Failure(click.ClickException):
    """One line (and a hint) instead of a traceback, with its own exit code."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click: a ClassVar, read per instance
        self.hint = hint

    def show(self, file: IO[Any] | None = None) -> None:
        out = file or sys.stderr
        click.echo(f"admmgt: {self.format_message()}", file=out)
        if self.hint:
            click.echo(f"hint: {self.hint}", file=out)


SERVER_PREFIXES = ("admmgt: ", "plpy.Error: ")


def server_failure(exc: psycopg.Error, code: int = ATTENTION) -> Failure:
    """A server ERROR as psql shows it: message, then HINT; no Python repr."""
    diag = exc.diag
    message = (diag.message_primary or str(exc)).strip()
    for prefix in SERVER_PREFIXES:  # PL/Python's "<exception type>: "
        message = message.removeprefix(prefix)
    if diag.sqlstate:
        message = f"ERROR {diag.sqlstate}: {message}"
    if diag.message_detail:
        message += f"\nDETAIL: {diag.message_detail}"
    return Failure(message, code, diag.message_hint)


def _where(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    return f'database "{info.dbname}" ({info.host}:{info.port}, user {info.user})'


@contextmanager
def connect(
    dsn: str, *, need_admmgt: bool = True, on_notice: Any = None
) -> Iterator[psycopg.Connection[Any]]:
    """Connect with --dsn (or the PG* environment variables when it is empty).

    ``need_admmgt`` refuses, with exit 4, a database where admmgt is not
    installed, before any query can fail on a missing schema.
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name="admmgt")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Failure(
            f"cannot connect to PostgreSQL: {first}",
            CANNOT_CONNECT,
            "give --dsn 'host=... dbname=... user=...' (before or after the command), "
            "or set ADMMGT_DSN or the PG* environment variables",
        ) from None
    with conn:
        conn.add_notice_handler(on_notice or NoticePrinter(make_console(stderr=True)))
        if need_admmgt:
            with conn.cursor() as cur:
                found = _install.installed_version(cur)
            if found is None:
                raise Failure(
                    f"admmgt is not installed in {_where(conn)}",
                    NOT_INSTALLED,
                    "point --dsn at the admin database, or run `admmgt install` there",
                )
        try:
            yield conn
        except _install.NotInstalledError as exc:
            raise Failure(str(exc), NOT_INSTALLED) from None
        except _install.InstallError as exc:  # refused: another version, tenants, rights
            raise Failure(str(exc), ATTENTION) from None
        except (psycopg.errors.AdminShutdown, psycopg.errors.ConnectionFailure) as exc:
            raise Failure(
                f"lost the connection to PostgreSQL: {str(exc).strip()}", CANNOT_CONNECT
            ) from None
        except psycopg.Error as exc:
            if conn.closed:
                raise Failure(
                    f"lost the connection to PostgreSQL: {str(exc).strip()}", CANNOT_CONNECT
                ) from None
            raise server_failure(exc) from None


class NoticePrinter:
    """NOTICE lines as psql prints them, HINT included, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, diag: psycopg.errors.Diagnostic) -> None:
        severity = diag.severity_nonlocalized or diag.severity or "NOTICE"
        self.console.print(f"{severity}:  {diag.message_primary}", highlight=False, markup=False)
        if diag.message_hint:
            self.console.print(f"HINT:  {diag.message_hint}", highlight=False, markup=False)


# --------------------------------------------------------------- procedures

STEP = re.compile(r"\[(\d+)/(\d+)\]")


class ProgressFeed(NoticePrinter):
    """A progress bar (elapsed, ETA) fed by the "[n/N]" of admmgt's NOTICE lines.

    On a terminal the bar stays at the bottom and the NOTICE lines scroll above
    it; elsewhere the lines alone are printed, since each one already says
    where the run is.
    """

    def __init__(self, console: Console, title: str) -> None:
        super().__init__(console)
        self.title = title
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task: TaskID | None = None
        self.total = 0
        self.done = 0
        self.waves = 0

    def __enter__(self) -> ProgressFeed:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, diag: psycopg.errors.Diagnostic) -> None:
        line = diag.message_primary or ""
        step = STEP.search(line)
        if step:
            done, total = int(step.group(1)), int(step.group(2))
            if self.task is None or total != self.total or done < self.done:
                # A new wave (the template copies, then the tenants): a new bar.
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.waves += 1
                self.task = self.progress.add_task(self.title, total=total)
            self.total, self.done = total, done
            self.progress.update(self.task, completed=done)
        super().__call__(diag)  # printed above a running bar by rich


@dataclass
class RunResult:
    """What one CALL left in admmgt.runs, for the summary and the exit code."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    error: Failure | None = None

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if any(r["outcome"] in ("failed", "aborted") or r["outcome"] is None for r in self.runs):
            return ATTENTION
        return OK


def call(
    conn: psycopg.Connection[Any],
    statement: str,
    params: tuple[Any, ...],
    feed: ProgressFeed,
) -> RunResult:
    """Run one CALL, ``feed`` (the connection's notice handler, see connect)
    showing its NOTICEs as a progress bar; read back the runs it made.

    The CALL goes as psql sends it: values bound client-side, one simple-
    protocol query at top level, so a procedure that commits may. A server
    ERROR at the end of the CALL (admmgt raises one when a run failed, and
    for a refused script) is exit 1 whatever its SQLSTATE.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM admmgt.runs")
        row = cur.fetchone()
    before = int(row[0]) if row else 0
    result = RunResult()
    try:
        with feed, psycopg.ClientCursor(conn) as cur:
            cur.execute(statement, params)
    except psycopg.Error as exc:
        if conn.closed:
            raise Failure(
                f"lost the connection to PostgreSQL: {str(exc).strip()}", CANNOT_CONNECT
            ) from None
        result.error = server_failure(exc)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT id, operation, outcome, summary, finished_at IS NOT NULL AS finished
               FROM admmgt.runs WHERE id > %s AND run_by = session_user ORDER BY id""",
            (before,),
        )
        names = [c.name for c in cur.description or []]
        result.runs = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        cur.execute(
            """SELECT run_id, dbname, outcome, message FROM admmgt.run_log
               WHERE run_id = ANY(%s) AND outcome IN ('failed', 'unreachable')
               ORDER BY id""",
            ([r["id"] for r in result.runs],),
        )
        names = [c.name for c in cur.description or []]
        result.failures = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return result


FAILURES_SHOWN = 20


def counts(summary: dict[str, Any] | None) -> str:
    """{"ok": 20, "failed": 1} as "databases: 1 failed, 20 ok": never a Python repr.

    The counts are of databases, the template(s) included."""
    if not summary:
        return "nothing done"
    return "databases: " + ", ".join(f"{n} {k}" for k, n in sorted(summary.items()))


def print_summary(console: Console, result: RunResult, title: str) -> None:
    """Per run: its outcome and counts, then every failed database with why."""
    if not result.runs and result.error is None:
        console.print(f"{title}: no run recorded (nothing to do)", highlight=False)
    for run in result.runs:
        outcome = run["outcome"] or "not finished"
        console.print(
            f"run {run['id']} {run['operation']}: {outcome} ({counts(run['summary'])})",
            highlight=False,
            markup=False,
        )
    for f in result.failures[:FAILURES_SHOWN]:
        message = (f["message"] or "").removeprefix(f'tenant "{f["dbname"]}": ')
        console.print(f"  {f['outcome']}: {f['dbname']}: {message}", highlight=False, markup=False)
    if len(result.failures) > FAILURES_SHOWN:
        console.print(
            f"  ... and {len(result.failures) - FAILURES_SHOWN} more: admmgt log --failed",
            highlight=False,
        )
    if result.exit_code == ATTENTION and result.runs:
        console.print(
            "needs attention: `admmgt log --failed` and `admmgt status` say what to fix",
            highlight=False,
            markup=False,
        )


def dumps(value: Any) -> str:
    """JSON for --json: always valid, times in ISO 8601 with their zone."""
    from admmgt._fleet import jsonable

    def default(item: Any) -> Any:
        out = jsonable(item)
        return str(item) if out is item else out

    return json.dumps(value, indent=2, default=default)
