"""applyMaintenance and lifecycleMgt on schema tenants (issue 16): the template
schema first, then each schema tenant, in its own schema of the host database,
one transaction each, a failure isolated to its tenant, the run log as for
databases. The fleet is made by hand (tests/db/fleet.py, make_schema_fleet):
the metadata names the template schema mgttest, the tables are created in
every schema."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.db import clock
from tests.db import scripts as s
from tests.db.fleet import Notices, SchemaFleet, make_fleet, make_schema_fleet
from tests.db.test_maintenance import range_table

Conn = psycopg.Connection[Any]


@pytest.fixture
def schemas(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> SchemaFleet:
    """A host database with the template schema mgttest and two tenant schemas."""
    return make_schema_fleet(cluster_dsn, admin, tenant_prefix, 2)


def applied(admin: Conn) -> None:
    """Every script counts as applied to the template (the tables are made by hand)."""
    admin.execute("UPDATE admmgt.scripts SET status = 2")


def make_parent(
    fleet: SchemaFleet, table: str, *, default: bool = False, only: list[str] | None = None
) -> None:
    """<schema>.<table> range-partitioned by on_day, in every schema (or ``only``)."""
    with fleet.connect() as conn:
        for schema in fleet.schemas if only is None else only:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY, on_day date NOT NULL,"
                    " note text) PARTITION BY RANGE (on_day)"
                ).format(sql.Identifier(schema, table))
            )
            if default:
                conn.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                        sql.Identifier(schema, f"{table}_default"), sql.Identifier(schema, table)
                    )
                )


def children(fleet: SchemaFleet, schema: str) -> dict[str, set[str]]:
    """{parent: its partitions} of every partitioned table in ``schema``."""
    with fleet.connect() as conn:
        found: dict[str, set[str]] = {}
        for parent, child, _ in clock.partitions(conn, schema):
            found.setdefault(parent, set()).add(child)
        return found


def relations(fleet: SchemaFleet, schema: str) -> set[str]:
    with fleet.connect() as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n"
                " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                (schema,),
            )
        }


def maintain(fleet: SchemaFleet, numdays: int, *, fails: bool = False) -> list[str]:
    notices = Notices(fleet.admin)
    query = "CALL admmgt.applyMaintenance(t_separatedb => 0, t_numdays => %s)"
    if fails:
        with pytest.raises(psycopg.Error) as failed:
            fleet.admin.execute(query, (numdays,))
        assert failed.value.sqlstate == "ZA001", failed.value
    else:
        fleet.admin.execute(query, (numdays,))
    return notices.take_without_clock()


def lifecycle(fleet: SchemaFleet, *, dry_run: bool = False, fails: bool = False) -> list[str]:
    notices = Notices(fleet.admin)
    query = "CALL admmgt.lifecycleMgt(t_separatedb => 0, t_dry_run => %s)"
    if fails:
        with pytest.raises(psycopg.Error) as failed:
            fleet.admin.execute(query, (dry_run,))
        assert failed.value.sqlstate == "ZA001", failed.value
    else:
        fleet.admin.execute(query, (dry_run,))
    return notices.take_without_clock()


def label(fleet: SchemaFleet, schema: str) -> str:
    return f"{fleet.host}.{schema}"


# ------------------------------------------------------------ applyMaintenance


@pytest.mark.parametrize(
    ("today", "interval", "numdays", "expected"),
    [
        ("2026-06-30", "month", 1, {"ev_2026_06", "ev_2026_07"}),  # a month's end
        ("2026-09-30", "quarter", 1, {"ev_2026_07", "ev_2026_10"}),  # a quarter's end
        ("2026-12-31", "year", 1, {"ev_2026_01", "ev_2027_01"}),  # a year's end
        ("2026-02-28", "day", 1, {"ev_2026_02_28", "ev_2026_03_01"}),  # February's end
    ],
)
def test_each_schema_tenant_gets_its_partitions_in_its_own_schema(
    schemas: SchemaFleet, today: str, interval: str, numdays: int, expected: set[str]
) -> None:
    clock.pin(schemas.admin, today)
    range_table(schemas.admin, 1, "ev", interval)
    applied(schemas.admin)
    make_parent(schemas, "ev", default=True)

    lines = maintain(schemas, numdays)

    for schema in schemas.schemas:
        assert children(schemas, schema) == {"ev": {*expected, "ev_default"}}, schema
    template, first, second = (label(schemas, x) for x in schemas.schemas)
    assert lines[0].startswith(f"template {template}: 2 partitions created in "), lines
    for tenant in (first, second):  # in the order they finish
        assert any(
            re.match(rf"\[[12]/2\] {re.escape(tenant)}: 2 partitions created in ", x) for x in lines
        ), lines
    through = date.fromisoformat(today) + timedelta(days=numdays)
    assert lines[-1].startswith("applyMaintenance: 3 with new partitions"), lines
    assert lines[-1].endswith(f"; 6 partitions created through {through}"), lines
    # The run log names each tenant by its schema; the run says its mode.
    logged = schemas.admin.execute(
        "SELECT l.dbname, l.outcome, l.details -> 'created' FROM admmgt.run_log AS l"
        " JOIN admmgt.runs AS r ON r.id = l.run_id"
        " WHERE r.operation = 'applyMaintenance' AND r.arguments ->> 'separatedb' = '0'"
        " ORDER BY l.dbname"
    ).fetchall()
    assert [(r[0], r[1]) for r in logged] == [(x, "ok") for x in sorted(schemas.schemas)]
    created = {r[0]: set(r[2]) for r in logged}
    assert created == {x: {f"{x}.{name}" for name in expected} for x in schemas.schemas}

    again = maintain(schemas, numdays)
    assert again[-1].startswith("applyMaintenance: 3 nothing to create"), again
    for schema in schemas.schemas:
        assert children(schemas, schema) == {"ev": {*expected, "ev_default"}}


def test_a_locked_schema_tenant_fails_alone_and_the_others_get_theirs(
    schemas: SchemaFleet,
) -> None:
    clock.pin(schemas.admin, "2026-06-15")
    range_table(schemas.admin, 1, "ev", "month")
    applied(schemas.admin)
    make_parent(schemas, "ev")
    for name, value in (("lock_timeout_ms", "100"), ("lock_retries", "1")):
        schemas.admin.execute(
            "UPDATE admmgt.settings SET value = %s WHERE name = %s", (value, name)
        )
    locked, free = schemas.tenants
    holder = schemas.connect()
    holder.execute("BEGIN")
    holder.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(locked, "ev"))
    )
    try:
        lines = maintain(schemas, 20, fails=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = next(x for x in lines if f"{label(schemas, locked)}: " in x)
    assert f'FAILED: schema tenant "{label(schemas, locked)}": maintenance failed while' in line
    assert "could not get a lock within lock_timeout after 2 tries (55P03" in line
    assert "nothing was created in this schema" in line
    assert children(schemas, locked) == {}
    assert children(schemas, free) == {"ev": {"ev_2026_06", "ev_2026_07"}}
    assert children(schemas, schemas.template) == {"ev": {"ev_2026_06", "ev_2026_07"}}
    error = schemas.admin.execute(
        "SELECT last_error FROM admmgt.vendor_db_settings WHERE dbname = %s", (locked,)
    ).fetchone()
    assert error is not None and "maintenance failed" in error[0]
    assert maintain(schemas, 20)[-1].startswith(
        "applyMaintenance: 2 nothing to create, 1 with new partitions"
    )
    assert children(schemas, locked) == {"ev": {"ev_2026_06", "ev_2026_07"}}


def test_only_schema_tenants_of_the_template_schema_are_maintained(
    schemas: SchemaFleet,
) -> None:
    """A table the metadata puts outside the template schema is left out (NOTICE);
    a held-back tenant is left alone; a tenant without the table says so."""
    clock.pin(schemas.admin, "2026-06-15")
    range_table(schemas.admin, 1, "ev", "month")
    s.script(schemas.admin, 2, "elsewhere")
    other = s.table(
        schemas.admin, 2, "pub", [s.ID, ("on_day", "date", 0)], schema="public", haspart=1
    )
    schemas.admin.execute(
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype, partvalue)"
        " VALUES (%s, 'on_day', 'range', 'month')",
        (other,),
    )
    applied(schemas.admin)
    held, plain = schemas.tenants
    make_parent(schemas, "ev", only=[schemas.template, held])
    schemas.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET updateflag = false WHERE dbname = %s", (held,)
    )

    lines = maintain(schemas, 0)

    assert (
        "applyMaintenance: table skipped: public.pub is not in the template schema mgttest, so "
        "schema tenants do not have it; nothing is done for it in them"
    ) in lines
    assert children(schemas, schemas.template) == {"ev": {"ev_2026_06"}}
    assert children(schemas, held) == {}
    line = next(x for x in lines if x.startswith(f"[1/1] {label(schemas, plain)}: "))
    assert line == (
        f"[1/1] {label(schemas, plain)}: nothing to create\n"
        f"  {plain}.ev does not exist in this schema (has its script reached it?)"
    ), lines


def test_schema_mode_needs_a_template_schema(admin: Conn) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="no template schema is registered"):
        admin.execute("CALL admmgt.applyMaintenance(t_separatedb => 0)")


# ------------------------------------------------------------ lifecycleMgt


def policy(admin: Conn, table: str, value: dict[str, Any]) -> None:
    admin.execute(
        "UPDATE admmgt.script_tables SET lifecycle = %s::jsonb WHERE tablename = %s",
        (json.dumps(value), table),
    )


def months(fleet: SchemaFleet, table: str) -> list[str]:
    """Monthly children of <schema>.<table> made by maintenance from January 2026,
    through June 2026 (pinned at 15 June)."""
    clock.pin(fleet.admin, "2026-01-15")
    maintain(fleet, 150)
    clock.pin(fleet.admin, "2026-06-15")
    return [f"{table}_2026_{m:02d}" for m in range(1, 7)]


def test_expired_partitions_go_per_schema_and_archives_never_collide(
    schemas: SchemaFleet,
) -> None:
    range_table(schemas.admin, 1, "ev_drop", "month")
    range_table(schemas.admin, 2, "ev_arch", "month")
    policy(schemas.admin, "ev_drop", {"retention": "2 months", "action": "drop"})
    policy(schemas.admin, "ev_arch", {"retention": "2 months", "action": "archive"})
    applied(schemas.admin)
    make_parent(schemas, "ev_drop")
    make_parent(schemas, "ev_arch")
    dropped = months(schemas, "ev_drop")
    archived = months(schemas, "ev_arch")
    first = schemas.tenants[0]
    with schemas.connect() as conn:  # a row in an expired child of one tenant
        conn.execute(
            sql.SQL("INSERT INTO {} (on_day, note) VALUES ('2026-02-03', 'x')").format(
                sql.Identifier(first, "ev_arch")
            )
        )

    dry = lifecycle(schemas, dry_run=True)
    assert dry[-1].startswith("lifecycleMgt (dry run): 3 with data to expire"), dry
    assert children(schemas, first)["ev_drop"] == set(dropped)

    lines = lifecycle(schemas)

    # 2 months before 15 June is 15 April: January..March end on or before it.
    for schema in schemas.schemas:
        kids = children(schemas, schema)
        assert kids["ev_drop"] == set(dropped[3:]), schema
        assert kids["ev_arch"] == set(archived[3:]), schema
        assert relations(schemas, f"{schema}_archive") == set(archived[:3]), schema
        assert not set(dropped[:3]) & relations(schemas, schema)
    with schemas.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT note FROM {}").format(sql.Identifier(f"{first}_archive", archived[1]))
        ).fetchone()
    assert row == ("x",)
    line = next(x for x in lines if f"{label(schemas, first)}: " in x)
    assert "3 partitions dropped, 3 partitions archived in " in line, line
    assert f"\n  archived {first}.{archived[0]} -> {first}_archive.{archived[0]}" in line, line
    assert lines[-1].startswith("lifecycleMgt: 3 with expired data removed"), lines
    assert "; 9 partitions dropped, 0 detached, 9 archived, 0 rows deleted" in lines[-1], lines


def test_an_archive_schema_that_is_another_tenants_schema_is_refused(
    schemas: SchemaFleet,
) -> None:
    """Tenant <p>s0's archive would be <p>s0_archive: when a schema tenant of that
    name is registered, s0's expired partitions stay attached, said so; the
    others are archived."""
    range_table(schemas.admin, 1, "ev", "month")
    policy(schemas.admin, "ev", {"retention": "2 months", "action": "archive"})
    applied(schemas.admin)
    make_parent(schemas, "ev")
    names = months(schemas, "ev")
    clash, fine = schemas.tenants
    schemas.admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, status, separatedb, updateflag)"
        " VALUES (%s, 2, 0, false)",
        (f"{clash}_archive",),
    )

    lines = lifecycle(schemas)

    assert children(schemas, clash)["ev"] == set(names)
    assert relations(schemas, f"{clash}_archive") == set()
    assert children(schemas, fine)["ev"] == set(names[3:])
    assert relations(schemas, f"{fine}_archive") == set(names[:3])
    assert (
        f"  {clash}.{names[0]} [2026-01-01, 2026-02-01) not archived: its archive schema "
        f"{clash}_archive is the schema of schema tenant {clash}_archive; use another "
        '"archive_schema"'
    ) in "\n".join(lines).splitlines(), lines


def test_expired_rows_of_a_plain_table_are_deleted_per_schema(schemas: SchemaFleet) -> None:
    clock.pin(schemas.admin, "2026-06-15")
    s.script(schemas.admin, 1, "logs")
    s.table(schemas.admin, 1, "logs", [s.ID, ("created_at", "timestamptz", 0)])
    policy(schemas.admin, "logs", {"retention": "30 days", "column": "created_at"})
    applied(schemas.admin)
    with schemas.connect() as conn:
        for n, schema in enumerate(schemas.schemas):
            conn.execute(
                sql.SQL("CREATE TABLE {} (id bigint, created_at timestamptz)").format(
                    sql.Identifier(schema, "logs")
                )
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, '2026-06-15 12:00+00'::timestamptz"
                    " - make_interval(days => g * 10) FROM generate_series(1, %s) AS g"
                ).format(sql.Identifier(schema, "logs")),
                (n + 3,),
            )
    lines = lifecycle(schemas)
    with schemas.connect() as conn:
        left = {
            schema: conn.execute(
                sql.SQL("SELECT array_agg(id ORDER BY id) FROM {}").format(
                    sql.Identifier(schema, "logs")
                )
            ).fetchone()
            for schema in schemas.schemas
        }
    # Rows 10, 20, 30 days old are kept (30 days is not before the cutoff); older go.
    assert left == {schema: ([1, 2, 3],) for schema in schemas.schemas}
    first, second = schemas.tenants
    assert any(f"{label(schemas, first)}: 1 row deleted in " in x for x in lines), lines
    assert any(f"{label(schemas, second)}: 2 rows deleted in " in x for x in lines), lines


def test_lifecycle_schema_mode_needs_a_template_schema(admin: Conn) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="no template schema is registered"):
        admin.execute("CALL admmgt.lifecycleMgt(0)")


def test_rows_in_a_schema_tenants_default_partition_are_moved_there(
    schemas: SchemaFleet,
) -> None:
    clock.pin(schemas.admin, "2026-06-15")
    range_table(schemas.admin, 1, "ev", "month", hasdefault=1)
    applied(schemas.admin)
    make_parent(schemas, "ev", default=True)
    mover, other = schemas.tenants
    with schemas.connect() as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (on_day, note) VALUES ('2026-07-04', 'early')").format(
                sql.Identifier(mover, "ev")
            )
        )
    lines = maintain(schemas, 20)
    assert children(schemas, mover) == {"ev": {"ev_default", "ev_2026_06"}}  # July held back
    assert any(
        f"default partition {mover}.ev_default holds 1 row of {mover}.ev_2026_07" in x
        for x in lines
    ), lines
    notices = Notices(schemas.admin)
    schemas.admin.execute(
        "CALL admmgt.applyMaintenance(t_separatedb => 0, t_numdays => 20,"
        " t_move_default_rows => true)"
    )
    moved = notices.take_without_clock()
    assert children(schemas, mover) == {"ev": {"ev_default", "ev_2026_06", "ev_2026_07"}}
    assert children(schemas, other) == {"ev": {"ev_default", "ev_2026_06", "ev_2026_07"}}
    assert any(f"moved 1 row from {mover}.ev_default into {mover}.ev_2026_07" in x for x in moved)
    with schemas.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT note FROM {}").format(sql.Identifier(mover, "ev_2026_07"))
        ).fetchone()
    assert row == ("early",)


def test_each_mode_maintains_only_its_own_tenants(
    schemas: SchemaFleet, cluster_dsn: str, admin: Conn, tenant_prefix: str
) -> None:
    """Database tenants and schema tenants side by side: t_separatedb 1 and 0
    each make partitions in their own kind only."""
    clock.pin(admin, "2026-06-15")
    fleet = make_fleet(cluster_dsn, admin, f"{tenant_prefix}d", 1)
    range_table(admin, 1, "ev", "month")
    fleet.apply()
    make_parent(schemas, "ev")
    database = fleet.tenants[0]
    before = fleet.children(database, "mgttest.ev")

    maintain(schemas, 20)
    assert fleet.children(database, "mgttest.ev") == before
    assert children(schemas, schemas.tenants[0]) == {"ev": {"ev_2026_06", "ev_2026_07"}}

    with schemas.connect() as conn:
        conn.execute(
            sql.SQL("DROP TABLE {}").format(sql.Identifier(schemas.tenants[0], "ev_2026_07"))
        )
    lines = fleet.maintain(20)
    assert fleet.children(database, "mgttest.ev") >= {"ev_2026_06", "ev_2026_07"}
    assert children(schemas, schemas.tenants[0]) == {"ev": {"ev_2026_06"}}
    assert not [x for x in lines if schemas.host in x], lines
