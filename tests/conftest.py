"""Shared fixtures: installed third-party plugins never load in tests; a fake encoder plugin;
what the trainers' tests share (one torch thread, an interrupted run, the command line)."""

from __future__ import annotations

import os

# Before any plugin manager is built: only the built-in plugins, whatever else is installed.
os.environ["NEWWAVE_LOAD_PLUGINS"] = ""

import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from newwave import Encoder, hookimpl
from newwave.hookspecs import Register
from newwave.plugins import get_plugin_manager
from newwave.types import Modality, Role, Waveform


class KeywordEncoder(Encoder):
    """Feature-hashed bag of words for text, band energies of the spectrum for audio.

    Deterministic and model-free: texts sharing words have a positive inner product.
    """

    name = "keyword"
    modalities = frozenset({"text", "audio"})

    def __init__(self, *, dim: int = 64, **options: Any):
        super().__init__(**options)
        self._dim = dim
        self.calls: list[tuple[Modality, Role, int]] = []

    @property
    def dim(self) -> int:
        return self._dim

    def get_config(self) -> dict[str, Any]:
        return {"dim": self._dim}

    def _prepare(self, item: Any, modality: Modality) -> Any:
        if modality == "audio" and isinstance(item, str):
            import soundfile

            samples, rate = soundfile.read(item, dtype="float32", always_2d=True)
            return Waveform(samples.T, rate)
        return item

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> Any:
        self.calls.append((modality, role, len(batch)))
        out = np.zeros((len(batch), self._dim), dtype=np.float32)
        for row, item in enumerate(batch):
            if modality == "text":
                for word in item.lower().split():
                    out[row, zlib.crc32(word.strip(",.!?").encode()) % self._dim] += 1.0
            else:
                samples = np.atleast_2d(np.asarray(item.samples, dtype=np.float64)).mean(axis=0)
                spectrum = np.abs(np.fft.rfft(samples, n=4 * self._dim))
                out[row] = [band.sum() for band in np.array_split(spectrum, self._dim)]
        return out


class KeywordPlugin:
    """A third-party plugin as a test would write one."""

    @hookimpl
    def register_encoders(self, register: Register) -> None:
        register(KeywordEncoder, aliases=("kw",))


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors of width ``dim``, the same for the same seed."""
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


@pytest.fixture
def keyword_plugin() -> Iterator[None]:
    """Register the fake ``keyword`` encoder plugin for one test."""
    pm = get_plugin_manager()
    pm.register(KeywordPlugin(), name="test-keyword")
    try:
        yield
    finally:
        pm.unregister(name="test-keyword")


@pytest.fixture(params=["faiss", "qdrant"])
def retriever_kwargs(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
    """A Recommender's retriever arguments, for each retriever: FAISS, and Qdrant in local mode
    (a folder of the test's own)."""
    if request.param == "faiss":
        return {}
    options = {"path": str(tmp_path / "qdrant"), "collection": "lib"}
    return {"retriever": "qdrant", "retriever_options": options}


@pytest.fixture
def keyword_encoder() -> KeywordEncoder:
    return KeywordEncoder()


# -- the trainers' tests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch computes on one CPU thread for a module's tests (tiny models: more threads only
    contend on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class KilledError(Exception):
    """A training run stopped as if killed (see :func:`run_until_killed`)."""


@pytest.fixture
def run_until_killed() -> Callable[..., None]:
    """``run_until_killed(step, train, *args, **options)`` runs ``train(*args, **options)``
    with ``callbacks=`` one that stops it, as a kill would, right after it writes its
    checkpoint of ``step``."""
    from newwave.train import Callback

    class KillAt(Callback):
        def __init__(self, step: int):
            self.step = step

        def on_checkpoint(self, step: int, directory: Any) -> None:
            if step == self.step:
                raise KilledError

    def run(step: int, train: Callable[..., Any], *args: Any, **options: Any) -> None:
        with pytest.raises(KilledError):
            train(*args, callbacks=[KillAt(step)], **options)

    return run


@pytest.fixture
def train_command(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], str]:
    """``train_command(argv)`` runs ``newwave train ...`` and returns what it printed, having
    checked that running it again is refused and that ``--resume`` prints the same."""
    from newwave.cli import main

    def run(argv: list[str]) -> str:
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert main(argv) == 1
        assert "already holds a training run" in capsys.readouterr().err
        assert main([*argv, "--resume"]) == 0  # a finished run: nothing left to train
        assert capsys.readouterr().out == out
        return out

    return run


# -- the Ray executor's tests -------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A real local Ray cluster of 2 CPUs for the session's tests; its address (GCS)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
