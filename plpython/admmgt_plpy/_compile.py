"""Compile the metadata rows of one script into ordered DDL steps.

Pure: typed metadata in (``ScriptMetadata``, read from the rows by
admmgt_plpy._metadata, which also reads a table's partitioning for the
compiler and for maintenance alike), ``CompiledScript`` out. No server is
needed, so the whole compiler is unit-tested; the engine validates
``CompiledScript.validations`` on the template, then runs the steps.

Rows with status 0 (designing) are skipped; every other status is compiled, so
that a script already applied (2) or failed (3) compiles to the same SQL when it
is replayed. Whether a script is ready to apply is the engine's decision.

Step order within a script (docs/metadata.md, "Step order"):

1. tables, in script_tables id order: ``CREATE SCHEMA IF NOT EXISTS`` before the
   first table of each schema, ``CREATE TABLE``, then its partition children
2. ADD COLUMN, in script_table_columns id order
3. ALTER COLUMN, in script_column_changes id order
4. DROP COLUMN, in script_column_changes id order
5. foreign keys, by (schema, child table, constraint name)
6. indexes, in script_indexes id order
7. procedure calls and raw SQL steps, merged by ``steporder`` (NULL last), then
   script_procs before script_steps, then id

``anchor`` is the date the first range partitions are made for. The engine
passes the script's ``created_date`` so that the compiled SQL, and its checksum,
are the same for the template and every tenant whenever they are compiled;
partitions beyond the anchor period are maintenance's job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from admmgt_plpy._calendar import (
    child_name,
    child_suffix,
    next_start,
    period_start,
    range_bound_literal,
)
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._hashparts import hash_bound, hash_child
from admmgt_plpy._metadata import (
    ColumnChangeRow,
    ColumnRow,
    FkeyRow,
    IndexRow,
    Partitioning,
    PartitionRow,
    ProcRow,
    ScriptMetadata,
    ScriptRow,
    StepRow,
    TableRow,
    check_tablespace,
    read_partitioning,
)
from admmgt_plpy._names import (
    check_datatype,
    check_expression,
    check_identifier,
    check_statement,
    fold,
    qualified,
    quote_ident,
    quote_literal,
)
from admmgt_plpy._tenancy import (
    CONTEXT_FUNCTION,
    POLICY_SUFFIX,
    TENANT_SETTING,
    check_tenant_type,
    context_function_sql,
    policy_sql,
    rls_sql,
    same_type,
)
from admmgt_plpy._types import DESIGNING

__all__ = [
    "ColumnChangeRow",
    "ColumnRow",
    "CompiledScript",
    "FkeyRow",
    "IndexRow",
    "PartitionRow",
    "ProcRow",
    "ScriptMetadata",
    "ScriptRow",
    "Step",
    "StepRow",
    "TableRow",
    "Validation",
    "compile_script",
]

DELETE_RULES = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")
INDEX_METHODS = ("btree", "hash", "gin", "gist", "brin", "spgist")
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


def _checksum(steps: Sequence[Step]) -> str:
    digest = hashlib.sha256(_CHECKSUM_VERSION.encode())
    for step in steps:
        digest.update(b"\n" + (b"T" if step.transactional else b"N") + b"\t")
        digest.update(step.sql.encode("utf-8") + b"\0")
    return digest.hexdigest()


# --- the compiler -------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
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


@dataclass(frozen=True)
class _TenantKey:
    column: str
    datatype: str


def compile_script(meta: ScriptMetadata, *, anchor: date) -> CompiledScript:
    """Compile one script; raise one MetadataError listing every problem found."""
    return _Compiler(meta, anchor).run()


class _Compiler:
    def __init__(self, meta: ScriptMetadata, anchor: date) -> None:
        self.meta = meta
        self.anchor = anchor
        self.script_id = meta.script.id
        self.problems: list[str] = []
        self.steps: list[Step] = []
        self.validations: list[Validation] = []
        self.relation_names: dict[tuple[str, str], str] = {}
        self.schemas_seen: set[str] = set()
        self.tables: dict[int, _Table] = {}
        self.tables_by_name: dict[tuple[str, str], _Table] = {}
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

    def set_column(self, table: _Table, name: str, datatype: str | None) -> None:
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

    # driver --------------------------------------------------------------

    def run(self) -> CompiledScript:
        self.load_tables()
        columns_by_table: dict[int, list[ColumnRow]] = {}
        added: list[tuple[ColumnRow, _Table]] = []
        for column in sorted(self.meta.columns, key=lambda c: c.id):
            table = self.column_table(column)
            if table is None:
                continue
            if table.this_script:
                columns_by_table.setdefault(table.row.id, []).append(column)
            else:
                added.append((column, table))
        partitions_by_table = self.partition_rows()
        for table in self.tables.values():
            if table.this_script:
                self.create_table(
                    table,
                    columns_by_table.get(table.row.id, []),
                    partitions_by_table.get(table.row.id, []),
                )
        for column, table in added:
            self.add_column(column, table)
        changes = [
            c for c in sorted(self.meta.column_changes, key=lambda c: c.id) if c.status != DESIGNING
        ]
        drops = {
            c.id: self.flag(c.dropcolumn, self.what("script_column_changes", c.id, "dropcolumn"))
            for c in changes
        }
        for change in changes:
            if not drops[change.id] and change.dropcolumn == 0:
                self.alter_column(change)
        for change in changes:
            if drops[change.id]:
                self.drop_column(change)
        self.foreign_keys()
        for index in sorted(self.meta.indexes, key=lambda i: i.id):
            if index.status != DESIGNING:
                self.create_index(index)
        self.statements()
        if self.problems:
            count = len(self.problems)
            raise MetadataError(
                f"script {self.script_id} cannot be compiled, {count} "
                f"problem{'s' if count > 1 else ''} in its metadata:\n" + "\n".join(self.problems),
                hint="fix the rows listed, then apply the script again",
                problems=tuple(self.problems),
            )
        steps = tuple(self.steps)
        columns = tuple(
            (target, name, datatype)
            for target, named in self.columns.items()
            for name, datatype in named.items()
        )
        return CompiledScript(
            self.script_id, steps, _checksum(steps), tuple(self.validations), columns
        )

    # tables --------------------------------------------------------------

    def load_tables(self) -> None:
        """Check the names of this script's tables and of the earlier ones referred to."""
        this_ids = {t.id for t in self.meta.tables}
        rows = [(t, True) for t in self.meta.tables] + [
            (t, False) for t in self.meta.referenced_tables if t.id not in this_ids
        ]
        for row, this_script in sorted(rows, key=lambda r: r[0].id):
            what = "script_tables"
            if this_script and row.scriptid != self.script_id:
                self.problem(
                    f"{self.what(what, row.id, 'scriptid')}: the row belongs to script "
                    f"{row.scriptid}, not {self.script_id}; pass it as a referenced table"
                )
                continue
            if not this_script and row.scriptid >= self.script_id:
                self.problem(
                    f"{self.what(what, row.id, 'scriptid')}: the table belongs to script "
                    f"{row.scriptid}, which is not earlier than script {self.script_id}; "
                    "refer only to tables of earlier scripts"
                )
                continue
            if row.status == DESIGNING and this_script:
                continue
            schema = self.ident(row.schemaname, self.what(what, row.id, "schemaname"))
            name = self.ident(row.tablename, self.what(what, row.id, "tablename"))
            table = _Table(row, schema, name, this_script)
            self.tables[row.id] = table
            self.tables_by_name.setdefault((schema, name), table)

    def table_for(self, tableid: int, what: str) -> _Table | None:
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

    def column_table(self, column: ColumnRow) -> _Table | None:
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
        self, column: ColumnRow, name: str, table: _Table, *, in_primary_key: bool
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

    def create_table(
        self, table: _Table, columns: list[ColumnRow], partitions: list[PartitionRow]
    ) -> None:
        w = "script_tables"
        row = table.row
        if table.schema not in self.schemas_seen:
            self.schemas_seen.add(table.schema)
            self.emit(
                f"CREATE SCHEMA IF NOT EXISTS {quote_ident(table.schema)}",
                "create_schema",
                table.schema,
            )
        self.claim_relation(table.schema, table.name, f"script_tables row {row.id}", table=True)
        haspart = self.flag(row.haspart, self.what(w, row.id, "haspart"))
        hasdefault = self.flag(row.hasdefault, self.what(w, row.id, "hasdefault"))
        tablespace = self.tablespace(row.tblspace, self.what(w, row.id, "tblspace"), table.target)
        if not columns:
            self.problem(
                f"{self.what(w, row.id, 'tablename')}: table {table.target} has no columns "
                "with status 1; add script_table_columns rows for it"
            )
            return
        w_columns = "script_table_columns"
        checked = [
            (c, self.ident(c.columnname, self.what(w_columns, c.id, "columnname"))) for c in columns
        ]
        tenant = self.tenant_key(table, checked)
        names = {name for _, name in checked} | ({tenant.column} if tenant else set())
        plan = self.partition_plan(table, partitions, names, haspart)
        primary_key = [
            name
            for c, name in checked
            if self.flag(c.isprimarykey, self.what(w_columns, c.id, "isprimarykey"))
        ]
        if primary_key and plan is not None:
            # PostgreSQL requires the partition keys in a partitioned table's primary key.
            for extra in (plan.column, plan.subcolumn):
                if extra is not None and extra not in primary_key:
                    primary_key.append(extra)
        if primary_key and tenant is not None:
            # The tenant key leads, as in the composite keys of shared tables: the key's
            # index serves every tenant's lookups, and uniqueness is per tenant.
            primary_key = [tenant.column] + [c for c in primary_key if c != tenant.column]
        definitions: list[str] = []
        if tenant is not None and tenant.column not in {name for _, name in checked}:
            definitions.append(f"{quote_ident(tenant.column)} {tenant.datatype} NOT NULL")
            self.set_column(table, tenant.column, tenant.datatype)
        seen: dict[str, int] = {}
        for column, name in checked:
            if name in seen:
                self.problem(
                    f"{self.what(w_columns, column.id, 'columnname')}: column {name!r} is "
                    f"also defined by row {seen[name]}; remove one of them"
                )
            seen[name] = column.id
            not_null = name in primary_key or (tenant is not None and name == tenant.column)
            definitions.append(self.column_sql(column, name, table, in_primary_key=not_null))
            self.set_column(table, name, (column.datatype or "").strip() or None)
        if primary_key:
            key_name = child_name(table.name, "pkey")
            self.claim_relation(
                table.schema, key_name, f"the primary key of script_tables row {row.id}"
            )
            definitions.append(
                f"CONSTRAINT {quote_ident(key_name)} PRIMARY KEY "
                f"({', '.join(quote_ident(c) for c in primary_key)})"
            )
        sql = f"CREATE TABLE {table.sql_name} (\n    " + ",\n    ".join(definitions) + "\n)"
        if plan is not None:
            sql += f" PARTITION BY {plan.kind.upper()} ({quote_ident(plan.column)})"
        elif tablespace is not None:
            sql += f" TABLESPACE {quote_ident(tablespace)}"
        self.emit(sql, "create_table", table.target)
        if plan is not None:
            self.set_partitioned_tablespace(table.sql_name, table.target, tablespace)
            if hasdefault and plan.kind == "hash":
                self.problem(
                    f"{self.what(w, row.id, 'hasdefault')}: table {table.target} is "
                    "hash-partitioned, and a hash-partitioned table cannot have a default "
                    "partition; set hasdefault to 0"
                )
            self.create_partitions(table, plan, hasdefault)
        if tenant is not None:
            self.tenant_isolation(table, tenant, indexed=bool(primary_key))
        if plan is None and hasdefault:
            self.problem(
                f"{self.what(w, row.id, 'hasdefault')}: table {table.target} is not "
                "partitioned, so it cannot have a default partition; set hasdefault to 0"
            )

    # tenant-scoped tables -------------------------------------------------

    def tenant_key(self, table: _Table, checked: list[tuple[ColumnRow, str]]) -> _TenantKey | None:
        """The tenant key of a shared table, checked; None for other tables."""
        w = "script_tables"
        row = table.row
        column_set = row.tenantcolumn is not None and row.tenantcolumn.strip() != ""
        type_set = row.tenanttype is not None and row.tenanttype.strip() != ""
        if not column_set and not type_set:
            return None
        if not column_set or not type_set:
            missing = "tenantcolumn" if not column_set else "tenanttype"
            self.problem(
                f"{self.what(w, row.id, missing)}: table {table.target} sets only one of "
                "tenantcolumn and tenanttype; set both for a tenant-scoped table, or neither"
            )
            return None
        column = self.ident(row.tenantcolumn, self.what(w, row.id, "tenantcolumn"))
        try:
            datatype = check_tenant_type(row.tenanttype, what=self.what(w, row.id, "tenanttype"))
        except MetadataError as error:
            self.problem(error.message)
            return None
        self.validations.append(
            Validation("datatype", datatype, self.what(w, row.id, "tenanttype"), table.target)
        )
        for c, name in checked:
            if name == column and c.datatype is not None and not same_type(c.datatype, datatype):
                self.problem(
                    f"{self.what('script_table_columns', c.id, 'datatype')}: column "
                    f"{table.target}.{name} is the table's tenant key, of type {datatype} "
                    f"(script_tables row {row.id}, tenanttype), but is declared "
                    f"{c.datatype!r}; give both the same type, or leave the column out and "
                    "let tenanttype define it"
                )
        return _TenantKey(column, datatype)

    def tenant_isolation(self, table: _Table, tenant: _TenantKey, *, indexed: bool) -> None:
        """Index the key, enable and force row-level security, add the policy and the context."""
        if not indexed:
            name = child_name(table.name, tenant.column, "idx")
            self.claim_relation(table.schema, name, f"the tenant key index of {table.target}")
            self.emit(
                f"CREATE INDEX IF NOT EXISTS {quote_ident(name)} ON {table.sql_name} "
                f"USING btree ({quote_ident(tenant.column)})",
                "create_index",
                table.target,
                name=qualified(table.schema, name),
            )
        self.emit(
            rls_sql(table.schema, table.name),
            "enable_rls",
            table.target,
            note="row-level security is enabled and forced: the table's owner is bound too",
        )
        policy = child_name(table.name, POLICY_SUFFIX)
        self.emit(
            policy_sql(table.schema, table.name, policy, tenant.column, tenant.datatype),
            "create_policy",
            table.target,
            name=quote_ident(policy),
        )
        # A partition queried by name applies its own policies, not its parent's:
        # each one, at every level, is bound the same way (the same policy name).
        for name in self.partitions.get(table.target, []):
            target = f"{table.schema}.{name}"
            self.emit(
                rls_sql(table.schema, name),
                "enable_rls",
                target,
            )
            self.emit(
                policy_sql(table.schema, name, policy, tenant.column, tenant.datatype),
                "create_policy",
                target,
                name=quote_ident(policy),
            )
        key = (table.schema, tenant.datatype)
        if key not in self.tenant_contexts:
            self.tenant_contexts.add(key)
            self.emit(
                context_function_sql(table.schema, tenant.datatype),
                "tenant_context",
                table.schema,
                note=f"{table.schema}.{CONTEXT_FUNCTION}({tenant.datatype}) sets "
                f"{TENANT_SETTING}, transaction-local by default",
            )

    # partitions ----------------------------------------------------------

    def partition_rows(self) -> dict[int, list[PartitionRow]]:
        by_table: dict[int, list[PartitionRow]] = {}
        for row in sorted(self.meta.partitions, key=lambda p: p.id):
            table = self.tables.get(row.tableid)
            if table is not None and table.this_script:
                by_table.setdefault(row.tableid, []).append(row)
            elif not any(t.id == row.tableid for t in self.meta.tables):
                self.problem(
                    f"{self.what('script_table_partitions', row.id, 'tableid')}: "
                    f"{row.tableid!r} is not a table created by this script; an existing "
                    "table cannot be partitioned by a later script"
                )
        return by_table

    def partition_plan(
        self, table: _Table, rows: list[PartitionRow], columns: set[str], haspart: bool
    ) -> Partitioning | None:
        if not haspart:
            if rows:
                self.problem(
                    f"{self.what('script_tables', table.row.id, 'haspart')}: table "
                    f"{table.target} has script_table_partitions rows but haspart is 0; "
                    "set haspart to 1 or delete the rows"
                )
            return None
        if not rows:
            self.problem(
                f"{self.what('script_tables', table.row.id, 'haspart')}: table "
                f"{table.target} has haspart = 1 but no script_table_partitions rows; "
                "add them or set haspart to 0"
            )
            return None
        return read_partitioning(rows, table.target, self, columns=columns)

    def create_partition(
        self,
        table: _Table,
        parent: str,
        name: str,
        bound: str,
        owner: str,
        *,
        partition_by: str | None = None,
        partition_kind: str = "RANGE",
        tablespace: str | None = None,
    ) -> None:
        self.claim_relation(table.schema, name, owner, table=True)
        sql = (
            f"CREATE TABLE {qualified(table.schema, name)} PARTITION OF "
            f"{qualified(table.schema, parent)} {bound}"
        )
        if partition_by is not None:
            sql += f" PARTITION BY {partition_kind} ({quote_ident(partition_by)})"
        elif tablespace is not None:
            sql += f" TABLESPACE {quote_ident(tablespace)}"
        self.emit(sql, "create_partition", f"{table.schema}.{name}")
        self.partitions.setdefault(table.target, []).append(name)
        if partition_by is not None:
            self.set_partitioned_tablespace(
                qualified(table.schema, name), f"{table.schema}.{name}", tablespace
            )

    def set_partitioned_tablespace(
        self, sql_name: str, target: str, tablespace: str | None
    ) -> None:
        """A partitioned relation's tablespace: the one its new partitions default to.

        PostgreSQL refuses ``CREATE TABLE ... PARTITION BY ... TABLESPACE x`` when
        x is the database's default tablespace (0A000, "cannot specify default
        tablespace for partitioned relations"), which the proof of concept's demo
        does with ``pg_default``. ``ALTER TABLE ... SET TABLESPACE x`` on the
        empty partitioned table means the same and is accepted for every x (the
        database's default is stored as 0), whatever each database's default is,
        so the compiled SQL stays one text for the template and every tenant.
        """
        if tablespace is None:
            return
        self.emit(
            f"ALTER TABLE {sql_name} SET TABLESPACE {quote_ident(tablespace)}",
            "set_tablespace",
            target,
        )

    def range_bound(self, interval: str) -> tuple[str, str]:
        lo = period_start(interval, self.anchor)
        hi = next_start(interval, lo)
        bound = f"FOR VALUES FROM ({range_bound_literal(lo)}) TO ({range_bound_literal(hi)})"
        return child_suffix(interval, lo), bound

    def hash_partitions(
        self,
        table: _Table,
        parent: str,
        parts: tuple[str, ...],
        modulus: int,
        owner: str,
        tablespace: str | None,
    ) -> None:
        """All ``modulus`` children of a hash-partitioned parent: a hash set never grows."""
        for remainder in range(modulus):
            self.create_partition(
                table,
                parent,
                hash_child(*parts, remainder=remainder),
                hash_bound(modulus, remainder),
                f"hash partition {remainder} of {owner}",
                tablespace=tablespace,
            )

    def bound_value(
        self, table: _Table, literal: str, row_id: int, field: str, column: str
    ) -> None:
        """Have the template check that a partition bound suits its column's type."""
        datatype = self.columns.get(table.target, {}).get(column)
        what = self.what("script_table_partitions", row_id, field)
        self.validations.append(Validation("value", literal, what, table.target, datatype, column))

    def create_partitions(self, table: _Table, plan: Partitioning, hasdefault: bool) -> None:
        owner_table = f"script_tables row {table.row.id}"
        if plan.kind == "hash" and plan.modulus is not None:
            self.hash_partitions(
                table, table.name, (table.name,), plan.modulus, owner_table, plan.tablespace
            )
            return
        if plan.kind == "range" and plan.interval is not None:
            lo = range_bound_literal(period_start(plan.interval, self.anchor))
            self.bound_value(table, lo, plan.row_id, "partcolumnname", plan.column)
            suffix, bound = self.range_bound(plan.interval)
            first = child_name(table.name, suffix)
            self.create_partition(
                table,
                table.name,
                first,
                bound,
                f"the first partition of {owner_table}",
                partition_by=plan.subcolumn if plan.sub_modulus is not None else None,
                partition_kind="HASH",
                tablespace=plan.tablespace,
            )
            if plan.sub_modulus is not None:
                self.hash_partitions(
                    table,
                    first,
                    (first,),
                    plan.sub_modulus,
                    f"the first partition of {owner_table}",
                    plan.sub_tablespace,
                )
        for child in plan.children:
            owner = f"script_table_partitions row {child.row_id}"
            self.bound_value(
                table, quote_literal(child.value), child.row_id, "partvalue", plan.column
            )
            list_name = child_name(table.name, plan.column, child.value)
            sub = child.sub_interval is not None or child.sub_modulus is not None
            self.create_partition(
                table,
                table.name,
                list_name,
                f"FOR VALUES IN ({quote_literal(child.value)})",
                owner,
                partition_by=plan.subcolumn if sub else None,
                partition_kind="HASH" if child.sub_modulus is not None else "RANGE",
                tablespace=child.tablespace,
            )
            if child.sub_modulus is not None:
                self.hash_partitions(
                    table,
                    list_name,
                    (list_name,),
                    child.sub_modulus,
                    owner,
                    child.sub_tablespace,
                )
                continue
            if child.sub_interval is None:
                continue
            suffix, bound = self.range_bound(child.sub_interval)
            self.create_partition(
                table,
                list_name,
                child_name(table.name, plan.column, child.value, suffix),
                bound,
                f"the first sub-partition of {owner}",
                tablespace=child.sub_tablespace,
            )
            if hasdefault:
                self.create_partition(
                    table,
                    list_name,
                    child_name(table.name, plan.column, child.value, "default"),
                    "DEFAULT",
                    f"the default sub-partition of {owner}",
                    tablespace=child.sub_tablespace,
                )
        if hasdefault:
            self.create_partition(
                table,
                table.name,
                child_name(table.name, "default"),
                "DEFAULT",
                f"the default partition of {owner_table}",
            )

    # columns -------------------------------------------------------------

    def add_column(self, column: ColumnRow, table: _Table) -> None:
        w = "script_table_columns"
        if column.isprimarykey == 1:
            self.problem(
                f"{self.what(w, column.id, 'isprimarykey')}: column {column.columnname!r} is "
                f"added to existing table {table.target}, and a primary key cannot be "
                "extended by adding a column; set isprimarykey to 0"
            )
        else:
            self.flag(column.isprimarykey, self.what(w, column.id, "isprimarykey"))
        name = self.ident(column.columnname, self.what(w, column.id, "columnname"))
        definition = self.column_sql(column, name, table, in_primary_key=False)
        self.set_column(table, name, (column.datatype or "").strip() or None)
        note = None
        if column.nullable == 0 and column.isidentity != 1 and not (column.defaultval or ""):
            note = (
                f"NOT NULL without a default: fails on every database where {table.target} has rows"
            )
        self.emit(
            f"ALTER TABLE {table.sql_name} ADD COLUMN {definition}",
            "add_column",
            table.target,
            note=note,
            name=quote_ident(name),
        )

    def alter_column(self, change: ColumnChangeRow) -> None:
        w = "script_column_changes"
        if change.scriptid != self.script_id:
            self.problem(
                f"{self.what(w, change.id, 'scriptid')}: the row belongs to script "
                f"{change.scriptid}, not {self.script_id}; leave it out"
            )
            return
        table = self.table_for(change.tableid, self.what(w, change.id, "tableid"))
        name = self.ident(change.columnname, self.what(w, change.id, "columnname"))
        if table is None:
            return
        column = f"ALTER COLUMN {quote_ident(name)}"
        actions: list[str] = []
        note: str | None = None
        datatype: str | None = None
        if change.newdatatype is not None and change.newdatatype.strip():
            datatype = self.datatype(
                change.newdatatype, self.what(w, change.id, "newdatatype"), table.target
            )
            action = f"{column} TYPE {datatype}"
            if change.usingexpr is not None and change.usingexpr.strip():
                using = self.expression(
                    change.usingexpr,
                    self.what(w, change.id, "usingexpr"),
                    "using",
                    table.target,
                    datatype,
                    name,
                )
                action += f" USING {using}"
            elif datatype != "invalid":
                # Without USING, PostgreSQL converts the column itself by assignment.
                self.validations.append(
                    Validation(
                        "using",
                        quote_ident(name),
                        self.what(w, change.id, "newdatatype"),
                        table.target,
                        datatype,
                        name,
                        tuple(self.columns.get(table.target, {}).items()),
                    )
                )
            actions.append(action)
            self.set_column(table, name, datatype)
            note = f"changes the type of {table.target}.{name}; this may rewrite the table"
        elif change.usingexpr is not None and change.usingexpr.strip():
            self.problem(
                f"{self.what(w, change.id, 'usingexpr')}: {change.usingexpr!r} is given "
                "without newdatatype; set newdatatype or clear usingexpr"
            )
        has_default = change.setdefault is not None and change.setdefault.strip() != ""
        if self.flag(change.dropdefault, self.what(w, change.id, "dropdefault")):
            if has_default:
                self.problem(
                    f"{self.what(w, change.id, 'dropdefault')}: the row both sets and drops "
                    "the default; clear setdefault or set dropdefault to 0"
                )
            actions.append(f"{column} DROP DEFAULT")
        elif has_default:
            expression = self.expression(
                change.setdefault,
                self.what(w, change.id, "setdefault"),
                "default",
                table.target,
                datatype,
                name,
            )
            actions.append(f"{column} SET DEFAULT {expression}")
        if change.setnullable is not None:
            if self.flag(change.setnullable, self.what(w, change.id, "setnullable")):
                actions.append(f"{column} DROP NOT NULL")
            else:
                actions.append(f"{column} SET NOT NULL")
        if not actions:
            self.problem(
                f"{self.what(w, change.id, 'columnname')}: the row changes nothing about "
                f"{table.target}.{name}; set newdatatype, setnullable, setdefault, "
                "dropdefault or dropcolumn"
            )
            return
        self.emit(
            f"ALTER TABLE {table.sql_name} " + ", ".join(actions),
            "alter_column",
            table.target,
            note=note,
        )

    def drop_column(self, change: ColumnChangeRow) -> None:
        w = "script_column_changes"
        if change.scriptid != self.script_id:
            self.problem(
                f"{self.what(w, change.id, 'scriptid')}: the row belongs to script "
                f"{change.scriptid}, not {self.script_id}; leave it out"
            )
            return
        table = self.table_for(change.tableid, self.what(w, change.id, "tableid"))
        name = self.ident(change.columnname, self.what(w, change.id, "columnname"))
        if table is None:
            return
        if (
            (change.newdatatype or "").strip()
            or (change.usingexpr or "").strip()
            or (change.setdefault or "").strip()
            or change.setnullable is not None
            or change.dropdefault
        ):
            self.problem(
                f"{self.what(w, change.id, 'dropcolumn')}: a row that drops column "
                f"{table.target}.{name} cannot also change it; clear the other fields"
            )
        if not change.dropintended:
            self.problem(
                f"{self.what(w, change.id, 'dropintended')}: script {self.script_id} drops "
                f"column {table.name}.{name} but dropintended is not set; set it to true "
                "to confirm"
            )
        self.set_column(table, name, None)
        self.emit(
            f"ALTER TABLE {table.sql_name} DROP COLUMN {quote_ident(name)}",
            "drop_column",
            table.target,
            note=f"drops column {table.target}.{name} and its data "
            f"(script_column_changes row {change.id})",
        )

    # foreign keys --------------------------------------------------------

    def foreign_keys(self) -> None:
        w = "script_table_fkeys"
        groups: dict[tuple[str, str, str, str | None], list[FkeyRow]] = {}
        for row in sorted(self.meta.fkeys, key=lambda r: r.id):
            if row.status == DESIGNING:
                continue
            if row.scriptid != self.script_id:
                self.problem(
                    f"{self.what(w, row.id, 'scriptid')}: the row belongs to script "
                    f"{row.scriptid}, not {self.script_id}; leave it out"
                )
                continue
            schema = self.ident(row.schemaname, self.what(w, row.id, "schemaname"))
            child = self.ident(row.childtablename, self.what(w, row.id, "childtablename"))
            parent = self.ident(row.parenttablename, self.what(w, row.id, "parenttablename"))
            constraint = self.name(row.constraintname, self.what(w, row.id, "constraintname"))
            groups.setdefault((schema, child, parent, constraint), []).append(row)
        compiled: list[tuple[tuple[str, str, str], str]] = []
        constraint_owners: dict[tuple[str, str, str], int] = {}
        for (schema, child, parent, constraint), rows in groups.items():
            sql_name, sql = self.foreign_key(schema, child, parent, constraint, rows)
            key = (schema, child, sql_name)
            if key in constraint_owners:
                self.problem(
                    f"{self.what(w, rows[0].id, 'constraintname')}: constraint {sql_name} on "
                    f"{schema}.{child} is also made from row {constraint_owners[key]}; set "
                    "constraintname on the rows of each key"
                )
            constraint_owners[key] = rows[0].id
            compiled.append((key, sql))
        for (schema, child, sql_name), sql in sorted(compiled):
            what = self.what(w, constraint_owners[(schema, child, sql_name)], "constraintname")
            self.validations.append(Validation("constraint", sql_name, what, f"{schema}.{child}"))
            self.emit(sql, "foreign_key", f"{schema}.{child}", name=sql_name)

    def foreign_key(
        self, schema: str, child: str, parent: str, constraint: str | None, rows: list[FkeyRow]
    ) -> tuple[str, str]:
        w = "script_table_fkeys"
        orders = [r.keyorder for r in rows]
        if len(rows) > 1 and (None in orders or len(set(orders)) != len(orders)):
            self.problem(
                f"{self.what(w, rows[0].id, 'keyorder')}: the key {schema}.{child} -> "
                f"{parent} has rows {', '.join(str(r.id) for r in rows)} with keyorder "
                f"{orders}; give each column of a multi-column key its own keyorder"
            )
        rows = sorted(rows, key=lambda r: (r.keyorder or 0, r.id))
        child_columns = [
            self.ident(r.childcolumnname, self.what(w, r.id, "childcolumnname")) for r in rows
        ]
        parent_columns = [
            self.ident(r.parentcolumnname, self.what(w, r.id, "parentcolumnname")) for r in rows
        ]
        rules = {_delete_rule(r.delrule) for r in rows}
        if len(rules) > 1:
            self.problem(
                f"{self.what(w, rows[0].id, 'delrule')}: the rows of one key disagree on "
                f"delrule ({sorted(str(r.delrule) for r in rows)}); give them the same one"
            )
        rule = rules.pop()
        if rule is not None and rule not in DELETE_RULES:
            bad = next(r for r in rows if _delete_rule(r.delrule) == rule)
            self.problem(
                f"{self.what(w, bad.id, 'delrule')}: {bad.delrule!r} is not a delete rule; "
                f"use one of {', '.join(DELETE_RULES)} or leave it empty"
            )
            rule = None
        novalidate = {self.flag(r.novalidate, self.what(w, r.id, "novalidate")) for r in rows}
        if len(novalidate) > 1:
            self.problem(
                f"{self.what(w, rows[0].id, 'novalidate')}: the rows of one key disagree on "
                "novalidate; give them the same value"
            )
        not_valid = True in novalidate
        child_table = self.tables_by_name.get((schema, child))
        if not_valid and child_table is not None and child_table.row.haspart == 1:
            self.problem(
                f"{self.what(w, rows[0].id, 'novalidate')}: {schema}.{child} is partitioned, "
                "and PostgreSQL 15 cannot add a NOT VALID foreign key to a partitioned "
                "table; set novalidate to 0"
            )
        name = constraint if constraint is not None else child_name(child, child_columns[0], "fkey")
        sql = (
            f"ALTER TABLE {qualified(schema, child)} ADD CONSTRAINT {quote_ident(name)} "
            f"FOREIGN KEY ({', '.join(quote_ident(c) for c in child_columns)}) "
            f"REFERENCES {qualified(schema, parent)} "
            f"({', '.join(quote_ident(c) for c in parent_columns)})"
        )
        if rule is not None:
            sql += f" ON DELETE {rule}"
        if not_valid:
            sql += " NOT VALID"
        return name, sql

    # indexes -------------------------------------------------------------

    def create_index(self, index: IndexRow) -> None:
        w = "script_indexes"
        if index.scriptid != self.script_id:
            self.problem(
                f"{self.what(w, index.id, 'scriptid')}: the row belongs to script "
                f"{index.scriptid}, not {self.script_id}; leave it out"
            )
            return
        table = self.table_for(index.tableid, self.what(w, index.id, "tableid"))
        if not index.columnnames:
            self.problem(
                f"{self.what(w, index.id, 'columnnames')}: the index has no columns; "
                "list the column names to index"
            )
        columns = [
            self.ident(c, self.what(w, index.id, f"columnnames[{i}]"))
            for i, c in enumerate(index.columnnames, start=1)
        ]
        method = fold((index.method or "btree").strip())
        if method not in INDEX_METHODS:
            self.problem(
                f"{self.what(w, index.id, 'method')}: {index.method!r} is not an index "
                f"method; use one of {', '.join(INDEX_METHODS)}"
            )
        unique = self.flag(index.isunique, self.what(w, index.id, "isunique"))
        concurrently = self.flag(index.concurrently, self.what(w, index.id, "concurrently"))
        if table is None or not columns:
            return
        if concurrently and table.row.haspart == 1:
            self.problem(
                f"{self.what(w, index.id, 'concurrently')}: {table.target} is partitioned, "
                "and PostgreSQL cannot build an index CONCURRENTLY on a partitioned table; "
                "set concurrently to 0, or build it per partition with script_steps"
            )
        for i, column in enumerate(columns, start=1):
            self.validations.append(
                Validation(
                    "column",
                    quote_ident(column),
                    self.what(w, index.id, f"columnnames[{i}]"),
                    table.target,
                    column=column,
                    columns=tuple(self.columns.get(table.target, {}).items()),
                )
            )
        given = self.name(index.indexname, self.what(w, index.id, "indexname"))
        name = given if given is not None else child_name(table.name, *columns, "idx")
        self.claim_relation(table.schema, name, f"script_indexes row {index.id}")
        sql = "CREATE UNIQUE INDEX" if unique else "CREATE INDEX"
        if concurrently:
            # IF NOT EXISTS only where a retry must find the index of an
            # interrupted build; elsewhere a relation of the same name must
            # fail the step, not silently leave the index uncreated.
            sql += " CONCURRENTLY IF NOT EXISTS"
        sql += (
            f" {quote_ident(name)} ON {table.sql_name} USING {method} "
            f"({', '.join(quote_ident(c) for c in columns)})"
        )
        if index.wherepredicate is not None and index.wherepredicate.strip():
            predicate = self.expression(
                index.wherepredicate,
                self.what(w, index.id, "wherepredicate"),
                "predicate",
                table.target,
            )
            sql += f" WHERE {predicate}"
        note = None
        if concurrently:
            note = (
                f"runs outside the script's transaction; a failed build leaves an INVALID "
                f"index {table.schema}.{name} that IF NOT EXISTS would skip, so drop it "
                "before a retry"
            )
        self.emit(
            sql,
            "create_index",
            table.target,
            transactional=not concurrently,
            note=note,
            name=qualified(table.schema, name),
        )

    # DBA-written statements ----------------------------------------------

    def statements(self) -> None:
        """script_procs and script_steps, merged on one steporder (NULL last)."""
        entries: list[tuple[tuple[bool, int, int, int], Step]] = []
        for proc in self.meta.procs:
            if proc.status == DESIGNING:
                continue
            what = self.what("script_procs", proc.id, "proccallstmt")
            if proc.scriptid != self.script_id:
                self.problem(
                    f"{self.what('script_procs', proc.id, 'scriptid')}: the row "
                    f"belongs to script {proc.scriptid}, not {self.script_id}; "
                    "leave it out"
                )
                continue
            sql = self.statement(proc.proccallstmt, what)
            key = (proc.steporder is None, proc.steporder or 0, 0, proc.id)
            entries.append((key, Step(sql, True, "proc_call", f"script_procs row {proc.id}")))
        for row in self.meta.steps:
            if row.status == DESIGNING:
                continue
            what = self.what("script_steps", row.id, "sqltext")
            if row.scriptid != self.script_id:
                self.problem(
                    f"{self.what('script_steps', row.id, 'scriptid')}: the row "
                    f"belongs to script {row.scriptid}, not {self.script_id}; "
                    "leave it out"
                )
                continue
            sql = self.statement(row.sqltext, what)
            note = row.description
            if not row.transactional:
                outside = "runs outside the script's transaction; declared idempotent by the DBA"
                note = f"{note}; {outside}" if note else outside
            key = (row.steporder is None, row.steporder or 0, 1, row.id)
            entries.append(
                (key, Step(sql, row.transactional, "sql", f"script_steps row {row.id}", note))
            )
        for _, step in sorted(entries, key=lambda e: e[0]):
            self.steps.append(step)

    def statement(self, text: str | None, what: str) -> str:
        try:
            return check_statement(text, what=what)
        except MetadataError as error:
            self.problem(error.message)
            return ""


def _delete_rule(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return " ".join(value.split()).upper()
