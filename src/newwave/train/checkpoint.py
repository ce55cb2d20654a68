"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a snapshot directory (written atomically, see :mod:`newwave._storage`)::

    checkpoint/
      newwave.json               the pointer to the current snapshot
      snapshot-000007/
        model.safetensors        the module's state_dict
        optimizer.safetensors    the optimizer's per-parameter tensors, "<param index>.<name>"
        state.json               step, epoch, data position, RNG states, scheduler, optimizer
                                 hyper-parameters, ... (whatever the loop puts in it)

:func:`rng_state` and :func:`set_rng_state` carry the Python, NumPy and torch (CPU and CUDA)
random states as JSON lists.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import JsonValue
from torch import nn

from newwave._storage import atomic_directory, read_json, resolve_directory, write_json
from newwave._weights import read_tensors
from newwave.errors import IndexCorruptError, MissingFileError

__all__ = [
    "has_checkpoint",
    "load_checkpoint",
    "load_weights",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

_FORMAT = "newwave-train-checkpoint"
_MODEL = "model.safetensors"
_OPTIMIZER = "optimizer.safetensors"
_STATE = "state.json"


def has_checkpoint(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a checkpoint written by :func:`save_checkpoint`."""
    return (Path(directory) / "newwave.json").is_file()


def save_checkpoint(
    directory: str | os.PathLike[str],
    module: nn.Module,
    state: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write ``module``'s weights, ``optimizer``'s state and the JSON ``state`` atomically;
    returns the snapshot written."""
    from safetensors.torch import save_file

    with atomic_directory(directory) as staging:
        save_file(_cpu(module.state_dict()), str(staging / _MODEL))
        content: dict[str, Any] = {"format": _FORMAT, "version": 1, "state": dict(state)}
        if optimizer is not None:
            tensors, content["optimizer"] = _flatten_optimizer(optimizer)
            save_file(tensors, str(staging / _OPTIMIZER))
        write_json(staging / _STATE, content)
    return resolve_directory(directory)


def load_checkpoint(
    directory: str | os.PathLike[str],
    module: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Restore ``module`` (and ``optimizer``) from a checkpoint; return its JSON ``state``."""
    snapshot = _snapshot(directory)
    content = read_json(snapshot / _STATE)
    if not isinstance(content, dict) or content.get("format") != _FORMAT:
        raise IndexCorruptError(f"{snapshot / _STATE} is not a newwave training checkpoint")
    load_weights(directory, module)
    if optimizer is not None:
        if "optimizer" not in content:
            raise IndexCorruptError(f"{snapshot} holds no optimizer state")
        _restore_optimizer(optimizer, read_tensors(snapshot / _OPTIMIZER), content["optimizer"])
    state: dict[str, Any] = content["state"]
    return state


def load_weights(directory: str | os.PathLike[str], module: nn.Module) -> None:
    """Load only the module weights of a checkpoint into ``module`` (names must match)."""
    path = _snapshot(directory) / _MODEL
    try:
        module.load_state_dict(read_tensors(path), strict=True)
    except RuntimeError as exc:
        raise IndexCorruptError(
            f"{path} does not fit the model: {str(exc).splitlines()[0]}"
        ) from exc


def _snapshot(directory: str | os.PathLike[str]) -> Path:
    if not has_checkpoint(directory):
        raise MissingFileError(f"no checkpoint in {directory}")
    return resolve_directory(directory)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, JsonValue]]:
    """The optimizer's state_dict as tensors ("<index>.<name>") and JSON (the rest)."""
    full = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, JsonValue] = {}
    for index, entry in full["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value  # type: ignore[index]
    groups: JsonValue = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        for group in full["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: Any
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    current = optimizer.state_dict()["param_groups"]
    if len(current) != len(saved["param_groups"]):
        raise IndexCorruptError("the checkpoint's optimizer has other parameter groups")
    groups = [
        {k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in group.items()}
        for now, group in zip(current, saved["param_groups"], strict=True)
    ]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise IndexCorruptError(f"the checkpoint's optimizer state does not fit: {exc}") from exc


def rng_state() -> dict[str, JsonValue]:
    """The Python, NumPy and torch random states, as JSON-able lists."""
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)
    name, keys, pos, has_gauss, cached = numpy_state
    version, internal, gauss = random.getstate()
    state: dict[str, JsonValue] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
