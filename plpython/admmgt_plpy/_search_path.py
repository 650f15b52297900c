"""What a schema tenant cannot run: SQL that names the template's schema.

A schema tenant runs a script's raw SQL steps and procedure calls, and the
routines and views synced from the template, with ``search_path`` set to its
own schema, so the SQL must use bare names. :func:`names_schema` finds the
first thing in a piece of SQL that would defeat that:

- a qualified name whose schema is the template's (``mgttest.orders``,
  ``"mgttest".orders``, ``MgtTest.orders``; a quoted name matches its exact
  case, an unquoted one folds to lower case, as PostgreSQL does);
- ``SCHEMA mgttest`` (``CREATE/DROP/ALTER SCHEMA``, ``GRANT ... ON SCHEMA``,
  ``IN SCHEMA``);
- ``SET search_path`` (a statement, ``SET LOCAL``, a routine's or a role's
  ``SET`` clause), ``set_config('search_path', ...)`` and ``SET SCHEMA``.

It lexes with the statement splitter's lexer (admmgt_plpy._sqlsplit.tokens),
so comments and quoted identifiers never match, and it lexes routine bodies
(DO blocks, SQL and PL/pgSQL routine bodies, dollar-quoted or in single
quotes: ``AS 'SELECT ...'``, ``DO '...'``) again, so a reference inside a
body does. A body in another language (``LANGUAGE plpython3u``), or one the
SQL lexer cannot read, is searched as plain text.

Any other string literal (plain or ``E''``) counts when it holds a name
qualified by the template schema (``'mgttest.orders'``): the server resolves
names in strings (``nextval('mgttest.seq')``, ``'mgttest.t'::regclass``,
``to_regclass('mgttest.t')``), so a tenant would use the template's object.
A string that merely mentions such a name (a NOTICE text, a COMMENT) is
refused as well: a false refusal, the price of not guessing which strings
the server reads as names. Dynamic SQL (``EXECUTE 'SELECT ... FROM ' ||
...``) is only checked as far as its string pieces go.

Pure standard library: the installer and the server both import it.
"""

from __future__ import annotations

import re

from admmgt_plpy._sqlsplit import DOLLAR_TAG, SplitError, Token, tokens

LEXED_LANGUAGES = ("sql", "plpgsql")


def names_schema(sql: str, schema: str, *, language: str | None = None) -> str | None:
    """A short description of the first reference in ``sql`` that schema
    tenants cannot run, such as ``"mgttest.orders at line 2"``; None if there
    is none. ``schema`` is the template schema's name as stored (case
    matters). ``language``: the language ``sql`` is written in, when it is a
    routine's body rather than SQL statements (None: SQL)."""
    if language is not None and language.lower() not in LEXED_LANGUAGES:
        return _text_search(sql, schema, 0)
    return _lexed(sql, schema, 0)


def _lexed(sql: str, schema: str, base: int) -> str | None:
    """names_schema on SQL text whose line 1 is line ``base + 1`` of the whole."""
    try:
        toks = [t for t in tokens(sql) if t.kind not in ("space", "comment")]
    except SplitError:
        return _text_search(sql, schema, base)
    plain = _foreign_language(toks)
    for k, tok in enumerate(toks):
        if tok.kind == "dollar":
            tag = DOLLAR_TAG.match(tok.text)
            opened = tag.end() if tag else 0
            body = tok.text[opened : len(tok.text) - opened]
            where = base + tok.line - 1
            found = _text_search(body, schema, where) if plain else _lexed(body, schema, where)
            if found:
                return found
            continue
        if tok.kind == "string":
            found = _in_string(toks, k, schema, base, plain)
            if found:
                return found
            continue
        found = _at(toks, k, schema)
        if found:
            return f"{found} at line {base + tok.line}"
    return None


# Why a name in a string counts, said with the reference names_schema gives.
IN_STRING = (
    "in a string literal, which the server resolves as a name (nextval('...'), "
    "'...'::regclass, to_regclass, routine bodies)"
)


def _in_string(toks: list[Token], k: int, schema: str, base: int, plain: bool) -> str | None:
    """What string token ``k`` holds that schema tenants cannot run: a routine
    body in single quotes is lexed as a dollar-quoted one is; any other string
    counts when it holds a name qualified by ``schema``."""
    tok = toks[k]
    value = _string(tok)
    if value is None:
        return None
    where = base + tok.line - 1
    if _is_body(toks, k):
        return _text_search(value, schema, where) if plain else _lexed(value, schema, where)
    match = re.search(_qualified(schema), value)
    if match is None:
        return None
    line = where + value.count("\n", 0, match.start()) + 1
    return f"{' '.join(match.group(0).split())} at line {line}, {IN_STRING}"


def _is_body(toks: list[Token], k: int) -> bool:
    """Whether string token ``k`` is a routine's or DO block's body: it follows
    ``AS`` or ``DO`` (``DO LANGUAGE plpgsql '...'`` too)."""

    def word(j: int) -> str | None:
        return toks[j].text.lower() if j >= 0 and toks[j].kind == "word" else None

    return word(k - 1) in ("as", "do") or (word(k - 2) == "language" and word(k - 3) == "do")


def _name(tok: Token | None) -> str | None:
    """The name a word or quoted identifier stands for (None for other tokens)."""
    if tok is None:
        return None
    if tok.kind == "word":
        return tok.text.lower()
    if tok.kind == "ident":
        return tok.text[1:-1].replace('""', '"')
    return None


def _string(tok: Token | None) -> str | None:
    """The value of a plain or E'' string token (None for other tokens)."""
    if tok is None or tok.kind != "string":
        return None
    text = tok.text[1:] if tok.text[0] in "eE" else tok.text
    return text[1:-1].replace("''", "'")


def _at(toks: list[Token], k: int, schema: str) -> str | None:
    """What the reference starting at token ``k`` is, if schema tenants cannot run it."""

    def tok(j: int) -> Token | None:
        return toks[j] if 0 <= j < len(toks) else None

    def punct(j: int, text: str) -> bool:
        t = tok(j)
        return t is not None and t.kind == "punct" and t.text == text

    here = toks[k]
    name = _name(here)
    if name is None:
        return None
    after = tok(k + 2)
    if name == schema and punct(k + 1, ".") and after is not None and _name(after) is not None:
        return f"{here.text}.{after.text}"
    if here.kind != "word":
        return None
    if name == "set":
        j = k + 1
        if _name(tok(j)) in ("local", "session") and tok(j + 1) is not None:
            j += 1
        target = _name(tok(j))
        if target == "search_path":
            return f"SET {toks[j].text}"
        if target == "schema" and not punct(j + 1, "="):  # not UPDATE ... SET schema = ...
            return f"SET {toks[j].text}"
    if name == "set_config" and punct(k + 1, "("):
        value = _string(tok(k + 2))
        if value is not None and value.strip().lower() == "search_path":
            return f"set_config({toks[k + 2].text}, ...)"
    if name == "schema" and not punct(k - 1, "."):
        j = k + 1
        while _name(tok(j)) in ("if", "not", "exists") and tok(j + 1) is not None:
            j += 1
        if _name(tok(j)) == schema:
            return f"SCHEMA {toks[j].text}"
    return None


def _foreign_language(toks: list[Token]) -> bool:
    """Whether the statement declares a routine language the SQL lexer does not read."""
    for k, t in enumerate(toks[:-1]):
        if t.kind == "word" and t.text.lower() == "language":
            lang = _name(toks[k + 1]) or _string(toks[k + 1])
            if lang is not None and lang.lower() not in LEXED_LANGUAGES:
                return True
    return False


def _qualified(schema: str) -> str:
    """A pattern for a name qualified by ``schema`` in plain text."""
    bare = re.escape(schema)
    quoted = re.escape('"' + schema.replace('"', '""') + '"')
    unquoted = f"(?i:{bare})" if schema == schema.lower() else "(?!)"
    return rf"(?<![\w$\"])(?:{unquoted}|{quoted})\s*\.\s*(?:[\w$]+|\"(?:[^\"]|\"\")*\")"


def _text_search(text: str, schema: str, base: int) -> str | None:
    """The plain-text fallback: the same references, found by pattern, not lexed."""
    patterns = (
        _qualified(schema),
        r"(?i)(?<![\w$])set\s+(?:(?:local|session)\s+)?(?:search_path|schema)\b",
        r"(?i)(?<![\w$])set_config\s*\(\s*'search_path'",
    )
    found = [m for p in patterns if (m := re.search(p, text))]
    if not found:
        return None
    first = min(found, key=lambda m: m.start())
    line = base + text.count("\n", 0, first.start()) + 1
    return f"{' '.join(first.group(0).split())} at line {line}"
