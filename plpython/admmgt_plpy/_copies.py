"""The version of a new tenant database, a copy of its template, known
without connecting to it (create_database, docs/tenants.md step 4).

A copy's history is its template's at the moment of the copy. The template's
history is read before the first copy and again after the last
(TemplateHistory); equal readings give every copy made between them that
version, in one UPDATE. Otherwise each copy's own history is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from admmgt_plpy import _history
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._fleetrun import FleetRun
from admmgt_plpy._registry import Tenant, place_conninfo, registry_update
from admmgt_plpy._remote import Connect, Dblink, Job, Outcome, RemoteError


def record_versions(
    run: FleetRun,
    by_cluster: dict[str, Tenant],
    histories: dict[str, TemplateHistory | None],
    copied: dict[str, list[Tenant]],
) -> str:
    """After the wave: the version of each copy made from a template read
    before it (``copied``: those tenants, by cluster). A template whose history reads the
    same again gives its version to all of them in one UPDATE; otherwise each
    copy's own history is read. Returns the summary's addition."""
    extra, unsure = "", []
    for cluster, made in sorted(copied.items()):
        ids = [t.id for t in made]
        template, before = by_cluster[cluster], histories[cluster]
        assert before is not None
        after = read_template_history(run.dblink, run.clusters, template)
        if after == before:
            if before.version is None:
                extra += f"; {len(ids)} with no script applied, as their template"
                continue
            run.recorder.execute(
                registry_update(ids, scriptversion=before.version, if_version_unknown=True)
            )
            extra += f"; {len(ids)} at version {before.version}, their template's"
            continue
        why = (
            "could not be read again"
            if after is None
            else f"changed during the run ({before.events} history events, then {after.events})"
        )
        run.plpy.notice(
            f'create_database: template "{template.label}" {why}; reading the version of its '
            f"{len(ids)} new tenant(s) from their own history"
        )
        unsure += made
    if unsure:
        _read_versions(run, by_cluster, unsure)
    return extra


def _read_versions(run: FleetRun, by_cluster: dict[str, Tenant], unsure: list[Tenant]) -> None:
    """Read each new tenant's version from its own history; one unread keeps
    scriptversion NULL (unknown), which every operation reads as "look"."""
    versions: dict[int | None, list[int]] = {}
    unread: list[str] = []

    def on_done(tenant: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        if outcome.outcome == "ok":
            versions.setdefault(outcome.details["scriptversion"], []).append(tenant.id)
        else:
            unread.append(f"{tenant.label}: {outcome.message}")

    def job(tenant: Tenant) -> Job:
        template = by_cluster[tenant.cluster]
        return (yield from copy_version(tenant, template, run.clusters))

    fanout = Fanout.over_fleet(run.dblink, run.settings, on_done, run.clusters, stop_early=False)
    fanout.run(unsure, job)
    for version, ids in sorted(versions.items(), key=lambda kv: kv[0] or 0):
        if version is not None:
            run.recorder.execute(
                registry_update(ids, scriptversion=version, if_version_unknown=True)
            )
    if unread:
        run.plpy.notice(
            f"create_database: the history of {len(unread)} new tenant(s) could not be read; "
            "their version is left unknown (scriptversion NULL) until a run reads it from "
            "their own history (CALL admmgt.applyScripts(); does): "
            + "; ".join(unread[:5])
            + (f"; ... and {len(unread) - 5} more" if len(unread) > 5 else "")
        )


def copy_version(tenant: Tenant, template: Tenant, clusters: Clusters) -> Job:
    """A copy's version from its own history, or, when its template had no
    history table, the template's registered version."""
    conn = yield Connect(place_conninfo(clusters, tenant.place))
    has, state = yield from _history.read_state(conn)
    version = _history.version_of(state) if has else template.scriptversion
    return Outcome("ok", details={"scriptversion": version})


@dataclass(frozen=True)
class TemplateHistory:
    """A template's history as read once (_history.events_sql). Read before the
    first copy and again after the last, equal readings mean every copy made
    between them has this history: CREATE DATABASE copies a template no
    session is connected to, and history rows are only appended. So a copy's
    version is known without connecting to it."""

    events: int
    last_id: int | None
    version: int | None


def read_template_history(
    dblink: Dblink, clusters: Clusters, template: Tenant
) -> TemplateHistory | None:
    """None if it cannot be read: each copy's own history is read instead."""
    try:
        with dblink.session(clusters.conninfo(template.cluster, template.database)) as conn:
            row = dblink.query(conn, _history.EVENTS, _history.EVENTS_COLUMNS)[0]
    except AdmmgtError:
        return None  # a cluster admmgt will not connect to: its jobs say why
    except RemoteError as exc:
        if exc.sqlstate != _history.UNDEFINED_TABLE:
            return None
        return TemplateHistory(0, None, template.scriptversion)  # as a copy of it reads
    return TemplateHistory(row["events"], row["last_id"], row["version"])
