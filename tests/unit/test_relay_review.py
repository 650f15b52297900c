"""Review of issue 14: a cancel of the calling session while a relay opens.

Dblink._call turns every SPIError into a RemoteError, the calling session's
own QueryCanceled (57014) included; Relays.take() takes any RemoteError of its
connect for a refused relay, says so in a NOTICE and lets the run go on."""

from __future__ import annotations

import pytest

from admmgt_plpy._relay import Relays
from admmgt_plpy._remote import RemoteError
from tests.unit.fakes import NoticePlpy


class CancelledDblink:
    """A dblink whose connect is interrupted by pg_cancel_backend of the caller."""

    def __init__(self) -> None:
        self.plpy = NoticePlpy()

    def connect(self, conninfo: str) -> str:
        raise RemoteError("57014", "canceling statement due to user request")

    def disconnect(self, name: str) -> None:
        pass


def test_a_cancel_while_a_relay_opens_stops_the_run_and_is_not_a_refused_relay() -> None:
    dblink = CancelledDblink()
    relays = Relays(dblink, "dbname='admin'", 3)  # type: ignore[arg-type]
    with pytest.raises(RemoteError) as cancelled:
        relays.take()
    assert cancelled.value.sqlstate == "57014"
    assert dblink.plpy.notices == []
