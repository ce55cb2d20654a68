"""Names in requests: the catalogue's artists, titles and albums, and well-known artists.

"songs by Nina Simone" asks for that artist's tracks, "something that sounds like Daft Punk" for
tracks like hers, and neither asks for a genre ("punk"). An :class:`EntityIndex` holds the names
to look for: the catalogue's (:meth:`EntityIndex.from_tracks`, with the tags most common among
each name's tracks as its *styles*) and the shipped table of well-known artists,
``newwave/data/artist_styles.json`` (an artist -> the vocabulary values their music is commonly
described by, hand-written). :meth:`EntityIndex.find` returns the
:class:`~newwave.query.base.Entity` mentions of a request.

Names match whole words, case- and accent-insensitively ("beyonce" = "Beyoncé"; a leading "the"
may be left out). An artist of several words is found anywhere; a one-word artist only when
written capitalised or after a lead-in ("like", "by"); a title or album only after a lead-in
("the song", "called", "from the album", "like"). The lead-in says the relation: "by",
"songs by", "from", "performed by" -> ``"by"`` (those tracks); "like", "sounds like", "songs
like", "similar to", "in the style of", "reminiscent of" -> ``"like"`` (tracks like them); a name
without one is an artist's own tracks (``"by"``). After a "like" lead-in, capitalised words
that are not all vocabulary words are a name too, one the index does not know ("sounds like
Ghost Pepper Trio"): no genre is read from it.

The index is plain data (:meth:`EntityIndex.to_dict`) so that a fitted rewriter can be stored.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from newwave.errors import InvalidInputError
from newwave.query.base import Entity
from newwave.query.vocabulary import PhraseTable, Token, Vocabulary, form_key, tokenize

if TYPE_CHECKING:
    from newwave.types import Track

__all__ = ["ARTIST_STYLES", "FIELDS", "EntityIndex", "name_keys", "shipped_artist_styles"]

ARTIST_STYLES = "data/artist_styles.json"
"""The shipped table of well-known artists, relative to the ``newwave`` package."""

FIELDS = ("artist", "title", "album")
"""The track fields whose names are looked for."""

_FORMAT = "newwave-artist-styles"
_MAX_STYLES = 5
_LEADS: dict[str, str] = {
    **dict.fromkeys(
        "like | sounds like | sound like | that sounds like | songs like | song like | "
        "music like | tracks like | stuff like | something like | anything like | "
        "similar to | in the style of | in the vein of | reminiscent of | a la | inspired by"
        .split(" | "),
        "like",
    ),
    **dict.fromkeys(
        "by | songs by | song by | music by | tracks by | anything by | something by | "
        "performed by | from | songs from | the song | the track | called | titled | "
        "from the album | the album | album"
        .split(" | "),
        "by",
    ),
}  # fmt: skip
_LEAD_TABLE = PhraseTable({form_key(lead): relation for lead, relation in _LEADS.items()})
_NAME_JOINERS = frozenset({"of", "the", "and", "&", "de", "la", "van", "von", "y"})
_COMMON = frozenset(
    "a an the of for to in on at by with and or but me my i you we it is are be this that some "
    "any something song songs track tracks music tune tunes like please".split()
)


def name_keys(name: str) -> list[tuple[str, ...]]:
    """The lookup keys of ``name``: its :func:`form_key`, and that key without a leading "the"
    ("The Beatles" is found as "the beatles" and as "beatles"); none for a name without words."""
    key = form_key(name)
    if not any(token[0].isalnum() for token in key):
        return []
    return [key] + ([key[1:]] if key[0] == "the" and len(key) > 1 else [])


class EntityIndex:
    """Names to find in requests: ``names[field][name]`` is the list of the name's styles.

    ``in_catalogue[field]`` lists the names the catalogue has (the others come from the shipped
    table of well-known artists).
    """

    def __init__(
        self,
        names: Mapping[str, Mapping[str, Sequence[str]]],
        in_catalogue: Mapping[str, Iterable[str]] | None = None,
    ):
        self.names: dict[str, dict[str, list[str]]] = {}
        for field, by_name in names.items():
            if field not in FIELDS:
                raise InvalidInputError(f"entity field {field!r} is not one of {FIELDS}")
            self.names[field] = {
                str(name): [str(style) for style in styles] for name, styles in by_name.items()
            }
        self.in_catalogue = {f: sorted(set(v)) for f, v in (in_catalogue or {}).items()}
        table: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for field, by_name in self.names.items():
            for name in by_name:
                for one in name_keys(name):
                    table.setdefault(one, []).append((field, name))
        self._table = PhraseTable(table)
        self._catalogue = {(f, n) for f, ns in self.in_catalogue.items() for n in ns}

    @classmethod
    def shipped(cls) -> EntityIndex:
        """The well-known artists of the shipped table, none of them in the catalogue."""
        return _shipped_index()

    @classmethod
    def from_tracks(cls, tracks: Iterable[Track], *, known: bool = True) -> EntityIndex:
        """The names of ``tracks`` (with the shipped well-known artists if ``known``).

        A name's styles are the (at most five) tags most common among its tracks (by the number
        of its tracks that have them); a catalogue name replaces a shipped artist of the same
        spelling.
        """
        tags: dict[tuple[str, str], Counter[str]] = {}
        for track in tracks:
            for field in FIELDS:
                name = getattr(track, field)
                if isinstance(name, str) and name.strip():
                    counts = tags.setdefault((field, " ".join(name.split())), Counter())
                    tags_of_track = (" ".join(t.casefold().split()) for t in track.tags)
                    counts.update(dict.fromkeys((t for t in tags_of_track if t), 1))
        names: dict[str, dict[str, list[str]]] = {}
        if known:
            names["artist"] = {n: list(s) for n, s in shipped_artist_styles().items()}
        shipped_keys = {form_key(n): n for n in names.get("artist", {})}
        for (field, name), counts in tags.items():
            by_name = names.setdefault(field, {})
            if field == "artist" and form_key(name) in shipped_keys:
                by_name.pop(shipped_keys[form_key(name)], None)
            by_name[name] = [tag for tag, _ in counts.most_common(_MAX_STYLES)]
        in_catalogue: dict[str, list[str]] = {}
        for field, name in tags:
            in_catalogue.setdefault(field, []).append(name)
        return cls(names, in_catalogue)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able) that :meth:`from_dict` reads back."""
        return {"names": self.names, "in_catalogue": self.in_catalogue}

    @classmethod
    def from_dict(cls, data: Any) -> EntityIndex:
        """The index :meth:`to_dict` wrote."""
        if not isinstance(data, Mapping) or not isinstance(data.get("names"), Mapping):
            raise InvalidInputError("an entity index needs a 'names' mapping")
        return cls(data["names"], data.get("in_catalogue") or {})

    def __len__(self) -> int:
        return sum(len(by_name) for by_name in self.names.values())

    def find(self, query: str, vocabulary: Vocabulary) -> list[Entity]:
        """The names ``query`` mentions, left to right, by the rules of the module doc."""
        tokens = tokenize(query)
        norms = [t.norm for t in tokens]
        found: list[Entity] = []
        i = 0
        while i < len(tokens):
            lead = _LEAD_TABLE.match(norms, i)
            after = i + lead[0] if lead else i
            name = self._name_at(query, tokens, norms, after, lead is not None, vocabulary)
            if name is None and lead is not None and lead[1] == "like":
                name = _unknown_name(query, tokens, after, vocabulary)
            if name is None:
                i += 1
                continue
            end, field, value = name
            relation = lead[1] if lead else "by"
            if field != "artist" and lead is None:
                i += 1
                continue
            start = tokens[i].start
            styles = tuple(self.names.get(field, {}).get(value, ()))
            found.append(
                Entity(
                    field=field,
                    name=value,
                    relation=relation,
                    span=(start, tokens[end - 1].end),
                    name_span=(tokens[after].start, tokens[end - 1].end),
                    in_catalogue=(field, value) in self._catalogue,
                    styles=styles,
                )
            )
            i = end
        return found

    def _name_at(
        self,
        query: str,
        tokens: list[Token],
        norms: list[str],
        start: int,
        after_lead: bool,
        vocabulary: Vocabulary,
    ) -> tuple[int, str, str] | None:
        """(end token, field, name) of the indexed name at ``start``."""
        if start >= len(tokens):
            return None
        for skip in (0, 1) if norms[start] == "the" else (0,):
            match = self._table.match(norms, start + skip)
            if match is None:
                continue
            length, owners = match
            end = start + skip + length
            first = tokens[start + skip]
            if length == 1 and not after_lead and not query[first.start].isupper():
                continue
            if length == 1 and norms[start + skip] in _COMMON:
                continue
            capitalised = query[first.start].isupper()
            if not capitalised and _all_vocabulary(norms[start + skip : end], vocabulary):
                continue  # "like jazz" is the genre, whatever the catalogue calls "Jazz"
            fields = [field for field, _ in owners]
            if not after_lead and "artist" not in fields:
                continue
            field, name = next(((f, n) for f, n in owners if f == "artist"), owners[0])
            return end, field, name
        return None


def _unknown_name(
    query: str, tokens: list[Token], start: int, vocabulary: Vocabulary
) -> tuple[int, str, str] | None:
    """A run of capitalised words at ``start`` that are not all vocabulary or common words."""
    end = start
    while end < len(tokens):
        token = tokens[end]
        text = query[token.start : token.end]
        if (
            text[0].isupper()
            or (text[0].isdigit() and end > start)
            or (
                end > start
                and token.norm in _NAME_JOINERS
                and end + 1 < len(tokens)
                and query[tokens[end + 1].start].isupper()
            )
        ):
            end += 1
        else:
            break
    if end == start:
        return None
    norms = [t.norm for t in tokens]
    if _all_vocabulary(norms[start:end], vocabulary):
        return None
    for i in range(start, end):  # "like Indian classical music": a genre, not a name
        found = vocabulary.match(norms, i)
        if found is not None and i + found[0] > end:
            return None
    return end, "artist", query[tokens[start].start : tokens[end - 1].end]


def _all_vocabulary(norms: Sequence[str], vocabulary: Vocabulary) -> bool:
    """Whether every word of ``norms`` is a common word or inside a vocabulary form."""
    covered: set[int] = set()
    for i in range(len(norms)):
        found = vocabulary.match(norms, i)
        if found is not None:
            covered.update(range(i, i + found[0]))
    return all(
        i in covered or n in _COMMON or n in _NAME_JOINERS or not n[0].isalnum()
        for i, n in enumerate(norms)
    )


@lru_cache(maxsize=1)
def _shipped_index() -> EntityIndex:
    return EntityIndex({"artist": shipped_artist_styles()})


@lru_cache(maxsize=1)
def shipped_artist_styles() -> dict[str, tuple[str, ...]]:
    """The shipped table of well-known artists: name -> vocabulary values."""
    text = resources.files("newwave").joinpath(ARTIST_STYLES).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
        raise InvalidInputError(f"{ARTIST_STYLES}: not a {_FORMAT!r} document")
    return {name: tuple(styles) for name, styles in data["artists"].items()}
