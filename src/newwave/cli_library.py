"""What ``newwave index`` and the commands naming tracks share: per-field encoder options,
tracks that vanished from their source, track ids given as audio file paths."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newwave.errors import InvalidInputError, UnknownTrackError

if TYPE_CHECKING:
    from newwave.fields import FieldEncoder
    from newwave.recommender import Recommender
    from newwave.search.defaults import FieldSpec
    from newwave.types import Track

__all__ = [
    "check_saved_options",
    "encoder_options",
    "resolve_track_id",
    "vanished",
    "windowed_fields",
    "with_options",
]

FORM = "FIELD.OPTION=VALUE"


def encoder_options(
    values: Sequence[str] | None, fields: Mapping[str, str | list[str]]
) -> dict[str, dict[str, Any]]:
    """``--option`` values as ``{channel: {option: value}}``.

    ``audio.model=/path`` sets the option ``model`` of the field ``audio``'s encoder; in a
    hybrid field the channel names the encoder: ``tags:minilm.batch_size=8``. VALUE is read as
    JSON where it parses (``8``, ``true``, ``null``), else as text. The field must be given with
    ``--field``.
    """
    channels = {}
    for field, encoders in fields.items():
        names = [encoders] if isinstance(encoders, str) else encoders
        for name in names:
            channels[f"{field}:{name}" if len(names) > 1 else field] = (field, names)
    options: dict[str, dict[str, Any]] = {}
    for value in values or ():
        target, sep, text = value.partition("=")
        channel, dot, key = target.strip().rpartition(".")
        if not sep or not dot or not channel or not key.strip() or not text.strip():
            raise InvalidInputError(
                f"--option takes {FORM}, e.g. audio.batch_size=8, got {value!r}"
            )
        key = key.strip()
        if channel not in channels:
            hybrid = [c for c in channels if c.partition(":")[0] == channel]
            if hybrid:
                raise InvalidInputError(
                    f"--option {target}: field {channel!r} has several encoders; name one, "
                    f"e.g. --option {hybrid[-1]}.{key}=..."
                )
            given = ", ".join(channels) or "none"
            raise InvalidInputError(
                f"--option {target}: no --field {channel}=ENCODER is given (fields given: "
                f"{given}); options apply to the encoders --field names"
            )
        if key in options.setdefault(channel, {}):
            raise InvalidInputError(f"--option {channel}.{key} is given twice")
        options[channel][key] = _value(text.strip())
    return options


def windowed_fields(
    values: Sequence[str] | None, fields: Mapping[str, str | list[str]]
) -> set[str]:
    """The ``--windows`` fields, each given with ``--field`` and one encoder."""
    windowed: set[str] = set()
    for value in values or ():
        field = value.strip()
        if field not in fields:
            given = ", ".join(fields) or "none"
            raise InvalidInputError(
                f"--windows {field}: no --field {field}=ENCODER is given (fields given: {given})"
            )
        if not isinstance(fields[field], str):
            raise InvalidInputError(
                f"--windows {field}: a windowed field has one encoder, not {fields[field]}"
            )
        windowed.add(field)
    return windowed


def with_options(
    fields: Mapping[str, str | list[str]],
    options: Mapping[str, Mapping[str, Any]],
    windowed: Collection[str] = (),
) -> dict[str, FieldSpec]:
    """``fields`` with each encoder that has options built with them (checked by its plugin),
    the ``windowed`` ones as windowed fields."""
    from newwave.fields import Field
    from newwave.plugins import load_field_encoder

    spec: dict[str, FieldSpec] = {}
    for field, encoders in fields.items():
        names = [encoders] if isinstance(encoders, str) else encoders
        built: list[FieldEncoder] = []
        for name in names:
            channel = f"{field}:{name}" if len(names) > 1 else field
            given = options.get(channel)
            built.append(load_field_encoder(name, **given) if given else name)
        spec[field] = built if len(names) > 1 else built[0]
        if field in windowed:
            spec[field] = Field(built[0], windows=True)
    return spec


def check_saved_options(
    rec: Recommender, library: Path, options: Mapping[str, Mapping[str, Any]]
) -> None:
    """A saved library keeps its encoders' options: ``--option`` may only repeat them."""
    saved = rec.saved_config.fields
    for channel, given in options.items():
        have = saved[channel].encoder.options if channel in saved else {}
        for key, value in given.items():
            if key not in have:
                raise InvalidInputError(
                    f"{library}: the {channel} encoder does not keep the option {key}; --option "
                    "applies when a library is made (index into a new directory instead)"
                )
            if have[key] != value:
                raise InvalidInputError(
                    f"{library} was made with {channel}.{key} {json.dumps(have[key])}; --option "
                    "cannot change an existing library's encoders (index into a new directory "
                    "instead)"
                )


def vanished(rec: Recommender, tracks: Sequence[Track], source: Path) -> list[str]:
    """The library's tracks that ``source`` no longer has, for ``newwave index --prune``.

    For a catalogue file, every track of the library that the file does not list; for a music
    folder, the tracks whose audio file lies inside the folder and was not found in it (tracks
    from other sources stay).
    """
    listed = {track.id for track in tracks}
    others = [track_id for track_id in rec.ids() if track_id not in listed]
    if not source.is_dir():
        return others
    root = source.expanduser().resolve()
    gone = []
    for track_id in others:
        audio = rec.get(track_id).audio
        if audio and (Path(audio) == root or root in Path(audio).parents):
            gone.append(track_id)
    return gone


def resolve_track_id(rec: Recommender, given: str) -> str:
    """The id of a track named by its id or by its audio file's path (absolute or relative).

    A music folder's track ids are paths relative to the folder; a path to one of its files,
    from anywhere, names the same track.
    """
    if given in rec:
        return given
    path = Path(given).expanduser()
    if path.exists():
        real = path.resolve()
        for folder in real.parents:
            candidate = real.relative_to(folder).as_posix()
            if candidate in rec:
                audio = rec.get(candidate).audio
                if audio and Path(audio).resolve() == real:
                    return candidate
    raise UnknownTrackError(f"no track with id {given!r}, nor one whose audio file it is")


def _value(text: str) -> Any:
    """JSON where it parses (``3``, ``null``, ``true``), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
