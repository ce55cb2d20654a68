"""Catalogue names looked up per request in a database, at any catalogue size.

An :class:`~newwave.query.entities.EntityIndex` holds every name in memory; a catalogue of a
million tracks has too many. :class:`CatalogueNames` asks a :class:`NameStore` (a library's
database: :mod:`newwave.store.names`) instead: the request's word spans, up to the longest
name's length, are looked up by their normalised key in one indexed query; the names found,
with the shipped well-known artists of the same spans, make a small ``EntityIndex`` that reads
the request by the rules of :mod:`newwave.query.entities`; and the styles of the catalogue names
it finds (the tags most common among their tracks) are counted by the database for those names
only. A request is read as an ``EntityIndex`` of the whole catalogue would read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from newwave.query.base import Entity
from newwave.query.entities import EntityIndex, name_keys, shipped_artist_styles
from newwave.query.vocabulary import Vocabulary, form_key, tokenize

if TYPE_CHECKING:
    from newwave.types import Track

__all__ = ["MAX_STYLES", "CatalogueNames", "NameStore"]

MAX_STYLES = 5
"""A catalogue name's styles: at most this many tags."""


class NameStore(Protocol):
    """Where :class:`CatalogueNames` looks names up (a :class:`~newwave.store.LibraryStore`)."""

    def longest_name(self) -> int:
        """The most tokens a name's key has (at least the true maximum)."""

    def names_of_keys(self, keys: Sequence[str]) -> list[tuple[str, str, str]]:
        """``(key, field, name)`` of the names with one of ``keys`` (tokens joined by spaces),
        artists first, then titles, then albums, each in catalogue order."""

    def name_styles(self, key: str, field: str, name: str, limit: int) -> list[str]:
        """The tags most common among the name's tracks, casefolded, most common first."""


class CatalogueNames:
    """A catalogue's names, looked up in ``store`` for each request (see the module doc).

    Iterating it reads the catalogue's tracks through ``tracks`` (a rewriter that learns names
    by reading every track, :meth:`~newwave.query.base.QueryRewriter.fit_names`, gets them).
    """

    def __init__(self, store: NameStore, tracks: Callable[[], Iterable[Track]] = tuple):
        self.store = store
        self._tracks = tracks

    def __iter__(self) -> Iterator[Track]:
        return iter(self._tracks())

    def find(self, query: str, vocabulary: Vocabulary) -> list[Entity]:
        """The names ``query`` mentions, as :meth:`EntityIndex.find` finds them."""
        norms = [token.norm for token in tokenize(query)]
        longest = self.store.longest_name()
        spans = {
            " ".join(norms[start:end])
            for start in range(len(norms))
            for end in range(start + 1, min(len(norms), start + longest) + 1)
        }
        found = self.store.names_of_keys(sorted(spans)) if spans else []
        keys = {(field, name): key for key, field, name in found}
        replaced = {form_key(name) for key, field, name in found if field == "artist"}
        names: dict[str, dict[str, list[str]]] = {"artist": {}}
        shipped = _shipped_by_key()
        for name in sorted({n for span in spans for n in shipped.get(span, ())}, key=_shipped_at):
            if form_key(name) not in replaced:  # a catalogue name replaces a shipped one
                names["artist"][name] = list(shipped_artist_styles()[name])
        for field, name in keys:
            names.setdefault(field, {})[name] = []
        in_catalogue: dict[str, list[str]] = {}
        for field, name in keys:
            in_catalogue.setdefault(field, []).append(name)
        entities = EntityIndex(names, in_catalogue).find(query, vocabulary)
        styles: dict[tuple[str, str], tuple[str, ...]] = {}
        for e in entities:
            if e.in_catalogue and (e.field, e.name) not in styles:
                key = keys[e.field, e.name]
                styles[e.field, e.name] = tuple(
                    self.store.name_styles(key, e.field, e.name, MAX_STYLES)
                )
        return [
            replace(e, styles=styles[e.field, e.name]) if e.in_catalogue else e for e in entities
        ]


@lru_cache(maxsize=1)
def _shipped_by_key() -> dict[str, tuple[str, ...]]:
    """The shipped well-known artists by key (and by key without a leading "the")."""
    by_key: dict[str, list[str]] = {}
    for name in shipped_artist_styles():
        for one in name_keys(name):
            by_key.setdefault(" ".join(one), []).append(name)
    return {key: tuple(names) for key, names in by_key.items()}


@lru_cache(maxsize=1)
def _shipped_order() -> dict[str, int]:
    return {name: i for i, name in enumerate(shipped_artist_styles())}


def _shipped_at(name: str) -> int:
    return _shipped_order()[name]
