"""Scripts from SQL files and back: `admmgt script add` and `admmgt script export`.

A Flyway-style file ``V7__add_tier.sql`` becomes script 7, "add tier": its
statements, split by admmgt's lexer (admmgt_plpy._sqlsplit), are the
script's raw steps (admmgt.script_steps), in file order, each marked
transactional or not. The file's sha256 is kept in scripts.source_checksum,
so adding a folder again adds only the new files, and a file changed after
it was added is refused. Everything happens in one transaction: a folder of
files is added whole or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from admmgt._version import __version__
from admmgt_plpy._sqlsplit import SplitError, Statement, checksum, split

FLYWAY = re.compile(r"^V(\d+)__(\w[\w\-. ]*)\.sql$")
IDEMPOTENT_HINT = re.compile(r"\bIF (NOT )?EXISTS\b", re.IGNORECASE)


class ScriptFileError(Exception):
    """A file that cannot be added; the message names it and says what to do."""


@dataclass(frozen=True)
class ScriptFile:
    path: Path
    id: int
    description: str
    checksum: str
    statements: tuple[Statement, ...]


def parse_name(path: Path) -> tuple[int, str]:
    found = FLYWAY.match(path.name)
    if not found:
        raise ScriptFileError(
            f"{path}: the name is not V<version>__<description>.sql (e.g. V7__add_tier.sql); "
            "the version is the script id"
        )
    return int(found.group(1)), found.group(2).replace("_", " ").strip()


def read(path: Path) -> list[ScriptFile]:
    """The script files at ``path`` (a file, or a folder's V*__*.sql), by version."""
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix == ".sql" and p.is_file())
        if not paths:
            raise ScriptFileError(f"{path}: no .sql file in this folder")
    elif path.is_file():
        paths = [path]
    else:
        raise ScriptFileError(f"{path}: no such file or folder")
    files = []
    for p in paths:
        script_id, description = parse_name(p)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ScriptFileError(f"{p}: not UTF-8 text") from None
        try:
            statements = split(text, p.name)
        except SplitError as exc:
            raise ScriptFileError(f"{exc.message}\n{exc.hint}") from None
        if not statements:
            raise ScriptFileError(f"{p}: no SQL statement in the file")
        files.append(ScriptFile(p, script_id, description, checksum(text), tuple(statements)))
    seen: dict[int, Path] = {}
    for f in files:
        if f.id in seen:
            raise ScriptFileError(f"{seen[f.id]} and {f.path} have the same version {f.id}")
        seen[f.id] = f.path
    return sorted(files, key=lambda f: f.id)


def warnings(f: ScriptFile) -> list[str]:
    """Non-transactional statements that do not look idempotent (a re-run repeats them)."""
    return [
        f"{f.path.name} line {s.line}: runs outside the script's transaction, so a failed run "
        "repeats it; make it idempotent (IF NOT EXISTS / IF EXISTS)"
        for s in f.statements
        if not s.transactional
        and s.sql.split()[0].upper() in ("CREATE", "DROP")
        and not IDEMPOTENT_HINT.search(s.sql)
    ]


def add(conn: psycopg.Connection[Any], files: list[ScriptFile], *, ready: bool) -> list[str]:
    """Store each file as a script, in one transaction; return a line per file."""
    lines = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("LOCK TABLE admmgt.scripts IN SHARE ROW EXCLUSIVE MODE")
        for f in files:
            cur.execute(
                "SELECT status, source_file, source_checksum FROM admmgt.scripts WHERE id = %s",
                (f.id,),
            )
            row = cur.fetchone()
            if row is not None:
                status, source, recorded = row
                if recorded == f.checksum:
                    lines.append(f"script {f.id} ({f.path.name}) was added before; unchanged")
                    continue
                origin = f"from {source}" if source else "written as rows"
                raise ScriptFileError(
                    f"{f.path}: script {f.id} already exists ({origin}, status {status}) "
                    "with other contents; nothing was added\n"
                    + (
                        "An applied script is history: put the change in a new file with a "
                        "higher version."
                        if status == 2
                        else f"To replace a script never applied: CALL admmgt.drop_script({f.id}); "
                        "then add the file again. Or give the file a higher version."
                    )
                )
            cur.execute(
                "SELECT max(id) FROM admmgt.scripts WHERE status = 2 OR applied_to_template_at"
                " IS NOT NULL"
            )
            top = cur.fetchone()
            if top and top[0] is not None and f.id < top[0]:
                raise ScriptFileError(
                    f"{f.path}: version {f.id} is below script {top[0]}, which is applied; "
                    "scripts apply in id order, so give the file a higher version. Nothing "
                    "was added"
                )
            cur.execute(
                "INSERT INTO admmgt.scripts (id, description, status, source_file,"
                " source_checksum) VALUES (%s, %s, 0, %s, %s)",
                (f.id, f.description, f.path.name, f.checksum),
            )
            for order, s in enumerate(f.statements, start=1):
                cur.execute(
                    "INSERT INTO admmgt.script_steps (scriptid, steporder, sqltext,"
                    " transactional, description, status) VALUES (%s, %s, %s, %s, %s, 1)",
                    (f.id, order, s.sql, s.transactional, f"{f.path.name} line {s.line}"),
                )
            if ready:
                cur.execute("UPDATE admmgt.scripts SET status = 1 WHERE id = %s", (f.id,))
            outside = sum(not s.transactional for s in f.statements)
            lines.append(
                f"script {f.id} ({f.path.name}): {len(f.statements)} statement(s)"
                + (f", {outside} outside the transaction" if outside else "")
                + ("; ready (status 1)" if ready else "; a draft (status 0)")
            )
    return lines


def export(conn: psycopg.Connection[Any], script_id: int) -> str:
    """Script ``script_id`` compiled, as a SQL file psql can run on one database."""
    with conn.cursor() as cur:
        cur.execute("SELECT description FROM admmgt.scripts WHERE id = %s", (script_id,))
        found = cur.fetchone()
        if found is None:
            raise ScriptFileError(f"script {script_id} does not exist in admmgt.scripts")
        cur.execute(
            "SELECT step, kind, target, transactional, statement"
            " FROM admmgt.plan_script(%s) ORDER BY step",
            (script_id,),
        )
        steps = cur.fetchall()
    out = [
        f"-- admmgt script {script_id}: {found[0] or ''}".rstrip(),
        f"-- Compiled by admmgt {__version__} from its metadata (admmgt.plan_script).",
        "-- applyScripts runs the statements of the transaction below in one transaction",
        "-- per database, with the script's row of admmgt.script_history, which this file",
        "-- does not write; then the statements after it, each on its own.",
    ]
    inside = [s for s in steps if s[3]]
    outside = [s for s in steps if not s[3]]
    if inside:
        out.append("BEGIN;")
        out += [_step(s) for s in inside]
        out.append("COMMIT;")
    if outside:
        out.append("-- outside the transaction:")
        out += [_step(s) for s in outside]
    return "\n".join(out) + "\n"


def _step(row: tuple[Any, ...]) -> str:
    step, kind, target, _, statement = row
    text = statement.rstrip()
    return f"-- step {step}: {kind} {target}\n{text if text.endswith(';') else text + ';'}"
