"""Two more PostgreSQL clusters for the multi-cluster tests (session scope).

Both are sandboxes beside the test server, each on its own socket folder and
port. "c3" stands for a remote server that wants a password: every role but
the bootstrap superuser authenticates with scram-sha-256, and admmgt reaches
it as ``admmgt_remote`` whose password lives only in a user mapping. The
password is made up per session, so the tests can grep for it everywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from admmgt import Sandbox, SandboxError
from tests.fix_db import connect

ROOT = Path(__file__).resolve().parents[1]
REMOTE_ROLE = "admmgt_remote"


@dataclass(frozen=True)
class RemoteCluster:
    name: str
    sandbox: Sandbox
    password: str | None  # of REMOTE_ROLE, when the cluster wants one

    @property
    def dsn(self) -> str:
        """The bootstrap superuser's DSN, for the tests' own looking (trust)."""
        return self.sandbox.dsn()

    @property
    def host(self) -> str:
        return str(self.sandbox.socket_dir)

    def start(self) -> None:
        self.sandbox.start()

    def stop(self) -> None:
        self.sandbox.stop()


@pytest.fixture(scope="session")
def remote_clusters(cluster_dsn: str) -> Iterator[dict[str, RemoteCluster]]:
    password = secrets.token_urlsafe(18)
    found = {
        "c2": RemoteCluster("c2", Sandbox(ROOT / ".sandbox" / "test-c2", port=54322), None),
        "c3": RemoteCluster("c3", Sandbox(ROOT / ".sandbox" / "test-c3", port=54323), password),
    }
    for cluster in found.values():
        try:
            cluster.start()
        except SandboxError as exc:
            pytest.exit(f"cannot start sandbox cluster {cluster.name}: {exc}", returncode=2)
    with connect(found["c3"].dsn) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REMOTE_ROLE,))
        verb = "ALTER" if exists.fetchone() else "CREATE"
        conn.execute(f"{verb} ROLE {REMOTE_ROLE} LOGIN SUPERUSER PASSWORD '{password}'")
    found["c3"].sandbox.require_passwords()
    yield found
    for cluster in found.values():
        cluster.stop()
