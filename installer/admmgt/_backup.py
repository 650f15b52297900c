"""Per-tenant backups: `admmgt backup` and `admmgt restore` (docs/backup.md).

Backup, per tenant, N tenants at a time (threads, each driving one pg_dump):

1. Record a row in admmgt.backups (outcome ``running``); its id names the folder.
2. Open a repeatable-read transaction in the tenant, export its snapshot and
   read the tenant's version from its own history in that snapshot.
3. pg_dump (of the server's major version) in directory format, with that
   snapshot: the dump and the recorded version agree.
4. sha256 of every file, and of the list of them; record size, checksums,
   end and outcome. A failed dump leaves no folder behind and a ``failed`` row.

Restore:

1. Refuse a backup that is not ``ok``, that is of another tenant, or whose
   files differ in any way from what was recorded (missing, extra, changed).
2. Refuse to overwrite a live tenant (or any existing database) unless
   ``replace``.
3. pg_restore into a new work database; on failure drop it, nothing else changed.
4. Read the version from the restored history, swap the work database into
   place (dropping the replaced one), and register the tenant with that
   version, so that the next applyScripts brings an older backup up to date.

No password is ever put on a command line, in admmgt.backups or in a
message: pg_dump and pg_restore get a connection string without one, and
libpq finds the password in a passfile (PGPASSFILE, ~/.pgpass) or a service
(PGSERVICE) from the environment they inherit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from admmgt_plpy._conninfo import check_options
from admmgt_plpy._errors import AdmmgtError
from admmgt_plpy._history import HAS_TABLE, VERSION
from admmgt_plpy._locks import LOCK_CLASS, OPERATION_LOCKS

# libpq keywords that must never travel to a child process's command line.
SECRET_KEYWORDS = ("password", "sslpassword")
LOCAL_KEYWORDS = (
    "host",
    "hostaddr",
    "port",
    "user",
    "passfile",
    "service",
    "connect_timeout",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "gssencmode",
    "krbsrvname",
    "channel_binding",
    "target_session_attrs",
)
MESSAGE_CHARS = 2000


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """A database to back up: a live tenant or the archive of a removed one."""

    tenant_id: int
    dbname: str  # as registered
    database: str
    cluster: str
    archived: bool = False
    estimate: int = 0  # bytes, for the progress bar

    @property
    def label(self) -> str:
        return self.database if self.cluster == "local" else f"{self.database}@{self.cluster}"


@dataclass
class Result:
    target: Target
    backup_id: int
    ok: bool
    size: int = 0
    message: str = ""


# ------------------------------------------------------------ connections


def _without_secrets(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in SECRET_KEYWORDS and v not in (None, "")}


class Places:
    """Connection strings, without passwords, for databases on registered clusters.

    The local cluster is reached the way the admin connection was made (its
    host, port, user, ssl settings); another cluster at its admmgt.clusters
    host, port and options, or at its foreign server's host and port with
    the user of its user mapping (when the caller may read it). The password
    always comes from libpq's passfile or service.
    """

    def __init__(self, admin: psycopg.Connection[Any]) -> None:
        # Only keywords every libpq since PostgreSQL 13 knows: psycopg's own
        # libpq may be newer than the pg_dump that reads this string.
        self.local = {
            k: v
            for k, v in _without_secrets(admin.info.get_parameters()).items()
            if k in LOCAL_KEYWORDS
        }
        with admin.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT name, host, port, options, fdw_server FROM admmgt.clusters")
            self.clusters = {r["name"]: r for r in cur.fetchall()}
            self.fdw: dict[str, dict[str, str]] = {}
            for row in self.clusters.values():
                if row["fdw_server"]:
                    self.fdw[row["name"]] = _fdw_params(cur, row["fdw_server"])

    def conninfo(self, cluster: str, database: str) -> str:
        if cluster == "local" and (self.clusters.get("local") or {}).get("host") is None:
            return make_conninfo(**{**self.local, "dbname": database, "application_name": "admmgt"})
        row = self.clusters.get(cluster)
        if row is None:
            raise BackupError(
                f'cluster "{cluster}" is not registered in admmgt.clusters; '
                "register it (CALL admmgt.add_cluster(...)) or fix the tenant's cluster_name"
            )
        params: dict[str, Any] = {"connect_timeout": "10"}
        # The server side's rule (admmgt_plpy._conninfo.check_options): options
        # may not route the connection (host, hostaddr, port, service, ...),
        # nor, for a cluster with a user mapping, name a passfile; otherwise
        # whoever may edit admmgt.clusters could send the passfile's password
        # to another address.
        try:
            pairs = check_options(cluster, row["options"], mapped=bool(row["fdw_server"]))
        except AdmmgtError as exc:
            raise BackupError(f"{exc.message}. {exc.hint}" if exc.hint else exc.message) from None
        params.update(pairs)
        if row["host"]:
            params["host"] = row["host"]
        if row["port"]:
            params["port"] = str(row["port"])
        params.update(self.fdw.get(cluster, {}))
        params.update(dbname=database, application_name="admmgt")
        return make_conninfo(**_without_secrets(params))


def _fdw_params(cur: psycopg.Cursor[Any], server: str) -> dict[str, str]:
    """Host, port and other options of a foreign server, and its mapping's user."""
    cur.execute(
        """SELECT s.srvoptions AS server,
                  (SELECT m.umoptions FROM pg_catalog.pg_user_mappings AS m
                   WHERE m.srvid = s.oid AND m.usename IN (current_user, 'public')
                   ORDER BY m.usename = 'public' LIMIT 1) AS mapping
           FROM pg_catalog.pg_foreign_server AS s WHERE s.srvname = %s""",
        (server,),
    )
    row = cur.fetchone()
    params: dict[str, str] = {}
    if row is None:
        return params
    for item in row["server"] or []:
        key, _, value = item.partition("=")
        if key not in ("dbname", *SECRET_KEYWORDS):
            params[key] = value
    for item in row["mapping"] or []:
        key, _, value = item.partition("=")
        if key == "user":
            params[key] = value
    return params


def _bindir(server_version: int) -> Path:
    configured = os.environ.get("ADMMGT_PG_BINDIR")
    major = server_version // 10000
    path = Path(configured) if configured else Path(f"/usr/lib/postgresql/{major}/bin")
    if not (path / "pg_dump").exists() or not (path / "pg_restore").exists():
        raise BackupError(
            f"pg_dump and pg_restore of PostgreSQL {major} (the server's major version) "
            f"are not in {path}; install postgresql-client-{major} or set ADMMGT_PG_BINDIR"
        )
    return path


def _run_tool(command: list[str], conninfo: str) -> subprocess.CompletedProcess[str]:
    """Run pg_dump / pg_restore; the connection string holds no password."""
    if any(k in conninfo_to_dict(conninfo) for k in SECRET_KEYWORDS):
        raise BackupError("refusing to put a password on a command line; use a passfile")
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")


def _tool_message(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout or f"exit code {result.returncode}").strip()
    return text[-MESSAGE_CHARS:]


# -------------------------------------------------------------- checksums


def manifest(folder: Path) -> tuple[dict[str, dict[str, Any]], str, int]:
    """(files, sha256, size) of a dump folder: each file's sha256 and size by
    name, the sha256 over the sorted lines "<sha256>  <name>", and the total size."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        name = path.relative_to(folder).as_posix()
        files[name] = {"sha256": digest.hexdigest(), "size": path.stat().st_size}
    return files, _overall(files), sum(f["size"] for f in files.values())


def _overall(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{files[n]['sha256']}  {n}\n" for n in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def damage(folder: Path, files: dict[str, dict[str, Any]], sha256: str) -> list[str]:
    """What differs between a dump folder and what was recorded of it; empty if nothing."""
    if not folder.is_dir():
        return [f"folder {folder} does not exist"]
    if _overall(files) != sha256:
        return ["the recorded file list does not match the recorded sha256"]
    found, _, _ = manifest(folder)
    problems = [f"file {n} is missing" for n in sorted(set(files) - set(found))]
    problems += [f"file {n} was added" for n in sorted(set(found) - set(files))]
    problems += [
        f"file {n} changed (sha256 {found[n]['sha256'][:12]}..., recorded "
        f"{files[n]['sha256'][:12]}...)"
        for n in sorted(set(found) & set(files))
        if found[n]["sha256"] != files[n]["sha256"]
    ]
    return problems


# ----------------------------------------------------------------- backup

# Why a schema tenant gets no backup (yet), and what the DBA can do instead.
_SCHEMA_TENANT = (
    'schema tenant "{name}": backups of schema tenants are not built; '
    'pg_dump -n "{name}" of its host database (admmgt.schema_hosts) copies it'
)


def targets(admin: psycopg.Connection[Any], tenant: str | None) -> tuple[list[Target], list[str]]:
    """The databases to back up, and why others are skipped, one line each
    (archived tenants already backed up; schema tenants, not backed up yet)."""
    with admin.cursor(row_factory=dict_row) as cur:
        if tenant is not None:
            cur.execute(
                """SELECT id, dbname, status, coalesce(cluster_name, 'local') AS cluster,
                          separatedb
                   FROM admmgt.vendor_db_settings
                   WHERE upper(dbname) = upper(%s) AND NOT deleted AND NOT istemplate""",
                (tenant,),
            )
            row = cur.fetchone()
            if row is None:
                raise BackupError(
                    f'tenant "{tenant}" is not registered (or was removed); '
                    "`admmgt status` lists the tenants"
                )
            if row["separatedb"] == 0:
                raise BackupError("cannot back up " + _SCHEMA_TENANT.format(name=row["dbname"]))
            if row["status"] != 2:
                raise BackupError(
                    f'tenant "{row["dbname"]}" is not created (status {row["status"]}); '
                    "CALL admmgt.create_database() first"
                )
            found = [Target(row["id"], row["dbname"], row["dbname"].lower(), row["cluster"])]
            return _with_estimates(cur, found), []
        cur.execute(
            """SELECT id, dbname, coalesce(cluster_name, 'local') AS cluster FROM
               admmgt.vendor_db_settings WHERE NOT deleted AND NOT istemplate AND status = 2
                 AND separatedb = 1 ORDER BY id"""
        )
        live = [Target(r["id"], r["dbname"], r["dbname"].lower(), r["cluster"]) for r in cur]
        cur.execute(
            """SELECT dbname FROM admmgt.vendor_db_settings
               WHERE NOT deleted AND NOT istemplate AND status = 2 AND separatedb = 0
               ORDER BY id"""
        )
        schemas = ["skipped " + _SCHEMA_TENANT.format(name=r["dbname"]) for r in cur]
        cur.execute(
            """SELECT v.id, v.dbname, v.archived_as, coalesce(v.cluster_name, 'local') AS cluster,
                      EXISTS (SELECT FROM admmgt.backups AS b WHERE b.tenant_id = v.id
                              AND b.archived AND b.outcome IN ('ok', 'pruned')) AS done
               FROM admmgt.vendor_db_settings AS v
               WHERE v.deleted AND NOT v.istemplate AND v.archived_as IS NOT NULL ORDER BY v.id"""
        )
        archived = cur.fetchall()
        found = live + [
            Target(r["id"], r["dbname"], r["archived_as"], r["cluster"], archived=True)
            for r in archived
            if not r["done"]
        ]
        skipped = [
            f"skipped archived tenant {r['dbname']} (as {r['archived_as']}): already backed up"
            for r in archived
            if r["done"]
        ]
        return _with_estimates(cur, found), skipped + schemas


def _with_estimates(cur: psycopg.Cursor[Any], found: list[Target]) -> list[Target]:
    """Sizes from admmgt.tenant_usage (unknown: 0), so the progress bar has a total."""
    cur.execute("SELECT database, cluster_name, size_bytes FROM admmgt.tenant_usage")
    sizes = {(r["cluster_name"], r["database"]): r["size_bytes"] or 0 for r in cur.fetchall()}
    return [
        Target(
            t.tenant_id,
            t.dbname,
            t.database,
            t.cluster,
            t.archived,
            sizes.get((t.cluster, t.database), 0),
        )
        for t in found
    ]


class Recorder:
    """Writes admmgt.backups rows from several threads through one connection."""

    def __init__(self, admin: psycopg.Connection[Any]) -> None:
        self.admin = admin
        self.lock = threading.Lock()

    def start(self, t: Target, root: Path) -> tuple[int, Path]:
        with self.lock:
            row = self.admin.execute(
                """INSERT INTO admmgt.backups
                   (tenant_id, dbname, database, cluster_name, archived, path)
                   VALUES (%s, %s, %s, %s, %s, '') RETURNING id""",
                (t.tenant_id, t.dbname, t.database, t.cluster, t.archived),
            ).fetchone()
            assert row is not None
            folder = root / t.cluster / t.database / f"backup-{row[0]}"
            self.admin.execute(
                "UPDATE admmgt.backups SET path = %s WHERE id = %s", (str(folder), row[0])
            )
        return row[0], folder

    def finish(self, backup_id: int, **values: Any) -> None:
        columns = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in values
        )
        with self.lock:
            self.admin.execute(
                sql.SQL(
                    "UPDATE admmgt.backups SET {}, finished_at = clock_timestamp() WHERE id = {}"
                ).format(columns, sql.Placeholder()),
                [*values.values(), backup_id],
            )


def _version(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute(HAS_TABLE).fetchone()
    if not row or not row[0]:
        return None
    version = conn.execute(VERSION).fetchone()
    return version[0] if version else None


def backup_one(places: Places, recorder: Recorder, t: Target, root: Path) -> Result:
    backup_id, folder = recorder.start(t, root)
    try:
        conninfo = places.conninfo(t.cluster, t.database)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(conninfo) as tenant:
            # One snapshot for the version read here and for pg_dump.
            tenant.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            tenant.read_only = True
            snapshot = tenant.execute("SELECT pg_export_snapshot()").fetchone()
            assert snapshot is not None
            version = _version(tenant)
            bindir = _bindir(tenant.info.server_version)
            tool = subprocess.run(
                [str(bindir / "pg_dump"), "--version"], capture_output=True, text=True, check=False
            ).stdout.strip()
            result = _run_tool(
                [
                    str(bindir / "pg_dump"),
                    "--format=directory",
                    f"--file={folder}",
                    f"--snapshot={snapshot[0]}",
                    f"--dbname={conninfo}",
                ],
                conninfo,
            )
            tenant.rollback()
        if result.returncode != 0:
            raise BackupError(f"pg_dump failed: {_tool_message(result)}")
        files, sha256, size = manifest(folder)
    except Exception as exc:  # recorded as this tenant's failure; the others go on
        shutil.rmtree(folder, ignore_errors=True)
        message = f'tenant "{t.label}": backup {backup_id} failed: {str(exc).strip()}'
        recorder.finish(backup_id, outcome="failed", message=message[:MESSAGE_CHARS])
        return Result(t, backup_id, False, message=message)
    recorder.finish(
        backup_id,
        outcome="ok",
        scriptversion=version,
        size_bytes=size,
        sha256=sha256,
        files=json.dumps(files),
        tool_version=tool,
    )
    return Result(t, backup_id, True, size=size)


def backup(
    admin: psycopg.Connection[Any],
    found: list[Target],
    root: Path,
    jobs: int,
    on_done: Callable[[Result], None] = lambda r: None,
) -> list[Result]:
    """Back up ``found``, ``jobs`` at a time; ``on_done`` sees each result as it comes."""
    places = Places(admin)
    recorder = Recorder(admin)
    root = root.resolve()
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(backup_one, places, recorder, t, root) for t in found]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            on_done(result)
    return sorted(results, key=lambda r: r.backup_id)


def own_folder(b: dict[str, Any]) -> Path | None:
    """The backup's folder when ``path`` is one `admmgt backup` names
    (``<root>/<cluster>/<database>/backup-<id>``, absolute, no ``..``, not a
    symbolic link), else None.

    admmgt.backups is written by whoever runs `admmgt backup` (an operator
    may), and restore and prune act on ``path`` as the one who runs them: a
    row repointed at another folder must not feed it to pg_restore nor have
    it removed. The folder name carries the row's own id, so a row can only
    name its own dump.
    """
    folder = Path(b["path"] or "")
    expected = Path(b["cluster_name"], b["database"], f"backup-{b['id']}").parts
    if (
        not folder.is_absolute()
        or ".." in folder.parts
        or ".." in expected
        or folder.parts[-len(expected) :] != expected
        or folder.is_symlink()
    ):
        return None
    return folder


def prune(admin: psycopg.Connection[Any], keep: int, tenants: list[str] | None) -> list[int]:
    """Remove all but the ``keep`` newest good backups of each tenant (or of ``tenants``)."""
    with admin.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT id, path, cluster_name, database FROM (
                   SELECT id, path, cluster_name, database, dbname, row_number() OVER (
                       PARTITION BY lower(dbname) ORDER BY started_at DESC, id DESC) AS newest
                   FROM admmgt.backups WHERE outcome = 'ok') AS b
               WHERE newest > %s AND (%s::text[] IS NULL OR lower(dbname) = ANY (%s::text[]))
               ORDER BY id""",
            (keep, tenants, tenants),
        )
        rows = cur.fetchall()
    pruned = []
    for row in rows:
        folder = own_folder(row)
        # Only a folder that pg_dump made for this row (named backup-<id>,
        # with a toc.dat) is removed.
        if folder is None:
            message = (
                f"pruned by admmgt backup --prune {keep}; its files were not removed: "
                f"{row['path']} is not a folder admmgt backup made for backup {row['id']}"
            )
        elif (folder / "toc.dat").is_file():
            shutil.rmtree(folder)
            message = f"pruned by admmgt backup --prune {keep}"
        else:
            message = f"pruned by admmgt backup --prune {keep}; its files were not at {folder}"
        admin.execute(
            "UPDATE admmgt.backups SET outcome = 'pruned', message = %s WHERE id = %s",
            (message, row["id"]),
        )
        pruned.append(row["id"])
    return pruned


# ---------------------------------------------------------------- restore


@dataclass(frozen=True)
class Restored:
    backup_id: int
    database: str
    cluster: str
    scriptversion: int | None
    replaced: bool
    registered: str  # "registered" or "updated"


@contextmanager
def _maintenance(
    places: Places, admin: psycopg.Connection[Any], cluster: str
) -> Iterator[psycopg.Connection[Any]]:
    """A connection where CREATE / ALTER / DROP DATABASE run on the cluster."""
    if cluster == "local":
        yield admin
        return
    with psycopg.connect(places.conninfo(cluster, "postgres"), autocommit=True) as conn:
        yield conn


def _exists(conn: psycopg.Connection[Any], database: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        is not None
    )


def _drop(conn: psycopg.Connection[Any], database: str) -> None:
    if not _exists(conn, database):  # IF EXISTS alone would print a NOTICE
        return
    conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def _secure(conn: psycopg.Connection[Any], work: str, database: str) -> None:
    """As create_database leaves a tenant: nothing for PUBLIC, CONNECT for its own
    login role when admmgt made one (tenant_login_role) and it still exists."""
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(work)))
    role = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s"
        " AND shobj_description(oid, 'pg_authid') = %s",
        (database, f"admmgt tenant role of database {database}"),
    ).fetchone()
    if role:
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(work), sql.Identifier(database)
            )
        )


def restore(
    admin: psycopg.Connection[Any],
    tenant: str,
    backup_id: int,
    new_name: str | None = None,
    replace: bool = False,
) -> Restored:
    """Restore backup ``backup_id`` of ``tenant`` (module docstring: order of operations).

    Holds create_database's lock throughout: a restore creates, drops and
    registers databases, so it never overlaps create_database, drop_database
    or another restore of the same admin database.
    """
    lock = (LOCK_CLASS, OPERATION_LOCKS["create_database"])
    taken = admin.execute("SELECT pg_try_advisory_lock(%s, %s)", lock).fetchone()
    if not taken or not taken[0]:
        raise BackupError(
            "create_database, drop_database or another restore is running in this admin "
            "database; try again when it has finished"
        )
    try:
        return _restore(admin, tenant, backup_id, new_name, replace)
    finally:
        admin.execute("SELECT pg_advisory_unlock(%s, %s)", lock)


def _restore(
    admin: psycopg.Connection[Any],
    tenant: str,
    backup_id: int,
    new_name: str | None,
    replace: bool,
) -> Restored:
    with admin.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM admmgt.backups WHERE id = %s", (backup_id,))
        b = cur.fetchone()
    if b is None:
        raise BackupError(
            f"backup {backup_id} does not exist; SELECT * FROM admmgt.backups lists them"
        )
    if b["dbname"].lower() != tenant.lower():
        raise BackupError(
            f'backup {backup_id} is of tenant "{b["dbname"]}", not "{tenant}"; '
            "give that tenant, and --as NEWNAME to restore it under another name"
        )
    if b["outcome"] != "ok":
        raise BackupError(
            f'backup {backup_id} of tenant "{b["dbname"]}" cannot be restored: it is '
            f"{b['outcome']} ({b['message'] or 'no message'}); choose another backup"
        )
    folder = own_folder(b)
    if folder is None:
        raise BackupError(
            f'backup {backup_id} of tenant "{b["dbname"]}" cannot be restored: its path '
            f"{b['path']} is not the folder admmgt backup made for it "
            f"(<root>/{b['cluster_name']}/{b['database']}/backup-{backup_id}); nothing was "
            "restored. Restore another backup, or put the row's path back"
        )
    problems = damage(folder, b["files"], b["sha256"])
    if problems:
        raise BackupError(
            f'backup {backup_id} of tenant "{b["dbname"]}" at {b["path"]} is damaged: '
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + "; nothing was restored. Restore another backup of this tenant"
        )
    name = new_name or b["dbname"]
    database = name.lower()
    if not database.strip() or len(database.encode()) > 63:
        raise BackupError(
            f'"{name}" cannot be a database name (1 to 63 bytes); choose another --as'
        )
    cluster = b["cluster_name"]
    with admin.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT id, istemplate, status FROM admmgt.vendor_db_settings
               WHERE upper(dbname) = upper(%s) AND NOT deleted ORDER BY istemplate DESC""",
            (name,),
        )
        rows = cur.fetchall()
    if any(r["istemplate"] for r in rows):
        raise BackupError(f'"{database}" is a template; restore never replaces a template')
    live = rows[0] if rows else None
    places = Places(admin)
    work = f"{database[:40]}_restore_{backup_id}"
    setting = admin.execute(
        "SELECT value FROM admmgt.settings WHERE name = 'tenant_owner'"
    ).fetchone()
    owner = setting[0] if setting else ""
    with _maintenance(places, admin, cluster) as maint:
        exists = _exists(maint, database)
        if (live or exists) and not replace:
            what = "a live tenant" if live else "an existing database"
            raise BackupError(
                f'tenant "{name}" is {what} (database "{database}" on cluster "{cluster}"); '
                "restore refuses to overwrite it. Pass --replace to replace it, or --as NEWNAME "
                "to restore beside it"
            )
        _drop(maint, work)  # left over from an interrupted restore
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(work))
        if owner:
            create += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        maint.execute(create)
        try:
            _secure(maint, work, database)
            conninfo = places.conninfo(cluster, work)
            bindir = _bindir(maint.info.server_version)
            result = _run_tool(
                [
                    str(bindir / "pg_restore"),
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={conninfo}",
                    str(folder),
                ],
                conninfo,
            )
            if result.returncode != 0:
                raise BackupError(
                    f'restore of backup {backup_id} into "{database}" failed; nothing was '
                    f"changed: {_tool_message(result)}"
                )
            with psycopg.connect(conninfo) as restored:
                version = _version(restored)
            if exists:
                old = f"{database[:40]}_replaced_{backup_id}"
                _drop(maint, old)
                maint.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )
                maint.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(database), sql.Identifier(old)
                    )
                )
            maint.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(work), sql.Identifier(database)
                )
            )
        except BaseException:
            _drop(maint, work)
            raise
        if exists:
            _drop(maint, old)
    with admin.transaction():
        if live:
            admin.execute(
                """UPDATE admmgt.vendor_db_settings SET status = 2, scriptversion = %s,
                   cluster_name = %s, last_error = NULL, last_error_at = NULL, modifiedon = now()
                   WHERE id = %s""",
                (version, cluster, live["id"]),
            )
        else:
            admin.execute(
                """INSERT INTO admmgt.vendor_db_settings
                   (dbname, status, scriptversion, cluster_name) VALUES (%s, 2, %s, %s)""",
                (name, version, cluster),
            )
    return Restored(
        backup_id, database, cluster, version, exists, "updated" if live else "registered"
    )
