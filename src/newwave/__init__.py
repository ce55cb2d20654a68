"""newwave: natural-language music retrieval and recommendation.

>>> from newwave import Recommender, Track
>>> rec = Recommender(fields={"description": "minilm"})  # doctest: +SKIP

Importing newwave is cheap: everything past the error classes (pluggy, pydantic, numpy, torch,
transformers, FAISS) loads when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from newwave.errors import (
    AudioDecodeError,
    ComponentUnavailableError,
    DimensionMismatchError,
    EmptyQueryError,
    IndexCorruptError,
    InvalidInputError,
    LibraryLockedError,
    MissingDependencyError,
    MissingFileError,
    ModelNotFoundError,
    NewWaveError,
    NonFiniteVectorError,
    PluginError,
    SkippedInputWarning,
    StorageError,
    TruncatedTextWarning,
    UnknownComponentError,
    UnknownTrackError,
    UnsupportedModalityError,
)

if TYPE_CHECKING:
    from newwave.config import RecommenderConfig
    from newwave.encoders.base import Encoder
    from newwave.fields import Field
    from newwave.fusion.base import Fuser
    from newwave.hookspecs import hookimpl
    from newwave.index.base import Retriever
    from newwave.plugins import load_encoder, load_fuser, load_retriever
    from newwave.recommender import Recommender
    from newwave.types import Hit, Hits, Ranking, Track, Waveform

    __version__: str

__all__ = [
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
]

_LAZY = {
    "Encoder": "newwave.encoders.base",
    "Field": "newwave.fields",
    "Fuser": "newwave.fusion.base",
    "Hit": "newwave.types",
    "Hits": "newwave.types",
    "Ranking": "newwave.types",
    "Recommender": "newwave.recommender",
    "RecommenderConfig": "newwave.config",
    "Retriever": "newwave.index.base",
    "Track": "newwave.types",
    "Waveform": "newwave.types",
    "hookimpl": "newwave.hookspecs",
    "load_encoder": "newwave.plugins",
    "load_fuser": "newwave.plugins",
    "load_retriever": "newwave.plugins",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        from newwave._distribution import DISTRIBUTION

        try:
            value: Any = version(DISTRIBUTION)
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0+unknown"
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'newwave' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
