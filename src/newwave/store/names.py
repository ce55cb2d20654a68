"""The catalogue's names in the library database: artists, titles and albums by their lookup key.

The ``track_names`` table holds one row per track and name field (``artist``, ``title``,
``album``) and per *key* of the name: its words normalised as the request reader reads them
(:func:`newwave.query.vocabulary.form_key`: case, accents and apostrophes ignored), joined by
spaces, and, for a name that starts with "the", the key without it ("The Beatles" is found as
"the beatles" and as "beatles")::

    track_names(track, field, name, key)   name: the name as the track spells it, spaces collapsed

It is derived data, rebuilt from ``track_values`` (:meth:`LibraryStore.rebuild_names`) and kept
in step with the tracks in the transaction that writes or removes them. Three meta values go
with it: ``names:keys``, the fingerprint of the normalisation that made its keys (a newwave whose
normalisation differs rebuilds the table); ``names:tokens``, the most tokens a key has (an upper
bound: requests are looked up by their spans up to that length); and ``names:seq``, the
transaction the table reflects. A version of newwave that does not keep the table moves ``seq``
without it, so the table is then stale until rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

__all__ = [
    "FIELDS",
    "NAMES_INDEXES",
    "NAMES_SCHEMA",
    "NAMES_TABLE",
    "STYLE_TRACKS",
    "NameRow",
    "add_name_functions",
    "key_fingerprint",
    "name_rows",
    "rows_of_values",
]

FIELDS = ("artist", "title", "album")
"""The track fields whose names are kept, in the order the request reader prefers them."""

NAMES_TABLE = """
CREATE TABLE track_names (
    track INTEGER NOT NULL,
    field TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL
)"""
NAMES_INDEXES = (
    "CREATE INDEX track_names_key ON track_names (key, field, name, track)",
    "CREATE INDEX track_names_track ON track_names (track)",
)
NAMES_SCHEMA = ";\n".join([NAMES_TABLE, *NAMES_INDEXES]) + ";"
"""The table and its indexes, as one script."""

STYLE_TRACKS = 500
"""A name's styles are counted over its first tracks (those added first), at most this many: a
request that names an artist of 100,000 tracks reads 500 tracks' tags, not all of them."""

NameRow = tuple[int, str, str, str, int]
"""A row of ``track_names`` and its key's length in tokens: (track, field, name, key, tokens)."""

_VERSION = 1
_PROBE = "The Beyoncé & Sigur Rós: L'Été — AC/DC, Motörhead\u2019s hip-hop 1990s (Live) ÆØÅ ß"


def name_rows(track: int, field: str, text: str) -> list[NameRow]:
    """The rows of the name ``text`` of ``field`` (none for a blank name or one without words)."""
    name = " ".join(text.split())
    return [(track, field, name, key, tokens) for key, tokens in _keys(name)]


@lru_cache(maxsize=2**16)  # names repeat (an artist's tracks, an album's)
def _keys(name: str) -> tuple[tuple[str, int], ...]:
    """The keys of ``name`` with their lengths in tokens."""
    from newwave.query.entities import name_keys

    return tuple((" ".join(one), len(one)) for one in name_keys(name))


def rows_of_values(values: Iterable[tuple[int, str, str, str | None, object]]) -> list[NameRow]:
    """The name rows of ``track_values`` rows ``(track, key, kind, text, num)``."""
    return [
        row
        for track, key, kind, text, _ in values
        if key in FIELDS and kind == "s" and text is not None
        for row in name_rows(track, key, text)
    ]


def add_name_functions(connection: sqlite3.Connection) -> None:
    """Register on ``connection`` the SQL function the styles of a name use: ``tag_key(text)``,
    a tag casefolded, its spaces collapsed (as the request reader counts tags)."""
    connection.create_function("tag_key", 1, _tag_key, deterministic=True)


def _tag_key(text: Any) -> Any:
    return " ".join(text.casefold().split()) if isinstance(text, str) else text


@lru_cache(maxsize=1)
def key_fingerprint() -> str:
    """Names the normalisation of keys: it changes when :func:`form_key` reads names otherwise."""
    from newwave.query.vocabulary import form_key

    probe = json.dumps([_VERSION, form_key(_PROBE)], ensure_ascii=True)
    return hashlib.sha256(probe.encode()).hexdigest()[:16]
