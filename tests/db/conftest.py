"""Fixtures shared by the database tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.db.fleet import Fleet, Hosted, make_fleet
from tests.fix_db import connect, drop_databases


@pytest.fixture
def fleet(cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str) -> Fleet:
    """A template and two tenants (tests/db/fleet.py)."""
    return make_fleet(cluster_dsn, admin, tenant_prefix, 2)


@pytest.fixture
def hosted(
    cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str
) -> Iterator[Hosted]:
    """create_schema makes its host as <prefix>schemas and tenant roles as
    <prefix>r_<schema>; both (and the host's group role) go after the test."""
    admin.execute(
        "UPDATE admmgt.settings SET value = %s WHERE name = 'schema_host_name'",
        (f"{tenant_prefix}schemas",),
    )
    admin.execute(
        "UPDATE admmgt.settings SET value = %s WHERE name = 'schema_role_pattern'",
        (f"{tenant_prefix}r_%s",),
    )
    yield Hosted(admin, tenant_prefix)
    drop_databases(cluster_dsn, tenant_prefix + "%")
    with connect(cluster_dsn) as pg:
        for (role,) in pg.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (tenant_prefix + "%",)
        ).fetchall():
            pg.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
