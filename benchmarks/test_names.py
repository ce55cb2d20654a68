"""Catalogue names in requests: looked up in the library database against learned into memory.

The data: synthetic catalogues (two- and three-word artists among a fifth as many as tracks,
titles of one to five words, albums) with four tags each, written to an on-disk library
database as ``Recommender.add`` writes them. 100,000 and 10,000 tracks when timed; 1,000 and 500
under ``--benchmark-disable``.

- **baseline** (``test_names_in_memory_baseline``): the ``rules`` rewriter with every name of the
  10,000-track catalogue learned into memory (``EntityIndex.from_tracks``, the only way before,
  and only up to 10,000 tracks), one request per call. ``extra_info``: the seconds and the
  Python memory (tracemalloc peak, and what the index keeps) of that fit, which ran again at
  every change of the catalogue.
- **newwave** (``test_names_in_database``): the same requests on the 100,000-track catalogue,
  its names looked up in the database (``CatalogueNames``). ``extra_info``: its mean per
  request on the 10,000-track catalogue too, the Python memory of one request, the mean of a
  request naming the artist of 2,000 tracks ("sounds like The Prolific Band": its styles count
  all their tags), and the seconds to build the names table of 100,000 tracks from their values
  (what a library written before the table pays once).

Half the requests name a catalogue artist, title or album; half name nothing.

The cost of keeping the table when writing: one transaction that adds 2,000 new tracks to a
library (200 untimed), with the table (**newwave**, ``test_write_with_names``) and without it,
as before (**baseline**, ``test_write_without_names_baseline``: a database without the table,
whose writes skip it).
"""

from __future__ import annotations

import itertools
import random
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from newwave import Track
from newwave.query import RuleRewriter
from newwave.query.catalogue_names import CatalogueNames
from newwave.query.entities import EntityIndex
from newwave.store.database import LibraryStore

WORDS = (
    "amber river hollow static velvet north glass paper echo cinder lantern orbit willow "
    "marble harbor silver motel cobalt saint ivory meadow neon atlas copper falcon juniper "
    "quiet broken golden distant electric lonely midnight crimson wild gentle hidden frozen"
).split()
TAGS = (
    "rock pop jazz electronic ambient folk hip hop soul funk metal punk reggae blues classical "
    "piano guitar synth drums bass strings happy sad calm energetic dark dreamy"
).split()
PROLIFIC = "The Prolific Band"
"""The artist of one track in 50 (2,000 of 100,000)."""
PLAIN = [
    "relaxing piano music without vocals",
    "I'm looking for some upbeat 80s synth pop, please",
    "a rock song with no drums",
    "sad acoustic guitar ballad with female vocals",
]


def catalogue(n: int, seed: int = 0) -> list[Track]:
    rng = random.Random(seed)
    artists = [
        " ".join(rng.choice(WORDS) for _ in range(rng.choice((2, 3)))).title()
        for _ in range(max(1, n // 5))
    ]
    return [
        Track(
            id=f"t{i}",
            artist=PROLIFIC if i % 50 == 0 else rng.choice(artists),
            title=" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))).title(),
            album=" ".join(rng.choice(WORDS) for _ in range(3)).title(),
            tags=tuple(rng.sample(TAGS, 4)),
        )
        for i in range(n)
    ]


def requests(tracks: list[Track]) -> list[str]:
    rng = random.Random(1)
    named = []
    for track in rng.sample(tracks, 4):
        named += [
            f"songs by {track.artist}",
            f"something that sounds like {track.artist}",
            f"the song {track.title}",
            f"from the album {track.album}",
        ]
    return named + PLAIN * 4


def library(path: Path, tracks: list[Track]) -> LibraryStore:
    store = LibraryStore(path, create=True)
    for start in range(0, len(tracks), 5_000):
        with store.transaction():
            store.put_tracks(tracks[start : start + 5_000])
    return store


@pytest.fixture(scope="module")
def sizes(request: pytest.FixtureRequest) -> tuple[int, int]:
    small = request.config.getoption("benchmark_disable", default=False)
    return (1_000, 500) if small else (100_000, 10_000)


@pytest.fixture(scope="module")
def stores(
    sizes: tuple[int, int], tmp_path_factory: pytest.TempPathFactory
) -> dict[int, tuple[LibraryStore, list[Track]]]:
    folder = tmp_path_factory.mktemp("names")
    found = {}
    for n in sizes:
        tracks = catalogue(n)
        found[n] = (library(folder / f"{n}.sqlite", tracks), tracks)
    return found


def _per_call(call: Callable[[], object], calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - began) / calls


def _memory(call: Callable[[], object]) -> tuple[int, int, object]:
    """(peak, kept) bytes of Python memory that ``call`` allocated, and what it returned."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = call()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - before, kept - before, result


@pytest.mark.benchmark(group="names: one request, names in memory vs in the database")
def test_names_in_memory_baseline(
    benchmark: Any, sizes: tuple[int, int], stores: dict[int, tuple[LibraryStore, list[Track]]]
) -> None:
    store, tracks = stores[sizes[1]]
    rewriter = RuleRewriter()
    began = time.perf_counter()
    rewriter.fit_names(store.iter_tracks())
    fit_s = time.perf_counter() - began
    queries = itertools.cycle(requests(tracks))
    parsed = benchmark(lambda: rewriter.rewrite(next(queries)))
    assert parsed.text
    if benchmark.disabled:
        return
    peak, kept, _ = _memory(lambda: EntityIndex.from_tracks(store.iter_tracks()))
    benchmark.extra_info.update(
        {
            "tracks": len(tracks),
            "fit_s": round(fit_s, 3),
            "fit_peak_mb": round(peak / 2**20, 1),
            "index_kept_mb": round(kept / 2**20, 1),
        }
    )


@pytest.mark.benchmark(group="names: one request, names in memory vs in the database")
def test_names_in_database(
    benchmark: Any, sizes: tuple[int, int], stores: dict[int, tuple[LibraryStore, list[Track]]]
) -> None:
    store, tracks = stores[sizes[0]]
    rewriter = RuleRewriter()
    rewriter.fit_names(CatalogueNames(store))
    every = requests(tracks)
    for query in every[:16]:  # each names a catalogue name, found with its styles
        [entity] = rewriter.rewrite(query).entities
        assert entity.in_catalogue, query
        assert entity.styles, query
    queries = itertools.cycle(every)
    parsed = benchmark(lambda: rewriter.rewrite(next(queries)))
    assert parsed.text
    if benchmark.disabled:
        return
    small, small_tracks = stores[sizes[1]]
    at_small = RuleRewriter()
    at_small.fit_names(CatalogueNames(small))
    small_queries = itertools.cycle(requests(small_tracks))
    peak, _, _ = _memory(lambda: rewriter.rewrite(every[0]))
    prolific = rewriter.rewrite(f"sounds like {PROLIFIC}")
    assert prolific.entities[0].in_catalogue
    with store.transaction(catalogue=False):
        began = time.perf_counter()
        store.rebuild_names()
        rebuild_s = time.perf_counter() - began
    benchmark.extra_info.update(
        {
            "baseline": "test_names_in_memory_baseline (10,000 tracks, in memory)",
            "tracks": len(tracks),
            "per_request_at_10k_ms": round(
                1e3 * _per_call(lambda: at_small.rewrite(next(small_queries)), 400), 3
            ),
            "request_peak_kb": round(peak / 2**10, 1),
            "prolific_artist_ms": round(
                1e3 * _per_call(lambda: rewriter.rewrite(f"sounds like {PROLIFIC}"), 20), 2
            ),
            "rebuild_table_s": round(rebuild_s, 2),
        }
    )


def _writer(tmp_path: Path, names: bool, batch: int) -> Callable[[], object]:
    store = LibraryStore(tmp_path / "write.sqlite", create=True)
    if not names:
        with store.transaction():
            store._db.execute("DROP TABLE track_names")
    tracks = catalogue(batch * 40, seed=2)
    rounds = itertools.count()

    def write() -> object:
        start = next(rounds) * batch % len(tracks)
        with store.transaction():
            return store.put_tracks(
                [t.model_copy(update={"id": f"{t.id}-{start}"}) for t in tracks[start:][:batch]]
            )

    return write


@pytest.mark.benchmark(group="names: writing 2,000 tracks, with and without the names table")
def test_write_without_names_baseline(benchmark: Any, tmp_path: Path) -> None:
    batch = 200 if benchmark.disabled else 2_000
    written = benchmark.pedantic(_writer(tmp_path, False, batch), rounds=10, warmup_rounds=1)
    assert len(written) == batch


@pytest.mark.benchmark(group="names: writing 2,000 tracks, with and without the names table")
def test_write_with_names(benchmark: Any, tmp_path: Path) -> None:
    batch = 200 if benchmark.disabled else 2_000
    written = benchmark.pedantic(_writer(tmp_path, True, batch), rounds=10, warmup_rounds=1)
    assert len(written) == batch
    benchmark.extra_info["baseline"] = "test_write_without_names_baseline"
