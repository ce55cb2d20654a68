"""The built-in ``rules`` rewriter: vocabulary matching and negation rules, no model.

It finds the vocabulary's attributes in the query (longest form first: "acoustic guitar" is one
instrument), marks those a negation covers (see :mod:`newwave.query.negation`) unless the query
also asks for them or a narrower value ("an instrumental with female vocals"), and builds the
text to embed by removing request boilerplate ("can you find me", "please", "some",
"something like") and the negated phrases. When nothing is left but stop words ("please find me
some", "no vocals"), the text is the original query.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newwave.errors import InvalidInputError
from newwave.hookspecs import Register, hookimpl
from newwave.query.base import Attribute, ParsedQuery, QueryRewriter
from newwave.query.catalogue_names import CatalogueNames
from newwave.query.entities import EntityIndex
from newwave.query.languages import LANGUAGES, load_translations
from newwave.query.negation import has_cue, parse
from newwave.query.vocabulary import (
    Concept,
    PhraseTable,
    Vocabulary,
    concepts_from_dict,
    concepts_to_dict,
    form_key,
    tokenize,
    variants,
)

if TYPE_CHECKING:
    from newwave.types import Track

__all__ = ["TAG_KIND", "RuleRewriter", "register_rewriters"]

TAG_KIND = "tag"
"""The kind of the attributes learned from catalogue tags the vocabulary does not know."""

_STOP_WORDS = frozenset(
    "a an the of for to in on at by with and or but me my i you we it its is are be this that "
    "these those some any something anything song songs track tracks music tune tunes piece "
    "kind sort type like just only very really please".split()
)
_DANGLING = re.compile(
    r"\b(?:with|and|or|but|that is|that's|thats|which is|which|that|is|are|has|have|having)"
    r"\s*(?=[,;:.!?]|$)",
    re.IGNORECASE,
)
_LEADING = re.compile(
    r"^(?:[\s,;:.!?\u2013\u2014-]+|(?:and|or|but|with|i|just|only)\b\s*)", re.IGNORECASE
)
_CONNECTOR_AFTER = re.compile(r"\s*(?:[,;&\u2013\u2014]|\s-(?=\s)|(?:and|or|but)\b)", re.IGNORECASE)
_SPACE_BEFORE_MARK = re.compile(r"\s+([,;:.!?])")
_DOUBLE_MARK = re.compile(r"([,;:])\s*(?=[,;:.!?])")


class RuleRewriter(QueryRewriter):
    """Parse queries with a music vocabulary and English negation rules.

    Options: ``vocabulary``, a JSON file replacing the shipped vocabulary (see
    :class:`~newwave.query.vocabulary.Vocabulary`); ``learn_tags`` (default True): :meth:`fit`
    adds the catalogue's tags that the vocabulary does not know as attributes of kind ``"tag"``;
    ``max_tag_words`` (default 4): longer tags are not learned; ``min_tag_count`` (default 1):
    tags seen fewer times in what :meth:`fit` is given are not learned.

    ``languages`` (default all of :data:`~newwave.query.languages.LANGUAGES`: Spanish, Russian,
    German, French, Portuguese) adds those languages' forms of the vocabulary's values and their
    negation words (:mod:`newwave.query.languages`): a form of another language is embedded as
    its English value ("relajante" -> "relaxing"), and, in a query with such a form, the request
    words of those languages ("música", "для") are left out of the text; ``languages=()`` reads
    English only. ``entities`` (default True) finds artist, title and album names before
    anything else (:mod:`newwave.query.entities`): the catalogue's, learned by
    :meth:`fit_names`, and well-known artists'. A name's words are never read as attributes
    ("Daft Punk" is no punk), and the name with its lead-in ("sounds like") is embedded as the
    name's styles (the commonest tags of its tracks, or a well-known artist's genres);
    ``ParsedQuery.entities`` lists them.
    """

    name = "rules"

    def __init__(
        self,
        *,
        vocabulary: str | os.PathLike[str] | None = None,
        learn_tags: bool = True,
        max_tag_words: int = 4,
        min_tag_count: int = 1,
        languages: Iterable[str] = LANGUAGES,
        entities: bool = True,
    ):
        for option, number in (("max_tag_words", max_tag_words), ("min_tag_count", min_tag_count)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise InvalidInputError(f"{option} must be a positive integer, got {number!r}")
        self._vocabulary_path = None if vocabulary is None else str(Path(vocabulary))
        translations = load_translations(languages)
        self.languages = translations.languages
        if vocabulary is None:
            self._base, self._foreign = _default_vocabulary(self.languages)
        else:
            loaded = Vocabulary.load(vocabulary)
            self._base = translations.apply(loaded) if self.languages else loaded
            self._foreign = translations.foreign_keys(loaded)
        self._vocabulary = self._base
        self._learned: list[Concept] = []
        self._foreign_stop = PhraseTable(
            dict.fromkeys(map(form_key, translations.stop_words), True)
        )
        self.entities = bool(entities)
        self._names: EntityIndex | CatalogueNames | None = (
            EntityIndex.shipped() if self.entities else None
        )
        self.learn_tags = bool(learn_tags)
        self.max_tag_words = max_tag_words
        self.min_tag_count = min_tag_count

    @property
    def vocabulary(self) -> Vocabulary:
        """The vocabulary in use: the base one and the tags learned by :meth:`fit`."""
        return self._vocabulary

    def fit(self, tags: Iterable[str]) -> None:
        """Learn the tags (of the whole catalogue) that the base vocabulary does not know.

        A tag is learned when it appears at least ``min_tag_count`` times in ``tags``, has at
        most ``max_tag_words`` words, names nothing the base vocabulary knows, and holds no
        negation ("no voices" is understood without it) nor only stop words. Tags are compared
        lowercased, spaces collapsed. Calling ``fit`` again replaces the learned tags.
        """
        if isinstance(tags, str):
            raise InvalidInputError("fit() takes an iterable of tags, not one string")
        if not self.learn_tags:
            return
        counts: Counter[str] = Counter()
        for tag in tags:
            if not isinstance(tag, str):
                raise InvalidInputError(f"tags must be strings, got {type(tag).__name__}")
            counts[" ".join(tag.casefold().split())] += 1
        learned: list[Concept] = []
        taken: set[tuple[str, ...]] = set()
        for value, count in counts.items():
            if count < self.min_tag_count or not self._learnable(value):
                continue
            forms = []
            for form in variants(value, plural=True, singular=True):
                key = tuple(t.norm for t in tokenize(form))
                if key not in taken and not self._base.has_form(form):
                    taken.add(key)
                    forms.append(form)
            if forms:
                learned.append(Concept(TAG_KIND, value, tuple(forms)))
        self._use(learned)

    def fitted_state(self) -> dict[str, Any] | None:
        """The learned tags, as a vocabulary document's ``kinds``; None without ``learn_tags``."""
        return {"kinds": concepts_to_dict(self._learned)} if self.learn_tags else None

    def load_fitted_state(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise InvalidInputError("a fitted rules rewriter's state must be a JSON object")
        self._use(concepts_from_dict(state.get("kinds"), source="fitted rules rewriter"))

    def _use(self, learned: list[Concept]) -> None:
        self._learned = learned
        self._vocabulary = self._base.extend(learned) if learned else self._base

    @property
    def reads_names(self) -> bool:
        return self.entities

    def fit_names(self, tracks: Iterable[Track]) -> None:
        """Learn the artist, title and album names of ``tracks`` (with ``entities``); a
        :class:`~newwave.query.catalogue_names.CatalogueNames` is looked up per request instead."""
        if self.entities:
            if isinstance(tracks, CatalogueNames):
                self._names = tracks
            else:
                self._names = EntityIndex.from_tracks(tracks)

    @property
    def names(self) -> EntityIndex | None:
        """The names held in memory (None without ``entities``); with names looked up in a
        database, the shipped well-known artists alone."""
        if isinstance(self._names, CatalogueNames):
            return EntityIndex.shipped()
        return self._names

    def _learnable(self, tag: str) -> bool:
        words = [t.norm for t in tokenize(tag) if t.norm[0].isalnum()]
        if not words or len(words) > self.max_tag_words or all(w in _STOP_WORDS for w in words):
            return False
        return not parse(tag, self._base).mentions and not has_cue(tag)

    def _rewrite(self, query: str) -> ParsedQuery:
        entities = [] if self._names is None else self._names.find(query, self._vocabulary)
        found = parse(query, self._vocabulary, masked=[e.name_span for e in entities])
        attributes: dict[tuple[str, str, bool], Attribute] = {}
        for mention in found.mentions:
            key = (mention.kind, mention.value, mention.negated)
            if key not in attributes:
                attributes[key] = Attribute(
                    mention.kind,
                    mention.value,
                    mention.negated,
                    (mention.start, mention.end),
                    self._vocabulary.forms(mention.kind, mention.value),
                )
        _drop_contradicted(attributes, self._vocabulary)
        removed = [*found.negated_spans, *found.request_spans]
        added: list[tuple[int, str]] = []  # (where, English words) replacing a removed span
        # A query with a form of another language is embedded as the English values it names
        # ("música clásica con violín" -> "classical violin").
        foreign = any(form_key(query[m.start : m.end]) in self._foreign for m in found.mentions)
        if foreign:
            for mention in found.mentions:
                if not mention.negated:
                    removed.append((mention.start, mention.end))
                    added.append((mention.start, mention.value))
            mentioned = [(m.start, m.end) for m in found.mentions]
            removed.extend(self._foreign_stop_spans(query, mentioned))
        for entity in entities:
            removed.append(entity.span)
            words = " ".join(entity.styles) or query[slice(*entity.name_span)]
            added.append((entity.span[0], words))
        text = _text_without(query, sorted(removed))
        english = " ".join(dict.fromkeys(words for _, words in sorted(added)))
        if english:
            text = f"{english} {text}" if text else english
        return ParsedQuery(
            original=query,
            text=text or query.strip(),
            attributes=tuple(attributes.values()),
            rewriter=self.name,
            vocabulary=self._vocabulary,
            entities=tuple(entities),
        )

    def _foreign_stop_spans(
        self, query: str, mentioned: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """The request words of the other languages ("música", "для") outside any mention."""
        if not len(self._foreign_stop):
            return []
        tokens = tokenize(query)
        norms = [t.norm for t in tokens]
        spans = []
        i = 0
        while i < len(tokens):
            match = self._foreign_stop.match(norms, i)
            start = tokens[i].start
            if match is None or any(s <= start < e for s, e in mentioned):
                i += 1
                continue
            spans.append((start, tokens[i + match[0] - 1].end))
            i += match[0]
        return spans

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self._vocabulary_path is not None:
            config["vocabulary"] = self._vocabulary_path
        if not self.learn_tags:
            config["learn_tags"] = False
        if self.max_tag_words != 4:
            config["max_tag_words"] = self.max_tag_words
        if self.min_tag_count != 1:
            config["min_tag_count"] = self.min_tag_count
        if self.languages != LANGUAGES:
            config["languages"] = list(self.languages)
        if not self.entities:
            config["entities"] = False
        return config


@lru_cache(maxsize=4)
def _default_vocabulary(
    languages: tuple[str, ...],
) -> tuple[Vocabulary, frozenset[tuple[str, ...]]]:
    """The shipped vocabulary with the forms of ``languages``, and those forms that are not
    English (built once per process)."""
    base = Vocabulary.default()
    if not languages:
        return base, frozenset()
    translations = load_translations(languages)
    return translations.apply(base), translations.foreign_keys(base)


def _drop_contradicted(
    attributes: dict[tuple[str, str, bool], Attribute], vocabulary: Vocabulary
) -> None:
    """Remove the unwanted attributes the query also asks for, themselves or a narrower value.

    "An instrumental with female vocals", "a male voice speaking instead of singing": the voice
    the query names is what it wants, so voices are not ruled out (the unwanted vocals would
    demote the very tracks asked for). An unwanted value narrower than a wanted one stays
    ("rock, but not hard rock").
    """
    wanted = {(kind, value) for kind, value, negated in attributes if not negated}
    for key in [key for key in attributes if key[2]]:
        kind, value, _ = key
        if any((kind, narrower) in wanted for narrower in vocabulary.narrower(kind, value)):
            del attributes[key]


def _text_without(query: str, spans: list[tuple[int, int]]) -> str:
    """``query`` less the (sorted) ``spans``, tidied; empty if nothing but stop words is left."""
    if not spans:
        return query.strip()
    pieces = []
    position = 0
    for start, end in spans:
        if start > position:
            pieces.append(query[position:start])
        connector = _CONNECTOR_AFTER.match(query, end)  # "no drums, female vocals"
        position = max(position, connector.end() if connector else end)
    pieces.append(query[position:])
    text = " ".join(" ".join(pieces).split())
    previous = None
    while text != previous:
        previous = text
        text = _SPACE_BEFORE_MARK.sub(r"\1", text)
        text = _DOUBLE_MARK.sub("", text)
        text = _DANGLING.sub("", text).strip()
        text = _LEADING.sub("", text).rstrip(" ,;:-\u2013\u2014")
    words = [t.norm for t in tokenize(text) if t.norm[0].isalnum()]
    if all(word in _STOP_WORDS for word in words):
        return ""
    return text


@hookimpl
def register_rewriters(register: Register) -> None:
    register(RuleRewriter)
