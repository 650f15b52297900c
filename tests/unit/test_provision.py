"""create_database's job for one tenant, driven by hand: what it sends, in how many trips."""

from __future__ import annotations

from typing import Any

import pytest

from admmgt_plpy._provision import _create_one
from admmgt_plpy._registry import Tenant
from admmgt_plpy._remote import Connect, RemoteError, Run
from tests.unit.fakes import settings


class Clusters:
    def conninfo(self, cluster: str, database: str, options: str = "") -> str:
        return f"dbname={database}"

    def maintenance_db(self, cluster: str) -> str:
        return "postgres"


TEMPLATE = Tenant(1, "tpl", "local", scriptversion=7)


def created(history: Any) -> Any:
    """Drive the job to its end; ``history`` is what reading the new database's
    history gives: rows, or a RemoteError. Returns (ops sent, the Outcome)."""
    job = _create_one(Tenant(5, "Acme", "local"), TEMPLATE, settings(), Clusters())  # type: ignore[arg-type]
    ops = [job.send(None)]
    replies: list[Any] = ["c1", [], [], "c2"]
    try:
        for reply in replies:
            ops.append(job.send(reply))
        if isinstance(history, RemoteError):
            ops.append(job.throw(history))
        else:
            ops.append(job.send(history))
    except StopIteration as done:
        return ops, done.value
    raise AssertionError(f"the job went on: {ops[-1]}")


def test_a_tenant_costs_no_connection_of_its_own_to_the_maintenance_database() -> None:
    ops, outcome = created([{"script_id": 3, "action": "apply", "checksum": None}])
    assert ops[0] == Connect("dbname=postgres", reuse=True)
    assert ops[1] == Run("c1", 'CREATE DATABASE "acme" TEMPLATE "tpl" STRATEGY wal_log')
    secure = ops[2]
    assert secure.statements == 2  # one round trip, one implicit transaction
    assert secure.sql.startswith('REVOKE CONNECT, TEMPORARY ON DATABASE "acme" FROM PUBLIC;')
    assert "COMMENT ON DATABASE \"acme\" IS 'admmgt tenant 5'" in secure.sql
    assert ops[3] == Connect("dbname=acme")  # the copy itself, never kept for another job
    assert len(ops) == 5  # its history: one statement
    assert outcome.outcome == "ok"


@pytest.mark.parametrize(
    ("history", "version"),
    [
        ([{"script_id": 3, "action": "apply", "checksum": None}], 3),
        (
            [
                {"script_id": 2, "action": "baseline", "checksum": None},
                {"script_id": 4, "action": "partial", "checksum": None},
            ],
            2,
        ),
        ([], None),
        (RemoteError("42P01", 'relation "admmgt.script_history" does not exist'), 7),
    ],
)
def test_the_version_is_the_copy_s_own_history_or_else_the_template_s(
    history: Any, version: int | None
) -> None:
    _, outcome = created(history)
    assert outcome.details == {"scriptversion": version}


def test_another_error_reading_the_history_is_not_taken_for_no_history() -> None:
    with pytest.raises(RemoteError):
        created(RemoteError("42501", "permission denied for schema admmgt"))
