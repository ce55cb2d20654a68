"""Atomic files: the target appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newwave._storage import atomic_file, write_json


def test_the_file_replaces_the_target_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with atomic_file(target, suffix=".tmp") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.endswith(".tmp")
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_an_error_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")

    def half_write() -> None:
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk")

    with pytest.raises(RuntimeError, match="disk"):
        half_write()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_permissions_private_or_by_the_umask(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    with atomic_file(tmp_path / "private") as tmp:
        tmp.write_text("x")
    write_json(tmp_path / "shared.json", {"a": 1})
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "shared.json").read_text() == '{\n  "a": 1\n}\n'
