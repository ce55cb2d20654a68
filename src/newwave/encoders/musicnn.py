"""The built-in ``musicnn`` plugin: music audio tagging and audio embeddings, offline.

musicnn (Pons & Serra, 2019; ISC licence) is a musically motivated CNN trained to tag music with
50 tags: MagnaTagATune's (``MTT_musicnn``: guitar, piano, slow, fast, techno, vocals, no vocals,
female, male, ambient, rock, ...) or the Million Song Dataset's (``MSD_musicnn``). Its TensorFlow
1 checkpoints ship inside the ``musicnn`` wheel on PyPI; newwave reads them with NumPy
(:mod:`newwave.encoders._tf_checkpoint`) and runs the network in PyTorch: no TensorFlow.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from newwave._checks import positive_int
from newwave._optional import import_optional
from newwave.audio import load_audio, resample, to_mono
from newwave.device import resolve_device
from newwave.encoders.base import Encoder, Skipped
from newwave.errors import (
    AudioDecodeError,
    InvalidInputError,
    ModelNotFoundError,
)
from newwave.hookspecs import Register, hookimpl
from newwave.types import AudioInput, FloatMatrix, Modality, Role, Waveform

__all__ = [
    "INSTALL_HINT",
    "LABELS",
    "MODELS",
    "MusicnnEncoder",
    "log_mel_patches",
    "packaged_checkpoint",
    "register_encoders",
]

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
N_FRAMES = 187  # one 3-second patch

#: The tags of each model, in the order of its outputs (musicnn's ``configuration.py``).
LABELS: dict[str, tuple[str, ...]] = {
    "MTT_musicnn": (
        "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock",
        "fast", "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian",
        "opera", "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet",
        "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
        "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats",
        "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
    ),
    "MSD_musicnn": (
        "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
        "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
        "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
        "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
        "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
        "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
        "60s", "rnb", "indie pop", "sad", "House", "happy",
    ),
}  # fmt: skip

#: The models this encoder runs (the directories of the ``musicnn`` package).
MODELS = tuple(LABELS)

#: How to get the weights; the ``musicnn`` wheel's declared dependencies (TensorFlow, numpy<1.17)
#: do not install on current Python and are not needed, hence ``--no-deps``.
INSTALL_HINT = "pip install --no-deps 'musicnn==0.1.0'"


def packaged_checkpoint(model: str = "MTT_musicnn") -> Path | None:
    """The checkpoint directory of ``model`` in the installed ``musicnn`` package, if any.

    The package is located, not imported (importing it would import TensorFlow).
    """
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        directory = Path(location) / model
        if (directory / ".index").is_file():
            return directory
    return None


def log_mel_patches(samples: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """musicnn's input for mono 16 kHz ``samples``: log-mel patches ``(patches, 187, 96)``.

    As ``musicnn.extractor.batch_data`` computes them: librosa's mel power spectrogram (FFT 512,
    hop 256, 96 mel bands), rounded to float16, compressed as ``log10(10000 x + 1)`` in float32
    (what musicnn's ``np.log10(10000 * x + 1)`` on a float16 array gives under NumPy 1's casting
    rules; NumPy 2 would compute it in float16, where ``10000 x`` overflows for loud audio), then
    cut into consecutive, non-overlapping 3-second patches (187 frames; the frames after the last
    whole patch are dropped). A clip shorter than one patch is looped (its frames repeated) to
    fill one patch, where musicnn fails.
    """
    import librosa

    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise InvalidInputError(f"expected non-empty 1-D mono samples, got shape {y.shape}")
    mel = librosa.feature.melspectrogram(
        y=y, sr=SAMPLE_RATE, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS
    ).T
    half = mel.astype(np.float16).astype(np.float32)
    rep32 = np.log10(np.float32(10000) * half + np.float32(1))
    frames = rep32.shape[0]
    if frames < N_FRAMES:
        rep32 = rep32[np.arange(N_FRAMES) % frames]
        frames = N_FRAMES
    count = (frames - N_FRAMES) // N_FRAMES + 1
    return np.ascontiguousarray(rep32[: count * N_FRAMES].reshape(count, N_FRAMES, N_MELS))


@dataclass
class _Loaded:
    torch: Any
    net: Any
    source: str


class MusicnnEncoder(Encoder):
    """musicnn audio tagging (50 tags) and its 200-d penultimate features as audio vectors.

    Options: ``model``, ``"MTT_musicnn"`` (default; MagnaTagATune tags) or ``"MSD_musicnn"``
    (Million Song Dataset tags); ``checkpoint``, a directory holding the model's TensorFlow
    checkpoint (``.index`` and ``.data-00000-of-00001``, as in the ``musicnn`` package) or a
    checkpoint prefix; by default the installed ``musicnn`` package's (install it with
    ``pip install --no-deps 'musicnn==0.1.0'``); ``device``, ``batch_size`` (tracks per batch;
    their patches run in one forward pass), ``show_progress_bar``; ``window_patches`` (default
    3), the length in patches of the windows of :meth:`encode_audio_windows` (a windowed field,
    :mod:`newwave.search.windows`).

    Audio is decoded and averaged to mono at 16 kHz and cut into 3-second log-mel patches
    (:func:`log_mel_patches`). Each patch gets 50 tag probabilities (sigmoid outputs) and a
    200-d penultimate feature vector (the batch-normalised dense layer); a track's tag
    probabilities are the mean over its patches (musicnn's ``top_tags``), its vector the mean of
    its patches' features, L2-normalised (:meth:`encode_audio`). A track shorter than 3 s is
    looped to 3 s. :meth:`tags` and :meth:`tag_probabilities` give the tags.

    The network is a layer-by-layer PyTorch rebuild of ``musicnn.models.build_musicnn``; its
    outputs match musicnn's TensorFlow ones (see ``tests/encoders/test_musicnn.py``). The weights
    are read from the TensorFlow checkpoint directly, without TensorFlow.
    """

    name = "musicnn"
    modalities = frozenset({"audio"})
    default_batch_size: ClassVar[int] = 8

    def __init__(
        self,
        *,
        model: str = "MTT_musicnn",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        window_patches: int = 3,
    ) -> None:
        super().__init__(batch_size=batch_size, show_progress_bar=show_progress_bar)
        positive_int(window_patches, "window_patches")
        self.window_patches = window_patches
        if model not in LABELS:
            raise InvalidInputError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise InvalidInputError(f"checkpoint must be a path, got {checkpoint!r}")
        self.model = model
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.device = resolve_device(device)
        self._state: _Loaded | None = None
        self._lock = threading.Lock()

    # -- Encoder interface --------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return 200

    @property
    def model_id(self) -> str:
        """``musicnn/<model>``, with ``@<checkpoint>`` when the weights come from a path."""
        base = f"musicnn/{self.model}"
        return base if self.checkpoint is None else f"{base}@{self.checkpoint}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's 50 tags, in the order of :meth:`tag_probabilities`' columns."""
        return LABELS[self.model]

    @property
    def weights_source(self) -> str:
        """The checkpoint the weights were read from (loads them)."""
        return self._load().source

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "checkpoint": self.checkpoint,
            "batch_size": self.batch_size,
            "window_patches": self.window_patches,
        }

    def encode_audio(
        self,
        audio: Sequence[AudioInput],
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> FloatMatrix:
        """Each track's mean penultimate features, L2-normalised: ``(len(audio), 200)``."""
        self._load()  # a missing checkpoint is not an input's error: raise it before any input
        return super().encode_audio(
            audio, batch_size=batch_size, show_progress_bar=show_progress_bar, on_error=on_error
        )

    def encode_audio_windows(
        self,
        audio: Sequence[AudioInput],
        *,
        batch_size: int | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> list[FloatMatrix]:
        """Each input's window vectors, in time order: a ``(windows, 200)`` array per input.

        A window is ``window_patches`` consecutive 3-second patches (default 3: 9 s), one
        patch apart; its vector is the L2-normalised mean of their penultimate features, what
        :meth:`encode_audio` gives for that stretch alone. A track of fewer patches is one
        window, its :meth:`encode_audio` vector. A skipped input (``on_error="skip"``) has no
        rows. Inputs and errors as for :meth:`encode_audio`.
        """
        from newwave._vectors import l2_normalize

        items, size = self._check_audio_call(audio, on_error, batch_size)
        self._load()
        out = [np.zeros((0, self.dim), dtype=np.float32) for _ in items]
        skipped: list[Skipped] | None = [] if on_error == "skip" else None
        span = self.window_patches
        for start in range(0, len(items), size):
            indices = range(start, min(start + size, len(items)))
            index, prepared = self._prepare_batch(items, indices, "audio", skipped)
            if not index:
                continue
            features = self.forward_patches(np.concatenate(prepared))[1]
            bounds = np.cumsum([0, *(len(p) for p in prepared)])
            for i, (a, b) in zip(index, itertools.pairwise(bounds), strict=True):
                n = min(span, b - a)
                sums = np.cumsum(np.concatenate([np.zeros((1, self.dim)), features[a:b]]), axis=0)
                means = (sums[n:] - sums[:-n]) / n  # each run of n patches, one patch apart
                out[i] = l2_normalize(np.ascontiguousarray(means, dtype=np.float32))
        self._warn_skipped("audio", skipped, stacklevel=2)
        return out

    def _prepare(self, item: Any, modality: Modality) -> Any:
        return self.patches(item)

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> FloatMatrix:
        return self._forward(batch)[1]

    # -- tagging ------------------------------------------------------------------------------

    def tag_probabilities(
        self,
        audio: Sequence[AudioInput],
        *,
        batch_size: int | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> FloatMatrix:
        """Each track's tag probabilities, ``(len(audio), 50)`` in the order of :attr:`labels`:
        the mean over its 3-second patches of the model's sigmoid outputs. A skipped input
        (``on_error="skip"``) gets a row of NaN."""
        return self._both(audio, batch_size, on_error)[0]

    def tag_probabilities_and_vectors(
        self,
        audio: Sequence[AudioInput],
        *,
        batch_size: int | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> tuple[FloatMatrix, FloatMatrix]:
        """:meth:`tag_probabilities` and :meth:`encode_audio` of ``audio`` from one pass of the
        network: ``(len(audio), 50)`` and ``(len(audio), 200)`` (e.g. to tag tracks and index
        their audio with ``Recommender.add(tracks, vectors=...)``). A skipped input gets rows
        of NaN."""
        from newwave._vectors import l2_normalize

        probabilities, features = self._both(audio, batch_size, on_error)
        return probabilities, l2_normalize(features)

    def _both(
        self, audio: Sequence[AudioInput], batch_size: int | None, on_error: str
    ) -> tuple[FloatMatrix, FloatMatrix]:
        items, size = self._check_audio_call(audio, on_error, batch_size)
        self._load()
        probabilities = np.full((len(items), len(self.labels)), np.nan, dtype=np.float32)
        features = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        skipped: list[Skipped] | None = [] if on_error == "skip" else None
        for start in range(0, len(items), size):
            indices = range(start, min(start + size, len(items)))
            index, prepared = self._prepare_batch(items, indices, "audio", skipped)
            if index:
                probabilities[index], features[index] = self._forward(prepared)
        self._warn_skipped("audio", skipped, stacklevel=3)
        return probabilities, features

    def tags(
        self,
        audio: Sequence[AudioInput],
        *,
        top_k: int | None = None,
        threshold: float = 0.0,
        batch_size: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Each track's ``(tag, probability)`` pairs, most probable first.

        ``top_k`` keeps the first ``k``; ``threshold`` keeps those with a probability of at
        least that much. These are a model's guesses, to fill in a track that has no tags, not
        human tags: keep them apart (e.g. in ``track.metadata``) and say where they came from.
        """
        positive_int(top_k, "top_k", allow_none=True)
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise InvalidInputError(f"threshold must lie in [0, 1], got {threshold!r}")
        probabilities = self.tag_probabilities(audio, batch_size=batch_size)
        labels = self.labels
        out = []
        for row in probabilities:
            order = sorted(range(len(labels)), key=lambda j: (-row[j], j))
            pairs = [(labels[j], float(row[j])) for j in order if row[j] >= threshold]
            out.append(pairs[:top_k] if top_k is not None else pairs)
        return out

    # -- the steps ----------------------------------------------------------------------------

    def patches(self, audio: str | Waveform) -> npt.NDArray[np.float32]:
        """One track's log-mel patches ``(patches, 187, 96)`` (see :func:`log_mel_patches`):
        a file decoded to mono 16 kHz, or a :class:`Waveform` averaged to mono and resampled."""
        if isinstance(audio, Waveform):
            samples = resample(to_mono(audio.samples), audio.sample_rate, SAMPLE_RATE)
        else:
            samples = load_audio(audio, sample_rate=SAMPLE_RATE)
        if samples.size < N_FFT:
            raise AudioDecodeError(
                f"the audio is too short for musicnn ({samples.size} samples at 16 kHz; "
                f"at least {N_FFT} are needed)"
            )
        return log_mel_patches(samples)

    def forward_patches(
        self, patches: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Patches ``(n, 187, 96)`` -> each patch's tag probabilities ``(n, 50)`` and
        penultimate features ``(n, 200)``, as musicnn's ``extractor`` returns them (its
        ``taggram`` and ``features["penultimate"]``)."""
        state = self._load()
        torch = state.torch
        x = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            logits, penultimate = state.net(x)
            probabilities = torch.sigmoid(logits)
        return (
            np.ascontiguousarray(probabilities.cpu().numpy(), dtype=np.float32),
            np.ascontiguousarray(penultimate.cpu().numpy(), dtype=np.float32),
        )

    # -- internals ----------------------------------------------------------------------------

    def _forward(self, tracks: list[Any]) -> tuple[FloatMatrix, FloatMatrix]:
        """Tracks' patches -> per-track mean probabilities and mean penultimate features."""
        counts = [len(p) for p in tracks]
        probabilities, features = self.forward_patches(np.concatenate(tracks))
        bounds = np.cumsum([0, *counts])
        probs = np.stack([probabilities[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
        feats = np.stack([features[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
        return probs.astype(np.float32), feats.astype(np.float32)

    def _load(self) -> _Loaded:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                self._state = self._build()
            return self._state

    def _build(self) -> _Loaded:
        torch = import_optional("torch", purpose="the musicnn encoder")
        from newwave.encoders._musicnn_model import Musicnn
        from newwave.encoders._tf_checkpoint import read_checkpoint

        prefix = self._checkpoint_prefix()
        weights = read_checkpoint(prefix, lambda name: not name.endswith(("/Adam", "/Adam_1")))
        net = Musicnn(weights)
        if net.n_labels != len(self.labels) or net.n_penultimate != self.dim:
            raise ModelNotFoundError(
                f"the checkpoint at {prefix!r} has {net.n_labels} outputs and "
                f"{net.n_penultimate} penultimate units, but {self.model} has {len(self.labels)} "
                f"tags and {self.dim} units: is it a checkpoint of {self.model}?"
            )
        net.eval().to(self.device)
        return _Loaded(torch=torch, net=net, source=prefix)

    def _checkpoint_prefix(self) -> str:
        """The checkpoint prefix: ``checkpoint`` (a directory or a prefix), else the package's."""
        if self.checkpoint is not None:
            path = Path(self.checkpoint).expanduser()
            if path.is_dir():
                if not (path / ".index").is_file():
                    raise ModelNotFoundError(
                        f"checkpoint directory {self.checkpoint!r} has no .index file: expected a "
                        f"musicnn model directory such as site-packages/musicnn/{self.model}"
                    )
                return os.fspath(path) + os.sep
            if not Path(os.fspath(path) + ".index").is_file():
                raise ModelNotFoundError(
                    f"no musicnn checkpoint at {self.checkpoint!r} (neither a directory with a "
                    f".index file nor a prefix of a .index file)"
                )
            return os.fspath(path)
        directory = packaged_checkpoint(self.model)
        if directory is None:
            raise ModelNotFoundError(
                f"the musicnn weights ({self.model}) were not found: they ship in the musicnn "
                f"package on PyPI, which is not installed. Install it without its dependencies "
                f"(TensorFlow is not needed): {INSTALL_HINT}; or pass checkpoint= a directory "
                "holding the model's .index and .data-00000-of-00001 files"
            )
        return os.fspath(directory) + os.sep


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``musicnn``."""
    register(MusicnnEncoder)
