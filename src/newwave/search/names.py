"""Names in a query as a filter: "songs by Nina Simone" keeps that artist's tracks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from newwave.query.base import ParsedQuery

__all__ = ["NAME_SCAN_LIMIT", "named_filter"]

#: The largest catalogue whose artist, title and album names the rewriter learns. Learning
#: reads every track (about 60 µs and 2.5 KB each) each time the catalogue changes; a larger
#: catalogue's requests are read with the shipped well-known artists only.
NAME_SCAN_LIMIT = 10_000


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
