"""Tenant provisioning: create_database and drop_database (issue 3)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from admmgt_plpy import _history
from tests.db.fleet import Notices, call, databases, make_template, register, registry
from tests.fix_db import connect


@pytest.fixture
def template(cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str) -> str:
    make_template(
        cluster_dsn,
        admin,
        f"{tenant_prefix}tpl",
        "CREATE SCHEMA mgttest; CREATE TABLE mgttest.t (id int)",
    )
    return f"{tenant_prefix}tpl"


def test_fifty_tenants_in_one_call_then_an_idempotent_rerun(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    names = [f"{tenant_prefix}Client{i:02d}" for i in range(50)]
    register(admin, *names)
    notices = Notices(admin)
    call(admin, "create_database")
    lines = notices.take()
    assert databases(admin, f"{tenant_prefix}client%") == {n.lower() for n in names}
    assert {v[0] for v in registry(admin).values()} == {2}
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 50
    assert progress[-1].startswith("[50/50] ") and "created in" in progress[-1]
    assert lines[-1].startswith("create_database: 50 created in")
    # the copy has the template's schema
    with connect(admin.info.dsn.replace(admin.info.dbname, names[0].lower())) as tenant:
        assert tenant.execute("SELECT to_regclass('mgttest.t')::text").fetchone() == ("mgttest.t",)

    call(admin, "create_database")
    assert notices.take() == [
        "create_database: no tenant is pending creation (status 1, or 3 to retry); nothing to do"
    ]
    runs = admin.execute("SELECT count(*) FROM admmgt.run_log WHERE outcome = 'ok'").fetchone()
    assert runs == (50,)


def test_hostile_names_are_created_as_names_never_executed(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    hostile = [
        f'{tenant_prefix}We"ird',
        f"{tenant_prefix}x; DROP DATABASE {template}; --",
        f"{tenant_prefix}Ünïcödé Ltd",
        f"{tenant_prefix}o'brien",
    ]
    register(admin, *hostile)
    call(admin, "create_database")
    assert databases(admin, f"{tenant_prefix}%") == {template} | {h.lower() for h in hostile}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("x" * 64, "64 bytes; PostgreSQL allows 63"),
        ("   ", "the name is empty"),
        ("a\nb", "control characters"),
        ("Template1", "is a system database"),
    ],
)
def test_unusable_names_refuse_the_run_before_anything_is_created(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str, bad: str, reason: str
) -> None:
    register(admin, f"{tenant_prefix}good", bad)
    with pytest.raises(psycopg.Error, match="nothing was created") as failure:
        call(admin, "create_database")
    assert reason in str(failure.value)
    assert databases(admin, f"{tenant_prefix}good") == set()


def test_a_failing_tenant_does_not_stop_the_others_and_is_retried(
    cluster_dsn: str, admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    squatter = f"{tenant_prefix}taken"
    admin.execute(f'CREATE DATABASE "{squatter}"')  # exists, but admmgt did not create it
    register(admin, f"{tenant_prefix}a", squatter, f"{tenant_prefix}b")
    with pytest.raises(psycopg.Error) as failed:  # recorded, then raised
        call(admin, "create_database")
    assert failed.value.sqlstate == "ZA001"
    state = registry(admin)
    assert state[f"{tenant_prefix}a"][0] == 2 and state[f"{tenant_prefix}b"][0] == 2
    status, _, error = state[squatter]
    assert status == 3
    assert "already exists but admmgt did not create it" in error
    logged = admin.execute(
        "SELECT sqlstate, statement FROM admmgt.run_log WHERE dbname = %s", (squatter,)
    ).fetchone()
    assert logged is not None and logged[0] == "42P04"
    assert logged[1].startswith(f'CREATE DATABASE "{squatter}" TEMPLATE')

    admin.execute(f'DROP DATABASE "{squatter}"')
    call(admin, "create_database")
    assert registry(admin)[squatter][0] == 2
    assert registry(admin)[squatter][2] is None  # last_error cleared


def test_a_busy_template_is_retried_then_reported(
    cluster_dsn: str, admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    admin.execute("UPDATE admmgt.settings SET value = '1' WHERE name = 'template_busy_timeout_s'")
    register(admin, f"{tenant_prefix}late")
    busy_dsn = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")
    with connect(busy_dsn, application_name="someone_else"):
        call(admin, "create_database", False)  # t_raise => false: NOTICEs only
    status, _, error = registry(admin)[f"{tenant_prefix}late"]
    assert status == 3
    assert f'template "{template}" stayed in use by other sessions for 1 s' in error
    assert "someone_else" in error
    call(admin, "create_database")  # the session is gone: the retry succeeds
    assert registry(admin)[f"{tenant_prefix}late"][0] == 2


def test_the_template_being_released_during_retries_succeeds(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    register(admin, f"{tenant_prefix}patient")
    busy_dsn = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")
    holder = connect(busy_dsn)
    timer = threading.Timer(0.5, holder.close)
    timer.start()
    call(admin, "create_database")
    timer.join()
    assert registry(admin)[f"{tenant_prefix}patient"][0] == 2


def test_public_cannot_connect_to_a_new_tenant_and_tenant_roles_are_confined(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    admin.execute("UPDATE admmgt.settings SET value = 'true' WHERE name = 'tenant_login_role'")
    a, b = f"{tenant_prefix}alpha", f"{tenant_prefix}beta"
    register(admin, a, b)
    call(admin, "create_database")

    def can_connect(role: str, db: str) -> bool:
        row = admin.execute("SELECT has_database_privilege(%s, %s, 'CONNECT')", (role, db))
        return bool(row.fetchone()[0])  # type: ignore[index]

    assert not can_connect("public", a)
    assert can_connect(a, a) and can_connect(b, b)
    assert not can_connect(a, b) and not can_connect(b, a)
    # and for real: alpha logs in to its own database, and is refused by beta's
    own = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={a}")
    with connect(own.replace("user=postgres", f"user={a}")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (a,)
    other = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={b}")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(other.replace("user=postgres", f"user={a}"))
    call(admin, "drop_database", a, "drop")
    call(admin, "drop_database", b, "drop")
    assert admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)", (a, b)
    ).fetchone() == (0,)


def test_drop_refuses_the_template_and_drops_or_archives_as_asked(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    register(admin, f"{tenant_prefix}Gone", f"{tenant_prefix}Kept")
    call(admin, "create_database")
    with pytest.raises(psycopg.Error, match="is the template; drop_database refuses it"):
        call(admin, "drop_database", template, "drop")
    with pytest.raises(psycopg.Error, match="t_mode must be 'drop' or 'archive'"):
        call(admin, "drop_database", f"{tenant_prefix}gone", "delete")

    call(admin, "drop_database", f"{tenant_prefix}GONE", "drop")
    call(admin, "drop_database", f"{tenant_prefix}kept", "archive", False, f"{tenant_prefix}arch")
    assert databases(admin, f"{tenant_prefix}%") == {template, f"{tenant_prefix}arch"}
    deleted = admin.execute(
        "SELECT dbname, deletedon IS NOT NULL FROM admmgt.vendor_db_settings WHERE deleted"
        " ORDER BY dbname"
    ).fetchall()
    assert deleted == [(f"{tenant_prefix}Gone", True), (f"{tenant_prefix}Kept", True)]
    # the name can be registered and removed again
    register(admin, f"{tenant_prefix}Gone")
    call(admin, "create_database")
    call(admin, "drop_database", f"{tenant_prefix}gone", "drop")


def test_drop_of_a_tenant_in_use_changes_nothing_unless_asked_to_terminate(
    admin: psycopg.Connection[Any], template: str, tenant_prefix: str
) -> None:
    name = f"{tenant_prefix}busy"
    register(admin, name)
    call(admin, "create_database")
    user = connect(admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={name}"))
    with pytest.raises(psycopg.Error, match="in use by other sessions; nothing was changed"):
        call(admin, "drop_database", name, "drop")
    assert registry(admin)[name][0] == 2  # not marked deleted
    call(admin, "drop_database", name, "drop", True)
    assert databases(admin, name) == set()
    user.close()


def test_a_second_create_database_is_told_who_runs_the_first(
    admin_dsn: str, admin: psycopg.Connection[Any], template: str
) -> None:
    with connect(admin_dsn, application_name="first_run") as first, first.transaction():
        first.execute("SELECT pg_advisory_xact_lock(1634560109, 1)")
        pid = first.info.backend_pid
        with pytest.raises(errors.LockNotAvailable) as failure:
            call(admin, "create_database")
    assert (
        f"create_database is already running (pid {pid}, user postgres, application "
        "first_run" in str(failure.value)
    )
    assert f"pg_cancel_backend({pid})" in (failure.value.diag.message_hint or "")


def test_no_template_registered_is_a_clear_error(admin: psycopg.Connection[Any]) -> None:
    register(admin, "whoever")
    with pytest.raises(psycopg.Error, match="no template is registered"):
        call(admin, "create_database")


def test_registered_template_that_does_not_exist_is_a_clear_error(
    admin: psycopg.Connection[Any], tenant_prefix: str
) -> None:
    admin.execute(
        "INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status) VALUES (%s, true, 2)",
        (f"{tenant_prefix}missing",),
    )
    register(admin, f"{tenant_prefix}x")
    with pytest.raises(psycopg.Error, match="is registered but does not exist"):
        call(admin, "create_database")


@pytest.fixture
def template_with_history(
    cluster_dsn: str, admin: psycopg.Connection[Any], tenant_prefix: str
) -> str:
    """A template whose history makes version 1: 1 applied, 2 applied then rolled back."""
    dsn = make_template(cluster_dsn, admin, f"{tenant_prefix}tpl", _history.ENSURE_TABLE)
    with connect(dsn) as conn:
        conn.execute(
            "INSERT INTO admmgt.script_history (script_id, action)"
            " VALUES (1, 'apply'), (2, 'apply'), (2, 'rollback')"
        )
    return dsn


def sessions(admin: psycopg.Connection[Any], like: str) -> dict[str, int]:
    """Sessions each database has had (pg_stat_database), after the stats settle."""
    time.sleep(0.5)  # a backend counts its session when it exits
    admin.execute("SELECT pg_stat_clear_snapshot()")
    rows = admin.execute(
        "SELECT datname, sessions FROM pg_stat_database WHERE datname LIKE %s", (like,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_new_tenants_get_their_template_s_version_without_being_connected_to(
    admin: psycopg.Connection[Any], template_with_history: str, tenant_prefix: str
) -> None:
    names = [f"{tenant_prefix}v{i}" for i in range(3)]
    register(admin, *names)
    notices = Notices(admin)
    call(admin, "create_database")
    assert {n: registry(admin)[n][:2] for n in names} == dict.fromkeys(names, (2, 1))
    assert notices.take()[-1].endswith("; 3 at version 1, their template's")
    assert sessions(admin, f"{tenant_prefix}v%") == dict.fromkeys(names, 0)


def test_a_template_changed_during_the_run_has_each_copy_read(
    admin: psycopg.Connection[Any], template_with_history: str, tenant_prefix: str
) -> None:
    register(admin, f"{tenant_prefix}during")
    holder = connect(template_with_history)  # CREATE DATABASE waits for it to go

    def apply_script_3_and_leave() -> None:
        holder.execute("INSERT INTO admmgt.script_history (script_id, action) VALUES (3, 'apply')")
        holder.close()

    timer = threading.Timer(0.5, apply_script_3_and_leave)
    timer.start()
    notices = Notices(admin)
    call(admin, "create_database")
    timer.join()
    lines = notices.take()
    assert (
        f'create_database: template "{tenant_prefix}tpl" changed during the run (3 history '
        "events, then 4); reading the version of its 1 new tenant(s) from their own history"
    ) in lines
    # The copy was made after the change: version 3, not the 1 read before the run.
    assert registry(admin)[f"{tenant_prefix}during"][:2] == (2, 3)
    assert "at version" not in lines[-1]
