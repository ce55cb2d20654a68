"""Train a two-tower text bi-encoder, e.g. descriptions against lyrics (``newwave train
biencoder``).

The data are (query, document) pairs with the track of each, and optionally its artist and
tags (:class:`BiEncoderData`: from a catalogue, one pair per track, or with a file of extra
queries). The query tower embeds queries (descriptions), the document tower documents (lyrics);
each is a backbone run by a transformer text encoder plugin (``minilm``, ``bge-m3``), shared or
one per tower, and an optional projection head. With ``freeze_backbone`` the backbone's
vectors are computed once and only the heads train, so batches can be large.

Pairs are split by group (the track, or its artist) into training, validation and test pairs.
The loss is symmetric InfoNCE with a learned, bounded temperature; two entries of a batch that
share a track (or a query or document text) are not each other's negatives. Hard negatives: a
share of the batch's pairs each bring along a pair of another track that shares their artist or
one of their tags (never their track). The model with the best validation metric is saved as a
``biencoder`` encoder directory (:mod:`newwave.encoders.biencoder`), and on the held-out pairs
it is compared with its untrained backbone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)
from torch import nn

from newwave._vectors import l2_normalize
from newwave.device import resolve_device
from newwave.encoders._hf import TransformerTextEncoder
from newwave.encoders.adapters import (
    AdapterConfig,
    adapter_tensors,
    attach_adapters,
    merged_adapters,
    new_adapters,
)
from newwave.encoders.biencoder import ROLES, BiEncoder, BiEncoderConfig, load_backbone, new_heads
from newwave.errors import InvalidInputError
from newwave.metrics import evaluate_embeddings
from newwave.readers import read_tracks
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
from newwave.train.config import ConfigPath, LoopConfig
from newwave.train.data import BatchSource, Position, read_records
from newwave.train.loop import Progress
from newwave.train.losses import LogitScale, symmetric_infonce
from newwave.train.top_layers import TopLayerInputs
from newwave.types import FloatMatrix, Role, Track

__all__ = [
    "BiEncoderData",
    "BiEncoderDataConfig",
    "BiEncoderModelConfig",
    "BiEncoderResult",
    "BiEncoderTrainingConfig",
    "HardNegativeMiner",
    "backbone_embeddings",
    "train_biencoder",
    "train_from_file",
    "tower_embeddings",
]

IntArray: TypeAlias = npt.NDArray[np.int64]
TextField: TypeAlias = Literal["description", "lyrics", "title", "tags"]
HardNegativeKind: TypeAlias = Literal["artist", "tags"]
_RESERVED_OPTIONS = frozenset({"model", "device", "batch_size", "show_progress_bar", "dtype"})


# -- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BiEncoderData:
    """Aligned (query, document) pairs: pair i is ``queries[i]``, ``documents[i]``, of track
    ``track_ids[i]``, by ``artists[i]`` (None: unknown), tagged ``tags[i]``.

    A track may have several pairs (several queries of one document). Texts must be non-empty.
    """

    queries: tuple[str, ...]
    documents: tuple[str, ...]
    track_ids: tuple[str, ...]
    artists: tuple[str | None, ...] | None = None
    tags: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.queries)
        if n == 0:
            raise InvalidInputError("there is no (query, document) pair")
        columns: dict[str, Sequence[Any]] = {
            "documents": self.documents,
            "track_ids": self.track_ids,
        }
        if self.artists is not None:
            columns["artists"] = self.artists
        if self.tags is not None:
            columns["tags"] = self.tags
        uneven = [name for name, values in columns.items() if len(values) != n]
        if uneven:
            raise InvalidInputError(f"{', '.join(uneven)} must have one entry per query ({n})")
        for name, texts in (("queries", self.queries), ("documents", self.documents)):
            for i, text in enumerate(texts):
                if not isinstance(text, str) or not text.strip():
                    raise InvalidInputError(f"{name}[{i}] is not a non-empty string: {text!r:.60}")
        if not all(isinstance(t, str) and t for t in self.track_ids):
            raise InvalidInputError("track_ids must be non-empty strings")
        object.__setattr__(self, "queries", tuple(self.queries))
        object.__setattr__(self, "documents", tuple(self.documents))
        object.__setattr__(self, "track_ids", tuple(self.track_ids))
        if self.artists is not None:
            object.__setattr__(self, "artists", tuple(a or None for a in self.artists))
        if self.tags is not None:
            object.__setattr__(self, "tags", tuple(tuple(t) for t in self.tags))

    def __len__(self) -> int:
        return len(self.queries)

    @classmethod
    def from_tracks(
        cls,
        tracks: Iterable[Track],
        *,
        query_field: TextField = "description",
        document_field: TextField = "lyrics",
        queries: Iterable[tuple[str, str]] | None = None,
    ) -> BiEncoderData:
        """Pairs of each track's ``query_field`` and ``document_field`` (tags are joined with
        ``", "``, as a Recommender joins them); tracks lacking either are left out.

        ``queries``, (query text, track id) pairs, replace the tracks' ``query_field``: each is
        paired with its track's document (an unknown track, or one without the document field,
        raises :class:`InvalidInputError`).
        """
        by_id: dict[str, Track] = {}
        for track in tracks:
            if _text_of(track, document_field) is not None:
                by_id[track.id] = track
        if queries is None:
            pairs = [
                (text, t.id)
                for t in by_id.values()
                if (text := _text_of(t, query_field)) is not None
            ]
        else:
            pairs = [(str(q), str(t)) for q, t in queries]
            unknown = sorted({t for _, t in pairs if t not in by_id})
            if unknown:
                raise InvalidInputError(
                    f"queries name tracks that are not in the catalogue or have no "
                    f"{document_field}: {', '.join(unknown[:5])}"
                )
        if not pairs:
            raise InvalidInputError(f"no track has both a {query_field} and a {document_field}")
        chosen = [by_id[t] for _, t in pairs]
        return cls(
            queries=tuple(q for q, _ in pairs),
            documents=tuple(str(_text_of(t, document_field)) for t in chosen),
            track_ids=tuple(t.id for t in chosen),
            artists=tuple(t.artist for t in chosen),
            tags=tuple(t.tags for t in chosen),
        )


def _text_of(track: Track, name: TextField) -> str | None:
    if name == "tags":
        return ", ".join(track.tags) or None
    value: str | None = getattr(track, name)
    return value if value and value.strip() else None


def _codes(values: Sequence[Any]) -> tuple[IntArray, list[Any]]:
    """An int code per value (equal values, equal codes) and the distinct values in order."""
    index: dict[Any, int] = {}
    codes = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
    return codes, list(index)


def _linked_groups(*keys: Sequence[Any]) -> IntArray:
    """Per pair, its group: pairs sharing any key (track, query text, document text) are
    linked, transitively (union-find)."""
    n = len(keys[0])
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for values in keys:
        first: dict[Any, int] = {}
        for i, value in enumerate(values):
            j = first.setdefault(value, i)
            if j != i:
                parent[root(i)] = root(j)
    groups, _ = _codes([root(i) for i in range(n)])
    return groups


# -- hard negatives -----------------------------------------------------------------------------


class HardNegativeMiner:
    """For a training pair, another training pair that shares its artist or one of its tags but
    not its group (its track, or a query or document text of it).

    ``groups[i]`` is pair i's group; ``rows`` the pairs to draw from (the training pairs).
    ``kinds``: ``"artist"``, ``"tags"`` or both.
    """

    def __init__(
        self,
        groups: IntArray,
        rows: IntArray,
        *,
        artists: Sequence[str | None] | None,
        tags: Sequence[Sequence[str]] | None,
        kinds: Sequence[HardNegativeKind],
    ):
        self.groups = groups
        self._keys: dict[int, list[tuple[str, str]]] = {}
        members: dict[tuple[str, str], list[int]] = {}
        for row in map(int, rows):
            keys: list[tuple[str, str]] = []
            if "artist" in kinds and artists is not None and artists[row]:
                keys.append(("artist", str(artists[row])))
            if "tags" in kinds and tags is not None:
                keys += [("tag", t) for t in dict.fromkeys(tags[row])]
            self._keys[row] = keys
            for key in keys:
                members.setdefault(key, []).append(row)
        self._members = {k: np.array(v, dtype=np.int64) for k, v in members.items()}

    def partner(self, row: int, rng: np.random.Generator) -> int | None:
        """A random hard negative pair of ``row`` (a kind, then one of its values, at random),
        or None when there is none."""
        keys = self._keys.get(int(row), [])
        kinds = sorted({kind for kind, _ in keys})
        for kind in rng.permutation(kinds) if kinds else ():
            values = [key for key in keys if key[0] == kind]
            for k in rng.permutation(len(values)):
                pool = self._members[values[int(k)]]
                pool = pool[self.groups[pool] != self.groups[row]]
                if pool.size:
                    return int(pool[rng.integers(pool.size)])
        return None


class _PairBatches(BatchSource[IntArray]):
    """Batches of pair rows: ``batch_size`` shuffled training pairs, then the hard negative
    pairs some of them bring (a share ``fraction`` of them, drawn from ``(seed, epoch, batch)``,
    so a resumed run draws the same)."""

    def __init__(
        self, rows: IntArray, loop: LoopConfig, *, miner: HardNegativeMiner | None, fraction: float
    ):
        self.rows, self.miner, self.fraction, self.seed = rows, miner, fraction, loop.seed
        self._order = shuffled_batches(len(rows), _identity, loop)

    def num_batches(self) -> int:
        return self._order.num_batches()

    def batches(self, epoch: int, position: Position = None) -> Iterator[tuple[IntArray, Position]]:
        for picked, after in self._order.batches(epoch, position):
            anchors = self.rows[picked]
            if self.miner is None or self.fraction == 0:
                yield anchors, after
                continue
            assert isinstance(after, int)
            rng = np.random.default_rng([self.seed, epoch, after])
            chosen = anchors[rng.random(anchors.size) < self.fraction]
            partners = [p for a in chosen if (p := self.miner.partner(int(a), rng)) is not None]
            yield np.concatenate([anchors, np.array(partners, dtype=np.int64)]), after


def _identity(indices: IntArray) -> IntArray:
    return indices


# -- the config -------------------------------------------------------------------------------


class BiEncoderDataConfig(BaseModel):
    """The training pairs: a catalogue's tracks, and optionally a file of extra queries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracks: ConfigPath
    """A CSV, TSV, JSONL or Parquet catalogue (read as ``newwave.readers.read_tracks`` does)."""
    columns: dict[str, str] = {}
    """Track field -> the file's column, e.g. ``{id = "ytid", description = "caption"}``."""
    where: dict[str, JsonValue] = {}
    """Keep only the tracks whose metadata has these values, e.g. ``{split = "train"}``."""
    query_field: TextField = "description"
    document_field: TextField = "lyrics"
    queries: ConfigPath | None = None
    """A CSV, TSV, JSONL or Parquet file of (query, track id) rows, used instead of
    ``query_field``: several queries per track."""
    query_column: str = "query"
    track_column: str = "track_id"

    def load(self) -> BiEncoderData:
        """The pairs this section names."""
        tracks = [
            t
            for t in read_tracks(self.tracks, columns=self.columns)
            if all(t.metadata.get(k) == v for k, v in self.where.items())
        ]
        queries = None
        if self.queries is not None:
            columns = [self.query_column, self.track_column]
            queries = [
                (str(r[columns[0]]), str(r[columns[1]]))
                for r in read_records(self.queries, columns)
            ]
        return BiEncoderData.from_tracks(
            tracks, query_field=self.query_field, document_field=self.document_field,
            queries=queries,
        )  # fmt: skip


class BiEncoderModelConfig(BaseModel):
    """The towers: backbone plugin and weights, sharing, freezing and heads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = "minilm"
    """A text encoder plugin built on TransformerTextEncoder: ``minilm``, ``bge-m3``, ..."""
    backbone_model: str | None = None
    """Its weights: a hub id or a directory (in a config file, relative to it); None: the
    plugin's default."""
    backbone_options: dict[str, JsonValue] = {}
    """Its other options, e.g. ``max_length`` (the model, device and dtype are set here)."""
    shared_backbone: bool = True
    freeze_backbone: bool = False
    """Train only the heads, on backbone vectors computed once (needs ``head_dim``)."""
    adapters: AdapterConfig | None = None
    """With ``freeze_backbone``: also train low-rank adapters on the backbone's last layers
    (:mod:`newwave.encoders.adapters`), on the hidden states entering them, computed once."""
    head_dim: int | None = Field(default=None, ge=1)
    """Projection heads of this output width; None: no heads."""
    shared_head: bool = False

    @field_validator("backbone_model")
    @classmethod
    def _relative_to_the_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        base = (info.context or {}).get("base")
        if value is None or base is None or Path(value).expanduser().is_absolute():
            return value
        local = Path(base) / value
        return str(local) if local.is_dir() else value

    @model_validator(mode="after")
    def _consistent(self) -> BiEncoderModelConfig:
        reserved = sorted(_RESERVED_OPTIONS & set(self.backbone_options))
        if reserved:
            raise ValueError(f"backbone_options cannot set {', '.join(reserved)}")
        if self.freeze_backbone and self.head_dim is None:
            raise ValueError("a frozen backbone leaves nothing to train: set head_dim")
        if self.freeze_backbone and not self.shared_backbone:
            raise ValueError("a frozen backbone is the same for both towers: shared_backbone")
        if self.shared_head and self.head_dim is None:
            raise ValueError("shared_head needs heads (head_dim)")
        if self.adapters is not None and not self.freeze_backbone:
            raise ValueError("adapters train on a frozen backbone: set freeze_backbone")
        return self


class BiEncoderTrainingConfig(TrainerConfig):
    """Everything ``newwave train biencoder`` needs (load one with ``load_config``)."""

    unit = "pairs"

    data: BiEncoderDataConfig | None = None
    """None: the data are given to :func:`train_biencoder` directly."""
    model: BiEncoderModelConfig = BiEncoderModelConfig()
    hard_negatives: tuple[HardNegativeKind, ...] = ("artist", "tags")
    """Where hard negatives come from: the same artist, a shared tag; empty: none."""
    hard_negative_fraction: float = Field(default=0.5, ge=0, le=1)
    """The share of a batch's pairs that bring a hard negative pair along."""
    initial_temperature: float = Field(default=0.05, ge=0.01, le=1)
    validation_candidates: Literal["validation", "all"] = "validation"
    """What the validation queries are ranked against to pick the best model: the documents of
    the validation pairs, or (``"all"``) those of the training pairs too, a harder ranking that
    keeps telling epochs apart when a small validation set is ranked perfectly."""


# -- the towers as training runs them ----------------------------------------------------------


def backbone_embeddings(backbone: TransformerTextEncoder, texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised backbone vectors of ``texts`` as ``backbone.encode_text`` computes them
    (the same tokenisation, pooling and windows of long text), but differentiable."""
    state = backbone._load()
    encoded = backbone._tokenize(state, texts, return_tensors="pt")
    owner = encoded.pop("overflow_to_sample_mapping", None)
    counts = encoded["attention_mask"].sum(dim=1)
    windows = backbone._embed(state, dict(encoded)).to(backbone.device)
    if owner is not None:  # a text's vector: its windows' mean, weighted by their token counts
        owner = torch.as_tensor(owner, device=windows.device)
        weights = counts.to(device=windows.device, dtype=windows.dtype).unsqueeze(1)
        sums = windows.new_zeros(len(texts), windows.shape[1]).index_add(
            0, owner, windows * weights
        )
        totals = windows.new_zeros(len(texts), 1).index_add(0, owner, weights)
        windows = sums / totals
    pooled: torch.Tensor = F.normalize(windows, dim=1)
    return pooled


def tower_embeddings(encoder: BiEncoder, texts: Sequence[str], role: Role) -> torch.Tensor:
    """``role``'s tower on ``texts``, differentiable, before the final L2 normalisation: what
    training optimises and ``encoder.encode_text(texts, role=role)`` serves (normalised)."""
    projected: torch.Tensor = encoder.project(
        backbone_embeddings(encoder.backbones[role], texts), role
    )
    return projected


# -- the task ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Texts:
    """The distinct query and document texts, and each pair's row among them."""

    texts: dict[Role, list[str]]
    rows: dict[Role, IntArray]

    @classmethod
    def of(cls, data: BiEncoderData) -> _Texts:
        query_rows, queries = _codes(data.queries)
        document_rows, documents = _codes(data.documents)
        return cls({"query": queries, "document": documents},
                   {"query": query_rows, "document": document_rows})  # fmt: skip


EmbedTexts: TypeAlias = Callable[[IntArray, Role], FloatMatrix]
"""Unit vectors of the distinct texts at these rows, embedded as ``role``."""


class _BiEncoderTask(ContrastiveTask[IntArray]):
    def __init__(
        self,
        encoder: BiEncoder,
        data: BiEncoderData,
        texts: _Texts,
        groups: IntArray,
        splits: Mapping[str, IntArray],
        config: BiEncoderTrainingConfig,
        cache: Mapping[Role, FloatMatrix] | None,
        top: Mapping[Role, TopLayerInputs] | None = None,
        adapters: nn.ParameterDict | None = None,
    ):
        self.encoder, self.data, self.texts, self.splits = encoder, data, texts, splits
        self.top, self.adapters = top, adapters
        self.config, self.groups = config, groups
        self.cache = {r: torch.from_numpy(m) for r, m in cache.items()} if cache else None
        self.logit_scale = LogitScale(
            1 / config.initial_temperature, maximum=config.max_logit_scale
        )
        parts: dict[str, nn.Module] = {"logit_scale": self.logit_scale}
        heads = {encoder.config.head_name(r): h for r, h in encoder.heads.items()}
        if heads:
            parts["heads"] = nn.ModuleDict({str(n): h for n, h in heads.items()})
        if encoder.shares_backbone and (adapters is not None or cache is None):
            # fine-tuning or adapting it would change the other encoders' vectors
            raise InvalidInputError(
                "this bi-encoder's backbone is shared with other encoders, whole or its lower "
                "layers (newwave.encoders.shared, newwave.encoders.prefix); train a backbone of "
                "its own"
            )
        if adapters is not None:
            parts["adapters"] = adapters
        elif cache is None:
            backbones = {r: b._load().model for r, b in encoder.backbones.items()}
            if encoder.config.shared_backbone:
                parts["backbone"] = backbones["query"]
            else:
                parts.update({f"{r}_backbone": m for r, m in backbones.items()})
        self.module = nn.ModuleDict(parts)

    def use_device(self, device: str) -> None:
        super().use_device(device)
        self.encoder.device = device
        for backbone in self.encoder.backbones.values():
            backbone.device = device
        if self.cache is not None:
            self.cache = {r: m.to(device) for r, m in self.cache.items()}
        if self.top is not None:
            self.encoder.backbones["query"]._load().model.to(device)
            for inputs in dict.fromkeys(self.top.values()):
                inputs.to(device)

    def tower(self, rows: IntArray, role: Role) -> torch.Tensor:
        """The unnormalised tower outputs of these pairs' ``role`` texts."""
        index = self.texts.rows[role][rows]
        if self.top is not None:
            adapted: torch.Tensor = self.encoder.project(self.top[role].embed(index), role)
            return adapted
        if self.cache is not None:
            cached = self.cache[role][torch.from_numpy(index).to(self.device)]
            projected: torch.Tensor = self.encoder.project(cached, role)
            return projected
        texts = [self.texts.texts[role][i] for i in index]
        return tower_embeddings(self.encoder, texts, role)

    def loss(self, batch: IntArray, progress: Progress) -> torch.Tensor:
        return symmetric_infonce(
            self.tower(batch, "query"),
            self.tower(batch, "document"),
            self.logit_scale(),
            groups=torch.from_numpy(self.groups[batch]).to(self.device),
        )

    def embed_texts(self, rows: IntArray, role: Role) -> FloatMatrix:
        """Unit vectors of distinct texts, as served (from the cached backbone vectors when the
        backbone is frozen)."""
        if self.top is not None:
            with torch.no_grad():
                vectors = self.encoder.project(self.top[role].embed(rows), role)
                return l2_normalize(vectors.float().cpu().numpy())
        if self.cache is None:
            return self.encoder.encode_text([self.texts.texts[role][i] for i in rows], role=role)
        with torch.no_grad():
            cached = self.cache[role][torch.from_numpy(rows).to(self.device)]
            projected = self.encoder.project(cached, role)
            return l2_normalize(projected.float().cpu().numpy())

    def evaluate(self) -> dict[str, float]:
        distractors = self.splits["train"] if self.config.validation_candidates == "all" else None
        return _retrieval_metrics(
            self.embed_texts,
            self.data,
            self.texts,
            self.splits["validation"],
            self.config.metrics,
            distractors=distractors,
        )

    def save(self, directory: Path) -> None:
        if self.adapters is None:
            self.encoder.save(directory)
            return
        config = self.config.model.adapters
        assert config is not None
        model = self.encoder.backbones["query"]._load().model
        with merged_adapters(model, self.adapters, config):
            self.encoder.save(directory)


def _retrieval_metrics(
    embed: EmbedTexts,
    data: BiEncoderData,
    texts: _Texts,
    rows: IntArray,
    metrics: Sequence[str],
    *,
    distractors: IntArray | None = None,
) -> dict[str, float]:
    """Each pair's query against every distinct (track, document) of ``rows`` (and of
    ``distractors``); relevant: its track's documents."""
    candidates: dict[tuple[str, int], int] = {}
    every = rows if distractors is None else np.concatenate([rows, distractors])
    for row in map(int, every):
        candidates.setdefault(
            (data.track_ids[row], int(texts.rows["document"][row])), len(candidates)
        )
    by_track: dict[str, list[int]] = {}
    for (track, _), column in candidates.items():
        by_track.setdefault(track, []).append(column)
    documents = embed(np.array([d for _, d in candidates], dtype=np.int64), "document")
    queries = embed(texts.rows["query"][rows], "query")
    relevant = [by_track[data.track_ids[int(row)]] for row in rows]
    ids = [f"{track}#{d}" for track, d in candidates]
    return evaluate_embeddings(queries, documents, relevant, metrics, candidate_ids=ids).as_dict()


# -- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiEncoderResult(TrainerResult):
    """What :func:`train_biencoder` produced; ``comparison`` has the ``biencoder`` (trained)
    and its ``backbone`` (untrained)."""

    unit = "pairs"

    encoder: BiEncoder
    """The trained bi-encoder (best validation weights), as saved in ``training.model_dir``
    (with adapters: running them beside the backbone's weights, which are not merged)."""
    adapters: dict[str, torch.Tensor] | None = None
    """The trained adapters as stored (``adapters.safetensors``); None without adapters."""

    def serving_hint(self) -> str:
        return f"load_encoder('biencoder', model='{self.model_dir}')"


def train_biencoder(
    config: BiEncoderTrainingConfig,
    *,
    data: BiEncoderData | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> BiEncoderResult:
    """Train a bi-encoder as ``config`` says, on ``data`` (default: ``config.data``).

    Writes ``config.output_dir`` (see :mod:`newwave.train.loop`; the encoder is in ``model/``,
    the comparison in ``comparison.json``) and returns the result.
    """
    data = given_or_configured(data, config.data, "BiEncoderData")
    groups = _linked_groups(data.track_ids, data.queries, data.documents)
    splits = _split(data, config)
    texts = _Texts.of(data)
    device = resolve_device(config.loop.device)
    encoder = _initial_encoder(config.model, config.loop.seed, device)
    held_out = splits[config.held_out]
    cache = None
    top: dict[Role, TopLayerInputs] | None = None
    adapters = None
    adapter_config = config.model.adapters
    if adapter_config is not None:
        backbone = encoder.backbones["query"]
        top = {r: TopLayerInputs(backbone, texts.texts[r], adapter_config.layers) for r in ROLES}

        def adapted_base(rows: IntArray, role: Role) -> FloatMatrix:
            assert top is not None
            with torch.no_grad():
                return l2_normalize(top[role].embed(rows).cpu().numpy())

        base: EmbedTexts = adapted_base

        model = backbone._load().model
        model.requires_grad_(False)
        adapters = new_adapters(model, adapter_config, seed=config.loop.seed)
    elif config.model.freeze_backbone:
        backbone = encoder.backbones["query"]
        cache = {r: backbone.encode_text(texts.texts[r], role=r) for r in ROLES}
        base = lambda rows, role: cache[role][rows]  # noqa: E731
    else:
        base = lambda rows, role: encoder.backbones[role].encode_text(  # noqa: E731
            [texts.texts[role][i] for i in rows], role=role
        )
    backbone_metrics = _retrieval_metrics(base, data, texts, held_out, config.metrics)
    if adapters is not None:
        assert adapter_config is not None
        attach_adapters(encoder.backbones["query"]._load().model, adapters, adapter_config)
    task = _BiEncoderTask(encoder, data, texts, groups, splits, config, cache, top, adapters)
    miner = None
    if config.hard_negatives:
        miner = HardNegativeMiner(
            groups, splits["train"], artists=data.artists, tags=data.tags,
            kinds=config.hard_negatives,
        )  # fmt: skip
    batches = _PairBatches(
        splits["train"], config.loop, miner=miner, fraction=config.hard_negative_fraction
    )
    training = fit(task, batches, config, resume=resume, callbacks=callbacks)
    comparison = {
        "biencoder": _retrieval_metrics(task.embed_texts, data, texts, held_out, config.metrics),
        "backbone": backbone_metrics,
    }
    write_comparison(config, comparison)
    stored = None if adapters is None else adapter_tensors(adapters)
    return BiEncoderResult(training, comparison, config.held_out, encoder=encoder, adapters=stored)


def _initial_encoder(model: BiEncoderModelConfig, seed: int, device: str) -> BiEncoder:
    """The backbone(s) as loaded, and heads that start as the identity (or, to another width,
    one random orthonormal projection), the same for both towers: the untrained bi-encoder
    embeds as its backbone does."""
    options: dict[str, Any] = {"device": device, "dtype": "float32", **model.backbone_options}
    if model.backbone_model is not None:
        options["model"] = model.backbone_model
    query = load_backbone(model.backbone, **options)
    document = query if model.shared_backbone else load_backbone(model.backbone, **options)
    settings = query.get_config()
    config = BiEncoderConfig(
        backbone=model.backbone,
        backbone_options={k: v for k, v in settings.items() if k not in _RESERVED_OPTIONS},
        base_model=query.model_id,
        backbone_dim=query.dim,
        shared_backbone=model.shared_backbone,
        head_dim=model.head_dim,
        shared_head=model.shared_head,
    )
    heads = new_heads(config)
    generator = torch.Generator().manual_seed(seed)
    start: torch.Tensor | None = None
    for head in dict.fromkeys(heads.values()):
        if start is None:
            start = torch.empty_like(head.weight)
            if head.weight.shape[0] == head.weight.shape[1]:
                nn.init.eye_(start)
            else:
                nn.init.orthogonal_(start, generator=generator)
        with torch.no_grad():
            head.weight.copy_(start)
            head.bias.zero_()
        head.to(device)
    return BiEncoder.from_parts(
        config, {"query": query, "document": document}, heads, device=device
    )


def _split(data: BiEncoderData, config: BiEncoderTrainingConfig) -> dict[str, IntArray]:
    """Pair rows by group (track, or artist) into train / validation (/ test); checked for
    leaks of tracks (and artists)."""
    artists = data.artists
    parts = config.split(
        range(len(data)),
        track=lambda row: data.track_ids[row],
        artist=None if artists is None else lambda row: artists[row],
    )
    return {name: np.array(rows, dtype=np.int64) for name, rows in parts.items()}


def train_from_file(
    path: str | os.PathLike[str], *, resume: bool = False, device: str | None = None
) -> BiEncoderResult:
    """:func:`train_biencoder` with a JSON or TOML config file; ``device`` overrides its own."""
    return train_biencoder(
        config_from_file(path, BiEncoderTrainingConfig, device=device), resume=resume
    )
