"""The values that flow through newwave: tracks, audio inputs, rankings and hits."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, JsonValue, field_validator

if TYPE_CHECKING:
    from newwave.query.base import ParsedQuery

__all__ = [
    "AudioInput",
    "FloatMatrix",
    "Hit",
    "Hits",
    "Modality",
    "Ranking",
    "Role",
    "Track",
    "Waveform",
]

Modality: TypeAlias = Literal["text", "audio"]
"""What an encoder embeds: natural-language text, or sound."""

Role: TypeAlias = Literal["query", "document"]
"""Which side of retrieval a text is on; models with asymmetric prompts embed them differently."""

FloatMatrix: TypeAlias = npt.NDArray[np.float32]
"""A 2-D, C-contiguous float32 array of shape (n, dim)."""


@dataclass(frozen=True, eq=False)
class Waveform:
    """Decoded audio: ``samples`` of shape (n,) or (channels, n), at ``sample_rate`` Hz."""

    samples: npt.NDArray[np.floating[Any]]
    sample_rate: int


AudioInput: TypeAlias = (
    "str | os.PathLike[str] | Waveform | tuple[npt.NDArray[np.floating[Any]], int]"
)
"""An audio file path, a :class:`Waveform`, or a ``(samples, sample_rate)`` tuple."""


class Track(BaseModel):
    """One item of a catalogue: only ``id`` is required, every embedded field is optional."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    audio: str | None = None
    lyrics: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, JsonValue] = {}

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("track id must be a non-empty string")
        return value

    @field_validator("audio", mode="before")
    @classmethod
    def _audio_as_str(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


@dataclass(frozen=True, eq=False)
class Ranking:
    """Ids with their scores, best first. The common currency of retrievers and fusers."""

    ids: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.scores):
            raise ValueError(f"{len(self.ids)} ids but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return zip(self.ids, self.scores, strict=True)

    def as_dict(self) -> dict[str, float]:
        """``{id: score}``, in rank order."""
        return dict(zip(self.ids, self.scores, strict=True))


@dataclass(frozen=True)
class Hit:
    """One search result: the track, its fused ``score``, and the per-field ``scores`` behind it.

    ``ranks`` has, for the channels that returned the track, its rank there (1 = that
    channel's best): scores of different channels are on different scales, ranks are not.
    """

    track: Track
    score: float
    rank: int
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


class Hits(list[Hit]):
    """Search results, best first, with ``query``: what the query rewriter understood.

    ``query`` is the :class:`~newwave.query.ParsedQuery` the search used (the text it embedded,
    the attributes it found), or None when no rewriter ran.
    """

    def __init__(self, hits: Iterable[Hit] = (), *, query: ParsedQuery | None = None):
        super().__init__(hits)
        self.query = query

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``, one row per hit (see :mod:`newwave.tables`)."""
        from newwave.tables import hits_to_pandas

        return hits_to_pandas(self)

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table``, one row per hit (see :mod:`newwave.tables`)."""
        from newwave.tables import hits_to_arrow

        return hits_to_arrow(self)

    def _repr_html_(self) -> str:
        from newwave.tables import hits_html

        return hits_html(self, self.query)
