"""Exact search through the FAISS retriever, against NumPy brute force on the same vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from newwave.index.faiss import FaissRetriever

N, DIM, QUERIES, K = 20_000, 384, 16, 10


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((N, DIM)).astype(np.float32)
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return base, queries


def _numpy_top_k(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ base.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


@pytest.mark.benchmark(group="search 20k x 384, 16 queries, k=10")
def test_numpy_brute_force_baseline(benchmark: Any, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    top = benchmark(_numpy_top_k, base, queries)
    assert top.shape == (QUERIES, K)


@pytest.mark.benchmark(group="search 20k x 384, 16 queries, k=10")
def test_faiss_retriever_flat(benchmark: Any, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    retriever = FaissRetriever(DIM)
    retriever.add([f"t{i}" for i in range(N)], base)
    rankings = benchmark(retriever.search, queries, K)
    expected = _numpy_top_k(base, queries)
    assert [r.ids[0] for r in rankings] == [f"t{i}" for i in expected[:, 0]]
