"""CLAP audio through newwave: decode + windowing overhead, and memory on one- and ten-hour files.

The models are randomly initialised (no download). For the throughput group the audio tower has
the real HTSAT-tiny size of ``laion/clap-htsat-unfused`` (28M parameters, 64 mel bins, 10 s
windows), so that the ratio of decoding and windowing to model time is the one of real use; a
tinier model would make decoding look expensive. The text tower, unused here, is tiny.

* ``encode 3 files ...``: ``ClapEncoder.encode_audio`` on FLAC, WAV and MP3/OGG files (decode,
  resample, window, log-mel, model, pool) against the model alone on the same windows' features,
  computed beforehand. ``extra_info`` has the audio seconds per second and ``overhead_ratio``,
  ``(newwave - model) / model`` (target: below 0.2), with the decode+window and feature times.
* ``peak memory, 60-minute file``: encoding a one-hour file with ``max_windows=6`` in a fresh
  process, against decoding the whole file (what a pipeline without seeking holds).
  ``extra_info`` has, in MB, the growth of the process's peak RSS during the call (Linux:
  ``VmHWM`` after resetting it), the peak of Python/NumPy allocations (tracemalloc; it misses
  buffers allocated in C, such as soxr's output), and the size of the fully decoded file at
  48 kHz float32. Linux only (``/proc``); skipped elsewhere.
* ``peak memory, 1-hour and 10-hour ...``: ``encode_audio`` with the default windowing (every
  window, pooled) on a one-hour and a ten-hour 16 kHz WAV, streamed, in a fresh process, against
  decoding the one-hour file whole into windows (what it held before streaming; the ten-hour one
  would need about 14 GB). ``extra_info`` has the peak RSS (``VmHWM``), the RSS before the call
  (PyTorch, transformers and the model: about 500 MB) and the growth during it (target: below
  300 MB, whatever the length). The files have 3 and 12 minutes under ``--benchmark-disable`` or
  with ``NEWWAVE_BENCH_LONG_AUDIO=small``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from newwave.encoders.clap import ClapEncoder

SR = 48000
TIMES: dict[str, list[float]] = {"model": [], "newwave": []}
GROUP_SPEED = "encode 3 files (61 s of audio, 7 windows), CLAP HTSAT-tiny random, CPU"
GROUP_MEMORY = "peak memory, 60-minute 16 kHz WAV, CLAP max_windows=6"


def _tokenizer() -> Any:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        ["a quiet piano ballad at night"] * 10,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return transformers.RobertaTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", sep_token="</s>", cls_token="<s>",
    )  # fmt: skip


def _save_random_clap(directory: Path, *, htsat: bool) -> Path:
    """A random CLAP: the real HTSAT-tiny audio tower, or a tiny one (hop 1920, 16 mel bins)."""
    import torch
    import transformers

    tokenizer = _tokenizer()
    text = {
        "vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
    }  # fmt: skip
    if htsat:  # ClapAudioConfig's defaults are laion/clap-htsat-unfused's audio tower
        audio: dict[str, Any] = {}
        extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", frequency_min=50)
        projection = 512
    else:
        audio = {
            "spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 16,
            "hidden_size": 32, "depths": [1, 1], "num_attention_heads": [1, 2],
            "num_hidden_layers": 2, "window_size": 4,
        }  # fmt: skip
        extractor = transformers.ClapFeatureExtractor(
            feature_size=16, hop_length=1920, truncation="rand_trunc", frequency_min=50
        )
        projection = 16
    config = transformers.ClapConfig(
        text_config=text, audio_config=audio, projection_dim=projection
    )
    torch.manual_seed(0)
    model: Any = transformers.ClapModel(config)
    model.eval().save_pretrained(directory)
    make_processor: Any = transformers.ClapProcessor  # untyped constructor
    processor = make_processor(feature_extractor=extractor, tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


def _music(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    freqs = rng.uniform(100, 4000, size=int(seconds) + 2)[np.floor(t).astype(int)]
    mono = 0.3 * np.sin(2 * np.pi * freqs * t)
    return np.stack([mono + 0.05 * rng.standard_normal(n) for _ in range(channels)], axis=1)


# -- throughput -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speed_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("clap-speed")
    model_dir = _save_random_clap(root / "model", htsat=True)
    mp3 = "MP3" in sf.available_formats()
    files = [root / "a.flac", root / "b.wav", root / ("c.mp3" if mp3 else "c.ogg")]
    sf.write(files[0], _music(25.0, 44100, 2, 0), 44100)
    sf.write(files[1], _music(20.0, SR, 1, 1), SR)
    sf.write(files[2], _music(16.0, 44100, 2, 2), 44100)
    encoder = ClapEncoder(model=str(model_dir), device="cpu", batch_size=8)
    encoder.encode_audio([(np.zeros(SR, np.float32), SR)])  # load and warm up
    state = encoder._load()
    assert state.log_mel is not None
    began = time.perf_counter()
    windows = [encoder._prepare(str(f), "audio") for f in files]
    prepare_s = time.perf_counter() - began
    flat = [w for track in windows for w in track]
    began = time.perf_counter()
    features = state.log_mel(flat)
    features_s = time.perf_counter() - began
    return {
        "encoder": encoder,
        "files": files,
        "features": features,
        "prepare_s": prepare_s,
        "features_s": features_s,
        "audio_s": sum(sf.info(f).duration for f in files),
    }


def _model_only(encoder: ClapEncoder, features: np.ndarray) -> np.ndarray:
    """The audio tower on ready features, in the encoder's chunks: what newwave cannot avoid."""
    state = encoder._load()
    torch = state.torch
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), encoder.batch_size):
            chunk = torch.from_numpy(features[start : start + encoder.batch_size])
            result = state.model.get_audio_features(
                input_features=chunk, is_longer=torch.zeros((len(chunk), 1), dtype=torch.bool)
            )
            out.append(getattr(result, "pooler_output", result).numpy())
    return np.concatenate(out)


def _timed(label: str, function: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        began = time.perf_counter()
        result = function()
        TIMES[label].append(time.perf_counter() - began)
        return result

    return run


@pytest.mark.benchmark(group=GROUP_SPEED)
def test_model_only_baseline(benchmark: Any, speed_setup: dict[str, Any]) -> None:
    encoder, features = speed_setup["encoder"], speed_setup["features"]
    run = _timed("model", lambda: _model_only(encoder, features))
    vectors = benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    assert vectors.shape == (7, 512)


@pytest.mark.benchmark(group=GROUP_SPEED)
def test_newwave_encode_audio_files(benchmark: Any, speed_setup: dict[str, Any]) -> None:
    encoder, files = speed_setup["encoder"], speed_setup["files"]
    run = _timed("newwave", lambda: encoder.encode_audio(files))
    vectors = benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    assert vectors.shape == (3, 512)
    if not TIMES["model"]:  # run alone: measure the baseline here
        _timed("model", lambda: _model_only(encoder, speed_setup["features"]))()
    # medians of this run's calls, the warm-up call left out when there are others
    newwave = statistics.median(TIMES["newwave"][1:] or TIMES["newwave"])
    model = statistics.median(TIMES["model"][1:] or TIMES["model"])
    benchmark.extra_info.update(
        {
            "audio_seconds": round(speed_setup["audio_s"], 1),
            "audio_seconds_per_second": round(speed_setup["audio_s"] / newwave, 1),
            "newwave_median_s": round(newwave, 4),
            "model_only_median_s": round(model, 4),
            "overhead_ratio": round((newwave - model) / model, 3),
            "decode_and_window_s": round(speed_setup["prepare_s"], 4),
            "log_mel_s": round(speed_setup["features_s"], 4),
        }
    )


# -- memory ---------------------------------------------------------------------------------------

_MEASURE = """
import json, sys, time, tracemalloc
import numpy as np

def status(field):  # Linux: kB of the current process (VmRSS now, VmHWM its peak)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

path, model, mode = sys.argv[1:4]
if mode in ("encode", "stream"):
    from newwave.encoders.clap import ClapEncoder
    options = {"max_windows": 6} if mode == "encode" else {}
    encoder = ClapEncoder(model=model, device="cpu", **options)
    encoder.encode_audio([(np.zeros(48000, np.float32), 48000)])  # load and warm up
    run = lambda: encoder.encode_audio([path])
elif mode == "windows":  # what encode_audio decoded before streaming: the whole file, cut
    from newwave.audio import Windowing, load_windows
    load_windows(path, Windowing(window_seconds=0.5, max_windows=1))  # warm up
    run = lambda: load_windows(path, Windowing(), sample_rate=48000)
else:
    from newwave.audio import load_audio
    load_audio(path, duration=1.0)  # warm up
    run = lambda: load_audio(path, sample_rate=48000)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS to the current RSS
before = status("VmRSS")
tracemalloc.start()
began = time.perf_counter()
result = run()
elapsed = time.perf_counter() - began
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"seconds": elapsed, "traced_peak_mb": peak / 2**20,
                  "peak_rss_growth_mb": (status("VmHWM") - before) / 1024,
                  "peak_rss_mb": status("VmHWM") / 1024, "rss_before_mb": before / 1024,
                  "shape": list(result.shape)}))
"""


@pytest.fixture(scope="module")
def hour_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("clap-memory")
    path = root / "hour.wav"
    rate, chunk = 16000, 60 * 16000
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write((0.1 * rng.standard_normal(chunk)).astype(np.float32))
    return {"path": path, "model": _save_random_clap(root / "model", htsat=False)}


def _measure(mode: str, hour_file: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("measuring peak RSS needs Linux /proc")
    command = [sys.executable, "-c", _MEASURE, str(hour_file["path"]), str(hour_file["model"])]
    done = subprocess.run(
        [*command, mode], check=True, capture_output=True, text=True, timeout=timeout
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _memory_info(result: dict[str, Any], hour_file: dict[str, Any]) -> dict[str, Any]:
    return {
        "seconds": round(result["seconds"], 3),
        "traced_peak_mb": round(result["traced_peak_mb"], 1),
        "peak_rss_growth_mb": round(result["peak_rss_growth_mb"], 1),
        "file_mb": round(hour_file["path"].stat().st_size / 2**20, 1),
        "decoded_48k_float32_mb": round(3600 * SR * 4 / 2**20, 1),
    }


@pytest.mark.benchmark(group=GROUP_MEMORY)
def test_full_decode_baseline(benchmark: Any, hour_file: dict[str, Any]) -> None:
    result = benchmark.pedantic(_measure, args=("decode", hour_file), rounds=1, iterations=1)
    assert result["shape"] == [3600 * SR]
    benchmark.extra_info.update(_memory_info(result, hour_file))


@pytest.mark.benchmark(group=GROUP_MEMORY)
def test_newwave_encode_with_max_windows(benchmark: Any, hour_file: dict[str, Any]) -> None:
    result = benchmark.pedantic(_measure, args=("encode", hour_file), rounds=1, iterations=1)
    assert result["shape"] == [1, 16]
    info = _memory_info(result, hour_file)
    benchmark.extra_info.update(info)
    assert info["peak_rss_growth_mb"] < 0.1 * info["decoded_48k_float32_mb"]


# -- streaming: memory independent of the length of the file --------------------------------------

GROUP_STREAM = "peak memory, 1-hour and 10-hour 16 kHz WAV, CLAP default windows (whole track)"
#: The durations, in minutes, of the "1-hour" and "10-hour" files: scaled down under
#: --benchmark-disable or with NEWWAVE_BENCH_LONG_AUDIO=small, for a cheap untimed run.
FULL_MINUTES, SMALL_MINUTES = (60, 600), (3, 12)


def _write_wav(path: Path, minutes: int) -> Path:
    rate, chunk = 16000, 60 * 16000
    noise = (0.1 * np.random.default_rng(0).standard_normal(chunk)).astype(np.float32)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(noise)
    return path


@pytest.fixture(scope="module")
def long_files(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    small = request.config.getoption("benchmark_disable") or (
        os.environ.get("NEWWAVE_BENCH_LONG_AUDIO") == "small"
    )
    minutes = SMALL_MINUTES if small else FULL_MINUTES
    root = tmp_path_factory.mktemp("clap-stream")
    model = _save_random_clap(root / "model", htsat=False)
    return {
        label: {"path": _write_wav(root / f"{label}.wav", m), "model": model, "minutes": m}
        for label, m in zip(("short", "long"), minutes, strict=True)
    }


def _stream_info(result: dict[str, Any], file: dict[str, Any]) -> dict[str, Any]:
    return {
        "minutes": file["minutes"],
        "seconds": round(result["seconds"], 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "rss_before_call_mb": round(result["rss_before_mb"], 1),
        "peak_rss_growth_mb": round(result["peak_rss_growth_mb"], 1),
        "traced_peak_mb": round(result["traced_peak_mb"], 1),
        "file_mb": round(file["path"].stat().st_size / 2**20, 1),
    }


@pytest.mark.benchmark(group=GROUP_STREAM)
def test_whole_decode_into_windows_1h_baseline(benchmark: Any, long_files: Any) -> None:
    """What ``encode_audio`` held before streaming: the whole file decoded at 48 kHz, then cut."""
    file = long_files["short"]
    result = benchmark.pedantic(_measure, args=("windows", file), rounds=1, iterations=1)
    assert result["shape"] == [6 * file["minutes"], 10 * SR]
    benchmark.extra_info.update(_stream_info(result, file))


@pytest.mark.benchmark(group=GROUP_STREAM)
@pytest.mark.parametrize("length", ["short", "long"], ids=["1h", "10h"])
def test_newwave_streamed_encode(benchmark: Any, long_files: Any, length: str) -> None:
    """``ClapEncoder.encode_audio`` with the default windowing: every window, pooled."""
    file = long_files[length]
    result = benchmark.pedantic(
        _measure, args=("stream", file), kwargs={"timeout": 1800}, rounds=1, iterations=1
    )
    assert result["shape"] == [1, 16]
    info = _stream_info(result, file)
    benchmark.extra_info.update(info)
    # The growth during the call: what decoding and the model's activations cost. The process
    # holds about 500 MB before it (PyTorch, transformers, the model), whatever the file.
    assert info["peak_rss_growth_mb"] < 300
