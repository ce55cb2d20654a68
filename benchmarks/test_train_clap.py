"""The CLAP trainer generalises: retrieval on held-out synthetic tones, before and after training.

A tiny, randomly initialised CLAP (the one of ``tests/test_train_clap.py``, whose tone and model
helpers this file loads) is fine-tuned with ``train_clap`` on 64 captioned tones: each tone's
pitch (low/high), rhythm (steady/pulsing) and timbre (sine/square) are named by its caption, and
the curriculum grows from one 10 s window and 8 tokens to three windows and 16 tokens. 32
other tones (another seed: new pitches, loudness, pulse rates and phases) are held out. Each
held-out caption ranks the 32 held-out tones; a tone is relevant when it has the caption's
class (chance: a hit rate@1 of 1/8). The baseline is the same model before training, measured
in the same run; ``extra_info`` has both, in ``hit_rate@1_before/after`` and
``mrr_before/after``, with the training seconds and steps. CPU, one thread.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from newwave.encoders.clap import ClapEncoder
from newwave.train.clap import train_clap


def _helpers() -> ModuleType:
    """``tests/test_train_clap.py``, for its tones, tiny model and config."""
    path = Path(__file__).resolve().parents[1] / "tests" / "test_train_clap.py"
    spec = importlib.util.spec_from_file_location("_train_clap_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_retrieval_before_and_after_training(benchmark: Any, tmp_path: Path) -> None:
    pytest.importorskip("hypothesis")  # imported by the helpers' module (newwave-music[test])
    helpers = _helpers()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = helpers.build_tiny_clap(tmp_path / "tiny-clap")
        train, _ = helpers.tones(64, seed=10)
        held_out, classes = helpers.tones(32, seed=11)
        before = helpers.class_metrics(ClapEncoder(model=model, device="cpu"), held_out, classes)
        config = helpers.tiny_config(tmp_path / "run", model, epochs=40)

        def run() -> tuple[Any, float]:
            start = time.perf_counter()
            return train_clap(config, data=train), time.perf_counter() - start

        result, seconds = benchmark.pedantic(run, rounds=1, iterations=1)
        after = helpers.class_metrics(result.encoder, held_out, classes)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info["baseline"] = "the same model before training (*_before)"
    for name in ("hit_rate@1", "mrr"):
        benchmark.extra_info[f"{name}_before"] = round(before[name], 4)
        benchmark.extra_info[f"{name}_after"] = round(after[name], 4)
    benchmark.extra_info["training_seconds"] = round(seconds, 1)
    benchmark.extra_info["steps"] = result.training.steps
    assert before["hit_rate@1"] < 0.3
    assert after["hit_rate@1"] > before["hit_rate@1"] + 0.4
    assert after["mrr"] > before["mrr"] + 0.3
