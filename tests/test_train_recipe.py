"""Heads (and adapters) built from a recipe: byte for byte the same on every build, from checked
inputs only, never from a held-out track (on tiny random BERTs and a MusicCaps-shaped CSV built
here)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

from newwave import IndexCorruptError, InvalidInputError, MissingFileError
from newwave.encoders.adapters import (
    ADAPTERS_CONFIG,
    ADAPTERS_FILE,
    AdapterConfig,
    adapter_tensors,
    attach_adapters,
    merge_adapters,
    new_adapters,
)
from newwave.encoders.biencoder import CONFIG_FILE, HEADS_FILE, BiEncoderConfig
from newwave.encoders.minilm import MiniLMEncoder
from newwave.train import LoopConfig
from newwave.train.recipe import (
    HeadsRecipe,
    RecipeBackbone,
    RecipeData,
    build_heads,
    file_sha256,
    read_recipe,
)
from newwave.train.top_layers import TopLayerInputs
from tests.tiny_models import save_tiny_bert

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = [f"q{i}" for i in range(8)] + [f"d{i}" for i in range(8)] + ["song", "a"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer BERT and a word-level tokenizer, saved like MiniLM."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    return save_tiny_bert(directory, WORDS, layers=1, hidden=16, max_length=16)


def write_clips(path: Path) -> Path:
    """40 clips (every fourth held out): a caption of ``q`` words, aspects of ``d`` words."""
    rng = np.random.default_rng(0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ytid", "caption", "aspect_list", "is_audioset_eval"])
        for i in range(40):
            concepts = rng.choice(8, 2, replace=False)
            caption = " ".join(f"q{c}" for c in concepts) + " song"
            aspects = repr([f"d{c}" for c in concepts])
            writer.writerow([f"clip{i}", caption, aspects, str(i % 4 == 0)])
    return path


def tiny_recipe(data: Path, backbone: Path, **changes: object) -> HeadsRecipe:
    files = {p.name: file_sha256(p) for p in sorted(backbone.iterdir()) if p.is_file()}
    recipe = HeadsRecipe(
        name="tiny",
        data=RecipeData(
            file=data.name,
            sha256=file_sha256(data),
            columns={"id": "ytid", "description": "caption", "tags": "aspect_list"},
            metadata=["is_audioset_eval"],
            train={"is_audioset_eval": False},
            held_out={"is_audioset_eval": True},
        ),
        backbone=RecipeBackbone(
            model=str(backbone), options={"max_length": 16, "stride": 4}, files=files
        ),
        head_dim=16,
        validation_fraction=0.2,
        loop=LoopConfig(epochs=4, batch_size=8, learning_rate=3e-3, warmup_steps=2),
    )
    return recipe.model_copy(update=changes)


def test_two_builds_write_the_same_bytes(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_clips(tmp_path / "clips.csv")
    recipe = tiny_recipe(data, tiny_bert)
    first = build_heads(recipe, data, tmp_path / "one")
    second = build_heads(recipe, data, tmp_path / "two")
    for name in (HEADS_FILE, CONFIG_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert first.heads_sha256 == second.heads_sha256 == file_sha256(tmp_path / "one" / HEADS_FILE)
    assert first.pairs == 30
    assert first.held_out_tracks == 10
    assert first.steps > 0
    assert first.matches_recipe is None
    assert build_heads(
        recipe.model_copy(update={"heads_sha256": first.heads_sha256}), data, tmp_path / "three"
    ).matches_recipe
    # What was built: trained heads (no longer the identity they start as), one per role.
    heads = load_file(str(tmp_path / "one" / HEADS_FILE))
    assert sorted(heads) == ["document.bias", "document.weight", "query.bias", "query.weight"]
    assert not torch.allclose(heads["query.weight"], torch.eye(16))
    assert not torch.equal(heads["query.weight"], heads["document.weight"])
    config = BiEncoderConfig.model_validate_json((tmp_path / "one" / CONFIG_FILE).read_bytes())
    assert config.head_dim == 16
    assert config.backbone == "minilm"


def test_another_seed_builds_other_heads(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_clips(tmp_path / "clips.csv")
    recipe = tiny_recipe(data, tiny_bert)
    other = recipe.model_copy(update={"loop": recipe.loop.model_copy(update={"seed": 1})})
    assert (
        build_heads(recipe, data, tmp_path / "a").heads_sha256
        != build_heads(other, data, tmp_path / "b").heads_sha256
    )


def test_requests_join_the_captions_as_queries(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_clips(tmp_path / "clips.csv")
    recipe = tiny_recipe(data, tiny_bert)
    both = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"queries": ("text", "request")})}
    )
    built = build_heads(both, data, tmp_path / "both")
    assert built.pairs == 60  # each of the 30 training clips: its caption and a request
    assert built.heads_sha256 != build_heads(recipe, data, tmp_path / "text").heads_sha256


def test_inputs_are_checked_against_the_recipe(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_clips(tmp_path / "clips.csv")
    recipe = tiny_recipe(data, tiny_bert)
    changed = tmp_path / "changed.csv"
    changed.write_bytes(data.read_bytes() + b"clip99,q1 song,['d1'],False\n")
    with pytest.raises(InvalidInputError, match=r"is not the recipe's clips\.csv"):
        build_heads(recipe, changed, tmp_path / "out")
    files = {**recipe.backbone.files, "config.json": "0" * 64}
    wrong = recipe.model_copy(
        update={"backbone": recipe.backbone.model_copy(update={"files": files})}
    )
    with pytest.raises(InvalidInputError, match=r"config\.json .* is not the recipe's"):
        build_heads(wrong, data, tmp_path / "out")
    with pytest.raises(MissingFileError):
        build_heads(recipe, tmp_path / "absent.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_held_out_track_never_trains(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_clips(tmp_path / "clips.csv")
    recipe = tiny_recipe(data, tiny_bert)
    every_row = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"train": {}})}
    )  # the held-out rows too
    with pytest.raises(InvalidInputError, match="data leak: 10 group"):
        build_heads(every_row, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_recipe_files_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text('{"name": "x"}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="is not a heads recipe"):
        read_recipe(path)
    with pytest.raises(MissingFileError):
        read_recipe(tmp_path / "absent.json")


@pytest.fixture(scope="module")
def tiny_bert2(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The tiny BERT's tokenizer with a randomly initialised 2-layer model."""
    directory = tmp_path_factory.mktemp("tiny-bert2")
    for file in tiny_bert.iterdir():
        if file.name not in ("config.json", "model.safetensors"):
            (directory / file.name).write_bytes(file.read_bytes())
    config = transformers.BertConfig.from_pretrained(tiny_bert)
    config.num_hidden_layers = 2
    torch.manual_seed(1)
    transformers.BertModel(config).save_pretrained(directory)
    return directory


ADAPTERS = AdapterConfig(
    layers=1, rank=2, alpha=4, targets=("attention.self.query", "intermediate.dense")
)


def test_adapters_build_byte_for_byte_and_change_only_the_top_layer(
    tmp_path: Path, tiny_bert2: Path
) -> None:
    data = write_clips(tmp_path / "clips.csv")
    recipe = tiny_recipe(data, tiny_bert2, adapters=ADAPTERS)
    first = build_heads(recipe, data, tmp_path / "one")
    second = build_heads(recipe, data, tmp_path / "two")
    assert first.adapters_sha256 is not None
    assert (first.heads_sha256, first.adapters_sha256) == (
        second.heads_sha256,
        second.adapters_sha256,
    )
    assert first.adapters_sha256 == file_sha256(tmp_path / "one" / ADAPTERS_FILE)
    recorded = replace(first, expected=first.heads_sha256, expected_adapters=first.adapters_sha256)
    assert recorded.matches_recipe
    assert replace(recorded, expected_adapters="0" * 64).matches_recipe is False
    tensors = load_file(str(tmp_path / "one" / ADAPTERS_FILE))
    assert sorted(tensors) == [
        "layer.1.attention.self.query.down",
        "layer.1.attention.self.query.up",
        "layer.1.intermediate.dense.down",
        "layer.1.intermediate.dense.up",
    ]
    assert tensors["layer.1.intermediate.dense.up"].shape == (32, 2)
    assert tensors["layer.1.attention.self.query.up"].abs().sum() > 0  # trained from zero
    stored = AdapterConfig.model_validate_json((tmp_path / "one" / ADAPTERS_CONFIG).read_bytes())
    assert stored == ADAPTERS


def test_top_layers_on_cached_states_embed_as_the_encoder(tiny_bert2: Path) -> None:
    encoder = MiniLMEncoder(model=str(tiny_bert2), device="cpu", max_length=16, stride=4)
    texts = ["q1 q2 song", "a", " ".join(["d3 q4"] * 12)]  # the last: several windows
    inputs = TopLayerInputs(encoder, texts, layers=1)
    plain = encoder.encode_text(texts)
    np.testing.assert_allclose(
        inputs.embed([2, 0, 1]).detach().numpy(), plain[[2, 0, 1]], atol=1e-6
    )
    # Adapters run by hooks while training give the vectors the merged weights give when served.
    model = encoder._load().model
    adapters = new_adapters(model, ADAPTERS, seed=0)
    with torch.no_grad():
        for name, value in adapters.items():
            if name.endswith("up"):
                value.normal_(generator=torch.Generator().manual_seed(0))
    handles = attach_adapters(model, adapters, ADAPTERS)
    adapted = inputs.embed([0, 1, 2]).detach().numpy()
    assert not np.allclose(adapted, plain, atol=1e-3)
    for handle in handles:
        handle.remove()
    merge_adapters(model, adapter_tensors(adapters), ADAPTERS)
    np.testing.assert_allclose(encoder.encode_text(texts), adapted, atol=1e-5)
    with pytest.raises(IndexCorruptError, match="do not fit"):
        merge_adapters(model, {}, ADAPTERS)
