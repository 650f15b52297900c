"""What the installer deploys: SQL files and the admmgt_plpy modules, with checksums.

A :class:`Package` is read from the installed package data, from a source
checkout, or from any folder laid out the same way (the upgrade test keeps the
previous release as such a folder).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from admmgt._version import __version__

SQL_NAME = re.compile(r"^[0-9]{3}-[a-z0-9]+(-[a-z0-9]+)*\.sql$")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SqlFile:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return sha256(self.text)


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. admmgt_plpy._compile
    is_package: bool
    source: str

    @property
    def sha256(self) -> str:
        return sha256(self.source)


@dataclass(frozen=True)
class Package:
    version: str
    incremental: tuple[SqlFile, ...]
    idempotent: tuple[SqlFile, ...]
    modules: tuple[Module, ...]

    @property
    def code_checksum(self) -> str:
        """One checksum over every module: what a backend's loaded code is compared to."""
        return sha256("\n".join(f"{m.name} {m.sha256}" for m in self.modules))

    def with_version(self, version: str) -> Package:
        return replace(self, version=version)

    @classmethod
    def from_dir(cls, root: Path, version: str) -> Package:
        """Read ``root/sql/{incremental,idempotent}`` and ``root/plpython/admmgt_plpy``."""
        return cls(
            version=version,
            incremental=_sql_files(root / "sql" / "incremental"),
            idempotent=_sql_files(root / "sql" / "idempotent"),
            modules=_modules(root / "plpython" / "admmgt_plpy"),
        )

    @classmethod
    def current(cls) -> Package:
        """This installation's package: its wheel data, or the source checkout."""
        import admmgt_plpy

        here = Path(__file__).resolve().parent
        sql_root = here / "_sql" if (here / "_sql").is_dir() else here.parents[1] / "sql"
        plpy_dir = Path(admmgt_plpy.__file__).resolve().parent
        return cls(
            version=__version__,
            incremental=_sql_files(sql_root / "incremental"),
            idempotent=_sql_files(sql_root / "idempotent"),
            modules=_modules(plpy_dir),
        )


def _sql_files(folder: Path) -> tuple[SqlFile, ...]:
    if not folder.is_dir():
        raise FileNotFoundError(f"admmgt SQL folder {folder} is missing from the package")
    files = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        if not SQL_NAME.match(path.name):
            raise ValueError(f"{path}: SQL files must be named NNN-kebab-name.sql")
        files.append(SqlFile(path.name, path.read_text(encoding="utf-8")))
    return tuple(files)


def _modules(package_dir: Path) -> tuple[Module, ...]:
    modules = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules.append(Module(".".join(parts), is_package, path.read_text(encoding="utf-8")))
    return tuple(sorted(modules, key=lambda m: m.name))
