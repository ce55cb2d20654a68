"""Search among a subset of ids, stored vectors, metadata filters and "more like this"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newwave import InvalidInputError, Recommender, Retriever, Track, UnknownTrackError
from newwave.index.faiss import FaissRetriever
from newwave.index.qdrant import QdrantRetriever

from .conftest import unit_rows


def new_retriever(name: str, dim: int, tmp_path: Path) -> Retriever:
    if name == "faiss":
        return FaissRetriever(dim)
    return QdrantRetriever(dim, path=tmp_path / "qdrant", collection=f"t{dim}")


@pytest.fixture(params=["faiss", "qdrant"])
def retriever(request: pytest.FixtureRequest, tmp_path: Path) -> Retriever:
    retriever = new_retriever(request.param, 8, tmp_path)
    retriever.add([f"t{i}" for i in range(50)], unit_rows(50, 8))
    return retriever


def test_vectors_are_the_stored_ones(retriever: Retriever) -> None:
    np.testing.assert_allclose(retriever.vectors(["t3", "t0"]), unit_rows(50, 8)[[3, 0]])
    assert retriever.vectors([]).shape == (0, 8)
    with pytest.raises(UnknownTrackError, match="'nope'"):
        retriever.vectors(["nope"])


def test_search_among_is_exact_search_over_the_subset(retriever: Retriever) -> None:
    queries = unit_rows(3, 8, seed=1)
    subset = {f"t{i}" for i in range(0, 50, 3)} | {"not-stored"}
    for ranking, query in zip(retriever.search(queries, 5, among=subset), queries, strict=True):
        scores = {f"t{i}": float(query @ v) for i, v in enumerate(unit_rows(50, 8))}
        expected = sorted((i for i in subset if i in scores), key=lambda i: -scores[i])[:5]
        assert list(ranking.ids) == expected
        assert ranking.scores == pytest.approx([scores[i] for i in expected], abs=1e-6)
    assert [len(r) for r in retriever.search(queries, 5, among=set())] == [0, 0, 0]


@pytest.mark.parametrize("name", ["faiss", "qdrant"])
def test_search_among_breaks_ties_by_insertion_order(name: str, tmp_path: Path) -> None:
    retriever = new_retriever(name, 2, tmp_path)
    retriever.add(["b", "a", "c"], np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    ranking = retriever.search(np.array([[1.0, 0.0]]), 3, among={"a", "b", "c"})[0]
    assert ranking.ids == ("b", "a", "c")


def test_approximate_index_padding_is_dropped() -> None:
    retriever = FaissRetriever(8, factory="IVF8,Flat")
    retriever.add([f"t{i}" for i in range(400)], unit_rows(400, 8))
    ranking = retriever.search(unit_rows(1, 8, seed=5), 400)[0]  # nprobe 1: few lists visited
    assert 0 < len(ranking) < 400
    assert all(i.startswith("t") for i in ranking.ids)


TRACKS = [
    Track(id="a", description="calm piano", tags=("piano",), metadata={"year": 1999}),
    Track(id="b", description="calm piano music", tags=("piano",), metadata={"year": 2005}),
    Track(id="c", description="loud metal guitar", tags=("metal",), metadata={"year": 2010}),
    Track(id="d", description="calm piano with strings", metadata={"year": "n/a"}),
]


@pytest.fixture
def rec(keyword_plugin: None, retriever_kwargs: dict[str, Any]) -> Recommender:
    rec = Recommender(fields={"description": "keyword", "tags": "keyword"}, **retriever_kwargs)
    rec.add(TRACKS)
    return rec


def test_where_filters_search(rec: Recommender) -> None:
    assert [h.track.id for h in rec.search("calm piano", where={"year": {">=": 2000}})] == [
        "b",
        "c",
    ]
    assert rec.search("calm piano", where={"year": 1850}) == []
    with pytest.raises(InvalidInputError, match="no track has the key 'yeer'"):
        rec.search("calm piano", where={"yeer": 2000})


def test_a_filter_may_keep_tracks_without_a_field(rec: Recommender) -> None:
    # "d" has no tags: the tags index holds no vector for it, and the filter keeps it
    hits = rec.search("calm piano", where={"year": {"in": [1999, "n/a"]}})
    assert {h.track.id for h in hits} == {"a", "d"}
    assert "tags" not in next(h for h in hits if h.track.id == "d").scores
    assert [h.track.id for h in rec.similar("b", where={"year": "n/a"})] == ["d"]


def test_similar_finds_the_closest_other_tracks(rec: Recommender) -> None:
    hits = rec.similar("a", k=3)
    assert [h.track.id for h in hits][:2] == ["b", "d"]
    assert "a" not in [h.track.id for h in hits]
    assert set(hits[0].scores) == {"description", "tags"}
    assert [h.track.id for h in rec.similar("a", k=3, where={"year": {">": 2006}})] == ["c"]
    with pytest.raises(UnknownTrackError):
        rec.similar("zzz")


def test_a_track_with_none_of_the_fields_is_refused(rec: Recommender) -> None:
    with pytest.raises(InvalidInputError, match=r"none of the fields description, tags.*'e'"):
        rec.add([Track(id="e", title="only a title")])
    assert "e" not in rec
