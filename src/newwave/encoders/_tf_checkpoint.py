"""Read TensorFlow checkpoints (the "V2" tensor-bundle format) with NumPy alone.

A checkpoint with prefix ``P`` is two kinds of files:

* ``P.index``: an SSTable (LevelDB's table format, uncompressed) whose keys are tensor names and
  whose values are ``BundleEntryProto`` protobufs (dtype, shape, data shard, byte offset, size,
  masked CRC32C); the empty key holds a ``BundleHeaderProto`` (shard count, byte order).
* ``P.data-00000-of-0000N``: the tensors' raw bytes, back to back.

:func:`read_checkpoint` returns the tensors as NumPy arrays; no TensorFlow is imported. Only what
TensorFlow 1 and 2 write for plain variables is supported: little-endian, uncompressed index
blocks, whole (unsliced) numeric tensors. Anything else raises
:class:`~newwave.errors.ModelNotFoundError` saying what is unsupported.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from newwave.errors import ModelNotFoundError

__all__ = ["TensorEntry", "crc32c", "read_checkpoint", "read_index"]

_MAGIC = 0xDB4775248B80FB57  # LevelDB table magic number
_FOOTER = 48
_BLOCK_TRAILER = 5  # compression type (1 byte) + CRC (4 bytes)
_CRC_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto: DataType -> NumPy dtype (little-endian)
_DTYPES: dict[int, str] = {
    1: "<f4",  # DT_FLOAT
    2: "<f8",  # DT_DOUBLE
    3: "<i4",  # DT_INT32
    4: "u1",  # DT_UINT8
    5: "<i2",  # DT_INT16
    6: "i1",  # DT_INT8
    9: "<i8",  # DT_INT64
    10: "?",  # DT_BOOL
    17: "<u2",  # DT_UINT16
    19: "<f2",  # DT_HALF
    22: "<u4",  # DT_UINT32
    23: "<u8",  # DT_UINT64
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: its dtype code, shape, shard, byte range and masked CRC32C."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int | None
    sliced: bool


class _CorruptError(ValueError):
    pass


def read_index(prefix: str | os.PathLike[str]) -> tuple[int, dict[str, TensorEntry]]:
    """The shard count and the tensor entries of the checkpoint ``prefix`` (``prefix.index``)."""
    path = Path(os.fspath(prefix) + ".index")
    if not path.is_file():
        raise ModelNotFoundError(f"no TensorFlow checkpoint index at {path}")
    data = path.read_bytes()
    try:
        records = dict(_table_records(data))
        header = records.pop(b"", None)
        if header is None:
            raise _CorruptError("no header entry")
        fields = dict(_fields(header))
        if fields.get(2, 0) != 0:
            raise ModelNotFoundError(f"{path}: big-endian checkpoints are not supported")
        shards = int(fields.get(1, 1))
        entries = {key.decode(): _entry(key.decode(), value) for key, value in records.items()}
    except (_CorruptError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ModelNotFoundError(
            f"{path} is not a readable TensorFlow checkpoint index: {exc}"
        ) from exc
    return shards, entries


def read_checkpoint(
    prefix: str | os.PathLike[str],
    names: Callable[[str], bool] | None = None,
    *,
    verify: bool = False,
) -> dict[str, npt.NDArray[np.generic]]:
    """The tensors of the checkpoint ``prefix`` whose names ``names`` accepts (default: all).

    Each is a NumPy array of its dtype and shape, copied out of the data file. With ``verify``,
    each tensor's CRC32C is checked (pure Python: about a second per megabyte).
    """
    shards, entries = read_index(prefix)
    wanted = [e for e in entries.values() if names is None or names(e.name)]
    out: dict[str, npt.NDArray[np.generic]] = {}
    files: dict[int, bytes] = {}
    for entry in sorted(wanted, key=lambda e: (e.shard, e.offset)):
        if entry.sliced:
            raise ModelNotFoundError(
                f"{prefix}: tensor {entry.name!r} is partitioned (unsupported)"
            )
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise ModelNotFoundError(
                f"{prefix}: tensor {entry.name!r} has TensorFlow dtype code {entry.dtype}, "
                "which this reader does not support"
            )
        if entry.shard not in files:
            shard = Path(f"{os.fspath(prefix)}.data-{entry.shard:05d}-of-{shards:05d}")
            if not shard.is_file():
                raise ModelNotFoundError(f"checkpoint data file {shard} is missing")
            files[entry.shard] = shard.read_bytes()
        blob = files[entry.shard][entry.offset : entry.offset + entry.size]
        count = int(np.prod(entry.shape, dtype=np.int64))
        if len(blob) != entry.size or entry.size != count * np.dtype(dtype).itemsize:
            raise ModelNotFoundError(
                f"{prefix}: tensor {entry.name!r} of shape {entry.shape} does not fit its "
                f"{entry.size} bytes at offset {entry.offset} (truncated or corrupt data file)"
            )
        if verify and entry.crc is not None and _mask(crc32c(blob)) != entry.crc:
            raise ModelNotFoundError(f"{prefix}: tensor {entry.name!r} fails its CRC32C check")
        out[entry.name] = np.frombuffer(blob, dtype=dtype).reshape(entry.shape).copy()
    return out


# -- CRC32C (Castagnoli), as TensorFlow and LevelDB store it ----------------------------------


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli) checksum of ``data``."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# -- SSTable and protobuf decoding ------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise _CorruptError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _CorruptError("varint too long")


def _block(data: bytes, handle: bytes) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + _BLOCK_TRAILER > len(data):
        raise _CorruptError("block handle points past the end of the file")
    if data[offset + size] != 0:
        raise _CorruptError("compressed index blocks are not supported")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _CorruptError("block too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise _CorruptError("bad restart count")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _table_records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(data) < _FOOTER:
        raise _CorruptError("file too short")
    footer = data[-_FOOTER:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER - 8)
    if magic != _MAGIC:
        raise _CorruptError("bad table magic number")
    _, pos = _varint(footer, 0)  # metaindex handle: offset, size (unused)
    _, pos = _varint(footer, pos)
    index = _block(data, footer[pos:])
    for _, handle in _block_entries(index):
        yield from _block_entries(_block(data, handle))


def _fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: ints for varint/fixed, else bytes."""
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            (value,) = struct.unpack_from("<Q", message, pos)
            pos += 8
        elif wire == 2:
            length, pos = _varint(message, pos)
            value = message[pos : pos + length]
            pos += length
        elif wire == 5:
            (value,) = struct.unpack_from("<I", message, pos)
            pos += 4
        else:
            raise _CorruptError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _entry(name: str, message: bytes) -> TensorEntry:
    dtype = shard = offset = size = 0
    crc: int | None = None
    shape: list[int] = []
    sliced = False
    for number, value in _fields(message):
        if number == 2 and isinstance(value, bytes):  # TensorShapeProto
            for sub, dim in _fields(value):
                if sub == 2 and isinstance(dim, bytes):  # Dim {size = 1; name = 2}
                    shape.append(next((int(v) for n, v in _fields(dim) if n == 1), 0))
        elif number == 7:
            sliced = True
        elif isinstance(value, int):
            if number == 1:
                dtype = value
            elif number == 3:
                shard = value
            elif number == 4:
                offset = value
            elif number == 5:
                size = value
            elif number == 6:
                crc = value
    return TensorEntry(name, dtype, tuple(shape), shard, offset, size, crc, sliced)
