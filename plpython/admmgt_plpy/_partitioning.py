"""The partition reader: a table's script_table_partitions rows, understood once.

Pure, like admmgt_plpy._metadata, whose ``PartitionRow`` it reads:
``read_partitioning`` turns a table's rows into one ``Partitioning`` (kind,
column, interval or modulus, list children and their sub-partitions,
tablespaces). The compiler makes a table's first partitions from it;
applyMaintenance and lifecycleMgt (admmgt_plpy._partition_plan.range_sets)
find the range parents that grow and expire from the same reading, so the two
cannot drift apart.

Problems are reported through ``Checks``: the compiler passes itself, to list
every problem of a script at once; ``Problems`` collects them for the others.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from admmgt_plpy._calendar import check_interval
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._hashparts import check_modulus
from admmgt_plpy._metadata import PartitionRow
from admmgt_plpy._names import check_identifier, fold

__all__ = [
    "PARTITION_KINDS",
    "Checks",
    "ListPartition",
    "Partitioning",
    "Problems",
    "check_tablespace",
    "is_identifier",
    "read_partitioning",
]

PARTITION_KINDS = ("range", "list", "hash")


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
