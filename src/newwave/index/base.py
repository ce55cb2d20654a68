"""The Retriever interface: a vector index keyed by track id, with atomic persistence."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from newwave._checks import positive_int
from newwave._storage import atomic_directory, read_json, resolve_directory, write_json
from newwave._vectors import as_matrix
from newwave.errors import (
    ComponentUnavailableError,
    IndexCorruptError,
    InvalidInputError,
    UnknownTrackError,
)
from newwave.types import FloatMatrix, Ranking

__all__ = ["Retriever"]

Labels = npt.NDArray[np.int64]

_MANIFEST = "retriever.json"
_IDS = "ids.json"


class Retriever(ABC):
    """Stores vectors under string ids and finds the nearest ones by inner product.

    The base class maps ids to int64 labels, validates every vector (width, NaN/inf), handles
    upserts and persistence; a subclass implements the vector work on labels: :meth:`_add`,
    :meth:`_remove`, :meth:`_search`, :meth:`_write` and :meth:`_read`.

    A retriever is used either by string ids (the methods without ``labelled`` in their name,
    for a standalone index) or by int64 labels that its owner assigns and maps (the
    ``*_labelled`` methods and :meth:`write_labelled`/:meth:`read_labelled`, which a library
    uses with its tracks' row numbers, so that no id map is held in memory). One instance uses
    one of the two.
    """

    name: ClassVar[str] = ""

    def __init__(self, dim: int):
        self._dim = positive_int(dim, "dim")
        self._labels: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._next_label = 0

    @property
    def dim(self) -> int:
        """Width of the stored vectors."""
        return self._dim

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._labels

    def ids(self) -> list[str]:
        """The stored ids, in insertion order."""
        return list(self._labels)

    def get_config(self) -> dict[str, Any]:
        """Keyword options (besides ``dim``) that rebuild an empty copy through the factory."""
        return {}

    def use_channel(self, name: str) -> None:  # noqa: B027 (optional: most ignore it)
        """Told, by a library channel that built this retriever, the channel's name
        (``description``, ``tags:minilm``, ``@joint``) before its first use.

        A retriever whose vectors live outside the process keys them by it (``qdrant``: one
        collection per channel) and saves it in :meth:`get_config`; the default ignores it.
        """

    # -- the part a subclass implements ----------------------------------------------------------

    @abstractmethod
    def _add(self, labels: Labels, vectors: FloatMatrix) -> None:
        """Store ``vectors`` under ``labels`` (none of which is stored yet)."""

    @abstractmethod
    def _remove(self, labels: Labels) -> None:
        """Forget the vectors stored under ``labels``; ignore labels not stored (a library
        removes a replaced track's label before adding it again, stored or not)."""

    @abstractmethod
    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, Labels]:
        """Scores and labels (n, k) of the best ``k`` per query, best first; label -1 pads."""

    @abstractmethod
    def _write(self, directory: Path) -> None:
        """Write the vector data into the existing, empty ``directory``."""

    @abstractmethod
    def _read(self, directory: Path) -> int:
        """Restore the vector data written by :meth:`_write`; return how many vectors it holds."""

    # -- public API ---------------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Store one vector per id; an id already stored has its vector replaced."""
        id_list = _check_ids(ids)
        matrix = as_matrix(vectors, dim=self._dim)
        if matrix.shape[0] != len(id_list):
            raise InvalidInputError(f"{len(id_list)} ids but {matrix.shape[0]} vectors")
        if not id_list:
            return
        present = [i for i in id_list if i in self._labels]
        if present:
            self._remove(np.array([self._labels[i] for i in present], dtype=np.int64))
        labels = np.empty(len(id_list), dtype=np.int64)
        for row, track_id in enumerate(id_list):
            label = self._labels.get(track_id)
            if label is None:
                label = self._next_label
                self._next_label += 1
            labels[row] = label
        self._add(labels, matrix)
        for track_id, label in zip(id_list, labels.tolist(), strict=True):
            self._labels[track_id] = label
            self._ids[label] = track_id

    def remove(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Remove ``ids``; return how many were stored. Unknown ids raise unless ``missing_ok``."""
        if isinstance(ids, str):
            raise InvalidInputError(f"remove() takes a list of ids; wrap one id: [{ids!r}]")
        id_list = _check_ids(list(ids))
        missing = [i for i in id_list if i not in self._labels]
        if missing and not missing_ok:
            raise UnknownTrackError(
                f"{len(missing)} id(s) not in the index: {', '.join(map(repr, missing[:5]))}"
            )
        stored = [i for i in id_list if i in self._labels]
        if stored:
            self._remove(np.array([self._labels[i] for i in stored], dtype=np.int64))
            for track_id in stored:
                del self._ids[self._labels.pop(track_id)]
        return len(stored)

    def search(
        self, queries: Any, k: int = 10, *, among: Collection[str] | None = None
    ) -> list[Ranking]:
        """The ``k`` stored ids nearest each query row (by inner product), best first.

        ``among`` restricts the search to those ids (ids not stored are ignored); that search is
        exact, over the stored vectors of those ids (see :meth:`vectors`).
        """
        positive_int(k, "k")
        matrix = as_matrix(queries, dim=self._dim, what="queries")
        if among is not None:
            labels = np.array(
                sorted(self._labels[i] for i in set(among) if i in self._labels), dtype=np.int64
            )
            return self._rankings(*self._search_among(matrix, min(k, len(labels)), labels))
        if not self._labels or matrix.shape[0] == 0:
            return [Ranking() for _ in range(matrix.shape[0])]
        return self._rankings(*self._search(matrix, min(k, len(self._labels))))

    def vectors(self, ids: Sequence[str]) -> FloatMatrix:
        """The stored vectors of ``ids``, one row each (approximate for compressed indexes)."""
        id_list = _check_ids(ids)
        missing = [i for i in id_list if i not in self._labels]
        if missing:
            raise UnknownTrackError(f"not in the index: {', '.join(map(repr, missing[:5]))}")
        labels = np.array([self._labels[i] for i in id_list], dtype=np.int64)
        if not len(labels):
            return np.zeros((0, self._dim), dtype=np.float32)
        return as_matrix(self._reconstruct(labels), dim=self._dim, what="stored vectors")

    # -- by labels (a library's row numbers) ----------------------------------------------------

    def add_labelled(self, labels: Labels, vectors: Any) -> None:
        """Store ``vectors`` under ``labels``, none of them stored (remove replaced ones first)."""
        matrix = as_matrix(vectors, dim=self._dim)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if matrix.shape[0] != len(labels):
            raise InvalidInputError(f"{len(labels)} labels but {matrix.shape[0]} vectors")
        if len(labels):
            self._add(labels, matrix)

    def remove_labelled(self, labels: Labels) -> None:
        """Forget the vectors of ``labels``; labels not stored are ignored."""
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if len(labels):
            self._remove(labels)

    def search_labelled(
        self, queries: Any, k: int, *, count: int, among: Labels | None = None
    ) -> tuple[FloatMatrix, Labels]:
        """Scores and labels (n, <= k) of the nearest stored vectors, best first; -1 pads.

        ``count`` is how many vectors are stored (the owner keeps it); ``among`` restricts the
        search, exactly, to those labels (labels not stored are ignored).
        """
        matrix = as_matrix(queries, dim=self._dim, what="queries")
        if among is not None:
            among = np.sort(np.asarray(among, dtype=np.int64))
            return self._search_among(matrix, min(k, len(among)), among)
        if count == 0 or matrix.shape[0] == 0:
            empty = np.zeros((matrix.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self._search(matrix, min(k, count))

    def vectors_labelled(self, labels: Labels) -> FloatMatrix:
        """The stored vectors of ``labels`` (approximate for compressed indexes)."""
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if not len(labels):
            return np.zeros((0, self._dim), dtype=np.float32)
        return as_matrix(self._reconstruct(labels), dim=self._dim, what="stored vectors")

    def write_labelled(self, directory: Path) -> None:
        """Write the vectors and a manifest, without ids, into the empty ``directory``."""
        self._write(directory)
        self._write_manifest(directory, count=None)

    @classmethod
    def read_labelled(cls, directory: Path) -> tuple[Retriever, int]:
        """A retriever written by :meth:`write_labelled`, and how many vectors it holds."""
        retriever = cls._from_manifest(directory)
        return retriever, retriever._read(directory)

    def _reconstruct(self, labels: Labels) -> FloatMatrix:
        """The stored vectors of ``labels``; optional for a subclass (needed by ``among=``)."""
        raise ComponentUnavailableError(
            f"the {self.name!r} retriever cannot return stored vectors, which filtered and "
            "track-to-track search need"
        )

    def _search_among(
        self, queries: FloatMatrix, k: int, labels: Labels
    ) -> tuple[FloatMatrix, Labels]:
        """Exact search over ``labels`` only: scores, then smaller label first on ties."""
        if k == 0 or queries.shape[0] == 0:
            empty = np.zeros((queries.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores = queries @ self._reconstruct(labels).T
        order = np.lexsort((np.broadcast_to(labels, scores.shape), -scores), axis=1)[:, :k]
        return np.take_along_axis(scores, order, axis=1), labels[order]

    def _rankings(self, scores: FloatMatrix, labels: Labels) -> list[Ranking]:
        rankings = []
        for row_scores, row_labels in zip(scores.tolist(), labels.tolist(), strict=True):
            kept = [
                (self._ids[label], score)
                for score, label in zip(row_scores, row_labels, strict=True)
                if label >= 0  # FAISS pads with -1 when it finds fewer than k
            ]
            rankings.append(Ranking(tuple(i for i, _ in kept), tuple(s for _, s in kept)))
        return rankings

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Save atomically to ``directory``: a crash mid-save leaves the previous save loadable."""
        with atomic_directory(directory) as staging:
            self.write(staging)
        return Path(directory)

    def write(self, directory: Path) -> None:
        """Write into the existing, empty ``directory`` (not atomic: :meth:`save` wraps this)."""
        self._write(directory)
        write_json(
            directory / _IDS, {"ids": list(self._labels), "labels": list(self._labels.values())}
        )
        self._write_manifest(directory, count=len(self))

    def _write_manifest(self, directory: Path, *, count: int | None) -> None:
        from newwave import __version__

        manifest: dict[str, Any] = {
            "retriever": self.name,
            "dim": self._dim,
            "options": self.get_config(),
            "newwave_version": __version__,
        }
        if count is not None:
            manifest["count"] = count
        write_json(directory / _MANIFEST, manifest)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Retriever:
        """Load a retriever saved with :meth:`save`, rebuilt through the plugin registry."""
        root = resolve_directory(directory)
        retriever = cls._from_manifest(root)
        count = read_json(root / _MANIFEST).get("count")
        if isinstance(count, bool) or not isinstance(count, int):
            raise IndexCorruptError(f"{root / _MANIFEST} lacks 'count'")
        retriever._restore(root, count)
        return retriever

    @classmethod
    def _from_manifest(cls, root: Path) -> Retriever:
        """An empty retriever built as the manifest in ``root`` says."""
        from newwave.plugins import load_retriever

        manifest = read_json(root / _MANIFEST)
        try:
            name, dim = manifest["retriever"], manifest["dim"]
            options = dict(manifest.get("options", {}))
        except (KeyError, TypeError) as exc:
            raise IndexCorruptError(f"{root / _MANIFEST} lacks {exc}") from exc
        try:
            retriever = load_retriever(name, dim=dim, **options)
        except (InvalidInputError, TypeError) as exc:
            raise IndexCorruptError(f"{root / _MANIFEST} has invalid options: {exc}") from exc
        if not isinstance(retriever, cls):
            raise IndexCorruptError(f"{root} holds a {name!r} retriever, not a {cls.__name__}")
        return retriever

    def _restore(self, root: Path, count: int) -> None:
        mapping = read_json(root / _IDS)
        try:
            ids, labels = list(mapping["ids"]), [int(x) for x in mapping["labels"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"{root / _IDS} is malformed: {exc}") from exc
        stored = self._read(root)
        if not (len(ids) == len(labels) == stored == count) or len(set(ids)) != len(ids):
            raise IndexCorruptError(
                f"{root} is inconsistent: {count} vectors in the manifest, {stored} in the index, "
                f"{len(ids)} ids"
            )
        self._labels = dict(zip(ids, labels, strict=True))
        self._ids = {label: track_id for track_id, label in self._labels.items()}
        if len(self._ids) != len(ids):
            raise IndexCorruptError(f"{root / _IDS} maps two ids to one label")
        self._next_label = max(labels, default=-1) + 1


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise InvalidInputError("ids must be a list of strings, got one string; wrap it: [id]")
    id_list = list(ids)
    for track_id in id_list:
        if not isinstance(track_id, str) or not track_id:
            raise InvalidInputError(f"ids must be non-empty strings, got {track_id!r}")
    if len(set(id_list)) != len(id_list):
        raise InvalidInputError("ids contain duplicates")
    return id_list
