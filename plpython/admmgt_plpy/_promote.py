"""Promotion of a schema tenant into a database of its own: promote_tenant.

The order of operations (docs/design/schema-tenants.md, "Promotion"):

1. Preflight, nothing changed yet: the tenant is a created schema tenant, its
   history has exactly the database template's scripts, its tables and
   columns are the template's, no database of its name exists, postgres_fdw
   is available. The operation locks of migrations, maintenance, lifecycle,
   sync and create_database are held for the whole call.
2. Record an ``admmgt.promotions`` row (state ``started``, the grants the
   write block will revoke), committed before anything changes.
3. Create the database from the template (``CREATE DATABASE ... TEMPLATE``,
   ``CONNECT`` revoked from ``PUBLIC``, marked with the promotion's id) under
   a work name of its own (``<name>_promoting_<id>``), and make its
   partitions the tenant's (all empty).
4. Block writes: revoke ``INSERT, UPDATE, DELETE, TRUNCATE`` on the schema's
   tables and ``USAGE, UPDATE`` on its sequences from every role but the
   owner (committed); then, in a host transaction held to the end, ``LOCK
   TABLE ... IN SHARE MODE`` every table of the schema, with
   ``lock_timeout`` and retries.
5. Copy, in the new database, in one transaction: a postgres_fdw server for
   the host, one foreign table per leaf table whose columns are the new
   table's, ``INSERT ... OVERRIDING SYSTEM VALUE`` under
   ``session_replication_role = replica``, the history, every sequence and
   identity set to the source's value, the grants; the scratch objects are
   dropped before the commit (a host reached with a password is refused
   by the preflight: the mapping would write it into the new database).
6. Verify: per table, count and an order-independent checksum on both sides
   (the same output settings), the history included; then the database takes
   the tenant's name.
7. Switch the registry row to a database tenant (and the promotion to
   ``switched``) in one admin statement: the single commit point.
8. Rename the old schema to ``<schema>_promoted_<id>`` in the held host
   transaction and commit it (queued writers then fail: the relation is
   gone); the promotion is ``done``.

A failure before 7 undoes what was done (the new database dropped, the grants
restored, the promotion ``aborted``): the tenant is where it was. A call that
dies there leaves the promotion ``started``; the next call undoes it first
(``t_abort => true``: only that). After 7, the next call only renames.
"""

from __future__ import annotations

import json
import random
import time

from admmgt_plpy import _history
from admmgt_plpy._conninfo import parse_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._fleetrun import fleet_run
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._promote_base import OPERATION, PromotionBase
from admmgt_plpy._promote_preflight import Plan, preflight
from admmgt_plpy._promote_sql import (
    HISTORY_TABLE,
    SAME_TEXT,
    SAME_TEXT_COLUMNS,
    WRITES,
    Catalog,
    fit_name,
    foreign_table,
    grant_statements,
    partition_statements,
    table_sums,
)
from admmgt_plpy._provision import tenant_marker
from admmgt_plpy._registry import Tenant, registered
from admmgt_plpy._remote import Outcome, RemoteError
from admmgt_plpy._transient import LOCK_STATES
from admmgt_plpy._types import Plpy


def promote_tenant(plpy: Plpy, *, dbname: str, cluster: str | None, abort: bool) -> None:
    """``CALL admmgt.promote_tenant(dbname [, t_cluster] [, t_abort])``: see the module."""
    with fleet_run(
        plpy,
        OPERATION,
        lock="migrations",
        lock_name="a migration (applyScripts, replayScripts, rollbackScript or promote_tenant)",
        locks=(
            ("maintenance", "applyMaintenance"),
            ("lifecycle", "lifecycleMgt"),
            ("sync", "refresh_stored_procedures / refresh_views"),
            ("create_database", "create_database / drop_database"),
        ),
    ) as run:
        Promotion(plpy, run).call(dbname, cluster, abort)


class Promotion(PromotionBase):
    """One call of promote_tenant (one tenant), step by step."""

    # ------------------------------------------------------------ the call

    def call(self, dbname: str, cluster: str | None, abort: bool) -> None:
        row = registered(self.plpy, dbname)
        self.admin = self.dblink.connect(self.clusters.admin_conninfo())
        try:
            unfinished = self.unfinished(int(row["id"]))
            if unfinished is not None:
                self.run.start({"dbname": dbname, "after": unfinished["state"], "abort": abort})
                if unfinished["state"] == "switched":
                    self.finish_switched(unfinished)
                    return
                self.undo_unfinished(unfinished)
                if abort:
                    self.run.end()
                    return
            elif abort:
                self.run.nothing_to_do(
                    f'promote_tenant: no promotion of "{dbname}" is unfinished; nothing to abort'
                )
                return
            plan = preflight(self.plpy, self.dblink, self.clusters, int(row["id"]), cluster)
            if unfinished is None:
                self.run.start({"dbname": dbname, "cluster": plan.to_cluster})
            self._promote(plan)
        finally:
            # Only this call's own sessions: the run's recorder keeps its own
            # until the run is finished (a host transaction not committed by
            # now rolls back, releasing its locks).
            for conn in (self.host, self.admin):
                if conn:
                    self.dblink.disconnect(conn)
            self.host = self.admin = ""

    # -------------------------------------------------------- the promotion

    def _promote(self, plan: Plan) -> None:
        tenant = plan.tenant
        kept_prefix = fit_name(tenant.database, len("_promoted_") + 19)
        self.promotion_id = int(
            self.dblink.query(
                self.admin,
                "WITH n AS (SELECT nextval(pg_catalog.pg_get_serial_sequence("
                "'admmgt.promotions', 'id')) AS id)"
                " INSERT INTO admmgt.promotions (id, tenant_id, dbname, from_cluster, from_host,"
                " to_cluster, scriptversion, grants, kept_as, run_id)"
                f" SELECT n.id, {int(tenant.id)}, {quote_literal(tenant.database)},"
                f" {quote_literal(tenant.cluster)}, {quote_literal(tenant.place.database)},"
                f" {quote_literal(plan.to_cluster)},"
                f" {'NULL' if plan.version is None else int(plan.version)},"
                f" {quote_literal(json.dumps(plan.grants))}::jsonb,"
                f" {quote_literal(kept_prefix + '_promoted_')} || n.id, {self.run.run_id}"
                " FROM n RETURNING id",
                "id bigint",
            )[0]["id"]
        )
        self.say(
            f'promotion {self.promotion_id} of "{tenant.label}" to database "{tenant.database}" '
            f'on cluster "{plan.to_cluster}" recorded'
        )
        step = "record"
        try:
            self.fault_after(step)
            step = "create"
            self._create(plan)
            self.fault_after(step)
            step = "block"
            self._block(plan)
            self.fault_after(step)
            step = "copy"
            counts = self._copy(plan)
            self.fault_after(step)
            step = "verify"
            self._verify(plan, counts)
            self.fault_after(step)
            step = "name"
            self._name_database(plan)
        except (AdmmgtError, RemoteError) as exc:
            why = exc.message if isinstance(exc, AdmmgtError) else exc.describe()
            message = f'promotion of "{tenant.label}" failed at step {step}: {why}'
            undone = self.undo(
                plan.tenant, plan.to_cluster, self.promotion_id, plan.grants, message
            )
            self.record(tenant, plan.to_cluster, Outcome("failed", message))
            raise AdmmgtError(
                f"promote_tenant: {message}; {undone}",
                hint=exc.hint
                if isinstance(exc, AdmmgtError) and exc.hint
                else "Fix the cause and call promote_tenant again.",
            ) from None
        rows = sum(counts.values())
        self._switch(plan, len(counts), rows)
        self.fault_after("switch")
        kept = self.rename(tenant, self.promotion_id)
        message = (
            f'"{tenant.label}" is now database "{tenant.database}" on cluster '
            f'"{plan.to_cluster}" at script {plan.version}: {rows} rows in {len(counts)} tables '
            f"copied and verified; the old schema is kept as {kept}"
        )
        self.record(tenant, plan.to_cluster, Outcome("ok", message))
        self.say(message)
        self.run.end()

    def _create(self, plan: Plan) -> None:
        """Step 3: the database, from the template, with the tenant's partitions."""
        tenant = plan.tenant
        work = self.work_name(tenant, self.promotion_id)
        db = quote_ident(work)
        create = (
            f"CREATE DATABASE {db} TEMPLATE {quote_ident(plan.template.database)}"
            f" STRATEGY {self.settings.create_strategy}"
        )
        if self.settings.tenant_owner:
            create += f" OWNER {quote_ident(self.settings.tenant_owner)}"
        conn = self.maintenance(plan.to_cluster)
        try:
            deadline = time.monotonic() + self.settings.template_busy_timeout_s
            delay = max(self.settings.retry_backoff_ms, 50) / 1000.0
            while True:
                try:
                    self.dblink.query(conn, create)
                    break
                except RemoteError as exc:
                    if exc.sqlstate == "55006" and time.monotonic() < deadline:
                        time.sleep(delay * random.uniform(0.5, 1.5))
                        delay = min(delay * 2, 5.0)
                        continue
                    raise
            self.dblink.query(
                conn,
                f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;"
                f" COMMENT ON DATABASE {db} IS {quote_literal(self.marker(self.promotion_id))}",
            )
        finally:
            self.dblink.disconnect(conn)
        new = self.new_db(plan)
        try:
            target = Catalog.read(self.dblink, new, plan.app_schema)
            statements = partition_statements(plan.source, target, plan.app_schema)
            self.dblink.query(new, ";\n".join(statements))
        finally:
            self.dblink.disconnect(new)
        self.say(f'created database "{work}" from "{plan.template.database}"')

    def _block(self, plan: Plan) -> None:
        """Step 4: writes revoked (committed), then the SHARE locks, held."""
        tenant, schema = plan.tenant, plan.tenant.database
        host_info = self.clusters.conninfo(tenant.cluster, tenant.place.database)
        revokes = grant_statements(schema, plan.grants, revoke=True)
        if revokes:
            conn = self.dblink.connect(host_info)
            try:
                self.dblink.query(conn, ";\n".join(revokes))
                left = [
                    g
                    for g in Catalog.read(self.dblink, conn, schema).grants
                    if g[3] in WRITES.get(g[1], ())
                ]
            finally:
                self.dblink.disconnect(conn)
            if left:
                who = ", ".join(sorted({f"{g[3]} on {g[0]} to {g[2]}" for g in left}))
                raise AdmmgtError(
                    f"the write block could not revoke {who} (granted by another grantor)",
                    hint="REVOKE them yourself (or GRANT them as the owner), then call again.",
                )
        self.host = self.dblink.connect(host_info)
        self.dblink.query(self.host, SAME_TEXT, SAME_TEXT_COLUMNS)
        tables = sorted(
            n
            for n, r in plan.source.relations.items()
            if r["kind"] in ("r", "p") and not r["partition"]
        )
        lock = f"LOCK TABLE {', '.join(qualified(schema, n) for n in tables)} IN SHARE MODE"
        attempts = 0
        delay = max(self.settings.retry_backoff_ms, 50) / 1000.0
        while True:
            attempts += 1
            self.dblink.query(self.host, "BEGIN")
            try:
                self.dblink.query(
                    self.host,
                    f"SET LOCAL lock_timeout = {int(self.settings.lock_timeout_ms)}",
                )
                self.dblink.query(self.host, lock)
                break
            except RemoteError as exc:
                self.dblink.query(self.host, "ROLLBACK")
                if exc.sqlstate not in LOCK_STATES:
                    raise
                if attempts > self.settings.lock_retries:
                    raise AdmmgtError(
                        f'could not lock the {len(tables)} tables of schema "{schema}" within '
                        f"lock_timeout ({self.settings.lock_timeout_ms} ms) after {attempts} "
                        f"tries ({exc.sqlstate} {exc.message}): a transaction holds a lock on "
                        "one of them",
                        hint="Find it in pg_locks / pg_stat_activity of the host database, let "
                        "it finish, then call again.",
                    ) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
        self.say(
            f'writes to "{tenant.label}" blocked: {len(revokes)} privilege(s) revoked, '
            f"{len(tables)} table(s) locked in SHARE mode"
        )

    def _copy(self, plan: Plan) -> dict[str, int]:
        """Step 5: every leaf table, the history and the sequences, in one
        transaction of the new database; rows copied per table."""
        tenant, app, schema = plan.tenant, plan.app_schema, plan.tenant.database
        scratch = f"admmgt_promote_{self.promotion_id}"
        server = quote_ident(scratch)
        values = self._sequence_values(plan)
        new = self.new_db(plan)
        counts: dict[str, int] = {}
        try:
            target = Catalog.read(self.dblink, new, app)
            missing = [n for n in plan.source.leaves() if n not in target.relations]
            if missing:
                raise AdmmgtError(
                    f"the new database lacks table(s) {', '.join(missing)} of the tenant"
                )
            self.dblink.query(new, _history.ENSURE_TABLE)
            history_columns = self._history_columns(new)
            has_fdw = self.dblink.query(
                new,
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension"
                " WHERE extname = 'postgres_fdw') AS has",
                "has boolean",
            )[0]["has"]
            server_options, mapping_options = self._fdw_options(tenant)
            q = self.dblink.query
            q(new, "BEGIN")
            q(new, "SET LOCAL session_replication_role = replica")
            q(new, f"CREATE SCHEMA {server}")
            if not has_fdw:
                q(new, f"CREATE EXTENSION postgres_fdw SCHEMA {server}")
            q(
                new,
                f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                f"({server_options})",
            )
            q(
                new,
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS ({mapping_options})",
            )
            for i, leaf in enumerate(plan.source.leaves()):
                columns = target.relations[leaf]["copied"]
                foreign = f"{server}.{quote_ident(f'f{i}')}"
                q(new, foreign_table(foreign, server, columns, schema, leaf))
                names = ", ".join(quote_ident(c) for c, _ in columns)
                status = q(
                    new,
                    f"INSERT INTO {qualified(app, leaf)} ({names}) OVERRIDING SYSTEM VALUE"
                    f" SELECT {names} FROM {foreign}",
                )[0]["status"]
                counts[leaf] = int(status.split()[-1])
            foreign = f"{server}.history"
            q(
                new,
                foreign_table(foreign, server, history_columns, schema, _history.SCHEMA_HISTORY),
            )
            names = ", ".join(quote_ident(c) for c, _ in history_columns)
            q(new, f"DELETE FROM {HISTORY_TABLE}")
            status = q(
                new,
                f"INSERT INTO {HISTORY_TABLE} ({names}) OVERRIDING SYSTEM VALUE"
                f" SELECT {names} FROM {foreign}",
            )[0]["status"]
            counts[HISTORY_TABLE] = int(status.split()[-1])
            setvals = self._setvals(plan, target, values)
            if setvals:
                q(
                    new,
                    "SELECT " + ", ".join(setvals),
                    ", ".join(f"s{i} bigint" for i in range(len(setvals))),
                )
            existing = {
                r["n"] for r in q(new, "SELECT rolname AS n FROM pg_catalog.pg_roles", "n text")
            }
            for statement in self._new_grants(plan, target, existing):
                q(new, statement)
            q(new, f"DROP SERVER {server} CASCADE")
            if not has_fdw:
                q(new, "DROP EXTENSION postgres_fdw")
            q(new, f"DROP SCHEMA {server} CASCADE")
            q(new, "COMMIT")
        finally:
            self.dblink.disconnect(new)
        self.say(
            f"copied {sum(counts.values())} rows in {len(counts)} tables and set "
            f"{len(values)} sequence(s)"
        )
        return counts

    def _history_columns(self, conn: str) -> list[tuple[str, str]]:
        rows = self.dblink.query(
            conn,
            "SELECT a.attname AS n, pg_catalog.format_type(a.atttypid, a.atttypmod) AS t"
            " FROM pg_catalog.pg_attribute AS a"
            f" WHERE a.attrelid = {quote_literal(HISTORY_TABLE)}::regclass"
            " AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            "n text, t text",
        )
        return [(r["n"], r["t"]) for r in rows]

    def _fdw_options(self, tenant: Tenant) -> tuple[str, str]:
        """The postgres_fdw server's options and its user mapping's, from the
        connection string admmgt uses for the host (never a password: the
        preflight refuses a host cluster reached with one)."""
        parts = dict(
            parse_options(
                tenant.cluster, self.clusters.conninfo(tenant.cluster, tenant.place.database)
            )
        )
        mapping: dict[str, str] = {
            k: parts.pop(k) for k in ("user", "password", "sslpassword") if k in parts
        }
        parts["application_name"] = "admmgt promote_tenant"
        parts.pop("options", None)
        parts["options"] = "-c client_min_messages=warning"

        def options(d: dict[str, str]) -> str:
            return ", ".join(f"{quote_ident(k)} {quote_literal(v)}" for k, v in d.items())

        return options(parts), options(mapping)

    def _sequence_values(self, plan: Plan) -> dict[str, tuple[int, bool]]:
        """Each sequence of the tenant's schema (and its history's identity):
        (last_value, is_called), read under the locks."""
        schema = plan.tenant.database
        names = sorted(plan.source.sequences())
        if not names:
            return {}
        union = " UNION ALL ".join(
            f"SELECT {quote_literal(n)} AS n, last_value::text AS v, is_called AS c"
            f" FROM {qualified(schema, n)}"
            for n in names
        )
        rows = self.dblink.query(self.host, union, "n text, v text, c boolean")
        return {r["n"]: (int(r["v"]), bool(r["c"])) for r in rows}

    def _setvals(
        self, plan: Plan, target: Catalog, values: dict[str, tuple[int, bool]]
    ) -> list[str]:
        """setval() of each sequence of the new database, from its source:
        the one owned by the same column, or (free) of the same name."""
        source = plan.source.sequences()
        by_owner = {tuple(r["owned_by"]): n for n, r in source.items() if r["owned_by"] is not None}
        # The history's identity: admmgt.script_history here, admmgt_history there.
        setvals: list[str] = []
        history_seq = by_owner.get((_history.SCHEMA_HISTORY, "id"))
        if history_seq is not None and history_seq in values:
            v, c = values[history_seq]
            setvals.append(
                "pg_catalog.setval(pg_catalog.pg_get_serial_sequence("
                f"{quote_literal(HISTORY_TABLE)}, 'id'), {v}, {'true' if c else 'false'})"
            )
        for n, r in sorted(target.sequences().items()):
            src = by_owner.get(tuple(r["owned_by"])) if r["owned_by"] is not None else n
            if src is None or src not in values:
                raise AdmmgtError(
                    f"sequence {n} of the new database has no counterpart in the tenant's schema"
                )
            v, c = values[src]
            setvals.append(
                f"pg_catalog.setval({quote_literal(qualified(plan.app_schema, n))}::regclass,"
                f" {v}, {'true' if c else 'false'})"
            )
        return setvals

    def _new_grants(self, plan: Plan, target: Catalog, existing: set[str]) -> list[str]:
        """The privileges other roles held on the tenant's schema, tables and
        sequences, granted on the new database's (to the roles that exist on
        its cluster: roles are cluster-wide)."""
        roles = {g["role"] for g in plan.grants} | {g[0] for g in plan.source.schema_grants}
        roles = {r for r in roles if r in existing}
        work = self.work_name(plan.tenant, self.promotion_id)
        statements = [
            f"GRANT CONNECT ON DATABASE {quote_ident(work)} TO {quote_ident(r)}"
            for r in sorted(roles)
        ]
        for role, privilege, grantable in plan.source.schema_grants:
            if role in roles and privilege == "USAGE":
                statements.append(
                    f"GRANT USAGE ON SCHEMA {quote_ident(plan.app_schema)} TO {quote_ident(role)}"
                    + (" WITH GRANT OPTION" if grantable else "")
                )
        known = [g for g in plan.grants if g["on"] in target.relations and g["role"] in roles]
        statements += grant_statements(plan.app_schema, known, revoke=False, only_writes=False)
        return statements

    def _verify(self, plan: Plan, counts: dict[str, int]) -> None:
        """Step 6: count and checksum of every table on both sides."""
        schema, app = plan.tenant.database, plan.app_schema
        new = self.new_db(plan)
        try:
            self.dblink.query(new, SAME_TEXT, SAME_TEXT_COLUMNS)
            target = Catalog.read(self.dblink, new, app)
            tables = [
                (leaf, sorted(target.relations[leaf]["columns"])) for leaf in plan.source.leaves()
            ]
            history = sorted(c for c, _ in self._history_columns(new))
            there = table_sums(
                self.dblink,
                new,
                [(qualified(app, t), c) for t, c in tables] + [(HISTORY_TABLE, history)],
            )
        finally:
            self.dblink.disconnect(new)
        here = table_sums(
            self.dblink,
            self.host,
            [(qualified(schema, t), c) for t, c in tables]
            + [(_history.history_table(schema), history)],
        )
        names = [t for t, _ in tables] + [HISTORY_TABLE]
        problems = []
        for name, a, b in zip(names, here, there, strict=True):
            if a != b:
                problems.append(
                    f"{name}: {a[0]} rows in the schema, {b[0]} in the new database"
                    + ("" if a[0] != b[0] else " (same count, different contents)")
                )
        if problems:
            raise AdmmgtError(
                f"the copy does not match ({'; '.join(problems)})",
                hint="A trigger or rule of the template database that changes rows on INSERT "
                "(ENABLE ALWAYS), or a column default, can cause this; fix it and call again.",
            )
        self.say(f"verified: {len(names)} tables have the same counts and checksums on both sides")

    def _name_database(self, plan: Plan) -> None:
        """The verified database takes the tenant's name (our sessions on it
        are closed; PUBLIC may not connect)."""
        work, name = self.work_name(plan.tenant, self.promotion_id), plan.tenant.database
        conn = self.maintenance(plan.to_cluster)
        try:
            self.dblink.query(
                conn, f"ALTER DATABASE {quote_ident(work)} RENAME TO {quote_ident(name)}"
            )
        finally:
            self.dblink.disconnect(conn)

    def _switch(self, plan: Plan, tables: int, rows: int) -> None:
        """Step 7, the commit point: the registry row becomes a database tenant."""
        tenant = plan.tenant
        version = "scriptversion" if plan.version is None else str(int(plan.version))
        sql = (
            "WITH u AS (UPDATE admmgt.vendor_db_settings SET separatedb = 1,"
            f" cluster_name = {quote_literal(plan.to_cluster)}, scriptversion = {version},"
            " last_error = NULL, last_error_at = NULL, modifiedon = now()"
            f" WHERE id = {int(tenant.id)} AND separatedb = 0 AND NOT deleted RETURNING id)"
            " UPDATE admmgt.promotions SET state = 'switched', switched_at = clock_timestamp(),"
            f" tables = {int(tables)}, rows_copied = {int(rows)}"
            f" WHERE id = {self.promotion_id} AND state = 'started' AND EXISTS (SELECT FROM u)"
            " RETURNING id"
        )
        try:
            done = self.dblink.query(self.admin, sql, "id bigint")
        except RemoteError as exc:
            # The commit may have happened before the connection went: ask again.
            state = self.state_of(self.promotion_id)
            if state != "switched":
                message = f"switching the registry failed ({exc.describe()})"
                undone = self.undo(tenant, plan.to_cluster, self.promotion_id, plan.grants, message)
                raise AdmmgtError(f"promote_tenant: {message}; {undone}") from None
            done = [{"id": self.promotion_id}]
        if not done:
            message = (
                "the registry row changed during the promotion (deleted, or no longer a "
                "schema tenant)"
            )
            undone = self.undo(tenant, plan.to_cluster, self.promotion_id, plan.grants, message)
            raise AdmmgtError(f"promote_tenant: {message}; {undone}")
        try:
            conn = self.maintenance(plan.to_cluster)
            self.dblink.query(
                conn,
                f"COMMENT ON DATABASE {quote_ident(tenant.database)} IS "
                f"{quote_literal(tenant_marker(tenant))}",
            )
            self.dblink.disconnect(conn)
        except RemoteError:
            pass  # only a marker; the registry is what counts
