"""The registry's pure parts: a place's connection string, and the one registry UPDATE."""

from __future__ import annotations

from pathlib import Path

import pytest

from admmgt_plpy._conninfo import parse_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._registry import (
    CREATED,
    KEEP,
    UPDATING,
    Place,
    Tenant,
    is_updating,
    mode_of,
    place_conninfo,
    registry_update,
    search_path_option,
    touched_at,
    updating_sql,
)

BASE = (
    "host='/run/pg' port='5432' dbname='tenant_a' application_name='admmgt'"
    " options='-c client_min_messages=warning -c lock_timeout=30000'"
)


class FakeClusters:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def conninfo(self, cluster: str, database: str, options: str = "") -> str:
        self.asked.append((cluster, database))
        assert not options, "these tests give no options"
        return BASE


def server_words(options: str) -> list[str]:
    """How PostgreSQL splits ``options`` (pg_split_opts): white space separates,
    a backslash takes the next character as it is."""
    words, word, escaped, started = [], "", False, False
    for c in options:
        if escaped:
            word, escaped, started = word + c, False, True
        elif c == "\\":
            escaped, started = True, True
        elif c.isspace():
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + c, True
    if started:
        words.append(word)
    return words


def unquote_ident(text: str) -> str:
    assert text.startswith('"') and text.endswith('"')
    return text[1:-1].replace('""', '"')


def test_a_database_place_connects_as_its_cluster_says() -> None:
    clusters = FakeClusters()
    assert place_conninfo(clusters, Place("eu2", "tenant_a")) == BASE  # type: ignore[arg-type]
    assert clusters.asked == [("eu2", "tenant_a")]


@pytest.mark.parametrize(
    "schema",
    ["plain", "Mixed Case", "a'b", 'q"uote', "back\\slash", "tab\there", "x -c role=postgres"],
)
def test_a_schema_place_sets_search_path_to_exactly_that_schema(schema: str) -> None:
    conninfo = place_conninfo(FakeClusters(), Place("local", "tenant_a", schema))  # type: ignore[arg-type]
    parts = dict(parse_options("local", conninfo))
    # The cluster's own settings stay, and nothing else became an option.
    assert parts["dbname"] == "tenant_a" and parts["host"] == "/run/pg"
    words = server_words(parts["options"])
    assert words[:4] == ["-c", "client_min_messages=warning", "-c", "lock_timeout=30000"]
    assert len(words) == 6 and words[4] == "-c"
    key, _, value = words[5].partition("=")
    assert key == "search_path" and unquote_ident(value) == schema


def test_the_search_path_word_survives_white_space() -> None:
    assert search_path_option("a b") == '-c search_path="a\\ b"'


def test_a_tenant_is_at_its_lower_case_database() -> None:
    tenant = Tenant(4, "BigClient", "eu2")
    assert tenant.place == Place("eu2", "bigclient")
    assert tenant.label == "bigclient@eu2" and Tenant(5, "x", "local").label == "x"
    assert Place("local", "db", "s1").label == "db.s1"


def test_registry_update_quotes_values_and_leaves_kept_columns() -> None:
    sql = registry_update(7, status=3, error="it's \\ bad; DROP TABLE x; --")
    assert sql == (
        "UPDATE admmgt.vendor_db_settings SET status = 3, "
        "last_error = E'it''s \\\\ bad; DROP TABLE x; --', last_error_at = now(), "
        "modifiedon = now() WHERE id = 7"
    )
    assert "scriptversion" not in sql and "cluster_name" not in sql


def test_registry_update_clears_with_none() -> None:
    assert registry_update(3, scriptversion=None, error=None, touch=False) == (
        "UPDATE admmgt.vendor_db_settings SET scriptversion = NULL, last_error = NULL, "
        "last_error_at = NULL WHERE id = 3"
    )
    assert registry_update(3, scriptversion=12, error=KEEP) == (
        "UPDATE admmgt.vendor_db_settings SET scriptversion = 12, modifiedon = now() WHERE id = 3"
    )


def test_registry_update_of_several_rows_and_placement() -> None:
    assert registry_update([4, 9], cluster="eu'2", if_no_cluster=True) == (
        "UPDATE admmgt.vendor_db_settings SET cluster_name = 'eu''2', modifiedon = now()"
        " WHERE id IN (4, 9) AND cluster_name IS NULL"
    )
    assert registry_update(1, deleted=True).startswith(
        "UPDATE admmgt.vendor_db_settings SET deleted = true, deletedon = now(), modifiedon"
    )
    with pytest.raises(ValueError):
        registry_update([], status=2)
    with pytest.raises(ValueError):
        registry_update(1, touch=False)


def test_the_updating_predicate_is_one_text() -> None:
    assert UPDATING == CREATED + " AND updateflag"
    assert updating_sql("v") == (
        "NOT v.deleted AND NOT v.istemplate AND v.status = 2 AND v.updateflag"
    )
    row = {"deleted": False, "istemplate": False, "status": 2, "updateflag": True}
    assert is_updating(row)
    for key, value in (
        ("deleted", True),
        ("istemplate", True),
        ("status", 3),
        ("updateflag", False),
    ):
        assert not is_updating({**row, key: value})


def test_the_script_status_view_counts_the_registrys_created_tenants() -> None:
    """SQL cannot import the Python text; this keeps the view's copy the same."""
    view = (Path(__file__).parents[2] / "sql/idempotent/520-script-status.sql").read_text()
    created = updating_sql("v").removesuffix(" AND v.updateflag")
    assert f"WHERE {created}" in view


def test_a_recorders_time_replaces_only_the_rows_own_modifiedon() -> None:
    """The run log writes the row later with its own time (touched_at): the SET
    item registry_update made changes, an error message with the same text not."""
    message = "x SET modifiedon = now() WHERE id = 1"
    sql = touched_at(registry_update(5, error=message), "to_timestamp(1)")
    assert sql == (
        "UPDATE admmgt.vendor_db_settings SET last_error = "
        "'x SET modifiedon = now() WHERE id = 1', last_error_at = now(), "
        "modifiedon = to_timestamp(1) WHERE id = 5"
    )
    untouched = registry_update(5, error=message, touch=False)
    assert touched_at(untouched, "to_timestamp(1)") == untouched


def test_a_schema_tenant_lives_in_its_clusters_host_database() -> None:
    row = {
        "id": 7,
        "dbname": "Acme",
        "cluster_name": None,
        "scriptversion": 3,
        "separatedb": 0,
        "host": "admmgt_schemas",
    }
    tenant = Tenant.of(row)
    assert tenant.is_schema and tenant.place == Place("local", "admmgt_schemas", "acme")
    assert tenant.history_table == '"acme".admmgt_history'
    assert tenant.label == "admmgt_schemas.acme"
    database = Tenant.of({**row, "separatedb": 1})
    assert database.place == Place("local", "acme") and not database.is_schema
    assert database.history_table == "admmgt.script_history"
    # A query that reads only the first four columns reads a database tenant.
    assert not Tenant.of(
        {k: row[k] for k in ("id", "dbname", "cluster_name", "scriptversion")}
    ).is_schema


def test_a_schema_tenant_without_a_host_names_the_fix() -> None:
    tenant = Tenant.of(
        {"id": 1, "dbname": "acme", "cluster_name": "east", "scriptversion": None, "separatedb": 0}
    )
    assert tenant.label == "acme@east"
    with pytest.raises(AdmmgtError) as refused:
        assert tenant.place is None
    assert 'cluster "east" has no host database' in refused.value.message
    assert "create_schema" in (refused.value.hint or "")


@pytest.mark.parametrize("value", [2, -1, None])
def test_t_separatedb_is_one_or_zero(value: int | None) -> None:
    with pytest.raises(AdmmgtError) as refused:
        mode_of(value)
    assert "t_separatedb must be 1 (database per tenant) or 0 (schema per tenant)" in str(
        refused.value.message
    )
    assert mode_of(0) == 0 and mode_of(1) == 1
