"""Tablespaces in partition metadata, with a real tablespace (issue 12).

Leaves go into the tablespace their row names; a partitioned relation gets its
tablespace by ALTER TABLE (PostgreSQL refuses TABLESPACE <the database's
default> on one), and partitions that name none land in their parent's. The
partitions applyMaintenance makes later follow the same rule.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Fleet
from tests.fix_db import connect

Conn = psycopg.Connection[Any]
SANDBOX = Path(__file__).resolve().parents[2] / ".sandbox"


@pytest.fixture
def tablespace(cluster_dsn: str, test_id: str) -> Iterator[str]:
    """A tablespace in a folder of the sandbox owned by the server's OS user.

    Requested before `fleet`, so it is dropped after the test's databases."""
    name = f"t{test_id}_tbs"
    folder = SANDBOX / f"tablespace_{test_id}"
    folder.mkdir(parents=True)
    if os.geteuid() == 0:  # the sandbox server runs as postgres when we are root
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    with connect(cluster_dsn) as conn:
        conn.execute(
            sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(name), sql.Literal(str(folder))
            )
        )
    yield name
    with connect(cluster_dsn) as conn:
        conn.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(name)))
    shutil.rmtree(folder, ignore_errors=True)


def where(conn: Conn) -> dict[str, str]:
    """Every table of mgttest and its tablespace ('default' = the database's)."""
    rows = conn.execute(
        """SELECT c.relname, coalesce(t.spcname, 'default')
           FROM pg_class AS c LEFT JOIN pg_tablespace AS t ON t.oid = c.reltablespace
           WHERE c.relnamespace = 'mgttest'::regnamespace AND c.relkind IN ('r', 'p')"""
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_partitions_go_where_the_metadata_says_in_a_real_and_the_default_tablespace(
    tablespace: str, fleet: Fleet
) -> None:
    admin = fleet.admin
    clock.pin(admin, "2027-03-31")  # the last day of a quarter
    s.script(admin, 1, "tablespaces", ready=False)
    accounts = s.table(
        admin,
        1,
        "accounts",
        [s.ID, ("status", "varchar(1)", 0), ("inactive_date", "timestamp")],
        haspart=1,
    )
    events = s.table(admin, 1, "events", [s.ID, ("happened_on", "date", 0)], haspart=1)
    ledger = s.table(admin, 1, "ledger", [s.ID, ("booked_on", "date", 0)], haspart=1)
    admin.execute(
        "UPDATE admmgt.script_tables SET tblspace = CASE id WHEN %s THEN %s"
        " WHEN %s THEN 'pg_default' END",
        (accounts, tablespace, events),
    )
    admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
        " partvalue, parttbs, subpartcolumnname, subparttype, subpartvalue, subparttbs) VALUES"
        " (%(a)s, 'status', 'list', 'A', NULL, NULL, NULL, NULL, NULL),"
        " (%(a)s, 'status', 'list', 'X', NULL, 'inactive_date', 'range', 'month', 'pg_default'),"
        " (%(e)s, 'happened_on', 'range', 'month', NULL, NULL, NULL, NULL, NULL),"
        " (%(l)s, 'booked_on', 'range', 'month', %(t)s, NULL, NULL, NULL, NULL)",
        {"a": accounts, "e": events, "l": ledger, "t": tablespace},
    )
    admin.execute("UPDATE admmgt.scripts SET status = 1")
    fleet.apply()
    lines = fleet.maintain(40)  # through 2027-05-10
    assert lines[-1].startswith("applyMaintenance: "), lines
    # 6 new in each of 3 databases (04 and 05 of the three range sets)
    assert "18 partitions created through 2027-05-10" in lines[-1], lines

    months = ("2027_03", "2027_04", "2027_05")
    expected = {
        "accounts": tablespace,  # ALTER TABLE ... SET TABLESPACE
        "accounts_status_a": tablespace,  # names none: its parent's
        "accounts_status_x": tablespace,  # partitioned, names none: its parent's
        **{f"accounts_status_x_{m}": "default" for m in months},  # subparttbs pg_default
        "events": "default",  # tblspace pg_default, partitioned: accepted, the default
        **{f"events_{m}": "default" for m in months},
        "ledger": "default",
        **{f"ledger_{m}": tablespace for m in months},  # parttbs, also from maintenance
    }
    for db in fleet.databases:
        with fleet.connect(db) as conn:
            assert where(conn) == expected, db
            # The rows go where the partitions are.
            conn.execute(
                "INSERT INTO mgttest.ledger (booked_on) VALUES ('2027-05-10'), ('2027-03-01')"
            )
            assert conn.execute("SELECT count(*) FROM mgttest.ledger_2027_05").fetchone() == (1,)


def test_a_database_whose_default_is_another_tablespace_gets_the_same_meaning(
    tablespace: str, cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    """The template's default tablespace is the real one: naming it on a partitioned
    table is what PostgreSQL refuses now (not pg_default), and pg_default on the
    leaves puts them in pg_default. Dropping the clause for 'pg_default', as the
    proof of concept did, would have got both wrong."""
    template, tenant = f"{tenant_prefix}tpl", f"{tenant_prefix}c0"
    with connect(cluster_dsn) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TABLESPACE {}").format(
                sql.Identifier(template), sql.Identifier(tablespace)
            )
        )
    with connect(admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")) as c:
        c.execute("CREATE SCHEMA mgttest")
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status) VALUES (%s, true, 2),"
        " (%s, false, 1)",
        (template, tenant),
    )
    admin.execute("CALL admmgt.create_database()")
    clock.pin(admin, "2026-04-30")
    s.script(admin, 1, "in the database's default tablespace", ready=False)
    events = s.table(admin, 1, "events", [s.ID, ("happened_on", "date", 0)], haspart=1)
    admin.execute("UPDATE admmgt.script_tables SET tblspace = %s", (tablespace,))
    admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
        " partvalue, parttbs) VALUES (%s, 'happened_on', 'range', 'month', 'pg_default')",
        (events,),
    )
    admin.execute("UPDATE admmgt.scripts SET status = 1")
    admin.execute("CALL admmgt.applyScripts()")
    admin.execute("CALL admmgt.applyMaintenance(t_numdays => 2)")
    for db in (template, tenant):
        dsn = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={db}")
        with connect(dsn) as conn:
            assert where(conn) == {
                "events": "default",  # the tablespace named is this database's default
                "events_2026_04": "pg_default",
                "events_2026_05": "pg_default",
            }, db
