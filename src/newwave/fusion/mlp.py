"""The built-in ``mlp`` fuser: learned late fusion into one joint space.

A track's per-field vectors (e.g. audio, lyrics, description) are concatenated, with one
presence flag per field (1 if the track has the field, else 0 and a zero vector), and mapped by
an MLP, then LayerNorm, then L2 normalisation, to one joint vector. Queries go through the same
recipe with their per-field query vectors, in a tower of their own (or the track tower, with
``shared``). A fuser is a directory::

    config.json          MLPFuserConfig: fields, input dims, layer sizes, model ids
    model.safetensors    weights: "track.<layer>.weight", ... (and "query.<...>" unless shared)

``newwave.train`` trains it; ``load_fuser("mlp", directory)`` serves exactly what was trained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from newwave._storage import write_json
from newwave._weights import load_prefixed
from newwave.errors import IndexCorruptError, MissingFileError
from newwave.fusion.base import EmbeddingFuser
from newwave.hookspecs import Register, hookimpl
from newwave.types import FloatMatrix

__all__ = ["MLPFuser", "MLPFuserConfig"]

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"


class MLPFuserConfig(BaseModel):
    """The architecture of an :class:`MLPFuser`, saved as its config.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["newwave-mlp-fuser"] = "newwave-mlp-fuser"
    version: Literal[1] = 1
    fields: tuple[str, ...] = Field(min_length=1)
    input_dims: dict[str, int]
    hidden_dims: tuple[int, ...] = (1024,)
    output_dim: int = Field(default=256, ge=1)
    shared: bool = False
    model_ids: dict[str, str] = {}

    @model_validator(mode="after")
    def _consistent(self) -> MLPFuserConfig:
        if set(self.input_dims) != set(self.fields) or len(set(self.fields)) != len(self.fields):
            raise ValueError("input_dims must give one width per field, and fields be unique")
        if any(d < 1 for d in (*self.input_dims.values(), *self.hidden_dims)):
            raise ValueError("every width must be >= 1")
        return self

    @property
    def input_width(self) -> int:
        """Concatenated field vectors plus one presence flag per field."""
        return sum(self.input_dims.values()) + len(self.fields)


class MLPFuser(EmbeddingFuser):
    """Learned late fusion (see the module docstring); ``load_fuser("mlp", directory)``."""

    name = "mlp"

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None):
        super().__init__()
        directory = Path(path)
        if not (directory / _CONFIG).is_file():
            raise MissingFileError(f"no MLP fuser at {directory}: {_CONFIG} is missing")
        try:
            config = MLPFuserConfig.model_validate_json((directory / _CONFIG).read_bytes())
        except ValidationError as exc:
            raise IndexCorruptError(
                f"{directory / _CONFIG} is not an MLP fuser config: {exc}"
            ) from exc
        self._setup(config, device)
        self.path: Path | None = directory
        self._load_weights(directory / _WEIGHTS)

    @classmethod
    def initialised(
        cls, config: MLPFuserConfig, *, seed: int = 0, device: str | None = None
    ) -> MLPFuser:
        """A fuser with freshly initialised weights (the starting point of training)."""
        import torch

        fuser = cls.__new__(cls)
        EmbeddingFuser.__init__(fuser)
        torch.manual_seed(seed)
        fuser._setup(config, device)
        fuser.path = None
        return fuser

    def _setup(self, config: MLPFuserConfig, device: str | None) -> None:
        from newwave.device import resolve_device

        self.config = config
        self.fields = config.fields
        self.input_dims = dict(config.input_dims)
        self.device = resolve_device(device)
        sides = ("track",) if config.shared else ("track", "query")
        self.towers = {side: _tower(config).to(self.device).eval() for side in sides}

    @property
    def dim(self) -> int:
        return self.config.output_dim

    def get_config(self) -> dict[str, Any]:
        return {"path": str(self.path)} if self.path is not None else {}

    @property
    def network(self) -> Any:
        """The towers as one ``torch.nn.ModuleDict`` (``"track"``, ``"query"``) sharing their
        parameters: what training optimises; its state_dict keys are those of model.safetensors."""
        from torch import nn

        return nn.ModuleDict(self.towers)

    def forward(self, vectors: Mapping[str, Any], side: Literal["track", "query"]) -> Any:
        """The fused output, before L2 normalisation, of per-field torch tensors (differentiable).

        The one recipe that serving (:meth:`embed`) and training (``newwave.train.fusion``)
        both run: the fields' vectors in :attr:`fields` order, then one presence flag per field
        (1 unless the row is all zeros), through the side's tower.
        """
        import torch

        parts = [vectors[f] for f in self.fields]
        present = [p.ne(0).any(dim=1, keepdim=True).to(p.dtype) for p in parts]
        tower = self.towers["track" if self.config.shared else side]
        return tower(torch.cat([*parts, *present], dim=1))

    def _embed(self, vectors: Mapping[str, FloatMatrix], side: Literal["track", "query"]) -> Any:
        import torch

        with torch.inference_mode():
            tensors = {f: torch.from_numpy(vectors[f]).to(self.device) for f in self.fields}
            return self.forward(tensors, side).float().cpu().numpy()

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        write_json(directory / _CONFIG, self.config.model_dump(mode="json"))
        weights = {
            f"{side}.{key}": value.detach().cpu().contiguous()
            for side, tower in self.towers.items()
            for key, value in tower.state_dict().items()
        }
        save_file(weights, str(directory / _WEIGHTS))

    def _load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise MissingFileError(f"no MLP fuser weights: {path} is missing")
        load_prefixed(path, self.towers, config=path.parent / _CONFIG)


def _tower(config: MLPFuserConfig) -> Any:
    from torch import nn

    layers: list[Any] = []
    width = config.input_width
    for hidden in config.hidden_dims:
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers += [nn.Linear(width, config.output_dim), nn.LayerNorm(config.output_dim)]
    return nn.Sequential(*layers)


@hookimpl
def register_fusers(register: Register) -> None:
    register(MLPFuser)
