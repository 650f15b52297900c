"""Databases for tests: each test gets its own admin database with admmgt installed.

An installed copy is built once per session and cloned per test with CREATE
DATABASE ... TEMPLATE, which is much faster than installing every time. Tenant
databases a test makes are named with its `tenant_prefix` and dropped after it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import admmgt

# Per test session, so that concurrent sessions on one server never drop each
# other's template.
INSTALLED = f"admmgt_test_installed_{os.getpid()}"


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, **kwargs)


def drop_databases(cluster_dsn: str, pattern: str) -> None:
    """Drop every database whose name is LIKE pattern, ending its sessions first."""
    with connect(cluster_dsn) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
            )
        ]
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def create_database(cluster_dsn: str, name: str, template: str = "template0") -> str:
    with connect(cluster_dsn) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return make_conninfo(cluster_dsn, dbname=name)


@pytest.fixture(scope="session")
def installed_template(cluster_dsn: str) -> Iterator[str]:
    drop_databases(cluster_dsn, INSTALLED)
    dsn = create_database(cluster_dsn, INSTALLED)
    with connect(dsn) as conn:
        admmgt.install(conn)
    yield INSTALLED
    drop_databases(cluster_dsn, INSTALLED)


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def tenant_prefix(cluster_dsn: str, test_id: str) -> Iterator[str]:
    """Prefix for the names of the tenant databases a test creates; dropped after."""
    prefix = f"t{test_id}_"
    yield prefix
    drop_databases(cluster_dsn, prefix + "%")


@pytest.fixture
def admin_dsn(cluster_dsn: str, installed_template: str, test_id: str) -> Iterator[str]:
    """A fresh admin database with admmgt installed."""
    name = f"admmgt_test_{test_id}"
    yield create_database(cluster_dsn, name, installed_template)
    drop_databases(cluster_dsn, name)


@pytest.fixture
def admin(admin_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(admin_dsn) as conn:
        yield conn


@pytest.fixture
def empty_dsn(cluster_dsn: str, test_id: str) -> Iterator[str]:
    """A fresh database without admmgt."""
    name = f"admmgt_empty_{test_id}"
    yield create_database(cluster_dsn, name)
    drop_databases(cluster_dsn, name)
