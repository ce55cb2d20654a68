"""Catalogue input: turn CSV, TSV, JSONL and Parquet files, or a folder of music, into tracks.

Both readers return lazy iterators, so a large catalogue is never held in memory twice; argument
errors, a missing file and a missing optional dependency are raised at the call, problems in the
file's contents while iterating::

    from newwave import Recommender
    from newwave.readers import read_tracks, scan_music_folder

    rec = Recommender()
    rec.add(read_tracks("musiccaps-public.csv",
                        columns={"id": "ytid", "description": "caption", "tags": "aspect_list"}))
    rec.add(scan_music_folder("~/Music"))  # needs newwave-music[tags]

:func:`read_tracks` rules:

* **Format** from the extension (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, ``.parquet``; any
  case) unless ``format=`` says. Parquet needs ``newwave-music[parquet]`` and is read in record
  batches.
* **Columns**: ``columns`` maps a :class:`~newwave.types.Track` field (``id``, ``title``,
  ``artist``, ``album``, ``audio``, ``lyrics``, ``description``, ``tags``) to a column name; a
  field left unmapped is read from the column of the same name when there is one. A mapped column
  must exist: in the CSV header or Parquet schema, or in every JSONL record (``null`` is fine).
* **Values**: ``id`` is required and unique; numbers are accepted as ids and text. Empty or blank
  text becomes ``None``.
* **Tags**: a list (JSONL, Parquet), or a string split on ``tag_separator``; a string that looks
  like a list, such as MusicCaps' ``"['pop', 'tinny wide hi hats']"``, is parsed as a JSON or
  Python literal (never evaluated). Tags are stripped, empty ones dropped.
* **Metadata**: ``metadata="rest"`` puts every column not read into a field into
  :attr:`Track.metadata`; a list of column names puts just those. Values become JSON values; NaN
  and infinities become ``None``; in CSV and TSV, where every value is text, integers (no leading
  zeros), decimals and ``true``/``false`` become numbers and booleans, an empty value ``None``. A
  ``metadata`` column holding an object (a file of dumped tracks) is merged in.
* **Audio** paths relative to the catalogue file are resolved against its directory (``~`` is
  expanded); absolute paths and URLs (``scheme://...``) are kept as they are.
* **Size**: a value (a column's text, or a list's strings together) of more than
  ``max_field_chars`` characters (default :data:`MAX_FIELD_CHARS`, 100 000) is an error; so are
  a metadata value nested more than :data:`MAX_NESTING` (64) levels deep and text that is not
  UTF-8, named by the line it is on.
* **Errors**: a missing or empty id, a duplicate id, a missing column, a row that cannot be parsed
  raise :class:`~newwave.errors.InvalidInputError` naming the file, the line (CSV, TSV, JSONL;
  where a CSV record starts) or the row (Parquet, from 1), and the problem.

:func:`scan_music_folder` yields one track per audio file, in sorted path order; see its docstring.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import importlib
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import JsonValue, ValidationError

from newwave._checks import positive_int
from newwave._optional import import_optional
from newwave.errors import InvalidInputError, MissingFileError
from newwave.types import Track

__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_FIELD_CHARS",
    "MAX_NESTING",
    "MAX_SIDECAR_BYTES",
    "CatalogueFormat",
    "read_tracks",
    "scan_music_folder",
]

logger = logging.getLogger(__name__)

CatalogueFormat: TypeAlias = Literal["csv", "tsv", "jsonl", "parquet"]
"""A catalogue file format :func:`read_tracks` reads."""

#: The most characters a catalogue value may have in :func:`read_tracks` (``max_field_chars``).
MAX_FIELD_CHARS = 100_000

#: The deepest nesting of lists and objects a metadata value may have in :func:`read_tracks`.
MAX_NESTING = 64

#: The largest lyrics sidecar file (``.lrc``, ``.txt``) :func:`scan_music_folder` reads, in bytes.
MAX_SIDECAR_BYTES = 1_000_000

#: The extensions :func:`scan_music_folder` picks up by default.
AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".flac", ".ogg", ".opus", ".m4a", ".wav")

_EXTENSION_FORMATS: dict[str, CatalogueFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_TEXT_FIELDS = ("title", "artist", "album", "audio", "lyrics", "description")
_FIELDS = ("id", *_TEXT_FIELDS, "tags")
_PARQUET_BATCH_ROWS = 1024
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CSV_INT = re.compile(r"^[+-]?(?:0|[1-9][0-9]*)$")
_CSV_FLOAT = re.compile(r"^[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_LRC_TIME = re.compile(r"\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]|<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>")
_LRC_HEADER = re.compile(
    r"^\s*\[(?:ar|al|ti|au|by|re|ve|la|id|length|offset|tool|version|#)\s*:[^\]]*\]\s*$",
    re.IGNORECASE,
)

Record: TypeAlias = Mapping[str, Any]


class _RowError(Exception):
    """A problem with one record; the reader adds the file and the line or row."""


class _NestingError(Exception):
    """A metadata value nested more than :data:`MAX_NESTING` levels deep."""


# -- read_tracks ------------------------------------------------------------------------------


def read_tracks(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    format: CatalogueFormat | None = None,
    tag_separator: str = ",",
    metadata: Sequence[str] | Literal["rest"] = "rest",
    max_field_chars: int = MAX_FIELD_CHARS,
) -> Iterator[Track]:
    """Read the tracks of a CSV, TSV, JSONL or Parquet catalogue, lazily, in file order.

    ``columns`` maps Track fields to the file's column names (unmapped fields use the column of
    the same name when present); ``tag_separator`` splits tags given as a plain string;
    ``metadata`` is ``"rest"`` (every other column) or the column names to keep in
    :attr:`Track.metadata`; ``max_field_chars`` (default :data:`MAX_FIELD_CHARS`, 100 000) is
    the most characters a value may have. The rules are in the :mod:`newwave.readers` docstring.

    Raises :class:`MissingFileError` for a missing file, :class:`MissingDependencyError` for
    Parquet without pyarrow (``newwave-music[parquet]``), and :class:`InvalidInputError` for bad
    arguments here, or for bad contents (with the line or row) while iterating.
    """
    source = Path(path)
    if not source.exists():
        raise MissingFileError(f"catalogue file not found: {source}")
    if source.is_dir():
        raise InvalidInputError(f"{source} is a directory, not a catalogue file")
    fmt = _resolve_format(source, format)
    mapping = _check_columns(columns)
    if not isinstance(tag_separator, str) or not tag_separator:
        raise InvalidInputError("tag_separator must be a non-empty string")
    wanted = _check_metadata(metadata)
    limit = positive_int(max_field_chars, "max_field_chars")
    base = source.resolve().parent
    if fmt == "parquet":
        parquet = _import_pyarrow_parquet()
        return _read_parquet(parquet, _Builder(source, base, tag_separator, limit), mapping, wanted)
    if fmt == "jsonl":
        return _read_jsonl(_Builder(source, base, tag_separator, limit), mapping, wanted)
    delimiter = "\t" if fmt == "tsv" else ","
    builder = _Builder(source, base, tag_separator, limit, text_values=True)
    return _read_csv(builder, mapping, wanted, delimiter)


def _resolve_format(path: Path, fmt: str | None) -> CatalogueFormat:
    if fmt is not None:
        for known in _EXTENSION_FORMATS.values():
            if fmt == known:
                return known
        raise InvalidInputError(f"unknown format {fmt!r}; use one of csv, tsv, jsonl, parquet")
    suffix = path.suffix.lower()
    if suffix not in _EXTENSION_FORMATS:
        known_ext = ", ".join(_EXTENSION_FORMATS)
        raise InvalidInputError(
            f"cannot tell the format of {path} from its extension {suffix!r} (known: {known_ext}); "
            "pass format='csv', 'tsv', 'jsonl' or 'parquet'"
        )
    return _EXTENSION_FORMATS[suffix]


def _check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    mapping = dict(columns or {})
    for field_name, column in mapping.items():
        if field_name == "metadata":
            raise InvalidInputError("columns cannot map 'metadata'; use metadata=[...] instead")
        if field_name not in _FIELDS:
            raise InvalidInputError(
                f"columns maps unknown Track field {field_name!r}; choose from {', '.join(_FIELDS)}"
            )
        if not isinstance(column, str) or not column:
            raise InvalidInputError(
                f"columns[{field_name!r}] must be a column name, not {column!r}"
            )
    return mapping


def _check_metadata(metadata: Sequence[str] | Literal["rest"]) -> list[str] | None:
    """``None`` for "rest", else the list of column names."""
    if isinstance(metadata, str):
        if metadata == "rest":
            return None
        raise InvalidInputError(
            f"metadata must be 'rest' or a list of column names, not the string {metadata!r}"
        )
    names = list(metadata)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"metadata names columns by string, not {name!r}")
    return names


def _plan(
    available: Collection[str], mapping: Mapping[str, str], wanted: list[str] | None
) -> tuple[dict[str, str], list[str]]:
    """Which column feeds each Track field, and which columns go to metadata."""
    fields: dict[str, str] = {}
    for field_name in _FIELDS:
        column = mapping.get(field_name)
        if column is not None:
            if column not in available:
                raise _RowError(f"no column {column!r} (mapped to {field_name!r})")
            fields[field_name] = column
        elif field_name in available:
            fields[field_name] = field_name
    if "id" not in fields:
        raise _RowError("no 'id' column; map one with columns={'id': '<column>'}")
    if wanted is None:
        used = set(fields.values())
        return fields, [name for name in available if name not in used]
    missing = [name for name in wanted if name not in available]
    if missing:
        raise _RowError(f"no column {missing[0]!r} (listed in metadata)")
    return fields, wanted


class _Builder:
    """Turns records into Tracks, checking ids are unique across the file."""

    def __init__(
        self,
        source: Path,
        base: Path,
        tag_separator: str,
        max_field_chars: int,
        *,
        text_values: bool = False,
    ):
        self.source = source
        self.base = base
        self.tag_separator = tag_separator
        self.max_field_chars = max_field_chars
        self.convert: Callable[[Any], JsonValue] = _csv_json if text_values else _json_value
        self.seen: dict[str, str] = {}

    def error(self, where: str, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{self.source}, {where}: {problem}")

    def build(
        self, record: Record, fields: Mapping[str, str], meta_columns: Sequence[str], where: str
    ) -> Track:
        try:
            self._check_sizes(record, [*fields.values(), *meta_columns])
            track = self._build(record, fields, meta_columns)
        except _RowError as exc:
            raise self.error(where, str(exc)) from None
        except RecursionError:
            raise self.error(where, "a value is nested too deeply") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'track'}: {e['msg']}" for e in exc.errors()
            )
            raise self.error(where, problems) from None
        first = self.seen.get(track.id)
        if first is not None:
            raise self.error(where, f"duplicate id {track.id!r} (first at {first})")
        self.seen[track.id] = where
        return track

    def _check_sizes(self, record: Record, columns: Iterable[str]) -> None:
        limit = self.max_field_chars
        for column in dict.fromkeys(columns):
            value = record[column]
            if isinstance(value, (list, tuple)):
                size = sum(len(item) for item in value if isinstance(item, (str, bytes)))
            else:
                size = len(value) if isinstance(value, (str, bytes)) else 0
            if size > limit:
                raise _RowError(
                    f"column {column!r} has {size:,} characters, more than max_field_chars "
                    f"({limit:,})"
                )

    def _build(self, record: Record, fields: Mapping[str, str], meta: Sequence[str]) -> Track:
        text: dict[str, str | None] = {}
        for field_name in ("id", *_TEXT_FIELDS):
            column = fields.get(field_name)
            text[field_name] = None if column is None else _text(record[column], field_name)
        track_id = text["id"]
        if track_id is None:
            raise _RowError(f"missing id (column {fields['id']!r} is empty)")
        audio = text["audio"]
        if audio is not None and not _URL.match(audio):
            audio_path = Path(audio).expanduser()
            if not audio_path.is_absolute():
                audio = str(self.base / audio_path)
        tags_column = fields.get("tags")
        tags = () if tags_column is None else _tags(record[tags_column], self.tag_separator)
        values: dict[str, JsonValue] = {}
        for name in meta:
            try:
                value = self.convert(record[name])
            except _NestingError:
                raise _RowError(
                    f"column {name!r} is nested more than {MAX_NESTING} levels deep"
                ) from None
            if name == "metadata" and isinstance(value, dict):
                values.update(value)
            else:
                values[name] = value
        return Track(
            id=track_id,
            title=text["title"],
            artist=text["artist"],
            album=text["album"],
            audio=audio,
            lyrics=text["lyrics"],
            description=text["description"],
            tags=tags,
            metadata=values,
        )


def _text(value: Any, field_name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        raise _RowError(f"{field_name} must be text, not the boolean {value}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    raise _RowError(f"{field_name} must be text, not {type(value).__name__} {value!r:.60}")


def _tags(value: Any, separator: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            items = _list_literal(stripped)
        else:
            items = stripped.split(separator)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _RowError(f"tags must be a list or a string, not {type(value).__name__}")
    tags: list[str] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _RowError(f"tags must be strings, found {type(item).__name__} {item!r:.60}")
        tag = str(item).strip()
        if tag:
            tags.append(tag)
    return tuple(tags)


def _list_literal(text: str) -> list[Any]:
    """A JSON or Python list literal, parsed safely (``ast.literal_eval`` evaluates nothing)."""
    try:
        parsed: Any = json.loads(text)
    except (ValueError, RecursionError):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise _RowError(f"tags look like a list but cannot be parsed: {text!r:.80}") from None
    if not isinstance(parsed, (list, tuple)):
        raise _RowError(f"tags look like a list but are a {type(parsed).__name__}: {text!r:.80}")
    return list(parsed)


def _json_value(value: Any, depth: int = 0) -> JsonValue:
    """A JSON-compatible copy of a JSON or Arrow value; NaN and infinities become None."""
    if depth > MAX_NESTING:
        raise _NestingError
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(key): _json_value(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        # Arrow map columns arrive as lists of (key, value) tuples.
        return [_json_value(item, depth + 1) for item in value]
    return str(value)


def _csv_json(value: Any) -> JsonValue:
    """A CSV cell as a JSON value: empty -> None, integers, decimals, true/false, else the text."""
    if not isinstance(value, str):
        return _json_value(value)
    text = value.strip()
    if not text:
        return None
    if _CSV_INT.match(text):
        return int(text)
    if _CSV_FLOAT.match(text):
        number = float(text)
        return number if math.isfinite(number) else None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "nan":
        return None
    return value


def _read_csv(
    builder: _Builder, mapping: dict[str, str], wanted: list[str] | None, delimiter: str
) -> Iterator[Track]:
    source = builder.source
    if csv.field_size_limit() <= builder.max_field_chars:  # so that our limit is the one met
        csv.field_size_limit(builder.max_field_chars + 1)
    with source.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        fields: dict[str, str] = {}
        meta: list[str] = []
        while True:
            start = reader.line_num + 1
            where = f"line {start}"
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise _undecodable(builder, exc) from None
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    raise builder.error(
                        where,
                        f"a field has more characters than max_field_chars "
                        f"({builder.max_field_chars:,})",
                    ) from None
                raise builder.error(where, f"cannot parse the row: {exc}") from None
            if not row:  # a blank line
                continue
            if header is None:
                header = row
                duplicated = sorted({name for name in header if header.count(name) > 1})
                if duplicated:
                    raise builder.error(where, f"the header repeats column {duplicated[0]!r}")
                try:
                    fields, meta = _plan(header, mapping, wanted)
                except _RowError as exc:
                    raise builder.error(where, str(exc)) from None
                continue
            if len(row) != len(header):
                raise builder.error(
                    where, f"cannot parse the row: {len(row)} fields, the header has {len(header)}"
                )
            yield builder.build(dict(zip(header, row, strict=True)), fields, meta, where)


def _read_jsonl(
    builder: _Builder, mapping: dict[str, str], wanted: list[str] | None
) -> Iterator[Track]:
    with builder.source.open(encoding="utf-8-sig") as handle:
        number = 0
        while True:
            number += 1
            where = f"line {number}"
            try:
                line = handle.readline()
            except UnicodeDecodeError as exc:
                raise _undecodable(builder, exc) from None
            if not line:
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise builder.error(where, f"cannot parse the line as JSON: {exc}") from None
            except RecursionError:
                raise builder.error(where, "cannot parse the line: nested too deeply") from None
            if not isinstance(record, dict):
                kind = type(record).__name__
                raise builder.error(where, f"expected a JSON object, found a {kind}")
            try:
                fields, meta = _plan(record, mapping, wanted)
            except _RowError as exc:
                raise builder.error(where, str(exc)) from None
            yield builder.build(record, fields, meta, where)


def _undecodable(builder: _Builder, exc: UnicodeDecodeError) -> InvalidInputError:
    """The error for text that is not UTF-8, naming the line it is on.

    Text files are decoded in blocks, so the line being read when decoding fails may come
    before the bad bytes; the file is scanned again, line by line, to find them.
    """
    number = 0
    with builder.source.open("rb") as handle:
        for raw in handle:
            pieces = raw.replace(b"\r\n", b"\n").split(b"\r")  # \r alone ends a line too
            for piece in pieces:
                number += 1
                try:
                    piece.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as bad:
                    byte = piece[bad.start : bad.start + 1].hex()
                    return builder.error(
                        f"line {number}",
                        f"not UTF-8 text (byte 0x{byte} at character {bad.start + 1}); "
                        "save the file as UTF-8",
                    )
    return builder.error("line 1", f"not UTF-8 text ({exc}); save the file as UTF-8")


def _import_pyarrow_parquet() -> Any:
    return import_optional("pyarrow.parquet", purpose="reading Parquet", extra="parquet")


def _read_parquet(
    pq: Any, builder: _Builder, mapping: dict[str, str], wanted: list[str] | None
) -> Iterator[Track]:
    source = builder.source
    try:
        parquet_file = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise builder.error("row 1", f"not a readable Parquet file: {exc}") from None
    with parquet_file:
        names: list[str] = list(parquet_file.schema_arrow.names)
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise builder.error("row 1", f"the schema repeats column {duplicated[0]!r}")
        try:
            fields, meta = _plan(names, mapping, wanted)
        except _RowError as exc:
            raise builder.error("row 1", str(exc)) from None
        needed = set(fields.values()) | set(meta)
        read = [name for name in names if name in needed]
        row = 0
        batches = parquet_file.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=read)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # a corrupt row group
                raise builder.error(f"row {row + 1}", f"cannot read the rows: {exc}") from None
            for record in batch.to_pylist():
                row += 1
                yield builder.build(record, fields, meta, f"row {row}")


# -- scan_music_folder ------------------------------------------------------------------------


def scan_music_folder(
    folder: str | os.PathLike[str],
    *,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
    recursive: bool = True,
    max_sidecar_bytes: int = MAX_SIDECAR_BYTES,
) -> Iterator[Track]:
    """One track per audio file under ``folder``, lazily, in sorted order of relative path.

    * ``id``: the path relative to ``folder``, with ``/`` separators; ``audio``: the absolute path.
    * ``title``, ``artist`` (else the album artist), ``album`` and ``tags`` (the genres) come from
      the embedded tags, read with mutagen's easy interface (raw ID3 frames for WAV and AIFF);
      ``title`` falls back to the file's stem.
    * ``lyrics``: embedded lyrics (ID3 ``USLT`` or ``TXXX:LYRICS``, Vorbis ``LYRICS`` or
      ``UNSYNCEDLYRICS``, MP4 ``©lyr``), else a sidecar file with the same stem: ``.lrc``, with
      its ``[mm:ss.xx]`` timestamps and ``[ar:...]``-style header lines stripped, then ``.txt``.
      A sidecar is read only if it is a regular file (not a FIFO, device or socket) of at most
      ``max_sidecar_bytes`` (default :data:`MAX_SIDECAR_BYTES`, 1 MB) whose symbolic links, if
      any, resolve inside ``folder``; any other is skipped with a logged warning.
    * Files mutagen cannot read (corrupt, or not really audio) still yield a track, without tags;
      a warning is logged.

    ``extensions`` match case-insensitively; hidden files and folders (names starting with ``.``,
    such as macOS ``._song.mp3``) are skipped, and symbolic links to folders are not followed.
    Raises :class:`MissingFileError` if ``folder`` does not exist and
    :class:`MissingDependencyError` without mutagen (``newwave-music[tags]``).
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise MissingFileError(f"music folder not found: {root}")
    if not root.is_dir():
        raise InvalidInputError(f"{root} is a file, not a folder")
    wanted = _check_extensions(extensions)
    max_sidecar_bytes = positive_int(max_sidecar_bytes, "max_sidecar_bytes")
    mutagen = import_optional("mutagen", purpose="reading tags from music files", extra="tags")
    return _scan(mutagen, root.resolve(), wanted, recursive, max_sidecar_bytes)


def _check_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    items = [extensions] if isinstance(extensions, str) else list(extensions)
    normalized: list[str] = []
    for ext in items:
        if not isinstance(ext, str) or not ext.strip(". "):
            raise InvalidInputError(f"extensions must be like '.mp3', not {ext!r}")
        ext = ext.strip().lower()
        normalized.append(ext if ext.startswith(".") else f".{ext}")
    if not normalized:
        raise InvalidInputError("extensions is empty")
    return tuple(normalized)


def _scan(
    mutagen: Any, root: Path, extensions: tuple[str, ...], recursive: bool, max_sidecar_bytes: int
) -> Iterator[Track]:
    found: list[tuple[str, Path, dict[str, str]]] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if recursive else []
        here = Path(directory)
        siblings = {name.lower(): name for name in files}
        for name in files:
            if name.startswith(".") or not name.lower().endswith(extensions):
                continue
            path = here / name
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path, siblings))
    found.sort(key=lambda item: item[0])
    for track_id, path, siblings in found:
        yield _music_track(mutagen, track_id, path, siblings, root, max_sidecar_bytes)


def _music_track(
    mutagen: Any,
    track_id: str,
    path: Path,
    siblings: Mapping[str, str],
    root: Path,
    max_sidecar_bytes: int,
) -> Track:
    tags = _embedded_tags(mutagen, path)
    lyrics = tags.pop("lyrics", None) or _sidecar_lyrics(path, siblings, root, max_sidecar_bytes)
    genres = tags.pop("genre", "")
    return Track(
        id=track_id,
        title=tags.get("title") or path.stem,
        artist=tags.get("artist") or tags.get("albumartist"),
        album=tags.get("album"),
        audio=str(path),
        lyrics=_clean_lyrics(lyrics) if lyrics else None,
        tags=tuple(dict.fromkeys(g for g in genres.split("\0") if g)),
    )


def _texts(value: Any) -> list[str]:
    """Non-blank strings of a tag value (a list, a frame, a string), stripped."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = list(getattr(value, "text", [str(value)]))
    return [str(item).strip() for item in items if item is not None and str(item).strip()]


def _embedded_tags(mutagen: Any, path: Path) -> dict[str, str]:
    """title, artist, albumartist, album, lyrics (first values) and genre (``\\0``-joined)."""
    try:
        audio = mutagen.File(path, easy=True)
        tags = None if audio is None else audio.tags
        if tags is None:
            return {}
        from mutagen.id3 import ID3

        if isinstance(tags, ID3):  # WAV and AIFF: raw frames, there is no easy variant
            return _id3_fields(tags)
        found: dict[str, list[str]] = {}
        for key in ("title", "artist", "albumartist", "album", "genre", "lyrics", "unsyncedlyrics"):
            try:
                found[key] = _texts(tags[key]) if key in tags else []
            except (KeyError, ValueError):  # keys EasyID3 and EasyMP4 do not know
                found[key] = []
        out = {key: values[0] for key, values in found.items() if values and key != "genre"}
        if found["genre"]:
            out["genre"] = "\0".join(found["genre"])
        if "lyrics" not in out and "unsyncedlyrics" in out:
            out["lyrics"] = out["unsyncedlyrics"]
        out.pop("unsyncedlyrics", None)
        if "lyrics" not in out:
            lyrics = _raw_lyrics(mutagen, path, audio)
            if lyrics:
                out["lyrics"] = lyrics
        return out
    except Exception as exc:  # mutagen raises many kinds of error on damaged files
        logger.warning("cannot read tags of %s, indexing it without: %s", path, exc)
        return {}


def _id3_fields(tags: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, frame_id in (("title", "TIT2"), ("artist", "TPE1"), ("albumartist", "TPE2")):
        values = [text for frame in tags.getall(frame_id) for text in _texts(frame)]
        if values:
            out[key] = values[0]
    albums = [text for frame in tags.getall("TALB") for text in _texts(frame)]
    if albums:
        out["album"] = albums[0]
    genres = [g.strip() for frame in tags.getall("TCON") for g in frame.genres if g.strip()]
    if genres:
        out["genre"] = "\0".join(genres)
    lyrics = _id3_lyrics(tags)
    if lyrics:
        out["lyrics"] = lyrics
    return out


def _id3_lyrics(tags: Any) -> str | None:
    for frame in tags.getall("USLT"):
        if str(frame.text).strip():
            return str(frame.text)
    for frame in tags.getall("TXXX"):
        if frame.desc.strip().upper() in ("LYRICS", "UNSYNCEDLYRICS", "UNSYNCED LYRICS"):
            texts = _texts(frame)
            if texts:
                return texts[0]
    return None


def _raw_lyrics(mutagen: Any, path: Path, easy: Any) -> str | None:
    """Lyrics the easy interfaces hide: ID3 USLT in MP3, ``©lyr`` in MP4."""
    from mutagen.easyid3 import EasyID3
    from mutagen.easymp4 import EasyMP4Tags

    if isinstance(easy.tags, EasyID3):
        id3: Any = importlib.import_module("mutagen.id3")
        try:
            return _id3_lyrics(id3.ID3(path))
        except id3.ID3NoHeaderError:
            return None
    if isinstance(easy.tags, EasyMP4Tags):
        raw = mutagen.File(path)
        texts = _texts(raw.tags.get("\xa9lyr")) if raw is not None and raw.tags else []
        return texts[0] if texts else None
    return None


def _sidecar_lyrics(
    path: Path, siblings: Mapping[str, str], root: Path, max_bytes: int
) -> str | None:
    for suffix in (".lrc", ".txt"):
        name = siblings.get(f"{path.stem}{suffix}".lower())
        if name is None:
            continue
        sidecar = path.with_name(name)
        try:
            text = _decode(_read_sidecar(sidecar, root, max_bytes))
        except (OSError, RuntimeError, _SidecarError) as exc:  # RuntimeError: a link loop
            logger.warning("skipping lyrics file %s: %s", sidecar, exc)
            continue
        if text.strip():
            return text
    return None


class _SidecarError(Exception):
    """A sidecar file that is not read: not a regular file, outside the folder, too large."""


def _read_sidecar(sidecar: Path, root: Path, max_bytes: int) -> bytes:
    """The bytes of a sidecar file: a regular file inside ``root``, of at most ``max_bytes``.

    Symbolic links are resolved and must stay inside ``root``. The type is checked before
    opening (opening a FIFO would block) and again on the open file, which is opened
    non-blocking and without following a link, so a file swapped in between changes nothing.
    """
    real = sidecar.resolve(strict=True)
    if real != root and root not in real.parents:
        raise _SidecarError(f"it links to {real}, outside the music folder")
    info = real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise _SidecarError("not a regular file")
    if info.st_size > max_bytes:
        raise _SidecarError(f"{info.st_size} bytes, more than max_sidecar_bytes ({max_bytes})")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(real, flags | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise _SidecarError("not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _SidecarError(f"more than max_sidecar_bytes ({max_bytes}) bytes")
    return data


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM, else Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _clean_lyrics(text: str) -> str | None:
    """Drop LRC header lines (``[ar:...]``) and timestamps; keep stanza breaks."""
    lines = [
        _LRC_TIME.sub("", line).strip() for line in text.splitlines() if not _LRC_HEADER.match(line)
    ]
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return cleaned or None
