# ruff: noqa: E501  (the demo's statements keep their own long lines)
"""The proof of concept's demo, its statements as written, against admmgt (issue 12).

Every metadata value is the demo's own: `pg_default` as the tablespace of the
list-partitioned table, of its list children and of their sub-partitions,
parttype 'list' beside subparttype 'RANGE', the upper-case sub-partition
column 'INACTIVE_DATE' of a timestamp column, the demo's lifecycle JSON, table
ids it assumes (1 to 4), rows drafted with status 0 and set to 1 afterwards,
and its positional calls (`applyScripts(1)`, `applyMaintenance(1, t_numdays =>
10)`, `refesh_stored_procedures(1, 2)`). Only the database names get the
test's prefix. The template and the tenant must reach script 5 with identical
catalogs and the partitions the pinned day implies.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from admmgt._catalog import schema_snapshot
from tests.db import clock
from tests.db.fleet import Notices, history
from tests.fix_db import connect, create_database

Conn = psycopg.Connection[Any]

# Each block runs in the admin database; TEMPLATE_SQL between them in the template.
SCRIPT_1 = """
insert into admmgt.scripts(id, description)  values (1, 'test to create new stuff');
insert into admmgt.script_tables (schemaname, scriptid, tablename, status, haspart, lifecycle, tblspace) values ('mgttest', 1, 'test_table', 0, 1, '{"status":"X", "inactive_date":"current_date-100"}', 'pg_default');
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (1, 1, 'id', 'bigint', 0, NULL, 1, 1);
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval)
    values (1, 1, 'description', 'varchar(256)', 1, NULL);
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval)
    values (1, 1, 'code', 'varchar(8)', 1, NULL);
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval)
    values (1, 1, 'status', 'varchar(1)', 0, NULL);
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval)
    values (1, 1, 'inactive_date', 'timestamp', 1, NULL);
insert into admmgt.script_table_partitions (tableid, partcolumnname, parttype, partvalue, parttbs)
    values (1, 'status', 'list', 'A', 'pg_default');
insert into admmgt.script_table_partitions (tableid, partcolumnname, parttype, partvalue, subpartcolumnname, subparttype, subpartvalue, parttbs, subparttbs)
    values (1, 'status', 'list', 'X', 'INACTIVE_DATE', 'RANGE', 'quarter', 'pg_default', 'pg_default');
insert into admmgt.script_tables (schemaname, scriptid, tablename, status, haspart, lifecycle, tblspace) values ('mgttest', 1, 'parenttable', 0, 0, null, 'pg_default');
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (2, 1, 'id', 'bigint', 0, NULL, 1, 1);
insert into admmgt.script_tables (schemaname, scriptid, tablename, status, haspart, lifecycle, tblspace) values ('mgttest', 1, 'childtable', 0, 0, null, 'pg_default');
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (3, 1, 'id', 'bigint', 0, NULL, 1, 1);
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (3, 1, 'parentid', 'bigint', 0, NULL, 0, 0);
insert into admmgt.script_table_fkeys (scriptid, schemaname, childtablename, childcolumnname, parenttablename, parentcolumnname, keyorder, delrule)
    values (1, 'mgttest', 'childtable', 'parentid', 'parenttable', 'id', 1, 'CASCADE');
update admmgt.script_tables set status = 1 where scriptid = 1;
update admmgt.scripts set status = 1 where id = 1;
update admmgt.script_table_fkeys  set status = 1 where scriptid = 1;
update admmgt.script_table_columns  set status = 1 where scriptid = 1;
call admmgt.create_database();
call admmgt.applyScripts(1);
call admmgt.applyMaintenance(1, t_numdays => 10);
select * from admmgt.script_log;
insert into admmgt.scripts(id, description)  values (2, 'add column to existing table');
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (2, 2, 'newcolumn', 'varchar(10)', 0, NULL, 0, 0);
update admmgt.scripts set status = 1 where id = 2;
update admmgt.script_table_columns  set status = 1 where scriptid = 2;
call admmgt.applyScripts(1);
"""

# The demo's procedure, written our own way: it adds the rows '1' to '5'.
TEMPLATE_SQL = """
CREATE OR REPLACE PROCEDURE mgttest.testproc1()
LANGUAGE sql
AS $$
    INSERT INTO mgttest.parenttable (newcolumn)
    SELECT n::varchar FROM generate_series(1, 5) AS n
$$;
"""

SCRIPTS_3_TO_5 = """
call admmgt.refesh_stored_procedures(1, 2);
insert into admmgt.scripts(id, description)  values (3, 'call stored proc');
insert into admmgt.script_procs(scriptid, proccallstmt) values (3,'call mgttest.testproc1()' );
update admmgt.script_procs set status = 1 where scriptid = 3;
update admmgt.scripts set status = 1 where id = 3;
call admmgt.applyScripts(1);
insert into admmgt.scripts(id, description)  values (4, 'add jsonb column to existing table');
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (2, 4, 'jsoncolumn', 'jsonb', 1, NULL, 0, 0);
update admmgt.scripts set status = 1 where id = 4;
update admmgt.script_table_columns  set status = 1 where scriptid = 4;
call admmgt.applyScripts(1);
insert into admmgt.scripts(id, description)  values (5, 'add a new table and a column to another tablee');
insert into admmgt.script_tables (schemaname, scriptid, tablename, status, haspart, lifecycle, tblspace) values ('mgttest', 5, 'anothertable', 0, 0, null, 'pg_default');
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (4, 5, 'id', 'bigint', 0, NULL, 1, 1);
insert into admmgt.script_table_columns (tableid, scriptid, columnname, datatype, nullable, defaultval, isprimarykey, isidentity)
    values (3, 5, 'nicecolumn', 'jsonb', 1, NULL, 0, 0);
update admmgt.scripts set status = 1 where id = 5;
update admmgt.script_tables  set status = 1 where scriptid = 5;
update admmgt.script_table_columns  set status = 1 where scriptid = 5;
call admmgt.applyScripts(1);
"""


def run_block(conn: Conn, block: str) -> None:
    """Each statement on its own, as psql runs a file (autocommit)."""
    for statement in (x.strip() for x in block.split(";\n")):
        if statement:
            conn.execute(statement)


def test_the_poc_demo_as_written_brings_template_and_tenant_to_script_5(
    cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    template, tenant = f"{tenant_prefix}unitemplate", f"{tenant_prefix}BigClient"
    template_dsn = create_database(cluster_dsn, template)
    with connect(template_dsn) as conn:
        conn.execute("CREATE SCHEMA mgttest AUTHORIZATION postgres")
    admin.execute(
        "insert into admmgt.vendor_db_settings (dbname,istemplate, status) values (%s, true, 2)",
        (template,),
    )
    admin.execute("insert into admmgt.vendor_db_settings (dbname) values (%s)", (tenant,))
    admin.execute("update admmgt.vendor_db_settings set status = 1 where dbname = %s", (tenant,))
    # 31 December: script 1's first quarter is Q4 2026 and maintenance's
    # 10 days reach into Q1 2027.
    clock.pin(admin, "2026-12-31")
    notices = Notices(admin)

    run_block(admin, SCRIPT_1)
    with connect(template_dsn) as conn:
        conn.execute(TEMPLATE_SQL)
    run_block(admin, SCRIPTS_3_TO_5)

    lines = notices.take()
    assert not [x for x in lines if "FAILED" in x or "failed" in x], lines
    assert any("the fleet's clock is pinned at 2026-12-31 12:00:00 UTC" in x for x in lines)
    databases = [template, tenant.lower()]
    catalogs = []
    for db in databases:
        with connect(template_dsn.replace(f"dbname={template}", f"dbname={db}")) as conn:
            assert history(conn) == [(i, "apply") for i in (1, 2, 3, 4, 5)], db
            assert clock.partitions(conn) == [
                ("test_table", "test_table_status_a", "FOR VALUES IN ('A')"),
                ("test_table", "test_table_status_x", "FOR VALUES IN ('X')"),
                (
                    "test_table_status_x",
                    "test_table_status_x_2026_10",
                    "FOR VALUES FROM ('2026-10-01 00:00:00') TO ('2027-01-01 00:00:00')",
                ),
                (
                    "test_table_status_x",
                    "test_table_status_x_2027_01",
                    "FOR VALUES FROM ('2027-01-01 00:00:00') TO ('2027-04-01 00:00:00')",
                ),
            ], db
            # pg_default is this database's default: stored as 0 everywhere.
            spaces = conn.execute(
                "SELECT DISTINCT reltablespace FROM pg_class"
                " WHERE relnamespace = 'mgttest'::regnamespace"
            ).fetchall()
            assert spaces == [(0,)]
            assert conn.execute("SELECT count(*) FROM mgttest.parenttable").fetchone() == (5,)
            with conn.cursor() as cur:
                catalogs.append(schema_snapshot(cur, "mgttest"))
    assert "column childtable.nicecolumn" in catalogs[0]
    assert "column parenttable.jsoncolumn" in catalogs[0]
    assert "table anothertable" in catalogs[0]
    assert catalogs[0] == catalogs[1]
    versions = admin.execute(
        "SELECT dbname, status, scriptversion FROM admmgt.vendor_db_settings ORDER BY id"
    ).fetchall()
    assert versions == [(template, 2, 5), (tenant, 2, 5)]
    assert admin.execute("SELECT array_agg(status ORDER BY id) FROM admmgt.scripts").fetchone() == (
        [2, 2, 2, 2, 2],
    )

    # The demo's lifecycle value is the proof of concept's own form: applyScripts
    # took it (above); lifecycleMgt refuses it, changing nothing, and says what to
    # write. Written so, it drops the X sub-partitions older than 100 days.
    with pytest.raises(psycopg.Error) as refused:
        admin.execute("call admmgt.lifecycleMgt()")
    assert "script_tables row 1 (mgttest.test_table), lifecycle" in str(refused.value)
    assert 'write {"retention": "100 days", "action": "drop"}' in str(refused.value)
    admin.execute(
        "update admmgt.script_tables set lifecycle = %s where id = 1",
        ('{"retention": "100 days", "action": "drop"}',),
    )
    clock.pin(admin, "2027-06-01")  # 100 days before: 2027-02-21, after Q4 2026 ended
    admin.execute("call admmgt.lifecycleMgt()")
    for db in databases:
        with connect(template_dsn.replace(f"dbname={template}", f"dbname={db}")) as conn:
            names = [p[1] for p in clock.partitions(conn)]
            assert names == [
                "test_table_status_a",
                "test_table_status_x",
                "test_table_status_x_2027_01",
            ], db
