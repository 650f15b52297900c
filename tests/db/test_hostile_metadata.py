"""Hostile metadata (issue 20): every field that reaches SQL is exactly one
expression of its kind or exactly the name given, or the script is refused
before the template is touched, naming the script, table, row and field.

The fuzz test puts each of several hundred hostile values into one field of a
script of its own, then (1) compiles and validates every script on the
template through the very functions applyScripts uses, read-only, and (2)
applies every script that was accepted, in one applyScripts run, and compares
the template's catalog with what the metadata declared.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from admmgt_plpy._calendar import child_name
from tests.db.fleet import Notices, call, make_template
from tests.fix_db import connect

Conn = psycopg.Connection[Any]
SCHEMA = "mgttest"

# Everything of the template a statement could have changed, per relation.
CATALOG = """
SELECT n.nspname || '.' || c.relname, c.relkind::text, pg_catalog.pg_get_userbyid(c.relowner),
       ARRAY(SELECT a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                    || coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
             FROM pg_catalog.pg_attribute AS a
             LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum),
       ARRAY(SELECT conname || ' ' || pg_catalog.pg_get_constraintdef(oid)
             FROM pg_catalog.pg_constraint WHERE conrelid = c.oid ORDER BY conname),
       CASE WHEN c.relkind IN ('i', 'I') THEN pg_catalog.pg_get_indexdef(c.oid) END
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
UNION ALL
SELECT 'schema ' || nspname, '', pg_catalog.pg_get_userbyid(nspowner), '{}', '{}', NULL
FROM pg_catalog.pg_namespace
UNION ALL
SELECT 'routine ' || p.oid::regprocedure::text, '', '', '{}', '{}', NULL
FROM pg_catalog.pg_proc AS p WHERE p.pronamespace <> 'pg_catalog'::regnamespace
    AND p.pronamespace <> 'information_schema'::regnamespace
"""

Snapshot = dict[str, tuple[Any, ...]]


def snapshot(dsn: str) -> Snapshot:
    with connect(dsn) as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(CATALOG)}


def column_names(entry: tuple[Any, ...]) -> list[str]:
    return [c.split(" ")[0] for c in entry[2]]


@pytest.fixture
def template(cluster_dsn: str, admin: Conn, tenant_prefix: str) -> str:
    """A template without tenants: everything here happens before any tenant."""
    return make_template(cluster_dsn, admin, f"{tenant_prefix}tpl")


# ------------------------------------------------------------ writing rows


def one(admin: Conn, sql: str, *args: Any) -> int:
    row = admin.execute(sql + " RETURNING id", args).fetchone()
    assert row is not None
    return int(row[0])


def new_script(admin: Conn, sid: int) -> None:
    admin.execute(
        "INSERT INTO admmgt.scripts (id, description, status) VALUES (%s, 'fz', 1)", (sid,)
    )


def new_table(
    admin: Conn,
    sid: int,
    name: str,
    *,
    schema: str = SCHEMA,
    tblspace: str | None = None,
    haspart: int = 0,
) -> int:
    return one(
        admin,
        "INSERT INTO admmgt.script_tables (scriptid, schemaname, tablename, tblspace, haspart,"
        " status) VALUES (%s, %s, %s, %s, %s, 1)",
        sid,
        schema,
        name,
        tblspace,
        haspart,
    )


def new_column(
    admin: Conn, sid: int, tid: int, name: str, datatype: str, default: str | None = None
) -> int:
    return one(
        admin,
        "INSERT INTO admmgt.script_table_columns (tableid, scriptid, columnname, datatype,"
        " defaultval, status) VALUES (%s, %s, %s, %s, %s, 1)",
        tid,
        sid,
        name,
        datatype,
        default,
    )


def change(admin: Conn, sid: int, tid: int, column: str, **values: Any) -> int:
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    return one(
        admin,
        f"INSERT INTO admmgt.script_column_changes (scriptid, tableid, columnname, status, {names})"
        f" VALUES (%s, %s, %s, 1, {marks})",
        sid,
        tid,
        column,
        *values.values(),
    )


def index(
    admin: Conn,
    sid: int,
    tid: int,
    name: str | None,
    predicate: str | None = None,
    *,
    columns: tuple[str, ...] = ("k1",),
    method: str | None = None,
) -> int:
    return one(
        admin,
        "INSERT INTO admmgt.script_indexes (scriptid, tableid, indexname, columnnames,"
        " wherepredicate, method, status) VALUES (%s, %s, %s, %s, %s, coalesce(%s, 'btree'), 1)",
        sid,
        tid,
        name,
        list(columns),
        predicate,
        method,
    )


def partition(admin: Conn, tid: int, column: str, value: str) -> int:
    return one(
        admin,
        "INSERT INTO admmgt.script_table_partitions (tableid, partcolumnname, parttype,"
        " partvalue) VALUES (%s, %s, 'list', %s)",
        tid,
        column,
        value,
    )


def foreign_key(admin: Conn, sid: int, child: str, name: str) -> int:
    return one(
        admin,
        "INSERT INTO admmgt.script_table_fkeys (scriptid, schemaname, childtablename,"
        " childcolumnname, parenttablename, parentcolumnname, constraintname, status)"
        " VALUES (%s, %s, %s, 'h', 'pk1', 'id', %s, 1)",
        sid,
        SCHEMA,
        child,
        name,
    )


BASE_COLUMNS = (("k1", "integer"), ("k2", "text"), ("k3", "integer"), ("v", "integer"))


def base_tables(admin: Conn, names: list[str]) -> dict[str, int]:
    """Script 1: one table per name, columns k1 int, k2 text, k3 int, v int, s text,
    and pk1 (id bigint primary key) for foreign keys to refer to."""
    new_script(admin, 1)
    pk1 = new_table(admin, 1, "pk1")
    admin.execute(
        "INSERT INTO admmgt.script_table_columns (tableid, scriptid, columnname, datatype,"
        " nullable, isprimarykey, status) VALUES (%s, 1, 'id', 'bigint', 0, 1, 1)",
        (pk1,),
    )
    ids = {}
    for name in names:
        ids[name] = new_table(admin, 1, name)
        for column, datatype in (*BASE_COLUMNS, ("s", "text")):
            new_column(admin, 1, ids[name], column, datatype)
    return ids


# ----------------------------------------------------------- the cases


@dataclass
class Case:
    """One hostile value in one field; ``ok``: whether it must be accepted."""

    sid: int
    field: str  # e.g. "script_table_columns.defaultval (new table)"
    value: str
    ok: bool
    row: tuple[str, int, str] = ("", 0, "")  # (metadata table, row id, field) once written
    relations: tuple[str, ...] = ()  # what it creates: "schema.name" or "schema name"
    table: str = ""  # the table ("schema.name") whose columns it declares
    columns: tuple[str, ...] = ()  # ... and those columns, in order
    constraints: tuple[str, ...] = ()  # constraint names it declares on that table


Y, N = True, False
# Values for defaults and USING expressions (columns of type text).
EXPRESSIONS: list[tuple[str, bool]] = [
    # the issue's injections: a top-level comma ends one item of the list
    ("'a', evil int", N),
    ("'a', constraint fz_evil check (true)", N),
    ("'x', drop column k1", N),
    ("'x', add column evil_added int", N),
    ("'x', owner to pg_monitor", N),
    ("v::bigint, drop column k3", N),
    ("'x', alter column k2 type int", N),
    ("'x') , evil int --", N),
    ("'x' not null, evil int", N),
    ("E'\\'', evil int", N),
    ("$$x$$, evil int", N),
    ("$q$x$q$, evil int", N),
    ("'it''s', evil int", N),
    ("U&'a', evil int", N),
    ('"k1", evil int', N),
    ("'x' || 'y', evil int", N),
    # statement ends, comments, unbalanced text
    ("0); drop table mgttest.b1; --", N),
    ("0; drop table mgttest.b1", N),
    ("'x'; select 1", N),
    ("1 -- c", N),
    ("1 /* c */", N),
    ("(1", N),
    ("1)", N),
    ("'open", N),
    ('"open', N),
    ("ARRAY[1", N),
    ("1]", N),
    # subqueries, allowed in none of these places
    ("(select pg_sleep(5))", N),
    ("(select 'x')", N),
    ("exists (select 1)", N),
    ("'x' in (values ('x'))", N),
    ("array(table mgttest.b1)::text", N),
    ("(with q as (select 1) select 'x')", N),
    # what PostgreSQL refuses in a default or USING
    ("count(*)", N),
    ("max(k1)", N),
    ("row_number() over ()", N),
    ("generate_series(1, 2)", N),
    ("unnest(array['a'])", N),
    ("$1", N),
    ("nosuchfn()", N),
    ("'x'::nosuchtype", N),
    ("k1 +", N),
    # one expression each: accepted
    ("'abc'", Y),
    ("'a, b'", Y),
    ("'it''s; fine, really'", Y),
    ("now()", Y),
    ("coalesce(null, 'a, b')", Y),
    ("ARRAY[1, 2]::text", Y),
    ("(1, 2)::text", Y),
    ("'x' collate \"C\"", Y),
    ("$$a, b); drop table x; --$$", Y),
    ("E'a\\', b'", Y),
    ("lower('A, B')", Y),
    ("42", Y),
    ("true", Y),
    ("'--' || '/*'", Y),
]
# Index predicates on (k1 int, k2 text, k3 int, v int, s text).
PREDICATES: list[tuple[str, bool]] = [
    ("pg_sleep(5) is null", N),
    ("(select 1) is null", N),
    ("(select count(*) from mgttest.b1) > 0", N),
    ("k1 > 0, evil int", N),
    ("k1 > 0) ; drop table mgttest.b1; --", N),
    ("k1 > 0 -- c", N),
    ("now() > '2020-01-01'", N),
    ("random() > 0.5", N),
    ("k2 > now()::text", N),
    ("count(*) > 0", N),
    ("generate_series(1, 2) > 0", N),
    ("row_number() over () > 0", N),
    ("k1", N),
    ("nosuch > 0", N),
    ("$1 > 0", N),
    ("k1 > 5 and k1 < 3", N),
    ("false", N),
    ("k1 > 0", Y),
    ("k2 <> ''", Y),
    ("k1 in (1, 2, 3)", Y),
    ("k2 is not null and lower(k2) <> 'x'", Y),
    ("coalesce(k3, 0) = 0", Y),
    ("k2 ~ '^a, b'", Y),
    ("true", Y),
    ("k2 = 'a'' or true; --'", Y),
]
# Names; refused ones are the same in every field.
BAD_NAMES = [
    "",
    " ",
    " padded",
    'x"; drop table mgttest.b1; --',
    "a b",
    "a-b",
    "1abc",
    "$x",
    "a" * 64,
    "\u00e9" * 32,
    "\u00cdndice",
    "\u212aelvin",
    "e\u0301",
    "tab\nle",
    "a,b",
    "x)",
]
GOOD_NAMES = ["Mixed_Case", "\u00edndice", "a$b", "_u", "select", "\u00e9" * 30]
# admmgt.script_indexes refuses any other method with a CHECK constraint.
METHODS: list[tuple[str, bool]] = [("btree", Y), ("hash", Y), ("brin", Y)]
INDEX_COLUMNS: list[tuple[str, bool]] = [
    ("k1", Y),
    ("K2", Y),
    ("nosuch", N),
    ('k1") where (true', N),
    ("k1, k2", N),
    ("k1 desc", N),
    ("lower(k2)", N),
]
# List partition values: always literals; the child's name is derived from them.
TEXT_VALUES = [
    "o'hara",
    "a, b); drop table mgttest.b1; --",
    "$$x",
    "\\'; select 1; --",
    "\u00e9t\u00e9",
]
INT_VALUES: list[tuple[str, bool]] = [("12", Y), ("abc", N), ("1); drop table mgttest.b1; --", N)]
TYPES: list[tuple[str, bool]] = [
    ("int; drop table mgttest.b1", N),
    ("int, evil int", N),
    ("text default 'x'", N),
    ("int)", N),
    ("nosuchtype", N),
    ("int[", N),
    ("int primary key", N),
    ("integer not null", N),
    ("varchar(10)) , evil int", N),
    ("bigint", Y),
    ("numeric(12,2)", Y),
    ("character varying(20)", Y),
    ("text", Y),
]


def cases() -> list[Case]:
    found: list[Case] = []

    def add(field: str, value: str, ok: bool) -> None:
        found.append(Case(100 + len(found), field, value, ok))

    for field in ("defaultval (new table)", "defaultval (added column)", "setdefault", "usingexpr"):
        for value, ok in EXPRESSIONS:
            # a USING expression may name the table's columns; a default may not
            add(field, value, ok)
        add(field, "k1", field == "usingexpr")
    for value, ok in PREDICATES:
        add("wherepredicate", value, ok)
    for field in ("indexname", "tablename", "columnname", "schemaname", "constraintname"):
        for name in BAD_NAMES:
            add(field, name, False)
        suffix = {
            "indexname": "_i",
            "tablename": "_t",
            "columnname": "",
            "schemaname": "_s",
            "constraintname": "_c",
        }[field]
        for name in GOOD_NAMES:
            add(field, name[: 63 - len(suffix.encode())] + suffix if name else name, True)
    add("indexname", "b100", False)  # an existing table's name
    add("tablename", "b101", False)
    for field in ("datatype", "newdatatype"):
        for value, ok in TYPES:
            add(field, value, ok)
    for name in BAD_NAMES[:8]:
        add("tblspace", name, not name.strip())  # blank: the default tablespace, like NULL
    add("tblspace", "nosuch_space", False)
    add("tblspace", "pg_default", True)
    for value, ok in METHODS:
        add("method", value, ok)
    for value, ok in INDEX_COLUMNS:
        add("columnnames", value, ok)
    for value in TEXT_VALUES:
        add("partvalue (text)", value, True)
    for value, ok in INT_VALUES:
        add("partvalue (int)", value, ok)
    return found


def q(name: str) -> str:
    """A relation of the test schema, as the catalog snapshot names it."""
    return f"{SCHEMA}.{name}"


def fold(name: str) -> str:
    """What a name that admmgt accepts is created as: ASCII letters lower-cased."""
    return "".join(c.lower() if c.isascii() else c for c in name)


def write(admin: Conn, case: Case, base: dict[str, int]) -> None:
    """Insert ``case``'s script; record its hostile row and what it declares."""
    sid, value = case.sid, case.value
    new_script(admin, sid)
    b = f"b{sid}"
    if case.field == "defaultval (new table)":
        tid = new_table(admin, sid, f"f{sid}")
        row = new_column(admin, sid, tid, "h", "text", value)
        case.row = ("script_table_columns", row, "defaultval")
        case.relations, case.table, case.columns = (q(f"f{sid}"),), q(f"f{sid}"), ("h",)
    elif case.field == "defaultval (added column)":
        row = new_column(admin, sid, base[b], "h", "text", value)
        case.row = ("script_table_columns", row, "defaultval")
        case.table, case.columns = q(b), (*(c for c, _ in BASE_COLUMNS), "s", "h")
    elif case.field in ("setdefault", "usingexpr", "newdatatype"):
        if case.field == "setdefault":
            row = change(admin, sid, base[b], "s", setdefault=value)
        elif case.field == "usingexpr":
            row = change(admin, sid, base[b], "v", newdatatype="text", usingexpr=value)
        else:
            row = change(admin, sid, base[b], "v", newdatatype=value)
        case.row = ("script_column_changes", row, case.field)
        case.table, case.columns = q(b), (*(c for c, _ in BASE_COLUMNS), "s")
    elif case.field == "wherepredicate":
        row = index(admin, sid, base[b], f"i{sid}", value)
        case.row = ("script_indexes", row, "wherepredicate")
        case.relations = (q(f"i{sid}"),)
    elif case.field == "indexname":
        row = index(admin, sid, base[b], value)
        case.row = ("script_indexes", row, "indexname")
        case.relations = (q(fold(value)),)
    elif case.field in ("method", "columnnames"):
        if case.field == "method":
            row = index(admin, sid, base[b], f"i{sid}", method=value)
        else:
            row = index(admin, sid, base[b], f"i{sid}", columns=(value,))
        case.row = ("script_indexes", row, "method" if case.field == "method" else "columnnames[1]")
        case.relations = (q(f"i{sid}"),)
    elif case.field == "tablename":
        tid = new_table(admin, sid, value)
        new_column(admin, sid, tid, "h", "text")
        case.row = ("script_tables", tid, "tablename")
        case.relations, case.table, case.columns = (q(fold(value)),), q(fold(value)), ("h",)
    elif case.field in ("schemaname", "tblspace"):
        if case.field == "schemaname":
            tid = new_table(admin, sid, f"f{sid}", schema=value)
            table = f"{fold(value)}.f{sid}"
            case.relations = (table, f"schema {fold(value)}")
        else:
            tid = new_table(admin, sid, f"f{sid}", tblspace=value)
            table = q(f"f{sid}")
            case.relations = (table,)
        new_column(admin, sid, tid, "h", "text")
        case.row = ("script_tables", tid, case.field)
        case.table, case.columns = table, ("h",)
    elif case.field == "constraintname":
        tid = new_table(admin, sid, f"f{sid}")
        new_column(admin, sid, tid, "h", "bigint")
        row = foreign_key(admin, sid, f"f{sid}", value)
        case.row = ("script_table_fkeys", row, "constraintname")
        case.relations, case.table, case.columns = (q(f"f{sid}"),), q(f"f{sid}"), ("h",)
        case.constraints = (fold(value),)
    elif case.field.startswith("partvalue"):
        datatype = "text" if case.field == "partvalue (text)" else "integer"
        tid = new_table(admin, sid, f"p{sid}", haspart=1)
        new_column(admin, sid, tid, "h", datatype)
        row = partition(admin, tid, "h", value)
        case.row = ("script_table_partitions", row, "partvalue")
        child = child_name(f"p{sid}", "h", value)  # the documented derivation
        case.relations = (q(f"p{sid}"), q(child))
        case.table, case.columns = q(f"p{sid}"), ("h",)
    elif case.field in ("columnname", "datatype"):
        tid = new_table(admin, sid, f"f{sid}")
        if case.field == "columnname":
            row = new_column(admin, sid, tid, value, "text")
        else:
            row = new_column(admin, sid, tid, "h", value)
        case.row = ("script_table_columns", row, case.field)
        name = fold(value) if case.field == "columnname" else "h"
        case.relations, case.table, case.columns = (q(f"f{sid}"),), q(f"f{sid}"), (name,)
    else:  # pragma: no cover - a case without a writer is a bug in this file
        raise AssertionError(case.field)


# The engine's own compile and template validation, read-only, for every ready
# script at once; one row per script into a temporary table of this session.
VALIDATE_ONLY = """
DO $fuzz$
plpy.execute("SELECT admmgt._load_code()")
from admmgt_plpy._errors import MetadataError
from admmgt_plpy._registry import templates
from admmgt_plpy._conninfo import Clusters
from admmgt_plpy._remote import Dblink
from admmgt_plpy._scripts import load_script
from admmgt_plpy._validate import READ_ONLY, script_problems

dblink = Dblink(plpy)
template = templates(plpy)[0]
conn = dblink.connect(Clusters(plpy).conninfo(template.cluster, template.database))
dblink.query(conn, READ_ONLY)
save = plpy.prepare("INSERT INTO pg_temp.fuzz VALUES ($1, $2, $3)", ["int4", "text", "text[]"])
ids = plpy.execute("SELECT id FROM admmgt.scripts WHERE status = 1 AND id >= 100 ORDER BY id")
for row in ids:
    try:
        script = load_script(plpy, row["id"])
    except MetadataError as exc:
        plpy.execute(save, [row["id"], "compiler", list(exc.problems)])
        continue
    problems = script_problems(dblink, conn, script.compiled, [])
    plpy.execute(save, [row["id"], "template" if problems else "accepted", problems])
dblink.disconnect(conn)
$fuzz$ LANGUAGE plpython3u
"""


def test_hostile_values_in_every_field_run_nothing_undeclared(admin: Conn, template: str) -> None:
    dsn = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")
    all_cases = cases()
    assert len(all_cases) >= 200
    base_names = [f"b{c.sid}" for c in all_cases] + ["b100", "b101"]
    base = base_tables(admin, sorted(set(base_names)))
    call(admin, "applyscripts")  # script 1: the tables the cases change
    for case in all_cases:
        write(admin, case, base)

    # 1. Compile and validate every script on the template, read-only.
    before = snapshot(dsn)
    started = time.monotonic()
    admin.execute("CREATE TEMP TABLE fuzz (id int, verdict text, problems text[])")
    admin.execute(VALIDATE_ONLY)
    validated_in = time.monotonic() - started
    assert snapshot(dsn) == before, "validation changed the template"
    verdicts = {r[0]: (r[1], r[2]) for r in admin.execute("SELECT * FROM pg_temp.fuzz")}
    assert set(verdicts) == {c.sid for c in all_cases}

    wrong, unnamed = [], []
    for case in all_cases:
        verdict, problems = verdicts[case.sid]
        if (verdict == "accepted") != case.ok:
            wrong.append((case.field, case.value, verdict, problems))
        if verdict != "accepted":
            table, row, field = case.row
            named = f"script {case.sid}, {table} row {row}, {field}"
            if not any(named in p for p in problems):
                unnamed.append((case.field, case.value, problems))
    assert wrong == []
    assert unnamed == []  # every refusal names the script, table, row and field

    # 2. Apply every accepted script in one run; refused ones go back to design.
    accepted = [c for c in all_cases if verdicts[c.sid][0] == "accepted"]
    refused = [c.sid for c in all_cases if verdicts[c.sid][0] != "accepted"]
    admin.execute("UPDATE admmgt.scripts SET status = 0 WHERE id = ANY(%s)", (refused,))
    notices = Notices(admin)
    call(admin, "applyscripts")
    status = dict(admin.execute("SELECT id, status FROM admmgt.scripts WHERE id >= 100").fetchall())
    # 0 scripts that touch the template and then fail
    assert [c.value for c in accepted if status[c.sid] != 2] == [], notices.take()

    # 0 statements the metadata did not declare, 0 objects under another name
    after = snapshot(dsn)
    created = {name for c in accepted for name in c.relations}
    assert set(after) - set(before) == created
    assert set(before) - set(after) == set()
    owner = before[q("b100")][1]
    declared = {c.table: c for c in accepted if c.table}
    for name, entry in after.items():
        if name in created or name.startswith(q("b")):
            assert entry[1] == owner, name  # nobody changed an owner
        if name in declared:
            assert column_names(entry) == list(declared[name].columns), name
            # a declared foreign key is the only constraint a case may add
            assert [c.split(" ")[0] for c in entry[3]] == list(declared[name].constraints), name
        elif name in created:
            assert entry[3] == [], name
        elif name.startswith(q("b")):
            assert column_names(entry) == column_names(before[name]), name
            assert entry[3] == before[name][3], name
        else:
            assert entry == before[name], name  # nothing else changed
    print(
        f"{len(all_cases)} hostile values: {len(accepted)} accepted and applied,"
        f" {sum(1 for v in verdicts.values() if v[0] == 'compiler')} refused by the compiler,"
        f" {sum(1 for v in verdicts.values() if v[0] == 'template')} by the template's server;"
        f" validated in {validated_in:.1f} s"
    )
    assert validated_in < 60, f"validating {len(all_cases)} scripts took {validated_in:.0f} s"


# ------------------------------------------------- the issue's own cases


def issue_case(admin: Conn, template: str, field: str, value: str) -> tuple[str, Snapshot, Case]:
    """Tables b1 and b2 on the template, then script 2 with ``value`` in ``field``."""
    dsn = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")
    base = base_tables(admin, ["b1", "b2"])
    call(admin, "applyscripts")
    before = snapshot(dsn)
    case = Case(2, field, value, False)
    write(admin, case, base)
    return dsn, before, case


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("defaultval (new table)", "'a', evil int"),
        ("defaultval (new table)", "'a', constraint fz_evil check (k1 > 0)"),
        ("defaultval (added column)", "'x', drop column k1"),
        ("defaultval (added column)", "'x', add column evil_added int"),
        ("defaultval (added column)", "'x', owner to pg_monitor"),
        ("setdefault", "'x', drop column k1"),
        ("setdefault", "'x', owner to pg_monitor"),
        ("usingexpr", "v::bigint, drop column k3"),
        ("defaultval (new table)", "(select pg_sleep(5))"),
        ("defaultval (added column)", "(select pg_sleep(5))"),
        ("setdefault", "(select pg_sleep(5))"),
        ("usingexpr", "(select pg_sleep(5))"),
        ("wherepredicate", "(select count(*) from mgttest.b1) is null"),
        ("indexname", ""),
        ("indexname", "\u00cdndice"),
        ("defaultval (added column)", "$1"),
    ],
)
def test_the_issues_injections_are_refused_before_anything_runs(
    admin: Conn, template: str, field: str, value: str
) -> None:
    dsn, before, case = issue_case(admin, template, field, value)
    with pytest.raises(
        psycopg.Error, match="script 2: cannot be compiled; nothing was applied"
    ) as e:
        call(admin, "applyscripts")
    assert e.value.sqlstate == "ZA001"
    table, row, named = case.row
    assert f"script 2, {table} row {row}, {named}" in str(e.value)
    assert snapshot(dsn) == before


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("wherepredicate", "pg_sleep(5) is null", "allows only IMMUTABLE functions"),
        ("wherepredicate", "now() > '2020-01-01'", "allows only IMMUTABLE functions"),
        ("indexname", "b1", "mgttest.b1 already exists on the template (a table)"),
        ("tablename", "b1", "mgttest.b1 already exists on the template (a table)"),
        ("defaultval (new table)", "count(*)", "aggregate functions are not allowed in a default"),
        ("defaultval (added column)", "generate_series(1, 2)", "set-returning functions"),
        ("setdefault", "k1", 'column "k1" does not exist (a default cannot refer to columns)'),
        ("usingexpr", "row_number() over ()", "window functions are not allowed"),
        ("newdatatype", "int[]", "42846 cannot cast type integer to integer[]"),
        ("newdatatype", "boolean", "42804 the value is of type integer, which PostgreSQL converts"),
    ],
)
def test_what_postgresql_refuses_there_never_reaches_the_template(
    admin: Conn, template: str, field: str, value: str, reason: str
) -> None:
    dsn, before, case = issue_case(admin, template, field, value)
    with contextlib.suppress(psycopg.Error):  # a refused script may end the call with an error
        call(admin, "applyscripts")
    row = admin.execute("SELECT status, last_error FROM admmgt.scripts WHERE id = 2").fetchone()
    assert row is not None
    table, row_id, named = case.row
    assert row[0] == 3
    assert row[1].startswith(
        f"validation on the template failed: script 2, {table} row {row_id}, {named}"
    ), row[1]
    assert reason in row[1]
    assert snapshot(dsn) == before
    with connect(dsn) as conn:
        history = conn.execute("SELECT script_id FROM admmgt.script_history ORDER BY id")
        assert [r[0] for r in history] == [1]


def test_a_partial_index_and_names_are_created_exactly_as_given(admin: Conn, template: str) -> None:
    dsn = admin.info.dsn.replace(f"dbname={admin.info.dbname}", f"dbname={template}")
    base = base_tables(admin, ["b1"])
    call(admin, "applyscripts")
    new_script(admin, 2)
    index(admin, 2, base["b1"], "\u00edndice_Ok", "k2 <> '' and k1 in (1, 2)")
    tid = new_table(admin, 2, "Mixed_Case")
    new_column(admin, 2, tid, "h", "text", "'a, b'")
    call(admin, "applyscripts")
    with connect(dsn) as conn:
        found = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", ("\u00edndice_ok",)
        ).fetchone()
        assert found is not None
        assert "WHERE ((k2 <> ''::text) AND (k1 = ANY (ARRAY[1, 2])))" in found[0]
        assert conn.execute(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_name = 'mixed_case' AND column_name = 'h'"
        ).fetchone() == ("'a, b'::text",)
