"""What the ONNX parity tests share: the export cache and the smallest cosine between rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from newwave.encoders import _onnx


@pytest.fixture
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exports go to this session's temporary folder (shared by the tests and benchmarks)."""
    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    monkeypatch.setenv(_onnx.CACHE_ENV, str(cache))
    return cache


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine between the rows of ``a`` and of ``b`` (unit rows, same shape)."""
    assert a.shape == b.shape
    return float((a * b).sum(axis=1).min())
