"""The metadata rows, read: typed and checked.

Pure: rows in (plain dicts, as ``plpy.execute`` returns them), frozen
dataclasses out; no plpy, no I/O. Each ``admmgt.script_*`` row becomes its
``*Row`` class, every field converted or refused with a ``MetadataError``
naming the table, the row and the field; ``ScriptMetadata`` gathers one
script's rows for the compiler (admmgt_plpy._compile). A table's
partitioning is read from its ``PartitionRow``s by admmgt_plpy._partitioning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from admmgt_plpy._errors import MetadataError
from admmgt_plpy._types import DESIGNING

__all__ = [
    "ColumnChangeRow",
    "ColumnRow",
    "FkeyRow",
    "IndexRow",
    "PartitionRow",
    "ProcRow",
    "ScriptMetadata",
    "ScriptRow",
    "StepRow",
    "TableRow",
]

# --- reading rows -------------------------------------------------------------


def _row_error(table: str, row: Mapping[str, object], key: str, expected: str) -> MetadataError:
    return MetadataError(
        f"{table} row {row.get('id')!r}, {key}: {row.get(key)!r} is not {expected}; fix the row"
    )


def _int(row: Mapping[str, object], key: str, table: str) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise _row_error(table, row, key, "an integer")


def _required_int(row: Mapping[str, object], key: str, table: str) -> int:
    value = _int(row, key, table)
    if value is None:
        raise _row_error(table, row, key, "an integer")
    return value


def _text(row: Mapping[str, object], key: str, table: str) -> str | None:
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _row_error(table, row, key, "text")


def _bool(row: Mapping[str, object], key: str, table: str) -> bool | None:
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("t", "true", "f", "false"):
        return value.lower() in ("t", "true")
    raise _row_error(table, row, key, "a boolean")


def _text_array(row: Mapping[str, object], key: str, table: str) -> tuple[str, ...]:
    """A text[] value: a list from plpy, or its text form ``{a,b}`` from elsewhere."""
    value = row.get(key)
    if value is None:
        return ()
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        inner = value[1:-1]
        return tuple(part.strip().strip('"') for part in inner.split(",")) if inner else ()
    raise _row_error(table, row, key, "an array of names")


def _date(row: Mapping[str, object], key: str, table: str) -> date | None:
    """A date from a date, a datetime, or the ISO text PL/Python gives for timestamptz."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise _row_error(table, row, key, "a date")


# --- input rows ---------------------------------------------------------------


@dataclass(frozen=True)
class ScriptRow:
    """An ``admmgt.scripts`` row: ``id`` is the version number."""

    id: int
    description: str | None
    status: int
    created_date: date | None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ScriptRow:
        t = "scripts"
        return cls(
            id=_required_int(row, "id", t),
            description=_text(row, "description", t),
            status=_int(row, "status", t) or DESIGNING,
            created_date=_date(row, "created_date", t),
        )


@dataclass(frozen=True)
class TableRow:
    """An ``admmgt.script_tables`` row (``lifecycle`` is maintenance's, not read here)."""

    id: int
    scriptid: int
    schemaname: str | None
    tablename: str | None
    status: int
    haspart: int
    tblspace: str | None
    hasdefault: int
    tenantcolumn: str | None = None
    tenanttype: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> TableRow:
        t = "script_tables"
        return cls(
            id=_required_int(row, "id", t),
            scriptid=_required_int(row, "scriptid", t),
            schemaname=_text(row, "schemaname", t),
            tablename=_text(row, "tablename", t),
            status=_int(row, "status", t) or DESIGNING,
            haspart=_int(row, "haspart", t) or 0,
            tblspace=_text(row, "tblspace", t),
            hasdefault=_int(row, "hasdefault", t) or 0,
            tenantcolumn=_text(row, "tenantcolumn", t),
            tenanttype=_text(row, "tenanttype", t),
        )


@dataclass(frozen=True)
class ColumnRow:
    """An ``admmgt.script_table_columns`` row; NULL nullable means nullable (1)."""

    id: int
    tableid: int
    scriptid: int
    columnname: str | None
    datatype: str | None
    nullable: int
    defaultval: str | None
    isprimarykey: int
    isidentity: int
    status: int

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ColumnRow:
        t = "script_table_columns"
        nullable = _int(row, "nullable", t)
        return cls(
            id=_required_int(row, "id", t),
            tableid=_required_int(row, "tableid", t),
            scriptid=_required_int(row, "scriptid", t),
            columnname=_text(row, "columnname", t),
            datatype=_text(row, "datatype", t),
            nullable=1 if nullable is None else nullable,
            defaultval=_text(row, "defaultval", t),
            isprimarykey=_int(row, "isprimarykey", t) or 0,
            isidentity=_int(row, "isidentity", t) or 0,
            status=_int(row, "status", t) or DESIGNING,
        )


@dataclass(frozen=True)
class FkeyRow:
    """An ``admmgt.script_table_fkeys`` row: one column pair of a foreign key."""

    id: int
    scriptid: int
    schemaname: str | None
    childtablename: str | None
    childcolumnname: str | None
    parenttablename: str | None
    parentcolumnname: str | None
    keyorder: int | None
    delrule: str | None
    novalidate: int
    status: int
    constraintname: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> FkeyRow:
        t = "script_table_fkeys"
        return cls(
            id=_required_int(row, "id", t),
            scriptid=_required_int(row, "scriptid", t),
            schemaname=_text(row, "schemaname", t),
            childtablename=_text(row, "childtablename", t),
            childcolumnname=_text(row, "childcolumnname", t),
            parenttablename=_text(row, "parenttablename", t),
            parentcolumnname=_text(row, "parentcolumnname", t),
            keyorder=_int(row, "keyorder", t),
            delrule=_text(row, "delrule", t),
            novalidate=_int(row, "novalidate", t) or 0,
            status=_int(row, "status", t) or DESIGNING,
            constraintname=_text(row, "constraintname", t),
        )


@dataclass(frozen=True)
class PartitionRow:
    """An ``admmgt.script_table_partitions`` row (it has no status of its own)."""

    id: int
    tableid: int
    partcolumnname: str | None
    parttype: str | None
    partvalue: str | None
    parttbs: str | None
    subpartcolumnname: str | None
    subparttype: str | None
    subpartvalue: str | None
    subparttbs: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> PartitionRow:
        t = "script_table_partitions"
        return cls(
            id=_required_int(row, "id", t),
            tableid=_required_int(row, "tableid", t),
            partcolumnname=_text(row, "partcolumnname", t),
            parttype=_text(row, "parttype", t),
            partvalue=_text(row, "partvalue", t),
            parttbs=_text(row, "parttbs", t),
            subpartcolumnname=_text(row, "subpartcolumnname", t),
            subparttype=_text(row, "subparttype", t),
            subpartvalue=_text(row, "subpartvalue", t),
            subparttbs=_text(row, "subparttbs", t),
        )


@dataclass(frozen=True)
class ProcRow:
    """An ``admmgt.script_procs`` row; ``steporder`` is admmgt's addition."""

    id: int
    scriptid: int
    proccallstmt: str | None
    status: int
    steporder: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ProcRow:
        t = "script_procs"
        return cls(
            id=_required_int(row, "id", t),
            scriptid=_required_int(row, "scriptid", t),
            proccallstmt=_text(row, "proccallstmt", t),
            status=_int(row, "status", t) or DESIGNING,
            steporder=_int(row, "steporder", t),
        )


@dataclass(frozen=True)
class ColumnChangeRow:
    """An ``admmgt.script_column_changes`` row: ALTER COLUMN or DROP COLUMN."""

    id: int
    scriptid: int
    tableid: int
    columnname: str | None
    newdatatype: str | None
    usingexpr: str | None
    setnullable: int | None
    setdefault: str | None
    dropdefault: int
    dropcolumn: int
    dropintended: bool
    status: int

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ColumnChangeRow:
        t = "script_column_changes"
        return cls(
            id=_required_int(row, "id", t),
            scriptid=_required_int(row, "scriptid", t),
            tableid=_required_int(row, "tableid", t),
            columnname=_text(row, "columnname", t),
            newdatatype=_text(row, "newdatatype", t),
            usingexpr=_text(row, "usingexpr", t),
            setnullable=_int(row, "setnullable", t),
            setdefault=_text(row, "setdefault", t),
            dropdefault=_int(row, "dropdefault", t) or 0,
            dropcolumn=_int(row, "dropcolumn", t) or 0,
            dropintended=bool(_bool(row, "dropintended", t)),
            status=_int(row, "status", t) or DESIGNING,
        )


@dataclass(frozen=True)
class IndexRow:
    """An ``admmgt.script_indexes`` row."""

    id: int
    scriptid: int
    tableid: int
    indexname: str | None
    columnnames: tuple[str, ...]
    isunique: int
    wherepredicate: str | None
    method: str | None
    concurrently: int
    status: int

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> IndexRow:
        t = "script_indexes"
        return cls(
            id=_required_int(row, "id", t),
            scriptid=_required_int(row, "scriptid", t),
            tableid=_required_int(row, "tableid", t),
            indexname=_text(row, "indexname", t),
            columnnames=_text_array(row, "columnnames", t),
            isunique=_int(row, "isunique", t) or 0,
            wherepredicate=_text(row, "wherepredicate", t),
            method=_text(row, "method", t),
            concurrently=_int(row, "concurrently", t) or 0,
            status=_int(row, "status", t) or DESIGNING,
        )


@dataclass(frozen=True)
class StepRow:
    """An ``admmgt.script_steps`` row: one DBA-written statement."""

    id: int
    scriptid: int
    steporder: int | None
    sqltext: str | None
    transactional: bool
    description: str | None
    status: int

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> StepRow:
        t = "script_steps"
        transactional = _bool(row, "transactional", t)
        return cls(
            id=_required_int(row, "id", t),
            scriptid=_required_int(row, "scriptid", t),
            steporder=_int(row, "steporder", t),
            sqltext=_text(row, "sqltext", t),
            transactional=True if transactional is None else transactional,
            description=_text(row, "description", t),
            status=_int(row, "status", t) or DESIGNING,
        )


_Row = TypeVar("_Row")


def _rows(
    make: Callable[[Mapping[str, object]], _Row], rows: Iterable[Mapping[str, object]]
) -> tuple[_Row, ...]:
    return tuple(make(r) for r in rows)


@dataclass(frozen=True)
class ScriptMetadata:
    """Everything the compiler reads for one script.

    ``referenced_tables`` are the script_tables rows of earlier scripts that
    this script's column, column-change or index rows refer to by ``tableid``.
    ``partitions`` are the script_table_partitions rows of this script's tables.
    """

    script: ScriptRow
    tables: tuple[TableRow, ...] = ()
    columns: tuple[ColumnRow, ...] = ()
    referenced_tables: tuple[TableRow, ...] = ()
    fkeys: tuple[FkeyRow, ...] = ()
    partitions: tuple[PartitionRow, ...] = ()
    procs: tuple[ProcRow, ...] = ()
    column_changes: tuple[ColumnChangeRow, ...] = ()
    indexes: tuple[IndexRow, ...] = ()
    steps: tuple[StepRow, ...] = ()

    @classmethod
    def from_rows(
        cls,
        script: Mapping[str, object],
        *,
        tables: Iterable[Mapping[str, object]] = (),
        columns: Iterable[Mapping[str, object]] = (),
        referenced_tables: Iterable[Mapping[str, object]] = (),
        fkeys: Iterable[Mapping[str, object]] = (),
        partitions: Iterable[Mapping[str, object]] = (),
        procs: Iterable[Mapping[str, object]] = (),
        column_changes: Iterable[Mapping[str, object]] = (),
        indexes: Iterable[Mapping[str, object]] = (),
        steps: Iterable[Mapping[str, object]] = (),
    ) -> ScriptMetadata:
        return cls(
            script=ScriptRow.from_row(script),
            tables=_rows(TableRow.from_row, tables),
            columns=_rows(ColumnRow.from_row, columns),
            referenced_tables=_rows(TableRow.from_row, referenced_tables),
            fkeys=_rows(FkeyRow.from_row, fkeys),
            partitions=_rows(PartitionRow.from_row, partitions),
            procs=_rows(ProcRow.from_row, procs),
            column_changes=_rows(ColumnChangeRow.from_row, column_changes),
            indexes=_rows(IndexRow.from_row, indexes),
            steps=_rows(StepRow.from_row, steps),
        )
