"""Validate compiled scripts on the template's server before anything changes.

The compiler has already refused what it can see in the text (admmgt_plpy._names:
one balanced expression, no top-level comma, no subquery, names exactly as
given). Here the template's own server has its say, in one READ ONLY
transaction that the caller opened, with nothing executed:

1. data types parse as one type name (``%L::regtype``) and tablespaces exist;
2. no relation (and, for a table, no type) already has a name the script
   creates, on the template or in an earlier script of the same run:
   ``CREATE INDEX IF NOT EXISTS`` would skip it, ``CREATE TABLE`` would fail;
   nor has the child table a constraint of a foreign key's name;
3. every expression is PREPAREd -- parsed and analysed, never executed -- as
   exactly one expression of its kind, converted to its column's type, in a
   WHERE clause (so that PostgreSQL itself refuses aggregates, window
   functions and set-returning functions), against a stand-in row with the
   table's columns at that point of the script (``jsonb_to_recordset('[]')``
   with a column list: no table is needed, so a table the script creates
   works too). A default and a partition bound see no columns at all; an
   index column must be one of the stand-in's. A value that converts to
   its type only by an explicit cast is refused too (``_assignable``);
4. an index predicate must also use only IMMUTABLE functions. With
   ``constraint_exclusion = on`` the planner proves ``P AND NOT P`` false
   only from clauses free of mutable functions (the same
   ``contain_mutable_functions`` test after constant folding that CREATE
   INDEX applies), so ``EXPLAIN`` of that query is a dummy plan exactly when
   P is immutable. EXPLAIN plans and never executes.

Every problem of a script is collected, each naming the script, the metadata
table, the row and the field, and the script is refused as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from admmgt_plpy._compile import CompiledScript, Validation
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._remote import Dblink, RemoteError
from admmgt_plpy._transient import retryable

__all__ = ["READ_ONLY", "script_problems"]

READ_ONLY = "BEGIN READ ONLY"
_STATEMENT = "admmgt_validate"
_KIND = {
    "default": "a default",
    "using": "a USING expression",
    "predicate": "an index predicate",
    "value": "a partition bound",
    "column": "an index column",
}
_COLUMNS = """
SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = pg_catalog.to_regclass({relation}) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""
_TAKEN = """
SELECT (SELECT c.relkind::text FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = {schema} AND c.relname = {name}) AS relkind,
       EXISTS (SELECT FROM pg_catalog.pg_type AS t
               JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
               WHERE n.nspname = {schema} AND t.typname = {name}) AS is_type"""
_RELKINDS = {
    "r": "table",
    "p": "partitioned table",
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "v": "view",
    "m": "materialized view",
    "c": "composite type",
    "f": "foreign table",
    "t": "TOAST table",
}


class _Session:
    """One template connection inside a READ ONLY transaction."""

    def __init__(self, dblink: Dblink, conn: str) -> None:
        self.dblink = dblink
        self.conn = conn
        self.columns: dict[str, dict[str, str]] = {}

    def run(self, sql: str, columns: str = "status text") -> list[dict[str, object]]:
        """Rows of ``sql``; on an error, a new READ ONLY transaction, then the error."""
        try:
            return self.dblink.query(self.conn, sql, columns)
        except RemoteError as exc:
            if retryable(exc.sqlstate):
                # A lock or a lost connection is no problem of the script: the
                # caller keeps it ready (issue 21), so it must not become one here.
                raise TemplateBusy(exc) from None
            self.dblink.query(self.conn, "ROLLBACK")
            self.dblink.query(self.conn, READ_ONLY)
            raise

    def catalog_columns(self, target: str) -> dict[str, str]:
        if target not in self.columns:
            schema, _, table = target.partition(".")
            rows = self.run(
                _COLUMNS.format(relation=quote_literal(qualified(schema, table))),
                "name text, type text",
            )
            self.columns[target] = {str(r["name"]): str(r["type"]) for r in rows}
        return self.columns[target]


class TemplateBusy(Exception):
    """The template could not be checked now for a reason a re-run fixes."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(error.message)
        self.error = error


def script_problems(
    dblink: Dblink, conn: str, script: CompiledScript, earlier: Sequence[CompiledScript]
) -> list[str]:
    """Every problem the template's server finds with ``script``.

    ``earlier``: the scripts of this run before it that the template does not
    have yet; their tables and columns count as made, their names as taken.
    The connection is in a READ ONLY transaction, and is left in one.
    """
    session = _Session(dblink, conn)
    problems: list[str] = []
    failed_types: set[str] = set()
    for v in script.validations:
        try:
            problem = _check(session, v, earlier, failed_types)
        except RemoteError as exc:  # anything the checks did not expect still refuses
            problem = f"{v.what}: {v.text!r} was refused by the template's server: {exc.describe()}"
        if problem:
            problems.append(problem)
    return problems


def _check(
    session: _Session, v: Validation, earlier: Sequence[CompiledScript], failed_types: set[str]
) -> str | None:
    if v.kind == "datatype":
        problem = _datatype(session, v)
        if problem:
            failed_types.add(v.text)
        return problem
    if v.kind == "tablespace":
        return _tablespace(session, v)
    if v.kind in ("relation", "table"):
        return _name_taken(session, v, earlier)
    if v.kind == "constraint":
        return _constraint_taken(session, v)
    if v.kind in _KIND:
        return _expression(session, v, earlier, failed_types)
    return None


def _datatype(session: _Session, v: Validation) -> str | None:
    try:
        session.run(f"SELECT {quote_literal(v.text)}::regtype IS NOT NULL AS ok", "ok boolean")
    except RemoteError as exc:
        return f"{v.what}: data type {v.text!r}: {exc.message}"
    return None


def _tablespace(session: _Session, v: Validation) -> str | None:
    rows = session.run(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_tablespace WHERE spcname = "
        f"{quote_literal(v.text)}) AS ok",
        "ok boolean",
    )
    return None if rows and rows[0]["ok"] else f"{v.what}: tablespace {v.text!r} does not exist"


def _name_taken(session: _Session, v: Validation, earlier: Sequence[CompiledScript]) -> str | None:
    schema, name = v.target, v.text
    for other in earlier:
        if any(
            o.kind in ("relation", "table") and (o.target, o.text) == (schema, name)
            for o in other.validations
        ):
            return (
                f"{v.what}: {schema}.{name} is also created by script {other.script_id}, which "
                "runs first in this run; give the object another name"
            )
    rows = session.run(
        _TAKEN.format(schema=quote_literal(schema), name=quote_literal(name)),
        "relkind text, is_type boolean",
    )
    relkind = rows[0]["relkind"] if rows else None
    if relkind is not None:
        kind = _RELKINDS.get(str(relkind), "relation")
    elif v.kind == "table" and rows and rows[0]["is_type"]:
        kind = "type"
    else:
        return None
    return (
        f"{v.what}: {schema}.{name} already exists on the template (a {kind}), so the object "
        "would not be created under that name; give it another name, or drop the "
        f"{kind} on the template"
    )


def _constraint_taken(session: _Session, v: Validation) -> str | None:
    schema, _, table = v.target.partition(".")
    rows = session.run(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = "
        f"pg_catalog.to_regclass({quote_literal(qualified(schema, table))}) AND conname = "
        f"{quote_literal(v.text)}) AS taken",
        "taken boolean",
    )
    if rows and rows[0]["taken"]:
        return (
            f"{v.what}: table {v.target} already has a constraint {v.text} on the template; "
            "give the foreign key another constraintname"
        )
    return None


def _columns(session: _Session, v: Validation, earlier: Sequence[CompiledScript]) -> dict[str, str]:
    """The columns of ``v.target`` at ``v``'s point of the script: name -> type."""
    columns: dict[str, str | None] = dict(session.catalog_columns(v.target))
    for other in earlier:
        for target, name, datatype in other.columns:
            if target == v.target:
                columns[name] = datatype
    columns.update(v.columns)
    return {k: t for k, t in columns.items() if t is not None}


def _expression(
    session: _Session,
    v: Validation,
    earlier: Sequence[CompiledScript],
    failed_types: set[str],
) -> str | None:
    kind = _KIND[v.kind]
    columns = _columns(session, v, earlier)
    datatype = v.datatype or (columns.get(v.column) if v.column else None)
    if datatype in failed_types or any(t in failed_types for t in columns.values()):
        return None  # its type is reported already
    value = f"({v.text})" if datatype is None else f"(({v.text})::{datatype})"
    condition = f"{value} IS NULL" if v.kind != "predicate" else value
    table = v.target.partition(".")[2]
    if v.kind in ("default", "value"):
        source = ""  # a default may refer to no column
    elif columns:
        listed = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns.items())
        source = f" FROM pg_catalog.jsonb_to_recordset('[]') AS {quote_ident(table)}({listed})"
    else:
        source = f" FROM (SELECT) AS {quote_ident(table)}"
    query = f"SELECT 1{source} WHERE {condition}"
    try:
        session.run(f"PREPARE {_STATEMENT} AS {query}")
    except RemoteError as exc:
        message = exc.message.replace("in WHERE", f"in {kind}")
        if exc.sqlstate == "42703" and v.kind == "default":
            message += " (a default cannot refer to columns)"
        return (
            f"{v.what}: {v.text!r} is refused as {kind}"
            + (f" of type {datatype}" if datatype else "")
            + f" by the template's server: {exc.sqlstate} {message}; fix the expression"
        )
    session.run(f"DEALLOCATE {_STATEMENT}")
    if v.kind == "predicate":
        return _immutable(session, v, source, value)
    if datatype is not None and v.kind != "column":
        return _assignable(session, v, source, datatype, kind)
    return None


def _assignable(
    session: _Session, v: Validation, source: str, datatype: str, kind: str
) -> str | None:
    """A default or USING value must convert to its column's type without an
    explicit cast (PostgreSQL's assignment conversion). ``::`` in the first
    check allows more, so the value's type must also unite with the column's
    type (UNION, implicit casts only) unless the column's type is a string
    type, to which every value converts on assignment."""
    try:
        session.run(
            f"PREPARE {_STATEMENT} AS SELECT ({v.text}){source} UNION ALL SELECT NULL::{datatype}"
        )
    except RemoteError as exc:
        rows = session.run(
            "SELECT t.typcategory::text AS category FROM pg_catalog.pg_type AS t"
            f" WHERE t.oid = {quote_literal(datatype)}::regtype",
            "category text",
        )
        if exc.sqlstate == "42804" and rows and rows[0]["category"] == "S":
            return None
        message = exc.message.replace("UNION types", "types")
        return (
            f"{v.what}: {v.text!r} is refused as {kind} of type {datatype} by the template's "
            f"server: {exc.sqlstate} {message}; PostgreSQL converts it to the column's type "
            f"only where no explicit cast is needed, so cast the value to {datatype} yourself"
        )
    session.run(f"DEALLOCATE {_STATEMENT}")
    return None


def _dummy_plan(session: _Session, query: str) -> bool:
    session.run("SET LOCAL constraint_exclusion = on")
    rows = session.run(f"EXPLAIN (COSTS OFF) {query}", "line text")
    return any("One-Time Filter: false" in str(r["line"]) for r in rows)


def _immutable(session: _Session, v: Validation, source: str, predicate: str) -> str | None:
    """An index predicate may use only IMMUTABLE functions (see the module's step 4)."""
    if not _dummy_plan(session, f"SELECT 1{source} WHERE {predicate} AND NOT {predicate}"):
        return (
            f"{v.what}: {v.text!r} is refused as an index predicate: PostgreSQL allows only "
            "IMMUTABLE functions and operators there, and this one uses a mutable one (such "
            "as now(), random() or a timestamptz conversion), or one admmgt cannot prove "
            "immutable; compare with constants or immutable functions only"
        )
    if _dummy_plan(session, f"SELECT 1{source} WHERE {predicate}"):
        return (
            f"{v.what}: {v.text!r} is refused as an index predicate: it can never be true, "
            "so the index would stay empty; fix the condition"
        )
    return None
