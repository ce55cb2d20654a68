"""From per-channel rankings to hits: fusion, the joint index's scores, unwanted attributes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from newwave._checks import positive_int
from newwave.fusion.base import Fuser
from newwave.query.base import ParsedQuery, track_text
from newwave.search.channels import JointChannel, Query
from newwave.search.defaults import UNWANTED_FACTOR
from newwave.store.database import LibraryStore
from newwave.types import AudioInput, Hit, Ranking

__all__ = [
    "audio_query",
    "check_k_and_depth",
    "demote_unwanted",
    "fused_hits",
    "fused_hits_many",
    "joint_hits",
]


def check_k_and_depth(k: int, depth: int | None) -> int:
    """``depth``, defaulting to ``max(4 * k, 50)``, after checking both."""
    from newwave.errors import InvalidInputError

    positive_int(k, "k")
    depth = max(4 * k, 50) if depth is None else depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < k:
        raise InvalidInputError(f"depth must be an integer >= k ({k}), got {depth!r}")
    return depth


def audio_query(audio: AudioInput) -> Query:
    """A query by example, its input checked (a file must exist) before anything is embedded."""
    from pathlib import Path

    from newwave.encoders.base import Encoder
    from newwave.errors import AudioDecodeError, MissingFileError

    (checked,) = Encoder._check_audio([audio])
    if isinstance(checked, str):
        if not Path(checked).exists():
            raise MissingFileError(f"no such file: {checked}")
        if not Path(checked).is_file():
            raise AudioDecodeError(f"{checked}: not a regular file")
    return Query(audio=checked)


def fused_hits(
    store: LibraryStore, fuser: Fuser, rankings: Mapping[str, Ranking], k: int
) -> list[Hit]:
    """The ``k`` best tracks of the fused ``rankings``, each with its per-channel scores.

    A track absent from a channel that does not hold it (no value in that field) is judged on
    its other channels (the fuser's coverage), read from the store for the candidates only.
    """
    return fused_hits_many(store, fuser, [rankings], [k])[0]


def fused_hits_many(
    store: LibraryStore,
    fuser: Fuser,
    rankings: Sequence[Mapping[str, Ranking]],
    ks: Sequence[int],
) -> list[list[Hit]]:
    """:func:`fused_hits` of each query's ``rankings`` and ``k``, reading the store once."""
    candidates = list(dict.fromkeys(i for each in rankings for r in each.values() for i in r.ids))
    labels = store.labels(candidates)  # a track removed since an index was saved is dropped
    held = store.channel_labels(list(labels.values()))
    names = {name for each in rankings for name in each}
    holders = {  # per channel, the candidates it holds
        name: {i for i, label in labels.items() if label in held.get(name, ())} for name in names
    }
    fused_all = []
    kept_all = []
    for each, k in zip(rankings, ks, strict=True):
        mine = {i for r in each.values() for i in r.ids if i in labels}
        coverage = {name: mine & holders[name] for name in each}
        kept = {
            name: ranking
            if all(map(labels.__contains__, ranking.ids))
            else Ranking(*_only(ranking, labels))
            for name, ranking in each.items()
        }
        fused_all.append(fuser.fuse(kept, k=k, coverage=coverage))
        kept_all.append(kept)
    tracks = store.tracks(list(dict.fromkeys(i for f in fused_all for i in f.ids)))  # hits only
    hits = []
    for fused, kept in zip(fused_all, kept_all, strict=True):
        per_channel = {name: r.as_dict() for name, r in kept.items()}
        places = {name: {i: n for n, i in enumerate(r.ids, start=1)} for name, r in kept.items()}
        hits.append(
            [
                Hit(
                    track=tracks[track_id],
                    score=score,
                    rank=rank,
                    scores={n: s[track_id] for n, s in per_channel.items() if track_id in s},
                    ranks={n: p[track_id] for n, p in places.items() if track_id in p},
                )
                for rank, (track_id, score) in enumerate(fused, start=1)
            ]
        )
    return hits


def joint_hits(
    store: LibraryStore, joint: JointChannel, found: Ranking, query_vectors: Mapping[str, object]
) -> list[Hit]:
    """Hits of the joint index; ``scores`` has "joint" and each fused channel's cosine."""
    import numpy as np

    tracks = store.tracks(list(found.ids))
    ids = [i for i in found.ids if i in tracks]
    labels = store.labels(ids)
    rows = [labels[i] for i in ids]
    cosines: dict[str, tuple[list[float], list[bool]]] = {}
    for name, query in query_vectors.items():
        vectors = store.vectors(name, rows, joint.fuser.input_dims[name])
        values = vectors @ np.asarray(query, dtype=np.float32)[0]
        cosines[name] = (values.tolist(), np.any(vectors != 0, axis=1).tolist())
    hits = []
    score_of = found.as_dict()
    for rank, track_id in enumerate(ids, start=1):
        scores = {"joint": score_of[track_id]}
        for name, (values, present) in cosines.items():
            if present[rank - 1]:
                scores[name] = values[rank - 1]
        hits.append(Hit(track=tracks[track_id], score=score_of[track_id], rank=rank, scores=scores))
    return hits


def demote_unwanted(hits: list[Hit], parsed: ParsedQuery) -> list[Hit]:
    """``hits`` re-ranked with the scores of tracks expressing an unwanted attribute scaled."""
    scored = []
    for hit in hits:
        _, unwanted = parsed.judge(track_text(hit.track))
        scored.append((hit.score * UNWANTED_FACTOR if unwanted else hit.score, hit))
    scored.sort(key=lambda item: (-item[0], item[1].rank))
    return [
        Hit(track=hit.track, score=score, rank=rank, scores=hit.scores, ranks=hit.ranks)
        for rank, (score, hit) in enumerate(scored, start=1)
    ]


def _only(
    ranking: Ranking, tracks: Mapping[str, object]
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    kept = [(i, s) for i, s in ranking if i in tracks]
    return tuple(i for i, _ in kept), tuple(s for _, s in kept)
