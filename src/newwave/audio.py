"""Audio decoding and windowing, independent of any model.

:func:`load_audio` decodes a file (any format libsndfile reads: WAV, FLAC, OGG/Vorbis, MP3 with
libsndfile >= 1.1, AIFF, ...; other formats through librosa/audioread when a backend such as
ffmpeg is installed) to mono float32 at a chosen sample rate, reading only the part asked for.
:class:`Windowing` says which fixed-length windows of a track a model sees, and
:func:`load_windows` decodes exactly those windows, so that a long file is never held in memory
whole when only a few windows are needed; :func:`iter_windows` decodes them a few at a time, so
that memory does not grow with the length of the file.

NumPy is the only import at module level; soundfile, soxr and librosa are imported when used.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from newwave._checks import positive_int
from newwave._optional import import_optional
from newwave.errors import (
    AudioDecodeError,
    InvalidInputError,
    MissingFileError,
)

__all__ = [
    "Windowing",
    "audio_duration",
    "cut_windows",
    "iter_windows",
    "load_audio",
    "load_windows",
    "repeat_pad",
    "resample",
    "to_mono",
    "window_starts",
]

FloatArray = npt.NDArray[np.float32]

_POOLINGS = ("mean", "max")


# -- windowing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Windowing:
    """Which fixed-length windows of a track are embedded, and how their vectors are pooled.

    * ``window_seconds`` (default 10): the length of every window.
    * ``hop_seconds``: the distance between the starts of consecutive windows; ``None`` (default)
      means ``window_seconds``, i.e. non-overlapping windows. Smaller values overlap.
    * ``max_windows``: at most this many windows per track (``None``: no limit), see below.
    * ``pooling``: how a track's window vectors become one vector, ``"mean"`` (default) or
      ``"max"`` (element-wise); used by the encoders, not by this module.

    The rule (:meth:`starts`), for a track of ``n`` samples and windows of ``w`` samples:

    * ``n <= w``: one window, the whole track. A track shorter than a window is repeat-padded to
      one window (:func:`repeat_pad`, LAION-CLAP's ``"repeatpad"``), never padded further.
    * otherwise windows start at ``0, hop, 2 * hop, ...`` while they end before the end of the
      track, and the last window is aligned to end exactly at the end of the track (it starts at
      ``n - w``). Every window is therefore full length and made of real audio; the last one may
      overlap its predecessor more than ``hop`` says. A 35 s track in 10 s windows gives
      windows starting at 0, 10, 20 and 25 s; a 30 s track gives 0, 10 and 20 s.
    * with ``max_windows=m`` and more than ``m`` windows by the rule above: ``m`` windows evenly
      spaced over the whole track instead, the first starting at 0 and the last ending at the
      end (start ``i * (n - w) // (m - 1)`` for ``i = 0 .. m - 1``); ``m = 1`` takes the window
      in the middle of the track (start ``(n - w) // 2``). These starts ignore ``hop``.

    Starts are computed with integer arithmetic on sample counts, so they are deterministic.
    """

    window_seconds: float = 10.0
    hop_seconds: float | None = None
    max_windows: int | None = None
    pooling: Literal["mean", "max"] = "mean"

    def __post_init__(self) -> None:
        if not _positive_number(self.window_seconds):
            raise InvalidInputError(
                f"window_seconds must be a positive number, got {self.window_seconds!r}"
            )
        if self.hop_seconds is not None and not _positive_number(self.hop_seconds):
            raise InvalidInputError(
                f"hop_seconds must be a positive number or None, got {self.hop_seconds!r}"
            )
        positive_int(self.max_windows, "max_windows", allow_none=True)
        if self.pooling not in _POOLINGS:
            raise InvalidInputError(f"pooling must be 'mean' or 'max', got {self.pooling!r}")

    def window_samples(self, sample_rate: int) -> int:
        """The length of one window in samples at ``sample_rate`` (at least 1)."""
        return max(1, round(self.window_seconds * _check_rate(sample_rate)))

    def hop_samples(self, sample_rate: int) -> int:
        """The hop in samples at ``sample_rate`` (at least 1)."""
        hop = self.window_seconds if self.hop_seconds is None else self.hop_seconds
        return max(1, round(hop * _check_rate(sample_rate)))

    def starts(self, length: int, sample_rate: int) -> tuple[int, ...]:
        """Start offsets, in samples, of the windows of a track of ``length`` samples."""
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise InvalidInputError(f"length must be a non-negative integer, got {length!r}")
        n, w = int(length), self.window_samples(sample_rate)
        if n <= w:
            return (0,)
        last = n - w
        starts = [*range(0, last, self.hop_samples(sample_rate)), last]
        m = self.max_windows
        if m is None or len(starts) <= m:
            return tuple(starts)
        if m == 1:
            return (last // 2,)
        return tuple(i * last // (m - 1) for i in range(m))

    def offsets(self, duration: float) -> tuple[float, ...]:
        """Start offsets in seconds of the windows of a track of ``duration`` seconds.

        The same rule as :meth:`starts`, on a 1 kHz grid (a millisecond resolution).
        """
        if not (_positive_number(duration) or duration == 0):
            raise InvalidInputError(f"duration must be a non-negative number, got {duration!r}")
        return tuple(s / 1000 for s in self.starts(round(duration * 1000), 1000))


def repeat_pad(samples: npt.ArrayLike, length: int) -> FloatArray:
    """``samples`` (1-D) brought to ``length`` samples the way LAION-CLAP's "repeatpad" does.

    A shorter clip is repeated as many whole times as fits (``length // len(samples)``) and the
    rest is filled with zeros; a clip of ``length`` samples or more is cut to ``length``. This is
    ``transformers.ClapFeatureExtractor(padding="repeatpad")`` for short input.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise InvalidInputError(f"expected non-empty 1-D samples, got shape {x.shape}")
    if x.size >= length:
        return np.ascontiguousarray(x[:length])
    out = np.zeros(length, dtype=np.float32)
    repeated = np.tile(x, length // x.size)
    out[: repeated.size] = repeated
    return out


def cut_windows(samples: npt.ArrayLike, windowing: Windowing, sample_rate: int) -> FloatArray:
    """The windows of mono ``samples`` by ``windowing``'s rule: an array (windows, window_len).

    A clip shorter than one window gives one repeat-padded window.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise InvalidInputError(f"expected non-empty 1-D mono samples, got shape {x.shape}")
    w = windowing.window_samples(sample_rate)
    if x.size < w:
        return repeat_pad(x, w)[None, :]
    return np.stack([x[s : s + w] for s in windowing.starts(x.size, sample_rate)])


# -- sample conversions ---------------------------------------------------------------------------


def to_mono(samples: npt.ArrayLike) -> FloatArray:
    """Mono float32: 1-D input as is, ``(channels, n)`` input averaged over its channels."""
    x = np.asarray(samples)
    if x.ndim == 2 and x.shape[0] > 1:
        # channel by channel: fast on the transposed view of a (frames, channels) file buffer
        mono: FloatArray = x[0].astype(np.float32)  # a copy
        for channel in x[1:]:
            mono += channel
        mono /= np.float32(x.shape[0])
        return mono
    if x.ndim == 2:
        x = x[0]
    if x.ndim != 1:
        raise InvalidInputError(f"samples must have shape (n,) or (channels, n), got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(samples: npt.ArrayLike, from_sr: int, to_sr: int) -> FloatArray:
    """Mono ``samples`` resampled from ``from_sr`` to ``to_sr`` Hz (soxr, high quality).

    The result has about ``len(samples) * to_sr / from_sr`` samples; equal rates return the input
    as float32 without copying when possible.
    """
    x = np.asarray(samples, dtype=np.float32)
    from_sr, to_sr = _check_rate(from_sr), _check_rate(to_sr)
    if from_sr == to_sr or x.size == 0:
        return x
    soxr = import_optional("soxr", purpose="resampling audio")  # a dependency of librosa
    out = soxr.resample(x, from_sr, to_sr, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


# -- decoding -------------------------------------------------------------------------------------


def audio_duration(path: str | os.PathLike[str]) -> float:
    """The duration of an audio file in seconds, read from its header (nothing is decoded)."""
    name = _check_file(path)
    opened = _open_soundfile(name)
    if isinstance(opened, str):  # libsndfile cannot read it: try librosa's backends
        librosa = _import_librosa()
        try:
            with _quiet_audioread():
                return float(librosa.get_duration(path=name))
        except Exception as exc:
            raise _decode_error(name, opened, exc) from exc
    with opened as f:
        return f.frames / f.samplerate if f.samplerate > 0 else 0.0


def load_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = 48000,
    offset: float = 0.0,
    duration: float | None = None,
) -> FloatArray:
    """Decode ``[offset, offset + duration)`` seconds of a file to mono float32 at ``sample_rate``.

    Only that part is decoded when the format allows seeking (libsndfile seeks in WAV, FLAC, OGG
    and, with libsndfile >= 1.1, MP3; an MP3 decoder needs a few milliseconds to settle after a
    seek, so those samples may differ slightly from a decode from the start). Without
    ``duration`` the file is read to its end. Channels are averaged; a part that is resampled is
    decoded with a little context around it, so its samples are those of the whole file
    resampled (to float32 rounding). With ``duration``, the
    result has exactly ``round(duration * sample_rate)`` samples unless the file ends before;
    an ``offset`` at or past the end gives an empty array.

    A missing file raises :class:`~newwave.errors.MissingFileError`; a file that is empty,
    corrupt, not audio, or has no samples raises :class:`~newwave.errors.AudioDecodeError`
    naming the file and the reason.
    """
    sample_rate = _check_rate(sample_rate)
    if not (_positive_number(offset) or offset == 0):
        raise InvalidInputError(f"offset must be a non-negative number of seconds, got {offset!r}")
    if duration is not None and not _positive_number(duration):
        raise InvalidInputError(f"duration must be a positive number or None, got {duration!r}")
    name = _check_file(path)
    opened = _open_soundfile(name)
    if isinstance(opened, str):
        return _load_with_librosa(name, opened, sample_rate, offset, duration)
    with opened as f:
        native = int(f.samplerate)
        total = int(f.frames)
        if native <= 0 or total <= 0:
            raise AudioDecodeError(f"{name}: the file contains no audio samples")
        start = round(offset * native)
        if start >= total:
            return np.zeros(0, dtype=np.float32)
        # Resampling a part: decode some context on both sides so that its edges come out as
        # in a resampling of the whole file. The context before is a whole number of output
        # samples long, so it can be cut off exactly.
        before = _context_frames(native, sample_rate, start)
        frames = -1
        if duration is not None:
            after = 0 if native == sample_rate else _CONTEXT
            frames = before + math.ceil(duration * native) + after
        try:
            f.seek(start - before)
            data = f.read(frames, dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile error in the middle of the file
            raise _decode_error(name, "", exc) from exc
    if data.shape[0] <= before:
        if start == 0:
            raise AudioDecodeError(f"{name}: the file contains no audio samples")
        return np.zeros(0, dtype=np.float32)
    out = resample(to_mono(data.T), native, sample_rate)
    out = out[before * sample_rate // native :]
    if duration is not None:
        out = out[: round(duration * sample_rate)]
    return np.ascontiguousarray(out, dtype=np.float32)


def load_windows(
    path: str | os.PathLike[str], windowing: Windowing, *, sample_rate: int = 48000
) -> FloatArray:
    """The windows of an audio file by ``windowing``'s rule: an array (windows, window_len).

    When the windows cover the whole track (no ``max_windows`` cap, or one that is not reached),
    the file is decoded once and cut. Otherwise each window is decoded on its own with
    :func:`load_audio`, so that, e.g., ``max_windows=3`` over a one-hour track decodes and holds
    30 s of audio; window starts then come from the duration in the file's header. Errors as for
    :func:`load_audio`.
    """
    name = _check_file(path)
    sample_rate = _check_rate(sample_rate)
    w = windowing.window_samples(sample_rate)
    length = round(audio_duration(name) * sample_rate)
    starts = windowing.starts(length, sample_rate)
    if len(starts) * w >= length:  # the windows cover the track: decode it once
        return cut_windows(load_audio(name, sample_rate=sample_rate), windowing, sample_rate)
    windows = []
    for start in starts:
        chunk = load_audio(
            name, sample_rate=sample_rate, offset=start / sample_rate, duration=w / sample_rate
        )
        if chunk.size:  # the header may overstate the length; a short chunk is repeat-padded
            windows.append(repeat_pad(chunk, w))
    if not windows:
        raise AudioDecodeError(f"{name}: no audio could be decoded at the window offsets")
    return np.stack(windows)


def window_starts(
    path: str | os.PathLike[str], windowing: Windowing, *, sample_rate: int = 48000
) -> tuple[int, ...]:
    """Start offsets, in samples at ``sample_rate``, of the windows of an audio file.

    From the duration in the file's header (:func:`audio_duration`): nothing is decoded.
    """
    sample_rate = _check_rate(sample_rate)
    return windowing.starts(round(audio_duration(path) * sample_rate), sample_rate)


def iter_windows(
    path: str | os.PathLike[str],
    windowing: Windowing,
    *,
    sample_rate: int = 48000,
    chunk: int = 16,
) -> Iterator[FloatArray]:
    """The windows of :func:`load_windows`, ``chunk`` at a time: arrays (<= chunk, window_len).

    Each window is decoded on its own with :func:`load_audio` (seeking to it), so memory holds
    ``chunk`` windows whatever the length of the file: a ten-hour file costs what a one-minute
    one does. The windows are those of :func:`load_windows` up to float rounding (and, for MP3,
    the decoder's first milliseconds after a seek). Formats libsndfile does not read (decoded
    through librosa, which cannot seek) are decoded whole, then cut, as :func:`load_windows`
    does. Errors as for :func:`load_audio`, raised when the chunk at fault is decoded.
    """
    positive_int(chunk, "chunk")
    name = _check_file(path)
    sample_rate = _check_rate(sample_rate)
    w = windowing.window_samples(sample_rate)
    opened = _open_soundfile(name)
    if isinstance(opened, str):  # no seeking: one decode, as load_windows
        whole = load_windows(name, windowing, sample_rate=sample_rate)
        for first in range(0, len(whole), chunk):
            yield whole[first : first + chunk]
        return
    opened.close()
    starts = window_starts(name, windowing, sample_rate=sample_rate)
    if len(starts) == 1 and starts[0] == 0:  # at most one window long: as load_windows
        yield load_windows(name, windowing, sample_rate=sample_rate)
        return
    decoded = 0
    for first in range(0, len(starts), chunk):
        windows: list[FloatArray] = []
        for start in starts[first : first + chunk]:
            part = load_audio(
                name, sample_rate=sample_rate, offset=start / sample_rate, duration=w / sample_rate
            )
            if part.size:  # the header may overstate the length; a short part is repeat-padded
                windows.append(repeat_pad(part, w))
        if windows:
            decoded += len(windows)
            yield np.stack(windows)
    if not decoded:
        raise AudioDecodeError(f"{name}: no audio could be decoded at the window offsets")


# -- internals ------------------------------------------------------------------------------------


def _positive_number(value: Any) -> bool:
    return bool(
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.integer, np.floating))
        and math.isfinite(value)
        and value > 0
    )


# Frames of context decoded around a part of a file that is resampled (soxr's filter is shorter).
_CONTEXT = 256


def _context_frames(native: int, target: int, start: int) -> int:
    """Frames of context to decode before a resampled part starting at frame ``start``.

    A multiple of ``native / gcd(native, target)`` frames, so that it maps to a whole number of
    output samples and can be cut off exactly: about ``_CONTEXT`` frames, fewer near the start of
    the file, none when rates are equal or that unit is too long (unusual rate pairs).
    """
    if native == target:
        return 0
    unit = native // math.gcd(native, target)
    if unit > 8 * _CONTEXT:
        return 0
    return min(unit * math.ceil(_CONTEXT / unit), start) // unit * unit


def _check_rate(rate: Any) -> int:
    return positive_int(rate, "sample rate", numpy=True)


def _check_file(path: str | os.PathLike[str]) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"expected a file path, got a {type(path).__name__}")
    name = os.fspath(path)
    file = Path(name)
    if not file.exists():
        raise MissingFileError(f"no such file: {name}")
    if not file.is_file():
        raise AudioDecodeError(f"{name}: not a regular file")
    if file.stat().st_size == 0:
        raise AudioDecodeError(f"{name}: the file is empty")
    return name


def _open_soundfile(name: str) -> Any:
    """An open ``soundfile.SoundFile``, or libsndfile's reason for not opening it."""
    # OSError: the libsndfile library is missing.
    soundfile = import_optional("soundfile", purpose="decoding audio", catch=(ImportError, OSError))
    try:
        return soundfile.SoundFile(name)
    except Exception as exc:  # LibsndfileError (a RuntimeError), or TypeError for odd headers
        reason = str(getattr(exc, "error_string", "") or exc).strip().rstrip(".")
        # libsndfile says this of some files it cannot parse (e.g. noise named .mp3); the file
        # exists, so the message would mislead.
        return "unrecognised or corrupt data" if "does not exist" in reason else reason


def _import_librosa() -> Any:
    return import_optional("librosa", purpose="decoding this format")


@contextmanager
def _quiet_audioread() -> Iterator[None]:
    """Hide librosa's "PySoundFile failed. Trying audioread instead" and its deprecation notes.

    They are expected here, libsndfile having been tried already; nothing else is hidden.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySoundFile failed")  # User/FutureWarning
        warnings.filterwarnings("ignore", message=r"librosa\.core\.audio\.__audioread_load")
        warnings.filterwarnings("ignore", message="'(aifc|audioop|sunau)' is deprecated")
        yield


def _load_with_librosa(
    name: str, reason: str, sample_rate: int, offset: float, duration: float | None
) -> FloatArray:
    librosa = _import_librosa()
    try:
        with _quiet_audioread():
            y, _ = librosa.load(
                name, sr=sample_rate, mono=True, offset=offset, duration=duration,
                res_type="soxr_hq",
            )  # fmt: skip
    except Exception as exc:
        raise _decode_error(name, reason, exc) from exc
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0 and offset == 0:
        raise AudioDecodeError(f"{name}: the file contains no audio samples")
    if duration is not None:
        y = y[: round(duration * sample_rate)]
    return np.ascontiguousarray(y)


def _decode_error(name: str, reason: str, exc: BaseException) -> AudioDecodeError:
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if type(exc).__name__ == "NoBackendError":
        detail = "no audioread backend (such as ffmpeg) can decode it either"
    libsndfile = f"libsndfile: {reason}; " if reason else ""
    return AudioDecodeError(f"{name}: not decodable audio ({libsndfile}{detail})")
