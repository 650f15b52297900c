"""promote_tenant never writes a host's password into the new database."""

from __future__ import annotations

from typing import Any

import pytest

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._promote_preflight import _Checks
from admmgt_plpy._registry import Tenant


class _Clusters:
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def conninfo(self, cluster: str, dbname: str) -> str:
        return self._conninfo + f" dbname='{dbname}'"

    def maintenance_db(self, cluster: str) -> str:
        return "postgres"


class _Dblink:
    def __init__(self) -> None:
        self.connected: list[str] = []

    def connect(self, conninfo: str) -> str:
        self.connected.append(conninfo)
        raise AssertionError("the refusal must come before any connection")


TENANT = Tenant(1, "acme", "c3", 2, separatedb=0, host="admmgt_schemas")


@pytest.mark.parametrize("secret", ["password", "sslpassword"])
def test_a_host_reached_with_a_password_is_refused_before_anything(secret: str) -> None:
    dblink = _Dblink()
    checks = _Checks(Any, dblink, _Clusters(f"host='db3' port='5432' {secret}='s3cr3t'"))  # type: ignore[arg-type]
    with pytest.raises(AdmmgtError) as refused:
        checks._check_target(TENANT, "c3")
    assert 'cluster "c3" is reached with a password' in refused.value.message
    assert "nothing was changed" in refused.value.message
    assert "s3cr3t" not in refused.value.message + (refused.value.hint or "")
    assert dblink.connected == []


def test_a_host_without_a_password_goes_on_to_the_target_checks() -> None:
    dblink = _Dblink()
    checks = _Checks(Any, dblink, _Clusters("host='db3' port='5432'"))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="before any connection"):
        checks._check_target(TENANT, "c3")
    assert len(dblink.connected) == 1
