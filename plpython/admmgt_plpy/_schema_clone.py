# ruff: noqa: E501  (the catalog query keeps its own long lines)
"""The clone of a template schema: its catalog, read once, in; the DDL of a tenant schema out.

create_schema reads the template schema's catalog with :func:`catalog_sql`
(one statement, one JSON document, on a session whose search_path is the
template schema, so that ``pg_get_*def`` and ``format_type`` print the
template's own objects bare) and :func:`plan_clone` turns it into a
:class:`Clone`: final-state DDL in dependency order, the tenant's schema
standing as :data:`MARK` wherever a statement must name it. Each tenant's
transaction sets ``search_path`` to its own schema first, so every bare name
binds there. Pure: no plpy, no dblink; docs/design/schema-tenants.md says why
a clone and not a replay of the scripts.

What the clone knows: enum types, sequences (free, serial and identity),
tables (columns with types, collations, defaults, identity, generated
columns, NOT NULL; keys, checks and foreign keys inside CREATE TABLE in
foreign-key order; storage parameters; unlogged), their indexes,
partitioned tables and partitions at any depth (with their own local
constraints), row-level security and policies, routines (functions and procedures, rebuilt from their parts,
``SET search_path`` mapped to the tenant), views and triggers. Anything else
in the template schema is refused before the first tenant is made
(:func:`plan_clone` raises :class:`CloneRefused` naming each object).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_ident, quote_literal

# Stands for the tenant's quoted schema in a Clone's statements (NUL never
# occurs in PostgreSQL text, so it cannot collide with a catalog string).
MARK = "\x00schema\x00"

HISTORY = "admmgt_history"  # the schema's own history table (_history.SCHEMA_HISTORY)
HISTORY_COLUMNS = "script_id, action, checksum, applied_at, duration_ms, applied_by, admin_run_id"


class CloneRefused(AdmmgtError):
    """The template schema holds something the clone cannot copy."""

    sqlstate = "0A000"  # feature_not_supported


def catalog_sql(template: str) -> str:
    """One statement, one row, one column ``doc`` (json text): what the clone
    reads of schema ``template``. Run it with search_path = the template schema."""
    ns = f"(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {quote_literal(template)})"

    def agg(obj: str, rest: str, order: str) -> str:
        return (
            f"(SELECT coalesce(json_agg(json_build_object({obj}) ORDER BY {order}), '[]') {rest})"
        )

    sections = {
        "found": f"EXISTS {ns}",
        "enums": agg(
            "'name', t.typname, 'labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid)",
            f"FROM pg_catalog.pg_type t WHERE t.typnamespace = {ns} AND t.typtype = 'e'",
            "t.oid",
        ),
        "types": agg(
            "'name', t.typname, 'kind', t.typtype",
            f"""FROM pg_catalog.pg_type t WHERE t.typnamespace = {ns} AND t.typtype NOT IN ('e', 'p')
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_type x WHERE x.typarray = t.oid)
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_class r WHERE r.oid = t.typrelid AND r.relkind <> 'c')
                   AND NOT (t.typtype = 'm' AND EXISTS (SELECT FROM pg_catalog.pg_range g WHERE g.rngmultitypid = t.oid))""",
            "t.typname",
        ),
        "relations": agg(
            "'name', c.relname, 'kind', c.relkind, 'persistence', c.relpersistence, 'oid', c.oid::bigint,"
            " 'options', c.reloptions, 'is_partition', c.relispartition,"
            " 'parents', (SELECT json_agg(json_build_object('name', p.relname, 'here', p.relnamespace = c.relnamespace))"
            "   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid),"
            " 'bound', pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
            " 'partkey', CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END,"
            " 'rls', c.relrowsecurity, 'force_rls', c.relforcerowsecurity,"
            " 'viewdef', CASE WHEN c.relkind = 'v' THEN pg_catalog.pg_get_viewdef(c.oid) END,"
            " 'columns', CASE WHEN c.relkind IN ('r', 'p') AND NOT c.relispartition THEN"
            "  (SELECT json_agg(json_build_object('name', a.attname,"
            "    'type', pg_catalog.format_type(a.atttypid, a.atttypmod), 'identity', a.attidentity,"
            "    'generated', a.attgenerated, 'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),"
            "    'notnull', a.attnotnull,"
            "    'collation', CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END)"
            "   ORDER BY a.attnum)"
            "   FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
            "   LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            "   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) END",
            f"FROM pg_catalog.pg_class c WHERE c.relnamespace = {ns} AND c.relkind NOT IN ('i', 'I', 't')",
            "c.oid",
        ),
        "sequences": agg(
            "'name', c.relname, 'type', pg_catalog.format_type(s.seqtypid, NULL), 'start', s.seqstart::text,"
            " 'increment', s.seqincrement::text, 'min', s.seqmin::text, 'max', s.seqmax::text,"
            " 'cache', s.seqcache::text, 'cycle', s.seqcycle, 'dep', d.deptype, 'table', t.relname,"
            " 'table_here', t.relnamespace = c.relnamespace, 'column', a.attname",
            f"""FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
                   LEFT JOIN pg_catalog.pg_depend d ON d.objid = c.oid AND d.classid = 'pg_catalog.pg_class'::regclass
                        AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
                   LEFT JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                   WHERE c.relnamespace = {ns} AND c.relkind = 'S'""",
            "c.oid",
        ),
        "constraints": agg(
            "'table', c.relname, 'name', k.conname, 'kind', k.contype,"
            " 'definition', pg_catalog.pg_get_constraintdef(k.oid), 'target', r.relname,"
            " 'target_here', r.relnamespace = c.relnamespace",
            f"""FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
                     LEFT JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
                     WHERE c.relnamespace = {ns} AND k.conparentid = 0 AND k.coninhcount = 0""",
            "c.relname, k.conname",
        ),
        "indexes": agg(
            "'table', t.relname, 'name', x.relname, 'definition', pg_catalog.pg_get_indexdef(i.indexrelid),"
            " 'on', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.relname)",
            f"""FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class x ON x.oid = i.indexrelid
                 JOIN pg_catalog.pg_class t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
                 WHERE x.relnamespace = {ns} AND NOT x.relispartition
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid
                                   AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))""",
            "x.oid",
        ),
        "routines": agg(
            "'name', p.proname, 'kind', p.prokind, 'args', pg_catalog.pg_get_function_arguments(p.oid),"
            " 'identity', pg_catalog.pg_get_function_identity_arguments(p.oid),"
            " 'result', pg_catalog.pg_get_function_result(p.oid), 'language', l.lanname,"
            " 'volatility', p.provolatile, 'strict', p.proisstrict, 'definer', p.prosecdef,"
            " 'leakproof', p.proleakproof, 'parallel', p.proparallel, 'cost', p.procost::text,"
            " 'rows', p.prorows::text, 'retset', p.proretset, 'config', p.proconfig, 'body', p.prosrc,"
            " 'sqlbody', CASE WHEN p.prosqlbody IS NOT NULL THEN pg_catalog.pg_get_function_sqlbody(p.oid) END",
            f"""FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
                  WHERE p.pronamespace = {ns}""",
            "p.oid",
        ),
        "policies": agg(
            "'table', c.relname, 'name', p.polname, 'permissive', p.polpermissive, 'cmd', p.polcmd,"
            " 'roles', (SELECT array_agg(CASE WHEN r.x = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(a.rolname) END ORDER BY r.n)"
            "   FROM unnest(p.polroles) WITH ORDINALITY AS r(x, n) LEFT JOIN pg_catalog.pg_roles a ON a.oid = r.x),"
            " 'qual', pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)",
            f"""FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
                  WHERE c.relnamespace = {ns}""",
            "c.relname, p.polname",
        ),
        "triggers": agg(
            "'table', c.relname, 'name', g.tgname, 'definition', pg_catalog.pg_get_triggerdef(g.oid, true)",
            f"""FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
                  WHERE c.relnamespace = {ns} AND NOT g.tgisinternal AND g.tgparentid = 0""",
            "g.oid",
        ),
        "others": agg(
            "'kind', o.kind, 'name', o.name",
            f"""FROM (
   SELECT 'rule' AS kind, r.rulename || ' on ' || c.relname AS name FROM pg_catalog.pg_rewrite r
     JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = {ns} AND r.rulename <> '_RETURN'
   UNION ALL SELECT 'statistics object', stxname FROM pg_catalog.pg_statistic_ext WHERE stxnamespace = {ns}
   UNION ALL SELECT 'collation', collname FROM pg_catalog.pg_collation WHERE collnamespace = {ns}
   UNION ALL SELECT 'operator', oprname FROM pg_catalog.pg_operator WHERE oprnamespace = {ns}
   UNION ALL SELECT 'operator class', opcname FROM pg_catalog.pg_opclass WHERE opcnamespace = {ns}
   UNION ALL SELECT 'operator family', opfname FROM pg_catalog.pg_opfamily WHERE opfnamespace = {ns}
   UNION ALL SELECT 'conversion', conname FROM pg_catalog.pg_conversion WHERE connamespace = {ns}
   UNION ALL SELECT 'text search configuration', cfgname FROM pg_catalog.pg_ts_config WHERE cfgnamespace = {ns}
   UNION ALL SELECT 'text search dictionary', dictname FROM pg_catalog.pg_ts_dict WHERE dictnamespace = {ns}
   UNION ALL SELECT 'extension member', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
     FROM pg_catalog.pg_depend d WHERE d.deptype = 'e' AND (
       (d.classid = 'pg_catalog.pg_class'::regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = {ns}))
       OR (d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace = {ns}))
       OR (d.classid = 'pg_catalog.pg_type'::regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_type WHERE typnamespace = {ns})))
   UNION ALL SELECT 'publication', p.pubname FROM pg_catalog.pg_publication_namespace pn
     JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid WHERE pn.pnnspid = {ns}
 ) AS o""",
            "o.kind, o.name",
        ),
    }
    items = ", ".join(f"{quote_literal(k)}, {v}" for k, v in sections.items())
    return f"SELECT json_build_object({items})::text AS doc"


@dataclass(frozen=True)
class Clone:
    """A tenant schema's DDL and the names its role is granted, as read from ``template``."""

    template: str
    statements: tuple[str, ...]  # with MARK for the tenant's quoted schema
    tables: tuple[str, ...]  # quoted, bare: tables, partitions, views (not the history)
    sequences: tuple[str, ...]  # quoted, bare
    routines: tuple[str, ...]  # quoted name(identity arguments)

    def ddl(self, schema: str) -> list[str]:
        """The statements that make ``schema`` (CREATE SCHEMA first; the caller's
        transaction), then copy the template's history rows into it."""
        s = quote_ident(schema)
        history = (
            f"INSERT INTO {s}.{HISTORY} ({HISTORY_COLUMNS}) SELECT {HISTORY_COLUMNS}"
            f" FROM {quote_ident(self.template)}.{HISTORY} ORDER BY id"
        )
        return [x.replace(MARK, s) for x in self.statements] + [history]

    def grants(self, schema: str, role: str) -> list[str]:
        """The tenant role's rights, each object by name (never ON ALL ... IN
        SCHEMA: it scans the whole of pg_class); SELECT only on the history;
        default privileges for what later scripts create."""
        s, r = quote_ident(schema), quote_ident(role)

        def listed(items: tuple[str, ...]) -> str:
            return ", ".join(f"{s}.{x}" for x in items)

        out = [f"GRANT USAGE ON SCHEMA {s} TO {r}"]
        if self.tables:
            out.append(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {listed(self.tables)} TO {r}"
            )
        out.append(f"GRANT SELECT ON TABLE {s}.{HISTORY} TO {r}")
        if self.sequences:
            out.append(f"GRANT USAGE, SELECT ON SEQUENCE {listed(self.sequences)} TO {r}")
        if self.routines:
            out.append(f"GRANT EXECUTE ON ROUTINE {listed(self.routines)} TO {r}")
        out += [
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE"
            f" ON TABLES TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT EXECUTE ON ROUTINES TO {r}",
        ]
        return out


_TYPE_KINDS = {"d": "domain", "c": "composite type", "b": "base type", "r": "range type",
               "m": "multirange type"}  # fmt: skip
_REL_KINDS = {"m": "materialized view", "f": "foreign table"}  # composite: in "types"
_IDENTITY = {"d": "GENERATED BY DEFAULT AS IDENTITY", "a": "GENERATED ALWAYS AS IDENTITY"}
_VOLATILITY = {"i": "IMMUTABLE", "s": "STABLE", "v": "VOLATILE"}
_PARALLEL = {"s": "SAFE", "r": "RESTRICTED", "u": "UNSAFE"}
_LANGUAGES = {"sql", "plpgsql", "plpython3u", "plperl", "plperlu", "pltcl"}


def names_schema(text: str, schema: str) -> bool:
    """Whether ``text`` names ``schema`` as a qualifier (``s.x``, ``"s".x``, any case)."""
    quoted = re.escape(quote_ident(schema))
    bare = re.escape(schema)
    pattern = rf'(?:(?<![\w"$]){bare}|{quoted})\s*\.'
    return re.search(pattern, text, re.IGNORECASE) is not None


def map_search_path(value: str, template: str) -> str:
    """A routine's stored search_path with the template's schema replaced by MARK
    (the other entries kept as they are written)."""
    items: list[str] = []
    for item in _split_list(value):
        bare = item[1:-1].replace('""', '"') if item.startswith('"') else item.lower()
        items.append(MARK if bare == template else item)
    if items in ([], ['""']):
        return "''"
    return ", ".join(items)


def _split_list(value: str) -> list[str]:
    """A GUC list split at the commas outside double quotes, each item stripped."""
    items, current, quoted = [], "", False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def _needs_tables(routine: dict[str, Any], tables: set[str]) -> bool:
    if routine["sqlbody"]:
        return True
    words = set(
        re.findall(r'"(?:[^"]|"")+"|[\w$]+', f"{routine['args']} {routine['result'] or ''}")
    )
    names = {w[1:-1].replace('""', '"') if w.startswith('"') else w.lower() for w in words}
    return bool(names & tables)


def _dollar(body: str) -> str:
    tag = "$body$"
    n = 0
    while tag in body:
        n += 1
        tag = f"$body{n}$"
    return f"{tag}{body}{tag}"


def _sequence_options(seq: dict[str, Any], *, typed: bool = True) -> str:
    """CREATE SEQUENCE's options (an identity's take no AS: the column's type is its)."""
    return (
        (f"AS {seq['type']} " if typed else "")
        + f"INCREMENT BY {seq['increment']} MINVALUE {seq['min']}"
        f" MAXVALUE {seq['max']} START WITH {seq['start']} CACHE {seq['cache']}"
        + (" CYCLE" if seq["cycle"] else " NO CYCLE")
    )


def _with(options: list[str] | None) -> str:
    return f" WITH ({', '.join(options)})" if options else ""


def plan_clone(catalog: dict[str, Any], template: str) -> Clone:
    """The :class:`Clone` of schema ``template`` from its catalog
    (:func:`catalog_sql`'s document), or CloneRefused naming every object it
    cannot copy."""
    if not catalog.get("found"):
        raise CloneRefused(
            f'template schema "{template}" does not exist in the host database',
            hint="CALL admmgt.create_schema(); creates it when its registry row is pending "
            "(status 1), or fix the template row in admmgt.vendor_db_settings.",
        )
    problems = _refusals(catalog, template)
    if problems:
        raise CloneRefused(
            f'template schema "{template}" holds {len(problems)} object(s) that create_schema '
            "cannot copy into a tenant schema; no tenant was created:\n"
            + "\n".join(f"  {p}" for p in problems),
            hint=f"Remove them from the template schema {template} (or move them to another "
            "schema), then call create_schema again; docs/schema-tenants.md lists what the "
            "clone copies.",
        )
    relations = catalog["relations"]
    sequences = catalog["sequences"]
    out = [
        f"CREATE SCHEMA {MARK}",
        f"SET LOCAL search_path = {MARK}",
        # Routines are made before the views and tables their bodies may use.
        "SET LOCAL check_function_bodies = off",
    ]
    for enum in catalog["enums"]:
        labels = ", ".join(quote_literal(x) for x in enum["labels"] or [])
        out.append(f"CREATE TYPE {quote_ident(enum['name'])} AS ENUM ({labels})")
    identity: dict[tuple[str, str], str] = {}
    owned: list[str] = []
    for seq in sequences:
        if seq["dep"] == "i":
            identity[(seq["table"], seq["column"])] = _sequence_options(seq, typed=False)
            continue
        out.append(f"CREATE SEQUENCE {quote_ident(seq['name'])} {_sequence_options(seq)}")
        if seq["dep"] == "a" and seq["table_here"]:
            owned.append(
                f"ALTER SEQUENCE {quote_ident(seq['name'])} OWNED BY "
                f"{quote_ident(seq['table'])}.{quote_ident(seq['column'])}"
            )
    # Routines go before the tables (defaults, checks and indexes may call
    # them), except those that name a table's row type or have a SQL-standard
    # body (both need the tables).
    tables = {r["name"] for r in relations}
    early = [r for r in catalog["routines"] if not _needs_tables(r, tables)]
    out += [_routine(r, template) for r in early]
    out += _tables(catalog, identity)
    out += owned
    out += [_routine(r, template) for r in catalog["routines"] if r not in early]
    for rel in relations:
        if rel["kind"] == "v":
            definition = rel["viewdef"].rstrip().rstrip(";")
            out.append(
                f"CREATE VIEW {quote_ident(rel['name'])}{_with(rel['options'])} AS {definition}"
            )
    out += _row_security(catalog)
    out += [t["definition"] for t in catalog["triggers"]]
    return Clone(
        template=template,
        statements=tuple(out),
        tables=tuple(
            quote_ident(r["name"])
            for r in relations
            if r["kind"] in ("r", "p", "v") and r["name"] != HISTORY
        ),
        sequences=tuple(quote_ident(s["name"]) for s in sequences if s["dep"] != "i"),
        routines=tuple(f"{quote_ident(r['name'])}({r['identity']})" for r in catalog["routines"]),
    )


def _refusals(catalog: dict[str, Any], template: str) -> list[str]:
    """Every object the clone cannot copy, one line each."""
    found = [f"{o['kind']} {o['name']}" for o in catalog["others"]]
    found += [f"{_TYPE_KINDS.get(t['kind'], 'type')} {t['name']}" for t in catalog["types"]]
    for rel in catalog["relations"]:
        name = rel["name"]
        if rel["kind"] in _REL_KINDS:
            found.append(f"{_REL_KINDS[rel['kind']]} {name}")
        parents = rel["parents"] or []
        if parents and not rel["is_partition"]:
            found.append(f"table {name}: it inherits from {parents[0]['name']} (INHERITS)")
        elif rel["is_partition"] and not all(p["here"] for p in parents):
            found.append(f"partition {name}: its parent is outside the schema")
        if rel["kind"] == "v" and names_schema(rel["viewdef"] or "", template):
            found.append(f'view {name}: its definition names schema "{template}"')
    for seq in catalog["sequences"]:
        if seq["dep"] == "a" and not seq["table_here"]:
            found.append(f"sequence {seq['name']}: owned by a table outside the schema")
    for r in catalog["routines"]:
        what = f"{'procedure' if r['kind'] == 'p' else 'function'} {r['name']}({r['identity']})"
        config = r["config"] or []
        if r["kind"] not in ("f", "p"):
            found.append(f"{what}: an aggregate or window function")
        elif r["language"] not in _LANGUAGES:
            found.append(f"{what}: language {r['language']}")
        elif names_schema(r["sqlbody"] or r["body"] or "", template):
            found.append(
                f'{what}: its body names schema "{template}"; give it SET search_path = '
                f"{template} and bare names"
            )
        elif r["definer"] and not any(c.startswith("search_path=") for c in config):
            found.append(f"{what}: SECURITY DEFINER without SET search_path")
    return found


def _tables(catalog: dict[str, Any], identity: dict[tuple[str, str], str]) -> list[str]:
    """CREATE TABLE for tables and partitions: parents first, foreign-key targets
    before the tables that reference them (ALTER TABLE only to break a cycle),
    each table's indexes right after it."""
    inline: dict[str, list[str]] = {}
    fk_inline: dict[str, list[tuple[str, str]]] = {}  # table -> (referenced table, clause)
    for k in catalog["constraints"]:
        clause = f"CONSTRAINT {quote_ident(k['name'])} {k['definition']}"
        if k["kind"] == "f" and k["target_here"] and k["target"] != k["table"]:
            fk_inline.setdefault(k["table"], []).append((k["target"], clause))
        else:
            inline.setdefault(k["table"], []).append(clause)
    indexes: dict[str, list[str]] = {}
    for x in catalog["indexes"]:
        indexes.setdefault(x["table"], []).append(_index(x))
    pending = [r for r in catalog["relations"] if r["kind"] in ("r", "p")]
    done: set[str] = set()
    out: list[str] = []
    cycles: list[str] = []
    while pending:
        progress = False
        for rel in list(pending):
            name = rel["name"]
            parent = (rel["parents"] or [{}])[0].get("name") if rel["is_partition"] else None
            if parent is not None and parent not in done:
                continue
            if any(t not in done for t, _ in fk_inline.get(name, [])):
                continue
            out.append(_create_table(rel, parent, inline, fk_inline, identity))
            out += indexes.get(name, [])
            done.add(name)
            pending.remove(rel)
            progress = True
        if not progress:
            cyclic = [r["name"] for r in pending if fk_inline.get(r["name"])]
            if not cyclic:  # _refusals catches parents outside the schema
                raise CloneRefused(
                    "partitions without their parent in the template schema: "
                    + ", ".join(r["name"] for r in pending)
                )
            table = quote_ident(cyclic[0])
            cycles += [f"ALTER TABLE {table} ADD {c}" for _, c in fk_inline.pop(cyclic[0])]
    return out + cycles


def _create_table(
    rel: dict[str, Any],
    parent: str | None,
    inline: dict[str, list[str]],
    fk_inline: dict[str, list[tuple[str, str]]],
    identity: dict[tuple[str, str], str],
) -> str:
    name = rel["name"]
    keys = inline.get(name, []) + [c for _, c in fk_inline.get(name, [])]
    unlogged = "UNLOGGED " if rel["persistence"] == "u" else ""
    if parent is not None:
        ddl = f"CREATE {unlogged}TABLE {quote_ident(name)} PARTITION OF {quote_ident(parent)}"
        if keys:
            ddl += f" ({', '.join(keys)})"
        ddl += f" {rel['bound']}"
    else:
        cols = []
        for c in rel["columns"] or []:
            words = [quote_ident(c["name"]), c["type"]]
            if c["collation"]:
                words.append(f"COLLATE {c['collation']}")
            if c["identity"]:
                options = identity.get((name, c["name"]))
                words.append(_IDENTITY[c["identity"]] + (f" ({options})" if options else ""))
            elif c["generated"] == "s":
                words.append(f"GENERATED ALWAYS AS ({c['default']}) STORED")
            elif c["default"] is not None:
                words.append(f"DEFAULT {c['default']}")
            if c["notnull"]:
                words.append("NOT NULL")
            cols.append(" ".join(words))
        ddl = f"CREATE {unlogged}TABLE {quote_ident(name)} ({', '.join(cols + keys)})"
    if rel["partkey"]:
        ddl += f" PARTITION BY {rel['partkey']}"
    return ddl + _with(rel["options"])


_POLICY_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def _row_security(catalog: dict[str, Any]) -> list[str]:
    """Row-level security as the template has it: ENABLE / FORCE per table, its
    policies (expressions print bare under the template's search_path)."""
    out = []
    for rel in catalog["relations"]:
        flags = [w for w, on in (("ENABLE", rel["rls"]), ("FORCE", rel["force_rls"])) if on]
        if flags:
            actions = ", ".join(f"{w} ROW LEVEL SECURITY" for w in flags)
            out.append(f"ALTER TABLE {quote_ident(rel['name'])} {actions}")
    for p in catalog.get("policies", []):
        ddl = (
            f"CREATE POLICY {quote_ident(p['name'])} ON {quote_ident(p['table'])}"
            f" AS {'PERMISSIVE' if p['permissive'] else 'RESTRICTIVE'}"
            f" FOR {_POLICY_COMMANDS[p['cmd']]} TO {', '.join(p['roles'] or ['PUBLIC'])}"
        )
        if p["qual"] is not None:
            ddl += f" USING ({p['qual']})"
        if p["check"] is not None:
            ddl += f" WITH CHECK ({p['check']})"
        out.append(ddl)
    return out


def _index(x: dict[str, Any]) -> str:
    """The index's definition with its table bare (pg_get_indexdef always
    qualifies it; ON ONLY, a partitioned table's, is dropped: the index is made
    before the partitions, which then get their copies)."""
    definition: str = x["definition"]
    for head in (f" ON ONLY {x['on']} USING ", f" ON {x['on']} USING "):
        if head in definition:
            return definition.replace(head, f" ON {quote_ident(x['table'])} USING ", 1)
    raise CloneRefused(
        f"index {x['name']}: its definition is not understood: {definition}",
        hint="Report it; remove the index from the template schema meanwhile.",
    )


def _routine(r: dict[str, Any], template: str) -> str:
    """CREATE FUNCTION/PROCEDURE rebuilt from the catalog's parts, in the tenant schema."""
    procedure = r["kind"] == "p"
    ddl = f"CREATE {'PROCEDURE' if procedure else 'FUNCTION'} {MARK}.{quote_ident(r['name'])}"
    ddl += f"({r['args']})"
    if not procedure:
        ddl += f" RETURNS {r['result']}"
    ddl += f" LANGUAGE {quote_ident(r['language'])}"
    if not procedure:
        ddl += f" {_VOLATILITY[r['volatility']]}"
        if r["strict"]:
            ddl += " STRICT"
        if r["leakproof"]:
            ddl += " LEAKPROOF"
        ddl += f" PARALLEL {_PARALLEL[r['parallel']]} COST {r['cost']}"
        if r["retset"]:
            ddl += f" ROWS {r['rows']}"
    if r["definer"]:
        ddl += " SECURITY DEFINER"
    for setting in r["config"] or []:
        key, value = setting.split("=", 1)
        if key == "search_path":
            ddl += f" SET search_path = {map_search_path(value, template)}"
        else:
            ddl += f" SET {quote_ident(key)} = {quote_literal(value)}"
    if r["sqlbody"]:
        return f"{ddl} {r['sqlbody']}"
    return f"{ddl} AS {_dollar(r['body'])}"
