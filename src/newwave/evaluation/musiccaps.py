"""The MusicCaps text benchmark: captions against aspect lists, the setting of Epure et al.
(NLP4MusA 2024).

MusicCaps (Agostinelli et al., 2023; CC BY-SA 4.0) gives each of 5,521 ten-second clips a
caption and an aspect list (``"['pop', 'tinny wide hi hats', ...]"``). The benchmark uses only
the clips of the evaluation split (``is_audioset_eval`` true; 2,858 clips): the queries are their
captions, the candidates their aspect lists, one per clip, and a caption's one relevant candidate
is its own clip's aspect list. The train split is never evaluated on nor fitted to.

Systems, reported side by side (:data:`DEFAULT_SYSTEMS`):

* ``tfidf``: scikit-learn's ``TfidfVectorizer`` (default settings) fitted on the candidates'
  aspect texts (the aspects joined with ``", "``), cosine similarity.
* an encoder spec, e.g. ``minilm`` or ``bge-m3``: ``Recommender(fields={"tags": spec})`` over
  tracks ``Track(id=ytid, tags=aspects)``; the spec goes to the Recommender unchanged, so a list
  of names works wherever the Recommender accepts one.
* ``defaults``: ``Recommender()`` with no fields, whatever it picks for such tracks.

A system named as a string may join encoders with ``+`` (``"bm25+minilm"``: a hybrid field, the
same as the list ``["bm25", "minilm"]``) and end with ``/no-rewrite`` (:data:`NO_REWRITE`): its
searches then skip the Recommender's query rewriter (``rewrite=False``); otherwise
they use it, as ``Recommender.search`` does by default.

Recommender systems rank with :meth:`Recommender.search_many` (the hits of
:meth:`Recommender.search`, in batches) at ``k`` = ``depth`` = the number of candidates, so every
candidate is ranked and MRR and the median rank are exact, not cut. A system
whose encoder cannot load (no weights, a missing extra) is reported as skipped, with the reason.

Two query sets (:data:`QUERY_SETS`): ``captions``, the captions as they are, and ``requests``,
each caption rephrased as a listener's request by
:func:`~newwave.evaluation.paraphrase.paraphrase_as_request`, seeded with the CRC-32 of the
clip's id (the same request for a clip whatever ``limit`` and file order).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, get_args

import numpy as np
from tqdm.auto import tqdm

from newwave.errors import (
    ComponentUnavailableError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
)
from newwave.evaluation.paraphrase import paraphrase_as_request
from newwave.evaluation.report import METRICS, format_table, metrics_json
from newwave.metrics import EvaluationResult, evaluate, evaluate_dense
from newwave.readers import read_tracks
from newwave.recommender import Recommender
from newwave.types import Track

__all__ = [
    "DEFAULT_SYSTEMS",
    "ENV_VAR",
    "NO_REWRITE",
    "PROTOCOL",
    "QUERY_SETS",
    "MusicCapsClip",
    "MusicCapsReport",
    "SAMPLE_SEED",
    "QuerySet",
    "SystemResult",
    "SystemSpec",
    "evaluate_musiccaps",
    "read_musiccaps_eval",
    "request_for",
    "system_name",
]

SystemSpec: TypeAlias = str | Sequence[str]
"""``"tfidf"``, ``"defaults"``, or the encoder spec of a Recommender's ``tags`` field; a string
may join encoders with ``+`` and end with :data:`NO_REWRITE`."""
QuerySet: TypeAlias = Literal["captions", "requests"]
"""The captions as they are, or rephrased as requests (:func:`request_for`)."""
QUERY_SETS: Final[tuple[str, ...]] = get_args(QuerySet)
NO_REWRITE: Final = "/no-rewrite"
"""The suffix of a Recommender system searched without its query rewriter."""

DEFAULT_SYSTEMS: Final[tuple[str, ...]] = ("tfidf", "minilm", "bge-m3", "defaults")
SAMPLE_SEED: Final = 0
"""The seed that draws the clips of ``sample``."""
ENV_VAR: Final = "NEWWAVE_MUSICCAPS"
"""The environment variable naming ``musiccaps-public.csv`` when no path is given."""
PROTOCOL: Final = (
    "text-to-text (Epure et al., NLP4MusA 2024): queries are the captions of the evaluation "
    "split (is_audioset_eval true); candidates are the same clips' aspect lists; relevant: the "
    "query's own clip; every candidate is ranked, so MRR and the median rank are exact"
)

_CANNOT_LOAD = (ModelNotFoundError, MissingDependencyError, ComponentUnavailableError)
_SEARCH_BATCH = 128  # queries per Recommender.search_many call (each ranks every clip)


@dataclass(frozen=True)
class MusicCapsClip:
    """A clip of the evaluation split: its YouTube id, caption and aspects."""

    ytid: str
    caption: str
    aspects: tuple[str, ...]

    @property
    def aspect_text(self) -> str:
        """The aspects as one text, joined as the Recommender joins tags."""
        return ", ".join(self.aspects)


def read_musiccaps_eval(
    path: str | os.PathLike[str], *, limit: int | None = None
) -> list[MusicCapsClip]:
    """The clips of the evaluation split of ``musiccaps-public.csv``, in file order.

    The ``aspect_list`` strings are parsed as list literals without evaluating anything.
    ``limit`` keeps the first ``limit`` clips. Raises :class:`MissingFileError` for a missing file,
    :class:`InvalidInputError` for missing columns (``ytid``, ``caption``, ``aspect_list``,
    ``is_audioset_eval``), an ``is_audioset_eval`` that is not true/false, an evaluation clip
    without caption or aspects, or no evaluation clip at all.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"limit must be a positive integer or None, got {limit!r}")
    tracks = read_tracks(
        path,
        columns={"id": "ytid", "description": "caption", "tags": "aspect_list"},
        metadata=["is_audioset_eval"],
    )
    clips: list[MusicCapsClip] = []
    for track in tracks:
        flag = track.metadata.get("is_audioset_eval")
        if not isinstance(flag, bool):
            raise InvalidInputError(
                f"{path}: clip {track.id!r}: is_audioset_eval must be True or False, got {flag!r}"
            )
        if not flag:
            continue
        if not track.description:
            raise InvalidInputError(f"{path}: evaluation clip {track.id!r} has no caption")
        if not track.tags:
            raise InvalidInputError(f"{path}: evaluation clip {track.id!r} has no aspects")
        clips.append(MusicCapsClip(track.id, track.description, track.tags))
        if limit is not None and len(clips) == limit:
            break
    if not clips:
        raise InvalidInputError(f"{path} has no clip of the evaluation split (is_audioset_eval)")
    return clips


def system_name(spec: SystemSpec) -> str:
    """How a system is named in reports: the spec, a list's names joined with ``+``."""
    return spec if isinstance(spec, str) else "+".join(spec)


def request_for(clip: MusicCapsClip) -> str:
    """The clip's caption rephrased as a request, seeded with the CRC-32 of its id."""
    return paraphrase_as_request(clip.caption, zlib.crc32(clip.ytid.encode("utf-8")))


@dataclass(frozen=True)
class _System:
    """A system to run: its report name, what the ``tags`` field gets, whether to rewrite."""

    name: str
    spec: SystemSpec
    rewrite: bool | None  # None: tfidf, which has no rewriter

    @classmethod
    def parse(cls, given: SystemSpec) -> _System:
        name = system_name(given)
        if not isinstance(given, str):
            parts = list(given)
            if not parts or not all(isinstance(part, str) and part for part in parts):
                raise InvalidInputError(f"a system's encoders must be names, got {given!r}")
            return cls(name, parts, rewrite=True)
        base = given.removesuffix(NO_REWRITE)
        rewrite = base == given
        parts = base.split("+")
        if not all(parts):
            raise InvalidInputError(
                f"system {given!r}: expected tfidf, defaults or encoder names joined with '+', "
                f"optionally ending with {NO_REWRITE!r}"
            )
        if base == "tfidf":
            if not rewrite:
                raise InvalidInputError(f"{given!r}: tfidf has no query rewriter to turn off")
            return cls(name, base, rewrite=None)
        return cls(name, base if len(parts) == 1 else parts, rewrite)


@dataclass(frozen=True)
class SystemResult:
    """One system's run: its metrics, or why it was skipped."""

    name: str
    setup: str
    """What ran, in words (e.g. the Recommender's fields and models)."""
    result: EvaluationResult | None
    skipped: str | None = None
    index_seconds: float = 0.0
    """Fitting the vectorizer, or ``Recommender.add`` of every candidate."""
    search_seconds: float = 0.0
    """Embedding and scoring every query (tfidf), or every ``Recommender.search`` call."""
    rewrite: bool | None = None
    """Whether the Recommender's query rewriter read the queries (None for tfidf)."""

    @property
    def queries_per_second(self) -> float | None:
        """Queries searched per second, None for a skipped system."""
        if self.result is None or self.search_seconds <= 0:
            return None
        return self.result.num_queries / self.search_seconds

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "name": self.name,
            "setup": self.setup,
            "rewrite": self.rewrite,
            "skipped": self.skipped,
            "metrics": metrics_json(self.result) if self.result is not None else None,
            "queries": self.result.num_queries if self.result is not None else 0,
            "index_seconds": self.index_seconds,
            "search_seconds": self.search_seconds,
            "queries_per_second": self.queries_per_second,
        }


@dataclass(frozen=True)
class MusicCapsReport:
    """The outcome of :func:`evaluate_musiccaps`."""

    csv: str
    clips: int
    """The evaluation clips used: the candidates, and the queries unless ``sample``."""
    limit: int | None
    systems: tuple[SystemResult, ...]
    query_set: QuerySet = "captions"
    """The queries: the captions, or the captions rephrased as requests."""
    sample: int | None = None
    """Queries of only this many clips (a seeded sample), against every candidate."""

    @property
    def queries(self) -> int:
        """The queries searched: every clip's, or the sample's."""
        return self.clips if self.sample is None else self.sample

    def __getitem__(self, name: str) -> SystemResult:
        """The result of the system ``name``."""
        for system in self.systems:
            if system.name == name:
                return system
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "benchmark": "musiccaps-text",
            "protocol": PROTOCOL,
            "query_set": self.query_set,
            "csv": self.csv,
            "queries": self.queries,
            "candidates": self.clips,
            "limit": self.limit,
            "sample": self.sample,
            "systems": [system.as_dict() for system in self.systems],
        }

    def to_text(self) -> str:
        """The report as printed by ``newwave evaluate musiccaps``."""
        limited = f", the first {self.limit} clips only" if self.limit is not None else ""
        rephrased = ", rephrased as requests," if self.query_set == "requests" else ""
        sampled = f" (a sample, seed {SAMPLE_SEED})" if self.sample is not None else ""
        their = "their" if self.sample is None else "all"
        lines = [
            f"MusicCaps text benchmark: {self.queries} captions of the evaluation split"
            f"{sampled}{rephrased} against {their} {self.clips} aspect lists{limited}",
            f"protocol: {PROTOCOL}",
            "",
        ]
        ran = [s for s in self.systems if s.result is not None]
        if ran:
            rows = [(s.name, s.result.means) for s in ran if s.result is not None]
            speed = [f"{s.queries_per_second or 0:.1f}" for s in ran]
            lines += [format_table(rows, extra=[("queries/s", speed)]), ""]
        lines.append("systems:")
        for system in self.systems:
            if system.skipped is not None:
                lines.append(f"- {system.name}: skipped: {system.skipped}")
            else:
                lines.append(
                    f"- {system.name}: {system.setup}; indexed in {system.index_seconds:.1f} s"
                )
        return "\n".join(lines)


def evaluate_musiccaps(
    csv_path: str | os.PathLike[str] | None = None,
    *,
    systems: Sequence[SystemSpec] = DEFAULT_SYSTEMS,
    queries: QuerySet = "captions",
    limit: int | None = None,
    sample: int | None = None,
    show_progress: bool | None = None,
) -> MusicCapsReport:
    """Run the MusicCaps text benchmark for each of ``systems``, side by side.

    ``csv_path`` is ``musiccaps-public.csv`` (default: the path in ``$NEWWAVE_MUSICCAPS``).
    ``queries`` is ``"captions"`` or ``"requests"`` (each caption rephrased as a request by
    :func:`request_for`). ``limit`` uses only the first ``limit`` evaluation clips, as queries
    and as candidates (a smaller, easier task: not comparable with the full one). ``sample``
    searches the queries of only ``sample`` clips, drawn at random with seed
    :data:`SAMPLE_SEED`, each against every candidate: the same task as the full run, its
    figures an estimate of the full run's (for quick comparisons). A system is
    ``"tfidf"``, ``"defaults"`` or an encoder spec for the ``tags`` field, a string of them
    joined with ``+``, optionally ending with ``/no-rewrite`` (see the module docstring).
    """
    if csv_path is None:
        csv_path = os.environ.get(ENV_VAR) or None
        if csv_path is None:
            raise InvalidInputError(
                f"no MusicCaps CSV: pass its path (--csv) or set {ENV_VAR}=musiccaps-public.csv"
            )
    if queries not in QUERY_SETS:
        raise InvalidInputError(f"queries must be one of {', '.join(QUERY_SETS)}, got {queries!r}")
    if isinstance(systems, str):
        raise InvalidInputError(f"systems is a list of systems; wrap one: [{systems!r}]")
    parsed = [_System.parse(spec) for spec in systems]
    if not parsed:
        raise InvalidInputError("no system to evaluate; e.g. systems=['tfidf', 'minilm']")
    names = [system.name for system in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInputError(f"system {repeated[0]!r} is listed twice")
    clips = read_musiccaps_eval(csv_path, limit=limit)
    asked = _sampled(len(clips), sample)
    texts = [clips[i].caption if queries == "captions" else request_for(clips[i]) for i in asked]
    results = []
    for system in parsed:
        if system.rewrite is None:
            results.append(_tfidf(clips, asked, texts))
        else:
            results.append(_recommender(system, clips, asked, texts, show_progress))
    return MusicCapsReport(
        csv=os.fspath(Path(csv_path)),
        clips=len(clips),
        limit=limit,
        systems=tuple(results),
        query_set=queries,
        sample=sample,
    )


def _sampled(clips: int, sample: int | None) -> list[int]:
    """The clips whose queries are searched: all, or ``sample`` of them drawn with
    :data:`SAMPLE_SEED`, in file order."""
    if sample is None:
        return list(range(clips))
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise InvalidInputError(f"sample must be a positive integer or None, got {sample!r}")
    if sample > clips:
        raise InvalidInputError(f"sample={sample} is more than the {clips} clips")
    chosen = np.random.default_rng(SAMPLE_SEED).choice(clips, sample, replace=False)
    return sorted(int(i) for i in chosen)


def _tfidf(
    clips: Sequence[MusicCapsClip], asked: Sequence[int], texts: Sequence[str]
) -> SystemResult:
    from sklearn.feature_extraction.text import TfidfVectorizer

    ids = [clip.ytid for clip in clips]
    started = time.perf_counter()
    vectorizer = TfidfVectorizer()
    candidates = vectorizer.fit_transform([clip.aspect_text for clip in clips])
    fitted = time.perf_counter()
    queries = vectorizer.transform(texts)
    scores = np.asarray((queries @ candidates.T).toarray(), dtype=np.float32)
    searched = time.perf_counter()
    result = evaluate_dense(
        scores, [[i] for i in asked], METRICS, query_ids=[ids[i] for i in asked], candidate_ids=ids
    )
    return SystemResult(
        name="tfidf",
        setup="scikit-learn TfidfVectorizer (defaults) fitted on the aspect texts, cosine",
        result=result,
        index_seconds=fitted - started,
        search_seconds=searched - fitted,
    )


def _recommender(
    system: _System,
    clips: Sequence[MusicCapsClip],
    asked: Sequence[int],
    texts: Sequence[str],
    show_progress: bool | None,
) -> SystemResult:
    spec, rewrite = system.spec, bool(system.rewrite)
    if spec == "defaults":
        described = "Recommender()"
    else:
        described = f"Recommender(fields={{'tags': {spec!r}}})"
    started = time.perf_counter()
    try:
        if spec == "defaults":
            rec = Recommender()
        else:
            fields: dict[str, Any] = {"tags": spec}  # passed through as given
            rec = Recommender(fields=fields)
        rec.add([Track(id=clip.ytid, tags=clip.aspects) for clip in clips])
    except _CANNOT_LOAD as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return SystemResult(
            system.name, described, None, skipped=f"{type(exc).__name__}: {reason}", rewrite=rewrite
        )
    indexed = time.perf_counter()
    chosen = ", ".join(f"{f}={e.name} ({e.model_id})" for f, e in rec.fields.items())
    reader = rec.rewriter.name if rewrite and rec.rewriter is not None else None
    n = len(clips)
    disable = None if show_progress is None else not show_progress
    run: dict[str, list[str]] = {}
    queried = [clips[i] for i in asked]
    with tqdm(
        total=len(queried), desc=f"musiccaps {system.name}", unit="query", disable=disable
    ) as bar:
        for start in range(0, len(queried), _SEARCH_BATCH):
            chunk = texts[start : start + _SEARCH_BATCH]
            found = rec.search_many(chunk, k=n, depth=n, rewrite=rewrite)
            for clip, hits in zip(queried[start : start + _SEARCH_BATCH], found, strict=True):
                run[clip.ytid] = [hit.track.id for hit in hits]
            bar.update(len(chunk))
    searched = time.perf_counter()
    qrels = {clips[i].ytid: {clips[i].ytid: 1} for i in asked}
    return SystemResult(
        name=system.name,
        setup=f"{described}: {chosen}; fuser {_fuser_text(rec)}; rewriter {reader or 'off'}",
        result=evaluate(run, qrels, METRICS),
        index_seconds=indexed - started,
        search_seconds=searched - indexed,
        rewrite=rewrite,
    )


def _fuser_text(rec: Recommender) -> str:
    """The fuser's name and its options, e.g. ``weighted {'weights': {'tags:bm25': 2.0}}``."""
    options = rec.fuser.get_config()
    return f"{rec.fuser.name} {options}" if options else rec.fuser.name
