"""newwave.audio: decoding any format to mono float32, seeking, windows, repeat-padding."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from newwave import audio
from newwave.audio import (
    Windowing,
    audio_duration,
    cut_windows,
    load_audio,
    load_windows,
    repeat_pad,
    resample,
    to_mono,
)
from newwave.errors import AudioDecodeError, InvalidInputError, MissingFileError

SR = 48000
HAS_MP3 = "MP3" in sf.available_formats()


def _tone(seconds: float, rate: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels == 1:
        return mono
    return np.stack([mono * (c + 1) / channels for c in range(channels)])  # (channels, n)


def _ramp(n: int) -> np.ndarray:
    """Distinct, exactly representable PCM_16 samples: the file round-trips bit for bit."""
    return (((np.arange(n) % 20000) - 10000) / 32768.0).astype(np.float32)


def _dominant_freq(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


# -- imports --------------------------------------------------------------------------------------


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import sys, newwave.audio\n"
        "bad = [m for m in ('torch', 'transformers', 'librosa', 'soundfile') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- windowing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3.0, (0.0,)),
        (10.0, (0.0,)),
        (10.5, (0.0, 0.5)),
        (30.0, (0.0, 10.0, 20.0)),
        (35.0, (0.0, 10.0, 20.0, 25.0)),
    ],
)
def test_windows_start_on_the_hop_and_the_last_ends_at_the_end(
    seconds: float, expected: tuple[float, ...]
) -> None:
    starts = Windowing().starts(round(seconds * SR), SR)
    assert tuple(s / SR for s in starts) == expected
    assert Windowing().offsets(seconds) == expected
    assert starts[-1] + 10 * SR == max(round(seconds * SR), 10 * SR)


def test_overlapping_windows_follow_the_hop() -> None:
    assert Windowing(hop_seconds=5).offsets(35) == (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    assert Windowing(hop_seconds=4).offsets(21) == (0.0, 4.0, 8.0, 11.0)
    assert Windowing(window_seconds=2, hop_seconds=5).offsets(13) == (0.0, 5.0, 10.0, 11.0)


def test_max_windows_spreads_windows_evenly_over_the_whole_track() -> None:
    hour = 3600 * SR
    w = 10 * SR
    starts = Windowing(max_windows=5).starts(hour, SR)
    assert starts[0] == 0
    assert starts[-1] == hour - w
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1
    assert Windowing(max_windows=1).starts(hour, SR) == ((hour - w) // 2,)
    assert Windowing(max_windows=2).offsets(35) == (0.0, 25.0)
    # a cap that is not reached changes nothing
    assert Windowing(max_windows=4).offsets(35) == Windowing().offsets(35)
    # deterministic
    assert Windowing(max_windows=7).starts(hour + 123, SR) == Windowing(max_windows=7).starts(
        hour + 123, SR
    )


@pytest.mark.parametrize(
    "options",
    [
        {"window_seconds": 0},
        {"window_seconds": -1.0},
        {"window_seconds": float("nan")},
        {"window_seconds": True},
        {"hop_seconds": 0},
        {"hop_seconds": float("inf")},
        {"max_windows": 0},
        {"max_windows": 2.5},
        {"pooling": "median"},
    ],
)
def test_invalid_windowing_options(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        Windowing(**options)  # type: ignore[arg-type]


def test_window_sample_counts_and_argument_checks() -> None:
    assert Windowing(window_seconds=0.5).window_samples(SR) == SR // 2
    assert Windowing(window_seconds=2, hop_seconds=0.25).hop_samples(16000) == 4000
    with pytest.raises(InvalidInputError):
        Windowing().starts(-1, SR)
    with pytest.raises(InvalidInputError):
        Windowing().starts(100, 0)
    with pytest.raises(InvalidInputError):
        Windowing().offsets(-2.0)


def test_repeat_pad_is_laion_repeatpad() -> None:
    x = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 8), [1, 2, 3, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(repeat_pad(x, 3), x)
    np.testing.assert_array_equal(repeat_pad(x, 2), [1, 2])
    np.testing.assert_array_equal(repeat_pad(x, 4), [1, 2, 3, 0])
    with pytest.raises(InvalidInputError):
        repeat_pad(np.zeros(0, np.float32), 4)


def test_cut_windows() -> None:
    x = np.arange(35 * 100, dtype=np.float32)
    windows = cut_windows(x, Windowing(), 100)
    assert windows.shape == (4, 1000)
    for window, start in zip(windows, (0, 1000, 2000, 2500), strict=True):
        np.testing.assert_array_equal(window, x[start : start + 1000])
    short = cut_windows(x[:300], Windowing(), 100)
    np.testing.assert_array_equal(short, repeat_pad(x[:300], 1000)[None])
    with pytest.raises(InvalidInputError):
        cut_windows(np.zeros((2, 5), np.float32), Windowing(), 100)


# -- conversions ----------------------------------------------------------------------------------


def test_to_mono_averages_channels() -> None:
    stereo = np.stack([np.ones(5), 3 * np.ones(5)])
    np.testing.assert_allclose(to_mono(stereo), 2.0)
    assert to_mono(stereo).dtype == np.float32
    np.testing.assert_array_equal(to_mono(stereo[:1]), stereo[0])
    with pytest.raises(InvalidInputError):
        to_mono(np.zeros((2, 2, 2)))


def test_resample_keeps_pitch_and_length() -> None:
    x = _tone(2.0, rate=22050, freq=1000.0)
    y = resample(x, 22050, SR)
    assert y.dtype == np.float32
    assert abs(y.size - 2 * SR) <= 1
    assert abs(_dominant_freq(y, SR) - 1000.0) < 2.0
    assert resample(y, SR, SR) is y or np.array_equal(resample(y, SR, SR), y)


# -- decoding -------------------------------------------------------------------------------------

FORMATS = ["wav", "flac", "ogg", *(["mp3"] if HAS_MP3 else [])]


@pytest.mark.parametrize("ext", FORMATS)
def test_formats_decode_to_mono_at_the_requested_rate(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"tone.{ext}"
    sf.write(path, _tone(3.0, rate=44100, freq=880.0, channels=2).T, 44100)
    assert audio_duration(path) == pytest.approx(3.0, abs=0.06)
    y = load_audio(path)
    assert y.dtype == np.float32
    assert y.ndim == 1
    assert abs(y.size - 3 * SR) <= SR // 20  # lossy codecs may add a few ms
    assert abs(_dominant_freq(y, SR) - 880.0) < 3.0
    part = load_audio(path, sample_rate=16000, offset=1.0, duration=0.5)
    assert part.size == 8000


def test_lossless_decode_is_exact_and_channels_are_averaged(tmp_path: Path) -> None:
    x = _ramp(SR)
    path = tmp_path / "ramp.flac"
    sf.write(path, np.stack([x, x]).T, SR, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path), x)
    np.testing.assert_array_equal(load_audio(path, offset=0.25, duration=0.5), x[12000:36000])


def test_offset_past_the_end_gives_nothing_and_the_tail_is_short(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(2.0), SR)
    assert load_audio(path, offset=5.0).size == 0
    assert load_audio(path, offset=1.5, duration=10.0).size == SR // 2


def test_resampled_windows_have_exactly_the_requested_length(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(5.0, rate=44100), 44100)
    for offset in (0.0, 0.3, 1.7):
        assert load_audio(path, offset=offset, duration=1.3).size == round(1.3 * SR)


def test_missing_empty_corrupt_and_odd_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.wav"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(MissingFileError, match=r"nope\.wav"):
        audio_duration(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(AudioDecodeError, match=r"empty\.wav.*empty"):
        load_audio(empty)
    rng = np.random.default_rng(0)
    for name in ("noise.mp3", "noise.wav", "noise.flac"):
        bad = tmp_path / name
        bad.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
        with pytest.raises(AudioDecodeError, match=f"{name}.*not decodable audio"):
            load_audio(bad)
        with pytest.raises(AudioDecodeError, match=name):
            audio_duration(bad)
    with pytest.raises(AudioDecodeError, match="not a regular file"):
        load_audio(tmp_path)
    no_frames = tmp_path / "no_frames.wav"
    sf.write(no_frames, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioDecodeError, match="no audio samples"):
        load_audio(no_frames)


def test_argument_checks(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(1.0), SR)
    options: dict[str, Any]
    for options in ({"offset": -1.0}, {"duration": 0}, {"sample_rate": 0}, {"sample_rate": 4.5}):
        with pytest.raises(InvalidInputError):
            load_audio(path, **options)
    with pytest.raises(InvalidInputError):
        load_audio(42)  # type: ignore[arg-type]


def test_a_resampled_part_matches_the_whole_file_resampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = (0.2 * rng.standard_normal(5 * 44100)).astype(np.float32)
    path = tmp_path / "noise.flac"
    sf.write(path, x, 44100, subtype="PCM_24")
    whole = load_audio(path)
    # 4.0: the part ends with the file; 147 frames: little context before it
    for offset in (0.5, 1.7, 4.0, 147 / 44100):
        part = load_audio(path, offset=offset, duration=0.75)
        start = round(offset * SR)
        np.testing.assert_allclose(part, whole[start : start + part.size], atol=1e-5)
        assert part.size == min(36000, whole.size - start)


def test_librosa_fallback_for_what_libsndfile_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(2.0, rate=44100), 44100)
    direct = load_audio(path, offset=0.5, duration=1.0)
    monkeypatch.setattr(audio, "_open_soundfile", lambda name: "Format not recognised")
    fallback = load_audio(path, offset=0.5, duration=1.0)
    assert fallback.size == direct.size
    # librosa resamples the part alone: its first and last samples differ a little
    np.testing.assert_allclose(fallback[64:-64], direct[64:-64], atol=1e-4)
    assert audio_duration(path) == pytest.approx(2.0)


# -- long files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 10-minute 48 kHz PCM_16 WAV whose samples are known exactly (58 MB)."""
    path = tmp_path_factory.mktemp("long") / "ten_minutes.wav"
    n = 600 * SR
    x = _ramp(n)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for start in range(0, n, 60 * SR):
            f.write(x[start : start + 60 * SR])
    return path, x


def test_a_window_of_a_long_file_is_read_without_decoding_the_file(
    ten_minutes: tuple[Path, np.ndarray],
) -> None:
    path, x = ten_minutes
    assert audio_duration(path) == 600.0
    tracemalloc.start()
    try:
        began = time.perf_counter()
        y = load_audio(path, offset=333.25, duration=10.0)
        elapsed = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    start = round(333.25 * SR)
    np.testing.assert_array_equal(y, x[start : start + 10 * SR])
    assert peak < 8 * 10 * SR  # a few copies of 10 s; the whole file decoded is 115 MB
    assert elapsed < 1.0


def test_load_windows_decodes_only_the_windows_it_needs(
    ten_minutes: tuple[Path, np.ndarray],
) -> None:
    path, x = ten_minutes
    windowing = Windowing(max_windows=3)
    tracemalloc.start()
    try:
        windows = load_windows(path, windowing, sample_rate=SR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert windows.shape == (3, 10 * SR)
    for window, start in zip(windows, windowing.starts(x.size, SR), strict=True):
        np.testing.assert_array_equal(window, x[start : start + 10 * SR])
    assert peak < 3 * 4 * 10 * SR * 4  # about the 3 windows, far below 115 MB


def test_load_windows_of_a_short_track_cuts_one_decode(tmp_path: Path) -> None:
    x = _ramp(25 * SR)
    path = tmp_path / "ramp.wav"
    sf.write(path, x, SR, subtype="PCM_16")
    np.testing.assert_array_equal(load_windows(path, Windowing()), cut_windows(x, Windowing(), SR))
    short = tmp_path / "short.wav"
    sf.write(short, x[: 2 * SR], SR, subtype="PCM_16")
    np.testing.assert_array_equal(
        load_windows(short, Windowing()), repeat_pad(x[: 2 * SR], 10 * SR)[None]
    )


def test_load_windows_accepts_path_objects_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(1.0), SR)
    a = load_windows(path, Windowing(window_seconds=0.5))
    b = load_windows(os.fspath(path), Windowing(window_seconds=0.5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, SR // 2)


def test_iter_windows_streams_every_window_a_chunk_at_a_time(
    ten_minutes: tuple[Path, np.ndarray],
) -> None:
    path, x = ten_minutes
    windowing = Windowing(hop_seconds=7.5)
    starts = windowing.starts(x.size, SR)
    assert audio.window_starts(path, windowing, sample_rate=SR) == starts
    tracemalloc.start()
    try:
        sizes, peak = [], 0
        for i, chunk in enumerate(audio.iter_windows(path, windowing, sample_rate=SR, chunk=4)):
            sizes.append(len(chunk))
            for window, start in zip(chunk, starts[4 * i : 4 * i + 4], strict=True):
                np.testing.assert_array_equal(window, x[start : start + 10 * SR])
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == len(starts) == 80
    assert set(sizes) == {4}
    assert peak < 4 * 4 * 10 * SR * 4  # a few chunks of 4 windows, far below the 115 MB file


def test_iter_windows_of_short_and_resampled_files(tmp_path: Path) -> None:
    x = _ramp(25 * SR)
    path = tmp_path / "ramp.wav"
    sf.write(path, x, SR, subtype="PCM_16")
    got = np.concatenate(list(audio.iter_windows(path, Windowing(), sample_rate=SR, chunk=2)))
    np.testing.assert_array_equal(got, cut_windows(x, Windowing(), SR))
    short = tmp_path / "short.wav"
    sf.write(short, x[: 2 * SR], SR, subtype="PCM_16")
    (one,) = audio.iter_windows(short, Windowing(), sample_rate=SR)
    np.testing.assert_array_equal(one, repeat_pad(x[: 2 * SR], 10 * SR)[None])
    slow = tmp_path / "tone44.wav"
    sf.write(slow, _tone(35.0, rate=44100), 44100)
    streamed = np.concatenate(list(audio.iter_windows(slow, Windowing(), chunk=3)))
    np.testing.assert_allclose(streamed, load_windows(slow, Windowing()), atol=1e-4)
    with pytest.raises(InvalidInputError, match="chunk must be a positive integer"):
        next(audio.iter_windows(slow, Windowing(), chunk=0))
