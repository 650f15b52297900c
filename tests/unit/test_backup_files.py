"""Checksums of a dump folder, and the sandbox's preload of pg_stat_statements."""

from __future__ import annotations

from pathlib import Path

from admmgt import _backup
from admmgt._sandbox import Sandbox


def dump(folder: Path) -> None:
    folder.mkdir()
    (folder / "toc.dat").write_bytes(b"toc")
    (folder / "3001.dat.gz").write_bytes(b"rows")


def test_manifest_names_every_file_and_damage_finds_any_change(tmp_path: Path) -> None:
    folder = tmp_path / "backup-1"
    dump(folder)
    files, sha256, size = _backup.manifest(folder)
    assert sorted(files) == ["3001.dat.gz", "toc.dat"] and size == 7
    assert _backup.damage(folder, files, sha256) == []

    (folder / "3001.dat.gz").write_bytes(b"rowz")
    assert _backup.damage(folder, files, sha256)[0].startswith("file 3001.dat.gz changed")
    (folder / "3001.dat.gz").write_bytes(b"rows")
    (folder / "toc.dat").unlink()
    assert _backup.damage(folder, files, sha256) == ["file toc.dat is missing"]
    (folder / "toc.dat").write_bytes(b"toc")
    (folder / "new").write_bytes(b"")
    assert _backup.damage(folder, files, sha256) == ["file new was added"]
    (folder / "new").unlink()

    # A recorded list edited to match tampered files no longer matches its sha256.
    forged = {**files, "toc.dat": {"sha256": "0" * 64, "size": 3}}
    assert _backup.damage(folder, forged, sha256) == [
        "the recorded file list does not match the recorded sha256"
    ]
    assert _backup.damage(tmp_path / "gone", files, sha256) == [
        f"folder {tmp_path / 'gone'} does not exist"
    ]


def test_an_old_sandbox_gets_pg_stat_statements_preloaded_on_its_next_start(
    tmp_path: Path,
) -> None:
    box = Sandbox(tmp_path)
    box.data.mkdir(parents=True)
    conf = box.data / "postgresql.auto.conf"
    conf.write_text("# admmgt sandbox\nshared_preload_libraries = 'pg_cron'\n", encoding="utf-8")
    box._add_missing_settings()
    preload = [x for x in conf.read_text().splitlines() if x.startswith("shared_preload")]
    assert preload[-1] == "shared_preload_libraries = 'pg_cron,pg_stat_statements'"
    before = conf.read_text()
    box._add_missing_settings()  # once is enough
    assert [x for x in conf.read_text().splitlines() if x.startswith("shared_preload")] == [
        x for x in before.splitlines() if x.startswith("shared_preload")
    ]
