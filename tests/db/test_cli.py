"""The admmgt command as CI and DBAs call it: exit codes and output."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner, Result

import admmgt
from admmgt import _fleet
from admmgt.cli import main
from tests.db import scripts as s
from tests.db.fleet import Fleet, history
from tests.fix_db import connect

# What Python's repr of a dict, a list of ints or a tuple looks like in a line.
PYTHON_REPR = re.compile(r"\{'[^']*': |\[\d+(, \d+)*\]|\(\d+,\)|Traceback \(most recent")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="admmgt")


def no_repr(text: str) -> None:
    found = PYTHON_REPR.search(text)
    assert found is None, f"Python repr or traceback {found.group(0)!r} in:\n{text}"


def test_install_status_json_and_verify_exit_codes(empty_dsn: str) -> None:
    installed = run("--dsn", empty_dsn, "install")
    assert installed.exit_code == 0, installed.output
    assert f"admmgt {admmgt.__version__} installed" in installed.output

    # --dsn after the subcommand works as well as before it.
    status = run("status", "--json", "--dsn", empty_dsn)
    assert status.exit_code == 0, status.output
    with connect(empty_dsn) as conn:
        report = json.loads(status.stdout)
        assert report == json.loads(json.dumps(_fleet.status_report(conn)))
        # The installer's summary plus the rows of fleet_status and script_status,
        # the changed applied scripts, and the tenants' usage totals (tenant_usage).
        extra = ("fleet", "scripts", "changed_scripts", "usage", "clock", "runs")
        assert {k: v for k, v in report.items() if k not in extra} == json.loads(
            json.dumps(admmgt.status(conn))
        )
        assert (report["fleet"], report["scripts"], report["changed_scripts"]) == ([], [], [])
        assert report["clock"] is None
        assert report["runs"] == []
        assert report["usage"] == {"size_bytes": None, "connections": None, "unknown": 0}

    assert run("verify", "--dsn", empty_dsn).exit_code == 0
    with connect(empty_dsn) as conn:
        conn.execute("UPDATE admmgt._code SET source = source || '#' WHERE module = 'admmgt_plpy'")
    tampered = run("--dsn", empty_dsn, "verify")
    assert tampered.exit_code == 1
    assert "Python module admmgt_plpy differs from the package" in tampered.output
    as_json = run("--dsn", empty_dsn, "verify", "--json")
    assert as_json.exit_code == 1
    assert (
        "Python module admmgt_plpy differs from the package"
        in json.loads(as_json.stdout)["problems"]
    )


def test_the_same_version_upgrade_is_a_no_op_that_says_so(admin_dsn: str) -> None:
    result = run("upgrade", "--dsn", admin_dsn)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"admmgt is already at version {admmgt.__version__}; nothing to do"
    )


def test_dash_h_is_help_everywhere() -> None:
    for args in (["-h"], ["status", "-h"], ["apply", "-h"], ["sandbox", "-h"]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
        assert result.output.startswith("Usage: admmgt"), result.output


def test_a_bad_option_is_a_usage_error_exit_2() -> None:
    result = run("status", "--no-such-option")
    assert result.exit_code == 2


def test_unreachable_server_is_exit_3_in_one_line() -> None:
    result = run("--dsn", "host=/nonexistent port=1", "status")
    assert result.exit_code == 3
    assert result.output.startswith("admmgt: cannot connect to PostgreSQL")
    assert "hint: give --dsn" in result.output
    no_repr(result.output)


def test_commands_on_a_database_without_admmgt_say_so_in_one_line(empty_dsn: str) -> None:
    dbname = empty_dsn.split("dbname=")[1].split()[0]
    for command in ("log", "drift", "status", "apply", "plan 1", "verify", "upgrade", "uninstall"):
        result = run("--dsn", empty_dsn, *command.split())
        assert result.exit_code == 4, (command, result.output)
        lines = result.output.strip().splitlines()
        installer_words = {
            "upgrade": "run `admmgt install`",
            "uninstall": "nothing to uninstall",
        }
        if command in installer_words:
            assert lines == [
                f"admmgt: admmgt is not installed in this database; {installer_words[command]}"
            ]
            continue
        assert lines[0].startswith(f'admmgt: admmgt is not installed in database "{dbname}"')
        assert lines[1:] == [
            "hint: point --dsn at the admin database, or run `admmgt install` there"
        ]


def test_drift_of_an_unknown_tenant_is_a_usage_error(admin_dsn: str) -> None:
    result = run("drift", "--dbname", "nosuchtenant", "--dsn", admin_dsn)
    assert result.exit_code == 2, result.output
    assert result.output.startswith('admmgt: no database "nosuchtenant" is registered')
    no_repr(result.output)


def test_every_read_command_has_valid_json(fleet: Fleet, admin_dsn: str) -> None:
    s.script(fleet.admin, 1, "orders")
    s.table(fleet.admin, 1, "orders", [s.ID, ("placed", "timestamptz")])
    assert run("apply", "--dsn", admin_dsn).exit_code == 0
    outputs = {}
    for command in ("status", "log", "drift", "verify", "plan 1"):
        result = run(*command.split(), "--json", "--dsn", admin_dsn)
        assert result.exit_code == 0, (command, result.output)
        outputs[command] = json.loads(result.stdout)
    assert [r["step"] for r in outputs["plan 1"]] == sorted(r["step"] for r in outputs["plan 1"])
    assert [r["kind"] for r in outputs["plan 1"]] == ["create_schema", "create_table"]
    assert outputs["plan 1"][1]["statement"].startswith('CREATE TABLE "mgttest"."orders"')
    assert {r["dbname"] for r in outputs["log"]} >= set(fleet.databases)
    # Times keep their zone.
    assert all(re.search(r"[+-]\d\d:\d\d$", r["started_at"]) for r in outputs["log"])
    assert outputs["drift"] == []
    assert outputs["verify"]["ok"] is True


def test_apply_with_one_broken_tenant_exits_1_with_a_summary(fleet: Fleet, admin_dsn: str) -> None:
    broken = fleet.tenants[1]
    with fleet.connect(broken) as conn:
        conn.execute("CREATE TABLE mgttest.invoices (x int)")  # collides with the script
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "invoices", [s.ID])

    dry = run("apply", "--dry-run", "--dsn", admin_dsn)
    assert dry.exit_code == 0, dry.output
    assert dry.stdout == "dry run: nothing was changed\n"
    no_repr(dry.output)

    result = run("apply", "--dsn", admin_dsn)
    assert result.exit_code == 1, result.output
    no_repr(result.output)
    total = len(fleet.tenants)
    # The progress the NOTICE lines carry, each line once.
    assert result.output.count(f"[{total}/{total}]") == 1, result.output
    summary = result.stdout.splitlines()
    assert re.match(r"run \d+ applyScripts: failed \(databases: 1 failed, 2 ok\)$", summary[0]), (
        summary
    )
    assert summary[1].startswith(f"  failed: {broken}: script 1 failed at step ")
    assert 'relation "invoices" already exists' in summary[1]
    assert "needs attention" in summary[-1]

    with fleet.connect(broken) as conn:
        conn.execute("DROP TABLE mgttest.invoices")
    again = run("apply", "--dsn", admin_dsn)
    assert again.exit_code == 0, again.output
    assert re.match(
        r"run \d+ applyScripts: ok \(databases: 1 noop, 1 ok\)$", again.stdout.splitlines()[0]
    )


def test_maintain_plan_rollback_and_replay_mirror_the_procedures(
    fleet: Fleet, admin_dsn: str
) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID])
    assert run("apply", "--dsn", admin_dsn).exit_code == 0
    plan = run("plan", "1", "--dsn", admin_dsn)
    assert plan.exit_code == 0
    assert plan.stdout.startswith(
        '-- step 1: create_schema mgttest\nCREATE SCHEMA IF NOT EXISTS "mgttest";\n'
        "-- step 2: create_table mgttest.orders\nCREATE TABLE"
    )
    assert run("plan", "99", "--dsn", admin_dsn).exit_code == 2

    maintain = run("maintain", "--days", "10", "--dsn", admin_dsn)
    assert maintain.exit_code == 0, maintain.output
    assert "applyMaintenance" in maintain.stdout

    rollback = run("rollback", "1", "--dsn", admin_dsn)
    assert rollback.exit_code == 0, rollback.output
    assert re.match(r"run \d+ rollbackScript: ok", rollback.stdout), rollback.stdout
    with fleet.connect(fleet.tenants[0]) as conn:
        assert history(conn)[-1] == (1, "rollback")

    refused = run("rollback", "1", "--dsn", admin_dsn)  # nothing left to roll back
    assert refused.exit_code == 1, refused.output
    assert refused.output.startswith("admmgt: ERROR ")
    no_repr(refused.output)

    bad_replay = run("replay", "nosuchtenant", "1", "--dsn", admin_dsn)
    assert bad_replay.exit_code == 1
    assert "nosuchtenant" in bad_replay.output


def test_a_dry_run_with_a_script_that_would_be_refused_exits_1(
    fleet: Fleet, admin_dsn: str
) -> None:
    s.script(fleet.admin, 1)
    s.table(fleet.admin, 1, "orders", [s.ID, ("bad", "int; DROP TABLE x")])
    dry = run("apply", "--dry-run", "--dsn", admin_dsn)
    assert dry.exit_code == 1, dry.output
    assert "NOTICE:  script 1 would be refused:" in dry.output
    assert dry.stdout.splitlines() == [
        "dry run: a real run would refuse what the ERROR above names",
        "dry run: nothing was changed",
    ]


def test_schedule_list_json_is_valid(admin_dsn: str) -> None:
    admin_db = admin_dsn.split("dbname=")[1].split()[0]
    name = f"admmgt-lifecycle-{admin_db}"
    try:
        added = run("schedule", "--lifecycle", "0 4 1 1 *", "--dsn", admin_dsn)
        assert added.exit_code == 0, added.output
        listed = run("schedule", "--list", "--json", "--dsn", admin_dsn)
        assert listed.exit_code == 0, listed.output
        jobs = json.loads(listed.stdout)
        assert [(j["jobname"], j["schedule"], j["last_status"]) for j in jobs] == [
            (name, "0 4 1 1 *", None)
        ]
    finally:
        run("schedule", "--remove", "all", "--dsn", admin_dsn)
    empty = run("schedule", "--list", "--json", "--dsn", admin_dsn)
    assert json.loads(empty.stdout) == []
