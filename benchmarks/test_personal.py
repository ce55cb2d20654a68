"""Personal search at scale (issue 14): a library of N tracks (one 384-d channel, vectors given)
holding E feedback events of 1,000 users, built once through the public API.

- **feedback**: one ``Recommender.feedback`` (a transaction on the live library), against one
  plain ``search`` of the same library (the baseline);
- **taste update**: computing a user's taste from their stored events (the latest 500), against
  the same baseline;
- **personal search**: ``search(query, user=...)``, against the plain search;
- **collaborative fit**: ``fit_collaborative()`` (ALS on all E events, the ``implicit`` extra),
  against the plain search;
- **collaborative search**: the personal search with the ALS term, against the personal search
  without it (run before the factors exist).

N = E = 100,000 when timed (``NEWWAVE_BENCH_PERSONAL_TRACKS`` overrides N) and 5,000 when the
benchmarks run once untimed (``--benchmark-disable``). The issue asks each under 50 ms.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newwave import Encoder, Recommender, Track, hookimpl
from newwave.plugins import get_plugin_manager
from newwave.search.personal import Feedback, taste

DIM = 384
USERS = 1_000
USER = "user-7"


class WidthEncoder(Encoder):
    """Feature-hashed words at 384 dimensions (the tracks' vectors are given)."""

    name = "width-384-personal"
    modalities = frozenset({"text"})

    @property
    def dim(self) -> int:
        return DIM

    def _encode_batch(self, batch: list[Any], modality: Any, role: Any) -> Any:
        out = np.zeros((len(batch), DIM), dtype=np.float32)
        for row, text in enumerate(batch):
            for word in str(text).split():
                out[row, sum(map(ord, word)) % DIM] += 1.0
            out[row, 0] += 1e-3
        return out


class _Plugin:
    @hookimpl
    def register_encoders(self, register: Any) -> None:
        register(WidthEncoder)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    disabled = request.config.getoption("benchmark_disable", False)
    n = int(os.environ.get("NEWWAVE_BENCH_PERSONAL_TRACKS", 5_000 if disabled else 100_000))
    pm = get_plugin_manager()
    pm.register(_Plugin(), name="width-personal")
    rng = np.random.default_rng(0)
    root: Path = tmp_path_factory.mktemp("personal") / "lib"
    built = Recommender(fields={"description": WidthEncoder.name}, rewriter=None)
    built.save(root)
    live = Recommender.load(root)
    for start in range(0, n, 50_000):
        stop = min(start + 50_000, n)
        rows = rng.standard_normal((stop - start, DIM), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        tracks = [
            Track(id=f"t{i}", description=f"track {i} word{i % 97}") for i in range(start, stop)
        ]
        live.add(tracks, vectors={"description": rows})
    events = [
        Feedback(
            f"user-{i % USERS}",
            f"t{int(rng.integers(n))}",
            ("like", "dislike", "skip")[i % 3],
            1_700_000_000.0 + i,
        )
        for i in range(n)
    ]
    live.add_feedback(events)
    live.save(root)
    yield Recommender.load(root)
    pm.unregister(name="width-personal")


def _check(benchmark: Any, baseline: str) -> None:
    benchmark.extra_info["baseline"] = baseline


@pytest.mark.benchmark(group="personal")
def test_plain_search_baseline(benchmark: Any, rec: Any) -> None:
    hits = benchmark(rec.search, "track word5", k=10)
    assert len(hits) == 10


@pytest.mark.benchmark(group="personal")
def test_feedback_event(benchmark: Any, rec: Any) -> None:
    _check(benchmark, "test_plain_search_baseline")
    counter = iter(range(10**9))
    benchmark(lambda: rec.feedback("bench-user", f"t{next(counter) % 1000}", "like"))
    assert rec.feedback_users()["bench-user"] >= 1


@pytest.mark.benchmark(group="personal")
def test_taste_update(benchmark: Any, rec: Any) -> None:
    _check(benchmark, "test_plain_search_baseline")
    store, channels = rec._library.store, rec._channels
    result = benchmark(lambda: taste(store, channels, rec._events(USER)))
    assert "description" in result.vectors


@pytest.mark.benchmark(group="personal")
def test_personal_search(benchmark: Any, rec: Any) -> None:
    _check(benchmark, "test_plain_search_baseline")
    hits = benchmark(rec.search, "track word5", k=10, user=USER)
    assert len(hits) == 10
    assert "taste" in hits[0].scores


@pytest.mark.benchmark(group="personal")
def test_recommend(benchmark: Any, rec: Any) -> None:
    _check(benchmark, "test_plain_search_baseline")
    hits = benchmark(rec.recommend, USER, k=10)
    assert len(hits) == 10


@pytest.mark.benchmark(group="personal")
def test_collaborative_fit(benchmark: Any, rec: Any) -> None:
    _check(benchmark, "test_plain_search_baseline")
    fitted = benchmark.pedantic(rec.fit_collaborative, rounds=3, iterations=1)
    assert USER in fitted.users


@pytest.mark.benchmark(group="personal")
def test_personal_search_collaborative(benchmark: Any, rec: Any) -> None:
    _check(benchmark, "test_personal_search")
    if rec._collaborative(USER) is None:  # run alone: fit first
        rec.fit_collaborative()
    hits = benchmark(rec.search, "track word5", k=10, user=USER)
    assert len(hits) == 10
    assert any("collaborative" in h.scores for h in hits)  # the tracks someone liked
