"""The exceptions newwave raises.

Every error derives from :class:`NewWaveError` and also from the builtin exception that fits, so
``except KeyError`` and ``except NewWaveError`` both work::

    NewWaveError
    ├── UnknownComponentError        (KeyError)       no encoder/fuser/retriever of that name
    ├── UnknownTrackError            (KeyError)       no track with that id
    ├── ComponentUnavailableError    (RuntimeError)   registered, but cannot be used in this version
    ├── PluginError                  (RuntimeError)   a plugin registered something invalid
    ├── MissingDependencyError       (ImportError)    an optional extra is not installed
    ├── ModelNotFoundError           (OSError)        weights not found locally nor on the hub
    ├── MissingFileError             (FileNotFoundError)
    ├── StorageError                 (OSError)        a library cannot be written (disk full, ...)
    ├── InvalidInputError            (ValueError)     bad argument values
    │   ├── EmptyQueryError                           empty or blank text
    │   ├── DimensionMismatchError                    vector of the wrong width
    │   ├── NonFiniteVectorError                      vector with NaN or inf
    │   ├── UnsupportedModalityError                  e.g. audio given to a text-only encoder
    │   │   └── NoAudioFieldError                     a query by audio, but no audio field
    │   └── AudioDecodeError                          a file that is not decodable audio
    ├── IndexCorruptError            (ValueError)     a saved directory that cannot be trusted
    └── LibraryLockedError           (TimeoutError)   another process is writing the library

    SkippedInputWarning              (UserWarning)    inputs skipped with on_error="skip"
    TruncatedTextWarning             (UserWarning)    queries embedded from their start only
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AudioDecodeError",
    "ComponentUnavailableError",
    "DimensionMismatchError",
    "EmptyQueryError",
    "IndexCorruptError",
    "InvalidInputError",
    "LibraryLockedError",
    "MissingDependencyError",
    "MissingFileError",
    "ModelNotFoundError",
    "NewWaveError",
    "NoAudioFieldError",
    "NonFiniteVectorError",
    "PluginError",
    "SkippedInputWarning",
    "StorageError",
    "TruncatedTextWarning",
    "UnknownComponentError",
    "UnknownTrackError",
    "UnsupportedModalityError",
]


class NewWaveError(Exception):
    """Root of every exception raised by newwave."""


class _KeyErrorMessage(KeyError):  # noqa: N818 (a mixin, not raised alone)
    """A KeyError whose ``str()`` is its message, not the message's repr."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownComponentError(NewWaveError, _KeyErrorMessage):
    """No encoder, fuser or retriever is registered under the requested name."""


class UnknownTrackError(NewWaveError, _KeyErrorMessage):
    """No track with the requested id is in the catalogue."""


class ComponentUnavailableError(NewWaveError, RuntimeError):
    """A component is registered but cannot be used in this version or configuration."""


class PluginError(NewWaveError, RuntimeError):
    """A plugin failed to load or registered an invalid component."""


class MissingDependencyError(NewWaveError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ModelNotFoundError(NewWaveError, OSError):
    """Model weights were not found locally nor downloaded; the message says how to provide them."""


class MissingFileError(NewWaveError, FileNotFoundError):
    """An input file (audio, catalogue, saved index) does not exist."""


class StorageError(NewWaveError, OSError):
    """A library cannot be written: the disk is full, the files are read-only, ..."""


class InvalidInputError(NewWaveError, ValueError):
    """An argument has an invalid value."""


class EmptyQueryError(InvalidInputError):
    """A query or text input is empty or only white space."""


class DimensionMismatchError(InvalidInputError):
    """A vector's width differs from the dimension the component expects."""


class NonFiniteVectorError(InvalidInputError):
    """A vector contains NaN or infinity."""


class UnsupportedModalityError(InvalidInputError):
    """An input of a modality the component does not handle (e.g. audio for a text encoder)."""


class NoAudioFieldError(UnsupportedModalityError):
    """A query by audio to a recommender with no audio field: nothing could compare it."""


class AudioDecodeError(InvalidInputError):
    """An audio file or array could not be decoded."""


class IndexCorruptError(NewWaveError, ValueError):
    """A saved directory is incomplete, corrupt, or inconsistent with its config."""


class LibraryLockedError(NewWaveError, TimeoutError):
    """Another process holds a library's writer lock; the message names it."""


class SkippedInputWarning(UserWarning):
    """Some inputs could not be encoded and were skipped (their rows are zeros).

    ``failures`` lists ``(index, input, error)`` for each skipped input.
    """

    def __init__(self, encoder: str, modality: str, failures: Sequence[tuple[int, Any, Exception]]):
        self.failures = list(failures)
        shown = "; ".join(f"{i}: {item!s}: {error}" for i, item, error in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(
            f"encoder {encoder!r} skipped {len(failures)} {modality} input(s), "
            f"their rows are zeros: {shown}{more}"
        )


class TruncatedTextWarning(UserWarning):
    """Some queries were longer than the encoder sees; each was embedded from its start only.

    ``truncated`` lists ``(index, characters given, characters embedded)`` for each one.
    """

    def __init__(self, encoder: str, truncated: Sequence[tuple[int, int, int]]):
        self.truncated = list(truncated)
        shown = "; ".join(f"query {i}: {kept:,} of {given:,}" for i, given, kept in truncated[:5])
        more = f"; and {len(truncated) - 5} more" if len(truncated) > 5 else ""
        super().__init__(
            f"encoder {encoder!r} embedded {len(truncated)} long query(ies) from their start "
            f"only, the rest is ignored (characters embedded: {shown}{more})"
        )
