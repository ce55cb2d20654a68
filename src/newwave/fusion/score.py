"""The built-in score-level fusers: ``weighted``, ``rrf`` and ``intersect``.

All take the weighted mean of per-field scores over the fields a track has (see
:class:`~newwave.fusion.base.Fuser`); they differ in the per-field score, and ``intersect`` puts
first the tracks that every field found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from newwave.errors import InvalidInputError
from newwave.fusion.base import Coverage, Fuser, has_field
from newwave.hookspecs import Register, hookimpl
from newwave.types import Ranking

__all__ = ["IntersectFuser", "RRFFuser", "WeightedFuser"]


class WeightedFuser(Fuser):
    """Weighted mean of per-field scores, each min-max normalised within its ranking.

    A field's score for a track is (s - min) / (max - min) over that field's ranking (1.0 when all
    its scores are equal), so fields with different score ranges mix; fused scores lie in [0, 1].
    """

    name = "weighted"

    def _field_scores(self, ranking: Ranking) -> dict[str, float]:
        if not len(ranking):
            return {}
        low, high = min(ranking.scores), max(ranking.scores)
        return {i: (s - low) / (high - low) if high > low else 1.0 for i, s in ranking}


class RRFFuser(Fuser):
    """Reciprocal rank fusion: a field's score for a track is 1 / (c + rank), rank 1-based.

    Only ranks count, so fields with incomparable score scales mix safely (Cormack, Clarke and
    Büttcher, SIGIR 2009). When every track has every field, the order equals classic RRF's.
    """

    name = "rrf"

    def __init__(self, *, c: float = 60.0, weights: Mapping[str, float] | None = None):
        super().__init__(weights=weights)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or c < 0:
            raise InvalidInputError(f"c must be a number >= 0, got {c!r}")
        self.c = float(c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "c": self.c}

    def _field_scores(self, ranking: Ranking) -> dict[str, float]:
        return {i: 1.0 / (self.c + rank) for rank, i in enumerate(ranking.ids, start=1)}


class IntersectFuser(WeightedFuser):
    """Tracks found by every field first, each group ranked by the ``weighted`` score.

    A track is *found by every field* when it is in the ranking of each field it has (see
    ``coverage``) and in at least one ranking. Those tracks score 1 + their weighted score, so
    they rank above all others. With ``fill=True`` (default) the other tracks follow with their
    weighted score in [0, 1], so ``k`` results come back whenever there are ``k`` candidates; with
    ``fill=False`` only the tracks found by every field are returned.
    """

    name = "intersect"

    def __init__(self, *, fill: bool = True, weights: Mapping[str, float] | None = None):
        super().__init__(weights=weights)
        if not isinstance(fill, bool):
            raise InvalidInputError(f"fill must be True or False, got {fill!r}")
        self.fill = fill

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill": self.fill}

    def _fuse_scores(
        self, rankings: Mapping[str, Ranking], coverage: Coverage | None
    ) -> dict[str, float]:
        fused = super()._fuse_scores(rankings, coverage)
        found = {f: set(r.ids) for f, r in rankings.items()}
        out: dict[str, float] = {}
        for track_id, score in fused.items():
            if all(track_id in found[f] for f in rankings if has_field(track_id, f, coverage)):
                out[track_id] = 1.0 + score
            elif self.fill:
                out[track_id] = score
        return out


@hookimpl
def register_fusers(register: Register) -> None:
    register(WeightedFuser)
    register(IntersectFuser)
    register(RRFFuser, aliases=("reciprocal-rank",))
