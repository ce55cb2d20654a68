"""The built-in ``clap`` plugin: LAION CLAP audio and text embeddings in one space."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np

from newwave.audio import (
    Windowing,
    cut_windows,
    iter_windows,
    load_windows,
    repeat_pad,
    resample,
    to_mono,
    window_starts,
)
from newwave.encoders._clap_onnx import ClapTowers
from newwave.encoders._hf import (
    PretrainedEncoder,
    fit_to_windows,
    import_backend,
    load_pretrained,
    quiet_weight_loading,
)
from newwave.encoders._onnx import check_backend, check_onnx_device, import_onnx, onnx_device
from newwave.encoders.base import Skipped
from newwave.errors import (
    AudioDecodeError,
    InvalidInputError,
    PluginError,
)
from newwave.hookspecs import Register, hookimpl
from newwave.types import AudioInput, FloatMatrix, Modality, Role, Waveform

__all__ = ["DEFAULT_MODEL", "ClapEncoder", "register_encoders"]

DEFAULT_MODEL = "laion/clap-htsat-unfused"

# Largest gap (dB) allowed between newwave's vectorised log-mel and the feature extractor's on a
# probe signal before newwave falls back to the (slower) feature extractor.
_FAST_FEATURES_ATOL = 1e-3


@dataclass
class _Clap:
    torch: ModuleType
    model: Any  # None with backend="onnx"
    tokenizer: Any
    extractor: Any
    sample_rate: int  # the feature extractor's sampling rate
    input_samples: int  # the audio tower's input length: max_length_s * sample_rate
    max_text_length: int
    log_mel: _LogMel | None  # None: use the feature extractor itself
    source: str
    config: Any  # the ClapConfig
    towers: ClapTowers | None = None  # backend="onnx": the towers' ONNX Runtime sessions


class ClapEncoder(PretrainedEncoder[_Clap]):
    """CLAP (LAION) embeddings of audio and text in one space, for text-to-music search.

    Loads ``transformers.ClapModel`` with its feature extractor and tokenizer from ``model``: a
    hub id (default ``laion/clap-htsat-unfused``; any CLAP checkpoint, e.g.
    ``laion/larger_clap_music``) or a local directory (see :mod:`newwave.encoders._hf` for where
    weights are looked for). The model is loaded on first use; loading is serialised by a lock.

    **Audio.** Files are decoded with :func:`newwave.audio.load_windows` (WAV, FLAC, OGG, MP3 and
    whatever else libsndfile, or librosa with ffmpeg, reads); arrays and :class:`Waveform`
    objects are averaged to mono and resampled to the feature extractor's rate (48 kHz). Each
    track is cut into windows by :class:`newwave.audio.Windowing` (options ``window_seconds``,
    default 10 s, the model's input length; ``hop_seconds``, default non-overlapping;
    ``max_windows``; ``pooling``): consecutive windows from the start, the last one aligned to the
    end of the track (a 35 s track gives windows at 0, 10, 20 and 25 s); with ``max_windows=m``,
    ``m`` windows evenly spaced over the whole track, and only those are decoded from a file. A
    file of more windows than ``batch_size`` is streamed: its windows are decoded (each on its
    own, :func:`newwave.audio.iter_windows`) and embedded ``batch_size`` at a time, so memory
    does not grow with the file's length (a ten-hour file fits in the memory of a short one);
    the pooled vector still covers the whole track. A
    track shorter than a window is repeat-padded to one window (LAION-CLAP's ``"repeatpad"``:
    repeated whole, the rest zeros), never padded further. A window shorter than the model's
    input (``window_seconds`` below 10) is repeat-padded to it; a longer one is an error.

    Every window is embedded on its own (``ClapModel.get_audio_features``: the projected, pooled
    embedding), L2-normalised; a track's vector is the element-wise ``"mean"`` (default) or
    ``"max"`` of its window vectors, L2-normalised. A track of one window gets exactly the vector
    of ``ClapProcessor`` + ``get_audio_features``. :meth:`encode_audio_windows` returns the window
    vectors themselves. The result is deterministic and independent of the other inputs of the
    call (up to float rounding, about 1e-6): windows are always exactly the model's input
    length, so the feature extractor's random crop (``truncation="rand_trunc"``) and random
    fusion choice never happen; fusion checkpoints see every window as an unfused clip
    (``is_longer=False``). Log-mel features are computed by a vectorised copy of the feature
    extractor's, checked against it on a probe signal when the model loads (the feature
    extractor itself is used if they differ). Windows of a file decoded one by one (with
    ``max_windows``) may differ from a decode of the whole file in their first milliseconds for
    MP3 (the decoder settles after a seek).

    Silence is embedded as is: a silent track gets the model's vector for silence (finite, unit
    length), not an error and not zeros.

    **Text.** Tokenised with the model's tokenizer and truncated to ``max_text_length`` tokens,
    special tokens included (default, and upper bound: the tokenizer's ``model_max_length``,
    capped at the text model's position limit, 512 for the LAION checkpoints); the excess is
    ignored. Queries and documents are embedded alike (``role`` makes no difference).

    **Threads.** One instance may be used from several threads at once (tested on CPU: three
    threads encoding audio and text concurrently get the vectors of sequential calls): inference
    runs in ``torch.inference_mode`` on a model in eval mode, which changes no state, and
    tokenisation is serialised (fast tokenizers reconfigure themselves per call). Concurrent
    calls share PyTorch's CPU threads, so they are not faster than one call.

    **The forward pass, step by step.** Encoding runs :meth:`audio_windows`,
    :meth:`window_features`, :meth:`embed_features` and :meth:`pool_windows` for audio, and
    :meth:`tokenize` and :meth:`embed_tokens` for text; the CLAP trainer
    (:mod:`newwave.train.clap`) runs the same methods with gradients. :meth:`save_pretrained`
    writes a directory this encoder loads.

    **ONNX Runtime.** ``backend="onnx"`` runs each tower's forward pass on ONNX Runtime (CPU,
    float32), exported from the model's files the first time the tower is used and cached (see
    :mod:`newwave.encoders._clap_onnx`); ``quantize="int8"`` runs int8-quantised copies. Windows,
    features, pooling and normalisation are the same as with the default ``backend="torch"``;
    :meth:`torch_model` and :meth:`save_pretrained` need the torch backend.

    Other options: ``device`` (see :func:`newwave.device.resolve_device`), ``batch_size`` (texts
    or tracks per batch, and windows per forward pass; default 16), ``show_progress_bar``,
    ``dtype`` (``"float32"``; ``"float16"`` on GPU only, or ``"bfloat16"``).
    """

    name = "clap"
    modalities = frozenset({"text", "audio"})
    default_batch_size: ClassVar[int] = 16
    known_dims: ClassVar[Mapping[str, int]] = {
        DEFAULT_MODEL: 512,
        "laion/clap-htsat-fused": 512,
    }

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        dtype: str = "float32",
        window_seconds: float = 10.0,
        hop_seconds: float | None = None,
        max_windows: int | None = None,
        pooling: Literal["mean", "max"] = "mean",
        max_text_length: int | None = None,
        backend: str = "torch",
        quantize: str | None = None,
    ) -> None:
        check_backend(backend, quantize)
        device = onnx_device(backend, dtype, device)
        self.backend = backend
        self.quantize = quantize
        super().__init__(
            model=model,
            device=device,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            dtype=dtype,
        )
        self.windowing = Windowing(
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            max_windows=max_windows,
            pooling=pooling,
        )
        if max_text_length is not None and (
            isinstance(max_text_length, bool)
            or not isinstance(max_text_length, int)
            or max_text_length < 3
        ):
            raise InvalidInputError(
                f"max_text_length must be an integer >= 3 or None, got {max_text_length!r}"
            )
        self.max_text_length = max_text_length
        check_onnx_device(backend, self.device)
        self._tokenizer_lock = threading.Lock()

    # -- Encoder interface --------------------------------------------------------------------

    def _loaded_dim(self, state: _Clap) -> int:
        return int(state.config.projection_dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "window_seconds": self.windowing.window_seconds,
            "hop_seconds": self.windowing.hop_seconds,
            "max_windows": self.windowing.max_windows,
            "pooling": self.windowing.pooling,
            "max_text_length": self.max_text_length,
            **(
                {}
                if self.backend == "torch"
                else {"backend": self.backend, "quantize": self.quantize}
            ),
        }

    def encode_text(
        self,
        texts: Sequence[str],
        *,
        role: Role = "document",
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> FloatMatrix:
        """Embed ``texts``; ``role`` makes no difference for CLAP."""
        self._load()  # before the base's per-input error handling: loading errors are not inputs'
        return super().encode_text(
            texts, role=role, batch_size=batch_size, show_progress_bar=show_progress_bar
        )

    def encode_audio(
        self,
        audio: Sequence[AudioInput],
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> FloatMatrix:
        """Embed audio tracks, one pooled vector each (see the class docstring)."""
        self._load()
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
        """Every window's L2-normalised vector, per input: a list of ``(windows, dim)`` arrays.

        The windows are those :meth:`encode_audio` pools, in time order, and pooling these rows
        (mean or max, then L2-normalising) gives :meth:`encode_audio`'s vector. Inputs and errors
        as for :meth:`encode_audio`; a skipped input gets a ``(0, dim)`` array.
        """
        items, size = self._check_audio_call(audio, on_error, batch_size)
        self._load()
        dim = self.dim
        out = [np.zeros((0, dim), dtype=np.float32) for _ in items]
        skipped: list[Skipped] | None = [] if on_error == "skip" else None
        for start in range(0, len(items), size):
            indices = range(start, min(start + size, len(items)))
            index, prepared = self._prepare_batch(items, indices, "audio", skipped)
            for i, vectors in zip(index, self._window_vectors(prepared), strict=True):
                out[i] = vectors
        self._warn_skipped("audio", skipped, stacklevel=2)
        return out

    def _fit_query(self, text: str, max_chars: int) -> str:
        """A query is embedded from its first :attr:`text_limit` tokens only."""
        state = self._load()
        with self._tokenizer_lock:
            return fit_to_windows(state.tokenizer, text[:max_chars], state.max_text_length)

    def _prepare(self, item: Any, modality: Modality) -> Any:
        """Audio: decode a file's windows, or cut a waveform's; an array (windows, samples).

        A file of more windows than one forward pass (``batch_size``) is streamed instead: its
        windows are decoded and embedded ``batch_size`` at a time, and only their vectors kept.
        """
        if modality != "audio":
            return item
        if isinstance(item, str):
            rate = self._load().sample_rate
            if len(window_starts(item, self.windowing, sample_rate=rate)) > self.batch_size:
                return self._streamed_vectors(item)
        return self.audio_windows(item)

    def _streamed_vectors(self, path: str) -> _Embedded:
        state = self._load()
        chunks = iter_windows(
            path, self.windowing, sample_rate=state.sample_rate, chunk=self.batch_size
        )
        vectors = [self._embed_windows(state, list(windows)) for windows in chunks]
        return _Embedded(np.concatenate(vectors))

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> FloatMatrix:
        if modality == "text":
            return self._embed_texts(batch)
        torch = self._load().torch
        vectors = self._window_vectors(batch)
        pooled = self.pool_windows(
            torch.from_numpy(np.concatenate(vectors)), [len(v) for v in vectors]
        )
        return np.ascontiguousarray(pooled.numpy(), dtype=np.float32)

    # -- the forward pass, step by step (what encoding runs; trainers run it with gradients) --

    @property
    def text_limit(self) -> int:
        """The most tokens a text is embedded with (special tokens included): ``max_text_length``
        capped at the model's limit (its tokenizer's ``model_max_length`` and the text model's
        position embeddings, e.g. 512 for RoBERTa's 514 positions). Loads the model."""
        return self._load().max_text_length

    def torch_model(self) -> Any:
        """The loaded ``transformers.ClapModel`` (a trainer updates its weights in place)."""
        return self._torch_state("torch_model()").model

    def audio_windows(self, audio: str | Waveform, windowing: Windowing | None = None) -> Any:
        """One track's windows at the model's sample rate: an array (windows, samples).

        ``audio`` is a file path (only the windows are decoded) or a :class:`Waveform` (averaged
        to mono, resampled, cut); ``windowing`` defaults to the encoder's.
        """
        rule = self.windowing if windowing is None else windowing
        rate = self._load().sample_rate
        if isinstance(audio, Waveform):
            samples = resample(to_mono(audio.samples), audio.sample_rate, rate)
            if samples.size == 0:
                raise AudioDecodeError("the waveform is too short to resample")
            return cut_windows(samples, rule, rate)
        return load_windows(audio, rule, sample_rate=rate)

    def window_features(self, windows: Sequence[np.ndarray]) -> Any:
        """The audio tower's input (log-mel features) of windows from :meth:`audio_windows`,
        each repeat-padded to the model's input length: a float32 array
        (windows, channels, frames, mel bins)."""
        state = self._load()
        length = state.input_samples
        padded = [w if w.shape[0] == length else repeat_pad(w, length) for w in windows]
        if state.log_mel is not None:
            return state.log_mel(padded)
        return _extractor_features(state.extractor, padded, state.sample_rate)

    def embed_features(self, features: Any) -> Any:
        """Window features (a tensor) -> the windows' L2-normalised float32 embeddings (a tensor
        on the encoder's device; differentiable outside ``torch.inference_mode``)."""
        state = self._load()
        torch = state.torch
        if state.towers is not None:
            embeddings = torch.from_numpy(state.towers.audio(features.cpu().numpy()))
            return torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        output = state.model.get_audio_features(
            input_features=features.to(device=self.device, dtype=getattr(torch, self.dtype)),
            is_longer=torch.zeros((features.shape[0], 1), dtype=torch.bool, device=self.device),
        )
        embeddings = _embedding(torch, output, "get_audio_features")
        return torch.nn.functional.normalize(embeddings.float(), p=2, dim=-1)

    def pool_windows(self, vectors: Any, counts: Sequence[int]) -> Any:
        """Window vectors (a tensor, the windows of consecutive tracks, ``counts[i]`` rows for
        track ``i``) -> each track's vector: the mean or max of its rows (``pooling``),
        L2-normalised."""
        torch = self._load().torch
        parts = torch.split(vectors, list(counts))
        if self.windowing.pooling == "max":
            pooled = torch.stack([part.amax(dim=0) for part in parts])
        else:
            pooled = torch.stack([part.mean(dim=0) for part in parts])
        return torch.nn.functional.normalize(pooled, p=2, dim=-1)

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, Any]:
        """``input_ids`` and ``attention_mask`` tensors of ``texts`` (on the CPU), padded on the
        right and truncated to ``max_length`` tokens (default, and upper bound:
        :attr:`text_limit`)."""
        state = self._load()
        limit = state.max_text_length
        if max_length is not None and not 3 <= max_length <= limit:
            raise InvalidInputError(
                f"max_length must lie in [3, {limit}] for model {self.model!r} (its text "
                f"limit), got {max_length!r}"
            )
        with self._tokenizer_lock:
            encoded = state.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=limit if max_length is None else max_length,
                return_tensors="pt",
            )
        return {k: encoded[k] for k in ("input_ids", "attention_mask")}

    def embed_tokens(self, tokens: Mapping[str, Any]) -> Any:
        """Tokens from :meth:`tokenize` -> the texts' L2-normalised float32 embeddings (a tensor
        on the encoder's device; differentiable outside ``torch.inference_mode``)."""
        state = self._load()
        torch = state.torch
        if state.towers is not None:
            embeddings = torch.from_numpy(
                state.towers.text(tokens["input_ids"], tokens["attention_mask"])
            )
            return torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        inputs = {k: v.to(self.device) for k, v in tokens.items()}
        output = state.model.get_text_features(**inputs)
        embeddings = _embedding(torch, output, "get_text_features")
        return torch.nn.functional.normalize(embeddings.float(), p=2, dim=-1)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write the model, feature extractor and tokenizer into ``directory`` (each with its
        ``save_pretrained``): ``load_encoder("clap", model=directory)`` loads them."""
        state = self._torch_state("save_pretrained()")
        _, transformers = import_backend()
        with quiet_weight_loading(transformers):
            state.model.save_pretrained(directory)
        state.extractor.save_pretrained(directory)
        state.tokenizer.save_pretrained(directory)

    # -- internals ----------------------------------------------------------------------------

    def _torch_state(self, what: str) -> _Clap:
        if self.backend != "torch":
            raise InvalidInputError(
                f"{what} needs the PyTorch model: this encoder runs on backend={self.backend!r}; "
                "load one with backend='torch'"
            )
        return self._load()

    def _embed_texts(self, texts: list[str]) -> FloatMatrix:
        tokens = self.tokenize(texts)
        with self._load().torch.inference_mode():
            return _numpy(self.embed_tokens(tokens))

    def _window_vectors(self, tracks: list[Any]) -> list[FloatMatrix]:
        """Each track's windows (from :meth:`_prepare`: arrays, or streamed files' vectors) ->
        their unit vectors; the windows of several tracks share forward passes."""
        state = self._load()
        waiting = [windows for windows in tracks if not isinstance(windows, _Embedded)]
        rows = [(t, w) for t, windows in enumerate(waiting) for w in range(len(windows))]
        chunks = []
        for start in range(0, len(rows), self.batch_size):
            part = rows[start : start + self.batch_size]
            chunks.append(self._embed_windows(state, [waiting[t][w] for t, w in part]))
        flat = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        bounds = np.cumsum([0, *(len(windows) for windows in waiting)])
        embedded = iter([np.ascontiguousarray(flat[a:b]) for a, b in itertools.pairwise(bounds)])
        return [
            windows.vectors if isinstance(windows, _Embedded) else next(embedded)
            for windows in tracks
        ]

    def _embed_windows(self, state: _Clap, windows: list[np.ndarray]) -> FloatMatrix:
        features = state.torch.from_numpy(self.window_features(windows))
        with state.torch.inference_mode():
            return _numpy(self.embed_features(features))

    def _build(self) -> _Clap:
        torch, transformers = import_backend()
        onnx = self.backend == "onnx"
        if onnx:
            import_onnx()  # before any loading: a missing package fails at once

        def load_model(source: str, local_files_only: bool) -> Any:
            with quiet_weight_loading(transformers):
                return transformers.ClapModel.from_pretrained(
                    source, local_files_only=local_files_only, trust_remote_code=False
                )

        def load(source: str, local_files_only: bool) -> tuple[Any, Any, Any, Any]:
            config = transformers.AutoConfig.from_pretrained(
                source, local_files_only=local_files_only, trust_remote_code=False
            )
            if getattr(config, "model_type", None) != "clap":
                raise InvalidInputError(
                    f"model {self.model!r} is a {getattr(config, 'model_type', '?')!r} model, "
                    "not a CLAP model (model_type 'clap')"
                )
            # The ONNX backend reads the config only: the weights load when a tower is exported.
            model = None if onnx else load_model(source, local_files_only)
            extractor = transformers.AutoFeatureExtractor.from_pretrained(
                source, local_files_only=local_files_only, trust_remote_code=False
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, local_files_only=local_files_only, trust_remote_code=False
            )
            return config, model, extractor, tokenizer

        loaded = load_pretrained(self.model, load)
        config, model, extractor, tokenizer = loaded.value
        if model is not None:
            model = model.to(device=self.device, dtype=getattr(torch, self.dtype)).eval()
        rate = int(extractor.sampling_rate)
        input_samples = int(getattr(extractor, "nb_max_samples", 0)) or 10 * rate
        window = self.windowing.window_samples(rate)
        if window > input_samples:
            raise InvalidInputError(
                f"window_seconds={self.windowing.window_seconds} is longer than the input of "
                f"model {self.model!r} ({input_samples / rate:g} s); use at most that"
            )
        tokenizer.padding_side = "right"
        state = _Clap(
            torch=torch,
            model=model,
            tokenizer=tokenizer,
            extractor=extractor,
            sample_rate=rate,
            input_samples=input_samples,
            max_text_length=self._text_limit(tokenizer, config.text_config),
            log_mel=_LogMel.checked(extractor, input_samples, torch),
            source=loaded.source,
            config=config,
        )
        if onnx:
            local = Path(self.model).expanduser()
            rng = np.random.default_rng(0)
            state.towers = ClapTowers(
                source=loaded.source,
                local_dir=local if local.is_dir() else None,
                quantize=self.quantize,
                load_model=lambda: load_model(loaded.source, True),
                sample_tokens=lambda: self.tokenize(["an example", "a second, longer example"]),
                sample_features=lambda: self.window_features(
                    [rng.standard_normal(input_samples).astype(np.float32) * 0.1 for _ in "ab"]
                ),
                torch=torch,
            )
        return state

    def _text_limit(self, tokenizer: Any, text_config: Any) -> int:
        limits = [] if self.max_text_length is None else [self.max_text_length]
        declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
        if 0 < declared < 1_000_000:
            limits.append(declared)
        positions = getattr(text_config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            # RoBERTa-style position ids start after the padding index.
            pad = getattr(text_config, "pad_token_id", None)
            limits.append(positions - (pad + 1 if isinstance(pad, int) else 0))
        return max(3, min(limits)) if limits else 512


@dataclass(frozen=True)
class _Embedded:
    """The window vectors of a streamed file (:meth:`ClapEncoder._prepare`)."""

    vectors: FloatMatrix


class _LogMel:
    """``ClapFeatureExtractor``'s log-mel features for full-length windows, vectorised.

    The same arithmetic as the extractor's per-frame loop (reflect-padded Hann STFT in float64,
    complex64 spectrum, power, mel filters, dB), on all frames of a window at once: the same
    numbers up to float64 rounding, about twice as fast. Used only when it matches the extractor
    on a probe signal (:meth:`checked`).
    """

    def __init__(self, extractor: Any, torch: ModuleType) -> None:
        from transformers.audio_utils import window_function

        self.torch = torch
        self.n_fft = int(extractor.fft_window_size)
        self.hop = int(extractor.hop_length)
        self.fusion = extractor.truncation == "fusion"
        filters = extractor.mel_filters if self.fusion else extractor.mel_filters_slaney
        self.filters_t = torch.from_numpy(np.asarray(filters, dtype=np.float64).T.copy())
        self.window = np.asarray(window_function(self.n_fft, "hann"), dtype=np.float64)

    @classmethod
    def checked(cls, extractor: Any, input_samples: int, torch: ModuleType) -> _LogMel | None:
        """An instance if it reproduces ``extractor`` on a probe signal, else ``None``."""
        try:
            log_mel = cls(extractor, torch)
        except Exception:  # an extractor of another kind, or another transformers version
            return None
        rng = np.random.default_rng(0)
        t = np.arange(input_samples) / float(extractor.sampling_rate)
        probe = (0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)
        probe[: input_samples // 2] += (0.05 * rng.standard_normal(input_samples // 2)).astype(
            np.float32
        )
        probe[-input_samples // 10 :] = 0.0  # a silent tail: the floor of the dB scale
        try:
            expected = _extractor_features(extractor, [probe], int(extractor.sampling_rate))
            got = log_mel([probe])
        except Exception:
            return None
        if got.shape != expected.shape or not np.allclose(
            got, expected, rtol=0, atol=_FAST_FEATURES_ATOL
        ):
            return None
        return log_mel

    def __call__(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Features of shape (windows, 1 or 4 channels, frames, mel bins), float32."""
        out = []
        for samples in windows:
            x = np.pad(np.asarray(samples, dtype=np.float64), self.n_fft // 2, mode="reflect")
            frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop]
            spectrum = np.fft.rfft(frames * self.window, axis=-1).astype(np.complex64)
            power = np.abs(spectrum, dtype=np.float64) ** 2.0
            # The matrix product in torch: NumPy's OpenBLAS threads would keep spinning after it
            # and slow down the model that runs next (PyTorch has its own threads).
            product = (self.filters_t @ self.torch.from_numpy(power.T)).numpy()
            mel = np.maximum(1e-10, product)
            db = (10.0 * np.log10(np.clip(mel, 1e-10, None))).astype(np.float32).T
            out.append(np.stack([db] * 4) if self.fusion else db[None])
        return np.ascontiguousarray(np.stack(out))


def _extractor_features(extractor: Any, windows: Sequence[np.ndarray], rate: int) -> np.ndarray:
    """The feature extractor's features of full-length windows (no crop, no padding happens).

    For fusion checkpoints the extractor draws a random number (which clip to mark "longer";
    newwave marks none): NumPy's global generator is restored so the caller's is left alone.
    """
    state = np.random.get_state()
    try:
        features = extractor(
            [np.asarray(w, dtype=np.float32) for w in windows],
            sampling_rate=rate,
            padding="repeatpad",
            return_tensors="np",
        )["input_features"]
    finally:
        np.random.set_state(state)
    return np.ascontiguousarray(features, dtype=np.float32)


def _embedding(torch: ModuleType, output: Any, what: str) -> Any:
    """The embedding tensor of ``get_*_features``: a tensor (transformers 4) or an output object
    whose ``pooler_output`` holds it (transformers 5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None and isinstance(output, (tuple, list)) and len(output) > 1:
        pooled = output[1]
    if not isinstance(pooled, torch.Tensor):
        raise PluginError(f"ClapModel.{what} returned a {type(output).__name__} without embeddings")
    return pooled


def _numpy(rows: Any) -> FloatMatrix:
    return np.ascontiguousarray(rows.cpu().numpy(), dtype=np.float32)


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``clap``."""
    register(ClapEncoder)
