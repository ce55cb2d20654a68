"""The Fuser interface: per-field rankings of one query in, one ranking out."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from newwave.errors import InvalidInputError
from newwave.types import Ranking

__all__ = ["Fuser"]


class Fuser(ABC):
    """Combines the rankings that each field's retriever returned for one query.

    A subclass implements :meth:`_fuse_scores`; the base validates the input, applies the tie rule
    (higher fused score first, then smaller id, so results are deterministic) and cuts to ``k``.
    ``weights`` give a field's importance (default 1.0 for a field not named).
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
    def _fuse_scores(self, rankings: Mapping[str, Ranking]) -> Mapping[str, float]:
        """Fused score of every id that appears in at least one ranking."""

    def fuse(self, rankings: Mapping[str, Ranking], *, k: int) -> Ranking:
        """One ranking of at most ``k`` ids from the per-field ``rankings``, best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        for field_name, ranking in rankings.items():
            if not isinstance(ranking, Ranking):
                raise InvalidInputError(
                    f"ranking of field {field_name!r} is a {type(ranking).__name__}, not a Ranking"
                )
        scores = self._fuse_scores(rankings)
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
        return Ranking(tuple(i for i, _ in best), tuple(float(s) for _, s in best))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"
