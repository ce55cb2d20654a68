"""The Recommender: a catalogue of tracks, one index per field, and natural-language search."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from newwave._storage import atomic_directory, resolve_directory
from newwave.config import ComponentConfig, FieldConfig, RecommenderConfig
from newwave.encoders.base import Encoder
from newwave.errors import (
    ComponentUnavailableError,
    EmptyQueryError,
    IndexCorruptError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    UnknownTrackError,
)
from newwave.filters import compile_filter
from newwave.fusion.base import EmbeddingFuser, Fuser
from newwave.index.base import Retriever
from newwave.index.catalog import FieldEntries, read_catalog, write_catalog
from newwave.plugins import load_encoder, load_fuser, load_retriever
from newwave.types import FloatMatrix, Hit, Ranking, Track

__all__ = ["FIELD_SOURCES", "Recommender"]

_CATALOG = "catalog.sqlite"
_FUSER = "fuser"  # an EmbeddingFuser's files
_JOINT = "joint"  # the index of fused vectors

logger = logging.getLogger(__name__)

#: The Track attributes a field can embed, and the modality of each.
FIELD_SOURCES: dict[str, str] = {
    "title": "text",
    "artist": "text",
    "album": "text",
    "description": "text",
    "tags": "text",
    "lyrics": "text",
    "audio": "audio",
}
#: Text fields embedded by default, when the tracks carry them.
_DEFAULT_TEXT_FIELDS = ("description", "tags", "lyrics")
_DEFAULT_TEXT_ENCODER = "minilm"
_DEFAULT_AUDIO_ENCODER = "clap"


class Recommender:
    """Search a music catalogue with natural language, across text and audio fields.

    ``fields`` maps a field (a :class:`Track` attribute: ``description``, ``tags``, ``lyrics``,
    ``title``, ``artist``, ``album``, ``audio``) to the encoder that embeds it, by registered name
    or as an :class:`Encoder`. Left out, the fields are chosen at the first :meth:`add` from the
    text the tracks carry (``description``, ``tags`` and ``lyrics``, with ``minilm``) and their
    ``audio`` (with ``clap`` when its weights load; otherwise a warning says why audio is left
    out); see :attr:`config` for what was chosen. Each field gets its own retriever; a query is
    embedded by each field's encoder and the per-field rankings are combined by ``fuser``.
    """

    def __init__(
        self,
        fields: Mapping[str, str | Encoder] | None = None,
        *,
        fuser: str | Fuser = "rrf",
        retriever: str = "faiss",
        retriever_options: Mapping[str, Any] | None = None,
    ):
        self._fuser = fuser if isinstance(fuser, Fuser) else load_fuser(fuser)
        self._retriever = ComponentConfig(name=retriever, options=dict(retriever_options or {}))
        self._encoders: dict[str, Encoder] = {}
        self._retrievers: dict[str, Retriever] = {}
        self._tracks: dict[str, Track] = {}
        self._hashes: dict[str, dict[str, str]] = {}  # field -> track id -> content hash
        self._joint: Retriever | None = None  # the fused vectors, with an EmbeddingFuser
        if fields is not None:
            self._set_fields(fields)

    # -- configuration ------------------------------------------------------------------------

    def _set_fields(self, fields: Mapping[str, str | Encoder]) -> None:
        if not fields:
            raise InvalidInputError(f"fields is empty; choose from {', '.join(FIELD_SOURCES)}")
        by_name: dict[str, Encoder] = {}
        for field_name, encoder in fields.items():
            if field_name not in FIELD_SOURCES:
                raise InvalidInputError(
                    f"unknown field {field_name!r}; fields are {', '.join(FIELD_SOURCES)}"
                )
            if isinstance(encoder, str):  # one instance per encoder name, shared by its fields
                if encoder not in by_name:
                    by_name[encoder] = load_encoder(encoder)
                encoder = by_name[encoder]
            if not isinstance(encoder, Encoder):
                raise InvalidInputError(
                    f"field {field_name!r}: expected an encoder name or an Encoder, "
                    f"got {type(encoder).__name__}"
                )
            modality = FIELD_SOURCES[field_name]
            if modality not in encoder.modalities:
                raise InvalidInputError(
                    f"field {field_name!r} holds {modality}, which encoder {encoder.name!r} "
                    f"does not embed (it embeds {', '.join(sorted(encoder.modalities))})"
                )
            self._encoders[field_name] = encoder
        if isinstance(self._fuser, EmbeddingFuser):
            for field_name in self._fuser.fields:
                found = self._encoders.get(field_name)
                if found is None or found.dim != self._fuser.input_dims[field_name]:
                    raise InvalidInputError(
                        f"the {self._fuser.name!r} fuser combines the fields "
                        f"{self._fuser.input_dims}, which this recommender's fields "
                        f"{ {f: e.dim for f, e in self._encoders.items()} } do not provide"
                    )

    @property
    def fields(self) -> dict[str, Encoder]:
        """The encoder of each field (empty until fields are given or chosen)."""
        return dict(self._encoders)

    @property
    def field_counts(self) -> dict[str, int]:
        """How many tracks each field indexes (tracks without a value are not in a field)."""
        return {field_name: len(self._hashes.get(field_name, {})) for field_name in self._encoders}

    @property
    def fuser(self) -> Fuser:
        """The fuser that combines the per-field rankings."""
        return self._fuser

    @property
    def config(self) -> RecommenderConfig:
        """What this recommender is made of, as saved with it."""
        fields = {}
        for field_name, encoder in self._encoders.items():
            retriever = self._retrievers.get(field_name)
            fields[field_name] = FieldConfig(
                encoder=ComponentConfig(name=encoder.name, options=encoder.get_config()),
                model_id=encoder.model_id,
                dim=retriever.dim if retriever is not None else None,
            )
        # An embedding fuser's weights are saved with the recommender, not referred to by path.
        fuser_options = {} if isinstance(self._fuser, EmbeddingFuser) else self._fuser.get_config()
        return RecommenderConfig(
            fields=fields,
            fuser=ComponentConfig(name=self._fuser.name, options=fuser_options),
            retriever=self._retriever,
        )

    # -- the catalogue ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._tracks

    def get(self, track_id: str) -> Track:
        """The track with id ``track_id``."""
        try:
            return self._tracks[track_id]
        except KeyError:
            raise UnknownTrackError(f"no track with id {track_id!r}") from None

    def add(self, tracks: Iterable[Track]) -> dict[str, int]:
        """Embed and index ``tracks``; a track whose id is already present is replaced.

        Returns how many values were embedded in each field (0 for unchanged content).

        Every field is embedded before any index changes, so an error (a missing audio file, an
        unreachable model) leaves the recommender as it was. A field whose content is unchanged
        (same text, or the same audio file path, size and modification time, with the same
        model) is not embedded again.
        """
        batch = _check_tracks(tracks)
        if not batch:
            return dict.fromkeys(self._encoders, 0)
        if not self._encoders:
            self._set_fields(_default_fields(batch))
            logger.info("newwave: indexing fields %s", self.config.fields)
        empty = [t.id for t in batch if not any(_field_value(t, f) for f in self._encoders)]
        if empty:
            raise InvalidInputError(
                f"{len(empty)} track(s) have none of the fields {', '.join(self._encoders)} and "
                f"could never be found: {', '.join(map(repr, empty[:5]))}"
            )
        # Embed what changed (by content hash) in every field before changing any index.
        changes: dict[str, tuple[list[str], list[str], FloatMatrix | None]] = {}
        for field_name, encoder in self._encoders.items():
            known = self._hashes.get(field_name, {})
            # What shapes a vector: the model and its options (the batch size never does).
            options = {k: v for k, v in encoder.get_config().items() if k != "batch_size"}
            model = f"{encoder.model_id}\0{options}\0"
            ids: list[str] = []
            values: list[str] = []
            digests: list[str] = []
            for track in batch:
                value = _field_value(track, field_name)
                if value is None:
                    continue
                digest = _content_hash(model, field_name, value)
                if known.get(track.id) != digest:
                    ids.append(track.id)
                    values.append(value)
                    digests.append(digest)
            vectors = _embed(encoder, field_name, values) if values else None
            changes[field_name] = (ids, digests, vectors)
        touched: set[str] = set()
        for field_name, (ids, digests, vectors) in changes.items():
            hashes = self._hashes.setdefault(field_name, {})
            emptied = [t.id for t in batch if t.id in hashes and not _field_value(t, field_name)]
            if emptied:  # a replaced track lost this field
                self._retrievers[field_name].remove(emptied, missing_ok=True)
                for track_id in emptied:
                    del hashes[track_id]
            if vectors is not None:
                self._retriever_for(field_name, vectors.shape[1]).add(ids, vectors)
                hashes.update(zip(ids, digests, strict=True))
            touched.update(ids, emptied)
        if isinstance(self._fuser, EmbeddingFuser):
            self._update_joint(self._fuser, [t.id for t in batch if t.id in touched])
        self._tracks.update((t.id, t) for t in batch)
        return {field_name: len(ids) for field_name, (ids, _, _) in changes.items()}

    def _update_joint(self, fuser: EmbeddingFuser, ids: list[str]) -> None:
        """Fuse the current field vectors of ``ids`` into the joint index."""
        if not ids:
            return
        joint = fuser.embed({f: self._field_vectors(f, ids) for f in fuser.fields}, side="track")
        if self._joint is None:
            options = self._retriever.options
            self._joint = load_retriever(self._retriever.name, dim=fuser.dim, **options)
        self._joint.add(ids, joint)

    def _field_vectors(self, field_name: str, ids: list[str]) -> FloatMatrix:
        """The stored vectors of ``ids`` in the field, zero rows for tracks without it."""
        retriever = self._retrievers.get(field_name)
        out = np.zeros((len(ids), self._encoders[field_name].dim), dtype=np.float32)
        rows = [row for row, i in enumerate(ids) if retriever is not None and i in retriever]
        if retriever is not None and rows:
            out[rows] = retriever.vectors([ids[row] for row in rows])
        return out

    def remove(self, ids: Iterable[str]) -> None:
        """Remove tracks by id; an unknown id raises :class:`UnknownTrackError`."""
        id_list = [ids] if isinstance(ids, str) else list(ids)
        missing = [i for i in id_list if i not in self._tracks]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UnknownTrackError(f"no track with id {missing[0]!r}{more}")
        for field_name, retriever in self._retrievers.items():
            retriever.remove(id_list, missing_ok=True)
            for track_id in id_list:
                self._hashes[field_name].pop(track_id, None)
        if self._joint is not None:
            self._joint.remove(id_list, missing_ok=True)
        for track_id in id_list:
            del self._tracks[track_id]

    def _retriever_for(self, field_name: str, dim: int) -> Retriever:
        retriever = self._retrievers.get(field_name)
        if retriever is None:
            retriever = load_retriever(self._retriever.name, dim=dim, **self._retriever.options)
            self._retrievers[field_name] = retriever
        return retriever

    # -- search -------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        depth: int | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The ``k`` tracks that best match ``query``, best first.

        Each field's retriever returns its ``depth`` best tracks (default ``max(4 * k, 50)``)
        and the fuser combines them; ``Hit.scores`` has each field's cosine similarity for the
        fields whose candidates included the track. ``where`` keeps only the tracks whose
        metadata match (see :mod:`newwave.filters`); the search is then exact among them.
        """
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if not query.strip():
            raise EmptyQueryError("query is empty")
        depth = _check_k_and_depth(k, depth)
        among = self._matching(where)
        by_encoder: dict[int, FloatMatrix] = {}
        queries: dict[str, FloatMatrix] = {}
        for field_name, encoder in self._encoders.items():
            if id(encoder) not in by_encoder:
                by_encoder[id(encoder)] = encoder.encode_queries([query])
            queries[field_name] = by_encoder[id(encoder)]
        if isinstance(self._fuser, EmbeddingFuser):
            fused = self._fuser.embed({f: queries[f] for f in self._fuser.fields}, side="query")
            return self._joint_hits(fused, queries, k, among)
        rankings = {
            field_name: retriever.search(queries[field_name], depth, among=among)[0]
            for field_name, retriever in self._retrievers.items()
            if len(retriever)
        }
        return self._hits(rankings, k)

    def similar(
        self,
        track_id: str,
        *,
        k: int = 10,
        depth: int | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The ``k`` tracks most like the track ``track_id`` ("more like this"), best first.

        Each field the track has is searched with the track's own vector in that field, and the
        per-field rankings are fused as in :meth:`search`; the track itself is left out.
        """
        self.get(track_id)
        depth = _check_k_and_depth(k, depth)
        among = self._matching(where)
        if isinstance(self._fuser, EmbeddingFuser) and self._joint is not None:
            own = {f: r.vectors([track_id]) for f, r in self._retrievers.items() if track_id in r}
            fused = self._joint.vectors([track_id])
            return self._joint_hits(fused, own, k, among, exclude=track_id)
        rankings = {}
        for field_name, retriever in self._retrievers.items():
            if track_id not in retriever:
                continue
            found = retriever.search(retriever.vectors([track_id]), depth + 1, among=among)[0]
            others = [(i, s) for i, s in found if i != track_id][:depth]
            rankings[field_name] = Ranking(tuple(i for i, _ in others), tuple(s for _, s in others))
        return self._hits(rankings, k)

    def _matching(self, where: Mapping[str, Any] | None) -> set[str] | None:
        """The ids of the tracks ``where`` keeps, or None without a filter."""
        if where is None:
            return None
        keys = {key for track in self._tracks.values() for key in track.metadata}
        keep = compile_filter(where, known_keys=keys)
        return {track_id for track_id, track in self._tracks.items() if keep(track)}

    def _joint_hits(
        self,
        fused: FloatMatrix,
        queries: dict[str, FloatMatrix],
        k: int,
        among: set[str] | None,
        *,
        exclude: str | None = None,
    ) -> list[Hit]:
        """Hits from the joint index; ``scores`` has "joint" and each field's cosine."""
        if self._joint is None:
            return []
        found = self._joint.search(fused, k + (exclude is not None), among=among)[0]
        ranking = [(i, s) for i, s in found if i != exclude][:k]
        hits = []
        for rank, (track_id, score) in enumerate(ranking, start=1):
            scores = {"joint": score}
            for field_name, query in queries.items():
                retriever = self._retrievers.get(field_name)
                if retriever is not None and track_id in retriever:
                    scores[field_name] = float(retriever.vectors([track_id])[0] @ query[0])
            hits.append(Hit(track=self._tracks[track_id], score=score, rank=rank, scores=scores))
        return hits

    def _hits(self, rankings: dict[str, Ranking], k: int) -> list[Hit]:
        fused = self._fuser.fuse(rankings, k=k, coverage=self._retrievers)
        per_field = {f: r.as_dict() for f, r in rankings.items()}
        return [
            Hit(
                track=self._tracks[track_id],
                score=score,
                rank=rank,
                scores={f: s[track_id] for f, s in per_field.items() if track_id in s},
            )
            for rank, (track_id, score) in enumerate(fused, start=1)
        ]

    # -- persistence --------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Save to ``directory`` atomically: config.json, catalog.sqlite and one index per field."""
        fields = {}
        for field_name, retriever in self._retrievers.items():
            hashes = self._hashes[field_name]
            try:
                ids = list(hashes)
                vectors = dict(zip(ids, retriever.vectors(ids), strict=True))
            except ComponentUnavailableError:
                vectors = {}
            model_id = self._encoders[field_name].model_id
            fields[field_name] = FieldEntries(model_id, dict(hashes), vectors)
        with atomic_directory(directory) as staging:
            self.config.save(staging / "config.json")
            write_catalog(staging / _CATALOG, self._tracks.values(), fields)
            for field_name, retriever in self._retrievers.items():
                (staging / "fields" / field_name).mkdir(parents=True)
                retriever.write(staging / "fields" / field_name)
            if isinstance(self._fuser, EmbeddingFuser):
                (staging / _FUSER).mkdir()
                self._fuser.save(staging / _FUSER)
            if self._joint is not None:
                (staging / _JOINT).mkdir()
                self._joint.write(staging / _JOINT)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Recommender:
        """Load a recommender saved with :meth:`save`; its encoders load their models lazily."""
        root = resolve_directory(directory)
        try:
            config = RecommenderConfig.from_json((root / "config.json").read_bytes())
        except (FileNotFoundError, InvalidInputError) as exc:
            raise IndexCorruptError(f"{root} has no valid config.json: {exc}") from exc
        fields: dict[str, str | Encoder] = {}
        for field_name, field in config.fields.items():
            encoder = load_encoder(field.encoder.name, **field.encoder.options)
            if field.model_id is not None and encoder.model_id != field.model_id:
                raise IndexCorruptError(
                    f"field {field_name!r} was indexed with model {field.model_id!r}, but its "
                    f"encoder now loads {encoder.model_id!r}"
                )
            fields[field_name] = encoder
        if (root / _FUSER).is_dir():  # a fuser with weights, saved with the recommender
            fuser = load_fuser(config.fuser.name, root / _FUSER)
        else:
            fuser = load_fuser(config.fuser.name, **config.fuser.options)
        rec = cls(
            fields or None,
            fuser=fuser,
            retriever=config.retriever.name,
            retriever_options=config.retriever.options,
        )
        catalog = read_catalog(root / _CATALOG)
        rec._tracks = catalog.tracks
        for field_name, field in config.fields.items():
            if not (root / "fields" / field_name).is_dir():
                continue
            retriever = Retriever.load(root / "fields" / field_name)
            if field.dim is not None and retriever.dim != field.dim:
                raise IndexCorruptError(
                    f"field {field_name!r}: index holds {retriever.dim}-d vectors, "
                    f"config says {field.dim}"
                )
            entries = catalog.fields.get(field_name)
            if entries is None or set(retriever.ids()) != set(entries.hashes):
                raise IndexCorruptError(
                    f"field {field_name!r}: its index and {_CATALOG} list different tracks"
                )
            if entries.model_id != field.model_id:
                raise IndexCorruptError(
                    f"field {field_name!r}: {_CATALOG} has vectors of model {entries.model_id!r}, "
                    f"config.json says {field.model_id!r}"
                )
            rec._retrievers[field_name] = retriever
            rec._hashes[field_name] = entries.hashes
        if (root / _JOINT).is_dir():
            rec._joint = Retriever.load(root / _JOINT)
            if set(rec._joint.ids()) != set(rec._tracks):
                raise IndexCorruptError(f"{root / _JOINT} and {_CATALOG} list different tracks")
        return rec

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={e.name}" for f, e in self._encoders.items())
        fields = fields or "no fields yet"
        return f"Recommender({len(self)} tracks; {fields}; fuser={self._fuser.name})"


def _check_k_and_depth(k: int, depth: int | None) -> int:
    """``depth``, defaulting to ``max(4 * k, 50)``, after checking both."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    depth = max(4 * k, 50) if depth is None else depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < k:
        raise InvalidInputError(f"depth must be an integer >= k ({k}), got {depth!r}")
    return depth


def _check_tracks(tracks: Iterable[Track]) -> list[Track]:
    single: object = tracks
    if isinstance(single, Track):
        raise InvalidInputError("add() takes a list of tracks; wrap one track: [track]")
    batch = list(tracks)
    seen: set[str] = set()
    for i, track in enumerate(batch):
        if not isinstance(track, Track):
            raise InvalidInputError(f"item {i} is a {type(track).__name__}, not a Track")
        if track.id in seen:
            raise InvalidInputError(f"track id {track.id!r} appears twice in one add()")
        seen.add(track.id)
    return batch


def _default_fields(tracks: list[Track]) -> dict[str, str | Encoder]:
    present = [f for f in _DEFAULT_TEXT_FIELDS if any(_field_value(t, f) for t in tracks)]
    fields: dict[str, str | Encoder] = dict.fromkeys(present, _DEFAULT_TEXT_ENCODER)
    if any(t.audio for t in tracks):
        audio = _loaded_or_none(_DEFAULT_AUDIO_ENCODER)
        if audio is not None:
            fields["audio"] = audio
    if not fields:
        raise InvalidInputError(
            "the tracks carry no description, tags, lyrics or audio to embed by default; "
            "pass fields=, e.g. Recommender(fields={'title': 'minilm'})"
        )
    return fields


def _loaded_or_none(name: str) -> Encoder | None:
    """The encoder ``name`` with its model loaded, or None (with a warning) if it cannot load."""
    try:
        encoder = load_encoder(name)
        encoder.dim  # noqa: B018 (loads the model unless its width is known)
        if hasattr(encoder, "weights_source"):
            encoder.weights_source  # noqa: B018 (loads the model)
    except (ModelNotFoundError, MissingDependencyError, ComponentUnavailableError) as exc:
        warnings.warn(
            f"the tracks' audio is not indexed: the {name!r} encoder cannot load ({exc}). "
            f"Provide its weights, or choose fields= explicitly.",
            stacklevel=4,
        )
        return None
    return encoder


def _field_value(track: Track, field_name: str) -> str | None:
    value = getattr(track, field_name)
    if field_name == "tags":
        value = ", ".join(tag.strip() for tag in value if tag.strip())
    return value if isinstance(value, str) and value.strip() else None


def _content_hash(model: str, field_name: str, value: str) -> str:
    """What identifies an embedding: the model, and the text or the audio file's path and stat."""
    digest = hashlib.sha256(model.encode())
    if FIELD_SOURCES[field_name] == "audio":
        try:
            stat = Path(value).stat()
            value = f"{Path(value).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        except OSError:
            pass  # missing: the encoder reports it
    digest.update(value.encode())
    return digest.hexdigest()


def _embed(encoder: Encoder, field_name: str, values: list[str]) -> FloatMatrix:
    if FIELD_SOURCES[field_name] == "audio":
        return encoder.encode_audio(values)
    return encoder.encode_text(values, role="document")
