"""Train the ``mlp`` fuser: queries and tracks into one joint space (``newwave train fusion``).

The data are per-field vectors of tracks and of queries, and which track each query is for
(:class:`FusionData`: from a cache file, or built from a Recommender and (query, track id)
pairs). Tracks are split by group (the track, or its artist) into training, validation and
test tracks; a query goes with its track. Training runs the fuser's own
:meth:`~newwave.fusion.mlp.MLPFuser.forward` (the recipe serving runs) under symmetric
InfoNCE with a learned temperature; queries of one track are not each other's negatives. Field
dropout blanks random fields of training tracks (vector and presence flag, as a track without
the field looks when served) but never all of a track's fields. The model with the best
validation metric is saved as an ``mlp`` fuser directory, and on the test tracks it is compared
with each field alone and the score-level fusers ``weighted`` and ``rrf``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from newwave._storage import atomic_file
from newwave._vectors import as_matrix, l2_normalize
from newwave.errors import IndexCorruptError, InvalidInputError, MissingFileError
from newwave.fusion.base import EmbeddingFuser
from newwave.fusion.mlp import MLPFuser, MLPFuserConfig
from newwave.metrics import evaluate, evaluate_embeddings
from newwave.plugins import load_fuser
from newwave.train.base import (
    ContrastiveTask,
    TrainerConfig,
    TrainerResult,
    config_from_file,
    fit,
    given_or_configured,
    shuffled_batches,
    write_comparison,
)
from newwave.train.callbacks import Callback
from newwave.train.config import ConfigPath
from newwave.train.data import read_records
from newwave.train.loop import Progress
from newwave.train.losses import LogitScale, symmetric_infonce
from newwave.types import FloatMatrix, Ranking

if TYPE_CHECKING:
    from newwave.recommender import Recommender

__all__ = [
    "FusionConfig",
    "FusionData",
    "FusionDataConfig",
    "FusionModelConfig",
    "FusionResult",
    "compare_fusers",
    "train_from_file",
    "train_fusion",
]

_DATA_FORMAT = "newwave-fusion-data"
IntArray = npt.NDArray[np.int64]


# -- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FusionData:
    """Per-field vectors of tracks and queries, and the track of each query.

    ``track_vectors[field]`` is (tracks, dim) with a zero row where a track lacks the field;
    ``query_vectors[field]`` is (queries, dim); ``query_tracks[i]`` is the row of query i's
    track. ``track_groups`` (e.g. artists) serve ``split_by="artist"``. Rows are L2-normalised
    here, as encoders return them. ``model_ids`` name each field's encoder model.
    """

    track_ids: tuple[str, ...]
    track_vectors: Mapping[str, FloatMatrix]
    query_vectors: Mapping[str, FloatMatrix]
    query_tracks: IntArray
    track_groups: tuple[str | None, ...] | None = None
    model_ids: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fields = tuple(self.track_vectors)
        if not fields or set(fields) != set(self.query_vectors):
            raise InvalidInputError(
                f"tracks and queries need the same fields, got {sorted(fields)} and "
                f"{sorted(self.query_vectors)}"
            )
        ids = tuple(self.track_ids)
        if not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
            raise InvalidInputError("track_ids must be unique, non-empty strings")
        tracks = {
            f: self._rows(self.track_vectors[f], f"track vectors of {f!r}", len(ids))
            for f in fields
        }
        queries = {
            f: as_matrix(
                self.query_vectors[f], dim=tracks[f].shape[1], what=f"query vectors of {f!r}"
            )
            for f in fields
        }
        n_queries = {m.shape[0] for m in queries.values()}
        rows = np.asarray(self.query_tracks)
        if len(n_queries) != 1 or rows.shape != (n_queries.pop(),) or rows.dtype.kind not in "iu":
            raise InvalidInputError("query_tracks must hold one track row per query row")
        if rows.size == 0:
            raise InvalidInputError("there is no query")
        if rows.min() < 0 or rows.max() >= len(ids):
            raise InvalidInputError(f"query_tracks must be track rows, in [0, {len(ids)})")
        for what, side in (("track", tracks), ("query", queries)):
            empty = np.flatnonzero(~np.any([np.any(m != 0, axis=1) for m in side.values()], 0))
            if empty.size:
                raise InvalidInputError(
                    f"{empty.size} {what}(s) have no field, e.g. row {empty[0]}"
                )
        if self.track_groups is not None and len(self.track_groups) != len(ids):
            raise InvalidInputError("track_groups must give one group per track")
        object.__setattr__(self, "track_ids", ids)
        object.__setattr__(self, "track_vectors", tracks)
        object.__setattr__(self, "query_vectors", {f: l2_normalize(m) for f, m in queries.items()})
        object.__setattr__(self, "query_tracks", rows.astype(np.int64))
        object.__setattr__(self, "model_ids", dict(self.model_ids))

    @staticmethod
    def _rows(matrix: Any, what: str, count: int) -> FloatMatrix:
        checked = as_matrix(matrix, what=what)
        if checked.shape[0] != count:
            raise InvalidInputError(f"{what} have {checked.shape[0]} rows for {count} tracks")
        return l2_normalize(checked)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.track_vectors)

    @property
    def input_dims(self) -> dict[str, int]:
        return {f: m.shape[1] for f, m in self.track_vectors.items()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a ``.safetensors`` cache (vectors as tensors, ids and groups as metadata)."""
        from safetensors.numpy import save_file

        target = Path(path)
        tensors: dict[str, npt.NDArray[Any]] = {
            **{f"tracks.{f}": m for f, m in self.track_vectors.items()},
            **{f"queries.{f}": m for f, m in self.query_vectors.items()},
            "query_tracks": self.query_tracks,
        }
        metadata = {
            "format": _DATA_FORMAT,
            "fields": json.dumps(list(self.fields)),
            "track_ids": json.dumps(list(self.track_ids)),
            "track_groups": json.dumps(self.track_groups),
            "model_ids": json.dumps(dict(self.model_ids)),
        }
        with atomic_file(target) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FusionData:
        """Read a cache written by :meth:`save`."""
        from safetensors import SafetensorError, safe_open

        source = Path(path)
        if not source.is_file():
            raise MissingFileError(f"no fusion data at {source}")
        try:
            with safe_open(str(source), framework="np") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            if meta.get("format") != _DATA_FORMAT:
                raise IndexCorruptError(f"{source} is not a newwave fusion data file")
            fields = json.loads(meta["fields"])
            groups = json.loads(meta["track_groups"])
            return cls(
                track_ids=tuple(json.loads(meta["track_ids"])),
                track_vectors={f: tensors[f"tracks.{f}"] for f in fields},
                query_vectors={f: tensors[f"queries.{f}"] for f in fields},
                query_tracks=tensors["query_tracks"],
                track_groups=None if groups is None else tuple(groups),
                model_ids=json.loads(meta["model_ids"]),
            )
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            if isinstance(exc, (InvalidInputError, IndexCorruptError)):
                raise
            raise IndexCorruptError(f"{source} is not a readable fusion data file: {exc}") from exc

    @classmethod
    def from_recommender(
        cls,
        recommender: Recommender,
        pairs: Iterable[tuple[str, str]],
        *,
        fields: Sequence[str] | None = None,
    ) -> FusionData:
        """The stored vectors of a Recommender's tracks, and its encoders' query vectors.

        ``pairs`` are (query text, track id). ``fields`` picks embedded channels (default:
        all of them). Tracks are every track with one of the fields; groups are artists.
        Queries are embedded as :meth:`Recommender.search` embeds them (``encode_queries``).
        """
        from newwave.encoders.base import Encoder

        encoders = {n: e for n, e in recommender.fields.items() if isinstance(e, Encoder)}
        names = list(fields) if fields is not None else list(encoders)
        unknown = [n for n in names if n not in encoders]
        if unknown or not names:
            raise InvalidInputError(
                f"no embedded field {unknown[0] if unknown else ''!r}; the recommender's "
                f"embedded fields are {', '.join(encoders) or 'none'}"
            )
        pair_list = [(str(q), str(t)) for q, t in pairs]
        if not pair_list:
            raise InvalidInputError("no (query, track id) pair given")
        queries = [q for q, _ in pair_list]
        tracks = [t for _, t in pair_list]
        for track_id in tracks:
            recommender.get(track_id)  # UnknownTrackError for a track not in the catalogue
        ids = recommender.ids()  # every track, in catalogue order
        vectors = {n: recommender.vectors(n, ids) for n in names}
        keep = np.any([np.any(m != 0, axis=1) for m in vectors.values()], axis=0)
        ids = [i for i, k in zip(ids, keep, strict=True) if k]
        row = {track_id: r for r, track_id in enumerate(ids)}
        missing = sorted({t for t in tracks if t not in row})
        if missing:
            raise InvalidInputError(f"tracks {missing[:5]} have none of the fields {names}")
        texts = sorted(set(queries))
        text_row = {text: r for r, text in enumerate(texts)}
        by_encoder: dict[int, FloatMatrix] = {}
        query_vectors = {}
        for n in names:
            encoder = encoders[n]
            if id(encoder) not in by_encoder:
                by_encoder[id(encoder)] = encoder.encode_queries(texts)
            embedded = by_encoder[id(encoder)]
            query_vectors[n] = embedded[[text_row[q] for q in queries]]
        return cls(
            track_ids=tuple(ids),
            track_vectors={n: m[keep] for n, m in vectors.items()},
            query_vectors=query_vectors,
            query_tracks=np.array([row[t] for t in tracks], dtype=np.int64),
            track_groups=tuple(recommender.get(i).artist for i in ids),
            model_ids={n: encoders[n].model_id for n in names},
        )


# -- the config -------------------------------------------------------------------------------


class FusionDataConfig(BaseModel):
    """Where the training data come from: a cache file, or a library and pairs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embeddings: ConfigPath | None = None
    """A ``.safetensors`` file written by :meth:`FusionData.save`."""
    library: ConfigPath | None = None
    """A saved Recommender (``newwave index``), whose stored vectors are the tracks'."""
    pairs: ConfigPath | None = None
    """A CSV, TSV, JSONL or Parquet file of (query, track id) rows, with ``library``."""
    query_column: str = "query"
    track_column: str = "track_id"
    fields: tuple[str, ...] | None = None
    """The library's fields to fuse (default: every embedded one)."""
    cache: ConfigPath | None = None
    """With ``library``: also write the vectors here, for the next run's ``embeddings``."""

    @model_validator(mode="after")
    def _one_source(self) -> FusionDataConfig:
        if (self.embeddings is None) == (self.library is None):
            raise ValueError("give either embeddings, or library and pairs")
        if (self.library is None) != (self.pairs is None):
            raise ValueError("library and pairs go together")
        return self

    def load(self) -> FusionData:
        """The data this section names."""
        if self.embeddings is not None:
            return FusionData.load(self.embeddings)
        from newwave.recommender import Recommender

        assert self.library is not None
        assert self.pairs is not None
        columns = [self.query_column, self.track_column]
        pairs = [
            (str(r[columns[0]]), str(r[columns[1]])) for r in read_records(self.pairs, columns)
        ]
        data = FusionData.from_recommender(
            Recommender.load(self.library), pairs, fields=self.fields
        )
        if self.cache is not None:
            data.save(self.cache)
        return data


class FusionModelConfig(BaseModel):
    """The shape of the ``mlp`` fuser (see :class:`~newwave.fusion.mlp.MLPFuserConfig`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_dims: tuple[int, ...] = (1024,)
    output_dim: int = Field(default=256, ge=1)
    shared: bool = False


class FusionConfig(TrainerConfig):
    """Everything ``newwave train fusion`` needs (load one with ``load_config``); the
    ``metrics`` are each cut at a K <= ``eval_depth``."""

    data: FusionDataConfig | None = None
    """None: the data are given to :func:`train_fusion` directly."""
    model: FusionModelConfig = FusionModelConfig()
    field_dropout: float = Field(default=0.3, ge=0, lt=1)
    """Chance that a training track's field is blanked (one field always stays)."""
    initial_temperature: float = Field(default=0.07, ge=0.01, le=1)
    eval_depth: int = Field(default=100, ge=1)
    """How many tracks each field's ranking holds for the score-level fusers (as served)."""

    def _check_metrics(self, names: tuple[str, ...]) -> None:
        uncut = [n for n in names if "@" not in n or int(n.split("@")[1]) > self.eval_depth]
        if uncut:
            raise ValueError(f"metrics need a cutoff K <= eval_depth ({self.eval_depth}): {uncut}")


# -- the task ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    queries: dict[str, torch.Tensor]
    tracks: dict[str, torch.Tensor]
    groups: torch.Tensor  # the track row: queries of one track are not negatives


@dataclass(frozen=True)
class _Split:
    tracks: IntArray  # track rows
    queries: IntArray  # query rows whose track is among them


class _FusionTask(ContrastiveTask[_Batch]):
    def __init__(
        self, fuser: MLPFuser, data: FusionData, splits: Mapping[str, _Split], config: FusionConfig
    ):
        self.fuser, self.data, self.splits, self.config = fuser, data, splits, config
        self.logit_scale = LogitScale(
            1 / config.initial_temperature, maximum=config.max_logit_scale
        )
        self.module = nn.ModuleDict({"fuser": fuser.network, "logit_scale": self.logit_scale})

    def use_device(self, device: str) -> None:
        super().use_device(device)
        self.fuser.device = device

    def collate(self, indices: IntArray) -> _Batch:
        queries = self.splits["train"].queries[indices]
        tracks = self.data.query_tracks[queries]
        return _Batch(
            queries={f: torch.from_numpy(m[queries]) for f, m in self.data.query_vectors.items()},
            tracks={f: torch.from_numpy(m[tracks]) for f, m in self.data.track_vectors.items()},
            groups=torch.from_numpy(tracks),
        )

    def loss(self, batch: _Batch, progress: Progress) -> torch.Tensor:
        tracks = _field_dropout(batch.tracks, self.config.field_dropout)
        queries = {f: v.to(self.device) for f, v in batch.queries.items()}
        tracks = {f: v.to(self.device) for f, v in tracks.items()}
        return symmetric_infonce(
            self.fuser.forward(queries, "query"),
            self.fuser.forward(tracks, "track"),
            self.logit_scale(),
            groups=batch.groups.to(self.device),
        )

    def evaluate(self) -> dict[str, float]:
        split = self.splits["validation"]
        return _retrieval_metrics(self.fuser, self.data, split, self.config.metrics)

    def save(self, directory: Path) -> None:
        self.fuser.save(directory)


def _field_dropout(tracks: Mapping[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
    """Blank each present field with probability ``rate``, keeping one field of every track."""
    if rate == 0:
        return dict(tracks)
    names = list(tracks)
    present = torch.stack([tracks[f].ne(0).any(dim=1) for f in names], dim=1)
    draws = torch.rand(present.shape)  # the CPU generator: the same on every device
    keep = present & (draws >= rate)
    lost = ~keep.any(dim=1)
    rescue = torch.where(present, draws, torch.full_like(draws, -1.0)).argmax(dim=1)
    keep[lost, rescue[lost]] = True
    return {f: tracks[f] * keep[:, i : i + 1].to(tracks[f].dtype) for i, f in enumerate(names)}


def _retrieval_metrics(
    fuser: EmbeddingFuser, data: FusionData, split: _Split, metrics: Sequence[str]
) -> dict[str, float]:
    """``metrics`` of the fuser's joint vectors: the split's queries over its tracks."""
    pool = {int(t): i for i, t in enumerate(split.tracks)}
    tracks = fuser.embed({f: m[split.tracks] for f, m in data.track_vectors.items()}, side="track")
    queries = fuser.embed(
        {f: m[split.queries] for f, m in data.query_vectors.items()}, side="query"
    )
    relevant = [[pool[int(data.query_tracks[q])]] for q in split.queries]
    ids = [data.track_ids[t] for t in split.tracks]
    return evaluate_embeddings(queries, tracks, relevant, metrics, candidate_ids=ids).as_dict()


def compare_fusers(
    fuser: EmbeddingFuser,
    data: FusionData,
    tracks: Sequence[int] | IntArray,
    *,
    metrics: Sequence[str] = ("mrr@10", "recall@1", "recall@10"),
    depth: int = 100,
    baselines: Sequence[str] = ("weighted", "rrf"),
) -> dict[str, dict[str, float]]:
    """Held-out metrics of ``fuser``, of each field alone and of score-level ``baselines``.

    The pool is the track rows ``tracks``; the queries are those whose track is in it. As a
    Recommender serves them, each field ranks its ``depth`` best tracks among those that have
    the field, and a score-level fuser fuses those rankings, told which tracks have each field.
    Keys: the fuser's name, ``field:<name>``, and the baselines' names.
    """
    rows = np.array(sorted(set(map(int, tracks))), dtype=np.int64)
    queries = np.flatnonzero(np.isin(data.query_tracks, rows))
    split = _Split(rows, queries)
    ids = [data.track_ids[t] for t in rows]
    qids = [str(q) for q in queries]
    qrels = {
        qid: {data.track_ids[data.query_tracks[q]]: 1} for qid, q in zip(qids, queries, strict=True)
    }
    results = {fuser.name: _retrieval_metrics(fuser, data, split, metrics)}
    per_field: dict[str, list[Ranking]] = {}
    coverage: dict[str, set[str]] = {}
    for name, vectors in data.track_vectors.items():
        pool = vectors[rows]
        has = np.flatnonzero(np.any(pool != 0, axis=1))
        coverage[name] = {ids[i] for i in has}
        scores = data.query_vectors[name][queries] @ pool[has].T
        per_field[name] = [_top(ids, has, row, depth) for row in scores]
        run = {qid: r.as_dict() for qid, r in zip(qids, per_field[name], strict=True)}
        results[f"field:{name}"] = evaluate(run, qrels, metrics).as_dict()
    for baseline in baselines:
        score_fuser = load_fuser(baseline)
        run = {}
        for i, qid in enumerate(qids):
            rankings = {name: found[i] for name, found in per_field.items()}
            run[qid] = score_fuser.fuse(rankings, k=depth, coverage=coverage).as_dict()
        results[baseline] = evaluate(run, qrels, metrics).as_dict()
    return results


def _top(
    ids: Sequence[str], rows: IntArray, scores: npt.NDArray[np.float32], depth: int
) -> Ranking:
    best = np.argsort(-scores, kind="stable")[:depth]
    return Ranking(tuple(ids[rows[i]] for i in best), tuple(float(scores[i]) for i in best))


# -- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusionResult(TrainerResult):
    """What :func:`train_fusion` produced; ``comparison`` has the methods ``mlp``,
    ``field:<name>``, ``weighted`` and ``rrf``."""

    fuser: MLPFuser
    """The trained fuser (best validation weights), as saved in ``training.model_dir``."""

    def serving_hint(self) -> str:
        return f"load_fuser('mlp', '{self.model_dir}')"


def train_fusion(
    config: FusionConfig,
    *,
    data: FusionData | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> FusionResult:
    """Train an ``mlp`` fuser as ``config`` says, on ``data`` (default: ``config.data``).

    Writes ``config.output_dir`` (see :mod:`newwave.train.loop`; the fuser is in ``model/``,
    the comparison in ``comparison.json``) and returns the result.
    """
    data = given_or_configured(data, config.data, "FusionData")
    splits = _split(data, config)
    fuser = MLPFuser.initialised(
        MLPFuserConfig(
            fields=data.fields,
            input_dims=data.input_dims,
            hidden_dims=config.model.hidden_dims,
            output_dim=config.model.output_dim,
            shared=config.model.shared,
            model_ids=dict(data.model_ids),
        ),
        seed=config.loop.seed,
        device="cpu",
    )
    task = _FusionTask(fuser, data, splits, config)
    batches = shuffled_batches(len(splits["train"].queries), task.collate, config.loop)
    training = fit(task, batches, config, resume=resume, callbacks=callbacks)
    comparison = compare_fusers(
        fuser,
        data,
        splits[config.held_out].tracks,
        metrics=config.metrics,
        depth=config.eval_depth,
    )
    write_comparison(config, comparison)
    return FusionResult(training, comparison, config.held_out, fuser=fuser)


def _split(data: FusionData, config: FusionConfig) -> dict[str, _Split]:
    """Track rows by group into train / validation (/ test), with the queries of each."""
    groups = data.track_groups
    parts = config.split(
        range(len(data.track_ids)),
        track=lambda row: data.track_ids[row],
        artist=None if groups is None else lambda row: groups[row],
    )
    splits = {}
    for name, part in parts.items():
        tracks = np.array(part, dtype=np.int64)
        queries = np.flatnonzero(np.isin(data.query_tracks, tracks))
        if queries.size == 0:
            raise InvalidInputError(f"the {name} tracks have no query; add pairs or tracks")
        splits[name] = _Split(tracks, queries)
    return splits


def train_from_file(
    path: str | os.PathLike[str], *, resume: bool = False, device: str | None = None
) -> FusionResult:
    """:func:`train_fusion` with a JSON or TOML config file; ``device`` overrides its own."""
    return train_fusion(config_from_file(path, FusionConfig, device=device), resume=resume)
