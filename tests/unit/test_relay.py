"""The statements a fan-out sends its relays (admmgt_plpy._relay): pure text."""

from __future__ import annotations

from admmgt_plpy._relay import Relay, Relays, connect_sql, relayable, run_sql
from admmgt_plpy._remote import RemoteError
from tests.unit.fakes import NoticePlpy

S = "admmgt_dblink"


def test_a_connection_string_with_a_password_is_never_relayed() -> None:
    assert relayable("host='/run/pg' dbname='t1' user='me'")
    assert not relayable("host='db2' dbname='t1' user='me' password='s3cr t'")
    assert not relayable("host=db2 password=x dbname=t1")


def test_a_run_is_one_relay_statement_per_result_and_reads_the_last_end_first() -> None:
    relay = Relay("admmgt_1")
    first = run_sql(S, relay, "admmgt_2", "BEGIN;\nSELECT 'it''s'", "status text", 2)
    statements = first.split(";\nSELECT * FROM")
    assert len(statements) == 2
    assert "dblink_send_query('admmgt_2', 'BEGIN;\nSELECT ''it''''s''')" in statements[0]
    assert "dblink_get_result('admmgt_2', false)" not in first  # nothing unread yet
    assert "admmgt._relay_lost(" in statements[0]  # a send that fails is an error
    assert statements[1].endswith("dblink_get_result('admmgt_2') AS t(status text)")
    again = run_sql(S, relay, "admmgt_2", "COMMIT", "status text")
    assert ";" not in again.replace("'COMMIT'", "")
    assert "dblink_get_result('admmgt_2', false)" in again  # the end of the last one


def test_ended_connections_close_with_the_relays_next_statement_once() -> None:
    relay = Relay("admmgt_1", closing=["admmgt_2", "admmgt_3"], undrained={"admmgt_2"})
    opened = connect_sql(S, relay, "admmgt_4", "dbname='t2'")
    assert "dblink_disconnect(n)) FROM unnest(ARRAY['admmgt_2', 'admmgt_3'])" in opened
    assert opened.endswith("dblink_connect('admmgt_4', 'dbname=''t2''') AS status FROM pre")
    assert relay.closing == [] and relay.undrained == set()
    assert connect_sql(S, relay, "admmgt_5", "dbname='t3'") == (
        "SELECT admmgt_dblink.dblink_connect('admmgt_5', 'dbname=''t3''') AS status"
    )


class RefusingDblink:
    """A dblink whose connections into the admin database are refused after ``ok`` of them."""

    def __init__(self, ok: int) -> None:
        self.plpy = NoticePlpy()
        self.ok = ok
        self.closed: list[str] = []

    def connect(self, conninfo: str) -> str:
        assert conninfo.endswith("application_name='admmgt relay'")
        if self.ok == 0:
            raise RemoteError("53300", "sorry, too many clients already")
        self.ok -= 1
        return f"admmgt_{self.ok}"

    def disconnect(self, name: str) -> None:
        self.closed.append(name)


def test_a_relay_that_cannot_be_opened_leaves_its_job_to_the_calling_session() -> None:
    dblink = RefusingDblink(ok=1)
    relays = Relays(dblink, "dbname='admin'", 3)  # type: ignore[arg-type]
    first = relays.take()
    assert first is not None and relays.take() is None  # the second is refused
    assert relays.limit == 1 and relays.take() is None  # and not tried again
    assert len(dblink.plpy.notices) == 1
    assert "53300 sorry, too many clients already" in dblink.plpy.notices[0]
    assert "one at a time" in dblink.plpy.notices[0]
    relays.give_back(first)
    assert relays.take() is first
    relays.close()
    assert dblink.closed == [first.name] and relays.opened == []
