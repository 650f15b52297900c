"""Partition calendars and child names."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from admmgt_plpy._calendar import (
    INTERVALS,
    check_interval,
    child_name,
    child_suffix,
    next_start,
    period_start,
    periods,
    range_bound_literal,
)
from admmgt_plpy._names import MetadataError, check_identifier


def sha8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


@pytest.mark.parametrize(
    ("interval", "day", "start", "following"),
    [
        ("day", date(2026, 10, 15), date(2026, 10, 15), date(2026, 10, 16)),
        ("day", date(2026, 12, 31), date(2026, 12, 31), date(2027, 1, 1)),
        # 2026-10-15 is a Thursday; weeks start on Monday.
        ("week", date(2026, 10, 15), date(2026, 10, 12), date(2026, 10, 19)),
        ("week", date(2026, 10, 12), date(2026, 10, 12), date(2026, 10, 19)),
        ("week", date(2026, 10, 18), date(2026, 10, 12), date(2026, 10, 19)),
        ("week", date(2027, 1, 1), date(2026, 12, 28), date(2027, 1, 4)),
        ("month", date(2026, 10, 15), date(2026, 10, 1), date(2026, 11, 1)),
        ("month", date(2026, 12, 31), date(2026, 12, 1), date(2027, 1, 1)),
        ("month", date(2028, 2, 29), date(2028, 2, 1), date(2028, 3, 1)),
        ("quarter", date(2026, 11, 20), date(2026, 10, 1), date(2027, 1, 1)),
        ("quarter", date(2026, 1, 1), date(2026, 1, 1), date(2026, 4, 1)),
        ("quarter", date(2026, 6, 30), date(2026, 4, 1), date(2026, 7, 1)),
        ("year", date(2026, 5, 5), date(2026, 1, 1), date(2027, 1, 1)),
        ("Month", date(2026, 5, 5), date(2026, 5, 1), date(2026, 6, 1)),
    ],
)
def test_period_start_and_next_start(
    interval: str, day: date, start: date, following: date
) -> None:
    assert period_start(interval, day) == start
    assert next_start(interval, start) == following
    assert next_start(interval, day) == following


def test_periods_cover_first_through_inclusive() -> None:
    assert periods("month", date(2026, 11, 30), date(2027, 1, 1)) == [
        (date(2026, 11, 1), date(2026, 12, 1)),
        (date(2026, 12, 1), date(2027, 1, 1)),
        (date(2027, 1, 1), date(2027, 2, 1)),
    ]
    assert periods("quarter", date(2026, 10, 1), date(2026, 12, 31)) == [
        (date(2026, 10, 1), date(2027, 1, 1)),
    ]
    assert len(periods("day", date(2026, 1, 1), date(2026, 12, 31))) == 365
    assert periods("week", date(2026, 10, 15), date(2026, 10, 1)) == []


def test_unknown_interval_lists_the_valid_ones() -> None:
    with pytest.raises(MetadataError) as caught:
        period_start("fortnight", date(2026, 1, 1))
    assert caught.value.message == (
        "partition interval: 'fortnight' is not a partition interval; "
        "use one of day, week, month, quarter, year"
    )
    with pytest.raises(MetadataError, match=r"^script 3, script_table_partitions row 8, partv"):
        check_interval(None, what="script 3, script_table_partitions row 8, partvalue")
    assert check_interval(" Quarter ", what="w") == "quarter"
    assert INTERVALS == ("day", "week", "month", "quarter", "year")


@pytest.mark.parametrize(
    ("interval", "lo", "suffix"),
    [
        ("month", date(2026, 10, 1), "2026_10"),
        ("quarter", date(2026, 10, 1), "2026_10"),
        ("year", date(2026, 1, 1), "2026_01"),
        ("week", date(2026, 10, 12), "2026_10_12"),
        ("day", date(2026, 3, 5), "2026_03_05"),
    ],
)
def test_child_suffix(interval: str, lo: date, suffix: str) -> None:
    assert child_suffix(interval, lo) == suffix


def test_range_bound_literal() -> None:
    assert range_bound_literal(date(2026, 10, 1)) == "'2026-10-01'"


def test_child_names_follow_the_proof_of_concept() -> None:
    assert child_name("orders", "2026_10") == "orders_2026_10"
    assert child_name("orders", "region", "eu") == "orders_region_eu"
    assert child_name("orders", "region", "eu", "2026_10") == "orders_region_eu_2026_10"
    assert child_name("orders", "region", "EU") == "orders_region_eu"
    assert child_name("orders", "default") == "orders_default"


def test_values_with_characters_not_allowed_get_replaced_and_hashed() -> None:
    spaced = child_name("orders", "region", "north america")
    dashed = child_name("orders", "region", "north-america")
    assert spaced == "orders_region_north_america_" + sha8("orders_region_north america")
    assert dashed == "orders_region_north_america_" + sha8("orders_region_north-america")
    assert spaced != dashed
    # A value that needed no replacement keeps its plain name, distinct from both.
    assert child_name("orders", "region", "north_america") == "orders_region_north_america"
    # The date suffix stays last.
    assert child_name("orders", "region", "a/b", "2026_10") == (
        "orders_region_a_b_" + sha8("orders_region_a/b_2026_10") + "_2026_10"
    )


def test_long_names_are_truncated_with_hash_and_keep_the_suffix() -> None:
    table = "customer_order_line_items_with_a_rather_long_name"  # 49 bytes
    name = child_name(table, "region", "europe", "2026_10")
    full = f"{table}_region_europe_2026_10"
    assert len(full) > 63
    tail = "_" + sha8(full) + "_2026_10"
    assert name == full[: 63 - len(tail)].rstrip("_") + tail
    assert len(name.encode("utf-8")) <= 63
    assert name.endswith("_2026_10")
    # Two long names that differ only past the cut stay distinct.
    other = child_name(table, "region", "europe_west", "2026_10")
    assert other != name and len(other) <= 63


def test_long_names_without_a_suffix_end_with_the_hash() -> None:
    value = "v" * 80
    name = child_name("orders", "region", value)
    full = f"orders_region_{value}"
    assert name == full[:54] + "_" + sha8(full)
    assert len(name) == 63


def test_truncation_respects_character_boundaries() -> None:
    name = child_name("é" * 30, "región", "2026_10")
    assert len(name.encode("utf-8")) <= 63
    assert name.endswith("_2026_10")
    assert check_identifier(name, what="w") == name
    # Exactly 63 bytes is not truncated.
    assert child_name("a" * 55, "2026_10") == "a" * 55 + "_2026_10"
    assert child_name("a" * 56, "2026_10") != "a" * 56 + "_2026_10"


def test_the_examples_in_docs_metadata_md() -> None:
    assert child_name("orders", "region", "north america") == (
        "orders_region_north_america_f89325ee"
    )
    assert (
        child_name(
            "customer_order_line_items_with_a_rather_long_name", "region", "europe", "2026_10"
        )
        == "customer_order_line_items_with_a_rather_long_n_d8497c66_2026_10"
    )
