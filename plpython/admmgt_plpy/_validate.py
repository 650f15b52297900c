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
   its type only by an explicit cast is refused too (``_assignable``:
   PostgreSQL's own assignment conversion, read from ``pg_cast``);
4. an index predicate must also use only IMMUTABLE functions. With
   ``constraint_exclusion = on`` the planner proves ``P AND NOT P`` false
   only from clauses free of mutable functions (the same
   ``contain_mutable_functions`` test after constant folding that CREATE
   INDEX applies), so ``EXPLAIN`` of that query is a dummy plan exactly when
   P is immutable. EXPLAIN plans and never executes.

What an earlier script of the same run creates with a raw SQL step or a
procedure call is not on the template yet, and admmgt cannot see what that
statement makes. So once an earlier pending script has such a statement, an
expression that fails only because something it names does not exist
(``_MISSING``) is left to the template run, with a NOTICE; every other
refusal stands. A script's own raw steps and procedure calls run after its
metadata steps, so they never make what its expressions use: that refusal
stands too, and says so.

Every problem of a script is collected, each naming the script, the metadata
table, the row and the field, and the script is refused as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from admmgt_plpy._compile import CompiledScript, Validation
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._remote import Dblink, Outcome, RemoteError
from admmgt_plpy._transient import retryable

__all__ = ["READ_ONLY", "script_problems"]

READ_ONLY = "BEGIN READ ONLY"
_STATEMENT = "admmgt_validate"
# "Does not exist": a relation (a sequence in nextval), a function, a type or
# other object, a schema; and a column, except in a default or a partition
# bound, which may refer to none.
_MISSING = {"42P01", "42883", "42704", "3F000"}
_MISSING_COLUMN = "42703"
_RAW = ("sql", "proc_call")
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
        self.deferred = False  # an earlier script of the run has raw SQL or a procedure call
        self.own_raw = False  # this script has some (they run after its metadata steps)

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
    """The template could not be read or checked now, for a reason a re-run
    fixes (a lock, a lost connection): no problem of the script's.

    ``error`` is the server's; ``outcome`` is the failed outcome a run records
    for the template, set once applyScripts knows who held the lock
    (_rollout_checks.validate_on_template)."""

    def __init__(self, error: RemoteError, outcome: Outcome | None = None) -> None:
        super().__init__(outcome.message if outcome is not None else error.message)
        self.error = error
        self.outcome = outcome


def script_problems(
    dblink: Dblink, conn: str, script: CompiledScript, earlier: Sequence[CompiledScript]
) -> list[str]:
    """Every problem the template's server finds with ``script``.

    ``earlier``: the scripts of this run before it that the template does not
    have yet; their tables and columns count as made, their names as taken.
    The connection is in a READ ONLY transaction, and is left in one.
    """
    session = _Session(dblink, conn)
    session.deferred = any(s.kind in _RAW for other in earlier for s in other.steps)
    session.own_raw = any(s.kind in _RAW for s in script.steps)
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
        missing = exc.sqlstate in _MISSING or (
            exc.sqlstate == _MISSING_COLUMN and v.kind not in ("default", "value")
        )
        if missing and session.deferred:
            session.dblink.plpy.notice(
                f"{v.what}: {v.text!r} names something the template does not have yet "
                f"({exc.message}); an earlier script of this run has raw SQL steps or procedure "
                f"calls that may create it, so checking {kind} is left to the template run"
            )
            return None
        message = exc.message.replace("in WHERE", f"in {kind}")
        if exc.sqlstate == "42703" and v.kind == "default":
            message += " (a default cannot refer to columns)"
        fix = "fix the expression"
        if missing and session.own_raw:
            fix = (
                "this script's raw SQL steps and procedure calls run after its tables, "
                "columns and indexes, so nothing they create exists here yet; create it in an "
                "earlier script, or fix the expression"
            )
        return (
            f"{v.what}: {v.text!r} is refused as {kind}"
            + (f" of type {datatype}" if datatype else "")
            + f" by the template's server: {exc.sqlstate} {message}; {fix}"
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
    """A default or USING value must convert to its column's type the way
    PostgreSQL converts it there: by assignment, not by an explicit cast
    (``::`` in the first check allows that too).

    The value's type is what a parameter beside it in ``COALESCE`` takes
    (PREPAREd, never executed; ``pg_prepared_statements.parameter_types``).
    A string literal or NULL has no type yet and converts to any type by its
    input function; ``COALESCE`` makes it text, so a text value that would be
    refused is tried once more beside a ``void`` parameter, which only such a
    literal unites with."""
    prepared = f"SELECT 1{source} WHERE COALESCE(({v.text}), $1) IS NULL"
    try:
        session.run(f"PREPARE {_STATEMENT} AS {prepared}")
    except RemoteError:
        return None  # the value's type cannot be told; the conversion above passed
    try:
        rows = session.run(
            "SELECT p.parameter_types[1]::pg_catalog.oid::int8 AS source, "
            f"{quote_literal(datatype)}::pg_catalog.regtype::pg_catalog.oid::int8 AS target, "
            "p.parameter_types[1]::text AS name FROM pg_catalog.pg_prepared_statements AS p "
            f"WHERE p.name = {quote_literal(_STATEMENT)}",
            "source int8, target int8, name text",
        )
    finally:
        session.run(f"DEALLOCATE {_STATEMENT}")
    if not rows or rows[0]["source"] is None:
        return None
    value_type, target = int(str(rows[0]["source"])), int(str(rows[0]["target"]))
    if _assigns(session, value_type, target):
        return None
    if value_type == _TEXT:
        try:
            session.run(f"PREPARE {_STATEMENT}(pg_catalog.void) AS {prepared}")
        except RemoteError:
            pass
        else:
            session.run(f"DEALLOCATE {_STATEMENT}")
            return None  # a literal without a type: its input function converts it
    return (
        f"{v.what}: {v.text!r} is refused as {kind} of type {datatype} by the template's "
        f"server: 42804 the value is of type {rows[0]['name']}, which PostgreSQL converts to "
        f"{datatype} only by an explicit cast; cast the value to {datatype} yourself"
    )


_TEXT, _RECORD = 25, 2249
_VECTORS = (22, 30)  # int2vector, oidvector: never converted element by element
_PATHWAY = """
WITH RECURSIVE chain(role, oid, depth) AS (
    VALUES ('s', {source}::pg_catalog.oid, 0), ('t', {target}::pg_catalog.oid, 0)
    UNION ALL
    SELECT c.role, y.typbasetype, c.depth + 1
    FROM chain AS c JOIN pg_catalog.pg_type AS y ON y.oid = c.oid
    WHERE y.typtype = 'd'
), base AS (
    SELECT DISTINCT ON (c.role) c.role, y.oid, y.typcategory, y.typtype,
        CASE WHEN y.typelem <> 0
            AND y.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc
            THEN y.typelem END AS elem
    FROM chain AS c JOIN pg_catalog.pg_type AS y ON y.oid = c.oid
    ORDER BY c.role, c.depth DESC
)
SELECT s.oid::int8 AS source, t.oid::int8 AS target, t.typcategory::text AS category,
    s.typtype = 'c' AS source_composite, t.typtype = 'c' AS target_composite,
    s.elem::int8 AS source_elem, t.elem::int8 AS target_elem,
    (SELECT k.castcontext::text FROM pg_catalog.pg_cast AS k
     WHERE k.castsource = s.oid AND k.casttarget = t.oid) AS context
FROM base AS s, base AS t WHERE s.role = 's' AND t.role = 't'"""
_PATHWAY_COLUMNS = (
    "source int8, target int8, category text, source_composite boolean, "
    "target_composite boolean, source_elem int8, target_elem int8, context text"
)


def _assigns(session: _Session, source: int, target: int, top: bool = True) -> bool:
    """PostgreSQL's ``can_coerce_type`` in assignment context (parse_coerce.c),
    for a value of a known type: the same type; a record to a composite type
    and back; then ``find_coercion_pathway``: domains stand for their base
    types, a ``pg_cast`` row decides by its context (implicit or assignment);
    without one, arrays convert when their elements do, and every type
    converts to a string type through text I/O."""
    if source == target:
        return True
    rows = session.run(_PATHWAY.format(source=source, target=target), _PATHWAY_COLUMNS)
    if not rows:
        return False
    r = rows[0]
    if top and (
        (source == _RECORD and r["target_composite"])
        or (target == _RECORD and r["source_composite"])
    ):
        return True
    if r["source"] == r["target"]:
        return True
    if r["context"] is not None:
        return r["context"] in ("i", "a")
    elements = r["source_elem"], r["target_elem"]
    if (
        r["target"] not in _VECTORS
        and None not in elements
        and _assigns(session, int(str(elements[0])), int(str(elements[1])), top=False)
    ):
        return True
    return r["category"] == "S"


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
