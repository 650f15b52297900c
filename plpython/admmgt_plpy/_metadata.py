"""The metadata rows, read: typed, checked, and partitioning understood once.

Pure: rows in (plain dicts, as ``plpy.execute`` returns them), frozen
dataclasses out; no plpy, no I/O. Two kinds of reader live here:

- the row readers: each ``admmgt.script_*`` row becomes its ``*Row`` class,
  every field converted or refused with a ``MetadataError`` naming the table,
  the row and the field; ``ScriptMetadata`` gathers one script's rows for the
  compiler (admmgt_plpy._compile);
- the partition reader: ``read_partitioning`` turns a table's
  script_table_partitions rows into one ``Partitioning`` (kind, column,
  interval or modulus, list children and their sub-partitions, tablespaces).
  The compiler makes a table's first partitions from it; applyMaintenance and
  lifecycleMgt (admmgt_plpy._partition_plan.range_sets) find the range parents
  that grow and expire from the same reading, so the two cannot drift apart.

Problems are reported through ``Checks``: the compiler passes itself, to list
every problem of a script at once; ``Problems`` collects them for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol, TypeVar

from admmgt_plpy._calendar import check_interval
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._hashparts import check_modulus
from admmgt_plpy._names import check_identifier, fold
from admmgt_plpy._types import DESIGNING

__all__ = [
    "PARTITION_KINDS",
    "Checks",
    "ColumnChangeRow",
    "ColumnRow",
    "FkeyRow",
    "IndexRow",
    "ListPartition",
    "PartitionRow",
    "Partitioning",
    "Problems",
    "ProcRow",
    "ScriptMetadata",
    "ScriptRow",
    "StepRow",
    "TableRow",
    "check_tablespace",
    "is_identifier",
    "read_partitioning",
]

PARTITION_KINDS = ("range", "list", "hash")


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


# --- partitioning ---------------------------------------------------------------


def is_identifier(value: object) -> bool:
    """Whether ``value`` passes check_identifier (its problem is reported elsewhere)."""
    try:
        check_identifier(value, what="")
    except MetadataError:
        return False
    return True


def check_tablespace(value: object, *, what: str) -> str | None:
    """A tablespace name, folded; None when NULL or blank (the database's default)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = check_identifier(value.strip() if isinstance(value, str) else value, what=what)
    if name == "pg_global":
        # The proof of concept dropped it silently; PostgreSQL refuses it for tables.
        raise MetadataError(
            f"{what}: pg_global holds only shared system catalogs and takes no table; "
            "write pg_default (or leave it empty) for the database's default tablespace"
        )
    return name


class Checks(Protocol):
    """Where a reader reports problems and has names checked (the compiler is one)."""

    def what(self, table: str, row_id: int, field: str) -> str: ...

    def problem(self, message: str) -> None: ...

    def ident(self, value: object, what: str) -> str: ...

    def tablespace(self, value: str | None, what: str, target: str) -> str | None: ...


@dataclass
class Problems:
    """Checks that collect every problem, for readers outside the compiler.

    ``what`` names a field as ``<table> row <id>, <field>``; ``prefix`` (such
    as ``script 4, ``) goes before it.
    """

    prefix: str = ""
    problems: list[str] = field(default_factory=list)
    _invalid: int = 0

    def what(self, table: str, row_id: int, field: str) -> str:
        return f"{self.prefix}{table} row {row_id}, {field}"

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def ident(self, value: object, what: str) -> str:
        try:
            return check_identifier(value, what=what)
        except MetadataError as error:
            self.problem(error.message)
            self._invalid += 1
            return f"invalid_{self._invalid}"  # never used: the caller has problems

    def tablespace(self, value: str | None, what: str, target: str) -> str | None:
        try:
            return check_tablespace(value, what=what)
        except MetadataError as error:
            self.problem(error.message)
            return None

    def raise_any(self) -> None:
        """Raise one MetadataError carrying every problem found, if there is one."""
        if self.problems:
            raise MetadataError("; ".join(self.problems), problems=tuple(self.problems))


@dataclass(frozen=True)
class ListPartition:
    """One list child: its value, and how it is sub-partitioned (if at all)."""

    row_id: int
    value: str
    tablespace: str | None
    sub_interval: str | None  # range sub-partitions of this period
    sub_tablespace: str | None
    sub_modulus: int | None = None  # hash sub-partitions instead of range


@dataclass(frozen=True)
class Partitioning:
    """A table's partitioning as its script_table_partitions rows describe it.

    ``range``: ``interval`` long periods of ``column``; with ``sub_modulus``,
    each period is hash-partitioned by ``subcolumn`` (range over hash).
    ``list``: one child per ``children`` value, each one plain, range or hash
    sub-partitioned by ``subcolumn``. ``hash``: ``modulus`` children.
    """

    kind: str  # "range", "list" or "hash"
    column: str
    interval: str | None
    tablespace: str | None
    children: tuple[ListPartition, ...]
    subcolumn: str | None
    row_id: int = 0  # the (first) script_table_partitions row
    modulus: int | None = None  # hash: the number of children
    sub_modulus: int | None = None  # range: each range child is hash-partitioned
    sub_tablespace: str | None = None


_PARTS = "script_table_partitions"


def _interval(checks: Checks, value: str | None, what: str) -> str:
    try:
        return check_interval(value, what=what)
    except MetadataError as error:
        checks.problem(error.message)
        return "month"


def _modulus(checks: Checks, value: str | None, what: str) -> int:
    try:
        return check_modulus(value, what=what)
    except MetadataError as error:
        checks.problem(error.message)
        return 2


def _has_sub(row: PartitionRow) -> bool:
    return any(v is not None for v in (row.subparttype, row.subpartcolumnname, row.subpartvalue))


def _column(
    checks: Checks, rows: Sequence[PartitionRow], target: str, columns: Collection[str] | None
) -> str:
    names = [
        checks.ident(r.partcolumnname, checks.what(_PARTS, r.id, "partcolumnname")) for r in rows
    ]
    if len(set(names)) > 1:
        checks.problem(
            f"{checks.what(_PARTS, rows[0].id, 'partcolumnname')}: table {target} is "
            f"partitioned by different columns {sorted(set(names))} in rows "
            f"{', '.join(str(r.id) for r in rows)}; use one column"
        )
    first = rows[0]
    if columns is not None and is_identifier(first.partcolumnname) and names[0] not in columns:
        checks.problem(
            f"{checks.what(_PARTS, first.id, 'partcolumnname')}: {first.partcolumnname!r} is "
            f"not a column of {target}; name one of its columns"
        )
    return names[0]


def _sub_column(
    checks: Checks, row: PartitionRow, target: str, columns: Collection[str] | None
) -> str:
    subcolumn = checks.ident(
        row.subpartcolumnname, checks.what(_PARTS, row.id, "subpartcolumnname")
    )
    if columns is not None and is_identifier(row.subpartcolumnname) and subcolumn not in columns:
        checks.problem(
            f"{checks.what(_PARTS, row.id, 'subpartcolumnname')}: "
            f"{row.subpartcolumnname!r} is not a column of {target}; "
            "name one of its columns"
        )
    return subcolumn


def read_partitioning(
    rows: Sequence[PartitionRow],
    target: str,
    checks: Checks,
    *,
    columns: Collection[str] | None = None,
) -> Partitioning | None:
    """The partitioning of table ``target`` (``schema.table``) from its rows, in id order.

    Every problem goes to ``checks``; None when the rows do not even say how
    the table is partitioned. ``columns``: the table's columns, which the
    partition columns must be among (None: not checked here).
    """
    if not rows:
        return None
    w = _PARTS
    kinds = {fold(r.parttype.strip()) if r.parttype else None for r in rows}
    first = rows[0]
    if len(kinds) > 1:
        checks.problem(
            f"{checks.what(w, first.id, 'parttype')}: table {target} mixes "
            f"partition types {sorted(str(k) for k in kinds)} in rows "
            f"{', '.join(str(r.id) for r in rows)}; use either one range row or list rows"
        )
        return None
    kind = kinds.pop()
    if kind not in PARTITION_KINDS:
        checks.problem(
            f"{checks.what(w, first.id, 'parttype')}: {first.parttype!r} is not a "
            "partition type; use range, list or hash"
        )
        return None
    column = _column(checks, rows, target, columns)
    if kind in ("range", "hash"):
        if len(rows) > 1:
            checks.problem(
                f"{checks.what(w, rows[1].id, 'parttype')}: {kind}-partitioned table "
                f"{target} has {len(rows)} script_table_partitions rows "
                f"({', '.join(str(r.id) for r in rows)}); keep exactly one"
            )
        tablespace = checks.tablespace(first.parttbs, checks.what(w, first.id, "parttbs"), target)
        if kind == "hash":
            if _has_sub(first):
                checks.problem(
                    f"{checks.what(w, first.id, 'subparttype')}: a hash partition cannot be "
                    "sub-partitioned; clear the subpart columns"
                )
            modulus = _modulus(checks, first.partvalue, checks.what(w, first.id, "partvalue"))
            return Partitioning(
                "hash", column, None, tablespace, (), None, first.id, modulus=modulus
            )
        interval = _interval(checks, first.partvalue, checks.what(w, first.id, "partvalue"))
        if not _has_sub(first):
            return Partitioning("range", column, interval, tablespace, (), None, first.id)
        subtype = fold(first.subparttype.strip()) if first.subparttype else None
        if subtype != "hash":
            checks.problem(
                f"{checks.what(w, first.id, 'subparttype')}: {first.subparttype!r} is not "
                "supported under range partitions; use hash (subparttype hash, the "
                "modulus in subpartvalue), or partition by list"
            )
        subcolumn = _sub_column(checks, first, target, columns)
        return Partitioning(
            "range",
            column,
            interval,
            tablespace,
            (),
            subcolumn,
            first.id,
            sub_modulus=_modulus(
                checks, first.subpartvalue, checks.what(w, first.id, "subpartvalue")
            ),
            sub_tablespace=checks.tablespace(
                first.subparttbs, checks.what(w, first.id, "subparttbs"), target
            ),
        )
    children: list[ListPartition] = []
    values: dict[str, int] = {}
    subcolumns: dict[str, int] = {}
    for row in rows:
        if row.partvalue is None:
            checks.problem(
                f"{checks.what(w, row.id, 'partvalue')}: a list partition needs a value; "
                "set partvalue"
            )
            continue
        if row.partvalue in values:
            checks.problem(
                f"{checks.what(w, row.id, 'partvalue')}: {row.partvalue!r} is also the value "
                f"of row {values[row.partvalue]}; each list value belongs to one row"
            )
        values[row.partvalue] = row.id
        sub_interval: str | None = None
        sub_modulus: int | None = None
        sub_tablespace: str | None = None
        if _has_sub(row):
            subtype = fold(row.subparttype.strip()) if row.subparttype else None
            if subtype not in ("range", "hash"):
                checks.problem(
                    f"{checks.what(w, row.id, 'subparttype')}: {row.subparttype!r} is not "
                    "supported; sub-partitions are range or hash partitions (subparttype "
                    "range or hash)"
                )
            subcolumn = _sub_column(checks, row, target, columns)
            subcolumns.setdefault(subcolumn, row.id)
            if subtype == "hash":
                sub_modulus = _modulus(
                    checks, row.subpartvalue, checks.what(w, row.id, "subpartvalue")
                )
            else:
                sub_interval = _interval(
                    checks, row.subpartvalue, checks.what(w, row.id, "subpartvalue")
                )
            sub_tablespace = checks.tablespace(
                row.subparttbs, checks.what(w, row.id, "subparttbs"), target
            )
        tablespace = checks.tablespace(row.parttbs, checks.what(w, row.id, "parttbs"), target)
        children.append(
            ListPartition(
                row.id, row.partvalue, tablespace, sub_interval, sub_tablespace, sub_modulus
            )
        )
    if len(subcolumns) > 1:
        checks.problem(
            f"{checks.what(w, rows[0].id, 'subpartcolumnname')}: table {target} is "
            f"sub-partitioned by different columns {sorted(subcolumns)} (rows "
            f"{', '.join(str(i) for i in subcolumns.values())}); use one column"
        )
    subcolumn_name = next(iter(subcolumns), None)
    return Partitioning("list", column, None, None, tuple(children), subcolumn_name)
