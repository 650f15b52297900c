"""The admmgt command as CI and DBAs call it: exit codes and output."""

from __future__ import annotations

import json

from click.testing import CliRunner

import admmgt
from admmgt import _fleet
from admmgt.cli import main
from tests.fix_db import connect


def test_install_status_json_and_verify_exit_codes(empty_dsn: str) -> None:
    runner = CliRunner()
    installed = runner.invoke(main, ["--dsn", empty_dsn, "install"])
    assert installed.exit_code == 0, installed.output
    assert f"admmgt {admmgt.__version__} installed" in installed.output

    status = runner.invoke(main, ["--dsn", empty_dsn, "status", "--json"])
    assert status.exit_code == 0, status.output
    with connect(empty_dsn) as conn:
        report = json.loads(status.output)
        assert report == json.loads(json.dumps(_fleet.status_report(conn)))
        # The installer's summary plus the rows of fleet_status and script_status.
        assert {
            k: v for k, v in report.items() if k not in ("fleet", "scripts", "runs")
        } == json.loads(json.dumps(admmgt.status(conn)))
        assert (report["fleet"], report["scripts"], report["runs"]) == ([], [], [])

    assert runner.invoke(main, ["--dsn", empty_dsn, "verify"]).exit_code == 0
    with connect(empty_dsn) as conn:
        conn.execute("UPDATE admmgt._code SET source = source || '#' WHERE module = 'admmgt_plpy'")
    tampered = runner.invoke(main, ["--dsn", empty_dsn, "verify"])
    assert tampered.exit_code == 1
    assert "Python module admmgt_plpy differs from the package" in tampered.output


def test_unreachable_server_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["--dsn", "host=/nonexistent port=1", "status"])
    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL" in result.output
