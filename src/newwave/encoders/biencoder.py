"""The built-in ``biencoder`` plugin: a trained two-tower text encoder (``newwave train
biencoder``).

A bi-encoder embeds queries (e.g. descriptions) with its query tower and documents (e.g.
lyrics) with its document tower. A tower is a backbone, run by a text encoder plugin built on
:class:`~newwave.encoders._hf.TransformerTextEncoder` (``minilm``, ``bge-m3``) exactly as that
plugin embeds text (its pooling, windows of long text, L2 normalisation), then optionally a
projection head (a linear map), then L2 normalisation. A bi-encoder is a directory::

    biencoder.json        BiEncoderConfig: the backbone plugin and its options, the towers, heads
    backbone/             the backbone both towers share (save_pretrained: config, tokenizer,
                          weights) ...
    query-backbone/       ... or one per tower
    document-backbone/
    heads.safetensors     with heads: "query.weight", "query.bias", "document.*" (or "shared.*")

``load_encoder("biencoder", model="runs/x/model")``: ``encode_text(texts, role="query")`` (and
``encode_queries``) use the query tower, ``role="document"`` the document tower.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from newwave._storage import write_json
from newwave._vectors import as_matrix, l2_normalize
from newwave._weights import load_prefixed
from newwave.device import resolve_device
from newwave.encoders._hf import (
    DTYPES,
    TransformerTextEncoder,
    import_backend,
    quiet_weight_loading,
)
from newwave.encoders.base import Encoder
from newwave.errors import IndexCorruptError, InvalidInputError, MissingFileError, PluginError
from newwave.hookspecs import Register, hookimpl
from newwave.types import FloatMatrix, Modality, Role

__all__ = [
    "CONFIG_FILE",
    "HEADS_FILE",
    "ROLES",
    "BiEncoder",
    "BiEncoderConfig",
    "load_backbone",
    "new_heads",
    "register_encoders",
]

CONFIG_FILE = "biencoder.json"
HEADS_FILE = "heads.safetensors"
ROLES: tuple[Role, Role] = ("query", "document")
_RESERVED_OPTIONS = frozenset({"model", "device", "batch_size", "show_progress_bar", "dtype"})


class BiEncoderConfig(BaseModel):
    """The architecture of a :class:`BiEncoder`, saved as its biencoder.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["newwave-biencoder"] = "newwave-biencoder"
    version: Literal[1] = 1
    backbone: str = Field(min_length=1)
    """The text encoder plugin that runs each backbone directory, e.g. ``minilm``."""
    backbone_options: dict[str, JsonValue] = {}
    """That plugin's options besides model, device, dtype and batch size: ``max_length``, ..."""
    base_model: str = ""
    """The weights training started from (a hub id or a directory), for the record."""
    backbone_dim: int = Field(ge=1)
    shared_backbone: bool = True
    """One backbone for both towers (``backbone/``), or one each (``<role>-backbone/``)."""
    head_dim: int | None = Field(default=None, ge=1)
    """The heads' output width; None: no heads (a tower's output is its backbone's)."""
    shared_head: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> BiEncoderConfig:
        if self.shared_head and self.head_dim is None:
            raise ValueError("shared_head needs heads (head_dim)")
        reserved = sorted(_RESERVED_OPTIONS & set(self.backbone_options))
        if reserved:
            raise ValueError(f"backbone_options cannot set {', '.join(reserved)}")
        return self

    @property
    def dim(self) -> int:
        """The width of the vectors the bi-encoder returns."""
        return self.head_dim if self.head_dim is not None else self.backbone_dim

    def backbone_dir(self, role: Role) -> str:
        """The directory (in the bi-encoder's) of ``role``'s backbone."""
        return "backbone" if self.shared_backbone else f"{role}-backbone"

    def head_name(self, role: Role) -> str | None:
        """The prefix of ``role``'s head in heads.safetensors; None without heads."""
        if self.head_dim is None:
            return None
        return "shared" if self.shared_head else role


def load_backbone(name: str, **options: Any) -> TransformerTextEncoder:
    """The text encoder plugin ``name`` built with ``options``; it must be a transformer one."""
    from newwave.plugins import load_encoder

    encoder = load_encoder(name, **options)
    if not isinstance(encoder, TransformerTextEncoder):
        raise PluginError(
            f"encoder {name!r} cannot be a bi-encoder backbone: it is not built on "
            "TransformerTextEncoder (use e.g. minilm or bge-m3)"
        )
    return encoder


def new_heads(config: BiEncoderConfig) -> dict[Role, Any]:
    """Freshly initialised heads by role (``torch.nn.Linear``; one module for both if shared)."""
    if config.head_dim is None:
        return {}
    from torch import nn

    made: dict[str, Any] = {}
    for role in ROLES:
        name = config.head_name(role)
        assert name is not None
        if name not in made:
            made[name] = nn.Linear(config.backbone_dim, config.head_dim)
    return {role: made[str(config.head_name(role))] for role in ROLES}


class BiEncoder(Encoder):
    """A trained bi-encoder (see the module docstring): ``load_encoder("biencoder", model=dir)``.

    Options: ``model``, the bi-encoder directory; ``device``, ``batch_size``,
    ``show_progress_bar`` and ``dtype`` (the backbones', as for ``minilm``; heads run in float32).
    """

    name = "biencoder"

    def __init__(
        self,
        *,
        model: str | os.PathLike[str],
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        dtype: str = "float32",
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).strip():
            raise InvalidInputError(f"model must be a bi-encoder directory, got {model!r}")
        if dtype not in DTYPES:
            raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        directory = Path(model).expanduser()
        config = _read_config(directory)
        backbones: dict[Role, TransformerTextEncoder] = {}
        for role in ROLES:
            folder = directory / config.backbone_dir(role)
            if not (folder / "config.json").is_file():
                raise IndexCorruptError(f"{directory} is incomplete: {folder.name}/ is missing")
            if role == "document" and config.shared_backbone:
                backbones[role] = backbones["query"]
                continue
            backbones[role] = load_backbone(
                config.backbone,
                model=str(folder),
                device=device,
                batch_size=batch_size,
                dtype=dtype,
                **config.backbone_options,
            )
        self._setup(config, backbones, None, device, batch_size, show_progress_bar)
        self.path: Path | None = directory
        self.dtype = dtype

    @classmethod
    def from_parts(
        cls,
        config: BiEncoderConfig,
        backbones: Mapping[Role, TransformerTextEncoder],
        heads: Mapping[Role, Any],
        *,
        device: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> BiEncoder:
        """A bi-encoder over backbones and heads in memory (what training optimises)."""
        encoder = cls.__new__(cls)
        encoder._setup(config, backbones, heads, device, batch_size, show_progress_bar)
        encoder.path = None
        encoder.dtype = "float32"
        return encoder

    def _setup(
        self,
        config: BiEncoderConfig,
        backbones: Mapping[Role, TransformerTextEncoder],
        heads: Mapping[Role, Any] | None,
        device: str | None,
        batch_size: int | None,
        show_progress_bar: bool | None,
    ) -> None:
        Encoder.__init__(self, batch_size=batch_size, show_progress_bar=show_progress_bar)
        if set(backbones) != set(ROLES):
            raise InvalidInputError("a bi-encoder needs a backbone for each role")
        if config.shared_backbone and backbones["query"] is not backbones["document"]:
            raise InvalidInputError("shared_backbone: both roles must have the same backbone")
        self.config = config
        self.backbones: dict[Role, TransformerTextEncoder] = dict(backbones)
        self.device = resolve_device(device)
        self._heads: dict[Role, Any] | None = None if heads is None else dict(heads)
        if self._heads is not None and set(self._heads) != (
            set(ROLES) if config.head_dim is not None else set()
        ):
            raise InvalidInputError("heads must be given for both roles, and only with head_dim")
        self._lock = threading.Lock()
        #: Whether a backbone is shared with other encoders (see newwave.encoders.shared).
        self.shares_backbone = False

    # -- Encoder interface --------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def model_id(self) -> str:
        """The bi-encoder directory as given."""
        return str(self.path) if self.path is not None else f"{self.name}:unsaved"

    def get_config(self) -> dict[str, Any]:
        """Options that rebuild this encoder (not the device nor the progress bar)."""
        return {"model": self.model_id, "dtype": self.dtype, "batch_size": self.batch_size}

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> FloatMatrix:
        base = self.backbones[role].encode_text(batch, role=role, show_progress_bar=False)
        return self._apply_head(base, role)

    def _order(self, items: list[Any], modality: Modality) -> list[int]:
        """The query backbone's order, so that this encoder's batches are the backbone's."""
        return self.backbones["query"]._order(items, modality)

    def _apply_head(self, base: FloatMatrix, role: Role) -> FloatMatrix:
        if self.config.head_dim is None:
            return base
        import torch

        with torch.inference_mode():
            projected = self.project(torch.from_numpy(base).to(self.device), role)
            out: FloatMatrix = projected.float().cpu().numpy()
        return out

    # -- a shared backbone (newwave.encoders.shared) ----------------------------------------------

    def use_backbones(self, pool: dict[str, TransformerTextEncoder]) -> int:
        """Replace each backbone by ``pool``'s encoder of the same
        :func:`~newwave.encoders.shared.backbone_key` (the same vectors), adding the others to
        ``pool``; returns how many were replaced."""
        from newwave.encoders.shared import backbone_key

        replaced = 0
        for role in ROLES:
            own = self.backbones[role]
            found = pool.setdefault(backbone_key(own), own)
            if found is not own:
                self.backbones[role] = found
                self.shares_backbone = True
                replaced += 1
        return replaced

    def query_backbone(self, texts: Sequence[str]) -> TransformerTextEncoder | None:
        """The query tower's backbone, whose query vectors of ``texts`` :meth:`project_queries`
        turns into this encoder's; None if a text is over :meth:`text_limit_chars`."""
        limit = self.text_limit_chars()
        return None if any(len(text) > limit for text in texts) else self.backbones["query"]

    def project_queries(self, texts: Sequence[str], vectors: FloatMatrix) -> FloatMatrix:
        """The query vectors of ``texts`` from their backbone ``vectors``: the query head applied
        batch by batch, in the batches :meth:`encode_queries` makes (so the same vectors, bit for
        bit), then L2-normalised."""
        if len(texts) != len(vectors):
            raise InvalidInputError(f"{len(texts)} texts but {len(vectors)} backbone vectors")
        order = self._order(list(texts), "text")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            projected = self._apply_head(np.ascontiguousarray(vectors[rows]), "query")
            out[rows] = as_matrix(projected, dim=self.dim, what=f"{self.name} text embeddings")
        return l2_normalize(out)

    # -- the towers ---------------------------------------------------------------------------

    @property
    def heads(self) -> dict[Role, Any]:
        """The heads by role (``torch.nn.Linear``; none without heads), loaded at first use."""
        heads = self._heads
        if heads is not None:
            return heads
        with self._lock:
            if self._heads is None:
                self._heads = self._load_heads()
            return self._heads

    def project(self, vectors: Any, role: Role) -> Any:
        """``role``'s head applied to backbone vectors (a torch tensor; differentiable), before
        the L2 normalisation; the vectors themselves without heads."""
        head = self.heads.get(role)
        return vectors if head is None else head(vectors.float())

    def save(self, directory: Path) -> None:
        """Write the bi-encoder into the empty ``directory`` (loadable as ``model=directory``)."""
        from safetensors.torch import save_file

        _, transformers = import_backend()
        for role in ROLES:
            if role == "document" and self.config.shared_backbone:
                continue
            state = self.backbones[role]._load()
            target = directory / self.config.backbone_dir(role)
            with quiet_weight_loading(transformers):
                state.model.save_pretrained(target)
            state.tokenizer.save_pretrained(target)
        if self.config.head_dim is not None:
            tensors = {
                f"{self.config.head_name(role)}.{key}": value.detach().float().cpu().contiguous()
                for role in ROLES
                for key, value in self.heads[role].state_dict().items()
            }
            save_file(tensors, str(directory / HEADS_FILE))
        write_json(directory / CONFIG_FILE, self.config.model_dump(mode="json"))

    def _load_heads(self) -> dict[Role, Any]:
        heads = new_heads(self.config)
        if not heads:
            return heads
        assert self.path is not None
        path = self.path / HEADS_FILE
        if not path.is_file():
            raise IndexCorruptError(f"{self.path} is incomplete: {HEADS_FILE} is missing")
        named = {str(self.config.head_name(role)): head for role, head in heads.items()}
        load_prefixed(path, named, config=CONFIG_FILE)
        for head in heads.values():
            head.to(self.device).eval()
        return heads


def _read_config(directory: Path) -> BiEncoderConfig:
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise MissingFileError(f"no bi-encoder directory at {directory}")
    if not path.is_file():
        raise MissingFileError(f"no bi-encoder at {directory}: {CONFIG_FILE} is missing")
    try:
        return BiEncoderConfig.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise IndexCorruptError(f"{path} is not a bi-encoder config: {exc}") from exc


@hookimpl
def register_encoders(register: Register) -> None:
    """Register ``biencoder``."""
    register(BiEncoder, aliases=("bi-encoder",))
