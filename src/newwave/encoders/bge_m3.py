"""The built-in ``bge-m3`` plugin: BAAI/bge-m3 dense text embeddings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from newwave.encoders._hf import TransformerTextEncoder
from newwave.hookspecs import Register, hookimpl

__all__ = ["DEFAULT_MODEL", "BGEM3Encoder", "register_encoders"]

DEFAULT_MODEL = "BAAI/bge-m3"


class BGEM3Encoder(TransformerTextEncoder):
    """BAAI/bge-m3 dense embeddings (1024-d, multilingual): the CLS token, L2-normalised.

    The XLM-RoBERTa backbone is loaded with ``AutoModel``; only the dense head of bge-m3 is used
    (no sparse or ColBERT vectors), and queries and documents are embedded alike. Text is truncated
    to ``max_length`` tokens (default 8192, the model's limit, special tokens included; the excess
    is ignored). :attr:`dim` is the model's hidden size, so any XLM-RoBERTa-style checkpoint works.

    Options: ``model`` (hub id or local directory; default ``BAAI/bge-m3``), ``device`` (see
    :func:`newwave.device.resolve_device`), ``batch_size``, ``show_progress_bar``, ``max_length``,
    ``dtype``: ``"float32"`` (default), ``"float16"`` (GPU only) or ``"bfloat16"``, ``backend``
    (``"torch"``, or ``"onnx"`` for ONNX Runtime on the CPU) and ``quantize`` (``None``, or
    ``"int8"`` with the ONNX backend).
    """

    name = "bge-m3"
    default_model: ClassVar[str] = DEFAULT_MODEL
    default_max_length: ClassVar[int] = 8192
    default_batch_size: ClassVar[int] = 8
    pooling = "cls"
    windowed = False
    known_dims: ClassVar[Mapping[str, int]] = {DEFAULT_MODEL: 1024}

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        max_length: int = 8192,
        dtype: str = "float32",
        backend: str = "torch",
        quantize: str | None = None,
    ) -> None:
        super().__init__(
            model=model,
            device=device,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            max_length=max_length,
            dtype=dtype,
            backend=backend,
            quantize=quantize,
        )


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``bge-m3``."""
    register(BGEM3Encoder, aliases=("bge_m3", "BAAI/bge-m3"))
