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

The compiler is three modules: admmgt_plpy._compile_base (its output, its
state and the checks that record problems), admmgt_plpy._compile_changes
(steps 2 to 7) and this one (the driver, and step 1: the tables a script
creates, with their tenant keys and partitions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from admmgt_plpy._calendar import (
    child_name,
    child_suffix,
    next_start,
    period_start,
    range_bound_literal,
)
from admmgt_plpy._compile_base import CompiledScript, Step, Table, Validation, checksum
from admmgt_plpy._compile_changes import ChangeCompiler
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._hashparts import hash_bound, hash_child
from admmgt_plpy._metadata import (
    ColumnChangeRow,
    ColumnRow,
    FkeyRow,
    IndexRow,
    PartitionRow,
    ProcRow,
    ScriptMetadata,
    ScriptRow,
    StepRow,
    TableRow,
)
from admmgt_plpy._names import qualified, quote_ident, quote_literal
from admmgt_plpy._partitioning import Partitioning, read_partitioning
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


# --- the compiler -------------------------------------------------------------


@dataclass(frozen=True)
class _TenantKey:
    column: str
    datatype: str


def compile_script(
    meta: ScriptMetadata, *, anchor: date, schema_map: Mapping[str, str] | None = None
) -> CompiledScript:
    """Compile one script; raise one MetadataError listing every problem found.

    ``schema_map`` (schema tenants): {template schema: the tenant's schema}.
    Every schema the metadata names (tables, columns, column changes,
    indexes, partitions, foreign keys, row-level security and the tenant
    context function all follow their table's) is mapped as it is read; a
    schema not in the map is a problem naming the row. The steps then name
    the tenant's schema; the checksum is of these steps, so the engine
    records the template's (unmapped) checksum in every history.
    """
    return _Compiler(meta, anchor, schema_map).run()


class _Compiler(ChangeCompiler):
    """The driver, and the tables a script creates: columns, tenant keys, partitions."""

    # driver --------------------------------------------------------------

    def run(self) -> CompiledScript:
        self.load_tables()
        columns_by_table: dict[int, list[ColumnRow]] = {}
        added: list[tuple[ColumnRow, Table]] = []
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
            self.script_id, steps, checksum(steps), tuple(self.validations), columns
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
            schema = self.schema(row.schemaname, self.what(what, row.id, "schemaname"))
            name = self.ident(row.tablename, self.what(what, row.id, "tablename"))
            table = Table(row, schema, name, this_script)
            self.tables[row.id] = table
            self.tables_by_name.setdefault((schema, name), table)

    def create_table(
        self, table: Table, columns: list[ColumnRow], partitions: list[PartitionRow]
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

    def tenant_key(self, table: Table, checked: list[tuple[ColumnRow, str]]) -> _TenantKey | None:
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

    def tenant_isolation(self, table: Table, tenant: _TenantKey, *, indexed: bool) -> None:
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
        self, table: Table, rows: list[PartitionRow], columns: set[str], haspart: bool
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
        table: Table,
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
        table: Table,
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

    def bound_value(self, table: Table, literal: str, row_id: int, field: str, column: str) -> None:
        """Have the template check that a partition bound suits its column's type."""
        datatype = self.columns.get(table.target, {}).get(column)
        what = self.what("script_table_partitions", row_id, field)
        self.validations.append(Validation("value", literal, what, table.target, datatype, column))

    def create_partitions(self, table: Table, plan: Partitioning, hasdefault: bool) -> None:
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
