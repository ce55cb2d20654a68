"""Atomic, self-describing directories.

A saved directory holds numbered snapshots and a pointer file naming the current one::

    my_index/
      newwave.json          {"format": "newwave-snapshots", "current": "snapshot-000002", ...}
      snapshot-000002/      the files of the last complete save

A save writes a new snapshot beside the current one, flushes it to disk, then replaces the pointer
file in one ``os.replace``. A crash or kill at any moment leaves the pointer naming a complete
snapshot, so the previous save stays loadable. One writer at a time per directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from newwave.errors import IndexCorruptError, InvalidInputError, MissingFileError

__all__ = [
    "atomic_directory",
    "atomic_file",
    "fsync_tree",
    "honour_umask",
    "new_directory",
    "read_json",
    "resolve_directory",
    "write_json",
]

POINTER = "newwave.json"
_FORMAT = "newwave-snapshots"
_PREFIX = "snapshot-"
_STAGING = ".staging-"


def new_directory(parent: Path, prefix: str) -> Path:
    """A new, uniquely named directory in ``parent``, with the permissions the umask gives
    (``tempfile.mkdtemp`` would make it private)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    directory.chmod(0o777 & ~_umask())
    return directory


def honour_umask(directory: Path) -> None:
    """Give the files and folders under ``directory`` the permissions the umask gives (some
    writers, e.g. safetensors, make private files)."""
    mask = _umask()
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path, *, suffix: str = "", umask: bool = False) -> Iterator[Path]:
    """A temporary file beside ``path`` to write: flushed to disk and renamed to ``path`` when the
    block ends, deleted if it raises. It is private, or with ``umask`` has the permissions the
    umask gives."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        if umask:
            os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically (temporary file, fsync, rename), with the
    permissions the umask gives."""
    with atomic_file(path, umask=True) as tmp, tmp.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def read_json(path: Path) -> Any:
    """Parse the JSON file ``path``; a missing or malformed file raises IndexCorruptError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorruptError(f"{path.parent} is incomplete: {path.name} is missing") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{path} is not valid JSON: {exc}") from exc


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty directory to fill; on success it becomes ``target``'s current snapshot."""
    root = Path(target)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / POINTER).exists() and any(root.iterdir()):
        raise InvalidInputError(
            f"{root} is not empty and is not a saved newwave directory; refusing to write into it"
        )
    staging = new_directory(root, _STAGING)
    try:
        yield staging
        fsync_tree(staging)
        numbers = [int(p.name[len(_PREFIX) :]) for p in root.glob(f"{_PREFIX}*") if _numbered(p)]
        snapshot = root / f"{_PREFIX}{max(numbers, default=0) + 1:06d}"
        staging.rename(snapshot)
        _fsync(root)
        write_json(root / POINTER, {"format": _FORMAT, "version": 1, "current": snapshot.name})
        _fsync(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for child in root.iterdir():
        if child != snapshot and (_numbered(child) or child.name.startswith(_STAGING)):
            shutil.rmtree(child, ignore_errors=True)


def resolve_directory(path: str | os.PathLike[str]) -> Path:
    """The directory holding the files of a save: the current snapshot, or ``path`` itself."""
    root = Path(path)
    if not root.exists():
        raise MissingFileError(f"no such directory: {root}")
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a directory")
    if not (root / POINTER).exists():
        return root
    pointer = read_json(root / POINTER)
    if not isinstance(pointer, dict):
        pointer = {}
    current = pointer.get("current")
    if (
        pointer.get("format") != _FORMAT
        or not isinstance(current, str)
        or not _is_snapshot_name(current)
    ):
        raise IndexCorruptError(f"{root / POINTER} is not a newwave snapshot pointer")
    snapshot = root / current
    if not snapshot.is_dir():
        raise IndexCorruptError(f"{root} names snapshot {current!r}, which is missing")
    return snapshot


def _is_snapshot_name(name: str) -> bool:
    return name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit()


def _numbered(path: Path) -> bool:
    return _is_snapshot_name(path.name)


def fsync_tree(directory: Path) -> None:
    """Flush every file and folder under ``directory``, then ``directory``, to disk."""
    for path in sorted(directory.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(directory)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
