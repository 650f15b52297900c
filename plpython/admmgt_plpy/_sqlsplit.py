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


def _lex(text: str, name: str) -> list[tuple[str, int]]:
    """(statement, line) pairs: comments outside quotes replaced by a space."""
    out: list[tuple[str, int]] = []
    buf: list[str] = []
    start = [0]  # line of the statement's first character; 0 while only blanks
    i, n, line = 0, len(text), 1

    def add(piece: str, at_line: int) -> None:
        if not start[0] and piece.strip():
            start[0] = at_line
        buf.append(piece)

    def emit() -> None:
        sql = "".join(buf).strip()
        if sql:
            out.append((sql, start[0]))
        buf.clear()
        start[0] = 0

    def fail(what: str, at_line: int) -> SplitError:
        return SplitError(
            f"{name} line {at_line}: {what}",
            hint="Fix the file and add it again; nothing was stored.",
        )

    while i < n:
        c = text[i]
        if c == "\n":
            buf.append(c)
            line += 1
            i += 1
        elif c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            buf.append(" ")
        elif c == "/" and text.startswith("/*", i):
            depth, j, opened = 1, i + 2, line
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    line += text[j] == "\n"
                    j += 1
            if depth:
                raise fail("a /* comment is never closed", opened)
            buf.append(" ")
            i = j
        elif c == "'" or (c in "eE" and text.startswith("'", i + 1) and not _ident_before(buf)):
            escapes = c != "'"
            j = i + (2 if escapes else 1)
            opened = line
            while True:
                if j >= n:
                    raise fail("a string literal is never closed", opened)
                ch = text[j]
                if escapes and ch == "\\":
                    line += text[j + 1 : j + 2] == "\n"
                    j += 2
                    continue
                if ch == "'":
                    if text.startswith("'", j + 1):
                        j += 2
                        continue
                    j += 1
                    break
                line += ch == "\n"
                j += 1
            add(text[i:j], opened)
            i = j
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
            add(text[i : end + 1], line)
            line += text.count("\n", i, end + 1)
            i = end + 1
        elif c == "$" and not _ident_before(buf) and (m := DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            end = text.find(tag, m.end())
            if end < 0:
                raise fail(f"the dollar quote {tag} is never closed", line)
            add(text[i : end + len(tag)], line)
            line += text.count("\n", i, end + len(tag))
            i = end + len(tag)
        elif c == "\\" and not start[0]:
            end = text.find("\n", i)
            command = text[i : n if end < 0 else end].strip()
            raise fail(
                f"{command.split()[0]} is a psql command, not SQL; admmgt does not run psql", line
            )
        elif c == ";":
            emit()
            i += 1
        else:
            add(c, line)
            i += 1
    emit()
    return out


def _ident_before(buf: list[str]) -> bool:
    """True when the character before is part of a word (x$1$, col$, E' in "name'")."""
    for piece in reversed(buf):
        if piece:
            ch = piece[-1]
            return ch.isalnum() or ch in "_$"
    return False
