"""Pure parts of the connection layer: password redaction and connection strings."""

from __future__ import annotations

import pytest

from admmgt_plpy._conninfo import check_options, libpq_quote, parse_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._remote import Dblink, RemoteError, redact


def test_redact_removes_passwords_from_connection_strings() -> None:
    conninfo = "host='/x' user='u' password='p\\'q w' dbname='d'"
    assert (
        redact("failed: password='p\\'q w' and p'q w", conninfo) == "failed: password=*** and ***"
    )
    assert redact("password=abc host=x") == "password=*** host=x"


def test_redact_finds_the_password_libpq_quote_wrote() -> None:
    secret = "it's a \\ secret"
    conninfo = f"host='h' password={libpq_quote(secret)}"
    assert secret not in redact(f"server said: {secret}", conninfo)


# ------------------------------------------------- clusters.options (issue 20)


def test_options_are_read_like_libpq() -> None:
    text = "sslmode=verify-full  connect_timeout = 5 application_name='a b\\'c' user=x\\ y"
    assert parse_options("c9", text) == [
        ("sslmode", "verify-full"),
        ("connect_timeout", "5"),
        ("application_name", "a b'c"),
        ("user", "x y"),
    ]
    assert parse_options("c9", None) == []


@pytest.mark.parametrize(
    "text",
    ["postgresql://evil/db", "sslmode", "sslmode verify-full", "user='open", "Host=x", "=x"],
)
def test_options_that_libpq_would_read_otherwise_are_refused(text: str) -> None:
    with pytest.raises(AdmmgtError, match=r'cluster "c9": admmgt\.clusters\.options is not a list'):
        parse_options("c9", text)


@pytest.mark.parametrize(
    ("text", "keywords"),
    [
        ("hostaddr=10.9.9.9", "hostaddr"),
        ("  hostaddr = '10.9.9.9' sslmode=require", "hostaddr"),
        ("host=evil port=5432", "host, port"),
        ("service=evil", "service"),
        ("servicefile=/tmp/s", "servicefile"),
        ("dbname='host=evil'", "dbname"),
        ("passfile=/tmp/p", "passfile"),
    ],
)
def test_routing_keywords_of_a_mapped_cluster_come_from_its_server_only(
    text: str, keywords: str
) -> None:
    with pytest.raises(AdmmgtError) as refused:
        check_options("c3", text, mapped=True)
    assert refused.value.message.startswith(
        f'cluster "c3": admmgt.clusters.options sets {keywords}, which admmgt does not take'
        " from options: the host, port and credentials of a cluster with a user mapping come"
        " from its foreign server only"
    )
    assert "10.9.9.9" not in refused.value.message


def test_an_unmapped_cluster_may_name_a_passfile_but_not_a_route() -> None:
    assert check_options("c2", "user=u passfile=/etc/p", mapped=False) == [
        ("user", "u"),
        ("passfile", "/etc/p"),
    ]
    with pytest.raises(AdmmgtError, match="sets hostaddr, which admmgt does not take"):
        check_options("c2", "hostaddr=10.9.9.9", mapped=False)


class _Sessions(Dblink):
    """Dblink with the calls to the server replaced by a log."""

    def __init__(self) -> None:  # no plpy: nothing here reaches a server
        self.log: list[tuple[str, str]] = []

    def connect(self, conninfo: str) -> str:
        self.log.append(("connect", conninfo))
        return "admmgt_1"

    def disconnect(self, name: str) -> None:
        self.log.append(("disconnect", name))


def test_a_session_is_closed_however_its_block_ends() -> None:
    dblink = _Sessions()
    with dblink.session("dbname=a") as conn:
        assert conn == "admmgt_1"
    with pytest.raises(RemoteError), dblink.session("dbname=b"):
        raise RemoteError("57014", "canceled")
    assert dblink.log == [
        ("connect", "dbname=a"),
        ("disconnect", "admmgt_1"),
        ("connect", "dbname=b"),
        ("disconnect", "admmgt_1"),
    ]
