"""Routines and views as text, and their form for a schema tenant.

:class:`Definition` is a routine or view as the template has it (a
``CREATE OR REPLACE`` statement), what admmgt_plpy._sync copies to tenants
and keeps in script_proc_log / script_view_log.

Routines and views synced from the template schema to schema tenants:

A schema tenant's routines and views are the template schema's, made in the
tenant's own schema (docs/schema-tenants.md, "What runs under the tenant's
search_path"):

- the template's definitions are read over a connection whose
  ``search_path`` is the template schema, so ``pg_get_viewdef``,
  ``format_type`` and ``pg_get_functiondef`` print the template's own
  objects bare; the routine header, which pg_get_functiondef always
  qualifies, is made bare structurally (its known prefix), as is every
  name: ``f(integer)``, not ``mgttest.f(integer)``;
- each tenant's connection has ``search_path`` = its schema, so the bare
  ``CREATE OR REPLACE`` makes the object there, and a view (or an SQL-standard
  routine body) binds to the tenant's own tables;
- a routine's ``SET search_path`` setting is parsed as the list it is and
  the template schema replaced by the tenant's, other entries kept: the one
  rewrite admmgt makes, on a setting, never in a body;
- refused before any tenant is touched, each naming the routine or view and
  the fix: a definition that still names the template schema (or changes
  search_path in its body), found by admmgt_plpy._search_path; a SECURITY
  DEFINER routine without SET search_path (the caller would choose what its
  bare names resolve to).

A tenant's own definitions are read the same way (bare, under its
search_path), so the md5 of the wanted text, made for the tenant, is compared
with the tenant's and only what differs is replaced, as for databases.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._names import quote_literal
from admmgt_plpy._search_path import names_schema


@dataclass(frozen=True)
class Definition:
    kind: str  # function | procedure | view
    name: str  # quoted, schema-qualified (bare for a schema tenant); routines with arguments
    sql: str  # CREATE OR REPLACE ...

    @property
    def md5(self) -> str:
        return hashlib.md5(self.sql.encode("utf-8")).hexdigest()

    @property
    def drop(self) -> str:
        return f"DROP {self.kind.upper()} {self.name}"


TEMPLATE_COLUMNS = "name text, kind text, definition text, search_path text, secdef boolean"
SEARCH_PATH_KEY = "search_path="


def _routines(schema: str, text: bool) -> str:
    columns = "d.def AS definition, d.search_path, d.secdef" if text else "md5(d.def) AS definition"
    return f"""
SELECT d.name, d.kind, {columns} FROM (
    SELECT quote_ident(p.proname)
               || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS name,
           k.kind,
           CASE WHEN starts_with(f.def, k.header || quote_ident(n.nspname) || '.')
                THEN k.header || substr(f.def, length(k.header || quote_ident(n.nspname)) + 2)
                ELSE f.def END AS def,
           (SELECT substr(c, {len(SEARCH_PATH_KEY) + 1}) FROM unnest(p.proconfig) AS c
            WHERE c LIKE 'search\\_path=%' LIMIT 1) AS search_path,
           p.prosecdef AS secdef
    FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    CROSS JOIN LATERAL (SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END
                        AS kind) AS k0
    CROSS JOIN LATERAL (SELECT k0.kind, 'CREATE OR REPLACE ' || upper(k0.kind) || ' ' AS header)
        AS k
    CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_functiondef(p.oid) AS def) AS f
    WHERE n.nspname = {quote_literal(schema)} AND p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS e
                      WHERE e.classid = 'pg_catalog.pg_proc'::regclass AND e.objid = p.oid
                        AND e.deptype = 'e')) AS d
ORDER BY d.name"""


def views_in_order(*, where: str, qualified: bool, columns: str) -> str:
    """The views of the schemas ``where`` selects (on ``n``, pg_namespace),
    each after the views it reads, so that they can be created in this order:
    (name, kind 'view', ``columns`` on ``v``, whose ``def`` is the CREATE OR
    REPLACE VIEW text). ``qualified``: names carry their schema, else bare
    (read under that schema's search_path)."""
    schema = "quote_ident(n.nspname) || '.' || " if qualified else ""
    return f"""
WITH RECURSIVE views AS (
    SELECT c.oid, {schema}quote_ident(c.relname) AS name,
           'CREATE OR REPLACE VIEW ' || {schema}quote_ident(c.relname)
               || coalesce(' WITH (' || array_to_string(c.reloptions, ', ') || ')', '')
               || E' AS\\n' || pg_catalog.pg_get_viewdef(c.oid) AS def
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind = 'v' AND {where}),
uses AS (
    SELECT DISTINCT r.ev_class AS view, d.refobjid AS used
    FROM pg_catalog.pg_rewrite AS r
    JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
    WHERE r.ev_class IN (SELECT oid FROM views) AND d.refobjid IN (SELECT oid FROM views)
      AND d.refobjid <> r.ev_class),
depth AS (
    SELECT oid, 0 AS level FROM views
    UNION ALL
    SELECT uses.view, depth.level + 1 FROM depth JOIN uses ON uses.used = depth.oid)
SELECT v.name, 'view' AS kind, {columns}
FROM views AS v JOIN (SELECT oid, max(level) AS level FROM depth GROUP BY oid) AS l USING (oid)
ORDER BY l.level, v.name"""


def _views(schema: str, text: bool) -> str:
    columns = (
        "v.def AS definition, NULL::text AS search_path, false AS secdef"
        if text
        else "md5(v.def) AS definition"
    )
    return views_in_order(
        where=f"n.nspname = {quote_literal(schema)}", qualified=False, columns=columns
    )


def schema_definitions_query(kind: str, schema: str, *, text: bool) -> str:
    """The definitions of one kind in ``schema``, bare (read over a connection
    whose search_path is ``schema``), in the order they can be created:
    columns :data:`TEMPLATE_COLUMNS`; or (``text`` false) their md5s, columns
    :data:`admmgt_plpy._sync.DEFINITION_COLUMNS`."""
    return _routines(schema, text) if kind == "routines" else _views(schema, text)


def split_guc_list(value: str) -> list[str]:
    """A list setting's stored value as PostgreSQL's SplitGUCList reads it:
    comma-separated names, double quotes removed (``""`` is a quote), no case folding."""
    items: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i].isspace():
            i += 1
        if i >= n:
            return items
        if value[i] == '"':
            j, word = i + 1, []
            while j < n:
                if value[j] == '"':
                    if value.startswith('"', j + 1):
                        word.append('"')
                        j += 2
                        continue
                    break
                word.append(value[j])
                j += 1
            items.append("".join(word))
            i = j + 1
        else:
            j = i
            while j < n and value[j] != "," and not value[j].isspace():
                j += 1
            items.append(value[i:j])
            i = j
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == ",":
            i += 1


def setting_line(entries: list[str]) -> str:
    """The line pg_get_functiondef prints for a routine's SET search_path."""
    return " SET search_path TO " + ", ".join(quote_literal(e) for e in entries) + "\n"


SETTING = re.compile(r"^ SET search_path TO (.*)$")
LITERAL = re.compile(r"(E?)'((?:[^']|'')*)'")


def header(sql: str) -> tuple[str, str]:
    """A routine's definition as (header, rest): pg_get_functiondef's first
    line and the attribute lines after it, which start with a space
    (RETURNS, LANGUAGE, SET ...), then the body (AS ..., BEGIN ATOMIC ...)."""
    lines = sql.splitlines(keepends=True)
    end = 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return "".join(lines[:end]), "".join(lines[end:])


def setting_of(sql: str) -> tuple[str, ...] | None:
    """The SET search_path entries a routine's definition prints in its header."""
    for line in header(sql)[0].splitlines():
        m = SETTING.match(line)
        if m:
            return tuple(
                (v.replace("''", "'").replace("\\\\", "\\") if e else v.replace("''", "'"))
                for e, v in LITERAL.findall(m.group(1))
            )
    return None


@dataclass(frozen=True)
class TemplateDefinition:
    """A routine or view as the template schema has it, bare; made for a
    tenant schema by :meth:`for_schema`."""

    definition: Definition
    search_path: tuple[str, ...] | None = None  # a routine's SET search_path entries
    secdef: bool = False

    @classmethod
    def of(cls, definition: Definition, secdef: bool = False) -> TemplateDefinition:
        """From a definition's text (its SET search_path read from the header)."""
        path = None if definition.kind == "view" else setting_of(definition.sql)
        return cls(definition, path, secdef)

    @property
    def setting(self) -> str | None:
        """Its SET search_path line as the definition prints it."""
        return None if self.search_path is None else setting_line(list(self.search_path))

    def for_schema(self, template: str, schema: str) -> Definition:
        """The definition for tenant schema ``schema``: the template schema
        replaced by it in the header's SET search_path, nothing else changed."""
        d = self.definition
        setting = self.setting
        if setting is None or self.search_path is None or template not in self.search_path:
            return d
        entries = [schema if e == template else e for e in self.search_path]
        head, body = header(d.sql)
        return Definition(d.kind, d.name, head.replace(setting, setting_line(entries), 1) + body)


def template_definition(row: dict[str, Any]) -> TemplateDefinition:
    """A row of :func:`schema_definitions_query` (text) read; the SET
    search_path is the catalog's (proconfig), parsed as PostgreSQL does."""
    path = row.get("search_path")
    return TemplateDefinition(
        Definition(str(row["kind"]), str(row["name"]), str(row["definition"])),
        None if path is None else tuple(split_guc_list(str(path))),
        bool(row.get("secdef")),
    )


def refusals(template: str, found: list[TemplateDefinition]) -> list[str]:
    """Why each definition cannot be made in a tenant schema (empty: none)."""
    problems = []
    for t in found:
        d = t.definition
        what = f"{'view' if d.kind == 'view' else d.kind} {template}.{d.name}"
        setting = t.setting
        if setting is not None and setting not in header(d.sql)[0]:
            problems.append(
                f"{what}: its SET search_path was not found in its definition, so it cannot "
                "be rewritten for the tenants; set it again with ALTER ... SET search_path"
            )
            continue
        if d.kind != "view" and t.secdef and setting is None:
            problems.append(
                f"{what} is SECURITY DEFINER without SET search_path (the caller would choose "
                f"what its names resolve to); give it SET search_path = {template}"
            )
            continue
        head, body = header(d.sql)
        text = d.sql if setting is None else head.replace(setting, "\n", 1) + body
        reference = names_schema(text, template)
        if reference is None:
            continue
        if reference.startswith(("SET ", "set_config")):
            problems.append(
                f"{what} changes search_path in its definition ({reference}); tenants run "
                f"it in their own schema: give it SET search_path = {template} instead"
            )
        elif d.kind == "view":
            problems.append(
                f'{what} names schema "{template}" in its definition ({reference}), so a '
                "tenant's copy would read the template's objects: rename the object whose "
                "bare name resolves elsewhere (pg_catalog has one of that name, say)"
            )
        else:
            problems.append(
                f'{what} names schema "{template}" in its definition ({reference}); '
                f"give it SET search_path = {template} and bare names"
            )
    return problems


def refuse(operation: str, label: str, problems: list[str]) -> None:
    """Raise the refusal of :func:`refusals`, naming every problem."""
    if not problems:
        return
    listed = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    raise AdmmgtError(
        f"{operation}(0): {len(problems)} definition(s) in the template schema "
        f'"{label}" cannot be made in a tenant schema: {listed}',
        hint=f"Fix them in the template schema (CREATE OR REPLACE there), then CALL "
        f"admmgt.{operation}(0) again; no tenant was changed.",
    )
