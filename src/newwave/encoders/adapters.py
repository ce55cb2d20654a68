"""Low-rank adapters (LoRA) on a transformer text encoder's top layers.

An adapter adds ``scale * up @ down`` (``down``: rank x in, ``up``: out x rank, ``scale`` =
``alpha / rank``) to the weight of a linear map of the backbone, e.g. the query and value
projections of the attention of its last layers. Training runs them beside the frozen weights
(:func:`attach_adapters`, forward hooks); serving merges them into the weights once, at load
(:func:`merge_adapters`, plain torch: no other dependency). The tensors are stored as
``adapters.safetensors`` (``layer.<i>.<target>.down`` / ``.up``, keys sorted, no metadata), their
:class:`AdapterConfig` as ``adapters.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from newwave.errors import IndexCorruptError, InvalidInputError

__all__ = [
    "ADAPTERS_CONFIG",
    "ADAPTERS_FILE",
    "AdapterConfig",
    "AdapterTarget",
    "adapted_linears",
    "adapter_tensors",
    "attach_adapters",
    "load_adapter_tensors",
    "merge_adapters",
    "merged_adapters",
    "new_adapters",
    "transformer_layers",
]

ADAPTERS_FILE = "adapters.safetensors"
ADAPTERS_CONFIG = "adapters.json"

AdapterTarget = Literal[
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]
"""A linear map of a BERT-like layer (``minilm``, ``bge-m3``)."""


class AdapterConfig(BaseModel):
    """Which linear maps of which layers carry adapters, of what rank."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layers: int = Field(ge=1)
    """The backbone's last ``layers`` layers carry adapters (the others are not changed)."""
    rank: int = Field(ge=1)
    alpha: float = Field(gt=0)
    """The update is ``alpha / rank * up @ down``."""
    targets: tuple[AdapterTarget, ...] = Field(
        default=("attention.self.query", "attention.self.value"), min_length=1
    )

    @property
    def scale(self) -> float:
        """``alpha / rank``."""
        return self.alpha / self.rank


def transformer_layers(model: Any) -> Any:
    """The ``torch.nn.ModuleList`` of a BERT-like model's layers (``model.encoder.layer``)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise InvalidInputError(
            f"{type(model).__name__} has no encoder.layer: adapters need a BERT-like backbone"
        )
    return layers


def adapted_linears(model: Any, config: AdapterConfig) -> dict[str, Any]:
    """The linear maps that carry adapters, by name (``layer.<i>.<target>``), in layer order."""
    layers = transformer_layers(model)
    if config.layers > len(layers):
        raise InvalidInputError(
            f"adapters on {config.layers} layers, but the backbone has {len(layers)}"
        )
    found: dict[str, Any] = {}
    for index in range(len(layers) - config.layers, len(layers)):
        for target in config.targets:
            found[f"layer.{index}.{target}"] = layers[index].get_submodule(target)
    return found


def new_adapters(model: Any, config: AdapterConfig, *, seed: int) -> Any:
    """Fresh adapters for ``model`` (a ``torch.nn.ParameterDict``, keys with ``/`` for ``.``):
    ``down`` drawn as torch initialises a linear map (from ``seed``), ``up`` zero, so the
    adapted model starts as the model."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    parameters: dict[str, Any] = {}
    for name, linear in adapted_linears(model, config).items():
        fan_in = linear.weight.shape[1]
        bound = 1 / math.sqrt(fan_in)
        down = torch.empty(config.rank, fan_in).uniform_(-bound, bound, generator=generator)
        up = torch.zeros(linear.weight.shape[0], config.rank)
        parameters[_key(name, "down")] = nn.Parameter(down.to(linear.weight.device))
        parameters[_key(name, "up")] = nn.Parameter(up.to(linear.weight.device))
    return nn.ParameterDict(parameters)


def attach_adapters(model: Any, adapters: Any, config: AdapterConfig) -> list[Any]:
    """Run ``adapters`` beside the frozen weights of ``model`` (forward hooks); returns the
    hooks' handles (``handle.remove()`` detaches them)."""
    import torch.nn.functional as F  # noqa: N812 (the usual name)

    handles = []
    for name, linear in adapted_linears(model, config).items():
        down, up = adapters[_key(name, "down")], adapters[_key(name, "up")]

        def hook(_: Any, inputs: Any, output: Any, down: Any = down, up: Any = up) -> Any:
            return output + config.scale * F.linear(F.linear(inputs[0], down), up)

        handles.append(linear.register_forward_hook(hook))
    return handles


def adapter_tensors(adapters: Any) -> dict[str, Any]:
    """The adapters as stored: ``layer.<i>.<target>.down`` / ``.up`` -> float32 CPU tensors."""
    return {
        key.replace("/", "."): value.detach().float().cpu().contiguous()
        for key, value in sorted(adapters.items())
    }


def merge_adapters(model: Any, tensors: Mapping[str, Any], config: AdapterConfig) -> None:
    """Add the adapters ``tensors`` (as stored) to ``model``'s weights, in place."""
    import torch

    linears = adapted_linears(model, config)
    expected = {f"{name}.{part}" for name in linears for part in ("down", "up")}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise IndexCorruptError(
            f"the adapters do not fit their config: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    with torch.no_grad():
        for name, linear in linears.items():
            up, down = tensors[f"{name}.up"], tensors[f"{name}.down"]
            if up.shape != (linear.weight.shape[0], config.rank) or down.shape != (
                config.rank,
                linear.weight.shape[1],
            ):
                raise IndexCorruptError(f"the adapter {name} does not fit its layer's shape")
            delta = config.scale * (up.float() @ down.float())
            linear.weight.add_(delta.to(device=linear.weight.device, dtype=linear.weight.dtype))


@contextmanager
def merged_adapters(model: Any, adapters: Any, config: AdapterConfig) -> Iterator[None]:
    """``model``'s weights with ``adapters`` merged in, restored exactly afterwards (to save the
    adapted model while training goes on)."""
    linears = adapted_linears(model, config)
    originals = {name: linear.weight.detach().clone() for name, linear in linears.items()}
    merge_adapters(model, adapter_tensors(adapters), config)
    try:
        yield
    finally:
        import torch

        with torch.no_grad():
            for name, linear in linears.items():
                linear.weight.copy_(originals[name])


def load_adapter_tensors(path: Path) -> dict[str, Any]:
    """The tensors of an ``adapters.safetensors`` file."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise IndexCorruptError(f"{path.parent} is incomplete: {path.name} is missing")
    return dict(load_file(str(path)))


def _key(name: str, part: str) -> str:
    return f"{name}.{part}".replace(".", "/")
