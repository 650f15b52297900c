"""Pure parts of the connection layer: password redaction and connection strings."""

from __future__ import annotations

from admmgt_plpy._remote import libpq_quote, redact


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
