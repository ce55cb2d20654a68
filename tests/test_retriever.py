"""The Retriever contract, through the built-in FAISS retriever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newwave import (
    ComponentUnavailableError,
    DimensionMismatchError,
    IndexCorruptError,
    InvalidInputError,
    MissingFileError,
    NonFiniteVectorError,
    Retriever,
    UnknownTrackError,
)
from newwave.index.faiss import FaissRetriever


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


@pytest.fixture
def filled() -> FaissRetriever:
    retriever = FaissRetriever(8)
    retriever.add([f"t{i}" for i in range(20)], unit_rows(20, 8))
    return retriever


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 50), seed=st.integers(0, 10_000))
def test_flat_search_equals_brute_force(n: int, k: int, seed: int) -> None:
    data, queries = unit_rows(n, 6, seed), unit_rows(3, 6, seed + 1)
    retriever = FaissRetriever(6)
    retriever.add([f"id{i}" for i in range(n)], data)
    rankings = retriever.search(queries, k)
    expected = queries @ data.T
    for q, ranking in enumerate(rankings):
        assert len(ranking) == min(k, n)
        for track_id, score in ranking:
            assert score == pytest.approx(float(expected[q, int(track_id[2:])]), abs=1e-5)
        best = np.sort(expected[q])[::-1][: len(ranking)]
        np.testing.assert_allclose(ranking.scores, best, atol=1e-5)


def test_upsert_replaces_a_vector(filled: FaissRetriever) -> None:
    target = np.zeros((1, 8), dtype=np.float32)
    target[0, 0] = 1.0
    filled.add(["t3"], target)
    assert len(filled) == 20
    top = filled.search(target, 1)[0]
    assert top.ids == ("t3",)
    assert top.scores[0] == pytest.approx(1.0)


def test_remove(filled: FaissRetriever) -> None:
    assert filled.remove(["t1", "t2"]) == 2
    assert len(filled) == 18
    assert "t1" not in filled
    assert "t1" not in filled.search(unit_rows(5, 8, 9), 20)[0].ids
    with pytest.raises(UnknownTrackError, match="'t1'"):
        filled.remove(["t1"])
    assert filled.remove(["t1", "t5"], missing_ok=True) == 1


def test_search_on_empty_index() -> None:
    assert [len(r) for r in FaissRetriever(4).search(unit_rows(2, 4), 5)] == [0, 0]


@pytest.mark.parametrize(
    ("ids", "vectors", "error", "match"),
    [
        (["a"], np.ones((1, 7)), DimensionMismatchError, "dimension 7, expected 8"),
        (["a"], np.full((1, 8), np.inf), NonFiniteVectorError, "row"),
        (["a"], np.ones(8), InvalidInputError, "2-D"),
        (["a", "b"], np.ones((1, 8)), InvalidInputError, "2 ids but 1 vectors"),
        (["a", "a"], np.ones((2, 8)), InvalidInputError, "duplicates"),
        ("a", np.ones((1, 8)), InvalidInputError, "one string"),
        ([""], np.ones((1, 8)), InvalidInputError, "non-empty strings"),
    ],
)
def test_add_rejects_bad_input(
    ids: object, vectors: np.ndarray, error: type[Exception], match: str
) -> None:
    retriever = FaissRetriever(8)
    with pytest.raises(error, match=match):
        retriever.add(ids, vectors)  # type: ignore[arg-type]
    assert len(retriever) == 0


def test_search_rejects_bad_input(filled: FaissRetriever) -> None:
    with pytest.raises(DimensionMismatchError):
        filled.search(np.ones((1, 3)), 2)
    with pytest.raises(NonFiniteVectorError):
        filled.search(np.full((1, 8), np.nan), 2)
    with pytest.raises(InvalidInputError, match="k must be"):
        filled.search(np.ones((1, 8)), 0)


def test_bad_construction() -> None:
    with pytest.raises(InvalidInputError, match="dim"):
        FaissRetriever(0)
    with pytest.raises(InvalidInputError, match="could not parse"):
        FaissRetriever(8, factory="NotAnIndex")
    with pytest.raises(InvalidInputError, match="IDMap"):
        FaissRetriever(8, factory="IDMap,Flat")


def test_index_that_needs_training_trains_on_first_add() -> None:
    retriever = FaissRetriever(8, factory="IVF4,Flat")
    with pytest.raises(InvalidInputError, match="must be trained"):
        retriever.add(["a"], unit_rows(1, 8))
    retriever.add([f"t{i}" for i in range(200)], unit_rows(200, 8))
    assert len(retriever) == 200
    assert retriever.search(unit_rows(1, 8), 3)[0].ids


def test_index_without_removal_says_so() -> None:
    retriever = FaissRetriever(8, factory="HNSW8")
    retriever.add(["a", "b"], unit_rows(2, 8))
    with pytest.raises(ComponentUnavailableError, match="does not support removing"):
        retriever.remove(["a"])


# -- persistence -------------------------------------------------------------------------------


def test_save_and_load_round_trip(filled: FaissRetriever, tmp_path: Path) -> None:
    filled.remove(["t0"])
    filled.save(tmp_path / "index")
    loaded = Retriever.load(tmp_path / "index")
    assert isinstance(loaded, FaissRetriever)
    assert loaded.ids() == filled.ids()
    queries = unit_rows(4, 8, 3)
    for a, b in zip(loaded.search(queries, 5), filled.search(queries, 5), strict=True):
        assert a.ids == b.ids
        np.testing.assert_allclose(a.scores, b.scores)
    loaded.add(["new"], unit_rows(1, 8, 4))  # labels continue after a reload
    assert len(loaded) == 20


def test_save_is_self_describing(filled: FaissRetriever, tmp_path: Path) -> None:
    filled.save(tmp_path / "index")
    pointer = json.loads((tmp_path / "index" / "newwave.json").read_text())
    manifest = json.loads((tmp_path / "index" / pointer["current"] / "retriever.json").read_text())
    assert manifest["retriever"] == "faiss"
    assert manifest["dim"] == 8
    assert manifest["count"] == 20
    assert manifest["options"] == {"factory": "Flat"}


def test_resave_keeps_one_snapshot(filled: FaissRetriever, tmp_path: Path) -> None:
    for _ in range(3):
        filled.save(tmp_path / "index")
    names = sorted(p.name for p in (tmp_path / "index").iterdir())
    assert names == ["newwave.json", "snapshot-000003"]


def test_failed_save_keeps_the_previous_save(
    filled: FaissRetriever, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled.save(tmp_path / "index")
    filled.remove(["t0", "t1"])

    def crash(directory: Path) -> None:
        (directory / "index.faiss").write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(filled, "_write", crash)
    with pytest.raises(OSError, match="disk full"):
        filled.save(tmp_path / "index")
    assert len(Retriever.load(tmp_path / "index")) == 20
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "newwave.json",
        "snapshot-000001",
    ]


def test_killed_save_keeps_the_previous_save(tmp_path: Path) -> None:
    """A process killed in the middle of save() leaves the previous save loadable."""
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from newwave.index.faiss import FaissRetriever
        r = FaissRetriever(4)
        r.add(["a", "b"], np.eye(4, dtype="float32")[:2])
        r.save({str(tmp_path / "index")!r})
        r.add(["c"], np.eye(4, dtype="float32")[2:3])
        original = r._write
        def write_then_die(directory):
            original(directory)
            os._exit(9)  # killed after the new files are written, before the pointer moves
        r._write = write_then_die
        r.save({str(tmp_path / "index")!r})
        """
    )
    env = {**os.environ, "NEWWAVE_LOAD_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", script], env=env, check=False)
    assert result.returncode == 9
    loaded = Retriever.load(tmp_path / "index")
    assert loaded.ids() == ["a", "b"]
    FaissRetriever(4).save(tmp_path / "index")  # the next save cleans the leftovers
    assert len(list((tmp_path / "index").iterdir())) == 2


def test_load_errors(filled: FaissRetriever, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        Retriever.load(tmp_path / "nothing")
    filled.save(tmp_path / "index")
    snapshot = tmp_path / "index" / "snapshot-000001"

    (snapshot / "index.faiss").write_bytes(b"not faiss")
    with pytest.raises(IndexCorruptError, match="not a FAISS index"):
        Retriever.load(tmp_path / "index")

    filled.save(tmp_path / "index")
    snapshot = tmp_path / "index" / "snapshot-000002"
    ids = json.loads((snapshot / "ids.json").read_text())
    (snapshot / "ids.json").write_text(json.dumps({"ids": ids["ids"][:-1], "labels": []}))
    with pytest.raises(IndexCorruptError, match="inconsistent"):
        Retriever.load(tmp_path / "index")

    manifest = json.loads((snapshot / "retriever.json").read_text())
    bad = {**manifest, "options": {"factory": "NotAnIndex"}}
    (snapshot / "retriever.json").write_text(json.dumps(bad))
    with pytest.raises(IndexCorruptError, match="invalid options"):
        Retriever.load(tmp_path / "index")

    (snapshot / "retriever.json").unlink()
    with pytest.raises(IndexCorruptError, match=r"retriever\.json is missing"):
        Retriever.load(tmp_path / "index")

    (tmp_path / "index" / "newwave.json").write_text('{"format": "other"}')
    with pytest.raises(IndexCorruptError, match="pointer"):
        Retriever.load(tmp_path / "index")


def test_save_refuses_a_foreign_directory(filled: FaissRetriever, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(InvalidInputError, match="refusing"):
        filled.save(tmp_path / "photos")
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"meow"
