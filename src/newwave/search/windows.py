"""Windowed channels: every audio window's vector indexed, a track scored by its best window.

A track's pooled vector (the mean of its windows) describes the whole track; a ten-second
snippet, or a request naming one part of a long track ("the piano intro"), matches that part
better than the mean. A :class:`WindowChannel` is an audio field's channel that keeps each
window's vector (many vectors mapped to one track): a search asks its retriever for window
hits, groups them by track, and scores each track by its best window (the maximum over its
windows), asking for more window hits until it has ``depth`` tracks.

It lives in the library as the other channels do: its ``entries`` rows hold each track's pooled
vector (so ``Recommender.vectors``, "more like this" and personal search work as for any dense
channel), the ``windows`` table of the same database holds the window vectors, written in the
transaction that writes the track and deleted with it, and its index (window vectors under
window labels, and how many windows each track has) is checkpointed and replayed like the
others. A window's label is ``track_label * WINDOW_STRIDE + window``.

The encoder of a windowed field must give window vectors: ``encode_audio_windows(audio)``
returning one ``(windows, dim)`` array of L2-normalised rows per input (``clap``, ``musicnn``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from newwave.config import ComponentConfig
from newwave.encoders.base import Encoder
from newwave.errors import IndexCorruptError, InvalidInputError
from newwave.fields import Source
from newwave.index.base import Retriever
from newwave.search.channels import DenseChannel
from newwave.store.database import Changes, Labels, LibraryStore
from newwave.types import FloatMatrix, Modality, Ranking

__all__ = ["WINDOW_STRIDE", "WindowChannel", "check_windowed"]

#: Window labels per track: a track has at most this many windows (12 days of 1-second windows).
WINDOW_STRIDE = 2**20
_COUNTS_FILE = "windows.safetensors"


def check_windowed(field: str, modality: Modality, encoder: Encoder) -> None:
    """Refuse a windowed field that is not audio, or whose encoder gives no window vectors."""
    if modality != "audio":
        raise InvalidInputError(
            f"field {field!r} holds {modality}: only an audio field keeps window vectors "
            "(windows=True)"
        )
    if not callable(getattr(encoder, "encode_audio_windows", None)):
        raise InvalidInputError(
            f"field {field!r}: encoder {encoder.name!r} gives no window vectors "
            "(encode_audio_windows), which windows=True needs; clap and musicnn do"
        )


class WindowChannel(DenseChannel):
    """An audio field whose every window's vector is indexed; see the module docstring."""

    def __init__(
        self,
        name: str,
        field: str,
        source: Source | None,
        modality: Modality,
        encoder: Encoder,
        retriever: ComponentConfig,
        dim: int | None = None,
    ):
        check_windowed(field, modality, encoder)
        super().__init__(name, field, source, modality, encoder, retriever, dim)
        self.windows: dict[int, int] = {}  # track label -> its number of windows in the index
        self.total = 0  # windows in the index

    # -- indexing ---------------------------------------------------------------------------------

    def embed(self, values: list[str]) -> Any:
        """Each file's window vectors: a list of ``(windows, dim)`` arrays."""
        found: Any = getattr(self.encoder, "encode_audio_windows")(values)  # noqa: B009
        windows = [np.ascontiguousarray(w, dtype=np.float32) for w in found]
        if len(windows) != len(values):
            raise InvalidInputError(
                f"encoder {self.encoder.name!r} returned windows for {len(windows)} of "
                f"{len(values)} files"
            )
        for value, rows in zip(values, windows, strict=True):
            if rows.ndim != 2 or not len(rows) or rows.shape[1] != self.encoder.dim:
                raise InvalidInputError(
                    f"{value}: encoder {self.encoder.name!r} returned windows of shape "
                    f"{rows.shape}, not (windows, {self.encoder.dim})"
                )
            if len(rows) > WINDOW_STRIDE:
                raise InvalidInputError(
                    f"{value} has {len(rows):,} windows; a windowed field keeps at most "
                    f"{WINDOW_STRIDE:,} per track (use longer windows)"
                )
        return windows

    def put(
        self, store: LibraryStore, labels: Sequence[int], hashes: Sequence[str], payload: Any
    ) -> None:
        """Write each track's pooled vector (its entry) and its window vectors."""
        windows: list[FloatMatrix] = list(payload)
        if self._dim is None and windows:
            self._dim = int(windows[0].shape[1])
        store.put_entries(self.name, labels, hashes, vectors=pooled(windows, self.dim))
        store.put_windows(self.name, labels, windows)

    def apply(self, changes: Changes, *, replaced: Labels | None = None) -> None:
        index = self._index()
        again = changes.labels if replaced is None else replaced
        dropped = np.unique(np.concatenate([changes.removed_labels, again])).tolist()
        old = self.window_labels(dropped)
        if len(old):
            index.remove_labelled(old)
        for label in dropped:
            self.total -= self.windows.pop(int(label), 0)
        if changes.windows is None or not len(changes.labels):
            return
        counts = [len(w) for w in changes.windows]
        labels = np.concatenate(
            [
                int(label) * WINDOW_STRIDE + np.arange(n, dtype=np.int64)
                for label, n in zip(changes.labels.tolist(), counts, strict=True)
            ]
        )
        index.add_labelled(labels, np.concatenate(changes.windows))
        for label, n in zip(changes.labels.tolist(), counts, strict=True):
            self.total += n - self.windows.get(label, 0)
            self.windows[label] = n

    def catch_up(self, store: LibraryStore) -> None:
        """Apply what the library changed since :attr:`seq`, window vectors included."""
        target = store.seq
        if target != self.seq:
            for changes in store.window_changes(self.name, self.seq, dim=self.dim):
                self.apply(changes)
            self.seq = target
        self.count = store.channel_count(self.name)

    def reset(self) -> None:
        super().reset()
        self.windows, self.total = {}, 0

    def window_labels(self, labels: Sequence[int] | Labels) -> Labels:
        """The labels of the indexed windows of the tracks ``labels`` (sorted like them)."""
        parts = [
            int(label) * WINDOW_STRIDE + np.arange(self.windows[int(label)], dtype=np.int64)
            for label in labels
            if int(label) in self.windows
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    # -- searching --------------------------------------------------------------------------------

    def _search_vectors(
        self, store: LibraryStore, vectors: FloatMatrix, depth: int, among: Labels | None
    ) -> list[Ranking]:
        """:meth:`_search_vector` of each row (each asks for as many windows as it needs)."""
        return [self._search_vector(store, row[None], depth, among) for row in vectors]

    def _search_vector(
        self, store: LibraryStore, vector: FloatMatrix, depth: int, among: Labels | None
    ) -> Ranking:
        """The ``depth`` tracks whose best window is nearest ``vector``, by that window's score."""
        if self.index is None or not self.total:
            return Ranking()
        scope, pool, tracks = None, self.total, len(self.windows)
        if among is not None:
            scope = self.window_labels(among)
            pool, tracks = len(scope), len(among)
        if not pool:
            return Ranking()
        ask = min(pool, depth * max(1, math.ceil(pool / max(1, tracks))))
        while True:
            scores, labels = self.index.search_labelled(vector, ask, count=self.total, among=scope)
            best: dict[int, float] = {}
            for score, label in zip(scores[0].tolist(), labels[0].tolist(), strict=True):
                if label >= 0:
                    best.setdefault(label // WINDOW_STRIDE, score)  # hits come best first
            if len(best) >= depth or ask >= pool:
                break
            ask = min(pool, ask * 4)
        top = list(best.items())[:depth]
        return self._ranking(
            store,
            np.array([s for _, s in top], dtype=np.float32),
            np.array([label for label, _ in top], dtype=np.int64),
        )

    # -- saving -----------------------------------------------------------------------------------

    def write_index(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        super().write_index(directory)
        labels = np.array(sorted(self.windows), dtype=np.int64)
        counts = np.array([self.windows[label] for label in labels.tolist()], dtype=np.int64)
        save_file({"labels": labels, "counts": counts}, str(directory / _COUNTS_FILE))

    def read_index(self, directory: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        index, _ = Retriever.read_labelled(directory)
        if index.dim != self.dim:
            raise IndexCorruptError(
                f"{directory} holds {index.dim}-d vectors; channel {self.name!r} has {self.dim}-d"
            )
        path = directory / _COUNTS_FILE
        try:
            saved = load_file(str(path))
            labels, counts = saved["labels"], saved["counts"]
        except (OSError, SafetensorError, KeyError) as exc:
            raise IndexCorruptError(f"{path} cannot be read: {exc}") from exc
        if labels.ndim != 1 or labels.shape != counts.shape or (counts < 1).any():
            raise IndexCorruptError(f"{path} does not hold a count of windows per track")
        self.index = index
        self.windows = dict(zip(labels.tolist(), counts.tolist(), strict=True))
        self.total = int(counts.sum())


def pooled(windows: Sequence[FloatMatrix], dim: int) -> FloatMatrix:
    """Each track's pooled vector: the L2-normalised mean of its window vectors, ``(n, dim)``."""
    from newwave._vectors import l2_normalize

    if not windows:
        return np.zeros((0, dim), dtype=np.float32)
    means = np.stack([np.asarray(w, dtype=np.float32).mean(axis=0) for w in windows])
    return l2_normalize(np.ascontiguousarray(means, dtype=np.float32))
