"""What a DBA reads in psql: error prefixes, wording, the schema's comment."""

from __future__ import annotations

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, register


def test_a_duplicate_tenant_name_shows_the_name(fleet: Fleet) -> None:
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        register(fleet.admin, fleet.tenants[0].upper())
    detail = caught.value.diag.message_detail or ""
    assert detail == f"Key (upper(dbname))=({fleet.tenants[0].upper()}) already exists."
    # Still allowed, as before: a tenant named like the template, a removed name again.
    register(fleet.admin, fleet.template)
    with pytest.raises(psycopg.errors.UniqueViolation):
        fleet.admin.execute(
            "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status)"
            " VALUES (%s, true, 2)",
            (fleet.template.upper(),),
        )


def test_errors_read_admmgt_not_plpy_error(fleet: Fleet) -> None:
    with pytest.raises(psycopg.Error) as caught:
        fleet.admin.execute("CALL admmgt.applyScripts(7)")
    assert caught.value.diag.message_primary == (
        "admmgt: t_separatedb must be 1 (database per tenant) or 0 (schema per tenant), not 7"
    )
    assert caught.value.diag.sqlstate == "P0001"


def test_dry_run_and_summary_wording(fleet: Fleet) -> None:
    notices = Notices(fleet.admin)
    fleet.admin.execute("CALL admmgt.applyScripts(dry_run => true)")
    assert notices.take()[-1] == (
        "applyScripts (dry run): no script is ready (status 1); nothing would be applied"
    )
    for i in (1, 2):
        s.script(fleet.admin, i)
        s.table(fleet.admin, i, f"t{i}", [s.ID])
    fleet.admin.execute("CALL admmgt.applyScripts(dry_run => true)")
    assert notices.take()[-1].startswith("applyScripts (dry run): would apply scripts 1 and 2 to")
    fleet.admin.execute("CALL admmgt.applyScripts()")
    summary = notices.take()[-1]
    total = len(fleet.databases)
    assert summary.startswith(f"applyScripts: {total} updated in ")
    assert summary.endswith("; the template included)")


def test_the_schema_says_what_it_is(admin: psycopg.Connection) -> None:
    row = admin.execute("SELECT obj_description('admmgt'::regnamespace, 'pg_namespace')")
    comment = row.fetchone()
    assert comment is not None and comment[0].startswith("admmgt: control plane")
