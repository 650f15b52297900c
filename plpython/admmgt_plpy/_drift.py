"""detect_drift: how each tenant's schemas differ from the template's.

Read-only, so it takes no operation lock and records no run. Every created
tenant is visited in parallel (Fanout), in three steps:

1. its own history (admmgt.script_history) gives its version; a tenant at
   another version than the template is expected to differ and is reported
   as such, not compared object by object;
2. one query returns a sha256 over a canonical description of every managed
   object, computed by the tenant's server (``FINGERPRINT``); a tenant whose
   fingerprint equals the template's is identical and costs nothing more;
3. only a tenant that differs sends its object list (``OBJECTS``), which is
   compared here with the template's.

Managed schemas are every schema except admmgt's own, the system schemas and
those of extensions. Objects belonging to an extension are left out (the
extension itself is compared, with its version). Privileges, owners and
comments are not compared. Row-level security is: whether a table has it
enabled and forced, and every policy.

Schema tenants (``t_separatedb => 0``, or both modes by default) are compared
with the template schema, in the same way, through a connection to their host
database: only their own schema is read, with it on the search_path so that
its objects print bare, and what still names it (an index's table, a
routine's header, a ``SET search_path`` value) is mapped to ``<schema>`` on
both sides (``objects_sql``). A tenant object that names the template schema
is therefore reported, not mapped away. Extensions are the host database's,
shared, and not compared per schema.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._drift_sql import FINGERPRINT as FINGERPRINT  # re-exported: read here
from admmgt_plpy._drift_sql import (
    FINGERPRINT_COLUMNS,
    OBJECTS_COLUMNS,
    SESSION_COLUMNS,
    fingerprint_sql,
    objects_sql,
    session_sql,
)
from admmgt_plpy._drift_sql import OBJECTS as OBJECTS
from admmgt_plpy._drift_sql import SESSION as SESSION
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._registry import (
    DATABASE_MODE,
    SCHEMA_MODE,
    TENANT_SELECT,
    Tenant,
    mode_of,
    mode_sql,
    place_conninfo,
    templates,
)
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError, Run
from admmgt_plpy._settings import Settings, load_settings
from admmgt_plpy._types import APPLIED, Fragment, Plpy

# Kinds whose name is "<table>.<name>": left out when their table is missing or extra.
TABLE_PARTS = ("column", "constraint", "trigger", "policy")
DETAIL_WIDTH = 160

Objects = dict[tuple[str, str], str]


@dataclass(frozen=True)
class Difference:
    object_kind: str
    object_name: str
    difference: str  # missing | extra | different | unreachable
    detail: str


@dataclass
class Snapshot:
    """What was read from one database."""

    version: int | None
    fingerprint: str
    objects: Objects = field(default_factory=dict)


# --------------------------------------------------------------- pure parts


def shorten(text: str, width: int = DETAIL_WIDTH) -> str:
    """One line, whitespace collapsed, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def describe_change(template: str, tenant: str) -> str:
    """A short account of how two definitions differ."""
    a, b = template.strip().splitlines() or [""], tenant.strip().splitlines() or [""]
    half = DETAIL_WIDTH // 2 - 12
    if len(a) == 1 and len(b) == 1:
        return f"template: {shorten(a[0], half)}; tenant: {shorten(b[0], half)}"
    for number, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if " ".join(x.split()) != " ".join(y.split()):
            return f"line {number}: template: {shorten(x, half)}; tenant: {shorten(y, half)}"
    if len(a) != len(b):
        return f"template has {len(a)} lines, tenant {len(b)}"
    return "whitespace differs"


def compare(template: Objects, tenant: Objects) -> list[Difference]:
    """Every object missing from, extra in or different in the tenant, in name order."""
    gone = {name for kind, name in template if kind in ("table", "foreign table")} - {
        name for kind, name in tenant if kind in ("table", "foreign table")
    }
    added = {name for kind, name in tenant if kind in ("table", "foreign table")} - {
        name for kind, name in template if kind in ("table", "foreign table")
    }

    def part_of(tables: set[str], kind: str, name: str) -> bool:
        return kind in TABLE_PARTS and name.rpartition(".")[0] in tables

    found: list[Difference] = []
    for key in sorted(set(template) | set(tenant)):
        kind, name = key
        if key not in tenant:
            if not part_of(gone, kind, name):
                found.append(
                    Difference(kind, name, "missing", "template: " + shorten(template[key]))
                )
        elif key not in template:
            if not part_of(added, kind, name):
                found.append(Difference(kind, name, "extra", "tenant: " + shorten(tenant[key])))
        elif template[key] != tenant[key]:
            found.append(
                Difference(kind, name, "different", describe_change(template[key], tenant[key]))
            )
    return found


def objects_of(rows: Iterable[dict[str, Any]]) -> Objects:
    return {(r["object_kind"], r["object_name"]): r["definition"] or "" for r in rows}


# --------------------------------------------------------------- the jobs


def _schema_of(place: Tenant) -> str | None:
    """The schema a schema place's objects are read from (None: a database)."""
    return place.database if place.is_schema else None


def _read(conn: str, place: Tenant) -> Fragment:
    """Version and fingerprint of the place on ``conn`` (a sub-generator)."""
    schema = _schema_of(place)
    yield Run(conn, session_sql(schema), SESSION_COLUMNS)
    if schema is not None:
        found = yield Run(
            conn,
            f"SELECT pg_catalog.to_regnamespace({quote_literal(quote_ident(schema))}) IS NOT NULL"
            " AS found",
            "found boolean",
        )
        if not found[0]["found"]:
            raise RemoteError(
                "3F000",
                f'schema "{schema}" does not exist in host database "{place.host}"',
            )
    # autocommit: a missing table is harmless
    _, state = yield from _history.read_state(conn, place.history_table)
    version = _history.version_of(state)
    fingerprint = (yield Run(conn, fingerprint_sql(schema), FINGERPRINT_COLUMNS))[0]["fingerprint"]
    return Snapshot(version, fingerprint)


def _not_read(exc: RemoteError) -> Outcome:
    """A database detect_drift could not read (its own failure, not a cluster down)."""
    message = f"{exc.sqlstate} {exc.message}"
    if exc.detail:
        message += ": " + exc.detail
    return Outcome("failed", shorten(message), exc.sqlstate, exc.statement)


def read_template(template: Tenant, clusters: Clusters) -> Job:
    try:
        conn = yield Connect(place_conninfo(clusters, template.place))
        snapshot: Snapshot = yield from _read(conn, template)
        objects = yield Run(conn, objects_sql(_schema_of(template)), OBJECTS_COLUMNS)
        snapshot.objects = objects_of(objects)
    except RemoteError as exc:
        return _not_read(exc)
    return Outcome("ok", details={"snapshot": snapshot})


def _check_tenant(tenant: Tenant, template: Snapshot, clusters: Clusters) -> Job:
    try:
        conn = yield Connect(place_conninfo(clusters, tenant.place))
        mine: Snapshot = yield from _read(conn, tenant)
        if mine.version != template.version:
            found = [
                Difference(
                    "version",
                    _history.SCHEMA_HISTORY if tenant.is_schema else _history.DATABASE_HISTORY,
                    "different",
                    f"tenant at script {mine.version}, template at script {template.version}: "
                    "objects not compared (held back, failed, or not yet migrated; see "
                    "admmgt.fleet_status)",
                )
            ]
            return Outcome("ok", details={"differences": found})
        if mine.fingerprint == template.fingerprint:
            return Outcome("noop", details={"differences": []})
        objects = objects_of((yield Run(conn, objects_sql(_schema_of(tenant)), OBJECTS_COLUMNS)))
    except RemoteError as exc:
        return _not_read(exc)
    return Outcome("ok", details={"differences": compare(template.objects, objects)})


# ------------------------------------------------------------------ entry


def _tenants(plpy: Plpy, dbname: str | None, mode: int) -> list[Tenant]:
    query = f"""{TENANT_SELECT}
               WHERE NOT v.deleted AND NOT v.istemplate AND v.status = {APPLIED}
                 AND {mode_sql("v", mode)}
                 AND ($1::text IS NULL OR lower(v.dbname) = lower($1::text)) ORDER BY v.id"""
    rows = plpy.execute(plpy.prepare(query, ["text"]), [dbname])
    return [Tenant.of(r) for r in rows]


def _modes(plpy: Plpy, dbname: str | None, separatedb: int | None) -> list[int]:
    """The tenancy modes to compare: ``separatedb``'s; else ``dbname``'s; else
    each mode that has a created template or tenant (database tenants when
    none has: the usual error then says what is missing). A ``dbname`` must
    be a created tenant, of mode ``separatedb`` when that is given."""
    mode = None if separatedb is None else mode_of(separatedb)
    if dbname is None and mode is not None:
        return [mode]
    rows = plpy.execute(
        plpy.prepare(
            f"""SELECT DISTINCT coalesce(separatedb, 1) AS mode
               FROM admmgt.vendor_db_settings
               WHERE NOT deleted AND status = {APPLIED}
                 AND ($1::text IS NULL OR (NOT istemplate AND lower(dbname) = lower($1::text)))
               ORDER BY 1 DESC""",
            ["text"],
        ),
        [dbname],
    )
    found = [int(r["mode"]) for r in rows]
    if dbname is not None and not found:
        raise AdmmgtError(
            f'detect_drift: "{dbname}" is not a created tenant (a vendor_db_settings row '
            "with status 2, not the template, not deleted)",
            hint="SELECT dbname, status_word FROM admmgt.fleet_status; lists the databases.",
        )
    if mode is not None and mode not in found:
        words = {DATABASE_MODE: "database", SCHEMA_MODE: "schema"}
        raise AdmmgtError(
            f'detect_drift: "{dbname}" is a {words[found[0]]} tenant, not a {words[mode]} '
            f"tenant (t_separatedb => {mode}); nothing was compared",
            hint=f"SELECT * FROM admmgt.detect_drift({quote_literal(str(dbname))});"
            " finds its mode.",
        )
    return [mode] if mode is not None else (found or [DATABASE_MODE])


def _local_reason(plpy: Plpy, tenant: Tenant) -> str | None:
    """Why a database of the local cluster may be out of reach, as far as the catalog tells."""
    rows = plpy.execute(
        plpy.prepare(
            "SELECT datallowconn FROM pg_catalog.pg_database WHERE datname = $1", ["text"]
        ),
        [tenant.place.database],
    )
    what = "the database" if not tenant.is_schema else f'host database "{tenant.place.database}"'
    if not rows:
        return f"{what} does not exist"
    if not rows[0]["datallowconn"]:
        return f"{what} does not allow connections (datallowconn is false)"
    return None


def detect_drift(
    plpy: Plpy, *, dbname: str | None, separatedb: int | None = None
) -> list[dict[str, Any]]:
    """Rows of (dbname, object_kind, object_name, difference, detail), sorted.

    ``separatedb``: database tenants (1) or schema tenants (0) only; None:
    every mode with created tenants (or ``dbname``'s)."""
    settings = load_settings(plpy)
    dblink = Dblink(plpy)
    clusters = Clusters(plpy)
    rows: list[dict[str, Any]] = []
    for mode in _modes(plpy, dbname, separatedb):
        rows += _detect(plpy, dbname, mode, settings, dblink, clusters)
    rows.sort(key=lambda r: (r["dbname"], r["object_kind"], r["object_name"]))
    return rows


def _detect(
    plpy: Plpy,
    dbname: str | None,
    mode: int,
    settings: Settings,
    dblink: Dblink,
    clusters: Clusters,
) -> list[dict[str, Any]]:
    """detect_drift's rows for one tenancy mode, and its NOTICE."""
    started = time.monotonic()
    template, *copies = templates(plpy, mode)
    # The other clusters' templates are compared too, as "<name>@<cluster>".
    tenants = (copies if dbname is None else []) + _tenants(plpy, dbname, mode)
    kind = "template schema" if mode == SCHEMA_MODE else "template"

    read: list[Outcome] = []
    Fanout(dblink, 1, 0, lambda _t, outcome, _ms: read.append(outcome)).run(
        [template], lambda t: read_template(t, clusters)
    )
    if read[0].outcome != "ok":
        raise AdmmgtError(
            f'detect_drift: {kind} "{template.label}" could not be read '
            f"({read[0].message}); nothing was compared",
            hint=f"Check that the {kind} exists and admmgt can connect to "
            f"{'its host database' if mode == SCHEMA_MODE else 'it'}.",
        )
    snapshot: Snapshot = read[0].details["snapshot"]

    rows: list[dict[str, Any]] = []
    counts = {"identical": 0, "differ": 0, "unreachable": 0}

    def on_done(tenant: Tenant, outcome: Outcome, _elapsed_ms: float) -> None:
        if outcome.outcome != "ok" and outcome.outcome != "noop":
            counts["unreachable"] += 1
            why = _local_reason(plpy, tenant) if tenant.cluster == "local" else None
            detail = f"{outcome.message}: {why}" if why else outcome.message
            found = [
                Difference(
                    "schema" if tenant.is_schema else "database",
                    tenant.database,
                    "unreachable",
                    detail,
                )
            ]
        else:
            found = outcome.details["differences"]
            counts["differ" if found else "identical"] += 1
        rows.extend(
            {
                "dbname": tenant.label,
                "object_kind": d.object_kind,
                "object_name": d.object_name,
                "difference": d.difference,
                "detail": d.detail,
            }
            for d in found
        )

    Fanout.over_fleet(dblink, settings, on_done, clusters, stop_early=False).run(
        tenants, lambda t: _check_tenant(t, snapshot, clusters)
    )
    which = "schema tenant(s)" if mode == SCHEMA_MODE else "tenant(s)"
    name = template.label if mode == SCHEMA_MODE else template.database
    plpy.notice(
        f"detect_drift: {len(tenants)} {which} compared with {kind} {name} "
        f"({len(snapshot.objects)} objects): {counts['identical']} identical, "
        f"{counts['differ']} differ, {counts['unreachable']} unreachable "
        f"in {time.monotonic() - started:.1f} s"
    )
    return rows
