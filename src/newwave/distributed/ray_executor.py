"""Encode a manifest on a Ray cluster into Parquet shards, then load them into a library.

1. **Plan** (driver): the manifest's values, channel by channel, are cut into partitions of
   ``partition_rows`` values in manifest order. Each value gets the channel's content hash
   (:meth:`~newwave.search.channels.Channel.content_hash`, as in-process indexing); values whose
   hash the library already holds are dropped. A partition's shard is named by its number and a
   digest of what it holds, so a run again finds the shards a killed run finished.
2. **Encode** (Ray Data): audio is decoded in CPU ``map_batches`` tasks; each encoder runs in
   actors (``num_gpus`` when the cluster has GPUs), one partition per call, and writes the
   partition's shard (track id, channel, model id, content hash, vector) atomically.
3. **Load** (driver): the shards' vectors go into the library with
   :meth:`~newwave.Recommender.add` (``vectors=``), ``chunk_tracks`` tracks per transaction.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from newwave._optional import import_optional
from newwave._storage import atomic_file
from newwave.distributed.manifest import TRACK_FIELD, _pyarrow, read_manifest
from newwave.errors import InvalidInputError
from newwave.types import Track

if TYPE_CHECKING:
    from newwave.recommender import Recommender
    from newwave.search.channels import DenseChannel

__all__ = ["RayReport", "encode_shards", "index_with_ray", "load_shards"]


@dataclass
class RayReport:
    """What a run did: per channel, values encoded now, values in shards found from an earlier
    run, values skipped as unchanged; and per channel the values the load embedded anew."""

    encoded: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    shards_written: int = 0
    shards_reused: int = 0
    loaded: dict[str, int] = field(default_factory=dict)
    encode_s: float = 0.0  # planning and encoding, Ray's start included
    load_s: float = 0.0


@dataclass
class _Partition:
    channel: str
    shard: Path
    track_ids: list[str]
    hashes: list[str]
    values: list[str]


def _import_ray() -> Any:
    return import_optional("ray", purpose="the Ray executor", extra="ray", package="Ray")


def _dense_channels(recommender: Recommender) -> list[DenseChannel]:
    from newwave.search.channels import DenseChannel

    return [c for c in recommender._channels.values() if isinstance(c, DenseChannel)]


def shard_directory(work_dir: str | os.PathLike[str], channel: str) -> Path:
    """Where a channel's shards go."""
    return Path(work_dir) / "shards" / channel.replace(":", "+").replace("@", "_")


def plan(
    recommender: Recommender,
    manifest: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    partition_rows: int,
    report: RayReport,
) -> Iterator[_Partition]:
    """The partitions whose shards are still to write (see the module docstring)."""
    if partition_rows < 1:
        raise InvalidInputError(f"partition_rows must be positive, got {partition_rows!r}")
    channels = _dense_channels(recommender)
    store = recommender._library.store
    pending: dict[str, tuple[list[str], list[str]]] = {c.name: ([], []) for c in channels}
    numbers = dict.fromkeys(pending, 0)
    by_field: dict[str, list[DenseChannel]] = {}
    for channel in channels:
        by_field.setdefault(channel.field, []).append(channel)
        report.encoded.setdefault(channel.name, 0)
        report.reused.setdefault(channel.name, 0)
        report.unchanged.setdefault(channel.name, 0)

    def cut(channel: DenseChannel) -> _Partition | None:
        ids, values = pending[channel.name]
        number = numbers[channel.name]
        numbers[channel.name] += 1
        labels = store.labels(ids)
        known = store.hashes(channel.name, list(labels.values()))
        kept: tuple[list[str], list[str], list[str]] = ([], [], [])
        for track_id, value in zip(ids, values, strict=True):
            digest = channel.content_hash(value)
            label = labels.get(track_id)
            if label is not None and known.get(label) == digest:
                report.unchanged[channel.name] += 1
                continue
            kept[0].append(track_id)
            kept[1].append(digest)
            kept[2].append(value)
        pending[channel.name] = ([], [])
        if not kept[0]:
            return None
        name = hashlib.sha256("\0".join(kept[0] + kept[1]).encode()).hexdigest()[:16]
        shard = shard_directory(work_dir, channel.name) / f"{number:06d}-{name}.parquet"
        return _Partition(channel.name, shard, *kept)

    for batch in read_manifest(manifest):
        columns = batch.to_pydict()
        for track_id, name, value in zip(
            columns["track_id"], columns["field"], columns["value"], strict=True
        ):
            if name == TRACK_FIELD or not value:
                continue
            for channel in by_field.get(name, ()):
                ids, values = pending[channel.name]
                ids.append(track_id)
                values.append(value)
                if len(ids) >= partition_rows:
                    part = cut(channel)
                    if part is not None:
                        yield part
    for channel in channels:
        if pending[channel.name][0]:
            part = cut(channel)
            if part is not None:
                yield part


def write_shard(
    path: Path,
    track_ids: Sequence[str],
    channel: str,
    model_id: str,
    hashes: Sequence[str],
    vectors: np.ndarray,
) -> None:
    """Write one shard atomically (a temporary file, then one rename)."""
    pa, pq = _pyarrow()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    table = pa.table(
        {
            "track_id": pa.array(list(track_ids), pa.string()),
            "channel": pa.array([channel] * len(track_ids), pa.string()),
            "model_id": pa.array([model_id] * len(track_ids), pa.string()),
            "content_hash": pa.array(list(hashes), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1]
            ),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=".tmp", umask=True) as temporary:
        pq.write_table(table, str(temporary))


def read_shard(path: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """A shard's track ids, model ids, content hashes and vectors (float32, rows x dim)."""
    _, pq = _pyarrow()
    table = pq.read_table(path)
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False)
    vectors = np.asarray(flat, dtype=np.float32).reshape(-1, dim)
    return (
        table.column("track_id").to_pylist(),
        table.column("model_id").to_pylist(),
        table.column("content_hash").to_pylist(),
        vectors,
    )


# -- the Ray stages -----------------------------------------------------------------------------


def _decode(batch: dict[str, Any]) -> dict[str, Any]:
    """CPU task: decode one partition's audio files to mono samples at their own rate."""
    from newwave.audio import _check_file, _open_soundfile, to_mono

    samples, lengths, rates = [], [], []
    for value in batch["value"][0]:
        name = _check_file(str(value))
        opened = _open_soundfile(name)
        if isinstance(opened, str):  # not for libsndfile: the encoder decodes the file itself
            raise InvalidInputError(f"{name}: the Ray executor decodes WAV, FLAC, OGG and MP3")
        with opened as f:
            rate = int(f.samplerate)
            data = f.read(-1, dtype="float32", always_2d=True)
        mono = np.ascontiguousarray(to_mono(data.T), dtype=np.float32)
        samples.append(mono)
        lengths.append(mono.shape[0])
        rates.append(rate)
    out = {k: batch[k] for k in ("shard", "track_id", "hash")}
    out["samples"] = np.concatenate(samples)[None, :]
    out["lengths"] = np.array(lengths, dtype=np.int64)[None, :]
    out["rates"] = np.array(rates, dtype=np.int64)[None, :]
    return out


class _Encode:
    """Actor: one encoder, one partition per call, whose shard it writes."""

    def __init__(
        self, name: str, options: dict[str, Any], channel: str, modality: str, batch_size: int
    ) -> None:
        from newwave.plugins import load_encoder

        self.encoder = load_encoder(name, **options)
        self.channel, self.modality, self.batch_size = channel, modality, batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from newwave.types import Waveform

        shard = Path(str(batch["shard"][0]))
        ids = [str(i) for i in batch["track_id"][0]]
        hashes = [str(h) for h in batch["hash"][0]]
        if self.modality == "audio":
            samples = np.asarray(batch["samples"][0], dtype=np.float32)
            ends = np.cumsum(np.asarray(batch["lengths"][0]))
            pieces = np.split(samples, ends[:-1])
            waves = [
                Waveform(piece, int(rate))
                for piece, rate in zip(pieces, batch["rates"][0], strict=True)
            ]
            vectors = self.encoder.encode_audio(
                waves, batch_size=self.batch_size, show_progress_bar=False
            )
        else:
            values = [str(v) for v in batch["value"][0]]
            vectors = self.encoder.encode_text(
                values, role="document", batch_size=self.batch_size, show_progress_bar=False
            )
        write_shard(shard, ids, self.channel, self.encoder.model_id, hashes, vectors)
        return {"shard": np.array([str(shard)]), "rows": np.array([len(ids)])}


def encode_shards(
    recommender: Recommender,
    manifest: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    partition_rows: int = 256,
    batch_size: int | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    decode_concurrency: int | None = None,
    report: RayReport | None = None,
) -> RayReport:
    """Encode what the library lacks of ``manifest`` into shards under ``work_dir`` (Ray must be
    initialised). ``concurrency`` encoder actors per channel (default: one per GPU, else 1),
    each with ``num_gpus`` GPUs (default 1 when the cluster has GPUs, else 0), embedding
    ``batch_size`` values at a time (default: the encoder's)."""
    ray = _import_ray()
    from tqdm.auto import tqdm

    report = report or RayReport()
    todo: dict[str, list[_Partition]] = {}
    for part in plan(recommender, manifest, work_dir, partition_rows, report):
        if part.shard.exists():
            report.shards_reused += 1
            report.reused[part.channel] += len(part.track_ids)
        else:
            todo.setdefault(part.channel, []).append(part)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_actor = (1.0 if gpus else 0.0) if num_gpus is None else float(num_gpus)
    actors = concurrency or (max(1, int(gpus / per_actor)) if per_actor else 1)
    channels = {c.name: c for c in _dense_channels(recommender)}
    for name, parts in todo.items():
        channel = channels[name]
        encoder = channel.encoder
        options = dict(encoder.get_config())
        if per_actor and "device" in options:
            options["device"] = "cuda"
        items = [
            {
                "shard": str(p.shard),
                "track_id": p.track_ids,
                "hash": p.hashes,
                "value": p.values,
            }
            for p in parts
        ]
        data = ray.data.from_items(items, override_num_blocks=len(items))
        if channel.modality == "audio":
            decoders = ray.data.TaskPoolStrategy(size=decode_concurrency)
            data = data.map_batches(_decode, batch_size=1, num_cpus=1, compute=decoders)
        data = data.map_batches(
            _Encode,
            fn_constructor_kwargs={
                "name": encoder.name,
                "options": options,
                "channel": name,
                "modality": channel.modality,
                "batch_size": batch_size or encoder.batch_size,
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=per_actor,
            num_cpus=1,
        )
        total = sum(len(p.track_ids) for p in parts)
        bar = tqdm(total=total, desc=f"encode {name}", unit="value", disable=None)
        for done in data.iter_batches(batch_size=1, batch_format="numpy"):
            rows = int(done["rows"][0])
            bar.update(rows)
            report.encoded[name] += rows
            report.shards_written += 1
        bar.close()
    return report


def load_shards(
    recommender: Recommender,
    manifest: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    chunk_tracks: int = 10_000,
    report: RayReport | None = None,
) -> RayReport:
    """Add the manifest's tracks to ``recommender`` with the shards' vectors, ``chunk_tracks``
    per transaction. A value whose hash the library lacks and no shard has is an error (the
    catalogue changed since the shards were encoded): run the encoding again.

    The shards' vectors are held in memory (rows x dim x 4 bytes per channel).
    """
    from tqdm.auto import tqdm

    report = report or RayReport()
    store = recommender._library.store
    channels = _dense_channels(recommender)
    found: dict[str, tuple[dict[tuple[str, str], int], np.ndarray | None]] = {}
    for channel in channels:
        rows: dict[tuple[str, str], int] = {}  # (track id, content hash) -> row
        blocks: list[np.ndarray] = []
        offset = 0
        directory = shard_directory(work_dir, channel.name)
        for path in sorted(directory.glob("*.parquet")) if directory.is_dir() else []:
            ids, models, hashes, vectors = read_shard(path)
            if models and models[0] != channel.encoder.model_id:
                raise InvalidInputError(
                    f"{path} holds vectors of {models[0]!r}; channel {channel.name!r} uses "
                    f"{channel.encoder.model_id!r}: use another work directory"
                )
            for i, (track_id, digest) in enumerate(zip(ids, hashes, strict=True)):
                rows[track_id, digest] = offset + i
            blocks.append(vectors)
            offset += len(ids)
        found[channel.name] = (rows, np.concatenate(blocks) if blocks else None)
        if blocks and channel.known_dim is None:
            channel._dim = int(blocks[0].shape[1])  # known from the shards: no model to load
    loaded: dict[str, int] = {}
    bar = tqdm(desc="load", unit="track", disable=None)
    for tracks in _track_chunks(manifest, chunk_tracks):
        labels = store.labels([t.id for t in tracks])
        given: dict[str, np.ndarray] = {}
        for channel in channels:
            rows, matrix = found[channel.name]
            if matrix is None:
                continue
            known = store.hashes(channel.name, list(labels.values()))
            out = np.zeros((len(tracks), matrix.shape[1]), dtype=np.float32)
            for i, track in enumerate(tracks):
                value = channel.value(track)
                if not value:
                    continue
                digest = channel.content_hash(value)
                label = labels.get(track.id)
                if label is not None and known.get(label) == digest:
                    continue  # unchanged: add() skips it
                hit = rows.get((track.id, digest))
                if hit is None:
                    raise InvalidInputError(
                        f"track {track.id!r}: its {channel.field} changed since it was encoded "
                        f"(no shard under {work_dir} has it); run the encoding again"
                    )
                out[i] = matrix[hit]
            given[channel.name] = out
        for name, count in recommender.add(tracks, vectors=given).items():
            loaded[name] = loaded.get(name, 0) + count
        bar.update(len(tracks))
    bar.close()
    report.loaded = loaded
    return report


def _track_chunks(manifest: str | os.PathLike[str], size: int) -> Iterator[list[Track]]:
    chunk: list[Track] = []
    for batch in read_manifest(manifest):
        columns = batch.to_pydict()
        for name, value in zip(columns["field"], columns["value"], strict=True):
            if name == TRACK_FIELD:
                chunk.append(Track.model_validate_json(value))
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def index_with_ray(
    recommender: Recommender,
    manifest: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    address: str | None = None,
    partition_rows: int = 256,
    batch_size: int | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    decode_concurrency: int | None = None,
    chunk_tracks: int = 10_000,
) -> RayReport:
    """Index ``manifest`` (see :func:`~newwave.distributed.export_manifest`) into
    ``recommender`` (a library from :meth:`~newwave.Recommender.load`, or one in memory),
    encoding on Ray: on the running cluster at ``address`` (``"auto"``, ``"ray://host:10001"``),
    on the cluster this process already joined, or else on a local one started for the call.

    ``work_dir`` holds the shards; on a cluster of several machines it must be storage they all
    reach (NFS, a mounted bucket). Run again after a crash, it encodes only the partitions
    whose shards are missing. See :func:`encode_shards` for the other options.
    """
    ray = _import_ray()
    began = time.perf_counter()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
        started = True
    try:
        report = encode_shards(
            recommender,
            manifest,
            work_dir,
            partition_rows=partition_rows,
            batch_size=batch_size,
            concurrency=concurrency,
            num_gpus=num_gpus,
            decode_concurrency=decode_concurrency,
        )
    finally:
        if started:
            ray.shutdown()
    report.encode_s = time.perf_counter() - began
    print(
        f"shards: {report.shards_written} written, {report.shards_reused} from an earlier run",
        file=sys.stderr,
    )
    began = time.perf_counter()
    load_shards(recommender, manifest, work_dir, chunk_tracks=chunk_tracks, report=report)
    report.load_s = time.perf_counter() - began
    return report
