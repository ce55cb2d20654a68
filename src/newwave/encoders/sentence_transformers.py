"""The built-in ``sentence-transformers`` plugin: any sentence-transformers text model.

``load_encoder("sentence-transformers", model="sentence-transformers/all-mpnet-base-v2")``, or a
local directory written by ``SentenceTransformer.save``; a name shaped like a hub id
(``"org/name"``) that no component claims resolves here too:
``load_encoder("sentence-transformers/all-mpnet-base-v2")``.

The model runs as sentence-transformers runs it: its own modules (transformer, pooling, dense
layers, normalisation), its ``max_seq_length`` (text beyond it is truncated), and its prompts:
queries go through ``encode_query`` and documents through ``encode_document``, which apply the
model's ``"query"`` and ``"document"`` prompts when it defines them and otherwise equal
``encode``. Vectors are then L2-normalised, like every newwave encoder's, so they equal
``model.encode(texts, normalize_embeddings=True)``.

Weights are found as for the other built-ins (:mod:`newwave.encoders._hf`): an existing
directory; a hub id in the Hugging Face cache, without network; the hub, unless
``HF_HUB_OFFLINE`` is set. Remote code is never run (``trust_remote_code=False``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from newwave.encoders._hf import (
    PretrainedEncoder,
    import_backend,
    load_pretrained,
    quiet_weight_loading,
)
from newwave.errors import InvalidInputError, MissingDependencyError, ModelNotFoundError
from newwave.hookspecs import Register, hookimpl
from newwave.types import FloatMatrix, Modality, Role

__all__ = ["INSTALL_HINT", "SentenceTransformerEncoder", "register_encoders"]

#: How to install what this plugin needs.
INSTALL_HINT = "pip install 'newwave-music[sentence-transformers]'"


@dataclass
class _Model:
    model: Any  # sentence_transformers.SentenceTransformer
    dim: int
    source: str


class SentenceTransformerEncoder(PretrainedEncoder[_Model]):
    """Any sentence-transformers model, with its own pooling, normalisation and prompts.

    Options: ``model`` (required: a hub id or a directory holding a saved SentenceTransformer),
    ``device`` (see :func:`newwave.device.resolve_device`), ``batch_size``,
    ``show_progress_bar``, ``max_length`` (tokens per text, at most the model's
    ``max_seq_length``; default: the model's) and ``dtype`` (``"float32"``; ``"float16"`` on GPU
    only, or ``"bfloat16"``).
    """

    name = "sentence-transformers"
    modalities = frozenset({"text"})

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        max_length: int | None = None,
        dtype: str = "float32",
    ) -> None:
        if model is None:
            raise InvalidInputError(
                "the 'sentence-transformers' encoder needs model=: a hub id such as "
                "'sentence-transformers/all-mpnet-base-v2' or a directory of a saved model"
            )
        if importlib.util.find_spec("sentence_transformers") is None:
            raise MissingDependencyError(
                f"the 'sentence-transformers' encoder needs the sentence-transformers package, "
                f"which is not installed: {INSTALL_HINT}"
            )
        super().__init__(
            model=model,
            device=device,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            dtype=dtype,
        )
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4
        ):
            raise InvalidInputError(f"max_length must be an integer >= 4, got {max_length!r}")
        self.max_length = max_length

    @property
    def max_seq_length(self) -> int | None:
        """The tokens per text the loaded model reads (loads it); None: no limit."""
        limit = self._load().model.max_seq_length
        return None if limit is None else int(limit)

    def get_config(self) -> dict[str, Any]:
        """Options that rebuild this encoder (``max_length`` only when given)."""
        config = super().get_config()
        if self.max_length is not None:
            config["max_length"] = self.max_length
        return config

    def _loaded_dim(self, state: _Model) -> int:
        return state.dim

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> FloatMatrix:
        model = self._load().model
        encode = model.encode_query if role == "query" else model.encode_document
        vectors = encode(
            batch,
            batch_size=len(batch),
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=False,  # the base class normalises, in float32
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _build(self) -> _Model:
        torch, transformers = import_backend()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError(
                f"the 'sentence-transformers' encoder needs sentence-transformers ({exc}): "
                f"{INSTALL_HINT}"
            ) from exc

        def load(source: str, local_files_only: bool) -> Any:
            with quiet_weight_loading(transformers):
                return SentenceTransformer(
                    source,
                    device=self.device,
                    local_files_only=local_files_only,
                    trust_remote_code=False,
                )

        path = Path(self.model).expanduser()
        if path.is_dir():
            if not any((path / name).is_file() for name in ("modules.json", "config.json")):
                raise ModelNotFoundError(
                    f"{self.model!r} is a directory but holds no model: neither modules.json (a "
                    "saved SentenceTransformer) nor config.json (a Hugging Face model). Pass the "
                    "directory that SentenceTransformer.save or save_pretrained wrote."
                )
            try:
                model, source = load(str(path), True), str(path)
            except OSError as exc:
                raise ModelNotFoundError(
                    f"could not load the model in directory {self.model!r}: {exc}"
                ) from exc
        else:
            loaded = load_pretrained(self.model, load)
            model, source = loaded.value, loaded.source
        model = model.to(dtype=getattr(torch, self.dtype)).eval()
        if self.max_length is not None:
            limit = model.max_seq_length
            model.max_seq_length = self.max_length if limit is None else min(limit, self.max_length)
        # get_sentence_embedding_dimension: the name before sentence-transformers 6.
        width = getattr(model, "get_embedding_dimension", None)
        dim = width() if width is not None else model.get_sentence_embedding_dimension()
        if not isinstance(dim, int) or dim < 1:
            raise ModelNotFoundError(
                f"model {self.model!r} does not say the width of its embeddings; is it a "
                "sentence-transformers model?"
            )
        return _Model(model, dim, source)


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``sentence-transformers`` (alias ``sentence_transformers``)."""
    register(SentenceTransformerEncoder, aliases=("sentence_transformers",))
