"""fleet_status, run_history, script_status and the CLI that shows them (issue 7)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

import admmgt
from admmgt import _fleet
from admmgt.cli import main
from tests.db import scripts as s
from tests.db.fleet import Fleet, call, make_fleet, register

Conn = psycopg.Connection[Any]


class Views(Fleet):
    """The shared Fleet (tests/db/fleet.py) after two scripts:

    c0 and c3 have both; c1 was held back (updateflag false) before script 2;
    c2 failed on script 2; script 3 is ready but not run; c4 is registered
    but not created.
    """

    def __init__(self, fleet: Fleet, admin_dsn: str, prefix: str) -> None:
        super().__init__(fleet.admin, fleet.template, fleet.tenants)
        self.admin_dsn = admin_dsn
        self.c = [*fleet.tenants, f"{prefix}c4"]

    def view(self, query: str, *args: Any) -> list[dict[str, Any]]:
        with self.admin.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(query, args or None).fetchall())

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(main, ["--dsn", self.admin_dsn, *args])


@pytest.fixture
def fleet(cluster_dsn: str, admin: Conn, admin_dsn: str, tenant_prefix: str) -> Views:
    f = Views(make_fleet(cluster_dsn, admin, tenant_prefix, 4), admin_dsn, tenant_prefix)
    s.script(admin, 1, "orders")
    s.table(admin, 1, "orders", [s.ID])
    call(admin, "applyscripts")
    admin.execute(
        "UPDATE admmgt.vendor_db_settings SET updateflag = false WHERE dbname = %s", (f.c[1],)
    )
    f.execute(f.c[2], "CREATE TABLE mgttest.invoices (x int)")
    s.script(admin, 2, "invoices")
    s.table(admin, 2, "invoices", [s.ID])
    admin.execute("CALL admmgt.applyscripts(t_raise => false)")  # c2 fails: NOTICEs only
    s.script(admin, 3, "not run yet")
    register(admin, f.c[4])
    return f


def test_fleet_status_one_row_per_database(fleet: Views) -> None:
    rows = {r["dbname"]: r for r in fleet.view("SELECT * FROM admmgt.fleet_status")}
    assert set(rows) == {fleet.template, *fleet.c}
    assert [d for d, r in rows.items() if r["istemplate"]] == [fleet.template]
    behind = {d: (r["scriptversion"], r["scripts_behind"]) for d, r in rows.items()}
    assert behind == {
        fleet.template: (2, 1),
        fleet.c[0]: (2, 1),
        fleet.c[1]: (1, 2),
        fleet.c[2]: (1, 2),
        fleet.c[3]: (2, 1),
        fleet.c[4]: (None, 3),
    }
    broken = rows[fleet.c[2]]
    assert (broken["last_operation"], broken["last_outcome"]) == ("applyScripts", "failed")
    assert "script 2 failed at step" in broken["last_error"]
    assert rows[fleet.c[0]]["last_outcome"] == "ok"
    assert rows[fleet.c[1]]["last_operation"] == "applyScripts"  # script 1
    pending = rows[fleet.c[4]]
    assert (pending["status"], pending["status_word"], pending["last_run_at"]) == (
        1,
        "pending creation",
        None,
    )
    assert pending["size_bytes"] is None  # no such database: guarded, not an error
    assert all(rows[d]["size_bytes"] > 1_000_000 for d in [fleet.template, *fleet.c[:4]])
    assert all(r["database"] == r["dbname"].lower() for r in rows.values())


def test_removed_tenants_leave_fleet_status(fleet: Views) -> None:
    call(fleet.admin, "drop_database", fleet.c[3], "drop")
    names = {r["dbname"] for r in fleet.view("SELECT dbname FROM admmgt.fleet_status")}
    assert fleet.c[3] not in names and fleet.c[0] in names


def test_operator_reads_the_views_and_sizes_it_may_not_see_are_null(
    fleet: Views, test_id: str
) -> None:
    role = f"admmgt_test_{test_id}"
    fleet.admin.execute(f"CREATE ROLE {role} IN ROLE admmgt_operator")
    try:
        fleet.admin.execute(f"SET ROLE {role}")
        sizes = {
            r["dbname"]: r["size_bytes"]
            for r in fleet.view("SELECT dbname, size_bytes FROM admmgt.fleet_status")
        }
        assert fleet.view("SELECT count(*) AS n FROM admmgt.run_history")[0]["n"] > 0
        assert fleet.view("SELECT count(*) AS n FROM admmgt.script_status")[0]["n"] == 3
    finally:
        fleet.admin.execute("RESET ROLE")
        fleet.admin.execute(f"DROP ROLE {role}")
    # Tenants revoke CONNECT from PUBLIC; the template (made by the test) does not.
    assert sizes[fleet.template] is not None
    assert all(sizes[d] is None for d in fleet.c)


def test_script_status_counts_applied_pending_failed_and_held_back(fleet: Views) -> None:
    rows = fleet.view(
        "SELECT id, status_word, on_template, databases_applied, databases_pending,"
        " databases_failed, databases_held_back FROM admmgt.script_status ORDER BY id"
    )
    assert [tuple(r.values()) for r in rows] == [
        (1, "applied", True, 4, 0, 0, 0),
        (2, "ready", True, 2, 0, 1, 1),  # c2 failed, c1 held back
        (3, "ready", False, 0, 3, 0, 1),  # c0, c2 and c3 would get it next
    ]


def test_run_history_one_row_per_run_and_target(fleet: Views) -> None:
    rows = fleet.view("SELECT * FROM admmgt.run_history ORDER BY run_id, dbname")
    runs = fleet.view("SELECT id, operation FROM admmgt.runs ORDER BY id")
    assert [r["operation"] for r in runs] == ["create_database", "applyScripts", "applyScripts"]
    per_run = {r["id"]: [x["dbname"] for x in rows if x["run_id"] == r["id"]] for r in runs}
    assert per_run[runs[0]["id"]] == sorted(fleet.c[:4])
    assert per_run[runs[1]["id"]] == sorted([fleet.template, *fleet.c[:4]])
    assert per_run[runs[2]["id"]] == sorted([fleet.template, fleet.c[0], fleet.c[2], fleet.c[3]])
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert [(r["dbname"], r["scriptid"], r["sqlstate"]) for r in failed] == [
        (fleet.c[2], 2, "42P07")
    ]
    assert failed[0]["run_outcome"] == "failed"
    assert all(r["duration_ms"] is not None and r["finished_at"] >= r["started_at"] for r in rows)
    # A run that reached no database still shows, as one row.
    fleet.admin.execute(
        "INSERT INTO admmgt.runs (operation, outcome) VALUES ('applyScripts', 'noop')"
    )
    last = fleet.view("SELECT * FROM admmgt.run_history ORDER BY run_id DESC LIMIT 1")[0]
    assert (last["dbname"], last["outcome"]) == (None, "noop")


def test_status_json_matches_the_views_and_exits_1_on_a_failed_tenant(fleet: Views) -> None:
    result = fleet.cli("status", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["version"] == admmgt.__version__
    fleet_rows = fleet.view("SELECT * FROM admmgt.fleet_status ORDER BY istemplate DESC, id")
    script_rows = fleet.view("SELECT * FROM admmgt.script_status ORDER BY id")

    # size_bytes moves on its own between two reads (autovacuum, the
    # visibility map), so it is compared for its type, the rest exactly.
    def steady(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "size_bytes"} for r in rows]

    assert steady(report["fleet"]) == steady(
        [{k: _fleet.jsonable(v) for k, v in r.items()} for r in fleet_rows]
    )
    assert [isinstance(r["size_bytes"], int) for r in report["fleet"]] == [
        r["size_bytes"] is not None for r in fleet_rows
    ]
    assert isinstance(report["fleet"][0]["size_bytes"], int)  # the template
    assert report["scripts"] == [{k: _fleet.jsonable(v) for k, v in r.items()} for r in script_rows]
    assert report["fleet"][0]["dbname"] == fleet.template
    assert {r["dbname"]: r["scripts_behind"] for r in report["fleet"]}[fleet.c[2]] == 2
    assert [s["databases_failed"] for s in report["scripts"]] == [0, 1, 0]
    assert report["pending_scripts"] == [
        {"id": 2, "description": "invoices"},
        {"id": 3, "description": "not run yet"},
    ]

    table = fleet.cli("status")
    assert table.exit_code == 1
    assert "needs attention" in table.stdout and fleet.c[2] in table.stdout

    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET last_error = NULL, updateflag = false"
        " WHERE dbname = %s",
        (fleet.c[2],),
    )
    assert fleet.cli("status", "--json").exit_code == 0


def test_log_shows_recent_and_failed_targets(fleet: Views) -> None:
    result = fleet.cli("log", "--json", "--limit", "3")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    newest = fleet.view("SELECT max(run_id) AS id FROM admmgt.run_history")[0]["id"]
    assert rows[0]["run_id"] == newest
    failed = json.loads(fleet.cli("log", "--json", "--failed").stdout)
    assert [(r["dbname"], r["scriptid"]) for r in failed] == [(fleet.c[2], 2)]
    text = fleet.cli("log", "--failed", "--limit", "5")
    assert text.exit_code == 0 and fleet.c[2] in text.stdout and "failed" in text.stdout


def test_drift_command_exit_codes(fleet: Views) -> None:
    clean = fleet.cli("drift", "--dbname", fleet.c[0])
    assert clean.exit_code == 0, clean.output
    assert "no drift" in clean.stdout
    drifted = fleet.cli("drift", "--json")
    assert drifted.exit_code == 1, drifted.output
    rows = json.loads(drifted.stdout)
    # c1 (held back) and c2 (failed) are at script 1, the template at 2.
    assert sorted((r["dbname"], r["object_kind"]) for r in rows) == [
        (fleet.c[1], "version"),
        (fleet.c[2], "version"),
    ]


REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_reference_documents_every_object(admin: Conn) -> None:
    """docs/reference.md has a heading per routine, view and table, and each has a comment."""
    documented = set(re.findall(r"^### admmgt\.(\w+)", REFERENCE.read_text(), re.MULTILINE))
    documented.discard("script_history")  # lives in each managed database, not here
    catalog = dict(
        admin.execute(
            """SELECT p.proname, bool_and(obj_description(p.oid, 'pg_proc') IS NOT NULL)
               FROM pg_proc AS p
               WHERE p.pronamespace = 'admmgt'::regnamespace
                 AND NOT EXISTS (SELECT FROM pg_depend AS d
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                   AND d.deptype = 'e')
               GROUP BY p.proname
               UNION ALL
               SELECT c.relname, obj_description(c.oid, 'pg_class') IS NOT NULL
               FROM pg_class AS c
               WHERE c.relnamespace = 'admmgt'::regnamespace AND c.relkind IN ('r', 'p', 'v')"""
        ).fetchall()
    )
    assert sorted(set(catalog) - documented) == [], "in the catalog, missing from reference.md"
    assert sorted(documented - set(catalog)) == [], "in reference.md, not in the catalog"
    assert sorted(name for name, commented in catalog.items() if not commented) == []
    uncommented_columns = admin.execute(
        """SELECT c.relname || '.' || a.attname FROM pg_class AS c
           JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE c.relnamespace = 'admmgt'::regnamespace AND c.relkind = 'v'
             AND col_description(c.oid, a.attnum) IS NULL"""
    ).fetchall()
    assert uncommented_columns == []
