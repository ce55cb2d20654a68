"""The clap encoder's ONNX Runtime backend against its torch path, on tiny random CLAP models
saved to a temporary directory (an unfused one and a fusion checkpoint) and loaded through the
plugin's normal path: texts of every length, clips shorter than a window, one window, several
windows pooled, and files streamed window by window."""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from tests.encoders.conftest import min_cosine

from newwave.encoders import _clap_onnx, _onnx
from newwave.encoders._clap_onnx import RECIPE
from newwave.encoders.clap import ClapEncoder
from newwave.errors import ComponentUnavailableError, InvalidInputError, MissingDependencyError
from newwave.plugins import load_encoder
from newwave.types import Waveform

from .test_clap import SR, WORDS, _music, build_tiny_clap

pytestmark = pytest.mark.usefixtures("one_torch_thread", "onnx_cache")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TEXTS = [
    "sad piano ballad",
    "upbeat summer pop with handclaps",
    "metal",
    " ".join([WORDS] * 10),  # past the text model's 62 usable tokens: truncated
]
SECONDS = (0.8, 7.3, 10.0, 25.0)  # repeat-padded, padded, one window, three windows pooled


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="module")
def fusion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap-fusion"), fusion=True)


@functools.cache
def _clips() -> list[Waveform]:
    return [Waveform(_music(seconds, i), SR) for i, seconds in enumerate(SECONDS)]


@pytest.mark.parametrize("checkpoint", ["model_dir", "fusion_dir"])
def test_float32_and_int8_towers_match_torch(
    request: pytest.FixtureRequest, checkpoint: str, tmp_path: Path
) -> None:
    model_dir = request.getfixturevalue(checkpoint)
    reference = ClapEncoder(model=model_dir, device="cpu", batch_size=2)
    texts, audio = reference.encode_text(TEXTS), reference.encode_audio(_clips())
    (windows,) = reference.encode_audio_windows([_clips()[-1]])
    path = tmp_path / "long.flac"  # three windows, more than a batch: streamed
    sf.write(path, _music(22.0, 22), SR)
    (streamed,) = reference.encode_audio([path])
    for quantize, floor in ((None, 0.9999), ("int8", 0.98)):
        encoder = ClapEncoder(model=model_dir, backend="onnx", quantize=quantize, batch_size=2)
        assert min_cosine(encoder.encode_text(TEXTS), texts) >= floor
        assert min_cosine(encoder.encode_audio(_clips()), audio) >= floor
        (got,) = encoder.encode_audio_windows([_clips()[-1]])
        assert got.shape == (3, 16)
        assert min_cosine(got, windows) >= floor
        assert min_cosine(encoder.encode_audio([path]), streamed[None]) >= floor
        towers = encoder._load().towers
        assert towers is not None
        suffix = "" if quantize is None else ".int8"
        assert towers.session("text").path.name == f"text{suffix}.onnx"
        assert towers.session("audio").path.name == f"audio{suffix}.onnx"
    # int8: every weight MatMul but the first feed-forward down-projection of each tower.
    assert any(node.op_type == "MatMulInteger" for node in _graph(towers, "audio").node)
    assert any(node.op_type == "MatMulInteger" for node in _graph(towers, "text").node)


def _graph(towers: Any, tower: str) -> Any:
    return onnx.load(str(towers.session(tower).path)).graph


def test_towers_are_exported_on_first_use_and_cached(
    model_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = onnx_cache / _onnx.fingerprint(model_dir, RECIPE)
    first = ClapEncoder(model=model_dir, backend="onnx")
    first.encode_text(TEXTS[:1])
    assert (folder / "text.onnx").is_file()
    assert first._load().model is None  # no torch model held
    vectors = first.encode_audio(_clips()[:1])
    assert onnx.load(str(folder / "audio.onnx")).graph.output[0].name == "embedding"

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr("newwave.encoders._clap_onnx.export_module", no_export)
    again = ClapEncoder(model=model_dir, backend="onnx")
    np.testing.assert_allclose(again.encode_audio(_clips()[:1]), vectors, atol=1e-6)
    assert again.encode_text(TEXTS[:1]).shape == (1, 16)


def test_options_round_trip_and_are_checked(model_dir: Path) -> None:
    encoder = ClapEncoder(model=model_dir, backend="onnx", quantize="int8")
    assert encoder.device == "cpu"
    config = encoder.get_config()
    assert (config["backend"], config["quantize"]) == ("onnx", "int8")
    assert load_encoder("clap", **config).get_config() == config
    assert "backend" not in ClapEncoder(model=model_dir, device="cpu").get_config()
    with pytest.raises(InvalidInputError, match="needs backend='onnx'"):
        ClapEncoder(quantize="int8")
    with pytest.raises(InvalidInputError, match="runs float32"):
        ClapEncoder(backend="onnx", dtype="bfloat16")
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        ClapEncoder(backend="openvino")
    with pytest.raises(InvalidInputError, match=r"torch_model\(\) needs the PyTorch model"):
        encoder.torch_model()
    with pytest.raises(InvalidInputError, match=r"save_pretrained\(\) needs the PyTorch model"):
        encoder.save_pretrained(model_dir / "copy")


def test_an_export_failure_names_the_tower_and_the_exporter_s_message(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(_onnx.CACHE_ENV, str(tmp_path))

    def unsupported(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::fft_rfft' to ONNX is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    encoder = ClapEncoder(model=model_dir, backend="onnx")
    with pytest.raises(ComponentUnavailableError) as info:
        encoder.encode_audio(_clips()[:1])
    message = str(info.value)
    assert "CLAP's audio tower could not be exported" in message
    assert "aten::fft_rfft" in message
    assert "backend='torch'" in message
    assert not list(tmp_path.rglob("*.onnx*"))  # no partial file left


def test_missing_onnxruntime_is_named(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"newwave-music\[onnx\]"):
        ClapEncoder(model=model_dir, backend="onnx").encode_text(TEXTS[:1])


def test_concurrent_first_use_exports_once(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(_onnx.CACHE_ENV, str(tmp_path))
    exports: list[str] = []
    export = _onnx.export_module

    def counted(*args: Any, **kwargs: Any) -> None:
        exports.append(str(kwargs["what"]))
        export(*args, **kwargs)

    monkeypatch.setattr(_clap_onnx, "export_module", counted)
    encoder = ClapEncoder(model=model_dir, backend="onnx")
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(encoder.encode_text(TEXTS)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert exports == ["CLAP's text tower"]
    assert len(results) == 3
    for vectors in results[1:]:
        np.testing.assert_array_equal(vectors, results[0])
