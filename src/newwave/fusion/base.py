"""The Fuser interface: per-field rankings of one query in, one ranking out."""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from newwave._checks import positive_int
from newwave._vectors import as_matrix, l2_normalize
from newwave.errors import InvalidInputError
from newwave.types import FloatMatrix, Ranking

__all__ = ["Coverage", "EmbeddingFuser", "Fuser", "has_field"]

Coverage = Mapping[str, Container[str]]
"""For each field, the ids of the tracks that have that field (a retriever is such a container)."""


class Fuser(ABC):
    """Combines the rankings that each field's retriever returned for one query.

    By default the fused score of a track is the weighted mean of its per-field scores
    (:meth:`_field_scores`) over the fields the track *has*: a track without lyrics is judged on
    its other fields, not penalised for the missing one. A track that has a field but is absent
    from that field's ranking scores 0 there. Without ``coverage`` every track is taken to have
    every field. Ties are broken by id, so results are deterministic. ``weights`` give a field's
    importance (1.0 for a field not named).
    """

    name: ClassVar[str] = ""

    def __init__(self, *, weights: Mapping[str, float] | None = None):
        self.weights = dict(weights or {})
        for field_name, weight in self.weights.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise InvalidInputError(
                    f"weight of field {field_name!r} must be a finite number >= 0, got {weight!r}"
                )

    def weight(self, field_name: str) -> float:
        """The weight of ``field_name``."""
        return float(self.weights.get(field_name, 1.0))

    def get_config(self) -> dict[str, Any]:
        """Keyword options that rebuild this fuser through its registered factory (JSON-able)."""
        return {"weights": self.weights} if self.weights else {}

    @abstractmethod
    def _field_scores(self, ranking: Ranking) -> Mapping[str, float]:
        """The score, in [0, 1], that one field's ranking gives each id in it."""

    def _fuse_scores(
        self, rankings: Mapping[str, Ranking], coverage: Coverage | None
    ) -> dict[str, float]:
        """Fused score of every id that appears in at least one ranking."""
        # per field: its weight, its scores, and which tracks have it (None: all of them)
        per_field = [
            (
                self.weight(f),
                self._field_scores(r),
                None if coverage is None or f not in coverage else coverage[f],
            )
            for f, r in rankings.items()
        ]
        fused: dict[str, float] = {}
        for track_id in {i for r in rankings.values() for i in r.ids}:
            total = weights = 0.0
            for w, scores, holders in per_field:
                if holders is not None and track_id not in holders:
                    continue  # neither reward nor penalty
                total += w * scores.get(track_id, 0.0)
                weights += w
            fused[track_id] = total / weights if weights > 0 else 0.0
        return fused

    def fuse(
        self, rankings: Mapping[str, Ranking], *, k: int, coverage: Coverage | None = None
    ) -> Ranking:
        """One ranking of at most ``k`` ids from the per-field ``rankings``, best first."""
        positive_int(k, "k")
        for field_name, ranking in rankings.items():
            if not isinstance(ranking, Ranking):
                raise InvalidInputError(
                    f"ranking of field {field_name!r} is a {type(ranking).__name__}, not a Ranking"
                )
        scores = self._fuse_scores(rankings, coverage)
        best = heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))
        return Ranking(tuple(i for i, _ in best), tuple(float(s) for _, s in best))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class EmbeddingFuser(Fuser):
    """Fusion in embedding space: a track's (or a query's) per-field vectors become one vector.

    A Recommender with an embedding fuser keeps one joint index of the tracks' fused vectors and
    searches it with the fused query vector. A subclass sets :attr:`fields` and :attr:`dim` and
    implements :meth:`_embed`; the base checks the input and L2-normalises the output. In the
    input, an all-zero row means the track lacks that field.
    """

    #: The fields this fuser combines, in the order it was trained on.
    fields: tuple[str, ...] = ()
    #: The width of each field's vectors.
    input_dims: dict[str, int]

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the fused vectors."""

    @abstractmethod
    def _embed(self, vectors: Mapping[str, FloatMatrix], side: Literal["track", "query"]) -> Any:
        """Fuse the rows of ``vectors`` (one matrix per field, zero rows where absent)."""

    def embed(self, vectors: Mapping[str, Any], *, side: Literal["track", "query"]) -> FloatMatrix:
        """One L2-normalised joint vector per row of the per-field ``vectors``."""
        if side not in ("track", "query"):
            raise InvalidInputError(f"side must be 'track' or 'query', got {side!r}")
        missing = [f for f in self.fields if f not in vectors]
        if missing:
            raise InvalidInputError(f"{self.name!r} fuser needs the fields {', '.join(missing)}")
        checked = {
            f: as_matrix(vectors[f], dim=self.input_dims[f], what=f"field {f!r} vectors")
            for f in self.fields
        }
        rows = {m.shape[0] for m in checked.values()}
        if len(rows) > 1:
            raise InvalidInputError(f"the fields have different numbers of rows: {sorted(rows)}")
        if rows == {0}:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(as_matrix(self._embed(checked, side), dim=self.dim, what="fused"))

    def _field_scores(self, ranking: Ranking) -> Mapping[str, float]:
        return ranking.as_dict()  # the joint index's ranking is the result

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write what rebuilds this fuser (``factory(directory)``) into the empty ``directory``."""


def has_field(track_id: str, field_name: str, coverage: Coverage | None) -> bool:
    """Whether the track has the field; without coverage for the field, every track has it."""
    if coverage is None or field_name not in coverage:
        return True
    return track_id in coverage[field_name]
