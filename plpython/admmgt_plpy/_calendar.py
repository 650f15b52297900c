"""Partition calendars and partition child names.

Pure functions shared by the compiler (first partitions of a new table) and by
maintenance (the partitions ahead of today).

Intervals: ``day``, ``week`` (ISO weeks, starting Monday), ``month``,
``quarter`` (starting January, April, July, October) and ``year``. A period is
the half-open range [lo, hi) that a range partition covers.

Child names (``child_name``) follow the proof of concept and extend it:

- range child: ``<table>_<suffix>``
- list child: ``<table>_<column>_<value>``
- range sub-partition of a list child: ``<table>_<column>_<value>_<suffix>``
- default partitions: ``<table>_default`` and ``<table>_<column>_<value>_default``

where ``<suffix>`` is made from the lower bound: ``<yyyy>_<mm>`` for month,
quarter and year (so the quarter starting 2026-10-01 is ``2026_10`` and the
year 2026 is ``2026_01``, as in the proof of concept) and ``<yyyy>_<mm>_<dd>``
for day and week.

Names are folded to lower case and characters that are not allowed in
identifiers become ``_``. Because that can map two list values to one name,
and because PostgreSQL truncates names beyond 63 bytes, such names get
``_`` + the first 8 hex digits of the sha256 of the full unmodified name: the
head is truncated on a character boundary to fit 63 bytes, and a trailing
date suffix or ``default``/``pkey``/``fkey``/``idx`` word is kept intact.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta

from admmgt_plpy._errors import MetadataError
from admmgt_plpy._names import MAX_IDENTIFIER_BYTES, fold, identifier_char, quote_literal

__all__ = [
    "INTERVALS",
    "check_interval",
    "child_name",
    "child_suffix",
    "next_start",
    "period_start",
    "periods",
    "range_bound_literal",
]

INTERVALS: tuple[str, ...] = ("day", "week", "month", "quarter", "year")

# Name endings that say what a name is; truncation keeps them readable.
_KEPT_ENDINGS = re.compile(r"\d{4}_\d{2}(_\d{2})?|default|pkey|fkey|idx")
_HASH_HEX_DIGITS = 8


def check_interval(value: object, *, what: str) -> str:
    """Return the interval folded and stripped, or raise MetadataError listing the valid ones."""
    folded = fold(value.strip()) if isinstance(value, str) else None
    if folded not in INTERVALS:
        raise MetadataError(
            f"{what}: {value!r} is not a partition interval; use one of {', '.join(INTERVALS)}"
        )
    return folded


def _interval(value: str) -> str:
    return check_interval(value, what="partition interval")


def period_start(interval: str, d: date) -> date:
    """The first day of the period of ``interval`` that contains ``d``."""
    unit = _interval(interval)
    if unit == "day":
        return d
    if unit == "week":
        return d - timedelta(days=d.weekday())
    if unit == "month":
        return d.replace(day=1)
    if unit == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    return date(d.year, 1, 1)


def next_start(interval: str, start: date) -> date:
    """The first day of the period after the one that contains ``start``."""
    unit = _interval(interval)
    lo = period_start(unit, start)
    if unit == "day":
        return lo + timedelta(days=1)
    if unit == "week":
        return lo + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    month_index = lo.year * 12 + (lo.month - 1) + months
    return date(month_index // 12, month_index % 12 + 1, 1)


def periods(interval: str, first: date, through: date) -> list[tuple[date, date]]:
    """Every [lo, hi) period from the one containing ``first`` to the one containing ``through``."""
    unit = _interval(interval)
    result: list[tuple[date, date]] = []
    lo = period_start(unit, first)
    while lo <= through:
        hi = next_start(unit, lo)
        result.append((lo, hi))
        lo = hi
    return result


def child_suffix(interval: str, lo: date) -> str:
    """The name suffix of the period starting at ``lo`` (see the module docstring)."""
    unit = _interval(interval)
    if unit in ("day", "week"):
        return f"{lo.year:04d}_{lo.month:02d}_{lo.day:02d}"
    return f"{lo.year:04d}_{lo.month:02d}"


def range_bound_literal(d: date) -> str:
    """A date as the literal used in ``FOR VALUES FROM (...) TO (...)``."""
    return quote_literal(d.isoformat())


def _name_part(part: str) -> tuple[str, bool]:
    """The part folded with disallowed characters replaced by ``_``; and whether any were."""
    folded = fold(part)
    cleaned = "".join(c if identifier_char(c) else "_" for c in folded)
    return cleaned, cleaned != folded


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def child_name(*parts: str) -> str:
    """Join ``parts`` with ``_`` into an identifier of at most 63 bytes (see module docstring)."""
    if not parts:
        raise ValueError("child_name needs at least one part")
    cleaned = [_name_part(p) for p in parts]
    name = "_".join(c for c, _ in cleaned)
    replaced = any(r for _, r in cleaned)
    if not replaced and len(name.encode("utf-8")) <= MAX_IDENTIFIER_BYTES:
        return name
    full = "_".join(fold(p) for p in parts)
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:_HASH_HEX_DIGITS]
    last = cleaned[-1][0]
    if len(cleaned) > 1 and _KEPT_ENDINGS.fullmatch(last):
        head = "_".join(c for c, _ in cleaned[:-1])
        tail = f"_{digest}_{last}"
    else:
        head = name
        tail = f"_{digest}"
    head = _truncate_utf8(head, MAX_IDENTIFIER_BYTES - len(tail.encode("utf-8")))
    return head.rstrip("_") + tail
