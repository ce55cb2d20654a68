"""Check a FAISS index file's sizes against the file before FAISS reads it.

``faiss.read_index`` sizes each array from a count stored in the file and allocates it before
reading: a small file whose counts claim gigabytes makes it allocate gigabytes before it fails.
:func:`check_index_file` walks the file's layout (FAISS's serialization format: a four-letter
tag, a header, then the index's fields) with seeks and small reads, and refuses any count that
claims more bytes than the file still holds, or that disagrees with the header's vector count.

The layouts walked in full are the id-mapped flat indexes (``IxM2``/``IxMp`` around
``IxFI``/``IxF2``/``IxFl``) and ``IVF...,Flat`` (``IwFl``, flat quantizer, array inverted
lists): what the ``"Flat"`` and ``"auto"`` factories write. For other layouts (HNSW, PQ, ...),
the check stops at the first part it does not know, after the header's vector count was checked
against the file size: every vector of an id-mapped index stores at least its 8-byte id.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from newwave.errors import IndexCorruptError

__all__ = ["check_index_file"]

_HEADER = struct.Struct("<iqqqBi")  # d, ntotal, two unused words, is_trained, metric type
_ID_BYTES = 8
_FLAT = {b"IxFI", b"IxF2", b"IxFl"}
_ID_MAPS = {b"IxMp", b"IxM2"}
_DIRECT_MAPS = {0: 0, 1: _ID_BYTES, 2: 2 * _ID_BYTES}  # none, array, hash table: bytes per entry


class _UnknownLayoutError(Exception):
    """A layout this module does not walk: the rest of the file is left to FAISS."""


class _Reader:
    def __init__(self, file: BinaryIO, path: Path, size: int):
        self.file, self.path, self.size = file, path, size

    def left(self) -> int:
        return self.size - self.file.tell()

    def read(self, count: int) -> bytes:
        data = self.file.read(count)
        if len(data) != count:
            raise self.damaged(f"it ends inside a field ({count} bytes wanted)")
        return data

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.read(8))[0]
        return value

    def skip_array(self, item_bytes: int, what: str, expected: int | None = None) -> int:
        """Skip a FAISS vector (a count, then the items); return its count."""
        count = self.u64()
        if count * item_bytes > self.left():
            raise self.damaged(
                f"its {what} claims {count:,} items ({count * item_bytes:,} bytes) but only "
                f"{self.left():,} bytes follow"
            )
        if expected is not None and count != expected:
            raise self.damaged(f"its {what} holds {count:,} items, not {expected:,}")
        self.file.seek(count * item_bytes, 1)
        return count

    def damaged(self, why: str) -> IndexCorruptError:
        return IndexCorruptError(f"{self.path} is not a FAISS index: {why}")


def check_index_file(path: Path) -> None:
    """Raise :class:`IndexCorruptError` if ``path``'s stored counts claim more than it holds."""
    size = path.stat().st_size
    with path.open("rb") as file:
        reader = _Reader(file, path, size)
        try:
            _index(reader, top=True)
        except _UnknownLayoutError:
            return
        if reader.left():
            raise reader.damaged(f"{reader.left():,} bytes follow the index")


def _header(reader: _Reader) -> tuple[bytes, int, int]:
    tag = reader.read(4)
    d, ntotal, _, _, _, metric = _HEADER.unpack(reader.read(_HEADER.size))
    if metric > 1:
        reader.read(4)  # the metric's argument
    if d <= 0 or ntotal < 0:
        raise reader.damaged(f"its header says {d} dimensions and {ntotal} vectors")
    return tag, d, ntotal


def _index(reader: _Reader, *, top: bool = False) -> int:
    """Walk one index; return its vector count."""
    start = reader.file.tell()
    tag, d, ntotal = _header(reader)
    if top and ntotal * _ID_BYTES > reader.size:
        raise reader.damaged(
            f"its header claims {ntotal:,} vectors, more than a file of {reader.size:,} bytes holds"
        )
    if tag in _FLAT:
        reader.skip_array(4, "vector data", expected=ntotal * d)
    elif tag in _ID_MAPS:
        inner = _index(reader)
        if inner != ntotal:
            raise reader.damaged(f"its id map has {ntotal:,} vectors, its index {inner:,}")
        reader.skip_array(_ID_BYTES, "id map", expected=ntotal)
    elif tag == b"IwFl":
        _ivf_flat(reader, d, ntotal)
    else:
        reader.file.seek(start)
        raise _UnknownLayoutError(tag)
    return ntotal


def _ivf_flat(reader: _Reader, d: int, ntotal: int) -> None:
    nlist, _nprobe = reader.u64(), reader.u64()
    if _index(reader) not in (0, nlist):  # 0: not trained yet
        raise reader.damaged(f"its quantizer does not hold its {nlist:,} centroids")
    kind = reader.read(1)[0]
    if kind not in _DIRECT_MAPS:
        raise reader.damaged(f"unknown direct map type {kind}")
    reader.skip_array(_ID_BYTES, "direct map")
    if kind == 2:
        reader.skip_array(2 * _ID_BYTES, "direct map")
    if reader.read(4) != b"ilar":
        raise _UnknownLayoutError(b"invlists")
    lists, code_size = reader.u64(), reader.u64()
    if lists != nlist or code_size != 4 * d:
        raise reader.damaged(f"its inverted lists have {lists:,} lists of {code_size}-byte codes")
    sizes = _list_sizes(reader, nlist)
    stored = sum(sizes)
    if stored != ntotal:
        raise reader.damaged(f"its inverted lists hold {stored:,} vectors, not {ntotal:,}")
    if stored * (code_size + _ID_BYTES) > reader.left():
        raise reader.damaged(
            f"its inverted lists claim {stored * (code_size + _ID_BYTES):,} bytes but only "
            f"{reader.left():,} follow"
        )
    reader.file.seek(stored * (code_size + _ID_BYTES), 1)


def _list_sizes(reader: _Reader, nlist: int) -> list[int]:
    layout = reader.read(4)
    count = reader.u64()
    if count * 8 > reader.left():
        raise reader.damaged(f"its list sizes claim {count:,} entries")
    values = struct.unpack(f"<{count}Q", reader.read(count * 8))
    if layout == b"full" and count == nlist:
        return list(values)
    if layout == b"sprs" and count % 2 == 0:
        sizes = [0] * nlist
        for list_no, list_size in zip(values[::2], values[1::2], strict=True):
            if list_no >= nlist:
                raise reader.damaged(f"its list sizes name list {list_no} of {nlist}")
            sizes[list_no] = list_size
        return sizes
    raise reader.damaged(f"its list sizes are malformed ({layout!r}, {count} entries)")
