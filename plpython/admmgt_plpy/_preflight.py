"""Pre-flight checks: what a run would do, tried before anything is changed.

Two parts, both read-only in effect:

- the hard dry run (``applyScripts(dry_run => true, t_execute => true)``):
  every ready script the template lacks is executed in the template, in id
  order, inside ONE transaction that is always rolled back. It takes the locks
  the real run takes (ACCESS EXCLUSIVE on altered tables, for lock_timeout at
  most) and advances sequences the steps use (PostgreSQL never rolls those
  back). Steps declared non-transactional (CREATE INDEX CONCURRENTLY) cannot
  run inside a transaction and are listed as not rehearsed.
- the data a rollback would drop: for each generated inverse step that drops a
  table or a column, a count of the rows at stake (a table's rows; a column's
  non-null values), per database. Hand-written rollback steps are raw SQL and
  are listed, not analysed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from admmgt_plpy import _history
from admmgt_plpy._compile import Step
from admmgt_plpy._names import qualified, quote_literal
from admmgt_plpy._remote import Connect, Job, Outcome, Run
from admmgt_plpy._settings import Settings
from admmgt_plpy._transaction import TransactionFailed, in_transaction

# ------------------------------------------------------------ hard dry run


def rehearse(
    conninfo: str,
    scripts: list[Any],
    settings: Settings,
    database: str,
    table: str = _history.DATABASE_HISTORY,
) -> Job:
    """Job: run ``scripts`` (those the database lacks) in one transaction, then roll back.

    Outcome ``ok`` lists what ran; ``failed`` names the script and the step.
    ``scripts`` are ``_scripts.Script`` objects in id order; ``table`` is the
    place's history (a template schema's is its own).
    """
    conn = yield Connect(conninfo)
    has = yield Run(conn, _history.has_table_sql(table), "has boolean")
    have: set[int] = set()
    if has[0]["has"]:
        rows = yield Run(conn, _history.state_sql(table), _history.STATE_COLUMNS)
        have = {r["script_id"] for r in rows if r["action"] in ("apply", "baseline")}
    todo = [s for s in scripts if s.id not in have]
    where: list[Any] = [None, 0, None]  # script, step number, step
    report: list[str] = []

    def body() -> Any:
        for script in todo:
            where[0], where[1], where[2] = script, 0, None
            started = time.monotonic()
            ran, skipped = 0, []
            for number, step in enumerate(script.compiled.steps, 1):
                if not step.transactional:
                    skipped.append(f"step {number} ({step.kind} {step.target})")
                    continue
                where[1], where[2] = number, step
                yield Run(conn, step.sql)
                ran += 1
            line = (
                f"script {script.id}: {ran} statement(s) ran in "
                f"{(time.monotonic() - started) * 1000:.0f} ms"
            )
            if skipped:
                line += "; not rehearsed (declared outside the transaction): " + ", ".join(skipped)
            report.append(line)

    if not todo:
        return Outcome("noop", f'the template "{database}" already has every ready script')
    try:
        # No retries: a dry run reports a lock instead of waiting for it.
        yield from in_transaction(conn, _no_retries(settings), body, commit=False, utc=True)
    except TransactionFailed as failed:
        error = failed.error
        script, number, step = where
        at = f"step {number} ({step.kind} {step.target})" if step else "its start"
        outcome = Outcome.failed(
            error,
            f'script {script.id} failed on the template "{database}" at {at} '
            f"({error.sqlstate} {error.message}); the transaction was rolled back",
        )
        outcome.details = {"script": script.id, "step": number}
        outcome.private = {"report": report}
        return outcome
    return Outcome(
        "ok",
        "; ".join(report),
        details={"scripts": [s.id for s in todo]},
        private={"report": report},
    )


def _no_retries(settings: Settings) -> Settings:
    return replace(settings, lock_retries=0)


# ------------------------------------------------------ data a rollback drops


@dataclass(frozen=True)
class AtStake:
    """Data one undo step would drop: a table's rows, or a column's non-null values."""

    step: int  # 1-based, in the undo order
    statement: str
    what: str  # table schema.name, or schema.name.column
    query: str  # returns one row: n bigint (0 when the object is gone already)


def data_at_stake(undo: Iterable[Step]) -> list[AtStake]:
    """The undo steps that drop data, each with a query counting it. Pure."""
    found = []
    for number, step in enumerate(undo, 1):
        if step.kind not in ("undo_create_table", "undo_create_partition", "undo_add_column"):
            continue
        schema, name = step.target.split(".", 1)
        table = qualified(schema, name)
        exists = f"to_regclass({quote_literal(table)}) IS NOT NULL"
        if step.kind == "undo_add_column" and step.name:
            column = step.name  # quoted by the compiler
            has_column = (
                "EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass("
                f"{quote_literal(table)}) AND attname = {quote_literal(_unquote(column))}"
                " AND NOT attisdropped)"
            )
            count = _count(f"SELECT count(*) AS n FROM {table} WHERE {column} IS NOT NULL")
            query = f"SELECT CASE WHEN {has_column} THEN {count} ELSE 0 END AS n"
            what = f"{schema}.{name}.{_unquote(column)}"
        else:
            count = _count(f"SELECT count(*) AS n FROM {table}")
            query = f"SELECT CASE WHEN {exists} THEN {count} ELSE 0 END AS n"
            what = f"{schema}.{name}"
        found.append(AtStake(number, step.sql, what, query))
    return found


def _count(sql: str) -> str:
    """An expression counting ``sql``'s rows with row-level security off.

    A tenant-scoped table forces row-level security on its owner: a role that
    owns it and is neither a superuser nor BYPASSRLS would count only the rows
    of the tenant context (none) and drop a populated table. ``row_security``
    is set off (transaction-local) before the count is planned, so such a role
    gets an error instead of a filtered 0, and the rollback refuses ("could not
    count"). Inside a rollback's transaction (``guards``) it stays off until
    the end of that transaction, which only drops.
    """
    return (
        "(xpath('/row/n/text()', query_to_xml(CASE WHEN pg_catalog.set_config("
        f"'row_security', 'off', true) = 'off' THEN {quote_literal(sql)} END"
        ", false, true, '')))[1]::text::bigint"
    )


def _unquote(identifier: str) -> str:
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def count_at_stake(conninfo: str, database: str, stakes: list[AtStake]) -> Job:
    """Job: {what: rows} in one database, read-only."""
    conn = yield Connect(conninfo)
    return (yield from counts_on(conn, database, stakes))


def counts_on(conn: str, database: str, stakes: list[AtStake]) -> Job:
    """Job fragment: {what: rows} over an open connection (``database``: how
    the outcome names the place), read-only."""
    counts: dict[str, int] = {}
    for stake in stakes:
        rows = yield Run(conn, stake.query, "n bigint")
        counts[stake.what] = int(rows[0]["n"] or 0)
    held = {k: v for k, v in counts.items() if v}
    return Outcome(
        "ok" if held else "noop",
        ", ".join(f"{k}: {v} row(s)" for k, v in held.items()) or "no rows at stake",
        details={"counts": counts, "database": database},
    )


def guards(stakes: list[AtStake], script_id: int) -> tuple[Step, ...]:
    """Steps that fail the database's rollback transaction if rows appeared since
    they were counted (run first, inside the same transaction as the drops)."""
    steps = []
    for stake in stakes:
        message = quote_literal(
            f"{stake.what} holds rows written after rollbackScript({script_id}) counted none; "
            "this database was not rolled back"
        )
        hint = quote_literal(
            f"SELECT * FROM admmgt.plan_rollback({script_id}); to drop them, "
            f"CALL admmgt.rollbackScript({script_id}, t_drop_data => true);"
        )
        body = (
            f"BEGIN IF ({stake.query}) > 0 THEN RAISE EXCEPTION USING ERRCODE = 'P0001', "
            f"MESSAGE = {message}, HINT = {hint}; END IF; END"
        )
        if "$admmgt$" in body:  # cannot happen with checked identifiers; never emit it
            raise ValueError(stake.what)
        steps.append(Step(f"DO $admmgt$ {body} $admmgt$", True, "guard", stake.what))
    return tuple(steps)
