"""The compiler's steps that change tables: columns added, altered and dropped,
foreign keys, indexes, and the DBA-written statements (procedure calls, raw SQL).

A part of the compiler (admmgt_plpy._compile builds on ``ChangeCompiler``);
pure, like it.
"""

from __future__ import annotations

from admmgt_plpy._calendar import child_name
from admmgt_plpy._compile_base import CompilerBase, Step, Table, Validation
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._metadata import ColumnChangeRow, ColumnRow, FkeyRow, IndexRow
from admmgt_plpy._names import check_statement, fold, qualified, quote_ident
from admmgt_plpy._types import DESIGNING

DELETE_RULES = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")
INDEX_METHODS = ("btree", "hash", "gin", "gist", "brin", "spgist")


class ChangeCompiler(CompilerBase):
    """The steps of a script after its CREATE TABLEs (docs/metadata.md, "Step order")."""

    # columns -------------------------------------------------------------

    def add_column(self, column: ColumnRow, table: Table) -> None:
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

    def changed_column(self, change: ColumnChangeRow) -> tuple[Table, str] | None:
        """The table and column a script_column_changes row names, or None
        (each problem noted) when the row cannot be compiled."""
        w = "script_column_changes"
        if change.scriptid != self.script_id:
            self.problem(
                f"{self.what(w, change.id, 'scriptid')}: the row belongs to script "
                f"{change.scriptid}, not {self.script_id}; leave it out"
            )
            return None
        table = self.table_for(change.tableid, self.what(w, change.id, "tableid"))
        name = self.ident(change.columnname, self.what(w, change.id, "columnname"))
        return None if table is None else (table, name)

    def alter_column(self, change: ColumnChangeRow) -> None:
        w = "script_column_changes"
        found = self.changed_column(change)
        if found is None:
            return
        table, name = found
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
        found = self.changed_column(change)
        if found is None:
            return
        table, name = found
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
            schema = self.schema(row.schemaname, self.what(w, row.id, "schemaname"))
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
