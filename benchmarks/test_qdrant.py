"""Search through the ``qdrant`` retriever in local mode next to the ``faiss`` retriever (Flat).

Both hold the same 20,000 unit vectors of 384 dimensions (2,000 when benchmarks run once,
untimed) and answer with exact inner products: one query, a batch of 16, and one query among a
tenth of the tracks (a ``where=`` filter's labels: exact search over the stored vectors of those
labels, fetched from Qdrant or FAISS, or Qdrant's own id filter). Each Qdrant test times FAISS on
the same queries in the same test and reports ``over_faiss``, the ratio of the medians. Qdrant's
local mode is its Python implementation (brute force in NumPy, one process); a Qdrant server is
not measured here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newwave import Retriever
from newwave.index.faiss import FaissRetriever
from newwave.index.qdrant import QdrantRetriever

N, SMALL_N, DIM, K = 20_000, 2_000, 384, 10
GROUP = "qdrant local vs faiss: search {} x 384, k=10"


def _unit(rows: int, seed: int) -> np.ndarray:
    out = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def size(request: pytest.FixtureRequest) -> int:
    return SMALL_N if request.config.getoption("benchmark_disable", False) else N


@pytest.fixture(scope="module")
def retrievers(size: int, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Retriever]:
    vectors, ids = _unit(size, 0), [f"t{i}" for i in range(size)]
    folder: Path = tmp_path_factory.mktemp("qdrant")
    built: dict[str, Retriever] = {
        "faiss": FaissRetriever(DIM),
        "qdrant": QdrantRetriever(DIM, path=folder, collection="bench"),
    }
    for retriever in built.values():
        retriever.add(ids, vectors)
    return built


@pytest.fixture
def run(
    benchmark: Any, median_s: Callable[..., float], retrievers: dict[str, Retriever]
) -> Callable[..., None]:
    """``run(name, queries, **kw)``: times that retriever's search; Qdrant's times FAISS too."""

    def run(name: str, queries: np.ndarray, **kw: Any) -> None:
        rankings = benchmark(retrievers[name].search, queries, K, **kw)
        expected = retrievers["faiss"].search(queries, K, **kw)
        assert [r.ids for r in rankings] == [r.ids for r in expected]
        if name == "qdrant" and not benchmark.disabled:
            faiss = median_s(lambda: retrievers["faiss"].search(queries, K, **kw), 20)
            benchmark.extra_info["baseline"] = "faiss retriever (Flat), same queries"
            benchmark.extra_info["over_faiss"] = benchmark.stats.stats.median / faiss

    return run


@pytest.mark.parametrize("name", ["faiss", "qdrant"])
def test_one_query(benchmark: Any, run: Callable[..., None], name: str, size: int) -> None:
    benchmark.group = GROUP.format(size) + ", 1 query"
    run(name, _unit(1, 1))


@pytest.mark.parametrize("name", ["faiss", "qdrant"])
def test_16_queries(benchmark: Any, run: Callable[..., None], name: str, size: int) -> None:
    benchmark.group = GROUP.format(size) + ", 16 queries"
    run(name, _unit(16, 2))


@pytest.mark.parametrize("name", ["faiss", "qdrant", "qdrant-id-filter"])
def test_one_query_among_a_tenth(
    benchmark: Any,
    run: Callable[..., None],
    retrievers: dict[str, Retriever],
    name: str,
    size: int,
) -> None:
    """``qdrant`` fetches the vectors of those labels (its choice in local mode);
    ``qdrant-id-filter`` uses Qdrant's ``HasIdCondition`` filter (its choice on a server)."""
    benchmark.group = GROUP.format(size) + ", 1 query among 10%"
    among = {f"t{i}" for i in range(0, size, 10)}
    qdrant = retrievers["qdrant"]
    assert isinstance(qdrant, QdrantRetriever)
    qdrant.id_filter = name == "qdrant-id-filter"
    try:
        run(name.removesuffix("-id-filter"), _unit(1, 3), among=among)
    finally:
        qdrant.id_filter = False
