"""The built-in ``rules`` rewriter: vocabulary matching and negation rules, no model.

It finds the vocabulary's attributes in the query (longest form first: "acoustic guitar" is one
instrument), marks those a negation covers (see :mod:`newwave.query.negation`), and builds the
text to embed by removing request boilerplate ("can you find me", "please", "some",
"something like") and the negated phrases. When nothing is left but stop words ("please find me
some", "no vocals"), the text is the original query.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from newwave.errors import InvalidInputError
from newwave.hookspecs import Register, hookimpl
from newwave.query.base import Attribute, ParsedQuery, QueryRewriter
from newwave.query.negation import has_cue, parse
from newwave.query.vocabulary import (
    Concept,
    Vocabulary,
    concepts_from_dict,
    concepts_to_dict,
    tokenize,
    variants,
)

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
    """

    name = "rules"

    def __init__(
        self,
        *,
        vocabulary: str | os.PathLike[str] | None = None,
        learn_tags: bool = True,
        max_tag_words: int = 4,
        min_tag_count: int = 1,
    ):
        for option, number in (("max_tag_words", max_tag_words), ("min_tag_count", min_tag_count)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise InvalidInputError(f"{option} must be a positive integer, got {number!r}")
        self._vocabulary_path = None if vocabulary is None else str(Path(vocabulary))
        self._base = Vocabulary.default() if vocabulary is None else Vocabulary.load(vocabulary)
        self._vocabulary = self._base
        self._learned: list[Concept] = []
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

    def _learnable(self, tag: str) -> bool:
        words = [t.norm for t in tokenize(tag) if t.norm[0].isalnum()]
        if not words or len(words) > self.max_tag_words or all(w in _STOP_WORDS for w in words):
            return False
        return not parse(tag, self._base).mentions and not has_cue(tag)

    def _rewrite(self, query: str) -> ParsedQuery:
        found = parse(query, self._vocabulary)
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
        removed = sorted([*found.negated_spans, *found.request_spans])
        return ParsedQuery(
            original=query,
            text=_text_without(query, removed),
            attributes=tuple(attributes.values()),
            rewriter=self.name,
            vocabulary=self._vocabulary,
        )

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
        return config


def _text_without(query: str, spans: list[tuple[int, int]]) -> str:
    """``query`` less the (sorted) ``spans``, tidied; the query itself if nothing would be left."""
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
        return query.strip()
    return text


@hookimpl
def register_rewriters(register: Register) -> None:
    register(RuleRewriter)
