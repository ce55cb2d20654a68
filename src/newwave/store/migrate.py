"""Conversion of libraries written by earlier versions: format 1 (numbered snapshot
directories) to format 2, and the catalogue names table added to a format-2 library.

Format 1, written by newwave 0.1 before the live store::

    my-library/
      newwave.json          {"format": "newwave-snapshots", "current": "snapshot-000002"}
      snapshot-000002/
        config.json         the RecommenderConfig
        catalog.sqlite      tracks (JSON) and per channel: model id, content hash, vector
        fields/<channel>/   each channel's index (FAISS, or a lexical index)
        fuser/, joint/      an embedding fuser's weights and joint index

The conversion keeps every track, vector and content hash (nothing is embedded again); a lexical
channel's texts are read again from the tracks, so a field computed by a function needs that
function (``sources=``). It writes the new database beside the old files, renames it into place
in one step and only then deletes the snapshots: a crash leaves either library whole.

A format-2 library written before the catalogue names table (:mod:`newwave.store.names`), or
changed since by a version that does not keep it, gets the table built from its tracks when
names are first looked up (:func:`add_catalogue_names`): derived data, in one transaction that
leaves the catalogue's ``seq`` as it is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from newwave._storage import POINTER, resolve_directory
from newwave.config import RecommenderConfig
from newwave.errors import IndexCorruptError, InvalidInputError
from newwave.fields import field_value
from newwave.store.database import DATABASE, LibraryStore
from newwave.store.lock import WriterLock
from newwave.types import Track

if TYPE_CHECKING:
    from newwave.store.library import Library

__all__ = ["add_catalogue_names", "is_format_1", "migrate_format_1"]

_PARTIAL = DATABASE + ".migrating"


def is_format_1(root: Path) -> bool:
    """Whether ``root`` holds a library in format 1 (and none in the current format)."""
    return (root / POINTER).is_file() and not (root / DATABASE).is_file()


def migrate_format_1(
    root: Path,
    *,
    sources: Mapping[str, Callable[[Track], str | None]] | None = None,
    lock_timeout: float = 60.0,
) -> None:
    """Convert the format-1 library in ``root`` in place (see the module docstring)."""
    from newwave.recommender import Recommender
    from newwave.search.channels import JOINT, DenseChannel, JointChannel, LexicalChannel

    with WriterLock(root).hold(timeout=lock_timeout):
        if not is_format_1(root):
            return  # converted by another process meanwhile
        snapshot = resolve_directory(root)
        try:
            config = RecommenderConfig.from_json((snapshot / "config.json").read_bytes())
        except (OSError, InvalidInputError) as exc:
            raise IndexCorruptError(f"{snapshot} has no valid config.json: {exc}") from exc
        tracks, hashes, blobs = _read_catalog(snapshot / "catalog.sqlite")
        fuser_files = snapshot / "fuser" if (snapshot / "fuser").is_dir() else None
        rec = Recommender._from_config(config, sources, fuser_files=fuser_files)
        (root / _PARTIAL).unlink(missing_ok=True)
        store = LibraryStore(root / _PARTIAL, create=True)
        try:
            with store.transaction():
                labels = store.put_tracks(tracks)
                for name, channel in rec._channels.items():
                    if isinstance(channel, JointChannel):
                        continue
                    found = hashes.get(name, {})
                    ids = [t.id for t in tracks if t.id in found]
                    rows = [labels[i] for i in ids]
                    digests = [found[i] for i in ids]
                    if isinstance(channel, LexicalChannel):
                        by_id = {t.id: t for t in tracks}
                        if channel.source is None:
                            raise InvalidInputError(
                                f"converting {root}: field {channel.field!r} is computed by a "
                                f"function; give it: Recommender.load(..., sources="
                                f"{{{channel.field!r}: function}})"
                            )
                        texts = [field_value(by_id[i], channel.source) or "" for i in ids]
                        channel.put(store, rows, digests, texts)
                    elif isinstance(channel, DenseChannel):
                        vectors = _vectors(snapshot, name, ids, blobs.get(name, {}))
                        channel.put(store, rows, digests, vectors)
                joint = rec._channels.get(JOINT)
                if isinstance(joint, JointChannel):
                    every = [labels[t.id] for t in tracks]
                    joint.put(store, every, [""] * len(every), joint.fuse(store, every))
                store.set_meta("config", config.model_dump_json())
        finally:
            store.close()
        if fuser_files is not None:
            _copy_folder(fuser_files, root / "fuser", store_path=root / _PARTIAL)
        (root / _PARTIAL).rename(root / DATABASE)
        from newwave.store.library import _remove_format_1

        _remove_format_1(root)


def add_catalogue_names(library: Library) -> bool:
    """Make the library's catalogue names table current, building it from the tracks if it is
    missing or stale; False if it is stale and another process is writing the library (or it
    cannot be written)."""
    if library.store.names_current():
        return True
    return library.keep_derived(lambda store: store.rebuild_names())


def _read_catalog(
    path: Path,
) -> tuple[list[Track], dict[str, dict[str, str]], dict[str, dict[str, bytes]]]:
    """The tracks (in order), and per channel the content hashes and vectors, of a format-1
    catalogue."""
    if not path.is_file():
        raise IndexCorruptError(f"{path.parent} is incomplete: {path.name} is missing")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tracks = []
            for track_id, data in db.execute("SELECT id, track FROM tracks ORDER BY position"):
                track = Track.model_validate(json.loads(data))
                if track.id != track_id:
                    raise IndexCorruptError(f"{path}: track row {track_id!r} holds {track.id!r}")
                tracks.append(track)
            hashes: dict[str, dict[str, str]] = {}
            blobs: dict[str, dict[str, bytes]] = {}
            for field, track_id, digest, blob in db.execute(
                "SELECT field, track_id, content_hash, vector FROM field_vectors"
            ):
                hashes.setdefault(field, {})[track_id] = digest
                if blob is not None:
                    blobs.setdefault(field, {})[track_id] = blob
        finally:
            db.close()
    except (sqlite3.DatabaseError, ValueError, ValidationError) as exc:
        raise IndexCorruptError(f"{path} is not a readable catalogue: {exc}") from exc
    return tracks, hashes, blobs


def _vectors(
    snapshot: Path, channel: str, ids: list[str], blobs: Mapping[str, bytes]
) -> np.ndarray:
    """The vectors of ``ids``: from the catalogue, else from the channel's saved index."""
    if all(i in blobs for i in ids):
        rows = [np.frombuffer(blobs[i], dtype="<f4") for i in ids]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 1), np.float32)
    from newwave.index.base import Retriever

    index = Retriever.load(snapshot / "fields" / channel.replace(":", "+"))
    return index.vectors(ids)


def _copy_folder(source: Path, target: Path, *, store_path: Path) -> None:
    """Copy an embedding fuser's files and record their checksums in the new database."""
    import shutil

    from newwave.store.checkpoints import crc32_file

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    sums = {p.name: [p.stat().st_size, crc32_file(p)] for p in sorted(target.iterdir())}
    store = LibraryStore(store_path)
    try:
        with store.transaction():
            store.set_meta("files:fuser", json.dumps(sums))
    finally:
        store.close()
