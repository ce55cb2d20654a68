"""Choosing the torch device a model runs on."""

from __future__ import annotations

import os

from newwave.errors import InvalidInputError

__all__ = ["DEVICE_ENV", "resolve_device"]

#: Environment variable read when no device is given: e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
DEVICE_ENV = "NEWWAVE_DEVICE"


def resolve_device(device: str | None = None) -> str:
    """The device to run on, as a string torch accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    ``device`` wins; if it is ``None``, the environment variable ``NEWWAVE_DEVICE`` is used; if
    that is unset, empty or ``"auto"`` (as ``device`` may be too), the first available of CUDA,
    Apple MPS and CPU. A device that is malformed or not available raises
    :class:`~newwave.errors.InvalidInputError`.
    """
    source = "device"
    if device is None:
        device = os.environ.get(DEVICE_ENV, "").strip() or "auto"
        source = f"the environment variable {DEVICE_ENV}"
    if not isinstance(device, str):
        raise InvalidInputError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    requested = device.strip().lower()

    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available(torch):
            return "mps"
        return "cpu"

    try:
        parsed = torch.device(requested)
    except (RuntimeError, ValueError) as exc:
        raise InvalidInputError(
            f"{source} is {device!r}, which is not a device; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'"
        ) from exc

    if parsed.type == "cpu":
        return "cpu"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"{source} is {device!r}, but CUDA is not available (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}); use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise InvalidInputError(
                f"{source} is {device!r}, but only {count} CUDA device(s) are visible"
            )
        return str(parsed)
    if parsed.type == "mps":
        if not _mps_available(torch):
            raise InvalidInputError(
                f"{source} is {device!r}, but Apple MPS is not available; use 'cpu' or 'auto'"
            )
        return str(parsed)
    backend = getattr(torch, parsed.type, None)
    is_available = getattr(backend, "is_available", None)
    if callable(is_available) and is_available():
        return str(parsed)
    raise InvalidInputError(
        f"{source} is {device!r}: device type {parsed.type!r} is not available here; "
        "use 'auto', 'cpu', 'cuda' or 'mps'"
    )


def _mps_available(torch: object) -> bool:
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    return bool(mps is not None and mps.is_available())
