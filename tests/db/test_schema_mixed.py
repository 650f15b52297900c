"""A fleet with both tenancy modes: what reads the registry for databases only
must leave schema tenants alone, or say what they are, never mistake them for
missing databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from admmgt.cli import main
from tests.db.fleet import Fleet, Hosted, make_fleet

Conn = psycopg.Connection[Any]


@pytest.fixture
def mixed(cluster_dsn: str, admin: Conn, tenant_prefix: str, hosted: Hosted) -> tuple[Fleet, str]:
    """A database template with one database tenant, and one schema tenant."""
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 1)
    schema = f"{tenant_prefix}s0"
    hosted.register("mgttest", template=True)
    hosted.register(schema)
    admin.execute("CALL admmgt.create_schema()")
    return fleet, schema


def test_check_rls_audits_the_databases_and_names_a_schema_tenant(
    mixed: tuple[Fleet, str], admin: Conn
) -> None:
    _fleet, schema = mixed
    audited = {r[0] for r in admin.execute("SELECT dbname FROM admmgt.check_rls()")}
    unreachable = admin.execute(
        "SELECT dbname FROM admmgt.check_rls() WHERE finding = 'unreachable'"
    ).fetchall()
    assert unreachable == [] and schema not in audited
    with pytest.raises(psycopg.Error) as refused:
        admin.execute("SELECT * FROM admmgt.check_rls(%s)", (schema,))
    assert f'check_rls: "{schema}" is a schema tenant' in str(refused.value.diag.message_primary)


def test_tenant_usage_lists_the_database_tenants_only(
    mixed: tuple[Fleet, str], admin: Conn
) -> None:
    fleet, _schema = mixed
    rows = admin.execute("SELECT dbname, problem FROM admmgt.tenant_usage ORDER BY dbname")
    assert rows.fetchall() == [(fleet.tenants[0], None)]


def test_backup_all_skips_a_schema_tenant_with_the_way_to_copy_it(
    mixed: tuple[Fleet, str], admin: Conn, admin_dsn: str, tmp_path: Path
) -> None:
    fleet, schema = mixed
    runner = CliRunner()
    result = runner.invoke(main, ["--dsn", admin_dsn, "backup", "--all", "--to", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f'skipped schema tenant "{schema}": backups of schema tenants are not built' in (
        result.output
    )
    backed = admin.execute("SELECT database, outcome FROM admmgt.backups").fetchall()
    assert backed == [(fleet.tenants[0], "ok")]
    one = runner.invoke(
        main, ["--dsn", admin_dsn, "backup", "--tenant", schema, "--to", str(tmp_path)]
    )
    assert one.exit_code != 0 and f'cannot back up schema tenant "{schema}"' in one.output


@pytest.mark.parametrize("mode", [0, 1])
def test_detect_drift_refuses_a_name_of_the_other_mode_or_none(
    mixed: tuple[Fleet, str], admin: Conn, mode: int
) -> None:
    fleet, schema = mixed
    other = fleet.tenants[0] if mode == 0 else schema
    with pytest.raises(psycopg.Error, match=r"is a (schema|database) tenant, not a"):
        admin.execute("SELECT * FROM admmgt.detect_drift(%s, %s)", (other, mode)).fetchall()
    with pytest.raises(psycopg.Error, match='"nosuch" is not a created tenant'):
        admin.execute("SELECT * FROM admmgt.detect_drift('nosuch', %s)", (mode,)).fetchall()
    mine = fleet.tenants[0] if mode == 1 else schema
    assert admin.execute("SELECT * FROM admmgt.detect_drift(%s, %s)", (mine, mode)).fetchall() == []


def test_drop_database_refuses_a_schema_tenant_and_points_to_drop_schema(
    mixed: tuple[Fleet, str], admin: Conn, hosted: Hosted
) -> None:
    _fleet, schema = mixed
    with pytest.raises(psycopg.Error) as refused:
        admin.execute("CALL admmgt.drop_database(%s, 'drop')", (schema,))
    assert f'"{schema}" is a schema tenant; drop_database removes database tenants' in str(
        refused.value.diag.message_primary
    )
    assert refused.value.diag.message_hint == f"CALL admmgt.drop_schema('{schema}');"
    assert hosted.rows()[schema][0] == 2 and schema in hosted.schemas()
