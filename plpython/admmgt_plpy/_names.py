"""Identifier rules, quoting and pre-checks of SQL text taken from metadata.

Everything that reaches generated SQL from a metadata row passes through this
module: names are folded, checked and always double-quoted; values become
literals; data types, expressions and DBA-written statements are pre-checked so
that a hostile row (``0); drop table x; --``) is refused with a clear message
before any server sees it. The server still has the last word: data types are
validated with ``%L::regtype`` and expressions by applying the script to the
template first (see docs/metadata.md).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from admmgt_plpy._errors import AdmmgtError, MetadataError

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "AdmmgtError",
    "MetadataError",
    "check_datatype",
    "check_expression",
    "check_identifier",
    "check_statement",
    "fold",
    "identifier_char",
    "qualified",
    "quote_ident",
    "quote_literal",
]

# NAMEDATALEN - 1: PostgreSQL silently truncates longer names, which would
# make two metadata names collide on the server.
MAX_IDENTIFIER_BYTES = 63

_IDENTIFIER_RULE = "use 1 to 63 bytes of letters, digits, _ or $, starting with a letter or _"


def fold(name: str) -> str:
    """Fold a name to lower case, as PostgreSQL does with unquoted names."""
    return name.lower()


def identifier_char(char: str, *, first: bool = False) -> bool:
    """Whether ``char`` may appear in an admmgt identifier (at its start if ``first``)."""
    if char.isalpha() or char == "_":
        return True
    if first:
        return False
    return char in "0123456789$"


def check_identifier(name: object, *, what: str) -> str:
    """Return ``name`` folded, or raise MetadataError naming ``what`` and the value."""
    if not isinstance(name, str):
        raise MetadataError(
            f"{what}: {name!r} is not a valid identifier: it is missing or not text; "
            f"{_IDENTIFIER_RULE}"
        )
    folded = fold(name)
    reason: str | None = None
    # Python folds letters that PostgreSQL never folds (the Kelvin sign K to
    # ASCII k, capital letters outside ASCII): such a name would be created
    # under another name than the one given, so it is refused instead.
    changed = next((c for c in name if ord(c) > 127 and c.lower() != c), None)
    if not folded:
        reason = "it is empty"
    elif changed is not None:
        reason = (
            f"it contains {changed!r}, a letter outside ASCII that would be created as "
            f"{changed.lower()!r}; write the name in lower case"
        )
    elif unicodedata.normalize("NFC", name) != name:
        reason = "it is not in Unicode normal form NFC; retype it as composed characters"
    elif len(folded.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        reason = f"it is {len(folded.encode('utf-8'))} bytes long"
    elif not identifier_char(folded[0], first=True):
        reason = f"it starts with {folded[0]!r}"
    else:
        bad = [c for c in folded if not identifier_char(c)]
        if bad:
            reason = f"it contains {bad[0]!r}"
    if reason is not None:
        raise MetadataError(
            f"{what}: {name!r} is not a valid identifier: {reason}; {_IDENTIFIER_RULE}"
        )
    return folded


def quote_ident(name: str) -> str:
    """Double-quote ``name`` unconditionally, doubling embedded double quotes."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``."""
    return quote_ident(schema) + "." + quote_ident(name)


def quote_literal(value: str) -> str:
    """A SQL string literal, exactly as PostgreSQL's quote_literal() writes it."""
    doubled = value.replace("'", "''")
    if "\\" in value:
        return "E'" + doubled.replace("\\", "\\\\") + "'"
    return "'" + doubled + "'"


def _datatype_char(char: str) -> bool:
    return char.isalpha() or char in '0123456789 _.,()[]"'


def check_datatype(text: object, *, what: str) -> str:
    """Pre-check a data type from metadata and return it stripped.

    Conservative on purpose: letters, digits, spaces, ``_ . , ( ) [ ] "`` only,
    balanced parentheses and brackets, so ``;``, ``--`` and ``/*`` cannot occur.
    The server then validates the type itself with ``SELECT %L::regtype`` on
    the template before anything is applied (CompiledScript.validations).
    """
    if not isinstance(text, str) or not text.strip():
        raise MetadataError(
            f"{what}: {text!r} is not a data type: it is missing or empty; "
            "give a type such as bigint, text or numeric(12,2)"
        )
    stripped = text.strip()
    reason: str | None = None
    bad = next((c for c in stripped if not _datatype_char(c)), None)
    if bad is not None:
        reason = f"it contains {bad!r}"
    elif stripped.count('"') % 2:
        reason = "its double quotes are unbalanced"
    else:
        reason = _unbalanced(stripped.replace('"', ""), "()") or _unbalanced(
            stripped.replace('"', ""), "[]"
        )
    if reason is not None:
        raise MetadataError(
            f"{what}: {text!r} is not a data type: {reason}; use letters, digits, spaces "
            'and _ . , ( ) [ ] " only, e.g. numeric(12,2) or text[]'
        )
    return stripped


def _unbalanced(text: str, pair: str) -> str | None:
    opening, closing = pair[0], pair[1]
    depth = 0
    for char in text:
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth < 0:
                return f"it has an unmatched {closing!r}"
    return f"it has an unmatched {opening!r}" if depth else None


@dataclass(frozen=True)
class _Scan:
    """What the lexer found outside quoted text.

    ``commas``: ``,`` outside every parenthesis and bracket (a list separator
    of the enclosing statement, never part of one expression). ``subquery``:
    the keyword (SELECT, VALUES, TABLE or WITH) that starts a parenthesized
    query, the only way a subquery can be written.
    """

    semicolons: tuple[int, ...]
    problem: str | None
    commas: tuple[int, ...] = ()
    subquery: str | None = None
    parameter: str | None = None


_DOLLAR_TAG = re.compile(r"\$([^\W\d]\w*)?\$")
_PARAMETER = re.compile(r"\$\d+")
# A query in parentheses starts with one of these (after any more '('), so an
# expression without one of them right after a '(' holds no subquery.
_QUERY_KEYWORDS = frozenset({"select", "values", "table", "with"})


def _scan(text: str) -> _Scan:
    """Lex ``text`` the way the PostgreSQL scanner splits quoted and unquoted parts.

    Understands '...' (with '' escapes), E'...' (backslash escapes too),
    "..." identifiers and $tag$...$tag$ bodies. Outside them it reports every
    ``;`` and top-level ``,``, the first ``--``, ``/*`` or parenthesis or
    bracket imbalance, and the first keyword that opens a subquery. Identifier
    and number runs are consumed whole so that ``a$b$`` is a name, not a
    dollar quote, and only a lone ``e``/``E`` before a quote opens an escape
    string: getting either wrong could hide a ``;`` inside what looks like a
    string.
    """
    semicolons: list[int] = []
    commas: list[int] = []
    subquery: str | None = None
    parameter: str | None = None
    depth = 0
    brackets = 0
    after_open = False  # the last token was '(' (whitespace aside)
    i = 0
    n = len(text)

    def scan(problem: str | None) -> _Scan:
        return _Scan(tuple(semicolons), problem, tuple(commas), subquery, parameter)

    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        opened, after_open = after_open, False
        if char.isalpha() or char == "_" or ord(char) > 127:
            start = i
            while i < n and (text[i].isalnum() or text[i] in "_$" or ord(text[i]) > 127):
                i += 1
            word = text[start:i].lower()
            if opened and subquery is None and word in _QUERY_KEYWORDS:
                subquery = word.upper()
            if i - start == 1 and text[start] in "eE" and i < n and text[i] == "'":
                end = _end_of_quoted(text, i + 1, "'", backslash=True)
                if end < 0:
                    return scan("it has an unterminated E'...' string")
                i = end
            continue
        if char.isdigit():
            while i < n and (text[i].isdigit() or text[i] == "."):
                i += 1
            continue
        if char in "'\"":
            end = _end_of_quoted(text, i + 1, char, backslash=False)
            if end < 0:
                kind = "string" if char == "'" else "quoted identifier"
                return scan(f"it has an unterminated {kind}")
            i = end
            continue
        if char == "$":
            found = _PARAMETER.match(text, i)
            if found:
                parameter = parameter or found.group(0)
                i = found.end()
                continue
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                close = text.find(tag.group(0), tag.end())
                if close < 0:
                    return scan(f"it has an unterminated dollar-quoted string {tag.group(0)}")
                i = close + len(tag.group(0))
                continue
            i += 1
            continue
        if text.startswith("--", i) or text.startswith("/*", i):
            return scan(f"it contains a comment ({text[i : i + 2]}) outside quotes")
        if char == ";":
            semicolons.append(i)
        elif char == "," and depth == 0 and brackets == 0:
            commas.append(i)
        elif char == "(":
            depth += 1
            after_open = True
        elif char == ")":
            depth -= 1
            if depth < 0:
                return scan("it has an unmatched ')'")
        elif char == "[":
            brackets += 1
        elif char == "]":
            brackets -= 1
            if brackets < 0:
                return scan("it has an unmatched ']'")
        i += 1
    if depth:
        return scan("it has an unmatched '('")
    if brackets:
        return scan("it has an unmatched '['")
    return scan(None)


def _end_of_quoted(text: str, i: int, quote: str, *, backslash: bool) -> int:
    """Index just past the closing ``quote`` of a literal whose body starts at ``i``; -1 if none."""
    n = len(text)
    while i < n:
        char = text[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == quote:
            if i + 1 < n and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return -1


def check_expression(text: object, *, what: str) -> str:
    """Pre-check a default, USING expression or index predicate; return it stripped.

    These are SQL text by nature, so they cannot be quoted. The lexer refuses
    what could make the text more than one expression: a ``;``, ``--`` or
    ``/*`` outside quoted text, unbalanced parentheses or brackets, and a
    ``,`` outside them (which would end one item of an ALTER TABLE or CREATE
    TABLE list and start another). It also refuses subqueries, which
    PostgreSQL allows in none of these places. The compiler emits the text
    inside parentheses, so nothing in it can close the clause it is in; the
    server then parses it as exactly one expression of its kind on the
    template (admmgt_plpy._validate) before anything is applied.
    """
    if not isinstance(text, str) or not text.strip():
        raise MetadataError(
            f"{what}: {text!r} is not an expression: it is missing or empty; "
            "give an SQL expression such as 0, now() or 'open'"
        )
    stripped = text.strip()
    scan = _scan(stripped)
    reason = scan.problem
    if reason is None and scan.semicolons:
        reason = "it contains ';' outside quotes"
    if reason is None and scan.commas:
        reason = (
            "it contains ',' outside parentheses, which would end the expression and start "
            "another item of the statement"
        )
    if reason is None and scan.parameter is not None:
        reason = f"it contains a parameter ({scan.parameter}), which nothing would fill in"
    if reason is None and scan.subquery is not None:
        reason = (
            f"it contains a subquery ({scan.subquery} after '('), which PostgreSQL does not "
            "allow in a default, USING expression or index predicate"
        )
    if reason is not None:
        raise MetadataError(
            f"{what}: {text!r} is refused as an SQL expression: {reason}; "
            "write one expression, with no ';', top-level ',', subquery, parameter or "
            "comments outside quotes"
        )
    return stripped


def check_statement(text: object, *, what: str) -> str:
    """Pre-check a DBA-written statement; return it stripped, one trailing ``;`` removed.

    Dollar-quoted bodies (functions, DO blocks) may contain ``;``; a second
    statement, or a comment outside quotes, is refused.
    """
    if not isinstance(text, str) or not text.strip():
        raise MetadataError(
            f"{what}: {text!r} is not a statement: it is missing or empty; give one SQL statement"
        )
    stripped = text.strip()
    scan = _scan(stripped)
    reason = scan.problem
    semicolons = scan.semicolons
    if reason is None and semicolons and semicolons[-1] == len(stripped) - 1:
        stripped = stripped[:-1].rstrip()
        semicolons = semicolons[:-1]
    if reason is None and semicolons:
        reason = "it contains more than one statement (a ';' outside quotes)"
    if reason is None and not stripped:
        reason = "it is empty"
    if reason is not None:
        raise MetadataError(
            f"{what}: {text!r} is refused as an SQL statement: {reason}; "
            "give exactly one statement, with no comments outside quotes, "
            "and split several statements into separate rows"
        )
    return stripped
