"""The version create_database records for a new tenant without connecting to
it (docs/tenants.md, create_database step 4), and what a version the registry
does not know (NULL) means to the operations that choose tenants by version.
Found in review (issue 14)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from tests.db import scripts as s
from tests.db.fleet import Fleet, Notices, call, make_template, register, registry
from tests.fix_db import connect


def _create_while_the_template_records_an_event(fleet: Fleet, name: str) -> None:
    """create_database of ``name`` while a session on the template (which holds
    CREATE DATABASE back) records one more history event, then leaves: the
    template's history changed during the run, so the copy's own history is
    read for its version."""
    register(fleet.admin, name)
    holder = connect(fleet.dsn(fleet.template))

    def record_and_leave() -> None:
        # An event that keeps the version (1): the copy has script 1 either way.
        holder.execute(
            "INSERT INTO admmgt.script_history (script_id, action) VALUES (1, 'baseline')"
        )
        holder.close()

    timer = threading.Timer(0.5, record_and_leave)
    timer.start()
    notices = Notices(fleet.admin)
    call(fleet.admin, "create_database")
    timer.join()
    assert registry(fleet.admin)[name][:2] == (2, 1), notices.take()


def test_rollback_script_undoes_a_tenant_created_while_the_template_changed(
    fleet: Fleet, tenant_prefix: str
) -> None:
    s.script(fleet.admin, 1, "orders")
    s.table(fleet.admin, 1, "orders", [s.ID, ("note", "text")])
    fleet.apply()
    late = f"{tenant_prefix}late"
    _create_while_the_template_records_an_event(fleet, late)
    call(fleet.admin, "rollbackscript", 1)
    for db in [*fleet.databases, late]:
        assert fleet.history(db)[-1] == (1, "rollback"), db


@pytest.mark.parametrize("operation", ["rollbackscript", "applyscripts"])
def test_a_tenant_whose_version_is_unknown_is_visited_not_skipped(
    fleet: Fleet, tenant_prefix: str, operation: str
) -> None:
    """NULL is what an interrupted create_database leaves (killed before its
    last UPDATE): every operation that picks tenants by version must look."""
    s.script(fleet.admin, 1, "orders")
    s.table(fleet.admin, 1, "orders", [s.ID, ("note", "text")])
    fleet.apply()
    unknown = fleet.tenants[0]
    fleet.admin.execute(
        "UPDATE admmgt.vendor_db_settings SET scriptversion = NULL WHERE dbname = %s", (unknown,)
    )
    if operation == "rollbackscript":
        call(fleet.admin, "rollbackscript", 1)
        assert fleet.history(unknown)[-1] == (1, "rollback")
    else:
        call(fleet.admin, "applyscripts")
        assert registry(fleet.admin)[unknown][:2] == (2, 1)  # read back from its history


def test_a_misconfigured_cluster_fails_its_own_tenants_not_the_whole_create_database(
    cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str
) -> None:
    make_template(cluster_dsn, admin, f"{tenant_prefix}tpl")
    # A cluster whose options admmgt refuses (a routing keyword): every
    # connection to it is an AdmmgtError, as with a missing user mapping.
    admin.execute(
        "INSERT INTO admmgt.clusters (name, host, options) VALUES ('far', '/nowhere',"
        " 'hostaddr=192.0.2.1')"
    )
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status, cluster_name)"
        " VALUES (%s, true, 2, 'far')",
        (f"{tenant_prefix}tpl",),
    )
    here, there = f"{tenant_prefix}here", f"{tenant_prefix}there"
    register(admin, here, there)
    admin.execute(
        "UPDATE admmgt.vendor_db_settings SET cluster_name = CASE dbname WHEN %s THEN 'local'"
        " ELSE 'far' END WHERE dbname IN (%s, %s)",
        (here, here, there),
    )
    notices = Notices(admin)
    try:
        call(admin, "create_database", False)  # t_raise => false
    except psycopg.Error as exc:
        pytest.fail(f"create_database stopped for every cluster: {exc}; {notices.take()}")
    rows = registry(admin)
    assert rows[here][0] == 2, rows  # the local tenant is created
    assert rows[there][0] in (1, 3), rows  # far's is not (left pending: unreachable)
    assert any('cluster "far"' in line for line in notices.take())


def test_the_summary_never_prints_a_python_none(
    cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str
) -> None:
    """A template without history (nor a registered version) gives its copies
    no version; the run's last NOTICE must say so in words, not "None"."""
    make_template(cluster_dsn, admin, f"{tenant_prefix}tpl")
    register(admin, f"{tenant_prefix}a", f"{tenant_prefix}b")
    notices = Notices(admin)
    call(admin, "create_database")
    last = notices.take()[-1]
    assert last.startswith("create_database: 2 created"), last
    assert "None" not in last, last
