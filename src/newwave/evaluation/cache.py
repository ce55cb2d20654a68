"""Audio embeddings kept on disk between benchmark runs, keyed by file content and encoder setup.

Layout: ``DIRECTORY/<setup>/<content>.npy``, where ``<setup>`` hashes the encoder's name, model id
and options (its :meth:`~newwave.Encoder.get_config` without ``batch_size``, which never changes a
vector; windowing options do) and ``<content>`` is the SHA-256 of the audio file's bytes, so a
renamed or moved file is still found and an edited one is embedded again. ``setup.json`` beside
the vectors says which setup a folder holds. Vectors are plain ``.npy`` files, read with
``allow_pickle=False`` and written atomically (temporary file, fsync, rename); an unreadable or
malformed entry is embedded again and replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from newwave._storage import atomic_file, write_json
from newwave.encoders.base import Encoder
from newwave.errors import MissingFileError
from newwave.types import FloatMatrix

__all__ = ["AudioEmbeddingCache", "CachedEncoding", "default_cache_dir", "file_digest"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes read at a time while hashing


def default_cache_dir() -> Path:
    """newwave's user cache directory: ``$XDG_CACHE_HOME/newwave`` when that variable is set,
    else ``~/Library/Caches/newwave`` on macOS, ``%LOCALAPPDATA%\\newwave\\Cache`` on Windows and
    ``~/.cache/newwave`` elsewhere."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg).expanduser() / "newwave"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "newwave"
    local = os.environ.get("LOCALAPPDATA", "").strip()
    if sys.platform == "win32" and local:
        return Path(local) / "newwave" / "Cache"
    return Path.home() / ".cache" / "newwave"


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise MissingFileError(f"no such file: {path}") from None
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedEncoding:
    """The vectors of one :meth:`AudioEmbeddingCache.encode` call and where they came from."""

    vectors: FloatMatrix
    """One unit row per input path, in input order."""
    encoded: int
    """Distinct files the encoder embedded in this call."""
    reused: int
    """Distinct files whose vector was read from the cache."""


class AudioEmbeddingCache:
    """Audio vectors on disk under ``directory`` (e.g. ``default_cache_dir() / "sdd"``)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()

    @staticmethod
    def setup(encoder: Encoder) -> dict[str, Any]:
        """What shapes an encoder's vectors: its name, model id and options but ``batch_size``."""
        config = {k: v for k, v in encoder.get_config().items() if k != "batch_size"}
        return {"encoder": encoder.name, "model_id": encoder.model_id, "config": config}

    def folder(self, encoder: Encoder) -> Path:
        """The folder holding ``encoder``'s vectors."""
        text = json.dumps(self.setup(encoder), sort_keys=True, default=str)
        return self.directory / hashlib.sha256(text.encode()).hexdigest()[:32]

    def encode(
        self,
        encoder: Encoder,
        paths: Sequence[str | os.PathLike[str]],
        *,
        show_progress: bool | None = None,
    ) -> CachedEncoding:
        """Embed the audio files ``paths`` with ``encoder``, reusing and filling the cache.

        Files with the same bytes are embedded once. Errors of the encoder (a file it cannot
        decode, a model that cannot load) propagate; nothing is cached for a failed call.
        """
        # Default: a bar for more than one file, on a terminal only (tqdm's disable=None).
        disable = (True if len(paths) < 2 else None) if show_progress is None else not show_progress
        bar = tqdm(paths, desc="hashing audio", unit="file", disable=disable)
        digests = [file_digest(path) for path in bar]
        folder = self.folder(encoder)
        dim = encoder.dim
        vectors: dict[str, np.ndarray] = {}
        todo: dict[str, str] = {}  # digest -> one path with those bytes
        for digest, path in zip(digests, paths, strict=True):
            if digest in vectors or digest in todo:
                continue
            cached = _read(folder / f"{digest}.npy", dim)
            if cached is None:
                todo[digest] = os.fspath(path)
            else:
                vectors[digest] = cached
        reused = len(vectors)
        if todo:
            embedded = encoder.encode_audio(list(todo.values()), show_progress_bar=show_progress)
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "setup.json").is_file():
                write_json(folder / "setup.json", self.setup(encoder))
            for digest, row in zip(todo, embedded, strict=True):
                _write(folder / f"{digest}.npy", row)
                vectors[digest] = row
        out = np.zeros((len(paths), dim), dtype=np.float32)
        for i, digest in enumerate(digests):
            out[i] = vectors[digest]
        return CachedEncoding(vectors=out, encoded=len(todo), reused=reused)


def _read(path: Path, dim: int) -> np.ndarray | None:
    """A cached vector, or None when it is absent or not a finite float32 vector of ``dim``."""
    try:
        vector = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("newwave: ignoring unreadable cache entry %s (%s)", path, exc)
        return None
    if (
        not isinstance(vector, np.ndarray)
        or vector.dtype != np.float32
        or vector.shape != (dim,)
        or not np.isfinite(vector).all()
    ):
        logger.warning("newwave: ignoring malformed cache entry %s", path)
        return None
    return vector


def _write(path: Path, vector: np.ndarray) -> None:
    """Save ``vector`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_file(path, suffix=".tmp") as tmp, tmp.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(vector, dtype=np.float32), allow_pickle=False)
