"""Names in a query as a filter: "songs by Nina Simone" keeps that artist's tracks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from newwave.query.base import ParsedQuery

if TYPE_CHECKING:
    from newwave.store.library import Library
    from newwave.types import Track

__all__ = ["NAME_SCAN_LIMIT", "catalogue_names", "named_filter"]

#: The largest catalogue whose tracks a rewriter that learns names by reading every track is
#: given (:meth:`~newwave.query.base.QueryRewriter.fit_names`: about 60 µs and 2.5 KB a track,
#: each time the catalogue changes). The ``rules`` rewriter looks names up in the library's
#: database instead, at any size, unless the database's names cannot be brought up to date.
NAME_SCAN_LIMIT = 10_000


def catalogue_names(library: Library) -> Iterable[Track]:
    """What a rewriter's ``fit_names`` is given: the library's names to look up per request
    (:class:`~newwave.query.catalogue_names.CatalogueNames`, iterating the tracks up to
    :data:`NAME_SCAN_LIMIT`), or, if its names table is stale and another process is writing
    the library, its tracks up to :data:`NAME_SCAN_LIMIT` (none above)."""
    from newwave.query.catalogue_names import CatalogueNames
    from newwave.store.migrate import add_catalogue_names

    store = library.store

    def tracks() -> Iterable[Track]:
        return store.iter_tracks() if store.count() <= NAME_SCAN_LIMIT else ()

    if add_catalogue_names(library):
        return CatalogueNames(store, tracks)
    return tracks()


def named_filter(
    parsed: ParsedQuery | None, where: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """``where`` and, for each catalogue name the query asks for by itself, its field.

    An entity with relation ``"by"`` that the catalogue has ("songs by X", "the album Y") keeps
    the tracks whose ``artist``, ``title`` or ``album`` is that name (several names of a field:
    any of them). A field ``where`` already filters is left as ``where`` says.
    """
    if parsed is None:
        return where
    named: dict[str, list[str]] = {}
    for entity in parsed.entities:
        if entity.relation == "by" and entity.in_catalogue:
            named.setdefault(entity.field, []).append(entity.name)
    extra = {f: names for f, names in named.items() if where is None or f not in where}
    if not extra:
        return where
    return {**(where or {}), **extra}
