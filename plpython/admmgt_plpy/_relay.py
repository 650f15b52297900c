"""Relays: sessions in the admin database through which a fan-out reaches its
databases, so that tenant connections open in parallel.

``dblink_connect`` blocks the session that calls it while the server starts a
backend for it, and a fan-out driven by one session pays those waits one after
the other: 45-50 % of a rollout over TCP (bench/README.md). With relays, the
fan-out (:class:`admmgt_plpy._fanout.Fanout`) opens up to as many dblink
sessions into its own database as it has databases in flight, and gives each
job one of them. Each of the job's remote operations goes to its relay as ONE
asynchronous statement that makes the dblink call there: ``dblink_connect``, or
``dblink_send_query`` then ``dblink_get_result`` with the job's own column
list. The relay waits for the tenant while the fan-out and the other relays go
on. Results come back typed as the job asked, and a tenant's error with its
SQLSTATE, message, detail and hint (dblink passes them on at each hop).

A statement's text can reach the server log (``log_statement``, or the
STATEMENT line of an error), so a connection string that holds a password (a
cluster whose password is in a user mapping) is never sent to a relay: that
job connects from the calling session, as without relays (:func:`relayable`).

A relay that ends, whatever the reason, takes its tenant connections with it:
their open transactions roll back, as when the calling session closes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from admmgt_plpy._names import quote_literal
from admmgt_plpy._remote import Dblink, RemoteError, holds_password


def relayable(conninfo: str) -> bool:
    """Whether a connection may be opened through a relay: not with a password."""
    return not holds_password(conninfo)


@dataclass
class Relay:
    """One relay session (``name``: the calling session's dblink connection to it)."""

    name: str
    # Tenant connections that ended, closed by the relay's next statement.
    closing: list[str] = field(default_factory=list)
    # Tenant connections whose last result's end is unread (read before the next send).
    undrained: set[str] = field(default_factory=set)
    # Idle tenant connections a later job may reuse (Connect.reuse), by conninfo.
    kept: dict[str, list[str]] = field(default_factory=dict)


def connect_sql(schema: str, relay: Relay, name: str, conninfo: str) -> str:
    """The relay statement that opens tenant connection ``name`` (one row, ``status text``)."""
    call = f"{schema}.dblink_connect({quote_literal(name)}, {quote_literal(conninfo)}) AS status"
    closing = _closing(schema, relay)
    if closing is None:
        return f"SELECT {call}"
    return f"WITH pre AS MATERIALIZED ({closing}) SELECT {call} FROM pre"


def run_sql(
    schema: str, relay: Relay, conn: str, sql: str, columns: str, statements: int = 1
) -> str:
    """The relay statements that send ``sql`` on tenant connection ``conn`` and read
    its ``statements`` results with ``columns``: one relay statement per result,
    so the fan-out reads them (and a failure's index) as it reads a tenant's."""
    c = quote_literal(conn)
    # One-row queries run before the send (each yields one row, so one send).
    pre = [x for x in (_closing(schema, relay), _drain(schema, relay, conn)) if x]
    source = " CROSS JOIN ".join(f"({p}) AS p{i}" for i, p in enumerate(pre))
    relay.undrained.add(conn)  # after these results, whatever they are, their end
    first = (
        f"WITH s AS MATERIALIZED (SELECT {schema}.dblink_send_query({c}, {quote_literal(sql)})"
        f" AS ok{' FROM ' + source if source else ''}) SELECT t.* FROM s,"
        f" LATERAL {schema}.dblink_get_result("
        f"CASE WHEN s.ok = 1 THEN {c} ELSE admmgt._relay_lost({schema}.dblink_error_message({c}))"
        f" END) AS t({columns})"
    )
    rest = f"SELECT * FROM {schema}.dblink_get_result({c}) AS t({columns})"
    return ";\n".join([first] + [rest] * (max(1, statements) - 1))


def _closing(schema: str, relay: Relay) -> str | None:
    """A one-row query closing the relay's ended connections (then forgotten), or None."""
    if not relay.closing:
        return None
    names = ", ".join(quote_literal(n) for n in relay.closing)
    for name in relay.closing:
        relay.undrained.discard(name)
    relay.closing.clear()
    return f"SELECT count({schema}.dblink_disconnect(n)) FROM unnest(ARRAY[{names}]) AS n"


def _drain(schema: str, relay: Relay, conn: str) -> str | None:
    """A one-row query reading the end of ``conn``'s last result, if unread, or None."""
    if conn not in relay.undrained:
        return None
    relay.undrained.discard(conn)
    name = quote_literal(conn)
    return f"SELECT count(*) FROM {schema}.dblink_get_result({name}, false) AS t(x text)"


class Relays:
    """The relays of one fan-out: opened when a job needs one, up to ``limit``."""

    def __init__(self, dblink: Dblink, conninfo: str, limit: int) -> None:
        self.dblink = dblink
        # application_name last: libpq takes the last value of a keyword.
        self.conninfo = f"{conninfo} application_name='admmgt relay'"
        self.limit = limit
        self.free: list[Relay] = []
        self.opened: list[Relay] = []

    def take(self) -> Relay | None:
        """A free relay, or a new one while fewer than ``limit`` are open; None if
        all are taken or a new one cannot be opened (the job then connects from
        the calling session; the first such failure is said once)."""
        if self.free:
            return self.free.pop()
        if len(self.opened) >= self.limit:
            return None
        try:
            relay = Relay(self.dblink.connect(self.conninfo))
        except RemoteError as exc:
            self.limit = len(self.opened)
            self.dblink.plpy.notice(
                f"could not open a relay session into the admin database ({exc.describe()}); "
                f"this fan-out goes on with {self.limit} relay(s), the other databases connect "
                "from this session one at a time"
            )
            return None
        self.opened.append(relay)
        return relay

    def give_back(self, relay: Relay) -> None:
        self.free.append(relay)

    def drop(self, relay: Relay) -> None:
        """Close a relay that may be broken; its tenant connections end with it."""
        self.dblink.disconnect(relay.name)
        self.opened.remove(relay)
        self.limit -= 1

    def close(self) -> None:
        """Close every relay: their tenant connections end with them."""
        for relay in self.opened:
            self.dblink.disconnect(relay.name)
        self.opened.clear()
        self.free.clear()
