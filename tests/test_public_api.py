from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import newwave

DOCUMENTED = {
    "AudioDecodeError",
    "ComponentUnavailableError",
    "DimensionMismatchError",
    "EmptyQueryError",
    "Encoder",
    "Field",
    "Fuser",
    "Hit",
    "Hits",
    "IndexCorruptError",
    "InvalidInputError",
    "LibraryLockedError",
    "MissingDependencyError",
    "MissingFileError",
    "ModelNotFoundError",
    "NewWaveError",
    "NonFiniteVectorError",
    "PluginError",
    "Ranking",
    "Recommender",
    "RecommenderConfig",
    "Retriever",
    "SkippedInputWarning",
    "StorageError",
    "Track",
    "TruncatedTextWarning",
    "UnknownComponentError",
    "UnknownTrackError",
    "UnsupportedModalityError",
    "Waveform",
    "__version__",
    "hookimpl",
    "load_encoder",
    "load_fuser",
    "load_retriever",
}


def test_all_is_sorted_and_is_the_documented_api() -> None:
    assert newwave.__all__ == sorted(newwave.__all__)
    assert set(newwave.__all__) == DOCUMENTED


def test_every_public_name_resolves() -> None:
    for name in newwave.__all__:
        assert getattr(newwave, name) is not None
    assert set(newwave.__all__) <= set(dir(newwave))


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        newwave.nope  # noqa: B018


def test_version_is_the_installed_version() -> None:
    assert newwave.__version__ == importlib.metadata.version("newwave-music")


def test_errors_share_the_root() -> None:
    for name in newwave.__all__:
        value = getattr(newwave, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, newwave.NewWaveError)


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, newwave; print(newwave.__all__); "
        "heavy = {'torch', 'transformers', 'faiss', 'librosa', 'sklearn', 'numpy', 'pydantic', "
        "'pluggy'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]"
