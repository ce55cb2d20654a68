"""Reading PyTorch weights from safetensors files, a damaged file named as such."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newwave.errors import IndexCorruptError

if TYPE_CHECKING:
    import torch

__all__ = ["load_prefixed", "read_tensors"]


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``; an unreadable one raises
    :class:`IndexCorruptError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise IndexCorruptError(f"{path} is not a readable safetensors file: {exc}") from exc


def load_prefixed(path: Path, modules: Mapping[str, Any], *, config: str | Path) -> None:
    """Load each ``modules[prefix]`` (strictly) from the tensors of ``path`` named
    ``"<prefix>.<key>"``; weights that do not fit raise :class:`IndexCorruptError` saying they
    do not fit ``config`` (the file that describes the modules)."""
    tensors = read_tensors(path)
    for prefix, module in modules.items():
        start = f"{prefix}."
        state = {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise IndexCorruptError(
                f"{path} does not fit {config}: {str(exc).splitlines()[0]}"
            ) from exc
