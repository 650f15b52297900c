"""install, upgrade, verify, status and uninstall of the control plane.

Each operation runs in one transaction of the admin database behind one
advisory lock, so two installers never interleave and a failure leaves the
database as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import Cursor, sql

from admmgt._catalog import replaceable_objects
from admmgt._resources import Package

MIN_SERVER_VERSION = 130000
# Advisory lock (classid, objid) that serializes installers in one database.
# classid 1634560109 is "admm" as an int; the procedures use other objids.
INSTALL_LOCK = (1634560109, 0)


class InstallError(Exception):
    """A precondition or consistency failure; the message says what to do."""


class NotInstalledError(InstallError):
    """admmgt is not installed in the database connected to (CLI exit code 4)."""


@dataclass
class Report:
    action: str  # installed | upgraded | unchanged | uninstalled
    version: str
    previous: str | None = None
    applied: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.action == "unchanged":
            return f"admmgt is already at version {self.version}; nothing to do"
        if self.action == "uninstalled":
            return f"admmgt {self.version} uninstalled"
        head = f"admmgt {self.version} {self.action}"
        if self.previous:
            head += f" (was {self.previous})"
        if self.applied:
            head += "; ran " + ", ".join(self.applied)
        return head


def installed_version(cur: Cursor[Any]) -> tuple[str, str] | None:
    """(version, code_checksum) of the install in this database, or None."""
    cur.execute("SELECT to_regclass('admmgt._version') IS NOT NULL")
    row = cur.fetchone()
    if not row or not row[0]:
        return None
    cur.execute("SELECT version, code_checksum FROM admmgt._version")
    found = cur.fetchone()
    return (found[0], found[1]) if found else None


def install(conn: psycopg.Connection[Any], package: Package | None = None) -> Report:
    """Install into this database; a no-op when the same version is installed."""
    package = package or Package.current()
    with conn.transaction(), conn.cursor() as cur:
        _lock_and_check(cur)
        current = installed_version(cur)
        if current is not None:
            if current[0] == package.version:
                return Report("unchanged", package.version)
            raise InstallError(
                f"admmgt {current[0]} is installed in this database; "
                f"run `admmgt upgrade` to go to {package.version}"
            )
        applied = _deploy(cur, package)
    return Report("installed", package.version, applied=applied)


def upgrade(conn: psycopg.Connection[Any], package: Package | None = None) -> Report:
    """Run the incremental SQL not yet applied, then all idempotent SQL and the code."""
    package = package or Package.current()
    with conn.transaction(), conn.cursor() as cur:
        _lock_and_check(cur)
        current = installed_version(cur)
        if current is None:
            raise NotInstalledError(
                "admmgt is not installed in this database; run `admmgt install`"
            )
        if current == (package.version, package.code_checksum) and not (
            _verify_incremental(cur, package)
            or _verify_code(cur, package)
            or _verify_dblink(cur)
            or _verify_routines(conn, cur, package)
        ):
            # Like install: the same version with the same code is a no-op.
            return Report("unchanged", package.version)
        applied = _deploy(cur, package)
    action = "upgraded" if current[0] != package.version else "reinstalled"
    return Report(action, package.version, previous=current[0], applied=applied)


def verify(conn: psycopg.Connection[Any], package: Package | None = None) -> list[str]:
    """Every difference between the installed control plane and the package."""
    package = package or Package.current()
    problems: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        _lock_and_check(cur)
        current = installed_version(cur)
        if current is None:
            return ["admmgt is not installed in this database"]
        if current[0] != package.version:
            problems.append(f"installed version {current[0]}, package version {package.version}")
        if current[1] != package.code_checksum:
            problems.append("code checksum in admmgt._version differs from the package's")
        problems += _verify_incremental(cur, package)
        problems += _verify_code(cur, package)
        problems += _verify_dblink(cur)
        problems += _verify_routines(conn, cur, package)
    if not problems:  # the package's validate_scripts is installed: compare applied scripts
        problems += [f"applied script changed: {c}" for c in changed_scripts(conn)]
    return problems


def changed_scripts(conn: psycopg.Connection[Any]) -> list[str]:
    """admmgt.validate_scripts() as lines: each changed field of an applied script."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regprocedure('admmgt.validate_scripts(integer)') IS NOT NULL")
        row = cur.fetchone()
        if not row or not row[0]:
            return []
        cur.execute(
            "SELECT script_id, table_name, row_id, field, applied_value, current_value, problem"
            " FROM admmgt.validate_scripts()"
        )
        lines = []
        for sid, table, row_id, field, old, new, problem in cur.fetchall():
            where = f"script {sid}" + (f": {table} row {row_id}" if table else "")
            if field:
                lines.append(f"{where} {field}: {old!r} -> {new!r} (changed after it was applied)")
            else:
                lines.append(f"{where}: {problem}")
        return lines


def status(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Version, databases by status and pending scripts, for `admmgt status`."""
    with conn.cursor() as cur:
        current = installed_version(cur)
        if current is None:
            raise NotInstalledError(
                "admmgt is not installed in this database; run `admmgt install`"
            )
        cur.execute(
            """SELECT status, count(*) FROM admmgt.vendor_db_settings
               WHERE NOT deleted AND NOT istemplate GROUP BY status ORDER BY status"""
        )
        names = {0: "designing", 1: "pending creation", 2: "created", 3: "failed"}
        tenants = {names.get(s, str(s)): n for s, n in cur.fetchall()}
        cur.execute(
            "SELECT dbname, status FROM admmgt.vendor_db_settings WHERE istemplate AND NOT deleted"
        )
        templates = [{"dbname": d, "status": s} for d, s in cur.fetchall()]
        cur.execute("SELECT id, description FROM admmgt.scripts WHERE status = 1 ORDER BY id")
        pending = [{"id": i, "description": d} for i, d in cur.fetchall()]
    return {
        "version": current[0],
        "database": conn.info.dbname,
        "tenants": tenants,
        "templates": templates,
        "pending_scripts": pending,
    }


def uninstall(conn: psycopg.Connection[Any], *, force: bool = False) -> Report:
    """Drop schema admmgt; refuses while tenants are registered unless forced."""
    with conn.transaction(), conn.cursor() as cur:
        _lock_and_check(cur)
        current = installed_version(cur)
        if current is None:
            raise NotInstalledError(
                "admmgt is not installed in this database; nothing to uninstall"
            )
        cur.execute(
            "SELECT count(*) FROM admmgt.vendor_db_settings WHERE NOT deleted AND NOT istemplate"
        )
        row = cur.fetchone()
        tenants = row[0] if row else 0
        if tenants and not force:
            raise InstallError(
                f"{tenants} tenant(s) are registered in admmgt.vendor_db_settings; "
                "uninstalling forgets them (their databases stay). Use --force to proceed."
            )
        cur.execute("DROP SCHEMA admmgt CASCADE")
        # The installer's dblink schema goes too (with dblink, as when it lived
        # in schema admmgt); a dblink installed elsewhere stays.
        cur.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(DBLINK_SCHEMA))
        )
    return Report("uninstalled", current[0])


def _lock_and_check(cur: Cursor[Any]) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", INSTALL_LOCK)
    cur.execute(
        "SELECT current_setting('server_version_num')::int, rolsuper, current_user"
        " FROM pg_catalog.pg_roles WHERE rolname = current_user"
    )
    row = cur.fetchone()
    assert row is not None
    version_num, is_superuser, user = row
    if version_num < MIN_SERVER_VERSION:
        raise InstallError(
            f"admmgt needs PostgreSQL 13 or newer; this server is {version_num // 10000}"
        )
    if not is_superuser:
        raise InstallError(
            f'role "{user}" is not a superuser; admmgt install, upgrade, verify and '
            "uninstall create untrusted-language code and must run as a superuser "
            "(e.g. --dsn 'user=postgres ...')"
        )


def _deploy(cur: Cursor[Any], package: Package) -> list[str]:
    """Bring the schema to the package: new incremental files, all idempotent SQL, code."""
    cur.execute("SET LOCAL client_min_messages = warning")  # no "already exists, skipping"
    cur.execute("CREATE SCHEMA IF NOT EXISTS admmgt")
    _create_extensions(cur)
    cur.execute(
        """CREATE TABLE IF NOT EXISTS admmgt._migration (
               name text PRIMARY KEY,
               sha256 text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(),
               version text NOT NULL)"""
    )
    cur.execute(
        "COMMENT ON TABLE admmgt._migration IS "
        "'Incremental SQL files already applied, by name and sha256 (run exactly once).'"
    )
    applied = _run_incremental(cur, package)
    _replace_routines(cur, package)
    cur.execute("DELETE FROM admmgt._code")
    cur.executemany(
        "INSERT INTO admmgt._code (module, is_package, source, sha256) VALUES (%s, %s, %s, %s)",
        [(m.name, m.is_package, m.source, m.sha256) for m in package.modules],
    )
    cur.execute(
        """INSERT INTO admmgt._version (version, code_checksum) VALUES (%s, %s)
           ON CONFLICT (singleton) DO UPDATE
           SET version = excluded.version, code_checksum = excluded.code_checksum,
               upgraded_at = now()""",
        (package.version, package.code_checksum),
    )
    return applied


DBLINK_SCHEMA = "admmgt_dblink"


def _create_extensions(cur: Cursor[Any]) -> None:
    cur.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
    # dblink's 41 functions go into a schema of their own, closed to PUBLIC, so
    # that \df admmgt.* lists admmgt's routines only. A dblink an earlier
    # release put into schema admmgt moves there; one the database already had
    # elsewhere stays. The Python finds it wherever it is (_remote.Dblink).
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(DBLINK_SCHEMA)))
    cur.execute(
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(DBLINK_SCHEMA))
    )
    cur.execute(
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(DBLINK_SCHEMA),
            sql.Literal(
                "The dblink extension, which admmgt's procedures use to reach the template "
                "and the tenants; closed to PUBLIC. Created by the admmgt installer."
            ),
        )
    )
    cur.execute(
        """SELECT n.nspname FROM pg_catalog.pg_extension AS e
           JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
           WHERE e.extname = 'dblink'"""
    )
    found = cur.fetchone()
    if found is None:
        cur.execute(
            sql.SQL("CREATE EXTENSION dblink SCHEMA {}").format(sql.Identifier(DBLINK_SCHEMA))
        )
    elif found[0] == "admmgt":
        cur.execute(
            sql.SQL("ALTER EXTENSION dblink SET SCHEMA {}").format(sql.Identifier(DBLINK_SCHEMA))
        )


def _run_incremental(cur: Cursor[Any], package: Package) -> list[str]:
    cur.execute("SELECT name, sha256 FROM admmgt._migration")
    recorded = dict(cur.fetchall())
    known = {f.name for f in package.incremental}
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise InstallError(
            f"this database has incremental SQL the package lacks ({', '.join(unknown)}): "
            "it was installed by a newer admmgt; install that version's package instead"
        )
    applied = []
    for f in package.incremental:
        if f.name in recorded:
            if recorded[f.name] != f.sha256:
                raise InstallError(
                    f"incremental SQL {f.name} differs from the copy applied to this database; "
                    "released incremental files never change, so this package is damaged or "
                    "edited: reinstall the released package"
                )
            continue
        cur.execute(f.text.encode("utf-8"))
        cur.execute(
            "INSERT INTO admmgt._migration (name, sha256, version) VALUES (%s, %s, %s)",
            (f.name, f.sha256, package.version),
        )
        applied.append(f.name)
    return applied


# What depends on an admmgt routine or view (or a view's row type) that the
# upgrade drops and re-creates, other than those routines and views themselves
# and their own parts: a DBA's view, default, trigger, constraint or index
# that DROP ... CASCADE would silently take with it.
DEPENDENTS = """
WITH dropped (classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass, c.oid FROM pg_catalog.pg_class AS c
    WHERE c.relnamespace = 'admmgt'::regnamespace AND c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type AS t
    JOIN pg_catalog.pg_class AS c ON c.oid = t.typrelid
    WHERE c.relnamespace = 'admmgt'::regnamespace AND c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = 'admmgt'::regnamespace
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                      WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                        AND d.objid = p.oid AND d.deptype = 'e')
)
SELECT DISTINCT
    coalesce(pg_catalog.pg_describe_object('pg_catalog.pg_class'::regclass, r.ev_class, 0),
             pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)),
    pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_catalog.pg_depend AS d
JOIN dropped AS x ON x.classid = d.refclassid AND x.objid = d.refobjid
LEFT JOIN pg_catalog.pg_rewrite AS r
    ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
WHERE d.deptype = 'n'
  AND NOT EXISTS (SELECT FROM dropped AS y
                  WHERE (y.classid = d.classid AND y.objid = d.objid)
                     OR (y.classid = 'pg_catalog.pg_class'::regclass AND y.objid = r.ev_class))
ORDER BY 1, 2
"""


# admmgt's own column defaults that call an admmgt routine: dropped before the
# routines, set again by the idempotent SQL (600-clock.sql).
OWN_DEFAULTS = (("admmgt.scripts", "created_date"),)


def _replace_routines(cur: Cursor[Any], package: Package, *, rehearsal: bool = False) -> None:
    """Drop every admmgt routine and view, then run the idempotent SQL.

    Dropping first makes an upgraded catalog equal a fresh install's: a
    signature that changed or a routine that was removed leaves nothing behind.
    The drops are RESTRICT: admmgt's own dependent default
    (scripts.created_date calls admmgt.fleet_now(); the idempotent SQL sets it
    again) is dropped first, and anything else that depends on them (a DBA's
    view calling admmgt.detect_drift(), say) makes the upgrade refuse, naming
    it, rather than lose it. ``rehearsal`` (verify's rolled-back comparison)
    drops such objects with the rest: its savepoint puts them back.
    """
    for table, column in OWN_DEFAULTS:
        cur.execute(
            """SELECT FROM pg_catalog.pg_attrdef AS ad
               JOIN pg_catalog.pg_attribute AS a
                   ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
               JOIN pg_catalog.pg_depend AS d
                   ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
                  AND d.refclassid = 'pg_catalog.pg_proc'::regclass
               JOIN pg_catalog.pg_proc AS p ON p.oid = d.refobjid
               WHERE ad.adrelid = %s::regclass AND a.attname = %s
                 AND p.pronamespace = 'admmgt'::regnamespace""",
            (table, column),
        )
        if cur.fetchone() is not None:
            cur.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(
                    sql.SQL(table), sql.Identifier(column)
                )
            )
    cur.execute(DEPENDENTS)
    dependents = cur.fetchall()
    if dependents and not rehearsal:
        listed = "; ".join(f"{what} depends on {on}" for what, on in dependents[:10])
        more = f" (and {len(dependents) - 10} more)" if len(dependents) > 10 else ""
        raise InstallError(
            f"{listed}{more}: the upgrade drops and re-creates admmgt's routines and views "
            "and would drop these with them; nothing was changed. Save their definitions, "
            "drop them, run the upgrade again, then re-create them (docs/install.md)"
        )
    if rehearsal:
        # Its savepoint is rolled back (with this setting): the "drop cascades
        # to" NOTICEs would announce drops that never happen.
        cur.execute("SET LOCAL client_min_messages = warning")
    behaviour = sql.SQL("CASCADE" if rehearsal else "RESTRICT")
    for kind, relkind in (("MATERIALIZED VIEW", "m"), ("VIEW", "v")):
        cur.execute(
            """SELECT c.oid::regclass::text FROM pg_catalog.pg_class AS c
               WHERE c.relnamespace = 'admmgt'::regnamespace AND c.relkind = %s""",
            (relkind,),
        )
        views = [sql.SQL(v) for (v,) in cur.fetchall()]
        if views:
            cur.execute(
                sql.SQL("DROP {} {} {}").format(sql.SQL(kind), sql.SQL(", ").join(views), behaviour)
            )
    cur.execute(
        """SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc AS p
           WHERE p.pronamespace = 'admmgt'::regnamespace
             AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                             WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                               AND d.objid = p.oid AND d.deptype = 'e')"""
    )
    routines = [sql.SQL(r) for (r,) in cur.fetchall()]
    if routines:
        # One statement: routines that depend on one another go together.
        cur.execute(sql.SQL("DROP ROUTINE {} {}").format(sql.SQL(", ").join(routines), behaviour))
    for f in package.idempotent:
        cur.execute(f.text.encode("utf-8"))


def _verify_incremental(cur: Cursor[Any], package: Package) -> list[str]:
    cur.execute("SELECT name, sha256 FROM admmgt._migration")
    recorded = dict(cur.fetchall())
    problems = []
    for f in package.incremental:
        if f.name not in recorded:
            problems.append(f"incremental SQL {f.name} is not applied (run `admmgt upgrade`)")
        elif recorded[f.name] != f.sha256:
            problems.append(f"incremental SQL {f.name} was applied with a different checksum")
    problems += [
        f"incremental SQL {name} is applied but not in the package"
        for name in sorted(set(recorded) - {f.name for f in package.incremental})
    ]
    return problems


def _verify_dblink(cur: Cursor[Any]) -> list[str]:
    cur.execute(
        """SELECT n.nspname FROM pg_catalog.pg_extension AS e
           JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
           WHERE e.extname = 'dblink'"""
    )
    found = cur.fetchone()
    if found is None:
        return ["the dblink extension is missing (run `admmgt upgrade`)"]
    if found[0] == "admmgt":
        return [f"dblink is in schema admmgt (run `admmgt upgrade` to move it to {DBLINK_SCHEMA})"]
    return []


def _verify_code(cur: Cursor[Any], package: Package) -> list[str]:
    cur.execute(
        "SELECT module, sha256, encode(sha256(convert_to(source, 'UTF8')), 'hex') FROM admmgt._code"
    )
    installed = {m: (recorded, actual) for m, recorded, actual in cur.fetchall()}
    problems = []
    for m in package.modules:
        if m.name not in installed:
            problems.append(f"Python module {m.name} is missing from admmgt._code")
            continue
        recorded, actual = installed[m.name]
        if actual != m.sha256:
            problems.append(f"Python module {m.name} differs from the package")
        elif recorded != actual:
            problems.append(f"Python module {m.name} has a wrong recorded checksum")
    problems += [
        f"Python module {name} is in admmgt._code but not in the package"
        for name in sorted(set(installed) - {m.name for m in package.modules})
    ]
    return problems


def _verify_routines(
    conn: psycopg.Connection[Any], cur: Cursor[Any], package: Package
) -> list[str]:
    """Compare routines and views with what the package's idempotent SQL makes.

    The package's definitions are obtained by running its idempotent SQL in a
    savepoint that is rolled back: exact, and no second copy of the SQL.
    """
    installed = replaceable_objects(cur)
    with conn.transaction(force_rollback=True):
        _replace_routines(cur, package, rehearsal=True)
        expected = replaceable_objects(cur)
    problems = []
    for name in sorted(set(installed) | set(expected)):
        if name not in installed:
            problems.append(f"{name} is missing (run `admmgt upgrade`)")
        elif name not in expected:
            problems.append(f"{name} is not part of the package")
        elif installed[name] != expected[name]:
            what = ("definition", "privileges", "comment")
            diff = [
                w for w, a, b in zip(what, installed[name], expected[name], strict=True) if a != b
            ]
            problems.append(f"{name} differs from the package ({', '.join(diff)})")
    return problems
