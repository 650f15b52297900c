"""The frame of one promote_tenant call, and what finishes or undoes a
promotion: the undo before the switch, the rename after it, and the
promotions row (admmgt_plpy._promote has the steps in order).
"""

from __future__ import annotations

import json
import time
from typing import Any

from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import FleetRun
from admmgt_plpy._locks import LOCK_CLASS
from admmgt_plpy._names import quote_ident, quote_literal
from admmgt_plpy._promote_preflight import Plan
from admmgt_plpy._promote_sql import fit_name, grant_statements
from admmgt_plpy._registry import SCHEMA_MODE, TENANT_SELECT, Tenant
from admmgt_plpy._remote import Dblink, Outcome, RemoteError
from admmgt_plpy._settings import Settings
from admmgt_plpy._types import Plpy

OPERATION = "promote_tenant"
# The session setting that stops a promotion after a step (tests only):
# "<step>" fails there, "<step>:wait" waits for the advisory lock
# (LOCK_CLASS, FAULT_LOCK) in the admin database, which a test holds.
FAULT_SETTING = "admmgt.promote_fault"
FAULT_LOCK = 100
# The steps it can stop after (after "switch", only the rename is left).
FAULT_STEPS = ("record", "create", "block", "copy", "verify", "switch")


class PromotionBase:
    """One call of promote_tenant (one tenant): its sessions, and the undo."""

    def __init__(self, plpy: Plpy, run: FleetRun) -> None:
        self.plpy = plpy
        self.run = run
        self.settings: Settings = run.settings
        self.dblink: Dblink = run.dblink
        self.clusters: Clusters = run.clusters
        self.fault = plpy.execute(
            f"SELECT coalesce(current_setting({quote_literal(FAULT_SETTING)}, true), '') AS f"
        )[0]["f"]
        self.started = time.monotonic()
        self.admin = ""  # a session on the admin database: each statement commits at once
        self.host = ""  # the host transaction holding the SHARE locks
        self.promotion_id = 0

    def say(self, text: str) -> None:
        self.plpy.notice(f"promote_tenant: {text}")

    def fault_after(self, step: str) -> None:
        """The test hook (FAULT_SETTING): fail, or wait for the test, after ``step``."""
        if self.fault == step:
            raise AdmmgtError(
                f"promote_tenant: stopped after step {step!r} by the setting {FAULT_SETTING} "
                "(a test hook)",
                hint=f"RESET {FAULT_SETTING};",
            )
        if self.fault == f"{step}:wait":
            self.say(f"waiting after step {step!r} ({FAULT_SETTING})")
            self.plpy.execute(
                f"SELECT pg_catalog.pg_advisory_xact_lock({LOCK_CLASS}, {FAULT_LOCK})"
            )

    def record(self, tenant: Tenant, cluster: str, outcome: Outcome) -> None:
        elapsed = (time.monotonic() - self.started) * 1000.0
        self.run.recorder.target(tenant.database, cluster, outcome, elapsed)

    def maintenance(self, cluster: str) -> str:
        return self.dblink.connect(
            self.clusters.conninfo(cluster, self.clusters.maintenance_db(cluster))
        )

    def marker(self, promotion_id: int) -> str:
        return f"admmgt promotion {int(promotion_id)}"

    def work_name(self, tenant: Tenant, promotion_id: int) -> str:
        """The new database's name until it is verified: its own to this
        promotion, so that an interruption right after CREATE DATABASE (before
        the marker comment) still leaves a database the undo knows."""
        return fit_name(tenant.database, len("_promoting_") + 19) + f"_promoting_{promotion_id}"

    def new_db(self, plan: Plan) -> str:
        """A session on the new database, under its work name."""
        name = self.work_name(plan.tenant, self.promotion_id)
        return self.dblink.connect(self.clusters.conninfo(plan.to_cluster, name))

    def state_of(self, promotion_id: int) -> str | None:
        conn = self.dblink.connect(self.clusters.admin_conninfo())
        try:
            rows = self.dblink.query(
                conn,
                f"SELECT state FROM admmgt.promotions WHERE id = {int(promotion_id)}",
                "state text",
            )
        finally:
            self.dblink.disconnect(conn)
        return str(rows[0]["state"]) if rows else None

    def rename(self, tenant: Tenant, promotion_id: int) -> str:
        """Step 8: the old schema renamed in the locking transaction, committed;
        the promotion done. Returns the new name."""
        kept = str(
            self.dblink.query(
                self.admin,
                f"SELECT kept_as FROM admmgt.promotions WHERE id = {int(promotion_id)}",
                "kept_as text",
            )[0]["kept_as"]
        )
        try:
            rename = f"ALTER SCHEMA {quote_ident(tenant.database)} RENAME TO {quote_ident(kept)}"
            if self.host:
                self.dblink.query(self.host, rename)
                self.dblink.query(self.host, "COMMIT")
            else:
                conn = self.dblink.connect(
                    self.clusters.conninfo(tenant.cluster, tenant.place.database)
                )
                try:
                    exists = self.dblink.query(
                        conn,
                        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = "
                        f"{quote_literal(tenant.database)}) AS e",
                        "e boolean",
                    )[0]["e"]
                    if exists:
                        self.dblink.query(conn, rename)
                finally:
                    self.dblink.disconnect(conn)
        except RemoteError as exc:
            raise AdmmgtError(
                f'promote_tenant: "{tenant.database}" is promoted (the registry names its new '
                f"database), but renaming its old schema to {kept} failed ({exc.describe()})",
                hint=f"CALL admmgt.promote_tenant({quote_literal(tenant.database)}); again "
                "renames it.",
            ) from None
        self.dblink.query(
            self.admin,
            "UPDATE admmgt.promotions SET state = 'done', finished_at = clock_timestamp(),"
            f" message = {quote_literal('old schema kept as ' + kept)}"
            f" WHERE id = {int(promotion_id)}",
        )
        return kept

    # ------------------------------------------------------ interruptions

    def unfinished(self, tenant_id: int) -> dict[str, Any] | None:
        rows = self.plpy.execute(
            "SELECT id, dbname, from_cluster, from_host, to_cluster, state, grants::text AS g"
            " FROM admmgt.promotions WHERE state IN ('started', 'switched')"
            f" AND tenant_id = {int(tenant_id)}"
        )
        return dict(rows[0]) if rows else None

    def finish_switched(self, unfinished: dict[str, Any]) -> None:
        """A promotion that died after the switch: only the rename is left."""
        row = self.plpy.execute(
            f"{TENANT_SELECT} WHERE v.id = (SELECT tenant_id FROM "
            f"admmgt.promotions WHERE id = {int(unfinished['id'])})"
        )[0]
        old = Tenant(
            int(row["id"]),
            row["dbname"],
            unfinished["from_cluster"],
            row["scriptversion"],
            SCHEMA_MODE,
            unfinished["from_host"],
        )
        kept = self.rename(old, int(unfinished["id"]))
        message = (
            f'promotion {unfinished["id"]} of "{old.label}" was interrupted after the registry '
            f"switched; its old schema is now kept as {kept}"
        )
        self.record(old, unfinished["to_cluster"], Outcome("ok", message))
        self.say(message)
        self.run.end()

    def undo_unfinished(self, unfinished: dict[str, Any]) -> None:
        row = self.plpy.execute(
            f"{TENANT_SELECT} WHERE v.id = (SELECT tenant_id FROM "
            f"admmgt.promotions WHERE id = {int(unfinished['id'])})"
        )[0]
        tenant = Tenant.of(row)
        message = f"promotion {unfinished['id']} was interrupted before the registry switched"
        undone = self.undo(
            tenant,
            unfinished["to_cluster"],
            int(unfinished["id"]),
            json.loads(unfinished["g"]),
            message,
        )
        self.record(tenant, unfinished["to_cluster"], Outcome("ok", f"{message}; {undone}"))
        self.say(f"{message}; {undone}")

    def undo(
        self,
        tenant: Tenant,
        to_cluster: str,
        promotion_id: int,
        grants: list[dict[str, Any]],
        message: str,
    ) -> str:
        """Put everything back before the switch; say what was undone. If that
        fails too, the promotion stays started for the next call."""
        if self.host:
            self.dblink.disconnect(self.host)  # its transaction (the locks) rolls back
            self.host = ""
        done: list[str] = []
        try:
            conn = self.maintenance(to_cluster)
            work = self.work_name(tenant, promotion_id)
            try:
                # Under its work name it is this promotion's whatever its
                # comment; under the tenant's name only with the marker.
                found = self.dblink.query(
                    conn,
                    "SELECT datname AS d FROM pg_catalog.pg_database"
                    f" WHERE datname = {quote_literal(work)} OR (datname = "
                    f"{quote_literal(tenant.database)} AND shobj_description(oid, 'pg_database')"
                    f" = {quote_literal(self.marker(promotion_id))})",
                    "d text",
                )
                for row in found:
                    self.dblink.query(conn, f"DROP DATABASE {quote_ident(row['d'])} WITH (FORCE)")
                    done.append(f'database "{row["d"]}" dropped')
            finally:
                self.dblink.disconnect(conn)
            restore = grant_statements(tenant.database, grants, revoke=False)
            if restore:
                conn = self.dblink.connect(
                    self.clusters.conninfo(tenant.cluster, tenant.place.database)
                )
                try:
                    self.dblink.query(conn, ";\n".join(restore))
                finally:
                    self.dblink.disconnect(conn)
                done.append("write privileges granted back")
            self.dblink.query(
                self.admin,
                "UPDATE admmgt.promotions SET state = 'aborted', finished_at = clock_timestamp(),"
                f" message = {quote_literal(message)} WHERE id = {int(promotion_id)}"
                " AND state = 'started'",
            )
        except (AdmmgtError, RemoteError) as exc:
            why = exc.message if isinstance(exc, AdmmgtError) else exc.describe()
            return (
                f"undoing it failed too ({why}); the registry still names the schema tenant; "
                f"CALL admmgt.promote_tenant({quote_literal(tenant.database)}, t_abort => true) "
                "to finish undoing it"
            )
        return (
            "undone (" + (", ".join(done) or "nothing had changed") + f'): "{tenant.label}" is '
            "a schema tenant as before"
        )
