"""A throwaway PostgreSQL 15 cluster in a folder, for the demo and the tests.

initdb and pg_ctl refuse to run as root, so as root they run as the
``postgres`` OS user. The cluster listens only on a Unix socket in a private
(0700) folder with trust authentication: only its owner (and root) can reach
it, and no password exists anywhere. pg_cron and pg_stat_statements are
preloaded; fsync is off, since the data is disposable.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 54320
SETTINGS = {
    "listen_addresses": "''",
    "shared_preload_libraries": "'pg_cron,pg_stat_statements'",
    "cron.database_name": "'postgres'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "unix_socket_permissions": "0700",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}


class SandboxError(Exception):
    """The sandbox cannot be started or reached; the message says why."""


def _bindir() -> Path:
    configured = os.environ.get("ADMMGT_PG_BINDIR")
    candidates = [Path(configured)] if configured else []
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    for path in candidates:
        if (path / "initdb").exists():
            return path
    raise SandboxError(
        "PostgreSQL 15 server binaries not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); run `make setup` or set ADMMGT_PG_BINDIR"
    )


@dataclass(frozen=True)
class Sandbox:
    root: Path
    port: int = DEFAULT_PORT

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        result = self._run("pg_ctl", "status", "-D", str(self.data), check=False)
        return result.returncode == 0

    def start(self) -> str:
        """Create the cluster if needed and start it; return its DSN."""
        if not (self.data / "PG_VERSION").exists():
            self._init()
        if not self.is_running():
            self._add_missing_settings()
            result = self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-o",
                f"-p {self.port}",
                check=False,
            )
            if result.returncode != 0:
                tail = (
                    self.logfile.read_text(errors="replace")[-2000:]
                    if self.logfile.exists()
                    else ""
                )
                raise SandboxError(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
        return self.dsn()

    def require_passwords(self) -> None:
        """Every role but ``postgres`` must give a password (scram-sha-256) from now on.

        For a cluster that stands for a remote server in the tests and the
        benchmark: admmgt must reach it through a user mapping or a passfile.
        """
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "# admmgt sandbox: passwords for all but the bootstrap superuser\n"
            "local all postgres trust\n"
            "local all all scram-sha-256\n",
            encoding="utf-8",
        )
        self._run("pg_ctl", "reload", "-D", str(self.data))

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        owner = self._owner()
        if owner is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self._check_reachable(owner)
        os.chmod(self.socket_dir, 0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        with open(self.data / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write("# admmgt sandbox\n")
            conf.writelines(f"{k} = {v}\n" for k, v in self._settings().items())

    def _settings(self) -> dict[str, str]:
        # pg_cron runs its jobs over libpq, and the sandbox listens only on its socket.
        socket = f"'{self.socket_dir}'"
        return {**SETTINGS, "unix_socket_directories": socket, "cron.host": socket}

    def _add_missing_settings(self) -> None:
        """Write settings added since this sandbox was made (it is about to start)."""
        conf = self.data / "postgresql.auto.conf"
        lines = conf.read_text(encoding="utf-8").splitlines()
        present = {x.split("=", 1)[0].strip() for x in lines if "=" in x and x[:1] != "#"}
        missing = {k: v for k, v in self._settings().items() if k not in present}
        # A sandbox made before pg_stat_statements was preloaded: the last line wins.
        preload = [x for x in lines if x.split("=", 1)[0].strip() == "shared_preload_libraries"]
        if preload and "pg_stat_statements" not in preload[-1]:
            missing["shared_preload_libraries"] = SETTINGS["shared_preload_libraries"]
        if missing:
            with open(conf, "a", encoding="utf-8") as out:
                out.writelines(f"{k} = {v}\n" for k, v in missing.items())

    def _owner(self) -> pwd.struct_passwd | None:
        """The OS user the server runs as: postgres when we are root, else us."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError as exc:
            raise SandboxError(
                "running as root, but there is no `postgres` OS user to run the server "
                "(install postgresql-15, which creates it)"
            ) from exc

    def _check_reachable(self, owner: pwd.struct_passwd) -> None:
        result = subprocess.run(
            ["runuser", "-u", owner.pw_name, "--", "test", "-w", str(self.root)],
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            raise SandboxError(
                f"the postgres OS user cannot write {self.root}: every parent folder "
                "must be searchable by others (chmod o+x); or choose another --dir"
            )

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(_bindir() / tool), *args]
        owner = self._owner()
        if owner is not None:
            command = ["runuser", "-u", owner.pw_name, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
        if check and result.returncode != 0:
            raise SandboxError(f"{tool} failed: {(result.stderr or result.stdout).strip()}")
        return result
