"""The package the installer deploys: file naming, modules, checksums."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from admmgt._resources import Package, _sql_files


def test_current_package_has_sql_and_the_plpython_package() -> None:
    package = Package.current()
    assert package.incremental[0].name == "001-core-tables.sql"
    assert package.idempotent[-1].name == "900-grants.sql"
    names = {m.name for m in package.modules}
    assert {"admmgt_plpy", "admmgt_plpy._entry"} <= names
    assert next(m for m in package.modules if m.name == "admmgt_plpy").is_package


def test_code_checksum_changes_with_any_module() -> None:
    package = Package.current()
    first = package.modules[0]
    changed = replace(
        package, modules=(replace(first, source=first.source + "#"), *package.modules[1:])
    )
    assert changed.code_checksum != package.code_checksum


def test_sql_files_must_be_named_nnn_kebab(tmp_path: Path) -> None:
    (tmp_path / "001-good-name.sql").write_text("SELECT 1;")
    assert [f.name for f in _sql_files(tmp_path)] == ["001-good-name.sql"]
    (tmp_path / "2-Bad_Name.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="NNN-kebab-name"):
        _sql_files(tmp_path)
