"""The pure parts of maintenance, retention and drift on schema tenants (issue 16):
range sets and rules placed in a tenant's schema, archive schemas that never
collide, and the drift reader's session and name mapping."""

from __future__ import annotations

from datetime import date

from admmgt_plpy._drift_sql import OBJECTS, SESSION, fingerprint_sql, objects_sql, session_sql
from admmgt_plpy._lifecycle_policy import (
    Policy,
    Rule,
    archive_conflicts,
    rules_for_schema_tenants,
    schema_archive,
)
from admmgt_plpy._partition_plan import (
    Child,
    RangeSet,
    create_statements,
    for_schema_tenants,
)

EVENTS = RangeSet(1, "mgttest", "events", "events", ("events",), "on_day", "month", None)
ELSEWHERE = RangeSet(2, "public", "logs", "logs", ("logs",), "on_day", "day", None)


def test_a_range_set_is_placed_in_the_tenants_schema() -> None:
    placed = EVENTS.placed("acme")
    assert placed.schema == "acme" and placed.target == "acme.events"
    assert EVENTS.placed(None) is EVENTS and EVENTS.placed("mgttest") is EVENTS
    child = Child("events_2026_07", date(2026, 7, 1), date(2026, 8, 1))
    assert create_statements(placed, child) == [
        'CREATE TABLE "acme"."events_2026_07" PARTITION OF "acme"."events" '
        "FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')"
    ]
    # The child's name comes from the table, not the schema.
    assert placed.children(date(2026, 7, 1), date(2026, 7, 1)) == [child]


def test_schema_tenants_have_only_the_template_schemas_tables() -> None:
    kept, left = for_schema_tenants([EVENTS, ELSEWHERE], "mgttest")
    assert kept == [EVENTS]
    assert left == [
        "public.logs is not in the template schema mgttest, so schema tenants do not have "
        "it; nothing is done for it in them"
    ]


def rule(action: str, archive: str | None = None, schema: str = "mgttest") -> Rule:
    policy = Policy(1, schema, "events", True, "90 days", action, archive)
    return Rule(policy, date(2026, 3, 1), "2026-03-01 00:00:00+00", [EVENTS])


def test_a_rule_is_placed_with_the_tenants_own_archive_schema() -> None:
    placed = rule("archive", "old").placed("acme")
    assert placed.policy.schema == "acme" and placed.policy.archive_schema == "acme_old"
    assert [rs.schema for rs in placed.sets] == ["acme"]
    assert placed.archive_refused is None
    assert rule("drop").placed("acme").policy.archive_schema is None
    same = rule("archive", "old")
    assert same.placed(None) is same
    refused = rule("archive", "old").placed("acme", {("acme", "old"): "taken"})
    assert refused.archive_refused == "taken"


def test_archive_schemas_never_collide() -> None:
    assert schema_archive("acme", "archive") == "acme_archive"
    places = ["mgttest", "acme", "acme_archive", "x", "x_y", "long" + "g" * 55]
    refused = archive_conflicts(places, ["archive", "y_archive"])
    # acme's archive would be tenant acme_archive's schema.
    assert refused[("acme", "archive")] == (
        "its archive schema acme_archive is the schema of schema tenant acme_archive; "
        'use another "archive_schema"'
    )
    # x + y_archive and x_y + archive are the same name: both refused.
    assert "would also be schema tenant x_y's" in refused[("x", "y_archive")]
    assert "would also be schema tenant x's" in refused[("x_y", "archive")]
    # Over 63 bytes: PostgreSQL would cut the name.
    assert "more than PostgreSQL's 63" in refused[("long" + "g" * 55, "archive")]
    assert ("mgttest", "archive") not in refused and ("acme", "y_archive") not in refused
    assert archive_conflicts(["a", "b"], []) == {}


def test_rules_outside_the_template_schema_are_left_out() -> None:
    kept, left = rules_for_schema_tenants([rule("drop"), rule("drop", schema="public")], "mgttest")
    assert [r.policy.schema for r in kept] == ["mgttest"]
    assert left == [
        "public.events is not in the template schema mgttest, so schema tenants do not have "
        "it; its retention policy is not applied to them"
    ]


def test_a_schema_place_is_read_alone_with_its_name_mapped() -> None:
    assert session_sql(None) == SESSION
    assert "'pg_catalog, \"acme\", pg_temp'" in session_sql("acme")
    assert objects_sql(None) == OBJECTS
    mine = objects_sql("acme")
    assert "n.nspname = 'acme'" in mine
    assert "FROM pg_catalog.pg_extension AS x" not in mine  # the host's, not the schema's
    assert "FROM pg_catalog.pg_extension AS x" in objects_sql(None)
    assert "pg_catalog.quote_ident('acme')" in mine and "'<schema>'" in mine
    assert objects_sql("acme") in fingerprint_sql("acme")
    assert "it''s" in objects_sql("it's")  # a literal, never interpolated
