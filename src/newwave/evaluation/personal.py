"""Personalisation benchmarks: simulated listeners on MusicCaps, and users' own interaction logs.

**Simulated listeners** (:func:`evaluate_listeners`). Each track is a MusicCaps clip
(``description`` = caption, ``tags`` = aspect list). A listener has a hidden taste: two liked
:data:`ASPECTS` and one disliked, drawn with the seed. A track's *gain* for the listener is the
number of liked aspects its tags express, or 0 if they express the disliked one. The listener
issues generic :data:`REQUESTS` ("something relaxing") drawn with the seed and, for each list
of 10 it is shown (``search(request, user=listener)``), gives feedback on the first
:data:`PER_LIST` tracks it has not judged yet: ``dislike`` (disliked aspect), ``like``
(gain > 0) or ``skip``. After 0, 5, 10 and 20 events, every request is searched with
``user=`` the listener and without (the non-personal search); the tracks the listener has judged
are left out of both, and the top 10 are scored by:

* nDCG@10 of the gains (linear gain, ``log2(rank + 1)`` discount, the ideal being the
  catalogue's best 10 gains);
* request match: the fraction of the top 10 whose tags express the request's aspect.

Everything is seeded: the same arguments give the same numbers.

**Interaction logs** (:func:`evaluate_log`). A log (:func:`~newwave.search.personal.
read_interactions`) is split in time: events before the ``train`` quantile of the timestamps
are feedback, later ``like`` and ``play`` (>= 30 s) events the relevant tracks. Each user with
both is served :meth:`~newwave.Recommender.recommend` from their earlier events (tracks already
judged left out), against the most liked tracks of the earlier events (popularity); nDCG@10.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from newwave.encoders.base import Encoder
from newwave.errors import InvalidInputError
from newwave.readers import read_tracks
from newwave.recommender import Recommender
from newwave.search.personal import Feedback
from newwave.types import Hits, Track

__all__ = [
    "ASPECTS",
    "DEMO_CATALOGUE",
    "REQUESTS",
    "STAGES",
    "ListenerReport",
    "LogReport",
    "evaluate_listeners",
    "evaluate_log",
    "read_catalogue",
]

DEMO_CATALOGUE: Final = Path(__file__).resolve().parent.parent / "data" / "musiccaps_demo.jsonl"
STAGES: Final = (0, 5, 10, 20)
PER_LIST: Final = 5
K: Final = 10
DEPTH: Final = 200

ASPECTS: Final[dict[str, str]] = {
    "female vocals": r"\bfemale (vocal|voice|singer)",
    "male vocals": r"\bmale (vocal|voice|singer)",
    "acoustic guitar": r"\bacoustic guitar",
    "electric guitar": r"\belectric guitar",
    "piano": r"\bpiano",
    "distortion": r"\bdistort",
    "synthesizer": r"\bsynth",
    "strings": r"\b(strings|violin|cello|orchestra)",
    "brass": r"\b(brass|trumpet|saxophone|trombone)",
    "bass": r"\bbass\b",
    "instrumental": r"\b(instrumental|no vocals|no singer|no voice)",
    "low quality": r"\b(low quality|poor audio|poor quality|noisy)",
}
"""What a listener may like or dislike: a pattern on the lower-cased aspect list."""

REQUESTS: Final[dict[str, str]] = {
    "something relaxing": r"\b(relax|calm|mellow|sooth|chill|peaceful|soft|slow)",
    "something upbeat to dance to": r"\b(upbeat|dance|danceable|energetic|groov|fast tempo)",
    "something sad": r"\b(sad|melanchol|emotional|sorrow)",
    "something happy": r"\b(happy|joyful|cheerful|uplifting|fun)",
    "something intense": r"\b(aggressive|intense|powerful|heavy|loud)",
    "something romantic": r"\b(romantic|love|sentimental|passionate)",
}
"""Generic requests, each with the pattern of the aspects that match it."""


def read_catalogue(path: str | os.PathLike[str] | None = None) -> list[Track]:
    """MusicCaps clips as tracks: the bundled 300-clip demo (``None``), its JSON lines format,
    or ``musiccaps-public.csv`` (every clip, caption and aspect list)."""
    source = DEMO_CATALOGUE if path is None else Path(path)
    if source.suffix == ".csv":
        return list(
            read_tracks(
                source, columns={"id": "ytid", "description": "caption", "tags": "aspect_list"}
            )
        )
    return list(read_tracks(source))


@dataclass(frozen=True)
class _Listener:
    name: str
    likes: tuple[str, ...]
    dislikes: str

    def gain(self, tags: str) -> int:
        if re.search(ASPECTS[self.dislikes], tags):
            return 0
        return sum(bool(re.search(ASPECTS[a], tags)) for a in self.likes)


@dataclass
class ListenerReport:
    """Mean nDCG@10 and request match per stage (events given), personal and not."""

    listeners: int
    tracks: int
    seed: int
    ndcg: dict[int, float]
    ndcg_plain: dict[int, float]
    match: dict[int, float]
    match_plain: dict[int, float]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "listeners": self.listeners,
            "tracks": self.tracks,
            "seed": self.seed,
            "stages": [
                {
                    "events": n,
                    "ndcg@10": self.ndcg[n],
                    "ndcg@10_plain": self.ndcg_plain[n],
                    "ndcg_ratio": _ratio(self.ndcg[n], self.ndcg_plain[n]),
                    "request_match": self.match[n],
                    "request_match_plain": self.match_plain[n],
                    "request_match_kept": _ratio(self.match[n], self.match_plain[n]),
                }
                for n in self.ndcg
            ],
            "seconds": self.seconds,
            **self.settings,
        }

    def to_text(self) -> str:
        """A table: one row per stage."""
        lines = [
            f"simulated listeners: {self.listeners} on {self.tracks} tracks, seed {self.seed}",
            f"{'events':>6}  {'nDCG@10':>8}  {'plain':>8}  {'ratio':>6}  "
            f"{'match':>6}  {'plain':>6}  {'kept':>6}",
        ]
        for n in self.ndcg:
            lines.append(
                f"{n:>6}  {self.ndcg[n]:>8.4f}  {self.ndcg_plain[n]:>8.4f}  "
                f"{_ratio(self.ndcg[n], self.ndcg_plain[n]):>6.2f}  {self.match[n]:>6.3f}  "
                f"{self.match_plain[n]:>6.3f}  {_ratio(self.match[n], self.match_plain[n]):>6.2f}"
            )
        return "\n".join(lines)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf if a > 0 else 1.0


def _ndcg(gains: Sequence[int], ideal: Sequence[int]) -> float:
    def dcg(values: Sequence[int]) -> float:
        return sum(g / math.log2(rank + 1) for rank, g in enumerate(values, start=1))

    best = dcg(ideal)
    return dcg(gains) / best if best > 0 else 0.0


def _listeners(rng: np.random.Generator, n: int, tags: Sequence[str]) -> list[_Listener]:
    """``n`` listeners whose liked aspects each match at least 10 tracks."""
    usable = [a for a, p in ASPECTS.items() if sum(bool(re.search(p, t)) for t in tags) >= 10]
    if len(usable) < 3:
        raise InvalidInputError("the catalogue has too few tracks per aspect for listeners")
    out = []
    for i in range(n):
        likes: list[str] = []
        dislikes = ""
        while not likes or not any(_Listener("", tuple(likes), dislikes).gain(t) for t in tags):
            picked = rng.choice(len(usable), size=3, replace=False)
            likes, dislikes = [usable[j] for j in picked[:2]], usable[picked[2]]
        out.append(_Listener(f"listener-{i}", tuple(likes), dislikes))
    return out


def evaluate_listeners(
    catalogue: str | os.PathLike[str] | Sequence[Track] | None = None,
    *,
    encoder: str = "minilm",
    listeners: int = 50,
    seed: int = 0,
    limit: int | None = None,
    depth: int = DEPTH,
) -> ListenerReport:
    """The simulated-listener protocol of the module docstring; ``catalogue`` is a path for
    :func:`read_catalogue` (default: the bundled demo) or tracks; ``limit`` keeps the first
    ``limit`` tracks; the recommender embeds ``description`` and ``tags`` with ``encoder``."""
    started = time.perf_counter()
    tracks = (
        list(catalogue)
        if isinstance(catalogue, Sequence) and not isinstance(catalogue, str)
        else read_catalogue(catalogue)
    )
    tracks = [t for t in tracks if t.tags][:limit]
    tags = {t.id: ", ".join(t.tags).lower() for t in tracks}
    rng = np.random.default_rng(seed)
    people = _listeners(rng, listeners, list(tags.values()))
    rec = Recommender(fields={"description": encoder, "tags": encoder})
    rec.add(tracks)
    for component in {id(e): e for e in rec.fields.values()}.values():
        _cache_queries(component)
    requests = list(REQUESTS)
    plain = {r: rec.search(r, k=K + max(STAGES), depth=depth) for r in requests}
    sums: dict[str, dict[int, float]] = {
        key: dict.fromkeys(STAGES, 0.0) for key in ("ndcg", "plain", "match", "match_plain")
    }
    clock = 1_700_000_000.0
    for person in people:
        gains = {i: person.gain(t) for i, t in tags.items()}
        ideal = sorted(gains.values(), reverse=True)[:K]
        judged: dict[str, str] = {}
        for stage in STAGES:
            while len(judged) < stage:
                request = requests[int(rng.integers(len(requests)))]
                shown = rec.search(request, k=K, depth=depth, user=person.name)
                given = 0
                for hit in shown:
                    if hit.track.id in judged or given == PER_LIST or len(judged) == stage:
                        continue
                    event = _reaction(person, tags[hit.track.id])
                    clock += 60.0
                    rec.feedback(person.name, hit.track.id, event, at=clock)
                    judged[hit.track.id] = event
                    given += 1
                if not given:  # every shown track judged: the next unjudged of the request
                    extra = rec.search(request, k=K + len(judged), depth=depth)
                    fresh = [h for h in extra if h.track.id not in judged][:1]
                    for hit in fresh:
                        clock += 60.0
                        event = _reaction(person, tags[hit.track.id])
                        rec.feedback(person.name, hit.track.id, event, at=clock)
                        judged[hit.track.id] = event
                    if not fresh:
                        break
            for request in requests:
                mine = rec.search(request, k=K + len(judged), depth=depth, user=person.name)
                for key, hits in (("ndcg", mine), ("plain", plain[request])):
                    top = _unjudged(hits, judged)
                    sums[key][stage] += _ndcg([gains[h.track.id] for h in top], ideal)
                    match = [bool(re.search(REQUESTS[request], tags[h.track.id])) for h in top]
                    which = "match" if key == "ndcg" else "match_plain"
                    sums[which][stage] += sum(match) / K
    runs = len(people) * len(requests)
    mean = {key: {n: v / runs for n, v in values.items()} for key, values in sums.items()}
    return ListenerReport(
        listeners=len(people),
        tracks=len(tracks),
        seed=seed,
        ndcg=mean["ndcg"],
        ndcg_plain=mean["plain"],
        match=mean["match"],
        match_plain=mean["match_plain"],
        seconds=time.perf_counter() - started,
        settings={"encoder": encoder, "depth": depth, "requests": requests},
    )


def _cache_queries(encoder: object) -> None:
    """Embed each request once: the listeners repeat the same few."""
    if not isinstance(encoder, Encoder):
        return
    embed = encoder.encode_queries
    cache: dict[tuple[str, ...], Any] = {}

    def cached(texts: Sequence[str], **options: Any) -> Any:
        options.pop("show_progress_bar", None)  # changes nothing in the vectors
        if options:
            return embed(texts, **options)
        key = tuple(texts)
        if key not in cache:
            cache[key] = embed(texts)
        return cache[key]

    encoder.encode_queries = cached  # type: ignore[method-assign]


def _reaction(person: _Listener, tags: str) -> str:
    if re.search(ASPECTS[person.dislikes], tags):
        return "dislike"
    return "like" if person.gain(tags) else "skip"


def _unjudged(hits: Hits, judged: Mapping[str, str]) -> list[Any]:
    return [h for h in hits if h.track.id not in judged][:K]


# -- interaction logs -----------------------------------------------------------------------------


@dataclass
class LogReport:
    """nDCG@10 of :meth:`Recommender.recommend` against popularity on a log's later events."""

    users: int
    events: int
    cut: float
    ndcg: float
    ndcg_popular: float

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "users": self.users,
            "events": self.events,
            "cut": self.cut,
            "ndcg@10": self.ndcg,
            "ndcg@10_popular": self.ndcg_popular,
        }

    def to_text(self) -> str:
        """One line per system."""
        return (
            f"{self.users} users, {self.events} events, split at {self.cut:.0f}\n"
            f"recommend   nDCG@10 {self.ndcg:.4f}\npopularity  nDCG@10 {self.ndcg_popular:.4f}"
        )


def evaluate_log(rec: Recommender, events: Sequence[Feedback], *, train: float = 0.8) -> LogReport:
    """The time-split log protocol of the module docstring; nothing is written to ``rec``."""
    if not 0 < train < 1:
        raise InvalidInputError(f"train must be in (0, 1), got {train!r}")
    known = [e for e in events if e.track in rec]
    if not known:
        raise InvalidInputError("no event of the log is on a track of this library")
    cut = float(np.quantile([e.at for e in known], train))
    before = [e for e in known if e.at <= cut]
    after = [e for e in known if e.at > cut and _positive(e)]
    popular: dict[str, float] = {}
    for event in before:
        popular[event.track] = popular.get(event.track, 0.0) + event.signed_weight
    ranked = sorted(popular, key=lambda t: (-popular[t], t))
    scores: list[float] = []
    scores_popular: list[float] = []
    for user in sorted({e.user for e in after}):
        mine = [e for e in before if e.user == user]
        wanted = {e.track for e in after if e.user == user}
        seen = {e.track for e in mine}
        if not mine or not wanted - seen:
            continue
        relevant = wanted - seen
        ideal = [1] * min(K, len(relevant))
        try:
            hits = rec.recommend(mine, k=K + len(seen))
        except InvalidInputError:
            hits = Hits()
        top = [h.track.id for h in hits if h.track.id not in seen][:K]
        scores.append(_ndcg([int(t in relevant) for t in top], ideal))
        top_popular = [t for t in ranked if t not in seen][:K]
        scores_popular.append(_ndcg([int(t in relevant) for t in top_popular], ideal))
    if not scores:
        raise InvalidInputError("no user has events both before and after the split")
    return LogReport(
        len(scores), len(known), cut, float(np.mean(scores)), float(np.mean(scores_popular))
    )


def _positive(event: Feedback) -> bool:
    return event.event == "like" or (event.event == "play" and (event.seconds or 0) >= 30)
