"""Fields: the named views of a track that encoders embed.

A field takes its value from a *source*: a :class:`~newwave.Track` attribute (``"description"``,
``"tags"``, ``"audio"``, ...), a metadata key (``"metadata.mood"``), or any function of a track.
It is embedded by one encoder, or by several (a *hybrid* field, e.g. ``["bm25", "minilm"]``),
each of which gets its own index. Each (field, encoder) pair is a *channel*: it is named after
the field alone when the field has one encoder, and ``"field:encoder"`` when it has several.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from newwave.errors import InvalidInputError
from newwave.types import Modality, Track

if TYPE_CHECKING:
    from newwave.encoders.base import Encoder
    from newwave.lexical.base import LexicalIndex

__all__ = [
    "FUNCTION_SOURCE",
    "TRACK_SOURCES",
    "Field",
    "FieldEncoder",
    "Source",
    "as_fields",
    "channel_name",
    "field_value",
]

#: The Track attributes a field can take its value from, and the modality of each.
TRACK_SOURCES: dict[str, Modality] = {
    "title": "text",
    "artist": "text",
    "album": "text",
    "description": "text",
    "tags": "text",
    "lyrics": "text",
    "audio": "audio",
}
#: How a saved config names a source that is a function (functions are not saved).
FUNCTION_SOURCE = "<function>"

Source: TypeAlias = "str | Callable[[Track], str | None]"
FieldEncoder: TypeAlias = "str | Encoder | LexicalIndex"
_METADATA = re.compile(r"^metadata\.(.+)$")


@dataclass(frozen=True)
class Field:
    """A field: where its value comes from and which encoder(s) embed it.

    ``source`` is a Track attribute, ``"metadata.<key>"`` (a string, or a list of strings joined
    with ", ") or a function of a :class:`~newwave.Track` returning text (or ``None`` when the
    track has no value); left out, it is the field's own name. ``encoders`` is an encoder name, an
    :class:`~newwave.Encoder` or lexical index, or a list of them for a hybrid field.
    ``modality`` defaults to ``"audio"`` for the ``audio`` attribute and ``"text"`` otherwise.
    ``windows=True`` (audio fields) indexes every window's vector, so that a snippet or a
    request matches a track's best part rather than its mean (:mod:`newwave.search.windows`).

    >>> Field(source="metadata.mood", encoders="minilm").modality
    'text'
    """

    encoders: FieldEncoder | Sequence[FieldEncoder]
    source: Source | None = None
    modality: Modality | None = None
    windows: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.windows, bool):
            raise InvalidInputError(f"windows must be True or False, got {self.windows!r}")

    def encoder_list(self, field_name: str) -> list[FieldEncoder]:
        """The encoders, as a non-empty list."""
        encoders: Any = self.encoders
        items = list(encoders) if isinstance(encoders, (list, tuple)) else [encoders]
        if not items:
            raise InvalidInputError(f"field {field_name!r} has an empty list of encoders")
        return items

    def resolved_source(self, field_name: str) -> Source:
        """The source, checked; the field's name when none was given."""
        source = field_name if self.source is None else self.source
        if callable(source):
            return source
        if not isinstance(source, str) or not (source in TRACK_SOURCES or _METADATA.match(source)):
            if self.source is None:
                raise InvalidInputError(
                    f"unknown field {field_name!r}: a field is a Track attribute "
                    f"({', '.join(TRACK_SOURCES)}) unless it has a source, e.g. "
                    f"Field(source='metadata.{field_name}', encoders='minilm')"
                )
            raise InvalidInputError(
                f"field {field_name!r}: source {source!r} is not a Track attribute "
                f"({', '.join(TRACK_SOURCES)}), 'metadata.<key>' or a function of a Track"
            )
        return source

    def resolved_modality(self, field_name: str) -> Modality:
        """The modality of the field's values."""
        if self.modality is not None:
            if self.modality not in ("text", "audio"):
                raise InvalidInputError(
                    f"field {field_name!r}: modality must be 'text' or 'audio', "
                    f"got {self.modality!r}"
                )
            return self.modality
        source = self.resolved_source(field_name)
        return TRACK_SOURCES.get(source, "text") if isinstance(source, str) else "text"


def channel_name(field_name: str, encoder_name: str, hybrid: bool) -> str:
    """The name of one encoder's index of a field: ``field`` or, in a hybrid, ``field:encoder``."""
    return f"{field_name}:{encoder_name}" if hybrid else field_name


def field_value(track: Track, source: Source) -> str | None:
    """The value ``source`` gives ``track``: non-blank text, or None when it has none.

    Tags and list-valued metadata become ``"a, b, c"``; an audio source gives the file path.
    """
    if callable(source):
        value: Any = source(track)
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(
                f"track {track.id!r}: a field function returned a {type(value).__name__}, "
                "not a str or None"
            )
    else:
        found = _METADATA.match(source)
        value = track.metadata.get(found.group(1)) if found else getattr(track, source)
        if isinstance(value, (list, tuple)):
            value = ", ".join(v.strip() for v in value if isinstance(v, str) and v.strip())
    return value if isinstance(value, str) and value.strip() else None


def as_fields(
    fields: Mapping[str, FieldEncoder | Sequence[FieldEncoder] | Field],
) -> dict[str, Field]:
    """Normalise the ``fields=`` argument of a Recommender to :class:`Field` objects."""
    return {
        name: spec if isinstance(spec, Field) else Field(encoders=spec)
        for name, spec in fields.items()
    }
