"""Typed, JSON-serialisable configuration, saved with every artifact."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from newwave._distribution import DISTRIBUTION
from newwave._storage import write_json
from newwave.errors import InvalidInputError, MissingFileError

__all__ = ["ComponentConfig", "FieldConfig", "RecommenderConfig", "library_versions"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_CHANNEL_NAME = re.compile(rf"^{_NAME}(:{_NAME})?$")
#: Recorded name -> distribution: newwave's own version is recorded as "newwave".
_VERSIONED = {
    "newwave": DISTRIBUTION,
    **{dist: dist for dist in ("numpy", "torch", "transformers", "faiss-cpu", "pydantic")},
    "pluggy": "pluggy",
}


def library_versions() -> dict[str, str]:
    """Versions of Python and of the installed libraries that shape saved artifacts."""
    versions = {"python": platform.python_version()}
    for name, dist in _VERSIONED.items():
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ComponentConfig(_Frozen):
    """A registered component by name, with the keyword options its factory takes."""

    name: str
    options: dict[str, JsonValue] = {}


class FieldConfig(_Frozen):
    """One channel of a field: the encoder that embeds it, and what it produced.

    ``field`` and ``source`` default to the channel's own name (a field with one encoder);
    ``source`` is ``"<function>"`` for a field computed by a function, which is not saved.
    ``dim`` is the vector width (None for a lexical index). ``windows``: every audio window's
    vector is indexed too (written only when true).
    """

    encoder: ComponentConfig
    field: str | None = None
    source: str | None = None
    modality: Literal["text", "audio"] = "text"
    model_id: str | None = None
    dim: int | None = Field(default=None, ge=1)
    windows: bool = False

    @model_serializer(mode="wrap")
    def _without_default_windows(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not data.get("windows"):
            data.pop("windows", None)  # as written before windowed fields existed
        return data


class RecommenderConfig(_Frozen):
    """Everything needed to rebuild a :class:`~newwave.Recommender`, as saved in config.json."""

    format_version: Literal[1] = 1
    fields: dict[str, FieldConfig] = {}  # by channel: "field", or "field:encoder" in a hybrid
    fuser: ComponentConfig = ComponentConfig(name="rrf")
    retriever: ComponentConfig = ComponentConfig(name="faiss")
    rewriter: ComponentConfig | None = ComponentConfig(name="rules")
    versions: dict[str, str] = Field(default_factory=library_versions)

    @field_validator("fields")
    @classmethod
    def _field_names(cls, fields: dict[str, FieldConfig]) -> dict[str, FieldConfig]:
        for name in fields:
            if not _CHANNEL_NAME.match(name):
                raise ValueError(
                    f"field name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit (and, in a hybrid, ':' and the encoder)"
                )
        return fields

    def to_json(self) -> str:
        """The config as indented JSON."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> RecommenderConfig:
        """Parse a config written by :meth:`to_json`; invalid input raises InvalidInputError."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid RecommenderConfig: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON to ``path`` atomically."""
        write_json(Path(path), self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RecommenderConfig:
        """Read a config saved with :meth:`save`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise MissingFileError(f"no such config file: {path}") from exc
        return cls.from_json(text)
