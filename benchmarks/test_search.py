"""Exact search through the FAISS retriever, against FAISS itself and NumPy on the same vectors.

- Small batches: with faiss-cpu 1.15, FAISS sends fewer than 128,000 / dim queries (333 of 384
  dimensions) to a per-query kernel; the retriever sends batches of 16+ to its BLAS kernel. The
  group times it before (``batch_blas`` off, i.e. FAISS's choice) and after, and NumPy.
- Overhead: ``FaissRetriever.search`` (validation, string ids, Ranking objects) over a raw FAISS
  search of the same vectors, for one query and a batch of 16, over 10,000 and 100,000 tracks
  (2,000 and 5,000 when benchmarks run once, untimed). The retriever's test reports the ratio
  of its median to the raw one, timed in the same test, in ``extra_info``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from newwave.index.faiss import FaissRetriever

N, DIM, QUERIES, K = 20_000, 384, 16, 10


def _unit(rows: int, seed: int) -> np.ndarray:
    out = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return _unit(N, 0), _unit(QUERIES, 1)


@pytest.fixture(scope="module")
def flat(data: tuple[np.ndarray, np.ndarray]) -> FaissRetriever:
    retriever = FaissRetriever(DIM)
    retriever.add([f"t{i}" for i in range(N)], data[0])
    return retriever


def _numpy_top_k(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ base.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


@contextmanager
def _blas_threshold(value: int) -> Iterator[None]:
    import faiss

    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = value
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


# -- small batches: FAISS's per-query kernel against its BLAS kernel ------------------------


@pytest.mark.benchmark(group="search 20k x 384, 16 queries, k=10")
def test_numpy_brute_force_baseline(benchmark: Any, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    top = benchmark(_numpy_top_k, base, queries)
    assert top.shape == (QUERIES, K)


@pytest.mark.benchmark(group="search 20k x 384, 16 queries, k=10")
def test_faiss_retriever_flat_before(
    benchmark: Any,
    data: tuple[np.ndarray, np.ndarray],
    flat: FaissRetriever,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: FAISS picks its kernel (the per-query one for 16 queries)."""
    monkeypatch.setattr(flat, "batch_blas", False)
    rankings = benchmark(flat.search, data[1], K)
    expected = _numpy_top_k(*data)
    assert [r.ids[0] for r in rankings] == [f"t{i}" for i in expected[:, 0]]


@pytest.mark.benchmark(group="search 20k x 384, 16 queries, k=10")
def test_faiss_retriever_flat(
    benchmark: Any,
    median_s: Callable[..., float],
    data: tuple[np.ndarray, np.ndarray],
    flat: FaissRetriever,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After: the batch runs through FAISS's BLAS kernel."""
    rankings = benchmark(flat.search, data[1], K)
    expected = _numpy_top_k(*data)
    assert [r.ids[0] for r in rankings] == [f"t{i}" for i in expected[:, 0]]
    if not benchmark.disabled:
        with monkeypatch.context() as patch:
            patch.setattr(flat, "batch_blas", False)
            before = median_s(lambda: flat.search(data[1], K), 30)
        benchmark.extra_info["before_over_after"] = before / benchmark.stats.stats.median


# -- the retriever's overhead over raw FAISS ------------------------------------------------


@functools.lru_cache(maxsize=1)
def _overhead_setup(tracks: int) -> tuple[Any, FaissRetriever, np.ndarray]:
    import faiss

    vectors = _unit(tracks, 2)
    raw = faiss.IndexFlatIP(DIM)
    raw.add(vectors)
    retriever = FaissRetriever(DIM)
    retriever.add([f"t{i}" for i in range(tracks)], vectors)
    return raw, retriever, _unit(QUERIES, 3)


def _overhead(benchmark: Any, tracks: int, batch: int) -> tuple[Any, FaissRetriever, np.ndarray]:
    tracks = min(tracks, 2_000 if tracks <= 10_000 else 5_000) if benchmark.disabled else tracks
    queries = "1 query" if batch == 1 else f"{batch} queries"
    benchmark.group = f"overhead: {tracks:,} x {DIM}, {queries}, k={K}"
    raw, retriever, pool = _overhead_setup(tracks)
    return raw, retriever, pool[:batch]


@pytest.mark.parametrize("batch", [1, QUERIES])
@pytest.mark.parametrize("tracks", [10_000, 100_000])
def test_raw_faiss_baseline(benchmark: Any, tracks: int, batch: int) -> None:
    """FAISS's own search of an IndexFlatIP with the same vectors, FAISS's default kernel."""
    raw, _, queries = _overhead(benchmark, tracks, batch)
    _, labels = benchmark(raw.search, queries, K)
    assert labels.shape == (batch, K)


@pytest.mark.parametrize("tracks", [10_000, 100_000])
def test_raw_faiss_blas_kernel(benchmark: Any, tracks: int) -> None:
    """The same, for the batch, with FAISS's BLAS kernel: what the retriever runs."""
    raw, _, queries = _overhead(benchmark, tracks, QUERIES)
    with _blas_threshold(1):
        _, labels = benchmark(raw.search, queries, K)
    assert labels.shape == (QUERIES, K)


@pytest.mark.parametrize("batch", [1, QUERIES])
@pytest.mark.parametrize("tracks", [10_000, 100_000])
def test_faiss_retriever_search(
    benchmark: Any, median_s: Callable[..., float], tracks: int, batch: int
) -> None:
    raw, retriever, queries = _overhead(benchmark, tracks, batch)
    rankings = benchmark(retriever.search, queries, K)
    _, labels = raw.search(queries, K)
    assert [r.ids[0] for r in rankings] == [f"t{i}" for i in labels[:, 0]]
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["over_raw_faiss"] = median / median_s(lambda: raw.search(queries, K), 30)
    if batch > 1:  # the wrapper alone: raw FAISS on the kernel that the retriever picks
        with _blas_threshold(1):
            same_kernel = median_s(lambda: raw.search(queries, K), 30)
        benchmark.extra_info["over_raw_faiss_same_kernel"] = median / same_kernel
