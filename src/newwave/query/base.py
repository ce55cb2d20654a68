"""The query rewriter interface and what it produces: a :class:`ParsedQuery` of attributes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from newwave.errors import EmptyQueryError, InvalidInputError, PluginError
from newwave.query.negation import Parse, parse
from newwave.query.vocabulary import Concept, Vocabulary, form_key

if TYPE_CHECKING:
    from newwave.types import Track

__all__ = ["Attribute", "Entity", "ParsedQuery", "QueryRewriter", "track_text"]


@dataclass(frozen=True)
class Attribute:
    """One thing a query asks for, or asks to avoid.

    ``kind`` is ``"genre"``, ``"mood"``, ``"instrument"``, ``"vocals"``, ``"tempo"``, ``"era"``
    (the shipped vocabulary's kinds) or ``"tag"`` (a catalogue tag the vocabulary lacks);
    ``value`` is canonical ("female vocals", "1980s"). ``span`` is where the query says it
    (``None`` if the rewriter cannot tell); ``forms`` are the words that express it in a track's
    text, those of narrower values included ("snare" for drums).
    """

    kind: str
    value: str
    negated: bool = False
    span: tuple[int, int] | None = None
    forms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    """A name a query mentions: an artist, a track title or an album.

    ``relation`` is ``"by"`` (the query asks for these tracks: "songs by Nina Simone") or
    ``"like"`` (for tracks like them: "sounds like Daft Punk"). ``span`` covers the lead-in and
    the name ("sounds like Daft Punk"), ``name_span`` the name. ``in_catalogue``: the catalogue
    has tracks of this ``field`` and ``name`` (as the catalogue spells it). ``styles`` are the
    tags that describe the name's music: the commonest tags of its tracks in the catalogue, or
    those of a well-known artist (empty for a name nobody knows).
    """

    field: str
    name: str
    relation: str
    span: tuple[int, int]
    name_span: tuple[int, int]
    in_catalogue: bool = False
    styles: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedQuery:
    """A query rewritten for retrieval: the ``text`` to embed and the structured ``attributes``.

    ``text`` is the query without request boilerplate and negated phrases (what plain embedding
    search would otherwise read backwards); it is never empty. ``vocabulary`` is the one the
    attributes came from, used by :meth:`judge`; without one, the attributes' own ``forms`` are
    the vocabulary. ``entities`` are the names the query mentions (artists, titles, albums).
    """

    original: str
    text: str
    attributes: tuple[Attribute, ...] = ()
    rewriter: str = ""
    vocabulary: Vocabulary | None = field(default=None, repr=False, compare=False)
    entities: tuple[Entity, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.original, str) or not isinstance(self.text, str):
            raise InvalidInputError("ParsedQuery.original and .text must be strings")
        if not self.text.strip():
            raise EmptyQueryError("ParsedQuery.text is empty")
        for attribute in self.attributes:
            if not isinstance(attribute, Attribute):
                raise InvalidInputError(f"expected an Attribute, got {type(attribute).__name__}")
            span = attribute.span
            if span is not None and not 0 <= span[0] < span[1] <= len(self.original):
                raise InvalidInputError(f"{attribute} has a span outside the query")
        for entity in self.entities:
            if not isinstance(entity, Entity):
                raise InvalidInputError(f"expected an Entity, got {type(entity).__name__}")
            if entity.relation not in ("by", "like"):
                raise InvalidInputError(f"{entity}: relation must be 'by' or 'like'")
            for span in (entity.span, entity.name_span):
                if not 0 <= span[0] < span[1] <= len(self.original):
                    raise InvalidInputError(f"{entity} has a span outside the query")

    @property
    def wanted(self) -> tuple[Attribute, ...]:
        """The attributes the query asks for."""
        return tuple(a for a in self.attributes if not a.negated)

    @property
    def unwanted(self) -> tuple[Attribute, ...]:
        """The attributes the query asks to avoid."""
        return tuple(a for a in self.attributes if a.negated)

    def judge(self, text: str) -> tuple[tuple[Attribute, ...], tuple[Attribute, ...]]:
        """(wanted attributes the track ``text`` expresses, unwanted attributes it expresses).

        ``text`` (e.g. :func:`track_text`) is parsed like a query, negation included: a track
        expresses an attribute when it mentions it, or a narrower value ("snare" for drums),
        without negation, and does not negate it or a broader value anywhere ("no drums",
        "no percussion"). A track that says "no voices" expresses no vocals; one that says
        "instrumental" expresses only a voice it names in particular ("screaming male vocal
        over a muffled instrumental"), as "the instrumental" is also a song's backing track.
        """
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        if not self.attributes or not text.strip():
            return (), ()
        vocabulary = self._judging_vocabulary
        found = _parse_cached(text, vocabulary)
        present = {(m.kind, m.value) for m in found.mentions if not m.negated}
        absent = {(m.kind, m.value) for m in found.mentions if m.negated and not m.by_form}
        absent_by_form = {(m.kind, m.value) for m in found.mentions if m.by_form}
        wanted: list[Attribute] = []
        unwanted: list[Attribute] = []
        for attribute in self.attributes:
            kind, value = attribute.kind, attribute.value
            above = vocabulary.broader(kind, value)
            if any((kind, v) in absent for v in above):
                continue
            shown = {v for v in vocabulary.narrower(kind, value) if (kind, v) in present}
            for denied in (v for v in above if (kind, v) in absent_by_form):
                shown = {v for v in shown if v != denied and denied in vocabulary.broader(kind, v)}
            if shown:
                (unwanted if attribute.negated else wanted).append(attribute)
        return tuple(wanted), tuple(unwanted)

    @cached_property
    def _judging_vocabulary(self) -> Vocabulary:
        base = self.vocabulary
        missing: dict[tuple[str, str], list[str]] = {}
        for attribute in self.attributes:
            key = (attribute.kind, attribute.value)
            if base is None or key not in base:
                missing.setdefault(key, []).extend(attribute.forms or (attribute.value,))
        if base is not None and not missing:
            return base
        # The attributes' own forms, each claimed by the first attribute that lists it.
        claimed: set[tuple[str, ...]] = set()
        concepts = []
        for (kind, value), forms in missing.items():
            own = []
            for form in forms:
                tokens = form_key(form)
                if tokens and tokens not in claimed and (base is None or not base.has_form(form)):
                    claimed.add(tokens)
                    own.append(form)
            if own:
                concepts.append(Concept(kind, value, tuple(own)))
        if base is None:
            return Vocabulary(concepts)
        return base.extend(concepts)


@lru_cache(maxsize=4096)
def _parse_cached(text: str, vocabulary: Vocabulary) -> Parse:
    """Track texts are judged for many queries: parse each once (per vocabulary)."""
    return parse(text, vocabulary)


def track_text(track: Track) -> str:
    """The text a track is judged on: its description and its tags, one clause each."""
    parts = [track.description or "", *track.tags]
    return "; ".join(part.strip() for part in parts if part and part.strip())


class QueryRewriter(ABC):
    """Turns a free-text request into a :class:`ParsedQuery`.

    A subclass sets ``name`` and implements :meth:`_rewrite`; :meth:`rewrite` checks the query
    and the result. :meth:`fit` learns from the catalogue's tags (default: nothing), and
    :meth:`get_config` returns the JSON-able options that rebuild it.
    """

    name: ClassVar[str]

    def fit(self, tags: Iterable[str]) -> None:  # noqa: B027 (optional; most rewriters learn nothing)
        """Learn the catalogue's vocabulary from its tags; called again, it starts over."""

    def fitted_state(self) -> Any:
        """What :meth:`fit` learned, JSON-able, which a library keeps so that opening it does
        not fit again; ``None`` (the default): nothing to keep, :meth:`fit` runs instead."""
        return None

    def load_fitted_state(self, state: Any) -> None:  # noqa: B027 (only with fitted_state)
        """Take back what :meth:`fitted_state` returned, instead of fitting again; bad input
        raises :class:`~newwave.errors.InvalidInputError`."""

    @property
    def reads_names(self) -> bool:
        """Whether :meth:`fit_names` wants the catalogue's tracks (default False)."""
        return False

    def fit_names(self, tracks: Iterable[Track]) -> None:  # noqa: B027 (optional)
        """Learn the catalogue's artist, title and album names; called again, it starts over."""

    def rewrite(self, query: str) -> ParsedQuery:
        """Parse ``query``; a blank one raises :class:`~newwave.errors.EmptyQueryError`."""
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if not query.strip():
            raise EmptyQueryError("query is empty")
        parsed = self._rewrite(query)
        if not isinstance(parsed, ParsedQuery) or parsed.original != query:
            raise PluginError(
                f"rewriter {self.name!r} returned {type(parsed).__name__}, not a ParsedQuery "
                "of the query it was given"
            )
        return parsed

    @abstractmethod
    def _rewrite(self, query: str) -> ParsedQuery:
        """Parse a non-blank ``query``."""

    def get_config(self) -> dict[str, Any]:
        """The JSON-able options that rebuild this rewriter with ``load_rewriter``."""
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({options})"
