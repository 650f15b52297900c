"""Connection strings for databases on the registered clusters.

:class:`Clusters` reads ``admmgt.clusters`` and writes the libpq connection
string of a database on one of them (``conninfo(cluster, database)``), with
the cluster's own options parsed and checked (``check_options``) so that
nothing in them can send a password elsewhere (docs/clusters.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_ident
from admmgt_plpy._remote import Dblink, RemoteError
from admmgt_plpy._settings import load_settings
from admmgt_plpy._types import Plpy


def libpq_quote(value: str) -> str:
    """A libpq connection-string value: single-quoted, \\ and ' escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# libpq keywords that decide which server a connection reaches, or (service,
# servicefile) read those from a file, or name the database admmgt chooses. They
# come from clusters.host and clusters.port or, for a cluster whose password is
# in a user mapping, from its foreign server only: libpq prefers hostaddr to
# host, so a hostaddr in clusters.options would send that password elsewhere.
ROUTING_KEYWORDS = ("host", "hostaddr", "port", "service", "servicefile", "dbname")
# A mapped cluster's password goes only where its foreign server says, with the
# credentials of its user mapping.
MAPPED_KEYWORDS = ("passfile",)
_KEYWORD = re.compile(r"[a-z_]+")


def parse_options(cluster_name: str, text: str | None) -> list[tuple[str, str]]:
    """(keyword, value) pairs of ``clusters.options``, read the way libpq reads a
    connection string; anything else (a URI, a keyword without ``=``, an open
    quote) is refused. Values are never echoed: one may be a secret."""
    pairs: list[tuple[str, str]] = []
    if text is None:
        return pairs
    i, n = 0, len(text)

    def refuse(reason: str) -> AdmmgtError:
        return AdmmgtError(
            f'cluster "{cluster_name}": admmgt.clusters.options is not a list of libpq '
            f"keyword=value settings: {reason}; nothing was connected",
            hint="Write settings such as sslmode=verify-full connect_timeout=5, quoting a value "
            "with spaces in single quotes (docs/clusters.md).",
        )

    if text.lstrip().startswith(("postgresql://", "postgres://")):
        raise refuse("it is a URI")
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return pairs
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        keyword = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=" or not _KEYWORD.fullmatch(keyword):
            raise refuse(f"{keyword[:40]!r} is not followed by = or is not a keyword")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise refuse(f"the value of {keyword} has no closing quote")
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        pairs.append((keyword, "".join(value)))


def check_options(cluster_name: str, text: str | None, *, mapped: bool) -> list[tuple[str, str]]:
    """``parse_options``, refusing the keywords that are admmgt's or the foreign server's."""
    pairs = parse_options(cluster_name, text)
    refused = ROUTING_KEYWORDS + (MAPPED_KEYWORDS if mapped else ())
    taken = sorted({k for k, _ in pairs if k in refused or k == "password"})
    if taken:
        where = (
            "the host, port and credentials of a cluster with a user mapping come from its "
            "foreign server only"
            if mapped
            else "the host and port come from admmgt.clusters.host and .port"
        )
        raise AdmmgtError(
            f'cluster "{cluster_name}": admmgt.clusters.options sets {", ".join(taken)}, which '
            f"admmgt does not take from options: {where}; nothing was connected",
            hint="Remove "
            + ", ".join(taken)
            + " from admmgt.clusters.options"
            + (
                " and set them on the foreign server (ALTER SERVER ... OPTIONS (SET host ...))."
                if mapped
                else " and set admmgt.clusters.host and port."
            ),
        )
    return pairs


@dataclass(frozen=True)
class Cluster:
    name: str
    host: str | None
    port: int | None
    options: str | None
    fdw_server: str | None = None
    max_parallel: int | None = None
    accepts_tenants: bool = True


class Clusters:
    """Connection strings for databases on the registered clusters.

    The local cluster is reached over the admin server's own Unix socket as
    the role running admmgt (the procedures' owner): no password anywhere.
    Another cluster adds its non-secret ``options``; its password comes from a
    passfile, or from the user mapping of its ``fdw_server``, read here when a
    connection is made and never written anywhere (docs/clusters.md).
    """

    def __init__(self, plpy: Plpy) -> None:
        self.plpy = plpy
        rows = plpy.execute(
            """SELECT name, host, port, options, fdw_server, max_parallel, accepts_tenants
               FROM admmgt.clusters ORDER BY name"""
        )
        self.by_name = {r["name"]: Cluster(**dict(r)) for r in rows}
        local = plpy.execute(
            """SELECT current_setting('unix_socket_directories') AS sockets,
                      current_setting('port') AS port, current_user AS me,
                      current_database() AS admin_db"""
        )[0]
        sockets = [s.strip() for s in local["sockets"].split(",") if s.strip()]
        self.local_host = sockets[0] if sockets else "localhost"
        self.local_port = int(local["port"])
        self.user = local["me"]
        self.admin_db = local["admin_db"]
        # Every statement admmgt sends waits at most this long for a lock: a
        # session setting, so it also bounds what runs outside a transaction
        # (history and catalog reads, CREATE INDEX CONCURRENTLY waiting for old
        # transactions). A script's transaction sets its own lock_timeout.
        self.wait_timeout_ms = load_settings(plpy).wait_timeout_ms
        self._fdw: dict[str, dict[str, str]] = {}
        # Per run (one Clusters per run): checked once, and once down, down for the run.
        self.checked: set[str] = set()
        self.down: dict[str, RemoteError] = {}

    def get(self, cluster_name: str) -> Cluster:
        cluster = self.by_name.get(cluster_name)
        if cluster is None:
            raise AdmmgtError(
                f'cluster "{cluster_name}" is not registered in admmgt.clusters',
                hint="CALL admmgt.add_cluster(...), or fix vendor_db_settings.cluster_name.",
            )
        return cluster

    def conninfo(
        self, cluster_name: str, dbname: str, application_name: str = "admmgt", options: str = ""
    ) -> str:
        """A libpq connection string; it may hold a password, so it is never shown.

        The cluster's own ``options`` are parsed and may not set a routing
        keyword (``ROUTING_KEYWORDS``; for a cluster with a user mapping also
        ``passfile``): the host and port come from admmgt.clusters, or for a
        cluster with a user mapping from its foreign server only, so that
        editing admmgt.clusters cannot send that password elsewhere.
        """
        cluster = self.get(cluster_name)
        mapped = bool(cluster.fdw_server)
        # Parsed, checked and written again, never pasted: a keyword admmgt
        # sets below cannot be given twice, nor hidden in a malformed string.
        parts = dict(check_options(cluster_name, cluster.options, mapped=mapped))
        if cluster_name != "local" and "connect_timeout" not in parts:
            parts["connect_timeout"] = "10"  # a silent host must not stall every cluster
        if cluster.host is None and cluster_name == "local":
            parts.update(
                host=self.local_host, port=str(cluster.port or self.local_port), user=self.user
            )
        elif not mapped:
            if cluster.host:
                parts["host"] = cluster.host
            if cluster.port:
                parts["port"] = str(cluster.port)
        if mapped:
            # Host, hostaddr and port of the foreign server only (not
            # clusters.host or .port, which an operator may edit).
            parts.update(self._fdw_options(cluster))
        # NOTICEs of remote sessions ("already exists, skipping") would go to
        # the server log through dblink's libpq; admmgt reports what matters.
        parts.update(
            dbname=dbname,
            application_name=application_name,
            options=f"-c client_min_messages=warning -c lock_timeout={self.wait_timeout_ms}"
            + (f" {options}" if options else ""),
        )
        return " ".join(f"{k}={libpq_quote(v)}" for k, v in parts.items())

    def _fdw_options(self, cluster: Cluster) -> dict[str, str]:
        """The foreign server's options, then its user mapping's (user, password)."""
        if cluster.name in self._fdw:
            return self._fdw[cluster.name]
        rows = self.plpy.execute(
            self.plpy.prepare(
                """SELECT s.srvoptions AS server, (
                       SELECT m.umoptions FROM pg_catalog.pg_user_mappings AS m
                       WHERE m.srvid = s.oid AND m.umuser IN (r.oid, 0)
                       ORDER BY m.umuser DESC LIMIT 1) AS mapping,
                       EXISTS (SELECT FROM pg_catalog.pg_user_mappings AS m
                               WHERE m.srvid = s.oid AND m.umuser IN (r.oid, 0)) AS mapped
                   FROM pg_catalog.pg_foreign_server AS s, pg_catalog.pg_roles AS r
                   WHERE s.srvname = $1 AND r.rolname = current_user""",
                ["text"],
            ),
            [cluster.fdw_server],
        )
        if not rows:
            raise AdmmgtError(
                f'cluster "{cluster.name}": foreign server "{cluster.fdw_server}" '
                "(clusters.fdw_server) does not exist",
                hint=f"CREATE SERVER {quote_ident(cluster.fdw_server or '')} FOREIGN DATA WRAPPER"
                " dblink_fdw OPTIONS (host '...', port '...'); then CREATE USER MAPPING for the"
                " owner of the admmgt procedures (docs/clusters.md).",
            )
        if not rows[0]["mapped"]:
            raise AdmmgtError(
                f'cluster "{cluster.name}": foreign server "{cluster.fdw_server}" has no user '
                f'mapping for role "{self.user}" (the owner of the admmgt procedures) or PUBLIC',
                hint=f"CREATE USER MAPPING FOR {quote_ident(self.user)} SERVER "
                f"{quote_ident(cluster.fdw_server or '')} OPTIONS (user '...', password '...');",
            )
        options: dict[str, str] = {}
        for item in list(rows[0]["server"] or []) + list(rows[0]["mapping"] or []):
            key, _, value = item.partition("=")
            if key != "dbname":  # each connection names its own database
                options[key] = value
        if "host" not in options:
            raise AdmmgtError(
                f'cluster "{cluster.name}": foreign server "{cluster.fdw_server}" has no host '
                "option; a cluster whose password is in a user mapping is reached only at the "
                "host (and port) of its foreign server",
                hint=f"ALTER SERVER {quote_ident(cluster.fdw_server or '')} OPTIONS "
                "(ADD host '...', ADD port '...');",
            )
        self._fdw[cluster.name] = options
        return options

    def admin_conninfo(self) -> str:
        return self.conninfo("local", self.admin_db)

    def relay_conninfo(self) -> str:
        """A relay's session into the admin database (_relay): it only waits on
        dblink calls, for as long as its tenant's statement takes, so the admin
        database's own timeouts (ALTER DATABASE/ROLE ... SET) must not apply."""
        return self.conninfo(
            "local",
            self.admin_db,
            "admmgt relay",
            "-c statement_timeout=0 -c idle_session_timeout=0"
            " -c idle_in_transaction_session_timeout=0",
        )

    def maintenance_db(self, cluster_name: str) -> str:
        """Where CREATE DATABASE and DROP DATABASE run on a cluster."""
        return self.admin_db if cluster_name == "local" else "postgres"

    def parallel(self, cluster_name: str, default: int) -> int:
        cluster = self.by_name.get(cluster_name)
        return cluster.max_parallel if cluster and cluster.max_parallel else default

    def probe(self, dblink: Dblink, cluster_name: str) -> RemoteError | None:
        """None if the cluster accepts a connection now, else why not."""
        try:
            conninfo = self.conninfo(cluster_name, self.maintenance_db(cluster_name))
        except AdmmgtError as exc:
            return RemoteError("08000", exc.message)
        try:
            with dblink.session(conninfo):
                return None
        except RemoteError as exc:
            return exc
