"""The compiler's base: its output (steps, validations, the checksum) and its checks.

``CompilerBase`` holds the state of one compilation and the checks every part
of the compiler reports problems through (it is the ``Checks`` the partition
reader of admmgt_plpy._metadata is given). The compiler proper is
admmgt_plpy._compile; the steps that change existing tables are
admmgt_plpy._compile_changes. Pure, like them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from admmgt_plpy._errors import MetadataError
from admmgt_plpy._metadata import ColumnRow, ScriptMetadata, TableRow
from admmgt_plpy._names import (
    check_datatype,
    check_expression,
    check_identifier,
    qualified,
    quote_ident,
)
from admmgt_plpy._partitioning import check_tablespace
from admmgt_plpy._types import DESIGNING

_CHECKSUM_VERSION = "admmgt-compile/1"


# --- output -------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One statement of a compiled script.

    ``kind``: create_schema, create_table, create_partition, add_column,
    alter_column, drop_column, foreign_key, create_index, proc_call or sql.
    ``target``: the object affected (``schema.table``) or the metadata row of a
    DBA-written statement. ``note``: what the run log should record with it.
    ``name``: the object a step creates, quoted and ready for SQL: the column
    or constraint within ``target``, or the schema-qualified index; so that it
    can be found again, e.g. to invert the step.
    """

    sql: str
    transactional: bool
    kind: str
    target: str
    note: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Validation:
    """Something the server must accept before the template is touched.

    ``kind``: ``datatype`` (``SELECT %L::regtype``), ``tablespace`` (must exist),
    ``relation`` and ``table`` (a name this script creates in schema ``target``:
    no relation, and for ``table`` no type either, may have it already), or
    the SQL expressions ``default``, ``using`` and ``predicate``, which the
    template's server parses as one expression of that kind
    (admmgt_plpy._validate). For an expression, ``datatype`` is the type its
    value must convert to (None: the column's type on the template),
    ``column`` the column it belongs to, and ``columns`` the columns this
    script has given ``target`` at that point: (name, type), type None for a
    dropped column; the template's catalog has the others.
    """

    kind: str
    text: str
    what: str
    target: str
    datatype: str | None = None
    column: str | None = None
    columns: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class CompiledScript:
    """``columns``: (table, column, type) for every column the script creates,
    adds, retypes (the new type) or drops (None), in step order; validation
    of a later script in the same run reads them, since its template does not
    have them yet."""

    script_id: int
    steps: tuple[Step, ...]
    checksum: str
    validations: tuple[Validation, ...]
    columns: tuple[tuple[str, str, str | None], ...] = ()


def checksum(steps: Sequence[Step]) -> str:
    digest = hashlib.sha256(_CHECKSUM_VERSION.encode())
    for step in steps:
        digest.update(b"\n" + (b"T" if step.transactional else b"N") + b"\t")
        digest.update(step.sql.encode("utf-8") + b"\0")
    return digest.hexdigest()


# --- the compiler's state and checks -------------------------------------------


@dataclass(frozen=True)
class Table:
    """A script_tables row with checked names."""

    row: TableRow
    schema: str
    name: str
    this_script: bool

    @property
    def sql_name(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.name}"


class CompilerBase:
    """One compilation's state, and the checks that record its problems."""

    def __init__(
        self, meta: ScriptMetadata, anchor: date, schema_map: Mapping[str, str] | None = None
    ) -> None:
        self.meta = meta
        self.anchor = anchor
        # Schema tenants: {template schema: the schema the steps must name}
        # (None: a database, every schema as the metadata names it).
        self.schema_map = schema_map
        self.script_id = meta.script.id
        self.problems: list[str] = []
        self.steps: list[Step] = []
        self.validations: list[Validation] = []
        self.relation_names: dict[tuple[str, str], str] = {}
        self.schemas_seen: set[str] = set()
        self.tables: dict[int, Table] = {}
        self.tables_by_name: dict[tuple[str, str], Table] = {}
        self.tenant_contexts: set[tuple[str, str]] = set()
        # Every partition compiled for a table (all levels), by the table's target.
        self.partitions: dict[str, list[str]] = {}
        self.invalid_count = 0
        # The columns this script gives each table ("schema.table"), in step order.
        self.columns: dict[str, dict[str, str | None]] = {}

    # problems and checks -------------------------------------------------

    def what(self, table: str, row_id: int, field: str) -> str:
        return f"script {self.script_id}, {table} row {row_id}, {field}"

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def _placeholder(self) -> str:
        # Stands in for a refused value so checking can go on; never emitted,
        # because run() raises whenever a problem was recorded.
        self.invalid_count += 1
        return f"invalid_{self.invalid_count}"

    def schema(self, value: object, what: str) -> str:
        """A metadata schemaname, checked, then mapped for a schema tenant: the
        template schema becomes the tenant's; any other schema is refused (a
        schema tenant has only its own schema)."""
        known = len(self.problems)
        name = self.ident(value, what)
        if self.schema_map is None or len(self.problems) > known:
            return name
        mapped = self.schema_map.get(name)
        if mapped is None:
            template = " or ".join(f'"{k}"' for k in self.schema_map) or "none"
            self.problem(
                f'{what}: schema "{name}" is not the template schema {template}; schema '
                "tenants have only their own schema, the template schema's counterpart, so "
                "a script that schema tenants get may name only the template schema; move "
                "the object there, or keep this fleet's schema tenants off this script"
            )
            return self._placeholder()
        return mapped

    def ident(self, value: object, what: str) -> str:
        try:
            return check_identifier(value, what=what)
        except MetadataError as error:
            self.problem(error.message)
            return self._placeholder()

    def datatype(self, value: object, what: str, target: str) -> str:
        try:
            text = check_datatype(value, what=what)
        except MetadataError as error:
            self.problem(error.message)
            return "invalid"
        self.validations.append(Validation("datatype", text, what, target))
        return text

    def expression(
        self,
        value: object,
        what: str,
        kind: str,
        target: str,
        datatype: str | None = None,
        column: str | None = None,
    ) -> str:
        """The checked expression, in parentheses: no text can close its clause."""
        try:
            text = check_expression(value, what=what)
        except MetadataError as error:
            self.problem(error.message)
            return "(NULL)"
        columns = tuple(self.columns.get(target, {}).items())
        self.validations.append(Validation(kind, text, what, target, datatype, column, columns))
        return f"({text})"

    def name(self, value: str | None, what: str) -> str | None:
        """An optional object name: None when NULL; refused when blank or padded,
        since it would otherwise be created under another name than given."""
        if value is None:
            return None
        if not value.strip() or value != value.strip():
            self.problem(
                f"{what}: {value!r} is not a name: "
                + ("it is blank" if not value.strip() else "it has spaces around it")
                + "; give the name exactly, or NULL to let admmgt name it"
            )
            return self._placeholder()
        return self.ident(value, what)

    def set_column(self, table: Table, name: str, datatype: str | None) -> None:
        self.columns.setdefault(table.target, {})[name] = datatype

    def tablespace(self, value: str | None, what: str, target: str) -> str | None:
        try:
            name = check_tablespace(value, what=what)
        except MetadataError as error:
            self.problem(error.message)
            return None
        if name is not None:
            self.validations.append(Validation("tablespace", name, what, target))
        return name

    def flag(self, value: int | None, what: str) -> bool:
        if value in (None, 0, 1):
            return bool(value)
        self.problem(f"{what}: {value!r} is not a flag; use 0 or 1")
        return False

    def claim_relation(self, schema: str, name: str, owner: str, *, table: bool = False) -> None:
        """Refuse two objects of this script that would get the same relation name,
        and have the template checked for a relation (or, for a table, a type)
        of that name: CREATE ... IF NOT EXISTS would skip, not create, the object."""
        other = self.relation_names.setdefault((schema, name), owner)
        if other != owner:
            self.problem(
                f"script {self.script_id}, {owner}: the name {schema}.{name} is also the "
                f"name of {other}; give one of them another name"
            )
            return
        # The template check names the row and the field the name comes from.
        found = re.search(r"(script_\w+) row (\d+)", owner)
        what = f"script {self.script_id}, {owner}"
        if found is not None:
            field = {"script_indexes": "indexname", "script_table_partitions": "partvalue"}.get(
                found.group(1), "tablename"
            )
            what = f"script {self.script_id}, {found.group(0)}, {field}"
            if owner != found.group(0):
                what += f" ({owner})"
        self.validations.append(Validation("table" if table else "relation", name, what, schema))

    def emit(
        self,
        sql: str,
        kind: str,
        target: str,
        *,
        transactional: bool = True,
        note: str | None = None,
        name: str | None = None,
    ) -> None:
        self.steps.append(Step(sql, transactional, kind, target, note, name))

    # tables referred to ----------------------------------------------------

    def table_for(self, tableid: int, what: str) -> Table | None:
        table = self.tables.get(tableid)
        if table is not None and table.row.status != DESIGNING:
            return table
        if table is not None or any(t.id == tableid for t in self.meta.tables):
            self.problem(
                f"{what}: {tableid!r} is a table still being designed (status 0); "
                "set the table row to status 1 or set this row to status 0"
            )
        else:
            self.problem(
                f"{what}: {tableid!r} is not a script_tables row of this script or an "
                "earlier one; fix tableid"
            )
        return None

    def column_table(self, column: ColumnRow) -> Table | None:
        if column.status == DESIGNING:
            return None
        what = "script_table_columns"
        if column.scriptid != self.script_id:
            self.problem(
                f"{self.what(what, column.id, 'scriptid')}: the row belongs to script "
                f"{column.scriptid}, not {self.script_id}; leave it out"
            )
            return None
        return self.table_for(column.tableid, self.what(what, column.id, "tableid"))

    def column_sql(
        self, column: ColumnRow, name: str, table: Table, *, in_primary_key: bool
    ) -> str:
        """The column definition, for CREATE TABLE or ADD COLUMN."""
        w = "script_table_columns"
        datatype = self.datatype(column.datatype, self.what(w, column.id, "datatype"), table.target)
        identity = self.flag(column.isidentity, self.what(w, column.id, "isidentity"))
        nullable = self.flag(column.nullable, self.what(w, column.id, "nullable"))
        parts = [quote_ident(name), datatype]
        if identity:
            # BY DEFAULT, not ALWAYS: migrations and data loads may insert explicit ids.
            parts.append("GENERATED BY DEFAULT AS IDENTITY")
            if column.defaultval is not None and column.defaultval.strip():
                self.problem(
                    f"{self.what(w, column.id, 'defaultval')}: {column.defaultval!r} is set "
                    "on an identity column; clear defaultval or isidentity"
                )
        elif column.defaultval is not None and column.defaultval.strip():
            expression = self.expression(
                column.defaultval,
                self.what(w, column.id, "defaultval"),
                "default",
                table.target,
                datatype,
                name,
            )
            parts.append(f"DEFAULT {expression}")
        if not nullable or identity or in_primary_key:
            parts.append("NOT NULL")
        return " ".join(parts)
