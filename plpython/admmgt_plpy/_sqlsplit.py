"""Split a SQL file into statements, the way PostgreSQL's own lexer sees them.

Used by `admmgt script add` (the installer imports this module) to turn a
Flyway-style migration file into a script's raw steps (admmgt.script_steps).
Pure standard library: it may also run inside the server.

What it understands: ``--`` and nested ``/* */`` comments (dropped; a step
holds no comment outside quotes), ``'...'`` strings with ``''``, ``E'...'``
strings with backslash escapes, ``"quoted identifiers"``, ``$tag$ ... $tag$``
dollar quotes (function bodies full of ``;``), and ``;`` as the end of a
statement only outside all of these. It does not run psql: a backslash
command (``\\i``, ``\\set``) is refused.

A file's own transaction control is understood when it wraps the whole file
(``BEGIN;`` first, ``COMMIT;`` last: admmgt runs every script in one
transaction per database anyway, so they are dropped) and refused anywhere
else. Statements PostgreSQL will not run in a transaction block
(CREATE INDEX CONCURRENTLY, VACUUM, ...) are marked non-transactional.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from admmgt_plpy._errors import MetadataError


@dataclass(frozen=True)
class Statement:
    sql: str  # without comments outside quotes, without the final ';'
    line: int  # 1-based line of its first character in the file
    transactional: bool


class SplitError(MetadataError):
    """A file that cannot become script steps; the message names the file and line."""


# Statements PostgreSQL refuses inside a transaction block, matched on the
# statement with comments removed and whitespace collapsed, upper-cased.
OUTSIDE_TRANSACTION = (
    re.compile(r"^CREATE (UNIQUE )?INDEX CONCURRENTLY\b"),
    re.compile(r"^DROP INDEX CONCURRENTLY\b"),
    re.compile(r"^REINDEX\b.*\bCONCURRENTLY\b"),
    re.compile(r"^REINDEX (\(.*\) )?(SYSTEM|DATABASE)\b"),
    re.compile(r"^VACUUM\b"),
    re.compile(r"^ALTER TABLE\b.*\bDETACH PARTITION\b.*\bCONCURRENTLY$"),
    re.compile(r"^(CREATE|DROP) DATABASE\b"),
    re.compile(r"^(CREATE|DROP) TABLESPACE\b"),
    re.compile(r"^ALTER SYSTEM\b"),
    re.compile(r"^(CREATE|DROP) SUBSCRIPTION\b"),
)
TRANSACTION_CONTROL = re.compile(
    r"^(BEGIN|START TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|"
    r"PREPARE TRANSACTION|COMMIT PREPARED|ROLLBACK PREPARED)\b"
)
OPENS = re.compile(r"^(BEGIN|START TRANSACTION)( (WORK|TRANSACTION))?( ISOLATION LEVEL .*)?$")
CLOSES = re.compile(r"^(COMMIT|END)( (WORK|TRANSACTION))?$")
DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$")


def checksum(text: str) -> str:
    """sha256 of the file's text, as admmgt.scripts.source_checksum records it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _words(sql: str) -> str:
    """The statement's keywords for matching: quotes blanked, one space, upper case."""
    out = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "x", sql)
    return " ".join(out.split()).upper()


def split(text: str, name: str = "the file") -> list[Statement]:
    """The statements of ``text`` in order; SplitError for what cannot be a step."""
    raw = _lex(text, name)
    statements = []
    for sql, line in raw:
        words = _words(sql)
        transactional = not any(p.search(words) for p in OUTSIDE_TRANSACTION)
        statements.append(Statement(sql, line, transactional))
    return _unwrap(statements, name)


def _unwrap(statements: list[Statement], name: str) -> list[Statement]:
    control = [s for s in statements if TRANSACTION_CONTROL.match(_words(s.sql))]
    if not control:
        return statements
    if (
        len(control) == 2
        and statements[0] is control[0]
        and statements[-1] is control[1]
        and OPENS.match(_words(control[0].sql))
        and CLOSES.match(_words(control[1].sql))
    ):
        inner = statements[1:-1]
        outside = [s for s in inner if not s.transactional]
        if outside:
            raise SplitError(
                f"{name} line {outside[0].line}: {_first_words(outside[0].sql)} cannot run in the "
                "transaction the file's BEGIN opens",
                hint="Remove BEGIN and COMMIT: admmgt runs a script's statements in one "
                "transaction per database, and runs this one outside it.",
            )
        return inner
    where = control[0] if len(control) != 2 or statements[0] is not control[0] else control[1]
    raise SplitError(
        f"{name} line {where.line}: {_first_words(where.sql)} controls the transaction; "
        "admmgt runs each script in one transaction per database and records it in the "
        "same transaction",
        hint="Remove transaction control from the file (a BEGIN first and COMMIT last are "
        "accepted and dropped); split the work into two scripts if it needs two transactions.",
    )


def _first_words(sql: str) -> str:
    words = " ".join(sql.split()[:4])
    return words if len(words) <= 60 else words[:59] + "…"


@dataclass(frozen=True)
class Token:
    """One lexical piece of SQL text, as :func:`tokens` sees it."""

    kind: str  # word | ident | string | dollar | comment | space | punct
    text: str  # exactly as in the text (quotes, tags and comment markers kept)
    line: int  # 1-based line of its first character
    pos: int  # offset of its first character


WORD = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff][\w$\x80-\U0010ffff]*")
SPACE = re.compile(r"\s+")


def tokens(text: str, name: str = "the file") -> Iterator[Token]:
    """The pieces of ``text`` in order, each exactly as written (their texts
    joined give ``text`` back): words (keywords, bare names, numbers), quoted
    identifiers, strings ('...', E'...'), dollar-quoted strings, comments, white
    space, and any other single character. A dollar-quoted string is one token:
    lex its body again to see inside it. SplitError for a string, quoted
    identifier, dollar quote or comment that is never closed."""
    i, n, line = 0, len(text), 1
    last = ""  # the previous token's last character ("" at the start)

    def fail(what: str, at_line: int) -> SplitError:
        return SplitError(
            f"{name} line {at_line}: {what}",
            hint="Fix the file and add it again; nothing was stored.",
        )

    while i < n:
        c = text[i]
        kind = "punct"
        if c.isspace():
            m = SPACE.match(text, i)
            j, kind = (m.end() if m else i + 1), "space"
        elif c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            j, kind = (n if end < 0 else end), "comment"
        elif c == "/" and text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise fail("a /* comment is never closed", line)
            kind = "comment"
        elif c == "'" or (c in "eE" and text.startswith("'", i + 1) and not _wordish(last)):
            escapes = c != "'"
            j = i + (2 if escapes else 1)
            while True:
                if j >= n:
                    raise fail("a string literal is never closed", line)
                ch = text[j]
                if escapes and ch == "\\":
                    j += 2
                    continue
                if ch == "'":
                    if text.startswith("'", j + 1):
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            kind = "string"
        elif c == '"':
            end = i + 1
            while True:
                end = text.find('"', end)
                if end < 0:
                    raise fail("a quoted identifier is never closed", line)
                if text.startswith('"', end + 1):
                    end += 2
                    continue
                break
            j, kind = end + 1, "ident"
        elif c == "$" and not _wordish(last) and (m := DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            end = text.find(tag, m.end())
            if end < 0:
                raise fail(f"the dollar quote {tag} is never closed", line)
            j, kind = end + len(tag), "dollar"
        elif m := WORD.match(text, i):
            j, kind = m.end(), "word"
        else:
            j = i + 1
        piece = text[i:j]
        yield Token(kind, piece, line, i)
        line += piece.count("\n")
        last = " " if kind == "comment" else piece[-1]
        i = j


def _wordish(ch: str) -> bool:
    """True for a character that is part of a word (x$1$, col$, E' in name')."""
    return ch.isalnum() or ch in "_$" if ch else False


def _lex(text: str, name: str) -> list[tuple[str, int]]:
    """(statement, line) pairs: comments outside quotes replaced by a space."""
    out: list[tuple[str, int]] = []
    buf: list[str] = []
    start = 0  # line of the statement's first character; 0 while only blanks
    for tok in tokens(text, name):
        if tok.kind == "comment":
            buf.append(" ")
        elif tok.kind == "punct" and tok.text == ";":
            sql = "".join(buf).strip()
            if sql:
                out.append((sql, start))
            buf.clear()
            start = 0
        elif tok.kind == "punct" and tok.text == "\\" and not start:
            end = text.find("\n", tok.pos)
            command = text[tok.pos : len(text) if end < 0 else end].strip()
            raise SplitError(
                f"{name} line {tok.line}: {command.split()[0]} is a psql command, not SQL; "
                "admmgt does not run psql",
                hint="Fix the file and add it again; nothing was stored.",
            )
        else:
            if not start and tok.kind != "space":
                start = tok.line
            buf.append(tok.text)
    sql = "".join(buf).strip()
    if sql:
        out.append((sql, start))
    return out
