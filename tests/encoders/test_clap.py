"""The clap encoder on a tiny, randomly initialised CLAP model saved to a temporary directory.

The model is built from configs (no download) and loaded through the plugin's normal path; every
vector is compared with the transformers pipeline written out in the test (ClapProcessor ->
ClapModel.get_audio_features / get_text_features -> L2 norm).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from tests.tiny_models import tiny_roberta_tokenizer

from newwave.audio import Windowing, repeat_pad
from newwave.encoders.clap import (
    DEFAULT_MODEL,
    ClapEncoder,
    _embedding,
    _extractor_features,
    _LogMel,
)
from newwave.errors import (
    AudioDecodeError,
    InvalidInputError,
    MissingFileError,
    ModelNotFoundError,
    SkippedInputWarning,
    TruncatedTextWarning,
)
from newwave.plugins import load_encoder
from newwave.types import Waveform

SR = 48000
WINDOW = 10 * SR
POSITIONS = 64  # the tiny text model's max_position_embeddings: 62 usable tokens
WORDS = "sad piano ballad upbeat summer pop handclaps aggressive metal riff jazz trio night rain"


def build_tiny_clap(directory: Path, *, fusion: bool = False) -> Path:
    """A randomly initialised CLAP (about 50k parameters) with its processor, saved; ``fusion``:
    a fusion checkpoint (HTSAT with its fusion layers, a "fusion" feature extractor)."""
    tokenizer = tiny_roberta_tokenizer([WORDS] * 20, vocab_size=400)
    # 10 s at 48 kHz like the LAION checkpoints; hop 1920 and 16 mel bins give 251 x 16 features,
    # which fit an HTSAT with spec_size 64 (64 * 4 >= 251 frames, 64 / 4 = 16 bins).
    extractor = transformers.ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=SR,
        hop_length=1920,
        max_length_s=10,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14000,
        truncation="fusion" if fusion else "rand_trunc",
        padding="repeatpad",
    )
    config = transformers.ClapConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": POSITIONS,
        },
        audio_config={
            "spec_size": 64,
            "num_mel_bins": 16,
            "patch_embeds_hidden_size": 16,
            "hidden_size": 32,
            "depths": [1, 1],
            "num_attention_heads": [1, 2],
            "num_hidden_layers": 2,
            "window_size": 4,
            "enable_fusion": fusion,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model: Any = transformers.ClapModel(config)
    with torch.no_grad():  # random BatchNorm statistics, so that features are not just centred
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(-50.0, 5.0)  # type: ignore[union-attr]
                module.running_var.uniform_(100.0, 400.0)  # type: ignore[union-attr]
    model.eval().save_pretrained(directory)
    make_processor: Any = transformers.ClapProcessor  # untyped constructor
    processor = make_processor(feature_extractor=extractor, tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="session")
def encoder(model_dir: Path) -> ClapEncoder:
    built = load_encoder("clap", model=str(model_dir), device="cpu")
    assert isinstance(built, ClapEncoder)
    return built


class Reference:
    """The transformers pipeline, written out."""

    def __init__(self, directory: Path) -> None:
        self.processor = transformers.ClapProcessor.from_pretrained(directory)
        model: Any = transformers.ClapModel.from_pretrained(directory)
        self.model: Any = model.eval()

    def audio(self, samples: np.ndarray) -> np.ndarray:
        """One clip of at most 10 s at 48 kHz -> its unit vector."""
        inputs = self.processor(audio=samples, sampling_rate=SR, return_tensors="pt")
        with torch.inference_mode():
            out = _embedding(torch, self.model.get_audio_features(**inputs), "audio")
        return _unit(out[0].numpy())

    def text(self, texts: list[str], **options: Any) -> np.ndarray:
        inputs = self.processor.tokenizer(texts, padding=True, return_tensors="pt", **options)
        with torch.inference_mode():
            out = _embedding(torch, self.model.get_text_features(**inputs), "text")
        return np.stack([_unit(row) for row in out.numpy()])


@pytest.fixture(scope="session")
def reference(model_dir: Path) -> Reference:
    return Reference(model_dir)


def _unit(x: np.ndarray) -> np.ndarray:
    y = np.asarray(x, dtype=np.float64)
    return np.asarray(y / np.linalg.norm(y))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _music(seconds: float, seed: int, rate: int = SR) -> np.ndarray:
    """Changing tones over noise: successive seconds sound different."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    freqs = rng.uniform(100, 4000, size=int(np.ceil(seconds)) + 1)[np.floor(t).astype(int)]
    x = 0.3 * np.sin(2 * np.pi * freqs * t) + 0.05 * rng.standard_normal(n)
    return np.asarray(x, dtype=np.float32)


# -- plugin, options, loading ---------------------------------------------------------------------


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import sys, newwave.encoders.clap, newwave.audio\n"
        "bad = [m for m in ('torch', 'transformers', 'librosa') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registered_lazy_and_rebuilt_from_its_config(model_dir: Path, encoder: ClapEncoder) -> None:
    default = load_encoder("clap", device="cpu")
    assert isinstance(default, ClapEncoder)
    assert default.model_id == DEFAULT_MODEL
    assert default.dim == 512  # known without loading
    assert default._state is None
    assert default.modalities == {"text", "audio"}

    assert encoder.dim == 16
    assert encoder.model_id == str(model_dir)
    assert encoder.weights_source == str(model_dir)
    config = encoder.get_config()
    assert "device" not in config
    rebuilt = load_encoder("clap", **config, device="cpu")
    clip = [(_music(4.0, 1), SR)]
    np.testing.assert_array_equal(rebuilt.encode_audio(clip), encoder.encode_audio(clip))
    tuned = ClapEncoder(
        model=model_dir, window_seconds=5, hop_seconds=2.5, max_windows=3, pooling="max",
        max_text_length=16, batch_size=3, dtype="bfloat16", device="cpu",
    )  # fmt: skip
    assert ClapEncoder(**tuned.get_config(), device="cpu").get_config() == tuned.get_config()


@pytest.mark.parametrize(
    "options",
    [
        {"pooling": "median"},
        {"max_windows": 0},
        {"hop_seconds": -1.0},
        {"window_seconds": 0},
        {"dtype": "float64"},
        {"dtype": "float16"},  # on CPU
        {"max_text_length": 2},
        {"max_text_length": 2.5},
        {"model": ""},
        {"batch_size": 0},
    ],
)
def test_invalid_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        ClapEncoder(**{"device": "cpu", **options})


def test_window_longer_than_the_model_input_is_refused(model_dir: Path) -> None:
    encoder = ClapEncoder(model=model_dir, window_seconds=12, device="cpu")
    with pytest.raises(InvalidInputError, match="longer than the input"):
        encoder.encode_audio([(_music(3.0, 0), SR)], on_error="skip")  # not an input's fault


def test_unknown_hub_id_offline_says_how_to_get_the_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = ClapEncoder(model="newwave-tests/no-such-clap", device="cpu")
    with pytest.raises(ModelNotFoundError) as info:
        encoder.encode_audio([(_music(1.0, 0), SR)], on_error="skip")
    message = str(info.value)
    assert "newwave-tests/no-such-clap" in message
    assert "offline mode: on" in message
    assert "hf download newwave-tests/no-such-clap" in message
    with pytest.raises(ModelNotFoundError):
        encoder.encode_text(["sad piano"])


def test_a_directory_of_another_model_is_refused(tmp_path: Path) -> None:
    transformers.BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1
    ).save_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match="not a CLAP model"):
        ClapEncoder(model=tmp_path, device="cpu").encode_text(["x"])


# -- equivalence with transformers ----------------------------------------------------------------


@pytest.mark.parametrize("seconds", [10.0, 7.3, 0.8])
def test_one_window_clip_matches_the_transformers_pipeline(
    encoder: ClapEncoder, reference: Reference, seconds: float
) -> None:
    clip = _music(seconds, seed=int(seconds * 10))
    (vector,) = encoder.encode_audio([Waveform(clip, SR)])
    assert _cos(vector, reference.audio(clip)) > 0.9999
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_text_matches_the_transformers_pipeline(encoder: ClapEncoder, reference: Reference) -> None:
    texts = ["sad piano ballad", "upbeat summer pop with handclaps", "metal", "jazz trio at night"]
    vectors = encoder.encode_text(texts)
    expected = reference.text(texts)
    for vector, ref in zip(vectors, expected, strict=True):
        assert _cos(vector, ref) > 0.9999
    np.testing.assert_allclose(encoder.encode_queries(texts), vectors, atol=1e-6)  # role: no effect


def test_long_text_is_truncated_to_the_position_limit(
    model_dir: Path, encoder: ClapEncoder, reference: Reference
) -> None:
    long_text = " ".join([WORDS] * 10)
    assert len(reference.processor.tokenizer(long_text)["input_ids"]) > POSITIONS
    (vector,) = encoder.encode_text([long_text])  # would fail past the position embeddings
    assert _cos(vector, reference.text([long_text], truncation=True, max_length=62)[0]) > 0.9999
    short = ClapEncoder(model=model_dir, max_text_length=8, device="cpu")
    (vector8,) = short.encode_text([long_text])
    assert _cos(vector8, reference.text([long_text], truncation=True, max_length=8)[0]) > 0.9999
    assert _cos(vector8, vector) < 0.9999


def test_the_fast_features_are_the_feature_extractor_s(model_dir: Path) -> None:
    encoder = ClapEncoder(model=model_dir, device="cpu", batch_size=4)
    clips = [(_music(s, i), SR) for i, s in enumerate((12.0, 3.0, 25.0))]
    fast = encoder.encode_audio(clips)
    assert encoder._load().log_mel is not None
    encoder._load().log_mel = None  # newwave's fallback: the feature extractor itself
    np.testing.assert_allclose(encoder.encode_audio(clips), fast, atol=1e-6)
    assert _LogMel.checked(object(), WINDOW, torch) is None


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
def test_fast_log_mel_equals_the_extractor_for_both_kinds_of_checkpoint(truncation: str) -> None:
    extractor = transformers.ClapFeatureExtractor(
        feature_size=16, hop_length=1920, frequency_min=50, truncation=truncation
    )
    log_mel = _LogMel.checked(extractor, WINDOW, torch)
    assert log_mel is not None
    windows = [_music(10.0, 1), np.zeros(WINDOW, np.float32), repeat_pad(_music(2.5, 2), WINDOW)]
    np.random.seed(5)
    untouched = np.random.random()
    np.random.seed(5)
    expected = _extractor_features(extractor, windows, SR)
    assert np.random.random() == untouched  # the global generator is left as it was
    got = log_mel(windows)
    assert got.shape == (3, 4 if truncation == "fusion" else 1, 251, 16)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_get_features_returning_a_tensor_as_in_transformers_4(
    model_dir: Path, encoder: ClapEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = ClapEncoder(model=model_dir, device="cpu")
    model = old._load().model
    audio_features, text_features = model.get_audio_features, model.get_text_features
    monkeypatch.setattr(
        model, "get_audio_features", lambda **kw: 3.0 * audio_features(**kw).pooler_output
    )
    monkeypatch.setattr(model, "get_text_features", lambda **kw: text_features(**kw)[1])
    clips = [(_music(14.0, 3), SR)]
    np.testing.assert_allclose(old.encode_audio(clips), encoder.encode_audio(clips), atol=1e-6)
    texts = ["rain on the window"]
    np.testing.assert_allclose(old.encode_text(texts), encoder.encode_text(texts), atol=1e-6)


# -- long audio: windows and pooling --------------------------------------------------------------


@pytest.fixture(scope="module")
def clip35() -> np.ndarray:
    return _music(35.0, seed=35)


def _window_refs(reference: Reference, clip: np.ndarray, starts_s: list[float]) -> np.ndarray:
    return np.stack(
        [reference.audio(clip[round(s * SR) : round(s * SR) + WINDOW]) for s in starts_s]
    )


def test_a_35_s_clip_is_four_windows_the_last_ending_at_the_end(
    encoder: ClapEncoder, reference: Reference, clip35: np.ndarray
) -> None:
    (windows,) = encoder.encode_audio_windows([Waveform(clip35, SR)])
    expected = _window_refs(reference, clip35, [0, 10, 20, 25])
    assert windows.shape == (4, 16)
    for got, ref in zip(windows, expected, strict=True):
        assert _cos(got, ref) > 0.9999
    np.testing.assert_allclose(np.linalg.norm(windows, axis=1), 1.0, atol=1e-5)

    (mean,) = encoder.encode_audio([Waveform(clip35, SR)])
    assert _cos(mean, _unit(expected.mean(axis=0))) > 0.9999
    assert _cos(mean, _unit(windows.mean(axis=0))) > 0.99999
    assert max(_cos(mean, ref) for ref in expected) < 0.9999  # not one window alone


def test_max_pooling(model_dir: Path, reference: Reference, clip35: np.ndarray) -> None:
    encoder = ClapEncoder(model=model_dir, pooling="max", device="cpu")
    (vector,) = encoder.encode_audio([Waveform(clip35, SR)])
    expected = _window_refs(reference, clip35, [0, 10, 20, 25])
    assert _cos(vector, _unit(expected.max(axis=0))) > 0.9999
    assert _cos(vector, _unit(expected.mean(axis=0))) < 0.9999


@pytest.mark.parametrize(
    ("options", "starts_s"),
    [
        ({"max_windows": 2}, [0, 25]),
        ({"max_windows": 3}, [0, 12.5, 25]),
        ({"max_windows": 1}, [12.5]),
        ({"hop_seconds": 5}, [0, 5, 10, 15, 20, 25]),
        ({"hop_seconds": 7.5, "max_windows": 3}, [0, 12.5, 25]),
    ],
)
def test_max_windows_and_hop(
    model_dir: Path,
    reference: Reference,
    clip35: np.ndarray,
    options: dict[str, Any],
    starts_s: list[float],
) -> None:
    encoder = ClapEncoder(model=model_dir, device="cpu", **options)
    (windows,) = encoder.encode_audio_windows([(clip35, SR)])
    expected = _window_refs(reference, clip35, starts_s)
    assert windows.shape == (len(starts_s), 16)
    for got, ref in zip(windows, expected, strict=True):
        assert _cos(got, ref) > 0.9999
    (vector,) = encoder.encode_audio([(clip35, SR)])
    assert _cos(vector, _unit(expected.mean(axis=0))) > 0.9999


def test_short_clips_are_repeat_padded_not_zero_padded(
    encoder: ClapEncoder, reference: Reference
) -> None:
    clip = _music(3.0, seed=3)
    (vector,) = encoder.encode_audio([Waveform(clip, SR)])
    repeated = reference.audio(repeat_pad(clip, WINDOW))  # 3 copies then 1 s of zeros
    zero_padded = reference.audio(np.concatenate([clip, np.zeros(WINDOW - clip.size, np.float32)]))
    assert _cos(vector, reference.audio(clip)) > 0.9999  # the extractor's own "repeatpad"
    assert _cos(vector, repeated) > 0.9999
    assert _cos(vector, zero_padded) < _cos(vector, repeated) - 1e-4


def test_short_windows_are_repeat_padded_to_the_model_input(
    model_dir: Path, reference: Reference
) -> None:
    clip = _music(12.0, seed=12)
    encoder = ClapEncoder(model=model_dir, window_seconds=5, device="cpu")
    (windows,) = encoder.encode_audio_windows([(clip, SR)])
    assert windows.shape == (3, 16)  # 0, 5 and 7 s
    for got, start in zip(windows, (0, 5, 7), strict=True):
        window = clip[start * SR : (start + 5) * SR]
        assert _cos(got, reference.audio(repeat_pad(window, WINDOW))) > 0.9999


def test_stereo_at_another_rate_is_averaged_and_resampled(
    encoder: ClapEncoder, reference: Reference
) -> None:
    soxr: Any = importlib.import_module("soxr")  # untyped
    left, right = _music(6.0, 1, rate=22050), _music(6.0, 2, rate=22050)
    (vector,) = encoder.encode_audio([(np.stack([left, right]), 22050)])
    mono48 = soxr.resample((left + right) / 2, 22050, SR, quality="HQ").astype(np.float32)
    assert _cos(vector, reference.audio(mono48)) > 0.9999


# -- determinism, batches, threads ----------------------------------------------------------------


def test_same_vector_every_run_and_in_any_batch(model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "track.wav"
    sf.write(path, _music(23.0, 23), SR)
    others: list[Any] = [
        (_music(4.0, 4), SR),
        (_music(41.0, 41), SR),
        (_music(0.5, 5), 16000),
        (_music(12.0, 12), SR),
    ]
    encoder = ClapEncoder(model=model_dir, device="cpu", batch_size=2)
    alone = encoder.encode_audio([path])[0]
    np.testing.assert_array_equal(encoder.encode_audio([path])[0], alone)
    mixed = encoder.encode_audio([others[0], others[1], path, others[2], others[3]])
    np.testing.assert_allclose(mixed[2], alone, atol=1e-5)
    big = ClapEncoder(model=model_dir, device="cpu", batch_size=16)
    np.testing.assert_allclose(big.encode_audio([*others, path])[4], alone, atol=1e-5)
    fresh = ClapEncoder(model=model_dir, device="cpu")  # a new load, same weights
    np.testing.assert_allclose(fresh.encode_audio([str(path)])[0], alone, atol=1e-5)


def test_concurrent_calls_on_one_instance(model_dir: Path) -> None:
    encoder = ClapEncoder(model=model_dir, device="cpu", batch_size=3)
    clips: list[Any] = [(_music(s, i), SR) for i, s in enumerate((3.0, 15.0, 26.0, 9.0))]
    texts = ["sad piano ballad", "metal riff", "jazz trio at night", "summer pop"] * 3
    expected_audio, expected_text = encoder.encode_audio(clips), encoder.encode_text(texts)
    results: list[tuple[np.ndarray, np.ndarray]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append((encoder.encode_audio(clips), encoder.encode_text(texts)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 9
    for audio_vectors, text_vectors in results:
        np.testing.assert_allclose(audio_vectors, expected_audio, atol=1e-5)
        np.testing.assert_allclose(text_vectors, expected_text, atol=1e-5)


def test_loading_is_done_once_under_concurrency(model_dir: Path) -> None:
    encoder = ClapEncoder(model=model_dir, device="cpu")
    states: list[Any] = []
    threads = [threading.Thread(target=lambda: states.append(encoder._load())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(states) == 4
    assert all(state is states[0] for state in states)


# -- files and errors -----------------------------------------------------------------------------

FORMATS = ["wav", "flac", "ogg", *(["mp3"] if "MP3" in sf.available_formats() else [])]


@pytest.mark.parametrize("ext", FORMATS)
def test_files_of_every_format_equal_their_decoded_waveform(
    encoder: ClapEncoder, tmp_path: Path, ext: str
) -> None:
    path = tmp_path / f"track.{ext}"
    stereo = np.stack([_music(14.0, 1, rate=44100), _music(14.0, 2, rate=44100)])
    sf.write(path, stereo.T, 44100)
    decoded, rate = sf.read(path, dtype="float32", always_2d=True)
    from_file, from_array = encoder.encode_audio([path, Waveform(decoded.T, rate)])
    np.testing.assert_allclose(from_file, from_array, atol=1e-5)
    assert np.isfinite(from_file).all()


def _bad_files(directory: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    files = {}
    for name in ("corrupt.mp3", "corrupt.wav"):
        files[name] = directory / name
        files[name].write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    files["empty.ogg"] = directory / "empty.ogg"
    files["empty.ogg"].touch()
    files["missing.flac"] = directory / "missing.flac"
    return files


def test_bad_files_raise_errors_naming_them(encoder: ClapEncoder, tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, _music(3.0, 0), SR)
    bad = _bad_files(tmp_path)
    for name, path in bad.items():
        error = MissingFileError if name.startswith("missing") else AudioDecodeError
        with pytest.raises(error, match=rf"audio 1 \(.*{name}\)"):
            encoder.encode_audio([good, path])
        with pytest.raises(error, match=name):
            encoder.encode_audio_windows([path])


def test_skip_leaves_out_only_the_bad_files(encoder: ClapEncoder, tmp_path: Path) -> None:
    goods = []
    for i, seconds in enumerate((3.0, 21.0)):
        goods.append(tmp_path / f"good{i}.flac")
        sf.write(goods[-1], _music(seconds, i), SR)
    bad = list(_bad_files(tmp_path).values())
    inputs = [bad[0], goods[0], bad[1], bad[2], goods[1], bad[3]]
    with pytest.warns(SkippedInputWarning) as record:
        vectors = encoder.encode_audio(inputs, on_error="skip")
    (warning,) = [w.message for w in record]
    assert isinstance(warning, SkippedInputWarning)
    assert [index for index, _, _ in warning.failures] == [0, 2, 3, 5]
    assert not vectors[[0, 2, 3, 5]].any()
    np.testing.assert_allclose(vectors[[1, 4]], encoder.encode_audio(goods), atol=1e-5)

    with pytest.warns(SkippedInputWarning):
        windows = encoder.encode_audio_windows(inputs, on_error="skip")
    assert [len(w) for w in windows] == [0, 1, 0, 0, 3, 0]
    with pytest.raises(InvalidInputError):
        encoder.encode_audio_windows(inputs, on_error="ignore")  # type: ignore[arg-type]


def test_silence_gives_a_finite_unit_vector(encoder: ClapEncoder, tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(25 * SR, np.float32), SR)
    vectors = encoder.encode_audio([path, (np.zeros(2 * SR, np.float32), SR)])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)  # the model's one silence


def _record_decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float | None]]:
    """The (offset, duration) of every later ``newwave.audio.load_audio`` call, in order."""
    from newwave import audio

    calls: list[tuple[float, float | None]] = []
    real: Callable[..., np.ndarray] = audio.load_audio

    def spy(name: str, **options: Any) -> np.ndarray:
        calls.append((options.get("offset", 0.0), options.get("duration")))
        return real(name, **options)

    monkeypatch.setattr(audio, "load_audio", spy)
    return calls


def test_a_long_file_with_max_windows_decodes_only_its_windows(
    model_dir: Path, reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = _music(95.0, 95)
    path = tmp_path / "long.flac"
    sf.write(path, clip, SR)
    calls = _record_decodes(monkeypatch)
    encoder = ClapEncoder(model=model_dir, max_windows=3, device="cpu")
    (windows,) = encoder.encode_audio_windows([path])
    assert calls == [(0.0, 10.0), (42.5, 10.0), (85.0, 10.0)]
    expected = _window_refs(reference, clip, [0, 42.5, 85])
    for got, ref in zip(windows, expected, strict=True):
        assert _cos(got, ref) > 0.9999
    assert Windowing(max_windows=3).offsets(95.0) == (0.0, 42.5, 85.0)


def test_a_long_query_is_cut_to_the_text_limit_with_a_warning(
    encoder: ClapEncoder, reference: Reference
) -> None:
    query = " ".join([WORDS] * 20_000)  # 1.6 million characters
    with pytest.warns(TruncatedTextWarning, match="from their start only"):
        (vector,) = encoder.encode_queries([query])
    expected = reference.text([" ".join([WORDS] * 10)], truncation=True, max_length=62)[0]
    assert _cos(vector, expected) > 0.9999
    with pytest.raises(InvalidInputError, match="max_text_chars=100,000"):
        encoder.encode_text([query])  # a document that long is refused


def test_a_file_longer_than_a_batch_is_streamed_window_by_window(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = _music(95.0, 96)  # 10 windows
    path = tmp_path / "long.flac"
    sf.write(path, clip, SR)
    calls = _record_decodes(monkeypatch)
    encoder = ClapEncoder(model=model_dir, batch_size=4, device="cpu")
    (windows,) = encoder.encode_audio_windows([path])
    assert calls == [(float(s), 10.0) for s in (0, 10, 20, 30, 40, 50, 60, 70, 80, 85)]
    in_memory = encoder.encode_audio_windows([Waveform(clip, SR)])[0]
    np.testing.assert_allclose(windows, in_memory, atol=1e-5)
    calls.clear()
    pooled = encoder.encode_audio([path, Waveform(clip[: 5 * SR], SR)])
    assert len(calls) == 10
    expected = encoder.encode_audio([Waveform(clip, SR), Waveform(clip[: 5 * SR], SR)])
    np.testing.assert_allclose(pooled, expected, atol=1e-5)  # the whole track, pooled
