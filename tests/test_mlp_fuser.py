"""The learned MLP fuser, and a Recommender searching its joint index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from newwave import (
    Encoder,
    IndexCorruptError,
    InvalidInputError,
    MissingFileError,
    Recommender,
    Track,
    load_fuser,
)
from newwave.fusion.mlp import MLPFuser, MLPFuserConfig

from .conftest import unit_rows

CONFIG = MLPFuserConfig(
    fields=("description", "tags"),
    input_dims={"description": 64, "tags": 64},
    hidden_dims=(32,),
    output_dim=16,
)


@pytest.fixture
def saved_fuser(tmp_path: Path) -> Path:
    directory = tmp_path / "fuser"
    directory.mkdir()
    MLPFuser.initialised(CONFIG, seed=3, device="cpu").save(directory)
    return directory


def test_saved_fuser_loads_through_the_plugin_and_embeds_the_same(saved_fuser: Path) -> None:
    original = MLPFuser.initialised(CONFIG, seed=3, device="cpu")
    loaded = load_fuser("mlp", saved_fuser, device="cpu")
    assert isinstance(loaded, MLPFuser)
    vectors = {"description": unit_rows(5, 64, 0), "tags": unit_rows(5, 64, 1)}
    for side in ("track", "query"):
        fused = loaded.embed(vectors, side=side)
        assert fused.shape == (5, 16)
        assert fused.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(fused, original.embed(vectors, side=side), atol=1e-6)
    assert not np.allclose(loaded.embed(vectors, side="track"), loaded.embed(vectors, side="query"))


def test_a_missing_field_is_a_zero_vector_with_its_presence_flag_off(saved_fuser: Path) -> None:
    fuser = MLPFuser(saved_fuser, device="cpu")
    description = unit_rows(2, 64, 0)
    without_tags = fuser.embed(
        {"description": description, "tags": np.zeros((2, 64), np.float32)}, side="track"
    )
    with_tags = fuser.embed({"description": description, "tags": unit_rows(2, 64, 1)}, side="track")
    assert np.all(np.isfinite(without_tags))
    assert not np.allclose(without_tags, with_tags)


def test_shared_towers_embed_both_sides_alike(tmp_path: Path) -> None:
    shared = MLPFuser.initialised(CONFIG.model_copy(update={"shared": True}), device="cpu")
    vectors = {"description": unit_rows(3, 64, 0), "tags": unit_rows(3, 64, 1)}
    np.testing.assert_allclose(
        shared.embed(vectors, side="track"), shared.embed(vectors, side="query")
    )
    shared.save(tmp_path)
    assert MLPFuser(tmp_path).towers.keys() == {"track"}


def test_bad_input(saved_fuser: Path) -> None:
    fuser = MLPFuser(saved_fuser, device="cpu")
    with pytest.raises(InvalidInputError, match="needs the fields tags"):
        fuser.embed({"description": unit_rows(1, 64, 0)}, side="track")
    with pytest.raises(InvalidInputError, match="dimension 8, expected 64"):
        fuser.embed({"description": unit_rows(1, 8, 0), "tags": unit_rows(1, 64, 0)}, side="track")
    with pytest.raises(InvalidInputError, match="different numbers of rows"):
        fuser.embed({"description": unit_rows(1, 64, 0), "tags": unit_rows(2, 64, 0)}, side="track")
    with pytest.raises(InvalidInputError, match="side"):
        fuser.embed({"description": unit_rows(1, 64, 0), "tags": unit_rows(1, 64, 0)}, side="both")  # type: ignore[arg-type]


def test_bad_files(saved_fuser: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"config\.json is missing"):
        MLPFuser(tmp_path / "nowhere")
    weights = saved_fuser / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(IndexCorruptError, match="not a readable safetensors"):
        MLPFuser(saved_fuser)
    other = tmp_path / "other"
    other.mkdir()
    MLPFuser.initialised(CONFIG.model_copy(update={"output_dim": 8}), device="cpu").save(other)
    (saved_fuser / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(IndexCorruptError, match="does not fit"):
        MLPFuser(saved_fuser)
    (saved_fuser / "config.json").write_text('{"fields": []}')
    with pytest.raises(IndexCorruptError, match="not an MLP fuser config"):
        MLPFuser(saved_fuser)


TRACKS = [
    Track(id="a", description="calm piano ballad", tags=("piano", "calm")),
    Track(id="b", description="calm piano with strings", tags=("piano",)),
    Track(id="c", description="loud metal guitar"),  # no tags
    Track(id="d", description="fast techno beat", tags=("techno",)),
]


@pytest.fixture
def rec(keyword_plugin: None, saved_fuser: Path) -> Recommender:
    rec = Recommender(
        fields={"description": "keyword", "tags": "keyword"},
        fuser=load_fuser("mlp", saved_fuser, device="cpu"),
    )
    rec.add(TRACKS)
    return rec


def test_search_ranks_by_the_fused_vectors(rec: Recommender) -> None:
    fuser = rec.fuser
    assert isinstance(fuser, MLPFuser)
    hits = rec.search("calm piano", k=4)
    encoders = {f: e for f, e in rec.fields.items() if isinstance(e, Encoder)}
    queries = {f: e.encode_queries(["calm piano"]) for f, e in encoders.items()}
    query = fuser.embed(queries, side="query")[0]
    tracks = {
        t.id: fuser.embed({f: rec.vectors(f, [t.id]) for f in fuser.fields}, side="track")[0]
        for t in TRACKS
    }
    expected = sorted(tracks, key=lambda i: -float(tracks[i] @ query))
    assert [h.track.id for h in hits] == expected
    for hit in hits:
        assert hit.scores["joint"] == pytest.approx(float(tracks[hit.track.id] @ query), abs=1e-5)
    c = next(h for h in hits if h.track.id == "c")
    assert set(c.scores) == {"joint", "description"}  # c has no tags


def test_similar_remove_and_where(rec: Recommender) -> None:
    assert "a" not in [h.track.id for h in rec.similar("a", k=3)]
    assert len(rec.similar("a", k=3)) == 3
    rec.remove(["b"])
    assert "b" not in [h.track.id for h in rec.search("calm piano")]
    assert [h.track.id for h in rec.search("calm piano", where={"tags": "techno"})] == ["d"]


def test_save_and_load_keep_the_fuser_and_the_joint_index(rec: Recommender, tmp_path: Path) -> None:
    rec.save(tmp_path / "lib")
    assert (tmp_path / "lib" / "fuser" / "model.safetensors").is_file()
    assert rec.config.fuser.options == {}
    loaded = Recommender.load(tmp_path / "lib")
    assert isinstance(loaded.fuser, MLPFuser)
    before, after = rec.search("calm piano"), loaded.search("calm piano")
    assert [h.track.id for h in after] == [h.track.id for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-6)


def test_the_fuser_must_fit_the_fields(keyword_plugin: None, saved_fuser: Path) -> None:
    fuser = load_fuser("mlp", saved_fuser)
    with pytest.raises(InvalidInputError, match="combines the fields"):
        Recommender(fields={"description": "keyword"}, fuser=fuser)
