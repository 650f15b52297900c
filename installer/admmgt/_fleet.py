"""The fleet as the CLI shows it: `admmgt status`, `admmgt log` and `admmgt drift`.

Everything here reads the admmgt views (fleet_status, script_status,
run_history) and detect_drift(), so what the CLI prints and what a DBA gets
from psql are the same rows. JSON output uses the views' column names.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from admmgt import _install

ATTENTION_ROWS = 20
MESSAGE_WIDTH = 90


def jsonable(value: Any) -> Any:
    """A view's value as JSON writes it: times in ISO 8601, numerics as numbers."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _rows(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return [{k: jsonable(v) for k, v in row.items()} for row in cur.fetchall()]


# ------------------------------------------------------------------- status


def status_report(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Version, templates, counts and pending scripts (as before) plus the views' rows.

    ``fleet`` holds admmgt.fleet_status (the template first, then by id) and
    ``scripts`` admmgt.script_status (by id).
    """
    report = _install.status(conn)
    report["fleet"] = _rows(conn, "SELECT * FROM admmgt.fleet_status ORDER BY istemplate DESC, id")
    report["scripts"] = _rows(conn, "SELECT * FROM admmgt.script_status ORDER BY id")
    report["changed_scripts"] = _install.changed_scripts(conn)
    report["usage"] = usage_totals(conn)
    report["clock"] = _pinned_clock(conn)
    report["runs"] = _rows(conn, "SELECT * FROM admmgt.unfinished_runs ORDER BY run_id")
    return report


def usage(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    """The heaviest tenants of admmgt.tenant_usage: by size, the unknown last."""
    return _rows(
        conn,
        "SELECT * FROM admmgt.tenant_usage ORDER BY size_bytes DESC NULLS LAST, database LIMIT %s",
        (limit,),
    )


def usage_totals(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Size and connections summed over the tenants whose numbers are known."""
    rows = _rows(
        conn,
        """SELECT sum(size_bytes) AS size_bytes, sum(connections) AS connections,
                  count(*) FILTER (WHERE size_bytes IS NULL AND status = 2) AS unknown
           FROM admmgt.tenant_usage""",
    )
    return rows[0]


def _pinned_clock(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The owner's pin of the fleet's clock (admmgt._clock), or None when it follows now()."""
    if conn.execute("SELECT to_regclass('admmgt._clock')").fetchone() == (None,):
        return None  # installed before the clock existed
    rows = _rows(
        conn,
        "SELECT to_char(pinned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"
        " AS pinned_at, pinned_by, reason FROM admmgt._clock",
    )
    return rows[0] if rows else None


def failing(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Databases with a recorded error or status 3: `admmgt status` exits 1 for them."""
    return [d for d in report["fleet"] if d["last_error"] or d["status"] == 3]


def problems(report: dict[str, Any]) -> list[str]:
    """Everything `admmgt status` exits 1 for, one line each: failed or erroring
    databases, tenants ahead of their template, registry rows their own history
    contradicts, unfinished promotions, failed scripts, and runs still running
    or interrupted."""
    found = [f"{d['database']}: {d['status_word']}, error recorded" for d in failing(report)]
    found += [
        f"{d['database']}: at script {d['scriptversion']}, ahead of the template"
        for d in report["fleet"]
        if d.get("ahead_of_template")
    ]
    found += [
        f"{d['database']}: registry says {d['scriptversion']}, its history {d['history_version']}"
        for d in report["fleet"]
        if d.get("registry_disagrees")
    ]
    found += [f"{d['database']}: {d['promotion']}" for d in report["fleet"] if d.get("promotion")]
    found += [f"script {s['id']}: failed" for s in report["scripts"] if s.get("status") == 3]
    found += [f"run {r['run_id']} ({r['operation']}) {r['state']}" for r in report.get("runs", [])]
    found += [f"applied script changed: {c}" for c in report.get("changed_scripts", [])]
    found += [
        f"{r['dbname']}: row-level security: {r['finding']} {r['object_name']}"
        for r in report.get("rls") or []
    ]
    return found


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # not reached


def _short(text: str | None, width: int = MESSAGE_WIDTH) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _when(value: str | None) -> str:
    """An ISO time as psql shows it, to the second and with its zone."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    offset = moment.strftime("%z")  # +0100; psql writes +01, or +05:30
    if offset:
        zone = offset[:3] + (":" + offset[3:5] if offset[3:5] != "00" else "")
        text += zone
    return text


def render_status(console: Console, report: dict[str, Any]) -> None:
    console.print(f"admmgt [bold]{report['version']}[/bold] in database {report['database']}")
    fleet = report["fleet"]
    templates = [d for d in fleet if d["istemplate"]]
    tenants = [d for d in fleet if not d["istemplate"]]
    console.print(
        "template: "
        + (
            ", ".join(
                f"{t['database']} (at script {t['scriptversion'] or 'none'})" for t in templates
            )
            or "none registered"
        )
    )

    clock = report.get("clock")
    if clock:
        console.print(
            f"[bold red]clock: pinned at {clock['pinned_at']}[/bold red] by {clock['pinned_by']}"
            + (f" ({clock['reason']})" if clock["reason"] else "")
            + "; every admmgt date is computed from it (the owner unpins it with"
            " CALL admmgt._unpin_clock();)"
        )

    counts = Table("tenants", "count")
    for name, count in report["tenants"].items():
        counts.add_row(name, str(count))
    if not report["tenants"]:
        counts.add_row("none registered", "0")
    created = [d for d in tenants if d["status"] == 2]
    if created:
        counts.add_row(
            "held back (updateflag false)", str(sum(not d["updateflag"] for d in created))
        )
        counts.add_row(
            "behind the newest script", str(sum(d["scripts_behind"] > 0 for d in created))
        )
        counts.add_row("with an error", str(sum(bool(d["last_error"]) for d in tenants)))
        totals = report["usage"]
        unknown = f" ({totals['unknown']} unknown)" if totals["unknown"] else ""
        counts.add_row("total size", _size(totals["size_bytes"]) + unknown)
        counts.add_row("connections", str(totals["connections"] or 0) + unknown)
    console.print(counts)

    pending = report["pending_scripts"]
    console.print(
        f"pending scripts: {', '.join(str(s['id']) for s in pending)}"
        if pending
        else "pending scripts: none"
    )
    if report["scripts"]:
        scripts = Table(
            "script", "description", "status", "applied", "pending", "failed", "held back"
        )
        for s in report["scripts"][-10:]:
            scripts.add_row(
                str(s["id"]),
                _short(s["description"], 40),
                s["status_word"],
                str(s["databases_applied"]),
                str(s["databases_pending"]),
                f"[red]{s['databases_failed']}[/red]" if s["databases_failed"] else "0",
                str(s["databases_held_back"]),
            )
        console.print(scripts)

    for r in report.get("runs", []):
        args = ", ".join(
            f"{k} {str(v).lower() if isinstance(v, bool) else v}"
            for k, v in (r["arguments"] or {}).items()
        )
        colour = "yellow" if r["state"] == "running" else "red"
        console.print(
            f"[{colour}]run {r['run_id']} ({r['operation']}{': ' + args if args else ''}) "
            f"{r['state']}[/{colour}]: pid {r['pid'] or '?'}, started {_when(r['started_at'])}, "
            f"{r['databases_done']} database(s) recorded"
            + (f", the last {r['last_database']}" if r["last_database"] else "")
            + (f"; call {r['operation']} again to resume it" if r["state"] == "interrupted" else "")
        )
    attention = [
        d
        for d in fleet
        if d["last_error"]
        or d["status"] in (1, 3)
        or d["scripts_behind"] > 0
        or d.get("ahead_of_template")
        or d.get("registry_disagrees")
        or d.get("promotion")
    ]
    ahead = sum(bool(d.get("ahead_of_template")) for d in fleet)
    if ahead:
        console.print(
            f"[red]{ahead} tenant(s) ahead of the template[/red] "
            "(a script the template no longer has)"
        )
    if attention:
        console.print(
            "[bold]needs attention[/bold] (failed, pending creation, behind, ahead or "
            "contradicted by its own history):"
        )
        table = Table("database", "status", "version", "behind", "last run", "last error")
        table.columns[0].no_wrap = True
        table.columns[-1].overflow = "fold"
        for d in attention[:ATTENTION_ROWS]:
            held = " (held back)" if not d["updateflag"] else ""
            last_run = f"{d['last_operation']} {d['last_outcome']}" if d["last_operation"] else "-"
            table.add_row(
                d["database"] + (" (template)" if d["istemplate"] else ""),
                (f"[red]{d['status_word']}[/red]" if d["status"] == 3 else d["status_word"]) + held,
                str(d["scriptversion"] if d["scriptversion"] is not None else "-")
                + (" [red](ahead)[/red]" if d.get("ahead_of_template") else "")
                + (
                    f" [red](history: {d['history_version']})[/red]"
                    if d.get("registry_disagrees")
                    else ""
                ),
                str(d["scripts_behind"]),
                last_run,
                f"[red]{_short(d['last_error'] or d.get('promotion') or '', 200)}[/red]"
                if d["last_error"] or d.get("promotion")
                else "",
            )
        console.print(table)
        if len(attention) > ATTENTION_ROWS:
            console.print(
                f"... and {len(attention) - ATTENTION_ROWS} more: "
                "SELECT * FROM admmgt.fleet_status"
                " WHERE scripts_behind > 0 OR last_error IS NOT NULL;"
            )
    elif tenants and not problems(report):
        console.print("[green]every tenant is created, up to date and without errors[/green]")
    for line in report.get("changed_scripts", []):
        console.print(f"[red]applied script changed:[/red] {line}")
    if report.get("changed_scripts"):
        console.print(
            "repair: CALL admmgt.repair_script(<id>, 'restore') or (..., 'accept');"
            " docs/migrations.md"
        )


# ---------------------------------------------------------------------- rls


def rls_findings(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Rows of admmgt.check_rls(): every database audited."""
    return _rows(conn, "SELECT * FROM admmgt.check_rls()")


def render_rls(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("[green]row-level security: nothing found by check_rls[/green]")
        return
    console.print("[bold]row-level security[/bold] (admmgt.check_rls):")
    table = Table("database", "finding", "object", "detail")
    table.columns[0].no_wrap = True
    table.columns[-1].overflow = "fold"
    for r in rows[:ATTENTION_ROWS]:
        table.add_row(r["dbname"], r["finding"], r["object_name"], _short(r["detail"], 200))
    console.print(table)
    if len(rows) > ATTENTION_ROWS:
        console.print(
            f"... and {len(rows) - ATTENTION_ROWS} more: SELECT * FROM admmgt.check_rls();"
        )


# ---------------------------------------------------------------------- log


def history(conn: psycopg.Connection[Any], limit: int, failed_only: bool) -> list[dict[str, Any]]:
    """The latest rows of admmgt.run_history, newest first."""
    where = "WHERE outcome = 'failed'" if failed_only else ""
    return _rows(
        conn,
        f"SELECT * FROM admmgt.run_history {where} ORDER BY started_at DESC, run_id DESC LIMIT %s",
        (limit,),
    )


def render_log(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no runs recorded")
        return
    table = Table("run", "started", "operation", "database", "outcome", "message")
    for column in table.columns[:5]:
        column.no_wrap = True
    table.columns[-1].overflow = "fold"
    for r in rows:
        outcome = r["outcome"] or "running"
        message = _short(r["message"], 200).removeprefix(f'tenant "{r["dbname"]}": ')
        show_script = r["scriptid"] is not None and not message.startswith("script ")
        parts = [f"script {r['scriptid']}" if show_script else "", message]
        if r["duration_ms"] is not None:
            parts.append(f"({r['duration_ms']:.0f} ms)")
        table.add_row(
            str(r["run_id"]),
            _when(r["started_at"]),
            f"{r['operation']}\n[dim]by {r['run_by']}[/dim]",
            r["dbname"] or "-",
            f"[red]{outcome}[/red]" if outcome == "failed" else outcome,
            " ".join(p for p in parts if p),
        )
    console.print(table)


# -------------------------------------------------------------------- drift


def is_registered(conn: psycopg.Connection[Any], dbname: str) -> bool:
    """True when ``dbname`` is a database admmgt manages (not deleted)."""
    found = _rows(
        conn,
        "SELECT 1 AS x FROM admmgt.vendor_db_settings WHERE dbname = %s AND NOT deleted",
        (dbname,),
    )
    return bool(found)


def drift(conn: psycopg.Connection[Any], dbname: str | None) -> list[dict[str, Any]]:
    """Rows of admmgt.detect_drift(dbname)."""
    return _rows(conn, "SELECT * FROM admmgt.detect_drift(%s)", (dbname,))


def render_drift(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("[green]no drift: every tenant compared matches the template[/green]")
        return
    table = Table("database", "object", "difference", "detail")
    table.columns[0].no_wrap = True
    table.columns[-1].overflow = "fold"
    for r in rows:
        table.add_row(
            r["dbname"],
            f"{r['object_kind']} {r['object_name']}",
            r["difference"],
            _short(r["detail"], 200),
        )
    console.print(table)
    tenants = len({r["dbname"] for r in rows})
    console.print(f"{len(rows)} difference(s) in {tenants} tenant(s)")


# --------------------------------------------------------------------- plan


def script_exists(conn: psycopg.Connection[Any], script_id: int) -> bool:
    return bool(_rows(conn, "SELECT 1 AS x FROM admmgt.scripts WHERE id = %s", (script_id,)))


def plan(conn: psycopg.Connection[Any], script_id: int) -> list[dict[str, Any]]:
    """Rows of admmgt.plan_script(script_id), in the order applyScripts runs them."""
    return _rows(conn, "SELECT * FROM admmgt.plan_script(%s) ORDER BY step", (script_id,))


def render_plan(console: Console, rows: list[dict[str, Any]]) -> None:
    """Each statement as SQL, under a comment naming its step (valid psql input)."""
    if not rows:
        console.print("-- the script compiles to no statement", highlight=False)
        return
    for r in rows:
        note = "" if r["transactional"] else "; outside the transaction"
        console.print(f"-- step {r['step']}: {r['kind']} {r['target']}{note}", highlight=False)
        statement = r["statement"].rstrip()
        console.print(
            statement if statement.endswith(";") else statement + ";",
            highlight=False,
            markup=False,
        )
