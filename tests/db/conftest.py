"""Fixtures shared by the database tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.db.fleet import Fleet, make_fleet


@pytest.fixture
def fleet(cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str) -> Fleet:
    """A template and two tenants (tests/db/fleet.py)."""
    return make_fleet(cluster_dsn, admin, tenant_prefix, 2)
