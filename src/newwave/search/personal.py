"""Personalisation: listeners' feedback, their taste, personal re-ranking, refinement, diversity.

Feedback events (:class:`Feedback`) are ``like`` (+1), ``dislike`` (-1), ``skip`` (-0.25, a weak
negative) and ``play`` (``+0.5 * min(seconds / 60, 1)``); ``weight=`` replaces an event's
magnitude, its sign staying the event's. A user's *taste* in a dense channel ``c`` is the decayed
weighted mean of the vectors of the tracks of their latest :data:`TASTE_WINDOW` events::

    d_i = 0.5 ** ((t_last - t_i) / HALF_LIFE_S)          (t_last: the user's latest event)
    taste_c = sum_i d_i s_i v_ic / sum_i d_i |s_i|       (|taste_c| <= 1)

The user's *classifier* is one ridge regression (:data:`TASTE_ALPHA`) over the tracks of those
events, their vectors of every dense channel side by side (``x_j = [v_j1, v_j2, ...]``, zeros
for a channel without one), one example per track ``j``: label +1 if its net feedback
``sum d_i s_i`` is positive, -1 if negative (disliked or skipped), sample weight the decay of
its latest event; ``w_c`` is the part of ``w`` that reads channel ``c``::

    w, b = argmin  sum_j a_j (y_j - x_j . w - b)^2 + alpha |w|^2

A personal search re-ranks the candidates a query retrieves (``depth`` of them) by::

    score      = relevance + weight * confidence * taste_z      (halved if net disliked)
    relevance  = std(fused score)
    taste      = sum over the dense channels of v_c . w_c
    taste_z    = std(taste)
    std(x)     = (clip(z(x), -2, 2) + 2) / 4,  z: the z-score over the candidates
    confidence = n / (n + 1),  n = sum_i d_i |s_i|

so relevance and the taste term lie in [0, 1] and [0, ``weight``] (:data:`TASTE_WEIGHT`,
:data:`STANDARD_CLIP`), each measured in its own spread over the candidates; the taste term is
``Hit.scores["taste"]``, next to ``Hit.scores["relevance"]``. A classifier scores what sets the
liked tracks apart from the rest of what the user was shown, so a user who likes two different
things finds both (a mean of the liked vectors would blur them). Until the feedback has both a
liked and a not-liked track there is no classifier and no taste term: a one-sided taste cannot
tell what sets the user's tracks apart from the rest shown (``recommend`` uses ``taste_c``).
A track the user's feedback is net negative about has its score halved, as the query rewriter
halves unwanted tracks. With fitted ALS factors (:mod:`newwave.search.collaborative`) a
stored user's search adds a third, collaborative term, ``Hit.scores["collaborative"]``.
Tastes are cached per library while the events and the tracks stay the same.

Refinement (``like=``/``dislike=`` ids) is Rocchio per dense channel:
``q' = q + 0.75 mean(liked) - 0.25 mean(disliked)``, normalised. Diversity is maximal marginal
relevance: each next hit maximises ``(1 - diversity) * score - diversity * max_sim``,
``max_sim`` its highest cosine (mean over the dense channels) to the hits chosen before.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Final, TextIO
from weakref import WeakKeyDictionary

import numpy as np

from newwave.errors import InvalidInputError, MissingFileError, UnknownTrackError
from newwave.fusion.base import Fuser
from newwave.query.base import ParsedQuery
from newwave.search.channels import Channel, DenseChannel, Query
from newwave.search.defaults import UNWANTED_FACTOR
from newwave.search.searcher import demote_unwanted, fused_hits
from newwave.store.database import FeedbackRow, Labels, LibraryStore
from newwave.types import FloatMatrix, Hit, Ranking

__all__ = [
    "EVENTS",
    "HALF_LIFE_S",
    "LOG_COLUMNS",
    "STANDARD_CLIP",
    "TASTE_ALPHA",
    "TASTE_WINDOW",
    "TASTE_WEIGHT",
    "Feedback",
    "Taste",
    "cached_taste",
    "check_diversity",
    "mmr",
    "standardised",
    "personal_search",
    "read_interactions",
    "recommend",
    "taste",
    "write_interactions",
]

EVENTS: Final[dict[str, float]] = {"like": 1.0, "dislike": -1.0, "skip": -0.25, "play": 0.5}
"""Each event's signed default weight (``play``: at a full :data:`PLAY_FULL_S` seconds)."""
PLAY_FULL_S: Final = 60.0
HALF_LIFE_S: Final = 30 * 24 * 3600.0
"""An event counts half as much as one 30 days newer."""
TASTE_WINDOW: Final = 500
"""How many of a user's latest events make their taste."""
TASTE_WEIGHT: Final = 0.9
"""The bound of the taste term, relevance being scaled to [0, 1]."""
TASTE_ALPHA: Final = 0.3
"""The L2 penalty of each user's taste classifier (ridge regression)."""
STANDARD_CLIP: Final = 2.0
"""Relevance and taste are z-scores over the candidates, clipped to +-2 and mapped onto [0, 1]."""
_CONFIDENCE_HALF = 1.0
ROCCHIO: Final = (1.0, 0.75, 0.25)  # alpha (query), beta (liked), gamma (disliked)
LOG_COLUMNS: Final = ("user", "track", "event", "timestamp", "seconds", "weight")
"""The columns of an interaction log (CSV with a header, or JSON lines with these keys)."""


@dataclass(frozen=True)
class Feedback:
    """One feedback event: ``at`` in Unix seconds, ``seconds`` played (``play`` only)."""

    user: str
    track: str
    event: str
    at: float
    seconds: float | None = None
    weight: float | None = None

    @property
    def signed_weight(self) -> float:
        """What the event adds to the taste: positive for liking, negative for disliking."""
        sign = math.copysign(1.0, EVENTS[self.event])
        if self.weight is not None:
            return sign * self.weight
        if self.event == "play":
            return EVENTS["play"] * min((self.seconds or 0.0) / PLAY_FULL_S, 1.0)
        return EVENTS[self.event]

    def row(self) -> FeedbackRow:
        """As the library stores it."""
        return (self.user, self.track, self.event, self.at, self.seconds, self.weight)

    @classmethod
    def checked(
        cls,
        user: object,
        track: object,
        event: object,
        *,
        at: object = None,
        seconds: object = None,
        weight: object = None,
    ) -> Feedback:
        """A Feedback from caller values, refused with an :class:`InvalidInputError` if bad."""
        if not isinstance(user, str) or not user.strip():
            raise InvalidInputError(f"user must be a non-empty str, got {user!r}")
        if not isinstance(track, str) or not track.strip():
            raise InvalidInputError(f"track must be a non-empty str, got {track!r}")
        if event not in EVENTS:
            raise InvalidInputError(
                f"unknown feedback event {event!r}; events: {', '.join(EVENTS)}"
            )
        assert isinstance(event, str)
        when = _timestamp(at)
        if event == "play":
            if seconds is None:
                raise InvalidInputError("a 'play' event needs seconds= (how long it played)")
            seconds = _non_negative("seconds", seconds)
        elif seconds is not None:
            raise InvalidInputError(f"seconds= is for 'play' events, not {event!r}")
        if weight is not None:
            weight = _non_negative("weight", weight)
        return cls(user, track, event, when, seconds, weight)


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def _timestamp(at: object) -> float:
    """Unix seconds from None (now), a number, a datetime or an ISO 8601 string."""
    if at is None:
        return time.time()
    if isinstance(at, datetime):
        moment = at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(at, str):
        try:
            return _timestamp(datetime.fromisoformat(at.replace("Z", "+00:00")))
        except ValueError:
            try:
                return _timestamp(float(at))
            except ValueError:
                pass
        raise InvalidInputError(f"timestamp {at!r} is neither ISO 8601 nor Unix seconds")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise InvalidInputError(f"at must be a datetime, ISO 8601 text or Unix seconds: {at!r}")
    return float(at)


def from_row(row: FeedbackRow) -> Feedback:
    """A stored event."""
    user, track, event, at, seconds, weight = row
    return Feedback(user, track, event, at, seconds, weight)


# -- taste ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Taste:
    """A user's taste: a vector per dense channel (norm <= 1), and how much feedback made it."""

    vectors: dict[str, FloatMatrix]  # (dim,) each
    strength: float  # sum of d_i |s_i|
    net: dict[str, float]  # per track: sum of d_i s_i
    balance: float = 0.0  # sum of d_i s_i / sum of d_i |s_i|, in [-1, 1]
    classifiers: dict[str, FloatMatrix] = field(default_factory=dict)  # w_c, (dim,) each

    @property
    def confidence(self) -> float:
        """``n / (n + 1)`` of the decayed amount of feedback ``n``."""
        return self.strength / (self.strength + _CONFIDENCE_HALF)


def taste(
    store: LibraryStore, channels: Mapping[str, Channel], events: Sequence[Feedback]
) -> Taste:
    """The taste of the latest :data:`TASTE_WINDOW` of ``events`` (see the module docstring)."""
    recent = sorted(events, key=lambda e: e.at)[-TASTE_WINDOW:]
    if not recent:
        return Taste({}, 0.0, {})
    last = recent[-1].at
    weights: dict[str, float] = {}
    latest: dict[str, float] = {}  # per track: the decay of its latest event
    strength = 0.0
    for event in recent:
        decayed = 0.5 ** ((last - event.at) / HALF_LIFE_S)
        weights[event.track] = weights.get(event.track, 0.0) + decayed * event.signed_weight
        latest[event.track] = decayed
        strength += decayed * abs(event.signed_weight)
    labels = store.labels(list(weights))
    tracks = [t for t in weights if t in labels]
    signed = np.array([weights[t] for t in tracks], dtype=np.float64)
    recency = np.array([latest[t] for t in tracks], dtype=np.float64)
    vectors: dict[str, FloatMatrix] = {}
    blocks: dict[str, np.ndarray] = {}  # per channel, the tracks' vectors (zeros where absent)
    for name, channel in _dense(channels).items():
        if not tracks or not channel.count:
            continue
        rows = store.vectors(name, [labels[t] for t in tracks], channel.dim).astype(np.float64)
        present = np.any(rows != 0, axis=1)
        if present.any() and strength > 0:
            vectors[name] = ((signed[present] @ rows[present]) / strength).astype(np.float32)
            blocks[name] = rows
    classifiers: dict[str, FloatMatrix] = {}
    if blocks:  # one classifier of the channels' vectors side by side
        fitted = _classifier(np.concatenate(list(blocks.values()), axis=1), signed, recency)
        if fitted is not None:
            ends = np.cumsum([rows.shape[1] for rows in blocks.values()])
            classifiers = dict(zip(blocks, np.split(fitted, ends[:-1]), strict=True))
    balance = sum(weights.values()) / strength if strength > 0 else 0.0
    return Taste(vectors, strength, weights, balance, classifiers)


def _classifier(rows: np.ndarray, net: np.ndarray, recency: np.ndarray) -> FloatMatrix | None:
    """Ridge regression of +1 (net liked) and -1 (net disliked or skipped) on the tracks'
    vectors, each track weighted by its latest event's decay; None without both sides.

    The weights ``w`` of ``min sum_j a_j (y_j - x_j . w - b)^2 + alpha |w|^2`` in closed form,
    solved in the (tracks x tracks) dual: ``w = Xc^T (A Xc Xc^T + alpha I)^-1 A yc`` with ``Xc``,
    ``yc`` centred on their ``a``-weighted means (scikit-learn's ``Ridge`` gives the same
    weights, but importing it costs seconds at a user's first search)."""
    judged = net != 0
    x, a = rows[judged], recency[judged]
    y = np.where(net[judged] > 0, 1.0, -1.0)
    if len(np.unique(y)) < 2 or not a.sum() > 0:
        return None
    share = a / a.sum()
    xc, yc = x - share @ x, y - share @ y
    dual = np.linalg.solve(a[:, None] * (xc @ xc.T) + TASTE_ALPHA * np.eye(len(y)), a * yc)
    weights: FloatMatrix = (xc.T @ dual).astype(np.float32)
    return weights


_TASTES: WeakKeyDictionary[LibraryStore, OrderedDict[Hashable, Taste]] = WeakKeyDictionary()
_TASTES_KEPT: Final = 64
_TASTES_LOCK = threading.Lock()


def cached_taste(
    store: LibraryStore, channels: Mapping[str, Channel], events: Sequence[Feedback]
) -> Taste:
    """:func:`taste`, reused while the events and the channels' tracks are unchanged.

    The latest tastes of each store are kept, keyed by the events themselves and by each dense
    channel's transaction number: new feedback or changed tracks make a new taste, and searching
    again with the same feedback recomputes nothing."""
    key = (tuple((n, c.seq) for n, c in _dense(channels).items()), tuple(events))
    with _TASTES_LOCK:
        kept = _TASTES.setdefault(store, OrderedDict())
        found = kept.get(key)
        if found is not None:
            kept.move_to_end(key)
            return found
    made = taste(store, channels, events)
    with _TASTES_LOCK:
        kept[key] = made
        while len(kept) > _TASTES_KEPT:
            kept.popitem(last=False)
    return made


def _dense(channels: Mapping[str, Channel]) -> dict[str, DenseChannel]:
    return {n: c for n, c in channels.items() if isinstance(c, DenseChannel)}


# -- scoring --------------------------------------------------------------------------------------


def _candidate_vectors(
    store: LibraryStore, channels: Mapping[str, DenseChannel], ids: Sequence[str]
) -> dict[str, FloatMatrix]:
    labels = store.labels(ids)
    rows = [labels[i] for i in ids]
    return {name: store.vectors(name, rows, c.dim) for name, c in channels.items() if c.count}


def _taste_scores(candidates: Mapping[str, FloatMatrix], taste: Taste, n: int) -> np.ndarray:
    """Mean over the channels (where the track has a vector) of ``v . taste``."""
    total, count = np.zeros(n), np.zeros(n)
    for name, vector in taste.vectors.items():
        rows = candidates.get(name)
        if rows is None:
            continue
        present = np.any(rows != 0, axis=1)
        total += np.where(present, rows @ vector, 0.0)
        count += present
    return np.divide(total, count, out=np.zeros(n), where=count > 0)


def _classifier_scores(candidates: Mapping[str, FloatMatrix], taste: Taste, n: int) -> np.ndarray:
    """Sum over the channels of ``v . w`` (the user's classifier; an absent vector adds 0)."""
    total = np.zeros(n)
    for name, weights in taste.classifiers.items():
        rows = candidates.get(name)
        if rows is not None:
            total += rows @ weights
    return total


def standardised(values: np.ndarray, basis: np.ndarray | None = None) -> np.ndarray:
    """``values`` as z-scores over themselves (or over ``values[basis]``, a boolean mask),
    clipped to +-:data:`STANDARD_CLIP` and mapped onto [0, 1] (0.5: the mean; all 0.5 if those
    values are all equal)."""
    reference = values if basis is None else values[basis]
    spread = float(reference.std()) if len(reference) else 0.0
    if spread == 0:
        return np.full(len(values), 0.5)
    z = np.clip((values - reference.mean()) / spread, -STANDARD_CLIP, STANDARD_CLIP)
    scaled: np.ndarray = (z + STANDARD_CLIP) / (2 * STANDARD_CLIP)
    return scaled


def _scaled(values: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return values
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.ones_like(values)


def _similarity(candidates: Mapping[str, FloatMatrix], n: int) -> np.ndarray:
    """Mean over the channels of the candidates' cosines to each other, (n, n)."""
    total, count = np.zeros((n, n)), np.zeros((n, n))
    for rows in candidates.values():
        norms = np.linalg.norm(rows, axis=1)
        unit = rows / np.where(norms > 0, norms, 1.0)[:, None]
        present = (norms > 0).astype(np.float64)
        total += unit @ unit.T
        count += np.outer(present, present)
    return np.divide(total, count, out=np.zeros((n, n)), where=count > 0)


def check_diversity(diversity: object) -> float:
    """``diversity`` as a float in [0, 1], else an InvalidInputError."""
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)):
        raise InvalidInputError(f"diversity must be a number in [0, 1], got {diversity!r}")
    if not 0.0 <= diversity <= 1.0:
        raise InvalidInputError(f"diversity must be in [0, 1], got {diversity!r}")
    return float(diversity)


def mmr(scores: np.ndarray, similarity: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance: ``k`` indices, each maximising
    ``(1 - diversity) * score - diversity * (max similarity to those chosen before)``."""
    chosen: list[int] = []
    left = list(range(len(scores)))
    closest = np.full(len(scores), -np.inf)
    while left and len(chosen) < k:
        penalty = np.where(np.isfinite(closest[left]), closest[left], 0.0)
        value = (1 - diversity) * scores[left] - diversity * penalty
        best = left.pop(int(np.argmax(value)))
        chosen.append(best)
        closest = np.maximum(closest, similarity[best])
    return chosen


def rerank(
    store: LibraryStore,
    channels: Mapping[str, Channel],
    hits: Sequence[Hit],
    k: int,
    *,
    user_taste: Taste | None,
    weight: float = TASTE_WEIGHT,
    diversity: float = 0.0,
    collaborative: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> list[Hit]:
    """The ``k`` best of ``hits`` by relevance plus the bounded taste term (and the
    collaborative term of ``collaborative``'s scores of the candidates, NaN for none), then MMR."""
    if not hits:
        return []
    n = len(hits)
    dense = _dense(channels)
    candidates = _candidate_vectors(store, dense, [h.track.id for h in hits])
    relevance = standardised(np.array([h.score for h in hits], dtype=np.float64))
    extra = np.zeros(n)
    if user_taste is not None and user_taste.classifiers:
        raw = _classifier_scores(candidates, user_taste, n)
        extra = weight * user_taste.confidence * standardised(raw)
    score = relevance + extra
    collab = None
    if collaborative is not None:
        from newwave.search.collaborative import collaborative_term

        ids = [h.track.id for h in hits]
        own = None if user_taste is None else np.array([user_taste.net.get(i, 0) > 0 for i in ids])
        collab = collaborative_term(collaborative(ids), own)
        score = score + np.nan_to_num(collab)
    if user_taste is not None:  # what the user's feedback is net negative about: halved
        negative = np.array([user_taste.net.get(h.track.id, 0.0) < 0 for h in hits])
        score = np.where(negative, score * UNWANTED_FACTOR, score)
    if diversity > 0:
        order = mmr(score / (1 + weight), _similarity(candidates, n), k, diversity)
    else:
        order = sorted(range(n), key=lambda i: (-score[i], hits[i].rank))[:k]
    out = []
    for rank, i in enumerate(order, start=1):
        scores = dict(hits[i].scores)
        scores["relevance"] = float(relevance[i])
        if user_taste is not None:
            scores["taste"] = float(extra[i])
        if collab is not None and not np.isnan(collab[i]):
            scores["collaborative"] = float(collab[i])
        track, ranks = hits[i].track, hits[i].ranks
        out.append(Hit(track=track, score=float(score[i]), rank=rank, scores=scores, ranks=ranks))
    return out


# -- searching ------------------------------------------------------------------------------------


def _rocchio(
    store: LibraryStore,
    channel: DenseChannel,
    query: FloatMatrix,
    like: Labels,
    dislike: Labels,
) -> FloatMatrix:
    alpha, beta, gamma = ROCCHIO
    out = alpha * query[0].astype(np.float64)
    for labels, factor in ((like, beta), (dislike, -gamma)):
        if len(labels):
            rows = store.vectors(channel.name, [int(x) for x in labels], channel.dim)
            rows = rows[np.any(rows != 0, axis=1)]
            if len(rows):
                out = out + factor * rows.mean(axis=0)
    norm = float(np.linalg.norm(out))
    unit: FloatMatrix = (out / norm if norm > 0 else out).astype(np.float32)[None, :]
    return unit


def _labels_of(store: LibraryStore, ids: Sequence[str] | None, what: str) -> Labels:
    if ids is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(ids, str):
        raise InvalidInputError(f"{what}= takes a list of track ids; wrap one id: [{ids!r}]")
    found = store.labels(list(ids))
    missing = [i for i in ids if i not in found]
    if missing:
        raise UnknownTrackError(f"{what}=: no track with id {missing[0]!r}")
    return np.array([found[i] for i in ids], dtype=np.int64)


def personal_search(
    store: LibraryStore,
    channels: Mapping[str, Channel],
    fuser: Fuser,
    query: Query,
    parsed: ParsedQuery | None,
    *,
    k: int,
    depth: int,
    among: Labels | None,
    events: Sequence[Feedback] | None,
    like: Sequence[str] | None = None,
    dislike: Sequence[str] | None = None,
    diversity: float = 0.0,
    weight: float | None = None,
    collaborative: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> list[Hit]:
    """A search refined by ``like``/``dislike`` (Rocchio) and re-ranked by the taste of
    ``events`` and by diversity; the refining tracks themselves are left out."""
    liked, disliked = _labels_of(store, like, "like"), _labels_of(store, dislike, "dislike")
    rankings: dict[str, Ranking] = {}
    for name, channel in channels.items():
        if not channel.count or not channel.takes(query):
            continue
        if isinstance(channel, DenseChannel) and (len(liked) or len(disliked)):
            vector = _rocchio(store, channel, query.vector(channel.encoder), liked, disliked)
            rankings[name] = channel._search_vector(store, vector, depth, among)
        else:
            rankings[name] = channel.search(store, query, depth, among)
    refining = set(like or ()) | set(dislike or ())
    if refining:
        rankings = {n: _without(r, refining) for n, r in rankings.items()}
    hits = fused_hits(store, fuser, rankings, depth)
    if parsed is not None and parsed.unwanted:
        hits = demote_unwanted(hits, parsed)
    user_taste = None if events is None else cached_taste(store, channels, events)
    return rerank(
        store,
        channels,
        hits,
        k,
        user_taste=user_taste,
        weight=TASTE_WEIGHT if weight is None else weight,
        diversity=diversity,
        collaborative=collaborative,
    )


def _without(ranking: Ranking, left_out: set[str]) -> Ranking:
    kept = [(i, s) for i, s in ranking if i not in left_out]
    return Ranking(tuple(i for i, _ in kept), tuple(s for _, s in kept))


def recommend(
    store: LibraryStore,
    channels: Mapping[str, Channel],
    events: Sequence[Feedback],
    *,
    k: int,
    depth: int,
    among: Labels | None,
    diversity: float = 0.0,
) -> list[Hit]:
    """Tracks for a user without a query: each dense channel searched with the user's taste,
    the candidates ranked by taste; tracks whose net feedback is negative are left out."""
    user_taste = cached_taste(store, channels, events)
    if not user_taste.vectors:
        raise InvalidInputError(
            "no feedback on tracks of this library to recommend from; use search() instead"
        )
    disliked = {t for t, w in user_taste.net.items() if w < 0}
    dense = _dense(channels)
    found: dict[str, dict[str, float]] = {}
    for name, vector in user_taste.vectors.items():
        norm = float(np.linalg.norm(vector))
        if norm == 0 or name not in dense:
            continue
        ranking = dense[name]._search_vector(store, (vector / norm)[None, :], depth, among)
        for track_id, cosine in ranking:
            if track_id not in disliked:
                found.setdefault(track_id, {})[name] = cosine
    ids = list(found)
    tracks = store.tracks(ids)
    ids = [i for i in ids if i in tracks]
    if not ids:
        return []
    candidates = _candidate_vectors(store, dense, ids)
    score = _taste_scores(candidates, user_taste, len(ids))
    if diversity > 0:
        order = mmr(_scaled(score), _similarity(candidates, len(ids)), k, diversity)
    else:
        order = sorted(range(len(ids)), key=lambda i: -score[i])[:k]
    return [
        Hit(
            track=tracks[ids[i]],
            score=float(score[i]),
            rank=rank,
            scores={**found[ids[i]], "taste": float(score[i])},
        )
        for rank, i in enumerate(order, start=1)
    ]


# -- interaction logs -----------------------------------------------------------------------------


def write_interactions(path: str | os.PathLike[str] | TextIO, events: Iterable[Feedback]) -> int:
    """Write ``events`` as an interaction log: CSV (or JSON lines for ``.jsonl``) with the
    columns :data:`LOG_COLUMNS`, ``timestamp`` in ISO 8601 UTC; ``path`` may be an open text
    stream (CSV). How many were written."""
    rows = [_log_row(e) for e in events]
    if not isinstance(path, (str, os.PathLike)):
        _write_csv(path, rows)
        return len(rows)
    target = Path(path)
    with target.open("w", encoding="utf-8", newline="") as out:
        if target.suffix == ".jsonl":
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            _write_csv(out, rows)
    return len(rows)


def _write_csv(out: TextIO, rows: Sequence[Mapping[str, str | float | None]]) -> None:
    writer = csv.DictWriter(out, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def _log_row(event: Feedback) -> dict[str, str | float | None]:
    moment = datetime.fromtimestamp(event.at, tz=timezone.utc)
    return {
        "user": event.user,
        "track": event.track,
        "event": event.event,
        "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "seconds": event.seconds,
        "weight": event.weight,
    }


def read_interactions(path: str | os.PathLike[str]) -> list[Feedback]:
    """The events of an interaction log (see :func:`write_interactions`; ``seconds`` and
    ``weight`` may be absent or empty), checked as :meth:`Feedback.checked` checks them."""
    source = Path(path)
    if not source.is_file():
        raise MissingFileError(f"no such interaction log: {source}")
    with source.open(encoding="utf-8", newline="") as handle:
        if source.suffix == ".jsonl":
            rows = [json.loads(line) for line in handle if line.strip()]
        else:
            rows = list(csv.DictReader(handle))
    events = []
    for number, row in enumerate(rows, start=1):
        missing = [c for c in ("user", "track", "event", "timestamp") if row.get(c) in (None, "")]
        if missing:
            raise InvalidInputError(f"{source}, event {number}: no {', '.join(missing)}")
        try:
            events.append(
                Feedback.checked(
                    row["user"],
                    row["track"],
                    row["event"],
                    at=row["timestamp"],
                    seconds=_number(row.get("seconds")),
                    weight=_number(row.get("weight")),
                )
            )
        except InvalidInputError as exc:
            raise InvalidInputError(f"{source}, event {number}: {exc}") from exc
    return events


def _number(value: object) -> object:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
