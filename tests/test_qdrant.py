"""The ``qdrant`` retriever on Qdrant's local mode: both APIs, checkpoints, replay, repair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from newwave import (
    IndexCorruptError,
    InvalidInputError,
    MissingDependencyError,
    Recommender,
    Retriever,
    Track,
)
from newwave.index.faiss import FaissRetriever
from newwave.index.qdrant import QdrantRetriever
from newwave.plugins import load_retriever

from .conftest import unit_rows

IDS = [f"t{i}" for i in range(200)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "qdrant"


def test_it_is_a_plugin_and_searches_as_exact_faiss_does(folder: Path) -> None:
    qdrant = load_retriever("qdrant", dim=16, path=folder, collection="c")
    assert isinstance(qdrant, QdrantRetriever)
    faiss = FaissRetriever(16)
    for retriever in (qdrant, faiss):
        retriever.add(IDS, unit_rows(200, 16))
        retriever.add(["t5"], unit_rows(1, 16, seed=9))  # an upsert
        retriever.remove(["t7", "t8"])
    queries = unit_rows(4, 16, seed=3)
    for mine, exact in zip(qdrant.search(queries, 10), faiss.search(queries, 10), strict=True):
        assert mine.ids == exact.ids
        assert mine.scores == pytest.approx(exact.scores, abs=1e-6)  # inner products
    among = set(IDS[::7]) | {"t7"}
    for mine, exact in zip(
        qdrant.search(queries, 5, among=among), faiss.search(queries, 5, among=among), strict=True
    ):
        assert mine.ids == exact.ids
    qdrant.id_filter = True  # as on a server: Qdrant's HasIdCondition filter
    for mine, exact in zip(
        qdrant.search(queries, 5, among=among), faiss.search(queries, 5, among=among), strict=True
    ):
        assert mine.ids == exact.ids
        assert mine.scores == pytest.approx(exact.scores, abs=1e-6)
    np.testing.assert_array_equal(qdrant.vectors(["t5", "t0"]), faiss.vectors(["t5", "t0"]))
    assert len(qdrant) == 198


def test_the_label_api_replays_idempotently(folder: Path) -> None:
    retriever = QdrantRetriever(8, path=folder)
    retriever.use_channel("tags:minilm")
    assert retriever.collection_name == "newwave.tags+minilm"
    labels, vectors = np.arange(1, 51, dtype=np.int64), unit_rows(50, 8)
    for _ in range(2):  # a row applied twice (a checkpoint older than the collection)
        retriever.remove_labelled(labels[:10])  # the channel removes written rows first
        retriever.add_labelled(labels, vectors)
        retriever.remove_labelled(np.array([3, 4], dtype=np.int64))
    scores, found = retriever.search_labelled(vectors[:1], 60, count=48)
    assert found.shape == (1, 48)
    assert found[0, 0] == 1
    assert 3 not in found
    assert 4 not in found
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    for retriever.id_filter in (False, True):
        among = np.array([9, 3, 20])  # 3 is not stored
        scores, found = retriever.search_labelled(vectors[:1], 5, count=48, among=among)
        assert sorted(found[0, :2].tolist()) == [9, 20]
        assert found[0, 2] == -1
    np.testing.assert_array_equal(retriever.vectors_labelled(np.array([50, 1])), vectors[[49, 0]])
    with pytest.raises(IndexCorruptError, match=r"lacks 1 stored vector.*newwave repair"):
        retriever.vectors_labelled(np.array([3]))
    with pytest.raises(InvalidInputError, match="unsigned"):
        retriever.add_labelled(np.array([-1]), vectors[:1])


def test_a_checkpoint_is_a_manifest_of_the_live_collection(folder: Path, tmp_path: Path) -> None:
    retriever = QdrantRetriever(8, path=folder, collection="lib")
    retriever.use_channel("description")
    retriever.add_labelled(np.arange(10, dtype=np.int64), unit_rows(10, 8))
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    retriever.write_labelled(checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir()) == ["qdrant.json", "retriever.json"]
    retriever.add_labelled(np.array([10], dtype=np.int64), unit_rows(1, 8, seed=4))
    again, count = Retriever.read_labelled(checkpoint)
    assert isinstance(again, QdrantRetriever)
    assert again.collection_name == "lib.description"
    assert count == 11  # the collection as it is now, newer than the checkpoint
    assert again.search_labelled(unit_rows(1, 8, seed=4), 1, count=11)[1].tolist() == [[10]]


def test_a_new_retriever_starts_its_collection_over(folder: Path) -> None:
    first = QdrantRetriever(8, path=folder, collection="c")
    first.add(IDS[:20], unit_rows(20, 8))
    second = QdrantRetriever(8, path=folder, collection="c")  # built, not read: empty
    second.add(["x"], unit_rows(1, 8, seed=2))
    assert [r.ids for r in second.search(unit_rows(1, 8), 5)] == [("x",)]


def test_standalone_save_and_load(folder: Path, tmp_path: Path) -> None:
    retriever = QdrantRetriever(8, path=folder, collection="c", exact=True)
    retriever.add(IDS[:30], unit_rows(30, 8))
    retriever.save(tmp_path / "saved")
    loaded = Retriever.load(tmp_path / "saved")
    assert isinstance(loaded, QdrantRetriever)
    assert loaded.get_config() == {"collection": "c", "path": str(folder.resolve()), "exact": True}
    (mine,), (theirs,) = loaded.search(unit_rows(1, 8), 3), retriever.search(unit_rows(1, 8), 3)
    assert (mine.ids, mine.scores) == (theirs.ids, theirs.scores)
    retriever.add(["late"], unit_rows(1, 8, seed=8))  # the ids saved no longer match
    with pytest.raises(IndexCorruptError, match="inconsistent"):
        Retriever.load(tmp_path / "saved")


def test_options_are_checked(folder: Path) -> None:
    with pytest.raises(InvalidInputError, match="one of path=, url= or location="):
        QdrantRetriever(8, path=folder, url="http://localhost:6333")
    with pytest.raises(InvalidInputError, match="location"):
        QdrantRetriever(8, location="somewhere")
    with pytest.raises(InvalidInputError, match="collection"):
        QdrantRetriever(8, collection="a/b")
    assert QdrantRetriever(8).get_config() == {"collection": "newwave", "location": ":memory:"}


def test_without_qdrant_client_it_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)  # as if not installed
    retriever = QdrantRetriever(8, collection="missing-dependency")
    with pytest.raises(MissingDependencyError, match=r"pip install 'newwave-music\[qdrant\]'"):
        retriever.add(["a"], unit_rows(1, 8))


def test_a_local_folder_serves_one_process(folder: Path) -> None:
    QdrantRetriever(8, path=folder).add(["a"], unit_rows(1, 8))  # this process holds it
    code = (
        "import numpy as np\nfrom newwave.index.qdrant import QdrantRetriever\n"
        f"QdrantRetriever(2, path={str(folder)!r}).add(['a'], np.ones((1, 2)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "ComponentUnavailableError" in done.stderr
    assert "url=" in done.stderr


TRACKS = [
    Track(id="rain", description="a slow sad piano ballad"),
    Track(id="drive", description="fast synthwave with neon synths"),
    Track(id="storm", description="loud metal with heavy guitar"),
]


def test_a_lost_collection_is_an_error_and_repair_rebuilds_it(
    keyword_plugin: None, tmp_path: Path
) -> None:
    options = {"path": str(tmp_path / "qdrant"), "collection": "lib"}
    rec = Recommender(
        fields={"description": "keyword"}, retriever="qdrant", retriever_options=options
    )
    rec.add(TRACKS)
    rec.save(tmp_path / "lib")
    before = [(h.track.id, h.scores) for h in rec.search("sad piano", k=3)]
    index = QdrantRetriever(8, path=options["path"], collection="lib", channel="description")
    index._call("delete_collection", index.collection_name)
    with pytest.raises(IndexCorruptError, match=r"'lib\.description'.*newwave repair"):
        Recommender.load(tmp_path / "lib")
    assert Recommender.repair(tmp_path / "lib") == {"description": 3}
    loaded = Recommender.load(tmp_path / "lib")
    assert [(h.track.id, h.scores) for h in loaded.search("sad piano", k=3)] == before
