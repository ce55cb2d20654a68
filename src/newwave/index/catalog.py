"""The catalogue file of a saved Recommender: one SQLite database, no pickle.

Tables::

    meta(key, value)                          format version, newwave version
    tracks(position, id, track)               each Track as JSON, in insertion order
    field_vectors(field, track_id, model_id,  per field and track: the encoder's model id, the
                  content_hash, vector)       hash of what was embedded, and the vector
                                              (little-endian float32, NULL if the retriever
                                              cannot return stored vectors)

The content hashes let a Recommender skip re-encoding unchanged fields.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from newwave.errors import IndexCorruptError
from newwave.types import FloatMatrix, Track

__all__ = ["FORMAT_VERSION", "Catalog", "FieldEntries", "read_catalog", "write_catalog"]

FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tracks (position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, track TEXT NOT NULL);
CREATE TABLE field_vectors (
    field TEXT NOT NULL,
    track_id TEXT NOT NULL REFERENCES tracks (id),
    model_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    vector BLOB,
    PRIMARY KEY (field, track_id)
);
"""


@dataclass
class FieldEntries:
    """One field's entries: the encoder's model id, and per track its content hash and vector."""

    model_id: str
    hashes: dict[str, str] = field(default_factory=dict)
    vectors: dict[str, FloatMatrix] = field(default_factory=dict)  # 1-D rows; may be empty


@dataclass
class Catalog:
    """What a catalogue file holds."""

    tracks: dict[str, Track]
    fields: dict[str, FieldEntries]


def write_catalog(path: Path, tracks: Iterable[Track], fields: Mapping[str, FieldEntries]) -> None:
    """Write a new catalogue file at ``path`` (which must not exist)."""
    from newwave import __version__

    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("format_version", str(FORMAT_VERSION)), ("newwave_version", __version__)],
        )
        db.executemany(
            "INSERT INTO tracks (id, track) VALUES (?, ?)",
            ((t.id, t.model_dump_json()) for t in tracks),
        )
        for field_name, entries in fields.items():
            db.executemany(
                "INSERT INTO field_vectors VALUES (?, ?, ?, ?, ?)",
                (
                    (field_name, track_id, entries.model_id, digest, _blob(entries, track_id))
                    for track_id, digest in entries.hashes.items()
                ),
            )
    db.close()


def read_catalog(path: Path) -> Catalog:
    """Read a catalogue file; anything missing, malformed or inconsistent is IndexCorruptError."""
    if not path.is_file():
        raise IndexCorruptError(f"{path.parent} is incomplete: {path.name} is missing")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _read(db, path)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise IndexCorruptError(f"{path} is not a readable catalogue: {exc}") from exc


def _read(db: sqlite3.Connection, path: Path) -> Catalog:
    meta = dict(db.execute("SELECT key, value FROM meta"))
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise IndexCorruptError(
            f"{path} has catalogue format {meta.get('format_version')!r}; this newwave reads "
            f"format {FORMAT_VERSION}"
        )
    tracks: dict[str, Track] = {}
    for track_id, data in db.execute("SELECT id, track FROM tracks ORDER BY position"):
        try:
            track = Track.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            raise IndexCorruptError(f"{path}: track {track_id!r} is malformed: {exc}") from exc
        if track.id != track_id:
            raise IndexCorruptError(f"{path}: track row {track_id!r} holds track {track.id!r}")
        tracks[track_id] = track
    fields: dict[str, FieldEntries] = {}
    rows = db.execute("SELECT field, track_id, model_id, content_hash, vector FROM field_vectors")
    for field_name, track_id, model_id, digest, blob in rows:
        entries = fields.setdefault(field_name, FieldEntries(model_id))
        if model_id != entries.model_id or track_id not in tracks:
            raise IndexCorruptError(
                f"{path}: field {field_name!r} of track {track_id!r} is inconsistent "
                "(another model id, or no such track)"
            )
        entries.hashes[track_id] = digest
        if blob is not None:
            entries.vectors[track_id] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    return Catalog(tracks, fields)


def _blob(entries: FieldEntries, track_id: str) -> bytes | None:
    vector = entries.vectors.get(track_id)
    return None if vector is None else np.asarray(vector, dtype="<f4").tobytes()
