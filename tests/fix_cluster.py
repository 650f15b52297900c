"""The PostgreSQL server the database tests run against (session scope).

Default: the project's sandbox cluster in .sandbox/test. ADMMGT_TEST_DSN names
an existing server instead; ADMMGT_TEST_BACKEND=docker uses testcontainers
(opt-in, needs a Docker engine). A server that cannot be reached stops the run
with one message: database tests never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from admmgt import Sandbox, SandboxError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster_dsn() -> Iterator[str]:
    """DSN of a superuser connection to the test server's `postgres` database."""
    dsn = os.environ.get("ADMMGT_TEST_DSN")
    backend = os.environ.get("ADMMGT_TEST_BACKEND", "sandbox")
    if dsn:
        _check(dsn, "ADMMGT_TEST_DSN")
        yield dsn
    elif backend == "docker":
        yield from _docker()
    elif backend == "sandbox":
        yield from _sandbox()
    else:
        pytest.exit(f"ADMMGT_TEST_BACKEND={backend!r}: use sandbox or docker", returncode=2)


def _sandbox() -> Iterator[str]:
    box = Sandbox(ROOT / ".sandbox" / "test", port=54321)
    started_here = not box.is_running()
    try:
        dsn = box.start()
    except SandboxError as exc:
        pytest.exit(f"cannot start the sandbox PostgreSQL: {exc}", returncode=2)
    _check(dsn, "the sandbox")
    yield dsn
    if started_here:
        box.stop()


def _docker() -> Iterator[str]:  # pragma: no cover - needs a Docker engine
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        pytest.exit("ADMMGT_TEST_BACKEND=docker needs `pip install -e .[docker]`", returncode=2)
    image = os.environ.get("ADMMGT_TEST_IMAGE", "admmgt-test-postgres:15")
    with PostgresContainer(image, username="postgres", password="postgres") as pg:
        dsn = (
            f"host={pg.get_container_host_ip()} port={pg.get_exposed_port(5432)} "
            "user=postgres password=postgres dbname=postgres"
        )
        _check(dsn, f"the {image} container")
        yield dsn


def _check(dsn: str, where: str) -> None:
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            missing = [
                name
                for (name,) in conn.execute(
                    "SELECT n FROM unnest(ARRAY['plpython3u', 'dblink']) AS n"
                    " WHERE n NOT IN (SELECT name FROM pg_available_extensions)"
                )
            ]
    except psycopg.OperationalError as exc:
        pytest.exit(f"cannot reach PostgreSQL at {where}: {exc}", returncode=2)
    if missing:
        pytest.exit(f"PostgreSQL at {where} lacks extensions {missing}", returncode=2)
