"""Per-tenant backup and restore, and the usage view, against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from admmgt import _backup
from admmgt.cli import main
from tests.db import scripts
from tests.db.fleet import Fleet, call, databases, make_fleet, register
from tests.fix_db import connect

Conn = psycopg.Connection[Any]

# The catalog of one database, as text rows: what a restore must reproduce.
CATALOG = """
SELECT 'column', table_schema || '.' || table_name || '.' || column_name || ' '
       || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' '
       || pg_get_constraintdef(oid) FROM pg_constraint
WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog')
UNION ALL
SELECT 'function', pg_get_functiondef(p.oid) FROM pg_proc AS p
WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
UNION ALL
SELECT 'acl', c.oid::regclass::text || ' ' || c.relowner::regrole::text || ' '
       || coalesce(c.relacl::text, '') FROM pg_class AS c
WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                             'pg_toast'::regnamespace)
ORDER BY 1, 2
"""

DDL = """
CREATE SCHEMA mgttest;
CREATE TABLE mgttest.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            name text NOT NULL, created date DEFAULT current_date);
CREATE INDEX items_name_idx ON mgttest.items (name);
CREATE FUNCTION mgttest.item_count() RETURNS bigint LANGUAGE sql
    AS 'SELECT count(*) FROM mgttest.items';
"""


def catalog(conn: Conn) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(CATALOG)]


def row_counts(conn: Conn) -> dict[str, int]:
    tables = conn.execute(
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1"
    ).fetchall()
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in tables}  # type: ignore[index]


def cli(admin_dsn: str) -> Callable[..., Any]:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(main, ["--dsn", admin_dsn, *args])
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


def backups(admin: Conn, **where: Any) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = %s" for k in where) or "true"
    with admin.cursor(row_factory=psycopg.rows.dict_row) as cur:
        query = f"SELECT * FROM admmgt.backups WHERE {clause} ORDER BY id"
        cur.execute(query, list(where.values()))
        return cur.fetchall()


@pytest.fixture
def small_fleet(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> Fleet:
    """A template with a table, an index and a function, and 20 tenants with rows."""
    fleet = make_fleet(cluster_dsn, admin, tenant_prefix, 20, DDL)
    for i, tenant in enumerate(fleet.tenants):
        with fleet.connect(tenant) as conn:
            conn.execute(
                "INSERT INTO mgttest.items (name)"
                " SELECT 'item ' || g FROM generate_series(1, %s) g",
                (10 + i,),
            )
    return fleet


def test_twenty_tenants_in_parallel_then_one_dropped_and_restored_identically(
    small_fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    fleet, run = small_fleet, cli(admin_dsn)
    out = run("backup", "--all", "--to", str(tmp_path), "-j", "4").output
    assert "backed up 20 of 20 tenant(s)" in out, out
    assert "20/20 tenants" in out and "ETA" in out  # the progress bar's last state
    rows = backups(fleet.admin)
    assert [r["outcome"] for r in rows] == ["ok"] * 20
    assert {r["database"] for r in rows} == set(fleet.tenants)
    for r in rows:
        files, sha256, size = _backup.manifest(Path(r["path"]))
        assert (files, sha256, size) == (r["files"], r["sha256"], r["size_bytes"])
        assert "toc.dat" in files and r["finished_at"] > r["started_at"]
        assert "password" not in json.dumps(r, default=str).lower()
    # Several at a time: some dumps overlapped in time.
    overlaps = max(
        sum(o["started_at"] < r["finished_at"] and r["started_at"] < o["finished_at"] for o in rows)
        for r in rows
    )
    assert overlaps >= 2, "no two backups ran at the same time"

    victim = fleet.tenants[7]
    with fleet.connect(victim) as conn:
        before_counts, before_catalog = row_counts(conn), catalog(conn)
    assert before_counts == {"mgttest.items": 17}
    call(fleet.admin, "drop_database", victim, "drop")
    assert victim not in databases(fleet.admin, victim)
    backup_id = next(r["id"] for r in rows if r["database"] == victim)

    out = run("restore", "--tenant", victim, "--backup", str(backup_id)).output
    assert f'restored backup {backup_id} as database "{victim}"' in out, out
    with fleet.connect(victim) as conn:
        assert row_counts(conn) == before_counts
        assert catalog(conn) == before_catalog
    registry = fleet.admin.execute(
        "SELECT status, cluster_name FROM admmgt.vendor_db_settings"
        " WHERE dbname = %s AND NOT deleted",
        (victim,),
    ).fetchall()
    assert registry == [(2, "local")]
    # No PUBLIC connect on the restored tenant (invariant 9).
    acl = fleet.admin.execute(
        "SELECT has_database_privilege('public', %s, 'CONNECT')", (victim,)
    ).fetchone()
    assert acl == (False,)


def test_a_live_tenant_is_only_overwritten_with_replace(
    small_fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    fleet, run = small_fleet, cli(admin_dsn)
    tenant = fleet.tenants[0]
    run("backup", "--tenant", tenant, "--to", str(tmp_path))
    (b,) = backups(fleet.admin)
    with fleet.connect(tenant) as conn:
        conn.execute("DELETE FROM mgttest.items")
    refused = run("restore", "--tenant", tenant, "--backup", str(b["id"]), code=1).output
    assert f'tenant "{tenant}" is a live tenant' in refused and "--replace" in refused, refused
    with fleet.connect(tenant) as conn:
        assert row_counts(conn) == {"mgttest.items": 0}  # untouched
    assert not databases(fleet.admin, f"{tenant}_restore_%")

    # The tenant's login role (tenant_login_role) keeps its CONNECT; PUBLIC gets none.
    fleet.admin.execute(f'CREATE ROLE "{tenant}" LOGIN')
    try:
        fleet.admin.execute(
            f"COMMENT ON ROLE \"{tenant}\" IS 'admmgt tenant role of database {tenant}'"
        )
        out = run("restore", "--tenant", tenant, "--backup", str(b["id"]), "--replace").output
        assert "replaced the old one" in out, out
        privileges = fleet.admin.execute(
            "SELECT has_database_privilege(%s, %s, 'CONNECT'),"
            " has_database_privilege('public', %s, 'CONNECT')",
            (tenant, tenant, tenant),
        ).fetchone()
        assert privileges == (True, False)
    finally:
        fleet.admin.execute(f'DROP OWNED BY "{tenant}"')
        fleet.admin.execute(f'DROP ROLE "{tenant}"')
    with fleet.connect(tenant) as conn:
        assert row_counts(conn) == {"mgttest.items": 10}
    assert databases(fleet.admin, f"{tenant}%") == {tenant}
    registered = fleet.admin.execute(
        "SELECT count(*) FROM admmgt.vendor_db_settings WHERE dbname = %s AND NOT deleted",
        (tenant,),
    ).fetchone()
    assert registered == (1,)


def test_a_backup_at_script_3_restored_as_new_tenant_is_converged_by_applyscripts(
    fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    admin, run = fleet.admin, cli(admin_dsn)
    for n in (1, 2, 3):
        scripts.script(admin, n)
        scripts.table(admin, n, f"t{n}", [scripts.ID, ("v", "text")])
    fleet.apply()
    tenant = fleet.tenants[0]
    run("backup", "--tenant", tenant, "--to", str(tmp_path))
    (b,) = backups(admin)
    assert b["scriptversion"] == 3
    scripts.script(admin, 4)
    scripts.table(admin, 4, "t4", [scripts.ID])
    fleet.apply()

    new = f"{tenant}_copy"
    out = run("restore", "--tenant", tenant, "--backup", str(b["id"]), "--as", new).output
    assert "registered at script 3" in out, out
    assert admin.execute(
        "SELECT status, scriptversion FROM admmgt.vendor_db_settings WHERE dbname = %s", (new,)
    ).fetchall() == [(2, 3)]
    fleet.apply()
    assert admin.execute(
        "SELECT scriptversion FROM admmgt.vendor_db_settings WHERE dbname = %s", (new,)
    ).fetchone() == (4,)
    with fleet.connect(new) as conn:
        assert conn.execute("SELECT max(script_id) FROM admmgt.script_history").fetchone() == (4,)
        assert conn.execute("SELECT to_regclass('mgttest.t4') IS NOT NULL").fetchone() == (True,)
    with fleet.connect(tenant) as conn:  # the original is untouched
        assert conn.execute("SELECT max(script_id) FROM admmgt.script_history").fetchone() == (4,)


@pytest.mark.parametrize("damage", ["changed", "missing", "added"])
def test_a_tampered_backup_is_refused_and_nothing_is_restored(
    fleet: Fleet, admin_dsn: str, tmp_path: Path, damage: str
) -> None:
    admin, run = fleet.admin, cli(admin_dsn)
    tenant = fleet.tenants[1]
    run("backup", "--tenant", tenant, "--to", str(tmp_path))
    (b,) = backups(admin)
    folder = Path(b["path"])
    if damage == "changed":
        with open(folder / "toc.dat", "ab") as f:
            f.write(b"\0")
    elif damage == "missing":
        (folder / "toc.dat").unlink()
    else:
        (folder / "extra.dat").write_bytes(b"x")
    new = f"{tenant}_copy"
    out = run("restore", "--tenant", tenant, "--backup", str(b["id"]), "--as", new, code=1).output
    assert f'backup {b["id"]} of tenant "{tenant}"' in out and "is damaged" in out, out
    assert {"changed": "toc.dat changed", "missing": "toc.dat is missing"}.get(
        damage, "extra.dat was added"
    ) in out
    assert not databases(admin, f"{new}%")
    assert admin.execute(
        "SELECT count(*) FROM admmgt.vendor_db_settings WHERE dbname = %s", (new,)
    ).fetchone() == (0,)


def test_a_backup_row_repointed_elsewhere_is_neither_restored_nor_pruned_there(
    fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    """An operator may write admmgt.backups; restore and prune act only on the
    folder admmgt backup made for the row (<root>/<cluster>/<database>/backup-<id>)."""
    import shutil

    admin, run = fleet.admin, cli(admin_dsn)
    tenant = fleet.tenants[0]
    run("backup", "--tenant", tenant, "--to", str(tmp_path / "dumps"))
    run("backup", "--tenant", tenant, "--to", str(tmp_path / "dumps"))
    first, _ = backups(admin)
    precious = tmp_path / "precious"  # a dump folder that is not this row's
    shutil.copytree(first["path"], precious)
    admin.execute(
        "DO $$ BEGIN CREATE ROLE admmgt_test_bkop NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    admin.execute("GRANT admmgt_operator TO admmgt_test_bkop")
    admin.execute("SET ROLE admmgt_test_bkop")
    admin.execute("UPDATE admmgt.backups SET path = %s WHERE id = %s", (str(precious), first["id"]))
    admin.execute("RESET ROLE")
    new = f"{tenant}_copy"
    out = run(
        "restore", "--tenant", tenant, "--backup", str(first["id"]), "--as", new, code=1
    ).output
    said = " ".join(out.split())
    assert f'backup {first["id"]} of tenant "{tenant}" cannot be restored' in said, said
    assert "is not the folder admmgt backup made for it" in said, said
    assert not databases(admin, f"{new}%")
    out = run("backup", "--prune", "1").output
    assert "pruned 1 backup(s)" in out, out
    assert (precious / "toc.dat").is_file()
    (pruned,) = backups(admin, id=first["id"])
    assert pruned["outcome"] == "pruned"
    assert "its files were not removed" in pruned["message"], pruned["message"]


def test_archived_tenants_are_backed_up_once_and_prune_keeps_the_newest(
    fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    admin, run = fleet.admin, cli(admin_dsn)
    kept, archived = fleet.tenants
    call(admin, "drop_database", archived, "archive", False, f"{archived}_old")
    first = run("backup", "--all", "--to", str(tmp_path)).output
    assert "backed up 2 of 2 tenant(s)" in first, first
    assert {(r["database"], r["archived"]) for r in backups(admin)} == {
        (kept, False),
        (f"{archived}_old", True),
    }
    second = run("backup", "--all", "--to", str(tmp_path)).output
    assert f"skipped archived tenant {archived} (as {archived}_old)" in second, second
    assert "backed up 1 of 1 tenant(s)" in second
    run("backup", "--tenant", kept, "--to", str(tmp_path))
    mine = backups(admin, database=kept)
    assert len(mine) == 3

    out = run("backup", "--prune", "1").output
    assert "pruned 2 backup(s)" in out, out
    after = {r["id"]: r for r in backups(admin)}
    assert [after[r["id"]]["outcome"] for r in mine] == ["pruned", "pruned", "ok"]
    assert [Path(r["path"]).exists() for r in mine] == [False, False, True]
    assert after[backups(admin, archived=True)[0]["id"]]["outcome"] == "ok"


def test_a_failed_dump_is_recorded_and_leaves_no_folder(
    fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    admin, run = fleet.admin, cli(admin_dsn)
    gone = fleet.tenants[0]
    # The database vanishes behind admmgt's back: the registry still says created.
    with connect(admin_dsn) as other:
        other.execute(f'ALTER DATABASE "{gone}" RENAME TO "{gone}_x"')
    out = run("backup", "--all", "--to", str(tmp_path), code=1).output
    assert f'tenant "{gone}": backup' in out and "failed" in out, out
    failed = backups(admin, outcome="failed")
    assert [r["database"] for r in failed] == [gone]
    assert not Path(failed[0]["path"]).exists()
    assert [r["database"] for r in backups(admin, outcome="ok")] == [fleet.tenants[1]]


def test_no_password_reaches_a_command_line(admin: Conn) -> None:
    """pg_dump gets host, port and user of a user mapping's cluster, never its password."""
    admin.execute(
        "CREATE SERVER far_server FOREIGN DATA WRAPPER dblink_fdw"
        " OPTIONS (host '/far/socket', port '6543')"
    )
    admin.execute(
        "CREATE USER MAPPING FOR CURRENT_USER SERVER far_server"
        " OPTIONS (user 'far_user', password 'hunter2-far')"
    )
    admin.execute(
        "INSERT INTO admmgt.clusters (name, host, options, fdw_server)"
        " VALUES ('far', 'elsewhere', 'sslmode=disable', 'far_server')"
    )
    places = _backup.Places(admin)
    assert "password" not in places.conninfo("local", "x")
    far = conninfo_to_dict(places.conninfo("far", "x"))
    assert far == {
        "connect_timeout": "10",
        "sslmode": "disable",
        "host": "/far/socket",
        "port": "6543",
        "user": "far_user",
        "dbname": "x",
        "application_name": "admmgt",
    }
    with pytest.raises(_backup.BackupError, match="password"):
        _backup._run_tool(["true"], "dbname=x password=secret")


@pytest.mark.parametrize(
    ("options", "mapped", "refused"),
    [
        ("hostaddr=203.0.113.9", False, "hostaddr"),
        ("sslmode=disable  host = 'evil.example'", False, "host"),
        ("service=elsewhere", False, "service"),
        ("port=5433", True, "port"),
        ("passfile=/tmp/other-pgpass", True, "passfile"),
    ],
)
def test_cluster_options_cannot_reroute_backup_connections(
    admin: Conn, options: str, mapped: bool, refused: str
) -> None:
    """The operator may edit admmgt.clusters.options: a routing keyword there would
    send the passfile's (or the mapping's) password to another address, so the
    CLI refuses the cluster, as the server side does."""
    if mapped:
        admin.execute(
            "CREATE SERVER far_server FOREIGN DATA WRAPPER dblink_fdw"
            " OPTIONS (host '/far/socket', port '6543')"
        )
        admin.execute(
            "CREATE USER MAPPING FOR CURRENT_USER SERVER far_server OPTIONS (user 'far_user')"
        )
    admin.execute(
        "INSERT INTO admmgt.clusters (name, host, port, options, fdw_server)"
        " VALUES ('far', '/far/socket', 6543, %s, %s)",
        (options, "far_server" if mapped else None),
    )
    places = _backup.Places(admin)
    with pytest.raises(_backup.BackupError) as caught:
        places.conninfo("far", "x")
    message = str(caught.value)
    assert f'cluster "far": admmgt.clusters.options sets {refused}' in message, message
    assert f"Remove {refused}" in message, message
    # A harmless option still passes.
    admin.execute("UPDATE admmgt.clusters SET options = 'sslmode=disable' WHERE name = 'far'")
    assert conninfo_to_dict(_backup.Places(admin).conninfo("far", "x"))["sslmode"] == "disable"


# ------------------------------------------------------------------ usage


def usage(admin: Conn) -> dict[str, dict[str, Any]]:
    with admin.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM admmgt.tenant_usage")
        return {r["database"]: r for r in cur.fetchall()}


def test_tenant_usage_shows_a_slow_statement_and_unknown_never_as_zero(
    fleet: Fleet, admin_dsn: str
) -> None:
    admin = fleet.admin
    rows = usage(admin)
    assert set(rows) == set(fleet.tenants)
    for r in rows.values():
        assert r["size_bytes"] > 0 and r["connections"] is not None and r["problem"] is None
        assert r["slowest_statements"] is None  # pg_stat_statements not installed here yet

    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    slow, quiet = fleet.tenants
    with fleet.connect(slow) as conn:
        conn.execute("SELECT pg_sleep(0.3) AS admmgt_usage_probe")
        assert usage(admin)[slow]["connections"] >= 1
    rows = usage(admin)
    statements = rows[slow]["slowest_statements"]
    assert any("admmgt_usage_probe" in s["query"] for s in statements), statements
    probe = next(s for s in statements if "admmgt_usage_probe" in s["query"])
    assert probe["mean_ms"] >= 250 and probe["calls"] >= 1
    assert not any("admmgt_usage_probe" in s["query"] for s in rows[quiet]["slowest_statements"])

    # A cluster that cannot be reached, and a tenant whose database is gone.
    admin.execute(
        "INSERT INTO admmgt.clusters (name, host, port) VALUES ('nowhere', '/nonexistent', 5)"
    )
    register(admin, "far_away")
    admin.execute(
        "UPDATE admmgt.vendor_db_settings SET status = 2, cluster_name = 'nowhere'"
        " WHERE dbname = 'far_away'"
    )
    with connect(admin_dsn) as other:
        other.execute(f'ALTER DATABASE "{quiet}" RENAME TO "{quiet}_x"')
    rows = usage(admin)
    far = rows["far_away"]
    assert far["size_bytes"] is None and far["connections"] is None
    assert far["xact_commit"] is None and far["cache_hit_ratio"] is None
    assert 'cluster "nowhere" cannot be reached' in far["problem"]
    assert rows[quiet]["size_bytes"] is None
    assert "does not exist" in rows[quiet]["problem"]
    assert rows[slow]["size_bytes"] > 0

    status = json.loads(cli(admin_dsn)("status", "--json").output)
    assert status["usage"]["unknown"] == 2
    assert status["usage"]["size_bytes"] == rows[slow]["size_bytes"]


def test_tenant_usage_never_shows_a_password_a_statement_set(fleet: Fleet) -> None:
    """pg_stat_statements keeps a utility statement's text as sent; the operator
    who reads tenant_usage sees its string constants as '***'."""
    admin = fleet.admin
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    tenant = fleet.tenants[0]
    admin.execute(
        "DO $$ BEGIN CREATE ROLE admmgt_test_pwrole NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    try:
        # This tenant's statements only, so that the ALTER ROLE is among its 5.
        admin.execute(
            "SELECT pg_stat_statements_reset(0, oid, 0) FROM pg_database WHERE datname = %s",
            (tenant,),
        )
        with fleet.connect(tenant) as conn:
            conn.execute("ALTER ROLE admmgt_test_pwrole PASSWORD 'hunter2-usage'")
        raw = admin.execute(
            "SELECT count(*) FROM pg_stat_statements AS s JOIN pg_database AS d"
            " ON d.oid = s.dbid WHERE d.datname = %s AND s.query LIKE '%%hunter2-usage%%'",
            (tenant,),
        ).fetchone()
        assert raw == (1,)  # the extension kept it as sent
        statements = usage(admin)[tenant]["slowest_statements"]
        shown = [s["query"] for s in statements if "admmgt_test_pwrole" in s["query"]]
        assert shown == ["ALTER ROLE admmgt_test_pwrole PASSWORD '***'"], statements
        assert "hunter2-usage" not in json.dumps(statements)
    finally:
        admin.execute("DROP ROLE admmgt_test_pwrole")


def test_top_json_is_valid_and_lists_the_heaviest_first(fleet: Fleet, admin_dsn: str) -> None:
    big, small = fleet.tenants
    with fleet.connect(big) as conn:
        conn.execute(
            "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad"
            " FROM generate_series(1, 20000) g"
        )
    out = cli(admin_dsn)("top", "--json").output
    rows = json.loads(out)
    assert [r["database"] for r in rows] == [big, small]
    assert rows[0]["size_bytes"] > rows[1]["size_bytes"] > 0
    assert set(rows[0]) >= {"connections", "xact_commit", "deadlocks", "cache_hit_ratio"}
    text = cli(admin_dsn)("top").output
    assert big in text and small in text
    status = cli(admin_dsn)("status").output
    assert "total size" in status and "connections" in status


def test_a_tenant_on_another_cluster_is_measured_backed_up_and_restored_there(
    fleet: Fleet, admin_dsn: str, tmp_path: Path, remote_clusters: dict[str, Any], test_id: str
) -> None:
    admin, run, c2 = fleet.admin, cli(admin_dsn), remote_clusters["c2"]
    admin.execute(
        "INSERT INTO admmgt.clusters (name, host, port, options) VALUES ('c2', %s, %s, %s)",
        (c2.host, c2.sandbox.port, "user=postgres"),
    )
    far, copy = f"t{test_id}_far", f"t{test_id}_far2"
    try:
        with connect(c2.dsn) as conn:
            conn.execute(f'CREATE DATABASE "{far}"')
        with connect(c2.sandbox.dsn(far)) as conn:
            conn.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 123) g")
        admin.execute(
            "INSERT INTO admmgt.vendor_db_settings (dbname, status, cluster_name)"
            " VALUES (%s, 2, 'c2')",
            (far,),
        )
        row = usage(admin)[far]
        assert row["cluster_name"] == "c2" and row["problem"] is None and row["size_bytes"] > 0

        run("backup", "--tenant", far, "--to", str(tmp_path))
        (b,) = backups(admin, database=far)
        assert b["outcome"] == "ok" and b["cluster_name"] == "c2"
        assert Path(b["path"]).parent == tmp_path.resolve() / "c2" / far
        out = run("restore", "--tenant", far, "--backup", str(b["id"]), "--as", copy).output
        assert "on cluster c2" in out, out
        with connect(c2.sandbox.dsn(copy)) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (123,)
        assert not databases(admin, copy)  # not on the local cluster
        assert admin.execute(
            "SELECT cluster_name FROM admmgt.vendor_db_settings WHERE dbname = %s", (copy,)
        ).fetchone() == ("c2",)
    finally:
        with connect(c2.dsn) as conn:
            for name in (far, copy):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_restore_is_refused_while_create_database_runs(
    fleet: Fleet, admin_dsn: str, tmp_path: Path
) -> None:
    admin, run = fleet.admin, cli(admin_dsn)
    tenant = fleet.tenants[0]
    run("backup", "--tenant", tenant, "--to", str(tmp_path))
    (b,) = backups(admin)
    new = f"{tenant}_copy"
    with connect(admin_dsn) as other, other.transaction():
        # What create_database holds while it runs (admmgt_plpy._locks).
        other.execute("SELECT pg_advisory_xact_lock(1634560109, 1)")
        out = run("restore", "--tenant", tenant, "--backup", str(b["id"]), "--as", new, code=1)
        assert "create_database, drop_database or another restore is running" in out.output
    assert not databases(admin, f"{new}%")
    run("restore", "--tenant", tenant, "--backup", str(b["id"]), "--as", new)
    assert databases(admin, f"{new}%") == {new}
