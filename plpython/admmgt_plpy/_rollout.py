"""applyScripts: the template, the other clusters' templates, then the tenants.

Order of a run (docs/migrations.md):
1. the chain: scripts with status 1 (ready) or 2 (applied), in id order;
2. every ready script is loaded, compiled and validated on the template's
   server before anything changes, and refused if its id is below the
   template's version (scripts apply in id order);
3. the template gets each script it lacks, one transaction per script;
   a script that fails there is marked 3 and neither it nor later scripts go on;
4. every other cluster's copy of the template gets them (the template wave,
   one at a time per cluster); a copy that fails holds back its cluster's
   tenants at the scripts it has;
5. every created tenant with updateflag that the registry shows behind the
   template gets the scripts it lacks, N tenants at a time per cluster. Each tenant's
   own admmgt.script_history decides what it lacks, so a registry that missed
   an update never causes a double apply; the registry is reconciled from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from admmgt_plpy import _sync
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError, MetadataError
from admmgt_plpy._fanout import Fanout
from admmgt_plpy._fleetrun import FleetRun, fleet_run
from admmgt_plpy._migration import migrate, migrated
from admmgt_plpy._recording import TEMPLATE_INCLUDED, progress, record, single, skip
from admmgt_plpy._registry import (
    DATABASE_MODE,
    SCHEMA_MODE,
    Tenant,
    mode_of,
    mode_sql,
    templates,
    templates_not_ready,
    updating_sql,
    updating_tenants,
)
from admmgt_plpy._remote import Dblink, Job, Outcome
from admmgt_plpy._rollout_checks import dry_run_rollout, schema_problem, validate_on_template
from admmgt_plpy._runlog import RunRecorder
from admmgt_plpy._scripts import Script, load_applied, load_script, refuse_changed
from admmgt_plpy._settings import Settings
from admmgt_plpy._sync import SyncPlan
from admmgt_plpy._transient import retryable
from admmgt_plpy._types import APPLIED, FAILED, READY, Plpy
from admmgt_plpy._validate import TemplateBusy


def applyscripts(
    plpy: Plpy, *, separatedb: int, dry_run: bool, execute: bool = False, raise_failure: bool = True
) -> None:
    mode = mode_of(separatedb)
    if execute and not dry_run:
        raise AdmmgtError(
            "applyScripts: t_execute => true is part of a dry run; nothing was applied",
            hint="CALL admmgt.applyScripts(dry_run => true, t_execute => true);",
        )
    with fleet_run(plpy, "applyScripts", lock="migrations") as run:
        _run(plpy, run, mode, dry_run=dry_run, execute=execute, raise_failure=raise_failure)


def _run(
    plpy: Plpy, run: FleetRun, mode: int, *, dry_run: bool, execute: bool, raise_failure: bool
) -> None:
    """applyScripts inside its fleet run (settings read, lock taken), on the
    templates and tenants of one tenancy ``mode`` (1: databases, 0: schemas)."""
    settings = run.settings
    template, *copies = templates(plpy, mode)
    if not dry_run and not _unfinished(plpy, "applyScripts") and _nothing_pending(plpy, mode):
        return
    # Each script is loaded and compiled once; applied ones must match their rows.
    ready = [
        r["id"] for r in plpy.execute("SELECT id FROM admmgt.scripts WHERE status = 1 ORDER BY id")
    ]
    applied = load_applied(
        plpy,
        [r["id"] for r in plpy.execute("SELECT id FROM admmgt.scripts WHERE status = 2")],
        "applyScripts",
    )
    broken: dict[int, MetadataError] = {}
    scripts = {i: _load_or_fail(plpy, i, dry_run, broken) for i in ready}
    refuse_changed((x for x in scripts.values() if x is not None), "applyScripts")
    # Schema tenants: a ready script must compile for the template schema and
    # its raw statements must not name it, before anything changes.
    unfit: dict[int, str] = {}
    if mode == SCHEMA_MODE:
        for script_id, loaded in list(scripts.items()):
            why = None if loaded is None else schema_problem(loaded, template.database)
            if why is not None:
                if dry_run:
                    plpy.notice(f"script {script_id} would be refused: {why}")
                unfit[script_id] = why
                scripts[script_id] = None
    if dry_run:
        chain = sorted(applied + [x for x in scripts.values() if x], key=lambda x: x.id)
        refusals = [f"script {i} cannot be compiled" for i in broken]
        refusals += [f"script {i}: {why}" for i, why in unfit.items()]
        dry_run_rollout(
            plpy, settings, template, copies, chain, refusals, execute, len(ready), mode
        )
        return

    dblink, clusters = run.dblink, run.clusters
    words = {"ok": "updated", "noop": "already up to date"}
    recorder = run.start({"ready": ready}, words=words, counted=TEMPLATE_INCLUDED)
    try:
        for script_id, exc in broken.items():
            # Refused like a validation failure (status 3, last_error, a failed
            # run); nothing at all is applied while a ready script cannot compile.
            _fail_script(
                plpy,
                recorder,
                script_id,
                f"cannot be compiled; nothing was applied:\n{exc.message}",
                template,
            )
        held = _on_databases(plpy, list(unfit)) if unfit else set()
        for script_id, why in unfit.items():
            if script_id in held:
                _refuse_for_schemas(plpy, recorder, script_id, why, template)
            else:
                _fail_script(plpy, recorder, script_id, f"{why}; nothing was applied", template)
        if broken or unfit:
            chain = []
        else:
            chain = sorted(applied + [x for x in scripts.values() if x], key=lambda x: x.id)
        if chain:

            def refuse(script: Script, why: str) -> None:
                _fail_script(plpy, recorder, script.id, why, template)

            try:
                chain = validate_on_template(plpy, dblink, clusters, template, chain, refuse)
            except TemplateBusy as unread:
                assert unread.outcome is not None  # validate_on_template says who held the lock
                # A lock or a lost connection on the template: every script stays ready.
                record(plpy, recorder, template, unread.outcome, 0.0, f"template {template.label}")
                _keep_ready(plpy, recorder, [s for s in chain if s.status == READY], unread.outcome)
                chain = []
            chain = _apply_to_template(
                plpy, dblink, clusters, settings, template, chain, recorder, mode
            )
        if chain:
            fleet = _Fleet(mode, template.database if mode == SCHEMA_MODE else None)
            chains = _apply_to_copies(
                plpy, dblink, clusters, settings, copies, chain, recorder, fleet
            )
            _apply_to_tenants(plpy, dblink, clusters, settings, chain, chains, recorder, fleet)
            _mark_applied(plpy, recorder, chain, mode)
    except BaseException:
        plpy.notice(run.finish())
        raise
    run.end(raise_failure=raise_failure)


def _unfinished(plpy: Plpy, operation: str, arguments: str | None = None) -> bool:
    """True when an earlier run of ``operation`` (with these jsonb ``arguments``)
    was interrupted and not resumed yet (admmgt.unfinished_runs)."""
    return bool(
        plpy.execute(
            plpy.prepare(
                """SELECT EXISTS (SELECT FROM admmgt.unfinished_runs WHERE operation = $1
                     AND state = 'interrupted' AND ($2::jsonb IS NULL OR arguments = $2::jsonb))
                   AS yes""",
                ["text", "text"],
            ),
            [operation, arguments],
        )[0]["yes"]
    )


def _nothing_pending(plpy: Plpy, mode: int = DATABASE_MODE) -> bool:
    """True (after saying so) when the registry alone shows there is no work
    for the templates and tenants of ``mode``."""
    here = mode_sql("v", mode)
    row = plpy.execute(
        f"""SELECT (SELECT count(*) FROM admmgt.scripts WHERE status = 1) AS ready,
                  (SELECT max(id) FROM admmgt.scripts WHERE status = 2) AS top,
                  (SELECT count(*) FROM admmgt.vendor_db_settings AS v
                   WHERE {updating_sql("v")} AND {here}) AS tenants,
                  (SELECT count(*) FROM admmgt.vendor_db_settings AS v
                   WHERE NOT deleted AND istemplate AND status = 2 AND {here}) AS templates,
                  (SELECT count(*) FROM admmgt.vendor_db_settings AS v
                   WHERE NOT deleted AND status = 2 AND (updateflag OR istemplate) AND {here}
                     AND coalesce(scriptversion, 0) < (
                         SELECT coalesce(max(id), 0) FROM admmgt.scripts WHERE status = 2)
                  ) AS behind"""
    )[0]
    if row["ready"] or row["behind"]:
        return False
    version = row["top"] if row["top"] is not None else "none"
    noun = "template schema" if mode == SCHEMA_MODE else "template"
    templates = noun if row["templates"] == 1 else f"all {row['templates']} {noun}s"
    kind = "schema tenants" if mode == SCHEMA_MODE else "tenants"
    plpy.notice(
        f"applyScripts: nothing to apply; {templates} and all {row['tenants']} updating "
        f"{kind} are at script {version}"
    )
    return True


def _load_or_fail(
    plpy: Plpy, script_id: int, dry_run: bool, broken: dict[int, MetadataError]
) -> Script | None:
    """The compiled script, or None with the reason in ``broken`` (a dry run says it)."""
    try:
        return load_script(plpy, script_id)
    except MetadataError as exc:
        if dry_run:
            plpy.notice(f"script {script_id} would be refused:\n{exc.message}")
        broken[script_id] = exc
        return None


def _apply_to_template(
    plpy: Plpy,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    template: Tenant,
    chain: list[Script],
    recorder: RunRecorder,
    mode: int = DATABASE_MODE,
) -> list[Script]:
    """Bring the template to the end of the chain; return the scripts it now has.

    The template schema's routines and views are not captured: following the
    template is for database tenants (docs/schema-tenants.md)."""
    schema_mode = mode == SCHEMA_MODE
    capture = SyncPlan(_sync.schemas_expression(settings.sync_schemas), capture=not schema_mode)
    job = migrate(
        template,
        chain,
        settings,
        clusters,
        recorder.run_id,
        capture,
        who="template",
        template_schema=template.database if schema_mode else None,
    )
    # When a script reached a template: the first home template of either
    # mode to get it; a later one of the other mode keeps that time.
    arrival = "coalesce(applied_to_template_at, now())" if schema_mode else "now()"

    def arrived(outcome: Outcome) -> None:
        """What the template's scripts leave in the admin database, committed
        before the NOTICE that a vanished client would turn into FATAL."""
        for script_id, points in migrated(outcome).captured.items():
            for before, kinds in points.items():
                for kind, definitions in kinds.items():
                    _sync.log_definitions(plpy, recorder, kind, definitions, script_id, before)
        have = set(migrated(outcome).have)
        for script in chain:
            # Applied now, or by an earlier run that was interrupted before it
            # recorded so (the template's own history has it): record it once.
            now = script.id in outcome.details.get("applied", [])
            if now or (script.id in have and script.status == READY):
                q = plpy.quote_nullable
                recorder.execute(
                    "UPDATE admmgt.scripts SET checksum = "
                    f"{q(script.compiled.checksum)}, metadata_checksum = "
                    f"{q(script.metadata_checksum)}, applied_rows = "
                    f"{q(script.snapshot)}::jsonb, applied_to_template_at = {arrival},"
                    f" last_error = NULL WHERE id = {script.id}"
                    + ("" if now else " AND applied_to_template_at IS NULL")
                )

    outcome = single(
        plpy, dblink, template, job, recorder, label=f"template {template.label}", before=arrived
    )
    have = set(migrated(outcome).have)
    if outcome.outcome == "failed" and retryable(outcome.sqlstate):
        # A lock or a lost connection is no defect of the script: it stays ready.
        _keep_ready(plpy, recorder, [s for s in chain if s.id not in have], outcome)
    elif outcome.outcome == "failed":
        failed_id = outcome.details.get("script")
        failed = next((s for s in chain if s.id == failed_id), None)
        if failed is not None:
            _fail_script(plpy, recorder, failed.id, f"failed on the template: {outcome.message}")
    return [s for s in chain if s.id in have]


def _keep_ready(plpy: Plpy, recorder: RunRecorder, scripts: list[Script], outcome: Outcome) -> None:
    """The template could not take ``scripts`` now, for a reason a re-run fixes:
    they stay ready (status 1), with the reason in last_error."""
    ids = [s.id for s in scripts if s.status == READY]
    if not ids:
        return
    idlist = ", ".join(map(str, ids))
    why = f"not applied to the template yet: {outcome.message}"
    recorder.execute(
        f"UPDATE admmgt.scripts SET last_error = {plpy.quote_nullable(why)} WHERE id IN ({idlist})"
        " AND status = 1"
    )
    noun = "script" if len(ids) == 1 else "scripts"
    plpy.notice(
        f"{noun} {idlist}: not applied to the template in this run, for a reason a re-run "
        "fixes; ready (status 1) still, the next applyScripts applies it"
    )


def _fail_script(
    plpy: Plpy, recorder: RunRecorder, script_id: int, why: str, refused_on: Tenant | None = None
) -> None:
    """Status 3 and last_error. A script ``refused_on`` the template before it ran
    is also logged there as failed (so the run fails) and said in a NOTICE; one
    that failed on the template was already logged and said by its outcome."""
    recorder.execute(
        f"UPDATE admmgt.scripts SET status = {FAILED}, last_error = {plpy.quote_nullable(why)}"
        f" WHERE id = {script_id}"
    )
    if refused_on is not None:
        message = f"script {script_id}: {why}; it touches no tenant (status 3)"
        recorder.refused(refused_on.database, refused_on.cluster, script_id, message)
        plpy.notice(message)


def _on_databases(plpy: Plpy, ids: list[int]) -> set[int]:
    """Of ``ids``, the scripts a database tenant or database template (not
    deleted) already has, by the registry: the database side of a mixed fleet."""
    idlist = ", ".join(str(int(i)) for i in ids)
    rows = plpy.execute(f"""
        SELECT s.id FROM admmgt.scripts AS s
        WHERE s.id IN ({idlist}) AND EXISTS (
            SELECT FROM admmgt.vendor_db_settings AS v
            WHERE v.separatedb = {DATABASE_MODE} AND NOT v.deleted
              AND coalesce(v.scriptversion, 0) >= s.id)""")
    return {int(r["id"]) for r in rows}


def _refuse_for_schemas(
    plpy: Plpy, recorder: RunRecorder, script_id: int, why: str, template: Tenant
) -> None:
    """A refusal about schema tenants only, of a script database tenants
    already have: its status stays as it is (marking it failed would say it
    touches no tenant, which is not so), last_error says why, and the run fails
    (a refusal on the template schema, ZA001) without touching a schema tenant."""
    message = (
        f"script {script_id}: {why}; database tenants already have it, so its status stays "
        "as it is and no schema tenant was touched. The step cannot change now that it is "
        "applied: once a rewrite (bare names) does to the databases what the step did, put it "
        f"in the step, CALL admmgt.repair_script({script_id}, 'accept'); then CALL "
        "admmgt.applyScripts(0);"
    )
    recorder.execute(
        f"UPDATE admmgt.scripts SET last_error = {plpy.quote_nullable(message)}"
        f" WHERE id = {int(script_id)}"
    )
    recorder.refused(template.database, template.cluster, script_id, message)
    plpy.notice(message)


@dataclass(frozen=True)
class _Fleet:
    """The tenancy mode a run works on; for schema tenants, the template
    schema's name, which each tenant's compile maps to its own schema."""

    mode: int = DATABASE_MODE
    template_schema: str | None = None

    def sync(self, plpy: Plpy, settings: Settings, chain: list[Script]) -> SyncPlan:
        """What the routines and views of the tenants follow around each script:
        the template's logged definitions for databases; nothing for schema
        tenants (their routines and views are refresh_* business)."""
        schemas = _sync.schemas_expression(settings.sync_schemas)
        if self.mode == SCHEMA_MODE:
            return SyncPlan(schemas)
        return SyncPlan.for_tenants(plpy, schemas, [s.id for s in chain])


def _apply_to_copies(
    plpy: Plpy,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    copies: list[Tenant],
    chain: list[Script],
    recorder: RunRecorder,
    fleet: _Fleet,
) -> dict[str, list[Script]]:
    """The template wave: every other cluster's template gets the chain (one per
    cluster, in parallel). Returns, per cluster, the scripts its tenants may get:
    those its template has."""
    if not copies:
        return {}
    have: dict[str, set[int]] = {c.cluster: set() for c in copies}
    record = progress(plpy, recorder, len(copies), who="template ")

    def on_done(copy: Tenant, outcome: Outcome, elapsed_ms: float) -> None:
        have[copy.cluster] = set(migrated(outcome).have)
        record(copy, outcome, elapsed_ms)

    Fanout(dblink, 1, 0, on_done, clusters).run(
        copies,
        partial(
            migrate,
            chain=chain,
            settings=settings,
            clusters=clusters,
            run_id=recorder.run_id,
            sync=fleet.sync(plpy, settings, chain),
            who="template",
            template_schema=fleet.template_schema,
        ),
    )
    return {c: [s for s in chain if s.id in ids] for c, ids in have.items()}


def _apply_to_tenants(
    plpy: Plpy,
    dblink: Dblink,
    clusters: Clusters,
    settings: Settings,
    chain: list[Script],
    chains: dict[str, list[Script]],
    recorder: RunRecorder,
    fleet: _Fleet,
) -> None:
    """Every updating tenant behind gets what its cluster's template has
    (``chains``; the home template's ``chain`` on a cluster without a copy).
    Template first, per cluster: a tenant whose cluster's copy is not ready, or
    lacks a script, is held back (skipped, with the reason in last_error)."""
    top = chain[-1].id
    tenants = updating_tenants(plpy, below=top, mode=fleet.mode)
    if not tenants:
        kind = "schema tenant" if fleet.mode == SCHEMA_MODE else "tenant"
        plpy.notice(f"applyScripts: every updating {kind} already has the template's scripts")
        return
    on_done = progress(plpy, recorder, len(tenants))
    sync = fleet.sync(plpy, settings, chain)
    unready = templates_not_ready(plpy, fleet.mode)
    mapped = fleet.template_schema

    def job(tenant: Tenant) -> Job:
        if tenant.cluster in unready:
            return skip(unready[tenant.cluster])
        own = chains.get(tenant.cluster, chain)
        if len(own) == len(chain):
            return migrate(
                tenant, chain, settings, clusters, recorder.run_id, sync, template_schema=mapped
            )
        return _held_back(
            tenant, own, chain[len(own)].id, settings, clusters, recorder.run_id, sync, mapped
        )

    Fanout.over_fleet(dblink, settings, on_done, clusters).run(tenants, job)


def _held_back(
    tenant: Tenant,
    own: list[Script],
    missing: int,
    settings: Settings,
    clusters: Clusters,
    run_id: int,
    sync: SyncPlan,
    template_schema: str | None = None,
) -> Job:
    """Apply what the tenant's cluster's template has; say why it gets no further."""
    outcome = yield from migrate(
        tenant, own, settings, clusters, run_id, sync, template_schema=template_schema
    )
    if outcome.outcome == "noop":
        outcome.outcome = "skipped"
        outcome.message = (
            f"held back at script {outcome.details.get('version')}: the template on cluster "
            f'"{tenant.cluster}" lacks script {missing} (its row\'s last_error says why)'
        )
    return outcome


# The registry rows a script must reach before it is applied (status 2): every
# updating tenant and every created template, of both tenancy modes.
_MUST_HAVE = f"({updating_sql('v')} OR (v.istemplate AND NOT v.deleted AND v.status = {APPLIED}))"


def _mark_applied(
    plpy: Plpy, recorder: RunRecorder, chain: list[Script], mode: int = DATABASE_MODE
) -> None:
    """Scripts every updating tenant and every template (of both modes) now
    has become status 2, with their rows; a NOTICE names those still waiting
    for the other mode's run."""
    ids = [s.id for s in chain if s.status == READY]
    if not ids:
        return
    idlist = ", ".join(str(i) for i in ids)
    recorder.execute(f"""
        WITH done AS (
            SELECT s.id FROM admmgt.scripts AS s
            WHERE s.id IN ({idlist}) AND s.status = 1 AND NOT EXISTS (
                SELECT FROM admmgt.vendor_db_settings AS v
                WHERE {_MUST_HAVE}
                  AND coalesce(v.scriptversion, 0) < s.id)),
        t AS (UPDATE admmgt.script_tables SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        c AS (UPDATE admmgt.script_table_columns SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        f AS (UPDATE admmgt.script_table_fkeys SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        p AS (UPDATE admmgt.script_procs SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        x AS (UPDATE admmgt.script_column_changes SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        i AS (UPDATE admmgt.script_indexes SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1),
        q AS (UPDATE admmgt.script_steps SET status = 2
              WHERE scriptid IN (SELECT id FROM done) AND status = 1)
        UPDATE admmgt.scripts SET status = 2, last_error = NULL
        WHERE id IN (SELECT id FROM done)""")
    waiting = plpy.execute(f"""
        SELECT v.separatedb, min(s.id) AS first, count(DISTINCT v.id) AS n
        FROM admmgt.scripts AS s
        JOIN admmgt.vendor_db_settings AS v ON coalesce(v.scriptversion, 0) < s.id
        WHERE s.id IN ({idlist}) AND s.status = 1 AND {_MUST_HAVE}
          AND v.separatedb <> {int(mode)}
        GROUP BY v.separatedb""")
    for row in waiting:
        schema = row["separatedb"] == SCHEMA_MODE
        recorder.notice(
            f"applyScripts: script {row['first']} stays ready (status 1) until "
            f"{row['n']} {'schema tenant' if schema else 'database tenant'}(s) or "
            f"template(s) more have it; CALL admmgt.applyScripts({0 if schema else 1}); "
            "brings them there"
        )
