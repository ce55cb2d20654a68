"""The manifest: a Parquet file of what a cluster encodes, exported from a catalogue.

One row per (track, field) value: ``track_id``, ``field``, ``value`` (the text, or the audio
file's path or URI as the workers see it). Each track also has one row whose ``field`` is
``@track`` and whose ``value`` is the track as JSON, which the bulk load stores. Rows keep the
catalogue's order, so the manifest is split into partitions deterministically.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newwave._optional import import_optional
from newwave.errors import InvalidInputError
from newwave.types import Track

if TYPE_CHECKING:
    from newwave.recommender import Recommender
    from newwave.search.channels import Channel

__all__ = ["COLUMNS", "TRACK_FIELD", "export_manifest", "read_manifest"]

#: The ``field`` of the rows that carry a whole track as JSON.
TRACK_FIELD = "@track"
COLUMNS = ("track_id", "field", "value")
_ROW_GROUP = 65536


def _pyarrow() -> Any:
    purpose = "reading and writing Parquet manifests and shards"
    pq = import_optional("pyarrow.parquet", purpose=purpose, extra="ray")
    return sys.modules["pyarrow"], pq


def export_manifest(
    tracks: Iterable[Track], path: str | os.PathLike[str], recommender: Recommender
) -> int:
    """Write the manifest of ``tracks`` for ``recommender``'s fields to ``path`` (atomically).

    A recommender without fields yet takes the default fields of the tracks, as
    :meth:`~newwave.Recommender.add` would. Returns the number of tracks written.
    """
    from newwave.search.channels import JointChannel
    from newwave.search.defaults import default_fields

    pa, pq = _pyarrow()
    batch = list(tracks)
    if not recommender._channels:
        recommender._set_fields(default_fields(batch))
    sources: dict[
        str, Channel
    ] = {}  # field -> a channel reading it (all channels of a field share its source)
    for channel in recommender._channels.values():
        if not isinstance(channel, JointChannel):
            sources.setdefault(channel.field, channel)
    schema = pa.schema([(name, pa.string()) for name in COLUMNS])
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    seen: set[str] = set()
    written = 0
    with pq.ParquetWriter(temporary, schema) as writer:
        rows: dict[str, list[str]] = {name: [] for name in COLUMNS}

        def flush() -> None:
            writer.write_table(pa.table(rows, schema=schema))
            for column in rows.values():
                column.clear()

        for track in batch:
            if track.id in seen:
                raise InvalidInputError(f"track id {track.id!r} appears twice")
            seen.add(track.id)
            rows["track_id"].append(track.id)
            rows["field"].append(TRACK_FIELD)
            rows["value"].append(track.model_dump_json())
            for field, channel in sources.items():
                value = channel.value(track)
                if value:
                    rows["track_id"].append(track.id)
                    rows["field"].append(field)
                    rows["value"].append(value)
            written += 1
            if len(rows["track_id"]) >= _ROW_GROUP:
                flush()
        if rows["track_id"] or not written:
            flush()
    temporary.replace(target)
    return written


def read_manifest(path: str | os.PathLike[str], rows: int = _ROW_GROUP) -> Iterator[Any]:
    """The manifest's rows in order, as pyarrow record batches of at most ``rows`` rows."""
    _, pq = _pyarrow()
    if not Path(path).is_file():
        raise InvalidInputError(f"no manifest at {path}")
    parquet = pq.ParquetFile(path)
    missing = [c for c in COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        raise InvalidInputError(f"{path} is not a manifest: no column {missing[0]!r}")
    yield from parquet.iter_batches(batch_size=rows, columns=list(COLUMNS))
