"""A library: its database, its directory (none in memory), its writer lock, and the upkeep of
its channels' in-memory indexes (loading checkpoints, catching up, saving checkpoints)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from newwave._storage import honour_umask
from newwave.errors import (
    IndexCorruptError,
    InvalidInputError,
    LibraryLockedError,
    MissingFileError,
    StorageError,
)
from newwave.search.channels import Channel
from newwave.store.checkpoints import (
    INDEXES,
    channel_directory,
    crc32_file,
    read_checkpoint,
    remove_checkpoints,
    write_checkpoint,
)
from newwave.store.database import DATABASE, LibraryStore
from newwave.store.lock import LOCK_FILE, WRITER_FILE, WriterLock

__all__ = ["QUICK_CHECK_BYTES", "Library", "is_library"]

#: A database up to this size is checked by SQLite (``PRAGMA quick_check``) whenever it is
#: opened; a larger one by :meth:`Library.verify` (``newwave repair``) only.
QUICK_CHECK_BYTES = 256 * 2**20
#: A channel's index is saved once this many rows changed since its last checkpoint, or a
#: twentieth of its rows, whichever is more (and always by ``save()``).
CHECKPOINT_ROWS = 1_000
_CHECKPOINT_SHARE = 20
_NOT_DATA = (LOCK_FILE, WRITER_FILE)


def is_library(path: Path) -> bool:
    """Whether ``path`` holds a library (this format, or format 1)."""
    from newwave._storage import POINTER

    return (path / DATABASE).is_file() or (path / POINTER).is_file()


class Library:
    """A library's store and, on disk, its directory; ``channels`` are set by the owner."""

    def __init__(self, store: LibraryStore, root: Path | None = None, *, lock_timeout: float = 60):
        self.store = store
        self.root = root
        self.lock_timeout = lock_timeout
        self.channels: dict[str, Channel] = {}
        self.epoch = store.epoch
        self._lock = None if root is None else WriterLock(root)
        self._refreshing = threading.RLock()  # one thread brings the indexes up to date

    @classmethod
    def in_memory(cls) -> Library:
        """A new, empty library that lives in memory until saved."""
        return cls(LibraryStore(None, create=True))

    @classmethod
    def open(cls, root: Path, *, lock_timeout: float = 60) -> Library:
        """Open the library in ``root``; its database is checked when small (see above)."""
        database = root / DATABASE
        if not database.is_file():
            if not root.is_dir():
                raise MissingFileError(f"no such library: {root}")
            if (root / INDEXES).exists():
                raise IndexCorruptError(f"{root} is incomplete: {DATABASE} is missing")
            raise IndexCorruptError(f"{root} is not a newwave library (no {DATABASE})")
        store = LibraryStore(database)
        if database.stat().st_size <= QUICK_CHECK_BYTES:
            errors = store.integrity_errors(quick=True)
            if errors:
                raise IndexCorruptError(f"{database} is damaged: {'; '.join(errors[:3])}")
        return cls(store, root, lock_timeout=lock_timeout)

    # -- writing ----------------------------------------------------------------------------------

    @contextmanager
    def locked(self, *, refresh: bool = True) -> Iterator[None]:
        """Hold the writer lock (nothing in memory), with the channels brought up to date."""
        with nullcontext() if self._lock is None else self._lock.hold(timeout=self.lock_timeout):
            if refresh:
                self.refresh()
            yield

    def keep_meta(self, key: str, value: str) -> bool:
        """Store a meta value derived from the catalogue (a cache) unless another process is
        writing the library or it cannot be written: then store nothing and return False."""
        try:
            lock = nullcontext() if self._lock is None else self._lock.hold(timeout=0)
            with lock, self.store.transaction(catalogue=False):
                self.store.set_meta(key, value)
        except (LibraryLockedError, StorageError, OSError):
            return False
        return True

    def keep_derived(self, write: Callable[[LibraryStore], None]) -> bool:
        """Write data derived from the catalogue (``write(store)``, in one transaction that
        keeps ``seq``) unless another process is writing the library or it cannot be written:
        then write nothing and return False."""
        try:
            lock = nullcontext() if self._lock is None else self._lock.hold(timeout=0)
            with lock, self.store.transaction(catalogue=False):
                write(self.store)
        except (LibraryLockedError, StorageError, OSError):
            return False
        return True

    def check_writable(self) -> None:
        """Raise :class:`StorageError` if the files a write needs are read-only (checked before
        the work that precedes a write, such as embedding). A read-only file system counts."""
        if self.root is None:
            return
        indexes = self.root / INDEXES
        needed = [self.root, self.root / DATABASE, self.root / LOCK_FILE, indexes]
        needed += [self.root / f"{DATABASE}{suffix}" for suffix in ("-wal", "-shm")]
        if indexes.is_dir():
            needed += [path for path in indexes.iterdir() if path.is_dir()]
        for path in needed:
            if path.exists() and not os.access(path, os.W_OK):
                raise StorageError(
                    f"{path} is read-only: the library {self.root} cannot be written (make its "
                    "folder and files writable, or copy it)"
                )

    def after_write(self) -> None:
        """Save the indexes that changed enough, and fold the write-ahead log into the file."""
        self.checkpoint()
        self.store.checkpoint_wal()

    # -- the channels' indexes --------------------------------------------------------------------

    def open_channels(self) -> None:
        """Load every channel's index: its checkpoint, then what changed since."""
        self.epoch = self.store.epoch
        for channel in self.channels.values():
            self._open(channel)

    def _open(self, channel: Channel) -> None:
        channel.reset()
        if self.root is not None:
            saved = self.store.meta(f"checkpoint:{channel.name}")
            found = read_checkpoint(
                self.root, channel.name, epoch=self.epoch, read=channel.read_index
            )
            if found is None and saved is not None:
                path = channel_directory(self.root, channel.name) / "checkpoint.json"
                raise IndexCorruptError(
                    f"{path} is missing (the index of channel {channel.name!r}); rebuild it: "
                    "newwave repair"
                )
            if found is not None:
                channel.seq = found[1]
                if channel.seq > self.store.seq:
                    raise IndexCorruptError(
                        f"{self.root / DATABASE} is older than the index of channel "
                        f"{channel.name!r} (was its write-ahead log {DATABASE}-wal lost?)"
                    )
        with self.store.reading():
            channel.catch_up(self.store)

    def refresh(self) -> None:
        """Bring every channel's index up to what the library holds now."""
        with self._refreshing:
            with self.store.reading():
                epoch, seq = self.store.epoch, self.store.seq
            if epoch != self.epoch:  # the contents were replaced wholesale
                self.open_channels()
                return
            for channel in self.channels.values():
                if channel.seq == seq:
                    continue
                pruned = int(self.store.meta(f"pruned:{channel.name}") or 0)
                if channel.seq == 0 or channel.seq < pruned:
                    self._open(channel)
                else:
                    with self.store.reading():
                        channel.catch_up(self.store)

    def checkpoint(self, *, force: bool = False) -> None:
        """Save the index of each channel that changed enough since its last save (any change
        with ``force``). The caller holds the writer lock."""
        if self.root is None:
            return
        for channel in self.channels.values():
            last = int(self.store.meta(f"checkpoint:{channel.name}") or 0)
            if last == channel.seq:
                continue  # saved as of now
            pending = self.store.pending(channel.name, last)
            if not force and pending < max(CHECKPOINT_ROWS, channel.count // _CHECKPOINT_SHARE):
                continue
            write_checkpoint(
                self.root,
                channel.name,
                epoch=self.epoch,
                seq=channel.seq,
                write=channel.write_index,
            )
            with self.store.transaction():
                self.store.set_meta(f"checkpoint:{channel.name}", str(channel.seq))
                if last:  # readers of the previous checkpoint still catch up from it
                    self.store.forget_removals(channel.name, through=last)
                    self.store.set_meta(f"pruned:{channel.name}", str(last))

    # -- files beside the database ----------------------------------------------------------------

    def write_files(self, folder: str, write: Callable[[Path], None]) -> None:
        """Write a folder of files (an embedding fuser's weights) and record their checksums."""
        assert self.root is not None
        target = self.root / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        write(target)
        honour_umask(target)
        sums = {p.name: [p.stat().st_size, crc32_file(p)] for p in sorted(target.iterdir())}
        with self.store.transaction():
            self.store.set_meta(f"files:{folder}", json.dumps(sums))

    def verify_files(self, folder: str) -> Path:
        """The folder of files written by :meth:`write_files`, checked against its checksums."""
        assert self.root is not None
        recorded = self.store.meta(f"files:{folder}")
        if recorded is None:
            raise IndexCorruptError(f"{self.root / DATABASE} records no files of {folder!r}")
        for name, (size, crc) in json.loads(recorded).items():
            path = self.root / folder / name
            if not path.is_file():
                raise IndexCorruptError(f"{path} is missing")
            if path.stat().st_size != size or crc32_file(path) != crc:
                raise IndexCorruptError(f"{path} is damaged (its size or checksum changed)")
        return self.root / folder

    # -- copies and repairs -----------------------------------------------------------------------

    def export(
        self,
        target: Path,
        folders: Sequence[tuple[str, Callable[[Path], None]]],
        *,
        meta: Mapping[str, str],
        replace: bool = True,
    ) -> None:
        """Write a copy of this library to ``target`` (created, or a library replaced whole
        unless ``replace`` is false)."""
        if target.exists() and not target.is_dir():
            raise InvalidInputError(f"{target} exists and is not a directory")
        target.mkdir(parents=True, exist_ok=True)
        leftovers = [p for p in target.iterdir() if p.name not in _NOT_DATA]
        if leftovers and not is_library(target):
            raise InvalidInputError(
                f"{target} is not empty and is not a newwave library; refusing to write into it"
            )
        with WriterLock(target).hold(timeout=self.lock_timeout):
            if not replace and (target / DATABASE).is_file():
                return
            self.refresh()
            self.store.copy_to(target / DATABASE)
            copy = Library(LibraryStore(target / DATABASE), target)
            try:
                with copy.store.transaction():
                    for key in ("checkpoint:", "pruned:", "files:"):
                        for name in copy.store.meta_with_prefix(key):
                            copy.store.set_meta(key + name, None)
                    copy.store.new_epoch()
                    for key, value in meta.items():
                        copy.store.set_meta(key, value)
                copy.epoch = copy.store.epoch
                remove_checkpoints(target)
                for folder, write in folders:
                    copy.write_files(folder, write)
                copy.channels = self.channels
                copy.checkpoint(force=True)
                copy.store.checkpoint_wal()
            finally:
                copy.store.close()
            _remove_format_1(target)

    def repair(self) -> dict[str, int]:
        """Rebuild every channel's index from the stored rows and save it; the rows per channel.

        A damaged database cannot be repaired here (it is the source of truth): restore it.
        """
        assert self.root is not None
        with self.locked(refresh=False):
            errors = self.store.integrity_errors()
            if errors:
                raise IndexCorruptError(
                    f"{self.root / DATABASE} is damaged ({'; '.join(errors[:3])}); it cannot be "
                    "rebuilt from anything else: restore it from a backup"
                )
            remove_checkpoints(self.root)
            with self.store.transaction():
                for key in ("checkpoint:", "pruned:"):
                    for name in self.store.meta_with_prefix(key):
                        self.store.set_meta(key + name, None)
            with self.store.transaction(catalogue=False):
                self.store.rebuild_names()
            self.open_channels()
            self.checkpoint(force=True)
            self.store.checkpoint_wal()
        return {name: channel.count for name, channel in self.channels.items()}


def _remove_format_1(root: Path) -> None:
    """Delete what a format-1 library left in ``root`` (its pointer and snapshots)."""
    from newwave._storage import POINTER

    (root / POINTER).unlink(missing_ok=True)
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith(("snapshot-", ".staging-")):
            shutil.rmtree(child, ignore_errors=True)
