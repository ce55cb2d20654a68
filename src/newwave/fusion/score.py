"""The built-in score-level fusers: ``weighted`` and ``rrf``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from newwave.errors import InvalidInputError
from newwave.fusion.base import Fuser
from newwave.hookspecs import Register, hookimpl
from newwave.types import Ranking

__all__ = ["RRFFuser", "WeightedFuser"]


class WeightedFuser(Fuser):
    """Weighted mean of per-field scores, each min-max normalised to [0, 1] within its ranking.

    fused(t) = Σ_f w_f · norm_f(t) / Σ_f w_f over the fields that returned a ranking, where
    norm_f(t) = (s_f(t) - min_f) / (max_f - min_f), 1.0 when all of f's scores are equal, and 0 when
    t is not in f's ranking.
    """

    name = "weighted"

    def _fuse_scores(self, rankings: Mapping[str, Ranking]) -> dict[str, float]:
        total_weight = sum(self.weight(f) for f, r in rankings.items() if len(r))
        fused: dict[str, float] = {}
        if total_weight == 0:
            return {i: 0.0 for r in rankings.values() for i in r.ids}
        for field_name, ranking in rankings.items():
            if not len(ranking):
                continue
            low, high = min(ranking.scores), max(ranking.scores)
            share = self.weight(field_name) / total_weight
            for track_id, score in ranking:
                norm = (score - low) / (high - low) if high > low else 1.0
                fused[track_id] = fused.get(track_id, 0.0) + share * norm
        return fused


class RRFFuser(Fuser):
    """Reciprocal rank fusion: fused(t) = Σ_f w_f / (c + rank_f(t)), rank 1-based, c = 60 default.

    Scores are ignored, only ranks count, so fields with incomparable score scales mix safely
    (Cormack, Clarke and Büttcher, SIGIR 2009).
    """

    name = "rrf"

    def __init__(self, *, c: float = 60.0, weights: Mapping[str, float] | None = None):
        super().__init__(weights=weights)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or c < 0:
            raise InvalidInputError(f"c must be a number >= 0, got {c!r}")
        self.c = float(c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "c": self.c}

    def _fuse_scores(self, rankings: Mapping[str, Ranking]) -> dict[str, float]:
        fused: dict[str, float] = {}
        for field_name, ranking in rankings.items():
            weight = self.weight(field_name)
            for rank, track_id in enumerate(ranking.ids, start=1):
                fused[track_id] = fused.get(track_id, 0.0) + weight / (self.c + rank)
        return fused


@hookimpl
def register_fusers(register: Register) -> None:
    register(WeightedFuser)
    register(RRFFuser, aliases=("reciprocal-rank",))
