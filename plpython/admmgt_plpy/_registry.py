"""The tenant registry: admmgt.vendor_db_settings, read and written in one place.

A tenant is a row of the registry; its place is where its data lives (a
cluster, a database there and, for a schema tenant, a schema in it). The
templates are rows too (istemplate), one per cluster. "Updating" tenants are
the ones operations work on: created, live, not held back (updateflag).
Every change of a row is written by :func:`registry_update`, so each column
means the same in every operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from admmgt_plpy._conninfo import Clusters, libpq_quote, parse_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._history import history_table
from admmgt_plpy._names import quote_literal
from admmgt_plpy._types import APPLIED, FAILED, READY, Plpy

RESERVED = {"postgres", "template0", "template1"}

DATABASE_MODE = 1  # vendor_db_settings.separatedb: a database per tenant
SCHEMA_MODE = 0  # a schema per tenant, in its cluster's host database
MAX_NAME_BYTES = 63

# A created tenant: live, not a template, its database made (what detect_drift
# and check_rls look at, held back or not).
CREATED = f"NOT deleted AND NOT istemplate AND status = {APPLIED}"
# The updating-tenant predicate, for SQL that needs it: created, live, not a
# template, not held back. :func:`is_updating` is the same test in Python.
UPDATING = f"{CREATED} AND updateflag"


# The registry's tenant columns with the host database of a schema tenant's
# cluster: what Tenant.of reads. Rows are "v"; add a WHERE on v.* and ORDER BY.
TENANT_SELECT = """SELECT v.id, v.dbname, v.cluster_name, v.scriptversion, v.separatedb,
       CASE WHEN v.separatedb = 0 THEN h.dbname END AS host
FROM admmgt.vendor_db_settings AS v
LEFT JOIN admmgt.schema_hosts AS h ON h.cluster_name = coalesce(v.cluster_name, 'local')"""


def mode_sql(alias: str, mode: int | None) -> str:
    """The rows of one tenancy mode (None: both), for a registry row under ``alias``."""
    return "true" if mode is None else f"{alias}.separatedb = {int(mode)}"


def updating_sql(alias: str) -> str:
    """:data:`UPDATING` for a registry row under ``alias`` (e.g. "v")."""
    a = f"{alias}."
    return f"NOT {a}deleted AND NOT {a}istemplate AND {a}status = {APPLIED} AND {a}updateflag"


def is_updating(row: dict[str, Any]) -> bool:
    """:data:`UPDATING` for a registry row read into Python."""
    return bool(
        not row["deleted"]
        and not row["istemplate"]
        and row["status"] == APPLIED
        and row["updateflag"]
    )


@dataclass(frozen=True)
class Place:
    """Where a tenant's data lives: a database of a cluster, or a schema in one."""

    cluster: str
    database: str
    schema: str | None = None

    @property
    def label(self) -> str:
        """How NOTICEs name it: the database (and schema), and its cluster unless local."""
        name = self.database if self.schema is None else f"{self.database}.{self.schema}"
        return name if self.cluster == "local" else f"{name}@{self.cluster}"


def search_path_option(schema: str) -> str:
    """The libpq ``options`` word that makes ``schema`` a session's search_path.

    The schema is a quoted identifier (so any name is a name), and then escaped
    the way the server splits ``options`` into words: a backslash before every
    backslash and every white-space character.
    """
    ident = '"' + schema.replace('"', '""') + '"'
    escaped = "".join("\\" + c if c == "\\" or c.isspace() else c for c in ident)
    return f"-c search_path={escaped}"


def place_conninfo(clusters: Clusters, place: Place, options: str = "") -> str:
    """A libpq connection string to ``place``; for a schema place, its session's
    search_path is the schema (the cluster's own options are kept). ``options``:
    more ``-c name=value`` settings for the session."""
    conninfo = clusters.conninfo(place.cluster, place.database, options=options)
    if place.schema is None:
        return conninfo
    parts = dict(parse_options(place.cluster, conninfo))
    words = [parts.get("options", "").strip(), search_path_option(place.schema)]
    parts["options"] = " ".join(w for w in words if w)
    return " ".join(f"{k}={libpq_quote(v)}" for k, v in parts.items())


@dataclass(frozen=True)
class Tenant:
    id: int
    dbname: str  # as registered
    cluster: str
    scriptversion: int | None = None
    separatedb: int = DATABASE_MODE
    host: str | None = None  # a schema tenant's: its cluster's host database

    @classmethod
    def of(cls, row: Any) -> Tenant:
        """From a registry row (:data:`TENANT_SELECT`'s columns; a query with
        only the first four reads a database tenant); a row that names no
        cluster is on the local one."""
        separatedb = row.get("separatedb", DATABASE_MODE)
        return cls(
            row["id"],
            row["dbname"],
            row["cluster_name"] or "local",
            row["scriptversion"],
            DATABASE_MODE if separatedb is None else int(separatedb),
            row.get("host"),
        )

    @property
    def database(self) -> str:
        """The tenant's name as PostgreSQL spells it: its database, or for a
        schema tenant its schema (lower(dbname) either way)."""
        return self.dbname.lower()

    @property
    def is_schema(self) -> bool:
        return self.separatedb == SCHEMA_MODE

    @property
    def place(self) -> Place:
        """Where its data lives: its database, or its schema in the host database."""
        if not self.is_schema:
            return Place(self.cluster, self.database)
        if self.host is None:
            raise AdmmgtError(
                f'schema tenant "{self.dbname}": cluster "{self.cluster}" has no host '
                "database for schema tenants (admmgt.schema_hosts)",
                hint="CALL admmgt.create_schema(); makes admmgt_schemas and records it.",
            )
        return Place(self.cluster, self.host, self.database)

    @property
    def history_table(self) -> str:
        """Its history table, qualified, in the database its place names."""
        return history_table(self.database if self.is_schema else None)

    @property
    def label(self) -> str:
        """How NOTICEs name it: the database (host.schema for a schema
        tenant), and its cluster unless local."""
        if self.is_schema and self.host is None:
            return self.database if self.cluster == "local" else f"{self.database}@{self.cluster}"
        return self.place.label


def schema_host(plpy: Plpy, cluster: str) -> str | None:
    """The host database of ``cluster``'s schema tenants (None: it has none yet)."""
    rows = plpy.execute(
        plpy.prepare("SELECT dbname FROM admmgt.schema_hosts WHERE cluster_name = $1", ["text"]),
        [cluster],
    )
    return rows[0]["dbname"] if rows else None


def database_name_problem(dbname: str) -> str | None:
    """Why PostgreSQL (or a sane DBA) cannot use lower(dbname) as a database name."""
    name = dbname.lower()
    if not name.strip():
        return "the name is empty"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"lower(dbname) is {len(name.encode('utf-8'))} bytes; PostgreSQL allows 63"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "the name contains control characters (newline, tab, ...)"
    if name in RESERVED:
        return f'"{name}" is a system database'
    return None


def mode_of(separatedb: int | None) -> int:
    """The proof of concept's t_separatedb, checked: 1 = database per tenant,
    0 = schema per tenant."""
    if separatedb not in (DATABASE_MODE, SCHEMA_MODE):
        raise AdmmgtError(
            f"t_separatedb must be 1 (database per tenant) or 0 (schema per tenant), "
            f"not {separatedb}"
        )
    return int(separatedb)


# ------------------------------------------------------------------ reading


def updating_tenants(
    plpy: Plpy,
    *,
    below: int | None = None,
    at: int | None = None,
    mode: int | None = DATABASE_MODE,
) -> list[Tenant]:
    """Created, live tenants with updateflag: the ones operations work on.

    ``below``: only those the registry shows behind that script; ``at``: only
    those the registry shows exactly at it, or whose version it does not know
    (NULL, e.g. left by an interrupted create_database: the operation reads
    each one's history first); ``mode``: database tenants (1), schema tenants
    (0) or both (None).
    """
    rows = plpy.execute(
        plpy.prepare(
            f"""{TENANT_SELECT}
               WHERE {updating_sql("v")} AND {mode_sql("v", mode)}
                 AND ($1::int IS NULL OR coalesce(v.scriptversion, 0) < $1)
                 AND ($2::int IS NULL OR v.scriptversion = $2 OR v.scriptversion IS NULL)
               ORDER BY v.id""",
            ["int4", "int4"],
        ),
        [below, at],
    )
    return [Tenant.of(r) for r in rows]


def pending_tenants(plpy: Plpy, mode: int = DATABASE_MODE) -> list[dict[str, Any]]:
    """Rows of the tenants create_database (mode 1) or create_schema (mode 0)
    makes: pending (1) or failed before (3)."""
    return [
        dict(r)
        for r in plpy.execute(
            f"""SELECT id, dbname, cluster_name, NULL::int AS scriptversion, separatedb
               FROM admmgt.vendor_db_settings AS v
               WHERE NOT deleted AND NOT istemplate AND status IN ({READY}, {FAILED})
                 AND {mode_sql("v", mode)}
               ORDER BY id"""
        )
    ]


def registered(plpy: Plpy, dbname: str) -> dict[str, Any]:
    """The live registry row of ``dbname`` (matched case-insensitively), or a clear error."""
    rows = plpy.execute(
        plpy.prepare(
            """SELECT id, dbname, cluster_name, scriptversion, status, updateflag, istemplate,
                      separatedb
               FROM admmgt.vendor_db_settings WHERE upper(dbname) = upper($1) AND NOT deleted
               ORDER BY id LIMIT 1""",
            ["text"],
        ),
        [dbname],
    )
    if not rows:
        raise AdmmgtError(
            f'no tenant is registered as "{dbname}"',
            hint="SELECT dbname, status FROM admmgt.vendor_db_settings WHERE NOT deleted;",
        )
    return dict(rows[0])


def templates(plpy: Plpy, mode: int = DATABASE_MODE) -> list[Tenant]:
    """Every created template of one tenancy mode, the home template first.

    Each cluster keeps its own copy of the template (CREATE DATABASE ...
    TEMPLATE works within one cluster; a template schema lives in its
    cluster's host database). The home template is the one registered first;
    the others are the copies add_cluster built from it.
    """
    rows = plpy.execute(
        f"""{TENANT_SELECT}
           WHERE v.istemplate AND v.status = {APPLIED} AND NOT v.deleted AND {mode_sql("v", mode)}
           ORDER BY v.id"""
    )
    if not rows:
        if mode == SCHEMA_MODE:
            raise AdmmgtError(
                "no template schema is registered: schema tenants need one vendor_db_settings "
                "row with istemplate = true, separatedb = 0, dbname = the template's "
                "application schema (e.g. mgttest), made by create_schema (status 2)",
                hint="INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, separatedb, "
                "status) VALUES ('mgttest', true, 0, 1); CALL admmgt.create_schema();",
            )
        raise AdmmgtError(
            "no template is registered: admmgt needs one vendor_db_settings row with "
            "istemplate = true and status = 2",
            hint="INSERT INTO admmgt.vendor_db_settings (dbname, istemplate, status) "
            "VALUES ('unitemplate', true, 2);",
        )
    found = [Tenant.of(r) for r in rows]
    for cluster in {t.cluster for t in found}:
        here = [t for t in found if t.cluster == cluster]
        if len(here) > 1:
            names = ", ".join(f"{t.dbname} (id {t.id})" for t in here)
            kind = "template schemas" if mode == SCHEMA_MODE else "templates"
            raise AdmmgtError(
                f'{len(here)} {kind} are registered on cluster "{cluster}" ({names}); '
                "admmgt uses exactly one per cluster",
                hint="Set istemplate = false (or deleted = true) on all but one.",
            )
    return found


def templates_not_ready(plpy: Plpy, mode: int = DATABASE_MODE) -> dict[str, str]:
    """Why each cluster whose template copy (of tenancy ``mode``) exists but is
    not ready (status 1 or 3) must hold its tenants back from new scripts."""
    rows = plpy.execute(
        f"""SELECT coalesce(t.cluster_name, 'local') AS c, t.status, t.last_error
           FROM admmgt.vendor_db_settings AS t
           WHERE t.istemplate AND NOT t.deleted AND t.status <> {APPLIED}
             AND {mode_sql("t", mode)} AND NOT EXISTS (
               SELECT FROM admmgt.vendor_db_settings AS u
               WHERE u.istemplate AND NOT u.deleted AND u.status = {APPLIED}
                 AND u.separatedb = t.separatedb
                 AND coalesce(u.cluster_name, 'local') = coalesce(t.cluster_name, 'local'))"""
    )
    return {
        r["c"]: (
            f'held back: the template on cluster "{r["c"]}" is not ready (status {r["status"]}'
            + (f": {r['last_error'][:300]}" if r["last_error"] else "")
            + f"); fix it, then CALL admmgt.add_cluster({quote_literal(r['c'])}) to re-check"
        )
        for r in rows
    }


# ------------------------------------------------------------------ writing


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # registry_update: leave this column as it is


def _literal(value: str | None) -> str:
    return "NULL" if value is None else quote_literal(value)


# What registry_update sets, last, when a row changes (touch=True). A run's
# recorder writes the row up to a batch later and sets its own time instead
# (touched_at), so both sides share this one text.
TOUCH = "modifiedon = now()"


def touched_at(update: str, when: str) -> str:
    """``update`` (a registry_update) with modifiedon set to ``when`` (SQL)
    instead of now(); unchanged if it does not touch the row. Only the SET item
    itself is rewritten, never the same text inside a quoted error message."""
    head, found, tail = update.rpartition(TOUCH)
    # The WHERE after the real one holds no literal: a quote means the text
    # was inside the error message.
    if not found or not tail.startswith(" WHERE ") or "'" in tail:
        return update
    return f"{head}modifiedon = {when}{tail}"


def registry_update(
    ids: int | Iterable[int],
    *,
    status: int | None = None,
    scriptversion: int | _Keep | None = KEEP,
    error: str | _Keep | None = KEEP,
    cluster: str | None = None,
    deleted: bool = False,
    archived_as: str | None = None,
    touch: bool = True,
    if_no_cluster: bool = False,
    if_version_unknown: bool = False,
) -> str:
    """The one UPDATE of admmgt.vendor_db_settings rows ``ids``, as SQL text
    (run it locally, or with a run's records: RunRecorder.target/execute).

    ``scriptversion``/``error``: KEEP leaves the column, None clears it; an
    error also sets (or clears) last_error_at. ``cluster`` places the rows
    (with ``if_no_cluster``: only rows that name none yet);
    ``if_version_unknown``: only rows whose scriptversion is NULL; ``deleted`` marks
    them deleted; ``archived_as`` records the archive's name. ``touch``:
    modifiedon = now() (False for what only reports on the row).
    """
    keys = [ids] if isinstance(ids, int) else list(ids)
    if not keys:
        raise ValueError("registry_update: no rows")
    sets: list[str] = []
    if status is not None:
        sets.append(f"status = {int(status)}")
    if not isinstance(scriptversion, _Keep):
        sets.append(f"scriptversion = {'NULL' if scriptversion is None else int(scriptversion)}")
    if cluster is not None:
        sets.append(f"cluster_name = {quote_literal(cluster)}")
    if deleted:
        sets.append("deleted = true, deletedon = now()")
    if archived_as is not None:
        sets.append(f"archived_as = {quote_literal(archived_as)}")
    if not isinstance(error, _Keep):
        sets.append(
            f"last_error = {_literal(error)}, "
            f"last_error_at = {'NULL' if error is None else 'now()'}"
        )
    if touch:
        sets.append(TOUCH)  # last: touched_at finds it there
    if not sets:
        raise ValueError("registry_update: nothing to set")
    where = (
        f"id = {int(keys[0])}"
        if len(keys) == 1
        else f"id IN ({', '.join(str(int(k)) for k in keys)})"
    )
    if if_no_cluster:
        where += " AND cluster_name IS NULL"
    if if_version_unknown:
        where += " AND scriptversion IS NULL"
    return f"UPDATE admmgt.vendor_db_settings SET {', '.join(sets)} WHERE {where}"
