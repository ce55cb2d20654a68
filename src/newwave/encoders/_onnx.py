"""Running a transformer text encoder's forward pass on ONNX Runtime instead of PyTorch.

The transformer (token ids in, last hidden state out) is exported to ONNX once, from the local
model directory, and cached; tokenisation, windowing of long texts, pooling and normalisation
stay in the encoder, so only the forward pass changes. ``quantize="int8"`` adds dynamic int8
quantisation of the weights (per output channel) of every ``MatMul`` but the first layer's
feed-forward down-projection: of the down-projections (whose inputs, GELU outputs, have a wide
range), quantising that one costs the most accuracy, and keeping it alone float32 recovers
nearly all that keeping all of them does, at a fraction of the time.

**Session.** ONNX Runtime runs with as many threads as torch, its threads do not spin while
waiting for work (on a busy machine spinning threads take the cores the computing ones need),
denormal floats are flushed to zero while the session runs (the softmax of padded positions
makes some, and arithmetic on them is many times slower) and the fusion of ``Add`` and
``LayerNormalization`` into ``SkipLayerNormalization``, slower on the CPU than the two, is off.

**Cache.** The ONNX files are named by a fingerprint of the model's configuration and weights
(their SHA-256) and of the export recipe, so changed weights are exported again and unchanged
ones are reused. They go to the directory named by ``NEWWAVE_ONNX_CACHE`` when it is set; else
next to a model given as a local directory (in its ``newwave-onnx/`` folder) when that directory
is writable; else to the user's cache, ``~/.cache/newwave/onnx`` (``XDG_CACHE_HOME`` honoured).
Each file is written under a temporary name and renamed into place, so two processes exporting
at once both end up with a complete file. The files are ONNX protobuf, never pickle.

The export (:func:`export_module`), the cache (:func:`open_cached`) and the session
(:class:`OnnxSession`) serve the ``clap`` encoder's towers too (:mod:`newwave.encoders._clap_onnx`).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from newwave.errors import (
    ComponentUnavailableError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
)

__all__ = [
    "BACKENDS",
    "CACHE_ENV",
    "INSTALL_HINT",
    "QUANTIZATIONS",
    "OnnxSession",
    "OnnxTransformer",
    "WeightChange",
    "cache_directory",
    "check_backend",
    "check_onnx_device",
    "export_module",
    "fingerprint",
    "load_onnx_transformer",
    "model_files",
    "onnx_device",
    "open_cached",
]

#: The ``backend`` option's accepted values.
BACKENDS = ("torch", "onnx")
#: The ``quantize`` option's accepted values (``None``: float32).
QUANTIZATIONS = (None, "int8")
#: The environment variable naming the directory of exported ONNX models.
CACHE_ENV = "NEWWAVE_ONNX_CACHE"
#: How to install what the ONNX backend needs.
INSTALL_HINT = "pip install 'newwave-music[onnx]'"

# Part of the fingerprint: bump it when the export or the quantisation recipe changes.
_RECIPE = (
    "newwave-onnx-2;opset=17;attention=eager;int8=dynamic,per-channel,matmul,keep-first-ffn-down"
)
_OPSET = 17
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_GELU = {"Gelu", "FastGelu", "BiasGelu"}
# ONNX Runtime graph fusions left out: slower than the operators they replace (see above).
_DISABLED_FUSIONS = ["SkipLayerNormFusion"]
_SESSION_CONFIG = {
    "session.intra_op.allow_spinning": "0",
    "session.set_denormal_as_zero": "1",  # the pool's threads; the caller's: _denormal_mode
}


def check_backend(backend: str, quantize: str | None) -> None:
    """Refuse an unknown ``backend`` or ``quantize``, or quantisation without ONNX Runtime."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if quantize not in QUANTIZATIONS:
        raise InvalidInputError(f"quantize must be None (float32) or 'int8', got {quantize!r}")
    if quantize is not None and backend != "onnx":
        raise InvalidInputError(
            f"quantize={quantize!r} needs backend='onnx' (the torch backend runs float32 or the "
            "dtype option's precision)"
        )


def onnx_device(backend: str, dtype: str, device: str | None) -> str | None:
    """The device an encoder with these options runs on, before it resolves it: the CPU by
    default for ``backend="onnx"``, which runs float32 only; refuses another ``dtype``."""
    if backend != "onnx":
        return device
    if dtype != "float32":
        raise InvalidInputError(
            f"backend='onnx' runs float32 (or quantize='int8'), not dtype={dtype!r}"
        )
    return "cpu" if device is None else device


def check_onnx_device(backend: str, device: str) -> None:
    """Refuse ``backend="onnx"`` on a resolved device other than the CPU."""
    if backend == "onnx" and device != "cpu":
        raise InvalidInputError(
            f"backend='onnx' runs on the CPU, not on device {device!r}; use backend='torch' there"
        )


def import_onnx() -> tuple[ModuleType, ModuleType]:
    """``(onnxruntime, onnx)``, or :class:`~newwave.errors.MissingDependencyError`."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            f"backend='onnx' needs onnxruntime and onnx, which are not installed ({exc}): "
            f"{INSTALL_HINT}"
        ) from exc
    return onnxruntime, onnx


def fingerprint(directory: str | os.PathLike[str], recipe: str = _RECIPE) -> str:
    """A hex digest of a model directory's ``config.json`` and weight files, and of ``recipe``
    (the export recipe: by default the transformer text encoders')."""
    root = Path(directory)
    files = sorted(
        path
        for path in root.iterdir()
        if path.is_file() and (path.name == "config.json" or path.suffix in _WEIGHT_SUFFIXES)
    )
    if not any(path.suffix in _WEIGHT_SUFFIXES for path in files):
        raise ModelNotFoundError(f"model directory {str(root)!r} holds no weight files")
    digest = hashlib.sha256(recipe.encode())
    for path in files:
        digest.update(f"\0{path.name}\0{path.stat().st_size}\0".encode())
        content = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                content.update(chunk)
        digest.update(content.digest())
    return digest.hexdigest()[:32]


def cache_directory(model_dir: Path | None, key: str) -> Path:
    """Where the ONNX files of the model with fingerprint ``key`` go (see the module docstring).

    ``model_dir`` is the model's own directory when it was given as one, else ``None``.
    """
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser() / key
    if model_dir is not None and os.access(model_dir, os.W_OK | os.X_OK):
        return model_dir / "newwave-onnx" / key
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "newwave" / "onnx" / key


@dataclass(frozen=True)
class WeightChange:
    """A change made in place to a torch model's weights before its export (e.g. merged
    adapters): ``name`` identifies it (it is part of the cache fingerprint, so it must change
    when the change does), ``apply(model)`` makes it."""

    name: str
    apply: Callable[[Any], None]


@dataclass(frozen=True)
class _Output:
    last_hidden_state: Any


class OnnxSession:
    """An ONNX Runtime CPU session of the file at ``path``, run with denormal floats flushed.

    Thread safe: ONNX Runtime sessions may run concurrently.
    """

    def __init__(self, session: Any, torch: ModuleType, path: Path) -> None:
        self.session = session
        self.path = path
        self._torch = torch
        self.input_names = [item.name for item in session.get_inputs()]

    def run(self, feed: dict[str, Any]) -> list[Any]:
        """The graph's outputs (NumPy arrays) for ``feed``, NumPy arrays by input name."""
        with _denormal_mode(self._torch, flush=True):
            return list(self.session.run(None, feed))


class OnnxTransformer(OnnxSession):
    """An ONNX Runtime session called like a Hugging Face ``AutoModel``: keyword tensors in,
    an object with ``last_hidden_state`` (a torch tensor) out. ``config`` is the model's config.
    """

    def __init__(self, session: Any, config: Any, torch: ModuleType, path: Path) -> None:
        super().__init__(session, torch, path)
        self.config = config

    def __call__(self, **inputs: Any) -> _Output:
        (hidden,) = self.run({name: inputs[name].cpu().numpy() for name in self.input_names})
        return _Output(self._torch.from_numpy(hidden))


def open_cached(
    *,
    files: Path,
    local_dir: Path | None,
    stem: str,
    recipe: str,
    quantize: str | None,
    export: Callable[[Path], None],
    torch: ModuleType,
) -> OnnxSession:
    """The session of the ONNX file ``stem`` of the model whose files are in ``files``,
    exported by ``export(path)`` (and quantised) first unless it is cached.

    The cache folder is named by the fingerprint of ``files`` and ``recipe``
    (:func:`fingerprint`, :func:`cache_directory`); it holds ``{stem}.onnx`` (float32) and
    ``{stem}.{quantize}.onnx``. ``local_dir`` is the model's directory when the user gave one.
    """
    onnxruntime, onnx = import_onnx()
    folder = cache_directory(local_dir, fingerprint(files, recipe))
    float_path = folder / f"{stem}.onnx"
    path = float_path if quantize is None else folder / f"{stem}.{quantize}.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if not float_path.is_file():
            export(float_path)
        if path != float_path:
            _quantize(float_path, path, onnx)
    return OnnxSession(_session(onnxruntime, path, torch), torch, path)


def load_onnx_transformer(
    *,
    source: str,
    local_dir: Path | None,
    config: Any,
    tokenizer: Any,
    load_model: Any,
    quantize: str | None,
    torch: ModuleType,
    variant: WeightChange | None = None,
) -> OnnxTransformer:
    """The ONNX Runtime session of a model, exported (and quantised) first unless cached.

    ``source`` is where the weights were found (a directory or a hub id in the Hugging Face
    cache); ``local_dir`` the directory when the user gave one; ``load_model()`` loads the torch
    model, called only when an export is needed. ``variant`` changes the loaded weights before
    the export; its name is part of the cache fingerprint.
    """

    def export(target: Path) -> None:
        model = load_model()
        if variant is not None:
            variant.apply(model)
        _export(model, tokenizer, target, torch)

    opened = open_cached(
        files=model_files(source),
        local_dir=local_dir,
        stem="model",
        recipe=_RECIPE if variant is None else f"{_RECIPE};{variant.name}",
        quantize=quantize,
        export=export,
        torch=torch,
    )
    return OnnxTransformer(opened.session, config, torch, opened.path)


def export_module(
    module: Any,
    sample: tuple[Any, ...],
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    axes: dict[str, dict[int, str]],
    target: Path,
    torch: ModuleType,
    what: str,
) -> None:
    """Export the torch ``module`` (called on ``sample``, tensors named ``inputs``) to ONNX at
    ``target``: PyTorch's TorchScript exporter, opset 17, ``axes`` the dynamic dimensions.

    The file is written under a temporary name and renamed when complete. An exporter failure
    becomes :class:`~newwave.errors.ComponentUnavailableError` naming ``what`` and the
    exporter's message.
    """
    # The exporter restores the module's training flag over the whole tree when it is done:
    # a wrapper left in training mode would switch the wrapped model's dropout on.
    module.eval()
    # torch < 2.5 has no ``dynamo`` option and exports with TorchScript, as dynamo=False does.
    legacy = (
        {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    )
    with _writing(target) as temporary, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape-dependent Python branches
        try:
            torch.onnx.export(
                module,
                sample,
                str(temporary),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=_OPSET,
                **legacy,
            )
        except Exception as exc:
            raise ComponentUnavailableError(
                f"backend='onnx': {what} could not be exported to ONNX (PyTorch's exporter, "
                f"opset {_OPSET}): {type(exc).__name__}: {exc}; use backend='torch'"
            ) from exc


def model_files(source: str) -> Path:
    """The directory holding ``source``'s config and weights (a hub id: its cached snapshot)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as exc:
        raise ModelNotFoundError(
            f"backend='onnx' exports from the model's files, but the Hugging Face cache has no "
            f"snapshot of {source!r} ({exc}); pass the model directory instead"
        ) from exc


# -- internals ------------------------------------------------------------------------------


def _session(onnxruntime: ModuleType, path: Path, torch: ModuleType) -> Any:
    """An ONNX Runtime CPU session of the model at ``path``, set up as the module docstring says."""
    options = onnxruntime.SessionOptions()
    # As many threads as torch uses (OMP_NUM_THREADS / torch.set_num_threads), so that the two
    # backends are used alike.
    options.intra_op_num_threads = max(1, int(torch.get_num_threads()))
    options.inter_op_num_threads = 1
    for key, value in _SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    try:
        with _denormal_mode(torch):
            return onnxruntime.InferenceSession(
                str(path),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=_DISABLED_FUSIONS,
            )
    except Exception as exc:  # a damaged cache file: say which, so that it can be deleted
        raise ModelNotFoundError(f"could not load the ONNX model {str(path)!r}: {exc}") from exc


@contextmanager
def _writing(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target``, renamed to it when the block succeeds."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def _export(model: Any, tokenizer: Any, target: Path, torch: ModuleType) -> None:
    """The forward pass of ``model`` (token tensors -> last hidden state) as ONNX at ``target``."""
    sample = tokenizer(
        ["an example", "a second, longer example"], padding=True, return_tensors="pt"
    )
    names = [name for name in sample if name in set(tokenizer.model_input_names)]

    class Forward(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True))).last_hidden_state

    model = model.float().cpu().eval()
    # Attention written out (matmul, mask, softmax) rather than PyTorch's fused kernel, which
    # exports with a NaN check over every attention matrix: 8% (queries) to 15% (captions)
    # faster on ONNX Runtime.
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    export_module(
        Forward(),
        tuple(sample[name] for name in names),
        inputs=names,
        outputs=["last_hidden_state"],
        axes={name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]},
        target=target,
        torch=torch,
        what="the transformer",
    )


def _quantize(source: Path, target: Path, onnx: ModuleType) -> None:
    """Dynamic int8 quantisation of ``source`` into ``target`` (see the module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    producers = {output: node for node in graph.node for output in node.output}
    # The nodes are in topological order: the first MatMul after a GELU is the first layer's.
    keep = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and _after_gelu(producers.get(node.input[0]), producers)
    ][:1]
    with _writing(target) as temporary, _quiet_root_logger():
        quantize_dynamic(
            source,
            temporary,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep,
        )


@contextmanager
def _denormal_mode(torch: ModuleType, flush: bool | None = None) -> Iterator[None]:
    """Denormal floats flushed to zero on the calling thread within the block when ``flush``
    (where the processor can); after it, the thread's mode as it was before.

    ONNX Runtime turns flushing on for good on the thread that creates the process's first
    session that asks for it in its pool's threads: creating sessions in this block undoes that.
    """
    before = _flushes_denormals()
    if flush is not None and flush != before:
        torch.set_flush_denormal(flush)
    try:
        yield
    finally:
        if _flushes_denormals() != before:
            torch.set_flush_denormal(before)


def _flushes_denormals() -> bool:
    """Whether the calling thread flushes denormal results to zero (1e-30 * 1e-10 is one)."""
    import numpy as np

    return bool(np.float32(1e-30) * np.float32(1e-10) == 0)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Hide the quantiser's advice, logged to the root logger, to pre-process the model first
    (shape inference and graph optimisation: the export is already in that form)."""
    root = logging.getLogger()

    def advice(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _after_gelu(node: Any, producers: dict[str, Any]) -> bool:
    """Whether ``node`` is a GELU: one op, or the erf form ``x * 0.5 * (1 + erf(x / sqrt 2))``."""
    seen = 0
    stack = [node]
    while stack and seen < 6:
        current = stack.pop()
        if current is None:
            continue
        seen += 1
        if current.op_type in _GELU or current.op_type == "Erf":
            return True
        if current.op_type in ("Mul", "Add", "Div"):
            stack.extend(producers.get(name) for name in current.input)
    return False
