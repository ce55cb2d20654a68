"""Hugging Face model loading shared by the encoders, and a base for transformer text encoders.

:func:`load_pretrained` finds weights in this order, the first that loads winning:

1. ``model`` is an existing local directory: loaded from it, nothing else is tried. A reference
   that looks like a path (absolute, ``./``, ``~``, backslashes, more than one ``/``) but is no
   directory fails at once.
2. ``model`` is a hub id found in the Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE``): loaded
   with ``local_files_only=True``, without any network access. Cached weights are therefore not
   re-checked against the hub, which keeps vectors reproducible.
3. The caller's :class:`Fallback` directories, e.g. weights shipped in a Python package.
4. The hub, unless offline mode is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``): one quick
   reachability request first, so that a machine without network fails in a moment rather than
   after minutes of retries; then ``from_pretrained``, which downloads into the cache.

When nothing works, :class:`~newwave.errors.ModelNotFoundError` says what was tried and how to
provide the weights.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np

from newwave.device import resolve_device
from newwave.encoders._onnx import (
    WeightChange,
    check_backend,
    import_onnx,
    load_onnx_transformer,
)
from newwave.encoders.base import Encoder
from newwave.errors import (
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    NewWaveError,
)
from newwave.types import FloatMatrix, Modality, Role

if TYPE_CHECKING:
    from newwave.encoders.prefix import SharedPrefix

__all__ = [
    "DTYPES",
    "Fallback",
    "Loaded",
    "PretrainedEncoder",
    "TransformerTextEncoder",
    "fit_to_windows",
    "hf_offline",
    "import_backend",
    "load_pretrained",
    "quiet_weight_loading",
]

T = TypeVar("T")

#: The ``dtype`` option's accepted values.
DTYPES = ("float32", "float16", "bfloat16")

_TRUE = {"1", "ON", "YES", "TRUE"}
_HUB_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")


@dataclass(frozen=True)
class Fallback:
    """A last-resort local directory of weights, e.g. one shipped in a Python package.

    ``locate`` returns the directory, or ``None`` when it is not available (package not
    installed); ``what`` names it in messages; ``hint`` tells the user how to make it available.
    """

    what: str
    locate: Callable[[], str | os.PathLike[str] | None]
    hint: str


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """What :func:`load_pretrained` loaded, and from where (a directory or a hub id)."""

    value: T
    source: str


def hf_offline() -> bool:
    """Whether Hugging Face offline mode is on (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``).

    Read from the environment on every call, and also from ``huggingface_hub``, which reads it once
    at import.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def import_backend() -> tuple[ModuleType, ModuleType]:
    """``(torch, transformers)``, or :class:`~newwave.errors.MissingDependencyError`."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"this encoder needs PyTorch, which is not installed ({exc}): pip install torch"
        ) from exc
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"this encoder needs Hugging Face transformers, which is not installed ({exc}): "
            "pip install 'transformers>=4.40'"
        ) from exc
    return torch, transformers


def load_pretrained(
    model: str,
    load: Callable[[str, bool], T],
    *,
    fallbacks: Sequence[Fallback] = (),
) -> Loaded[T]:
    """Call ``load(source, local_files_only)`` on the first source that has the weights.

    ``load`` wraps the ``from_pretrained`` calls a model needs (model, tokenizer, processor) and
    passes ``local_files_only`` on to them. Sources are tried in the order of the module docstring;
    "not found", "offline" and connection errors move on to the next one, other errors propagate.
    """
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(f"model must be a hub id or a directory, got {model!r}")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{model!r} is a directory but has no config.json: it is not a Hugging Face model "
                "directory. Pass the directory that from_pretrained/save_pretrained uses (the one "
                "with config.json, the tokenizer files and the weights)."
            )
        loaded, error = _attempt(load, str(path), local_files_only=True)
        if loaded is not None:
            return loaded
        raise ModelNotFoundError(
            f"could not load the model in directory {model!r}: {error}"
        ) from error
    if path.exists():
        raise ModelNotFoundError(f"model {model!r} is a file; expected a model directory or hub id")
    if _looks_like_path(model):
        raise ModelNotFoundError(
            f"model directory {model!r} does not exist (it looks like a path, not a hub id such "
            "as 'org/name'). " + _advice(model, fallbacks)
        )
    if not _HUB_ID.match(model):
        raise ModelNotFoundError(
            f"{model!r} is neither an existing directory nor a valid hub id ('org/name')"
        )

    tried: list[str] = []
    loaded, last = _attempt(load, model, local_files_only=True)
    if loaded is not None:
        return loaded
    tried.append(f"the Hugging Face cache ({_cache_dir()}): not there")

    for fallback in fallbacks:
        located = fallback.locate()
        if located is None:
            tried.append(f"{fallback.what}: not installed")
            continue
        directory = os.fspath(located)
        loaded, error = _attempt(load, directory, local_files_only=True)
        if loaded is not None:
            return loaded
        tried.append(f"{fallback.what} ({directory}): unusable: {error}")
        last = error

    offline = hf_offline()
    if offline:
        tried.append(
            "the hub: not contacted, offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
        )
    else:
        unreachable = _hub_unreachable(model)
        if unreachable is not None:
            tried.append(f"the hub ({_endpoint()}): unreachable: {unreachable}")
        else:
            loaded, error = _attempt(load, model, local_files_only=False)
            if loaded is not None:
                return loaded
            assert error is not None
            tried.append(f"the hub ({_endpoint()}): {_first_line(error)}")
            last = error

    message = (
        f"could not find the weights of model {model!r} (offline mode: "
        f"{'on' if offline else 'off'}). Tried:\n"
        + "".join(f"  - {line}\n" for line in tried)
        + _advice(model, fallbacks)
    )
    raise ModelNotFoundError(message) from last


@contextmanager
def quiet_weight_loading(transformers: ModuleType) -> Iterator[None]:
    """Hide transformers' per-tensor "Loading weights" bar while loading from disk.

    Hub downloads show huggingface_hub's own bars, which this leaves alone.
    """
    logging = transformers.utils.logging
    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def _attempt(
    load: Callable[[str, bool], T], source: str, *, local_files_only: bool
) -> tuple[Loaded[T] | None, Exception | None]:
    """Load from ``source``: the result, or the "not found" error; other errors propagate.

    transformers' refusal to run a model's custom code becomes a
    :class:`~newwave.errors.ModelNotFoundError` naming ``source``.
    """
    try:
        return Loaded(load(source, local_files_only), source), None
    except ValueError as exc:
        # transformers refuses custom code: newwave passes trust_remote_code=False everywhere.
        if "trust_remote_code" in str(exc) and not isinstance(exc, NewWaveError):
            raise ModelNotFoundError(
                f"model {source!r} needs custom code to load (an auto_map in its config); "
                "newwave never runs code from a model (trust_remote_code=False)"
            ) from None
        raise
    except Exception as exc:
        if not _is_not_found(exc):
            raise
        return None, exc


def _advice(model: str, fallbacks: Sequence[Fallback]) -> str:
    hub_id = model if _HUB_ID.match(model) else "<org>/<name>"
    lines = [
        "To provide the weights, either:",
        f"  - on a machine with internet run `hf download {hub_id}` (older huggingface_hub: "
        f"`huggingface-cli download {hub_id}`), then copy its cache directory ({_cache_dir()}) "
        "to this machine, or point HF_HOME (or HF_HUB_CACHE) at a copy of it;",
        "  - or put the model files (config.json, tokenizer files, weights) in a directory and "
        "pass that directory as the model, e.g. model='/path/to/model';",
    ]
    lines += [f"  - or install {f.what}: {f.hint};" for f in fallbacks]
    if hf_offline():
        lines.append("  - or, with network access, unset HF_HUB_OFFLINE to download it.")
    return "\n".join(lines)


def _looks_like_path(model: str) -> bool:
    return (
        Path(model).is_absolute()
        or model.startswith(("./", "../", "~", "."))
        or "\\" in model
        or model.count("/") > 1
    )


def _is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` means "weights not there / not reachable" rather than a bug."""
    if isinstance(exc, OSError):  # transformers' "not found"/"can't connect"; hub HTTP errors
        return True
    kinds: list[type[BaseException]] = []
    errors = sys.modules.get("huggingface_hub.errors")
    for name in ("HFValidationError", "EntryNotFoundError", "LocalEntryNotFoundError"):
        kind = getattr(errors, name, None)
        if isinstance(kind, type):
            kinds.append(kind)
    for module in ("httpx", "httpx2", "requests"):  # connection errors, only if already imported
        kind = getattr(sys.modules.get(module), "TransportError", None) or getattr(
            sys.modules.get(module), "RequestException", None
        )
        if isinstance(kind, type):
            kinds.append(kind)
    return isinstance(exc, tuple(kinds))


def _hub_unreachable(model: str) -> str | None:
    """``None`` if the hub answers (any HTTP status), else why not; one request, no retries."""
    try:
        from huggingface_hub import HfApi, constants
    except ImportError as exc:
        return f"huggingface_hub is not installed ({exc})"
    try:
        HfApi().model_info(model, timeout=float(constants.HF_HUB_ETAG_TIMEOUT))
    except Exception as exc:
        response = getattr(exc, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            return None  # it answered, e.g. 401/404: let from_pretrained report it
        if _is_not_found(exc):
            return _first_line(exc)
        raise
    return None


def _cache_dir() -> str:
    try:
        from huggingface_hub import constants
    except ImportError:
        return str(Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    return str(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


# -- encoders over pretrained weights ---------------------------------------------------------


class _HasSource(Protocol):
    source: str


S = TypeVar("S", bound=_HasSource)


class PretrainedEncoder(Encoder, Generic[S]):
    """An encoder over pretrained weights, loaded on first use and held by the instance.

    Validates the ``model`` reference, ``device`` and ``dtype`` options; loads the model once,
    under a lock, through :meth:`_build`, which returns the loaded state (with its ``source``).
    Subclasses set ``default_model`` and optionally ``known_dims`` (so :attr:`dim` needs no
    loading), and implement :meth:`_build` and :meth:`_loaded_dim`.
    """

    default_model: ClassVar[str] = ""
    known_dims: ClassVar[Mapping[str, int]] = {}

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__(batch_size=batch_size, show_progress_bar=show_progress_bar)
        model = self.default_model if model is None else model
        if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).strip():
            raise InvalidInputError(f"model must be a hub id or a directory, got {model!r}")
        self.model = os.fspath(model)
        if dtype not in DTYPES:
            raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.device = resolve_device(device)
        if dtype == "float16" and self.device == "cpu":
            raise InvalidInputError(
                "dtype='float16' needs a GPU (half precision is slow and inaccurate on CPU); "
                "use dtype='float32' or 'bfloat16' on CPU"
            )
        self.dtype = dtype
        self._state: S | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """The embedding width (known without loading for the models in ``known_dims``)."""
        if self._state is None and self.model in self.known_dims:
            return self.known_dims[self.model]
        return self._loaded_dim(self._load())

    @property
    def model_id(self) -> str:
        """The model reference as given: a hub id or a directory."""
        return self.model

    @property
    def weights_source(self) -> str:
        """Where the weights were loaded from (a directory or the hub id); loads the model."""
        return self._load().source

    def get_config(self) -> dict[str, Any]:
        """Options that rebuild this encoder (not ``device`` nor the progress bar: run-time)."""
        return {"model": self.model, "dtype": self.dtype, "batch_size": self.batch_size}

    @abstractmethod
    def _build(self) -> S:
        """Load the model (e.g. through :func:`load_pretrained`)."""

    @abstractmethod
    def _loaded_dim(self, state: S) -> int:
        """The embedding width of the loaded model."""

    def _load(self) -> S:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                self._state = self._build()
            return self._state


# -- transformer text encoders ------------------------------------------------------------------


@dataclass
class _Model:
    torch: ModuleType
    tokenizer: Any
    model: Any
    max_length: int
    source: str


class TransformerTextEncoder(PretrainedEncoder[_Model]):
    """A text encoder over a Hugging Face ``AutoModel``: tokenise, run, pool, L2-normalise.

    Subclasses set ``name``, ``default_model``, ``pooling`` (``"mean"`` over the attention mask or
    the ``"cls"`` token), ``windowed`` (long text as overlapping windows, or truncated), and
    optionally ``known_dims`` (so :attr:`dim` needs no loading) and :meth:`_fallbacks`.

    ``max_length`` is capped at the model's limit (the smaller of the tokenizer's
    ``model_max_length`` and the config's ``max_position_embeddings``) when it is loaded.

    ``backend="onnx"`` runs the transformer's forward pass on ONNX Runtime (CPU, float32),
    exported from the model's files once and cached (see :mod:`newwave.encoders._onnx`);
    ``quantize="int8"`` with it runs an int8-quantised copy, faster and slightly less exact.
    Everything else (tokenisation, windows, pooling, normalisation) is the same as with the
    default ``backend="torch"``.

    ``max_tokens`` caps what is embedded of a text (document or query): its first
    ``max_tokens`` tokens, special tokens not counted (``None``, the default: all of it, in
    windows for a windowed encoder). Long texts then cost what a few windows do, and the rest of
    them is ignored.

    Thread safety: one instance may serve concurrent ``encode_*`` calls from several threads. The
    model is loaded once under a lock; inference runs under ``torch.inference_mode`` and changes
    no state, and each call tokenises its own batch.
    """

    default_max_length: ClassVar[int] = 512
    pooling: ClassVar[Literal["mean", "cls"]] = "mean"
    windowed: ClassVar[bool] = False
    #: A windowed encoder embeds a query from at most this many windows (its first ones), so a
    #: long query costs what a few windows do; the rest is ignored, with a TruncatedTextWarning.
    #: Set it on an instance to change it. A non-windowed encoder sees one window.
    max_query_windows: int = 8
    #: The encoders sharing this one's embeddings and lower layers, if any: set by
    #: :func:`newwave.encoders.prefix.share_prefix`.
    prefix: SharedPrefix | None = None
    #: With ``backend="onnx"``: a change made to the model's weights before it is exported
    #: (set by an encoder that adapts this one's model, such as ``minilm-music``); None: the
    #: weights as loaded.
    onnx_weights: WeightChange | None = None

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        stride: int = 0,
        dtype: str = "float32",
        backend: str = "torch",
        quantize: str | None = None,
        max_tokens: int | None = None,
    ) -> None:
        check_backend(backend, quantize)
        if backend == "onnx":
            if dtype != "float32":
                raise InvalidInputError(
                    f"backend='onnx' runs float32 (or quantize='int8'), not dtype={dtype!r}"
                )
            device = "cpu" if device is None else device
        self.backend = backend
        self.quantize = quantize
        super().__init__(
            model=model,
            device=device,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            dtype=dtype,
        )
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise InvalidInputError(
                f"max_tokens must be a positive integer or None, got {max_tokens!r}"
            )
        self.max_tokens = max_tokens
        max_length = self.default_max_length if max_length is None else max_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4:
            raise InvalidInputError(f"max_length must be an integer >= 4, got {max_length!r}")
        self.max_length = max_length
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise InvalidInputError(f"stride must be a non-negative integer, got {stride!r}")
        if stride >= max_length // 2:
            raise InvalidInputError(
                f"stride (the overlap of consecutive windows, {stride}) must be less than half of "
                f"max_length ({max_length})"
            )
        self.stride = stride
        if backend == "onnx" and self.device != "cpu":
            raise InvalidInputError(
                f"backend='onnx' runs on the CPU, not on device {self.device!r}; use "
                "backend='torch' there"
            )

    # -- Encoder interface --------------------------------------------------------------------

    def _loaded_dim(self, state: _Model) -> int:
        return int(state.model.config.hidden_size)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "max_length": self.max_length}
        if self.windowed:
            config["stride"] = self.stride
        if self.backend != "torch":
            config.update(backend=self.backend, quantize=self.quantize)
        if self.max_tokens is not None:
            config["max_tokens"] = self.max_tokens
        return config

    def _prepare(self, item: Any, modality: Modality) -> Any:
        """A text cut to its first ``max_tokens`` tokens (special tokens not counted), if set."""
        if self.max_tokens is None or modality != "text":
            return item
        state = self._load()
        specials = int(state.tokenizer.num_special_tokens_to_add(pair=False))
        return fit_to_windows(state.tokenizer, item, self.max_tokens + specials)

    def _fallbacks(self) -> Sequence[Fallback]:
        """Extra directories to try after the HF cache; none by default."""
        return ()

    def _fit_query(self, text: str, max_chars: int) -> str:
        """A query is embedded from its first ``max_query_windows`` windows (windowed encoders)
        or its first window of ``max_length`` tokens only."""
        return self._fit_query_batch([text], max_chars)[0]

    def _fit_query_batch(self, texts: list[str], max_chars: int) -> list[str]:
        """:meth:`_fit_query` of each text: one tokenizer call per batch finds those that fit
        whole, which most queries do; only the others are cut, one by one."""
        state = self._load()
        windows = self.max_query_windows if self.windowed else 1
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise InvalidInputError(
                f"max_query_windows must be a positive integer, got {windows!r}"
            )
        probe = 32 * state.max_length * windows  # what fit_to_windows tokenises first
        fitted: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            part = [text[:max_chars] for text in texts[start : start + self.batch_size]]
            encoded = self._tokenize(state, part, windows=True)
            spans = np.bincount(encoded["overflow_to_sample_mapping"], minlength=len(part))
            fitted += [
                text
                if spans[i] <= windows and len(text) <= probe
                else fit_to_windows(
                    state.tokenizer, text, state.max_length, windows, stride=self.stride
                )
                for i, text in enumerate(part)
            ]
        return fitted

    def _order(self, items: list[Any], modality: Modality) -> list[int]:
        """Longest first in tokens, what the model runs (characters are a rough guide to them:
        batches of short queries ordered by characters carry about 40% padding)."""
        if modality != "text":
            return super()._order(items, modality)
        state = self._load()
        tokens: list[Any] = []
        for start in range(0, len(items), 256):
            encoded = self._tokenize(state, items[start : start + 256], windows=True)
            counts = np.asarray(encoded["attention_mask"], dtype=np.int64).sum(axis=1)
            owner = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
            part = len(items[start : start + 256])
            tokens.append(np.bincount(owner, weights=counts, minlength=part))
        total = np.concatenate(tokens) if tokens else np.zeros(0)
        return [int(i) for i in np.argsort(-total, kind="stable")]

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> FloatMatrix:
        state = self._load()
        torch = state.torch
        with torch.inference_mode():
            encoded = self._tokenize(state, batch, return_tensors="pt")
            owner = encoded.pop("overflow_to_sample_mapping", None)
            mask = encoded["attention_mask"]
            windows = torch.cat(
                [
                    self._embed(state, {k: v[i : i + self.batch_size] for k, v in encoded.items()})
                    for i in range(0, mask.shape[0], self.batch_size)
                ]
            )
            if owner is None:
                return np.ascontiguousarray(windows.cpu().numpy(), dtype=np.float32)
            owner = torch.as_tensor(owner)
            return _pool_windows(windows, owner, mask.sum(dim=1), len(batch))

    # -- internals ----------------------------------------------------------------------------

    def _tokenize(
        self, state: _Model, texts: Sequence[str], *, windows: bool | None = None, **options: Any
    ) -> Any:
        """The tokenizer's call on ``texts``: truncated to the model's length, padded, and cut into
        overlapping windows when ``windows`` (by default: when this encoder is windowed). The
        settings are the same for every caller, as far as they can be: a fast tokenizer asked for
        other settings reconfigures itself, which concurrent calls must not see."""
        if self.windowed if windows is None else windows:
            options.update(stride=self.stride, return_overflowing_tokens=True)
        return state.tokenizer(
            list(texts),
            truncation=True,
            max_length=state.max_length,
            padding=True,
            verbose=False,
            **options,
        )

    def _embed(self, state: _Model, inputs: dict[str, Any]) -> Any:
        """One chunk of (window) rows -> their L2-normalised float32 embeddings, on the CPU."""
        torch = state.torch
        width = int(inputs["attention_mask"].sum(dim=1).max())  # right padding: drop pad columns
        inputs = {k: v[:, :width].to(self.device) for k, v in inputs.items()}
        hidden = state.model(**inputs).last_hidden_state
        return self._pool(torch, hidden, inputs["attention_mask"])

    def _pool(self, torch: ModuleType, hidden: Any, attention_mask: Any) -> Any:
        """The last hidden states of a chunk of rows -> their L2-normalised float32 embeddings,
        on the CPU (``pooling`` over the attention mask)."""
        hidden = hidden.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu()

    def _build(self) -> _Model:
        if self.prefix is not None and self.prefix.leader is not self:
            return self.prefix.build(self)  # a copy of the leader's model sharing its lower layers
        torch, transformers = import_backend()
        onnx = self.backend == "onnx"
        if onnx:
            import_onnx()  # before any loading: a missing package fails at once

        def load_model(source: str, local_files_only: bool) -> Any:
            with quiet_weight_loading(transformers):
                return transformers.AutoModel.from_pretrained(
                    source, local_files_only=local_files_only, trust_remote_code=False
                )

        def load(source: str, local_files_only: bool) -> tuple[Any, Any]:
            # The ONNX backend reads the config only: the weights load when it must export.
            model = (
                transformers.AutoConfig.from_pretrained(
                    source, local_files_only=local_files_only, trust_remote_code=False
                )
                if onnx
                else load_model(source, local_files_only)
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, local_files_only=local_files_only, trust_remote_code=False
            )
            return tokenizer, model

        loaded = load_pretrained(self.model, load, fallbacks=self._fallbacks())
        tokenizer, model = loaded.value
        if not getattr(tokenizer, "is_fast", False):
            raise ModelNotFoundError(
                f"model {self.model!r} has no fast (Rust) tokenizer (tokenizer.json); "
                "newwave needs one"
            )
        tokenizer.padding_side = "right"
        if onnx:
            local = Path(self.model).expanduser()
            model = load_onnx_transformer(
                source=loaded.source,
                local_dir=local if local.is_dir() else None,
                config=model,
                tokenizer=tokenizer,
                load_model=lambda: load_model(loaded.source, True),
                quantize=self.quantize,
                torch=torch,
                variant=self.onnx_weights,
            )
        else:
            model = model.to(device=self.device, dtype=getattr(torch, self.dtype)).eval()
        limits = [self.max_length]
        if 0 < int(tokenizer.model_max_length) < 1_000_000:
            limits.append(int(tokenizer.model_max_length))
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
        max_length = min(limits)
        room = max_length - int(tokenizer.num_special_tokens_to_add(pair=False))
        if room < 1 or (self.windowed and self.stride >= room):
            raise InvalidInputError(
                f"max_length {max_length} leaves {room} tokens per window for model "
                f"{self.model!r}; it must exceed stride ({self.stride}) and be at least 1"
            )
        return _Model(torch, tokenizer, model, max_length, loaded.source)


def fit_to_windows(
    tokenizer: Any, text: str, max_length: int, windows: int = 1, *, stride: int = 0
) -> str:
    """The start of ``text`` that ``tokenizer`` turns into at most ``windows`` windows of
    ``max_length`` tokens (special tokens included; consecutive windows sharing ``stride``),
    cut at a token's end; ``text`` itself when nothing else would be left.

    A prefix of ``32 * max_length * windows`` characters is tokenised first: when its tokens
    overflow the windows, as they do for ordinary text, the rest of a long text is never
    tokenised.
    """

    def fit(part: str) -> str:
        encoded = tokenizer(
            part,
            truncation=True,
            max_length=max_length,
            stride=stride,
            padding=True,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            verbose=False,
        )
        spans = encoded["offset_mapping"]
        if len(spans) <= windows:
            return part
        end = max((int(stop) for _, stop in spans[windows - 1]), default=0)
        return part if not part[end:].strip() else part[:end]

    probe = text[: 32 * max_length * windows]
    if len(probe) < len(text):
        fitted = fit(probe)
        if len(fitted) < len(probe):
            return fitted
    return fit(text)


def _pool_windows(windows: Any, owner: Any, counts: Any, n: int) -> FloatMatrix:
    """Per text: its windows' embeddings averaged, weighted by token count (one window: as is)."""
    out = np.empty((n, windows.shape[1]), dtype=np.float32)
    for i in range(n):
        rows = (owner == i).nonzero().flatten()
        if rows.numel() == 1:
            out[i] = windows[rows[0]].numpy()
            continue
        weights = counts[rows].to(windows.dtype).unsqueeze(1)
        out[i] = ((windows[rows] * weights).sum(dim=0) / weights.sum()).numpy()
    return out
