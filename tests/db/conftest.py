"""Fixtures shared by the database tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.db.fleet import Fleet, call, make_template, register


@pytest.fixture
def fleet(cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str) -> Fleet:
    template = f"{tenant_prefix}tpl"
    make_template(cluster_dsn, admin, template)
    tenants = [f"{tenant_prefix}c{i}" for i in range(2)]
    register(admin, *tenants)
    call(admin, "create_database")
    return Fleet(admin, template, tenants)
