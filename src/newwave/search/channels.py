"""Channels: one indexed view of a library's tracks each, doing their own indexing and search.

A *channel* is one encoder's view of one field (``description``, or ``tags:bm25`` in a hybrid
field), or the joint index of an embedding fuser. Each kind owns how it embeds values, what it
stores per track in the library database, how its in-memory index follows the database, how it
searches and how its index is saved:

- :class:`DenseChannel`: an :class:`~newwave.Encoder` and a vector :class:`~newwave.Retriever`
  keyed by the tracks' labels; it stores each track's vector.
- :class:`LexicalChannel`: a lexical index (``bm25``) keyed by track id; it stores each text.
- :class:`JointChannel`: an :class:`~newwave.fusion.EmbeddingFuser`'s joint vectors, computed
  from the stored vectors of the channels it fuses.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from newwave.config import ComponentConfig
from newwave.encoders.base import Encoder
from newwave.encoders.prefix import shared_prefix
from newwave.encoders.shared import BackboneQueries
from newwave.errors import InvalidInputError
from newwave.fields import FUNCTION_SOURCE, Source, field_value
from newwave.fusion.base import EmbeddingFuser
from newwave.index.base import Retriever
from newwave.lexical.base import LexicalIndex
from newwave.store.database import Changes, Labels, LibraryStore
from newwave.types import AudioInput, FloatMatrix, Modality, Ranking, Track

__all__ = ["Channel", "DenseChannel", "JointChannel", "LexicalChannel", "Queries", "Query"]

#: The channel name of an embedding fuser's joint index (not a valid field name).
JOINT = "@joint"


class Queries:
    """Queries, embedded at most once per encoder (in one call for all of them) whatever number
    of channels use them; an encoder over a shared backbone (:mod:`newwave.encoders.shared`)
    projects the backbone's vectors instead of running it again, and encoders sharing their
    lower layers (:mod:`newwave.encoders.prefix`) embed them together.

    Text queries have ``texts``; a query by example (a :class:`Query` with ``audio``) has audio
    instead (a file path, a :class:`~newwave.types.Waveform` or ``(samples, rate)``), which the
    channels of audio fields embed with their encoder's :meth:`~newwave.Encoder.encode_audio`.
    """

    audio: AudioInput | None = None

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)
        self._vectors: dict[int, FloatMatrix] = {}

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def modality(self) -> Modality:
        """``"audio"`` for a query by example, else ``"text"``."""
        return "text" if self.audio is None else "audio"

    def vectors(self, encoder: Encoder) -> FloatMatrix:
        """The queries embedded by ``encoder``, (n, dim)."""
        key = id(encoder)
        if key not in self._vectors:
            backbone = None
            if self.audio is None and isinstance(encoder, BackboneQueries):
                backbone = encoder.query_backbone(self.texts)
            group = shared_prefix(encoder) if self.audio is None else None
            if backbone is not None:  # a bi-encoder: its heads on the backbone vectors
                assert isinstance(encoder, BackboneQueries)
                self._vectors[key] = encoder.project_queries(self.texts, self.vectors(backbone))
            elif group is not None:  # encoders sharing lower layers: embedded together
                for member, vectors in group.encode_queries(self.texts):
                    self._vectors.setdefault(id(member), vectors)
            elif self.audio is None:
                self._vectors[key] = encoder.encode_queries(self.texts, show_progress_bar=False)
            else:
                self._vectors[key] = encoder.encode_audio([self.audio])
        return self._vectors[key]

    def take(self, rows: Sequence[int]) -> Queries:
        """The text queries of ``rows``, sharing the embeddings already made."""
        taken = Queries([self.texts[row] for row in rows])
        at = np.asarray(rows, dtype=np.int64)
        taken._vectors = {key: vectors[at] for key, vectors in self._vectors.items()}
        return taken


class Query(Queries):
    """One query: a text, or with ``audio`` a query by example."""

    def __init__(self, text: str = "", *, audio: AudioInput | None = None):
        super().__init__([text])
        self.text = text
        self.audio = audio

    def vector(self, encoder: Encoder) -> FloatMatrix:
        """The query embedded by ``encoder``, (1, dim)."""
        return self.vectors(encoder)


class Channel(ABC):
    """One indexed view of the tracks; see the module docstring.

    ``seq`` is the library transaction that the in-memory index reflects.
    """

    def __init__(self, name: str, field: str, source: Source | None, modality: Modality):
        self.name = name
        self.field = field
        self.source = source  # None: a function source that was not given again after load()
        self.modality = modality
        self.seq = 0
        self.count = 0  # tracks in the index
        self._hash_prefix: Any = None  # the model's part of every content hash

    # -- what it is --------------------------------------------------------------------------------

    @property
    @abstractmethod
    def component(self) -> Encoder | LexicalIndex | EmbeddingFuser:
        """What embeds or indexes the values."""

    @property
    def saved_source(self) -> str:
        return self.source if isinstance(self.source, str) else FUNCTION_SOURCE

    @property
    def dim(self) -> int | None:
        """The width of the stored vectors; None for a lexical channel."""
        return None

    def value(self, track: Track) -> str | None:
        """The track's value in this channel, or None."""
        if self.source is None:
            raise InvalidInputError(
                f"field {self.field!r} takes its value from a function, which is not saved; "
                f"give it again: Recommender.load(directory, sources={{{self.field!r}: function}})"
            )
        return field_value(track, self.source)

    def content_hash(self, value: str) -> str:
        """What identifies an embedding: the model and its options, and the text (or the audio
        file's path, size and modification time)."""
        if self._hash_prefix is None:
            component = self.component
            options = {k: v for k, v in component.get_config().items() if k != "batch_size"}
            self._hash_prefix = hashlib.sha256(f"{_model_id(component)}\0{options}\0".encode())
        digest = self._hash_prefix.copy()
        if self.modality == "audio":
            try:
                path = Path(value)
                stat = path.stat()
                value = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
            except OSError:
                pass  # missing: the encoder reports it
        digest.update(value.encode())
        return str(digest.hexdigest())

    # -- indexing ----------------------------------------------------------------------------------

    @abstractmethod
    def embed(self, values: list[str]) -> Any:
        """What the store keeps for ``values``: vectors, or the texts themselves."""

    @abstractmethod
    def put(
        self, store: LibraryStore, labels: Sequence[int], hashes: Sequence[str], payload: Any
    ) -> None:
        """Write the rows of ``labels`` (inside a transaction)."""

    @abstractmethod
    def apply(self, changes: Changes, *, replaced: Labels | None = None) -> None:
        """Bring the in-memory index up to date with ``changes``.

        ``replaced``: which written labels the index may hold already (None: any of them).
        """

    def catch_up(self, store: LibraryStore) -> None:
        """Apply what the library changed since :attr:`seq`."""
        target = store.seq
        if target != self.seq:
            for changes in store.changes(self.name, self.seq, dim=self.dim):
                self.apply(changes)
            self.seq = target
        self.count = store.channel_count(self.name)

    @abstractmethod
    def reset(self) -> None:
        """Empty the in-memory index (it is then rebuilt from the store)."""

    # -- searching --------------------------------------------------------------------------------

    def takes(self, query: Queries) -> bool:
        """Whether this channel can search ``query``: any text query; a query by audio only in
        the channels of audio fields, whose encoder embeds audio."""
        return query.audio is None or self.modality == "audio"

    def search(
        self, store: LibraryStore, query: Query, depth: int, among: Labels | None
    ) -> Ranking:
        """The ``depth`` best tracks for ``query``, restricted to ``among`` when given."""
        return self.search_many(store, query, depth, among)[0]

    @abstractmethod
    def search_many(
        self, store: LibraryStore, queries: Queries, depth: int, among: Labels | None
    ) -> list[Ranking]:
        """:meth:`search` for each of ``queries``, in one retriever call."""

    @abstractmethod
    def similar(
        self, store: LibraryStore, label: int, track_id: str, depth: int, among: Labels | None
    ) -> Ranking | None:
        """The ``depth`` tracks nearest the track ``label`` (itself left out); None without it."""

    # -- saving ------------------------------------------------------------------------------------

    @abstractmethod
    def write_index(self, directory: Path) -> None:
        """Write the in-memory index into the empty ``directory``."""

    @abstractmethod
    def read_index(self, directory: Path) -> None:
        """Replace the in-memory index by the one :meth:`write_index` wrote."""


class _VectorChannel(Channel):
    """A channel of vectors in a retriever keyed by the tracks' labels."""

    def __init__(
        self,
        name: str,
        field: str,
        source: Source | None,
        modality: Modality,
        retriever: ComponentConfig,
        dim: int | None,
    ):
        super().__init__(name, field, source, modality)
        self.retriever_config = retriever
        self.index: Retriever | None = None
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self._width()
        return self._dim

    @property
    def known_dim(self) -> int | None:
        """The width of the vectors once known (without loading a model to learn it)."""
        return self._dim

    @abstractmethod
    def _width(self) -> int: ...

    def _index(self) -> Retriever:
        if self.index is None:
            from newwave.plugins import load_retriever

            options = self.retriever_config.options
            index = load_retriever(self.retriever_config.name, dim=self.dim, **options)
            index.use_channel(self.name)
            self.index = index
        return self.index

    def put(
        self, store: LibraryStore, labels: Sequence[int], hashes: Sequence[str], payload: Any
    ) -> None:
        if self._dim is None:
            self._dim = int(payload.shape[1])
        store.put_entries(self.name, labels, hashes, vectors=payload)

    def apply(self, changes: Changes, *, replaced: Labels | None = None) -> None:
        index = self._index()
        gone = changes.removed_labels
        again = changes.labels if replaced is None else replaced
        if len(gone) or len(again):
            index.remove_labelled(np.unique(np.concatenate([gone, again])))
        if changes.vectors is not None and len(changes.labels):
            index.add_labelled(changes.labels, changes.vectors)

    def reset(self) -> None:
        self.index, self.seq, self.count = None, 0, 0

    def _rankings(self, store: LibraryStore, scores: FloatMatrix, labels: Labels) -> list[Ranking]:
        """The rows of a retriever's answer as rankings of track ids (one read of the ids)."""
        rows = [
            [(label, s) for s, label in zip(row_scores, row_labels, strict=True) if label >= 0]
            for row_scores, row_labels in zip(scores.tolist(), labels.tolist(), strict=True)
        ]
        ids = store.ids_of({label for row in rows for label, _ in row})
        rankings = []
        for row in rows:
            found = [(ids[label], score) for label, score in row if label in ids]
            rankings.append(Ranking(tuple(i for i, _ in found), tuple(s for _, s in found)))
        return rankings

    def _ranking(self, store: LibraryStore, scores: FloatMatrix, labels: Labels) -> Ranking:
        """One row of a retriever's answer as a ranking of track ids."""
        return self._rankings(store, scores[None], labels[None])[0]

    def _search_vectors(
        self, store: LibraryStore, vectors: FloatMatrix, depth: int, among: Labels | None
    ) -> list[Ranking]:
        if self.index is None or not self.count:
            return [Ranking() for _ in range(len(vectors))]
        scores, labels = self.index.search_labelled(vectors, depth, count=self.count, among=among)
        return self._rankings(store, scores, labels)

    def _search_vector(
        self, store: LibraryStore, vector: FloatMatrix, depth: int, among: Labels | None
    ) -> Ranking:
        return self._search_vectors(store, vector, depth, among)[0]

    def similar(
        self, store: LibraryStore, label: int, track_id: str, depth: int, among: Labels | None
    ) -> Ranking | None:
        if not store.hashes(self.name, [label]):
            return None
        own = store.vectors(self.name, [label], self.dim)
        return _without(self._search_vector(store, own, depth + 1, among), track_id, depth)

    def write_index(self, directory: Path) -> None:
        self._index().write_labelled(directory)

    def read_index(self, directory: Path) -> None:
        from newwave.errors import IndexCorruptError

        index, _ = Retriever.read_labelled(directory)
        if index.dim != self.dim:
            raise IndexCorruptError(
                f"{directory} holds {index.dim}-d vectors; channel {self.name!r} has {self.dim}-d"
            )
        self.index = index


class DenseChannel(_VectorChannel):
    """A field embedded by an :class:`~newwave.Encoder` into a vector retriever."""

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
        super().__init__(name, field, source, modality, retriever, dim)
        self.encoder = encoder

    @property
    def component(self) -> Encoder:
        return self.encoder

    def _width(self) -> int:
        return self.encoder.dim

    def embed(self, values: list[str]) -> FloatMatrix:
        if self.modality == "audio":
            return self.encoder.encode_audio(values)
        return self.encoder.encode_text(values, role="document")

    def takes(self, query: Queries) -> bool:
        """As :meth:`Channel.takes`, if the encoder embeds the query's modality (an audio-only
        encoder such as ``musicnn`` takes no text query)."""
        return super().takes(query) and query.modality in self.encoder.modalities

    def search_many(
        self, store: LibraryStore, queries: Queries, depth: int, among: Labels | None
    ) -> list[Ranking]:
        return self._search_vectors(store, queries.vectors(self.encoder), depth, among)


class JointChannel(_VectorChannel):
    """An embedding fuser's joint vectors of the tracks, fused from the channels it combines."""

    def __init__(
        self,
        fuser: EmbeddingFuser,
        inputs: Mapping[str, DenseChannel],
        retriever: ComponentConfig,
    ):
        super().__init__(JOINT, JOINT, None, "text", retriever, fuser.dim)
        self.fuser = fuser
        self.inputs = dict(inputs)

    @property
    def component(self) -> EmbeddingFuser:
        return self.fuser

    def _width(self) -> int:
        return self.fuser.dim

    def embed(self, values: list[str]) -> FloatMatrix:
        raise AssertionError("the joint channel fuses stored vectors: see fuse()")

    def fuse(self, store: LibraryStore, labels: Sequence[int]) -> FloatMatrix:
        """The joint vectors of ``labels`` from their stored per-channel vectors."""
        vectors = {
            name: store.vectors(name, labels, self.fuser.input_dims[name])
            for name in self.fuser.fields
        }
        return self.fuser.embed(vectors, side="track")

    def query_vectors(self, queries: Queries) -> dict[str, FloatMatrix]:
        """The queries embedded by each fused channel's encoder."""
        return {name: queries.vectors(self.inputs[name].encoder) for name in self.fuser.fields}

    def search_many(
        self, store: LibraryStore, queries: Queries, depth: int, among: Labels | None
    ) -> list[Ranking]:
        fused = self.fuser.embed(self.query_vectors(queries), side="query")
        return self._search_vectors(store, fused, depth, among)


class LexicalChannel(Channel):
    """A text field matched by its words in a :class:`~newwave.lexical.LexicalIndex`."""

    def __init__(
        self, name: str, field: str, source: Source | None, modality: Modality, index: LexicalIndex
    ):
        super().__init__(name, field, source, modality)
        self.index = index

    @property
    def component(self) -> LexicalIndex:
        return self.index

    def embed(self, values: list[str]) -> list[str]:
        return values

    def put(
        self, store: LibraryStore, labels: Sequence[int], hashes: Sequence[str], payload: Any
    ) -> None:
        store.put_entries(self.name, labels, hashes, texts=payload)

    def apply(self, changes: Changes, *, replaced: Labels | None = None) -> None:
        if changes.removed_ids:
            self.index.remove(list(dict.fromkeys(changes.removed_ids)), missing_ok=True)
        if changes.texts:
            self.index.add(changes.ids, changes.texts)

    def reset(self) -> None:
        from newwave.plugins import load_lexical

        self.index = load_lexical(self.index.name, **self.index.get_config())
        self.seq, self.count = 0, 0

    def search_many(
        self, store: LibraryStore, queries: Queries, depth: int, among: Labels | None
    ) -> list[Ranking]:
        if not len(self.index):
            return [Ranking() for _ in range(len(queries))]
        return self.index.search(queries.texts, depth, among=_ids(store, among))

    def similar(
        self, store: LibraryStore, label: int, track_id: str, depth: int, among: Labels | None
    ) -> Ranking | None:
        text = store.texts(self.name, [label]).get(label)
        if text is None:
            return None
        found = self.index.search([text], depth + 1, among=_ids(store, among))[0]
        return _without(found, track_id, depth)

    def write_index(self, directory: Path) -> None:
        self.index.write(directory)

    def read_index(self, directory: Path) -> None:
        from newwave.errors import IndexCorruptError

        index = LexicalIndex.load(directory)
        if index.model_id != self.index.model_id:
            raise IndexCorruptError(
                f"{directory} holds a {index.model_id!r} index; channel {self.name!r} is "
                f"{self.index.model_id!r}"
            )
        self.index = index


def _model_id(component: Encoder | LexicalIndex | EmbeddingFuser) -> str:
    return str(getattr(component, "model_id", component.name))


def _ids(store: LibraryStore, among: Labels | None) -> set[str] | None:
    """The track ids of the labels ``among`` (None: no restriction)."""
    return None if among is None else set(store.ids_of(among.tolist()).values())


def _without(found: Ranking, track_id: str, depth: int) -> Ranking:
    """``found`` without ``track_id``, cut to ``depth``."""
    others = [(i, s) for i, s in found if i != track_id][:depth]
    return Ranking(tuple(i for i, _ in others), tuple(s for _, s in others))
