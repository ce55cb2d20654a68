"""The writer lock of a library: one writing process at a time, any number of readers.

The lock is an OS file lock (``fcntl``/``LockFileEx`` through :mod:`filelock`) on
``write.lock`` in the library directory: the system releases it when its process ends, even
on ``kill -9``, so a crashed writer never leaves a library locked. The holder writes who it is
(process id, host, command line, since when) to ``writer.json`` so that a process kept waiting
can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from newwave.errors import LibraryLockedError

__all__ = ["LOCK_FILE", "WRITER_FILE", "WriterLock"]

LOCK_FILE = "write.lock"
WRITER_FILE = "writer.json"


class WriterLock:
    """The writer lock of the library in ``root`` (one instance per open library).

    Re-entrant within a thread; other threads and processes wait for it.
    """

    def __init__(self, root: Path):
        from filelock import FileLock

        self.root = root
        self._lock = FileLock(root / LOCK_FILE)

    @contextmanager
    def hold(self, *, timeout: float) -> Iterator[None]:
        """Hold the lock, waiting at most ``timeout`` seconds (0: fail at once).

        Raises :class:`~newwave.errors.LibraryLockedError`, naming the holder, when it is not
        free in time.
        """
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise LibraryLockedError(
                f"{self.root} is being written by {_holder(self.root)}; waited {timeout:g} s. "
                "Wait for it to finish (or stop it) and try again"
            ) from None
        try:
            if self._lock.lock_counter == 1:
                _write_holder(self.root)
            yield
        finally:
            self._lock.release()


def _write_holder(root: Path) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv else "",
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with contextlib.suppress(OSError):  # who holds the lock informs others; it is not data
        (root / WRITER_FILE).write_text(json.dumps(holder) + "\n", encoding="utf-8")


def _holder(root: Path) -> str:
    try:
        holder = json.loads((root / WRITER_FILE).read_text(encoding="utf-8"))
        return (
            f"process {int(holder['pid'])} on {holder['host']} ({holder['command']!r}, "
            f"since {holder['since']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
