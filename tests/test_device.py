"""resolve_device: the argument, then NEWWAVE_DEVICE, then CUDA, MPS, CPU."""

from __future__ import annotations

import pytest
import torch

from newwave.device import DEVICE_ENV, resolve_device
from newwave.errors import InvalidInputError


@pytest.fixture
def accelerators(monkeypatch: pytest.MonkeyPatch):
    """Pretend CUDA (one device) and/or MPS are there: ``accelerators(cuda=..., mps=...)``."""
    monkeypatch.delenv(DEVICE_ENV, raising=False)

    def set_available(*, cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if cuda else 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_available


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(accelerators, cuda, mps, expected) -> None:
    accelerators(cuda=cuda, mps=mps)
    assert resolve_device() == expected
    assert resolve_device("auto") == expected
    assert resolve_device(" AUTO ") == expected


def test_env_beats_auto(accelerators, monkeypatch: pytest.MonkeyPatch) -> None:
    accelerators(cuda=True, mps=False)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device() == "cpu"


def test_argument_beats_env(accelerators, monkeypatch: pytest.MonkeyPatch) -> None:
    accelerators(cuda=True, mps=False)
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "not-a-device")
    assert resolve_device("cuda:0") == "cuda:0"


def test_blank_env_means_auto(accelerators, monkeypatch: pytest.MonkeyPatch) -> None:
    accelerators(cuda=False, mps=True)
    monkeypatch.setenv(DEVICE_ENV, "  ")
    assert resolve_device() == "mps"


def test_case_and_space_are_ignored(accelerators) -> None:
    accelerators(cuda=False, mps=False)
    assert resolve_device(" CPU ") == "cpu"


def test_unavailable_cuda_is_a_clear_error(accelerators) -> None:
    accelerators(cuda=False, mps=False)
    with pytest.raises(InvalidInputError, match=r"'cuda'.*CUDA is not available"):
        resolve_device("cuda")


def test_cuda_index_out_of_range(accelerators) -> None:
    accelerators(cuda=True, mps=False)
    with pytest.raises(InvalidInputError, match=r"only 1 CUDA device"):
        resolve_device("cuda:3")


def test_unavailable_mps_is_a_clear_error(accelerators) -> None:
    accelerators(cuda=False, mps=False)
    with pytest.raises(InvalidInputError, match="MPS is not available"):
        resolve_device("mps")


def test_malformed_device_names_its_source(accelerators, monkeypatch: pytest.MonkeyPatch) -> None:
    accelerators(cuda=False, mps=False)
    with pytest.raises(InvalidInputError, match=r"device is 'gpu', which is not a device"):
        resolve_device("gpu")
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(InvalidInputError, match=DEVICE_ENV):
        resolve_device()


@pytest.mark.parametrize("bad", ["", 0, ["cpu"]])
def test_non_device_values(accelerators, bad) -> None:
    accelerators(cuda=False, mps=False)
    with pytest.raises(InvalidInputError):
        resolve_device(bad)
