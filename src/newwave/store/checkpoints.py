"""Checkpoints: a channel's index saved as of one transaction, with checksums.

A library keeps each channel's index under ``indexes/<channel>/``::

    indexes/description/
      checkpoint.json           {"epoch", "seq", "directory", "files": {name: [size, crc32]}}
      000042-1f2e3d4c/          the files the index wrote, as of transaction 42

The index files are written to a new folder, flushed, and only then named by
``checkpoint.json`` (replaced in one rename); the previous folder is deleted after. A reader
that finds its folder gone in between reads ``checkpoint.json`` again. Every file is checked
against its size and CRC-32 before the index reads it. The database records the ``seq`` of each
channel's last checkpoint, so a missing ``checkpoint.json`` is an error, not an empty index.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from newwave._storage import fsync_tree, honour_umask, new_directory, read_json, write_json
from newwave.errors import IndexCorruptError, NewWaveError, StorageError

__all__ = [
    "INDEXES",
    "Checkpoint",
    "channel_directory",
    "crc32_file",
    "read_checkpoint",
    "remove_checkpoints",
    "write_checkpoint",
]

INDEXES = "indexes"
_MANIFEST = "checkpoint.json"
_CHUNK = 1 << 24
_RETRIES = 5

T = TypeVar("T")
Checkpoint = tuple[T, int]


def channel_directory(root: Path, channel: str) -> Path:
    """Where the library in ``root`` keeps ``channel``'s index (``:`` is not portable)."""
    return root / INDEXES / channel.replace(":", "+")


def write_checkpoint(
    root: Path, channel: str, *, epoch: str, seq: int, write: Callable[[Path], None]
) -> None:
    """Save ``channel``'s index as of transaction ``seq``: ``write`` fills an empty folder."""
    home = channel_directory(root, channel)
    home.mkdir(parents=True, exist_ok=True)
    staging = new_directory(home, ".staging-")
    try:
        write(staging)
        honour_umask(staging)
        files = {path.name: [path.stat().st_size, crc32_file(path)] for path in _files(staging)}
        fsync_tree(staging)
        folder = home / f"{seq:06d}-{uuid.uuid4().hex[:8]}"
        staging.rename(folder)
        write_json(
            home / _MANIFEST,
            {"epoch": epoch, "seq": seq, "directory": folder.name, "files": files},
        )
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, NewWaveError):  # a full disk, ...
            raise StorageError(f"cannot save the index of {channel!r} in {home}: {exc}") from exc
        raise
    for child in home.iterdir():
        if child.is_dir() and child != folder:
            # Renamed first (atomically): a reader of the older checkpoint then finds its folder
            # gone and reads the new manifest, never a folder with some of its files deleted.
            doomed = home / f".deleting-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(OSError):
                child = child.rename(doomed)
            shutil.rmtree(child, ignore_errors=True)


def read_checkpoint(
    root: Path, channel: str, *, epoch: str, read: Callable[[Path], T]
) -> Checkpoint[T] | None:
    """``read`` of the checked files of ``channel``'s last checkpoint, and its ``seq``.

    None when there is none, or it belongs to other contents (another ``epoch``). A missing
    or damaged file raises IndexCorruptError naming it.
    """
    home = channel_directory(root, channel)
    for _ in range(_RETRIES):
        if not (home / _MANIFEST).is_file():
            return None
        manifest = read_json(home / _MANIFEST)
        folder, seq, files = _parse(manifest, home / _MANIFEST)
        if manifest.get("epoch") != epoch:
            return None
        directory = home / folder
        try:
            return _verified_read(directory, files, read), seq
        except (IndexCorruptError, OSError):
            if not directory.is_dir():
                continue  # replaced by a writer meanwhile: read the new manifest
            raise
    raise IndexCorruptError(f"{home} keeps changing under this reader; try again")


def _parse(manifest: Any, path: Path) -> tuple[str, int, dict[str, tuple[int, int]]]:
    try:
        folder, seq, files = manifest["directory"], manifest["seq"], manifest["files"]
        parsed = {str(name): (int(size), int(crc)) for name, (size, crc) in files.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexCorruptError(f"{path} is malformed: {exc}") from exc
    if not isinstance(folder, str) or "/" in folder or not isinstance(seq, int) or not parsed:
        raise IndexCorruptError(f"{path} is malformed")
    return folder, seq, parsed


def _verified_read(
    directory: Path, files: dict[str, tuple[int, int]], read: Callable[[Path], T]
) -> T:
    """``read(directory)`` once every file's size and CRC-32 are right.

    Every file is checked before ``read`` but the largest, whose CRC-32 (a second pass over
    what may be gigabytes) is computed in a thread while ``read`` reads it; its size is checked
    first, and a mismatch raises IndexCorruptError whatever ``read`` did.
    """
    for name, (size, _) in files.items():
        path = directory / name
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing; rebuild the index: newwave repair")
        if path.stat().st_size != size:
            raise _damaged(path)
    largest = max(files, key=lambda name: files[name][0])
    for name, (_, crc) in files.items():
        if name != largest and crc32_file(directory / name) != crc:
            raise _damaged(directory / name)
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(crc32_file, directory / largest)
        try:
            result = read(directory)
        except (IndexCorruptError, OSError):
            if checked.result() != files[largest][1]:
                raise _damaged(directory / largest) from None
            raise
        if checked.result() != files[largest][1]:
            raise _damaged(directory / largest)
    return result


def _damaged(path: Path) -> IndexCorruptError:
    return IndexCorruptError(
        f"{path} is damaged (its size or checksum changed); rebuild the index: newwave repair"
    )


def _files(directory: Path) -> list[Path]:
    found = sorted(p for p in directory.iterdir())
    if any(not p.is_file() for p in found):
        raise AssertionError("an index checkpoint is a flat folder of files")
    return found


def crc32_file(path: Path) -> int:
    """The CRC-32 of the file ``path``, read in 16 MiB chunks."""
    crc = 0
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def remove_checkpoints(root: Path) -> None:
    """Delete every saved index of the library in ``root``."""
    shutil.rmtree(root / INDEXES, ignore_errors=True)
    (root / INDEXES).mkdir(exist_ok=True)
