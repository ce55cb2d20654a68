"""Training data: resumable, deterministically shuffled batches, in memory or streamed.

A :class:`BatchSource` yields an epoch's batches, each with the *position* after it (a JSON
value). The loop saves the last position in its checkpoints and passes it back on resume, so a
resumed run sees exactly the batches an uninterrupted one would. Shuffles derive from
``(seed, epoch)`` alone.

* :class:`ShuffledBatches`: items held in memory, addressed by index.
* :class:`ParquetShards`: rows streamed from many local Parquet files (``pyarrow``,
  ``newwave-music[parquet]``), never a whole file in memory: the file order is shuffled per epoch,
  rows are read in record batches and shuffled within a window of ``shuffle_rows``
  consecutive rows. The position is the window's start (file, row) and the batches of it done.
* :func:`read_records`: the rows of one CSV, TSV, JSONL or Parquet file, e.g. training pairs.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import JsonValue

from newwave.errors import InvalidInputError, MissingFileError
from newwave.readers import _import_pyarrow_parquet, _resolve_format

__all__ = ["BatchSource", "ParquetShards", "Position", "ShuffledBatches", "read_records"]

B = TypeVar("B")
Position: TypeAlias = JsonValue
"""Where an epoch's batches stopped, as a source defines it (saved as JSON)."""
Indices: TypeAlias = npt.NDArray[np.int64]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_READ_ROWS = 1024


class BatchSource(ABC, Generic[B]):
    """An epoch's batches, in an order fixed by the seed and the epoch, resumable mid-epoch."""

    @abstractmethod
    def batches(self, epoch: int, position: Position = None) -> Iterator[tuple[B, Position]]:
        """The batches of ``epoch`` after ``position`` (None: from the start), each with the
        position after it."""

    @abstractmethod
    def num_batches(self) -> int:
        """How many batches an epoch has."""


class ShuffledBatches(BatchSource[B]):
    """Batches of ``count`` in-memory items: ``collate(indices)`` builds a batch.

    Each epoch takes a permutation of ``range(count)`` from ``(seed, epoch)`` (or the order
    itself, ``shuffle=False``) and cuts it into ``batch_size`` pieces; ``drop_last`` drops a
    last, smaller one. The position is the number of batches done.
    """

    def __init__(
        self,
        count: int,
        batch_size: int,
        collate: Callable[[Indices], B],
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ):
        if count < 1 or batch_size < 1:
            raise InvalidInputError(
                f"need count >= 1 and batch_size >= 1, got {count}, {batch_size}"
            )
        if drop_last and count < batch_size:
            raise InvalidInputError(f"{count} items make no full batch of {batch_size}")
        self.count, self.batch_size, self.collate = count, batch_size, collate
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last

    def num_batches(self) -> int:
        whole = self.count // self.batch_size
        return whole if self.drop_last or self.count % self.batch_size == 0 else whole + 1

    def batches(self, epoch: int, position: Position = None) -> Iterator[tuple[B, Position]]:
        start = _int_position(position, self.num_batches())
        order = np.arange(self.count, dtype=np.int64)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        for k in range(start, self.num_batches()):
            yield self.collate(order[k * self.batch_size : (k + 1) * self.batch_size]), k + 1


def _int_position(position: Position, limit: int) -> int:
    if position is None:
        return 0
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= limit:
        raise InvalidInputError(f"position {position!r} is not a batch count in [0, {limit}]")
    return position


class ParquetShards(BatchSource[B]):
    """Batches streamed from local Parquet files; ``collate(table)`` builds one from its rows.

    ``paths``: files, folders or glob patterns (sorted; a folder means its ``*.parquet``),
    never URLs. ``columns``: the columns to read (default all). Rows are shuffled within
    windows of ``shuffle_rows`` consecutive rows (rounded up to whole batches; memory holds one
    window plus one row group); ``shuffle=False`` keeps file order. Every file needs the same
    schema. ``collate`` receives a ``pyarrow.Table`` of ``batch_size`` rows (fewer at the end),
    e.g. ``lambda table: table.to_pydict()``.
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        batch_size: int,
        collate: Callable[[Any], B],
        *,
        columns: Sequence[str] | None = None,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_rows: int = 10_000,
        drop_last: bool = False,
    ):
        if batch_size < 1 or shuffle_rows < 1:
            raise InvalidInputError("batch_size and shuffle_rows must be >= 1")
        self._pq = _import_pyarrow_parquet()
        self.paths = _expand(paths)
        self.batch_size, self.collate, self.seed = batch_size, collate, seed
        self.columns = None if columns is None else list(columns)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.window = math.ceil(shuffle_rows / batch_size) * batch_size
        self._rows = [int(self._open(p).metadata.num_rows) for p in self.paths]
        if self.num_batches() == 0:
            raise InvalidInputError(f"{len(self.paths)} Parquet file(s) hold no full batch")

    def _open(self, path: Path) -> Any:
        try:
            return self._pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise InvalidInputError(f"{path} is not a readable Parquet file: {exc}") from None

    def num_batches(self) -> int:
        total = sum(self._rows)
        rest = total % self.window
        last = rest // self.batch_size if self.drop_last else math.ceil(rest / self.batch_size)
        return total // self.window * (self.window // self.batch_size) + last

    def batches(self, epoch: int, position: Position = None) -> Iterator[tuple[B, Position]]:
        order = list(range(len(self.paths)))
        if self.shuffle:
            order = [int(i) for i in np.random.default_rng([self.seed, epoch]).permutation(order)]
        shard, row, skip = self._parse(position, len(order))
        reader = _Reader(self, [self.paths[i] for i in order], shard, row)
        while True:
            start = reader.position
            table = reader.take(self.window)
            if table is None:
                return
            rows = table.num_rows
            perm = np.arange(rows)
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch, *start]).permutation(rows)
            count = rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)
            after = reader.position
            for k in range(skip, count):
                done = k + 1 == count
                here: Position = {
                    "shard": (after if done else start)[0],
                    "row": (after if done else start)[1],
                    "batch": 0 if done else k + 1,
                }
                taken = perm[k * self.batch_size : (k + 1) * self.batch_size]
                yield self.collate(table.take(taken)), here
            skip = 0

    @staticmethod
    def _parse(position: Position, shards: int) -> tuple[int, int, int]:
        if position is None:
            return 0, 0, 0
        if isinstance(position, dict):
            values = [position.get(k) for k in ("shard", "row", "batch")]
            if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                shard, row, batch = (int(v) for v in values if isinstance(v, int))
                if shard <= shards:
                    return shard, row, batch
        raise InvalidInputError(f"position {position!r} is not a Parquet stream position")


class _Reader:
    """Rows of files in order from (file, row), taken a window at a time."""

    def __init__(self, source: ParquetShards[Any], paths: list[Path], shard: int, row: int):
        self.source, self.paths = source, paths
        self.position = (shard, row)
        self._chunks = self._iterate(shard, row)
        self._pending: tuple[int, int, Any] | None = None

    def _iterate(self, shard: int, row: int) -> Iterator[tuple[int, int, Any]]:
        for s in range(shard, len(self.paths)):
            handle = self.source._open(self.paths[s])
            begin = row if s == shard else 0
            groups: list[int] = []  # the row groups holding rows from `begin` on
            first = 0  # the first row of groups[0]
            for g in range(handle.num_row_groups):
                n = handle.metadata.row_group(g).num_rows
                if groups or first + n > begin:
                    groups.append(g)
                else:
                    first += n
            if not groups:
                continue
            offset = first
            batches = handle.iter_batches(
                batch_size=_READ_ROWS, row_groups=groups, columns=self.source.columns
            )
            for batch in batches:
                if offset + batch.num_rows <= begin:
                    offset += batch.num_rows
                    continue
                if offset < begin:
                    batch, offset = batch.slice(begin - offset), begin
                yield s, offset, batch
                offset += batch.num_rows

    def take(self, rows: int) -> Any:
        """A table of up to ``rows`` next rows (None when none is left); moves the position."""
        import pyarrow as pa

        parts: list[Any] = []
        wanted = rows
        while wanted:
            chunk = self._pending or next(self._chunks, None)
            self._pending = None
            if chunk is None:
                break
            s, offset, batch = chunk
            if batch.num_rows > wanted:
                self._pending = (s, offset + wanted, batch.slice(wanted))
                batch = batch.slice(0, wanted)
            parts.append(batch)
            wanted -= batch.num_rows
            self.position = (s, offset + batch.num_rows)
        if not parts:
            return None
        try:
            return pa.Table.from_batches(parts)
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(f"the Parquet files differ in their columns: {exc}") from None


def _expand(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InvalidInputError("no Parquet path given")
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if _URL.match(text):
            raise InvalidInputError(f"{text} is a URL; training reads local files only")
        path = Path(text).expanduser()
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))  # noqa: PTH207
        elif path.is_dir():
            matches = sorted(path.glob("*.parquet"))
        else:
            matches = [path] if path.is_file() else []
        if not matches:
            raise MissingFileError(f"no Parquet file at {text}")
        found += matches
    return found


def read_records(path: str | os.PathLike[str], columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The ``columns`` of each row of a CSV, TSV, JSONL or Parquet file, lazily, in file order.

    The format comes from the extension. A missing file raises :class:`MissingFileError`; a
    missing column or a malformed row, :class:`InvalidInputError` naming the file.
    """
    source = Path(path)
    if not source.is_file():
        raise MissingFileError(f"no file at {source}")
    fmt = _resolve_format(source, None)
    wanted = list(columns)
    if fmt == "parquet":
        return _parquet_records(source, wanted)
    if fmt == "jsonl":
        return _jsonl_records(source, wanted)
    return _csv_records(source, wanted, "\t" if fmt == "tsv" else ",")


def _pick(record: dict[str, Any], columns: list[str], source: Path, where: str) -> dict[str, Any]:
    missing = [c for c in columns if c not in record]
    if missing:
        raise InvalidInputError(f"{source}, {where}: no column {missing[0]!r}")
    return {c: record[c] for c in columns}


def _csv_records(source: Path, columns: list[str], delimiter: str) -> Iterator[dict[str, Any]]:
    with source.open(encoding="utf-8-sig", newline="") as handle:
        try:
            for number, record in enumerate(csv.DictReader(handle, delimiter=delimiter), 2):
                yield _pick(record, columns, source, f"line {number}")
        except csv.Error as exc:
            raise InvalidInputError(f"{source}: cannot parse the file: {exc}") from None


def _jsonl_records(source: Path, columns: list[str]) -> Iterator[dict[str, Any]]:
    with source.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InvalidInputError(f"{source}, line {number}: not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise InvalidInputError(f"{source}, line {number}: not a JSON object")
            yield _pick(record, columns, source, f"line {number}")


def _parquet_records(source: Path, columns: list[str]) -> Iterator[dict[str, Any]]:
    pq = _import_pyarrow_parquet()
    try:
        handle = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise InvalidInputError(f"{source} is not a readable Parquet file: {exc}") from None
    missing = [c for c in columns if c not in handle.schema_arrow.names]
    if missing:
        raise InvalidInputError(f"{source}: no column {missing[0]!r}")
    with handle:
        for batch in handle.iter_batches(batch_size=_READ_ROWS, columns=columns):
            yield from batch.to_pylist()
