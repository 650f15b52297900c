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


def acme_job(template_read: bool = False) -> Any:
    """The job for tenant 5 "Acme", to drive by hand."""
    clusters: Any = Clusters()
    return _create_one(
        Tenant(5, "Acme", "local"), TEMPLATE, settings(), clusters, template_read=template_read
    )


def created(history: Any) -> Any:
    """Drive the job to its end; ``history`` is what reading the new database's
    history gives: rows, or a RemoteError. Returns (ops sent, the Outcome)."""
    job = acme_job()
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


def test_with_the_template_s_history_read_the_copy_is_not_connected_to() -> None:
    job = acme_job(template_read=True)
    assert job.send(None) == Connect("dbname=postgres", reuse=True)
    assert job.send("c1").sql.startswith("CREATE DATABASE")
    assert job.send([]).sql.startswith("REVOKE")
    with pytest.raises(StopIteration) as done:
        job.send([])
    assert done.value.value.outcome == "ok"
    assert done.value.value.private == {"copied": True}  # its version comes at the run's end


def test_a_copy_adopted_from_an_earlier_run_is_read_even_so() -> None:
    job = acme_job(template_read=True)
    job.send(None)
    job.send("c1")  # CREATE DATABASE
    marker = job.throw(RemoteError("42P04", 'database "acme" already exists'))
    assert "shobj_description" in marker.sql
    assert job.send([{"c": "admmgt tenant 5"}]).sql.startswith("REVOKE")
    assert job.send([]) == Connect("dbname=acme")  # made from whichever template it was then
    assert isinstance(job.send("c2"), Run)
    with pytest.raises(StopIteration) as done:
        job.send([{"script_id": 4, "action": "apply", "checksum": None}])
    assert done.value.value.details == {"scriptversion": 4}
    assert "found already created" in done.value.value.message
