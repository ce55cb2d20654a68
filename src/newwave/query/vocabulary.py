"""The descriptor vocabulary: kinds of attribute, canonical values and the words that express them.

A :class:`Vocabulary` maps surface forms ("lo-fi", "female singer", "eighties") to a
:class:`Sense`, the canonical ``(kind, value)`` they name. Text is matched token by token:
case-insensitive, accents and apostrophes ignored ("80's" = "80s"), a hyphen the same as a space
("hip-hop" = "hip hop"), and the joined spelling of a hyphenated form is a form too ("lofi").
Forms of the kinds listed in ``inflect`` (instruments, vocals) also match their plural ("drum",
"drums").

Values form a hierarchy through ``broader``: "snare" is a kind of "drums", which is a kind of
"percussion", so a track that mentions a snare expresses drums, and one that says "no percussion"
has no drums. ``absent_forms`` are words whose mention says a value is absent ("instrumental":
no vocals). ``neutral`` phrases contain vocabulary words but mean none of them ("the
instrumental" of a song with vocals is its backing track). ``cues`` are negation words the
vocabulary adds to the parser's English ones ("ohne", "sin": see :mod:`newwave.query.languages`).

The shipped vocabulary, ``newwave/data/music_vocabulary.json``, is hand-curated general music
knowledge; :meth:`Vocabulary.load` reads one in the same format.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from newwave.errors import InvalidInputError, MissingFileError

__all__ = [
    "SHIPPED_VOCABULARY",
    "Concept",
    "PhraseTable",
    "Sense",
    "Token",
    "Vocabulary",
    "concepts_from_dict",
    "concepts_to_dict",
    "form_key",
    "tokenize",
    "variants",
]

SHIPPED_VOCABULARY = "data/music_vocabulary.json"
"""The shipped vocabulary, relative to the ``newwave`` package."""

_FORMAT = "newwave-music-vocabulary"
_TOKEN = re.compile("\\w+(?:['\u2019]\\w+)*|[^\\w\\s]")
_APOSTROPHES = str.maketrans("", "", "'\u2019")
_HYPHENS = frozenset("-\u2010\u2011")
_DASHES = frozenset("\u2013\u2014")  # spaced clause dashes (en, em): read as commas
_KEPT_PUNCTUATION = frozenset(',.;:!?()[]{}"/+\u2026')


class Token(NamedTuple):
    """A normalised word or punctuation mark and the characters of the text it came from."""

    norm: str
    start: int
    end: int
    hyphen_before: bool
    """Joined to the previous word by a hyphen ("vocal-free")."""


def _normalize_word(word: str) -> str:
    word = word.casefold().translate(_APOSTROPHES)
    if not word.isascii():
        decomposed = unicodedata.normalize("NFKD", word)
        word = "".join(c for c in decomposed if not unicodedata.combining(c))
    return word


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``: normalised words ("&" is "and") and clause punctuation.

    Hyphens between words are not tokens (the next word records ``hyphen_before``); a spaced
    dash reads as a comma; other symbols are dropped.
    """
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        piece, start, end = match.group(), match.start(), match.end()
        if piece[0].isalnum() or piece[0] == "_":
            joined = (
                start >= 2
                and text[start - 1] in _HYPHENS
                and bool(tokens)
                and tokens[-1].end == start - 1
            )
            tokens.append(Token(_normalize_word(piece), start, end, joined))
        elif piece == "&":
            tokens.append(Token("and", start, end, False))
        elif piece in _DASHES or (piece in _HYPHENS and not (tokens and tokens[-1].end == start)):
            tokens.append(Token(",", start, end, False))
        elif piece in _KEPT_PUNCTUATION:
            tokens.append(Token(piece, start, end, False))
    return tokens


def form_key(form: str) -> tuple[str, ...]:
    """The normalised tokens of ``form``: two forms with the same key match the same text."""
    return tuple(token.norm for token in tokenize(form))


def _has_word(form: str) -> bool:
    return any(token.norm[0].isalnum() for token in tokenize(form))


_LAST_WORD = re.compile(r"(\w+)$")


def _plural(word: str) -> str | None:
    if word.endswith(("ss", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("s") or not word.isalpha():
        return None
    if len(word) > 2 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _singular(word: str) -> str | None:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return None
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    return word[:-1]


def variants(form: str, *, plural: bool = False, singular: bool = False) -> tuple[str, ...]:
    """``form`` and its spelling variants: joined if hyphenated, plural and/or singular."""
    out = [form]
    if "-" in form and re.search(r"\w-\w", form):
        out.append(re.sub(r"(?<=\w)-(?=\w)", "", form))
    for base in list(out):
        match = _LAST_WORD.search(base)
        if match is None:
            continue
        word = match.group(1)
        changed = [
            w for w in (_plural(word) if plural else None, _singular(word) if singular else None)
            if w
        ]  # fmt: skip
        out.extend(base[: match.start(1)] + w for w in changed)
    return tuple(dict.fromkeys(out))


V = TypeVar("V")


class PhraseTable(Generic[V]):
    """Phrases (tuples of normalised tokens) and their values, matched longest first."""

    def __init__(self, entries: Mapping[tuple[str, ...], V]):
        self.entries = dict(entries)
        self._prefixes = {key[:n] for key in self.entries for n in range(1, len(key) + 1)}
        self._max_tokens = max((len(key) for key in self.entries), default=0)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def match(self, tokens: Sequence[str], start: int) -> tuple[int, V] | None:
        """The longest phrase at ``tokens[start:]``: (its length in tokens, its value)."""
        best: tuple[int, V] | None = None
        end = start + 1
        limit = min(len(tokens), start + self._max_tokens)
        while end <= limit:
            key = tuple(tokens[start:end])
            if key not in self._prefixes:
                break
            if key in self.entries:
                best = (end - start, self.entries[key])
            end += 1
        return best


@dataclass(frozen=True)
class Concept:
    """One canonical value of a kind, the surface forms that name it and its broader values."""

    kind: str
    value: str
    forms: tuple[str, ...]
    broader: tuple[str, ...] = ()
    absent_forms: tuple[str, ...] = ()


class Sense(NamedTuple):
    """What a matched form means: a value, or (``absent``) that the value is absent."""

    kind: str
    value: str
    absent: bool


class Vocabulary:
    """Concepts and a longest-match table of their forms.

    Two concepts may not share a form; a spelling variant (plural, joined) that collides with
    another concept's form is dropped. ``broader`` names values of the same kind and may not
    form a cycle. Bad input raises :class:`~newwave.errors.InvalidInputError`.
    """

    def __init__(
        self,
        concepts: Iterable[Concept],
        *,
        neutral: Iterable[str] = (),
        inflect: Iterable[str] = (),
        cues: Iterable[str] = (),
    ):
        self._concepts: dict[tuple[str, str], Concept] = {}
        self._inflect = frozenset(inflect)
        self._neutral = tuple(neutral)
        self._cues = tuple(dict.fromkeys(cues))
        for cue in self._cues:
            if not isinstance(cue, str) or not _has_word(cue):
                raise InvalidInputError(f"negation cue {cue!r} has no words")
        self._cue_table = PhraseTable(dict.fromkeys((form_key(cue) for cue in self._cues), True))
        for concept in concepts:
            self._check_concept(concept)
            key = (concept.kind, concept.value)
            if key in self._concepts:
                raise InvalidInputError(f"{concept.kind} {concept.value!r} is defined twice")
            self._concepts[key] = concept
        self._table: dict[tuple[str, ...], Sense | None] = {}
        self._surface: dict[tuple[str, str], list[str]] = {key: [] for key in self._concepts}
        self._build_table()
        self._phrases = PhraseTable(self._table)
        self._narrower = self._close(down=True)
        self._broader = self._close(down=False)
        self._forms_cache: dict[tuple[str, str], tuple[str, ...]] = {}

    @staticmethod
    def _check_concept(concept: Concept) -> None:
        if not isinstance(concept, Concept):
            raise InvalidInputError(f"expected a Concept, got {type(concept).__name__}")
        for what, text in (("kind", concept.kind), ("value", concept.value)):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"a concept's {what} must be a non-empty string: {concept}")
        forms = (*concept.forms, *concept.absent_forms)
        if not concept.forms or not all(isinstance(f, str) and _has_word(f) for f in forms):
            raise InvalidInputError(
                f"{concept.kind} {concept.value!r}: forms must be a non-empty list of words"
            )

    def _build_table(self) -> None:
        owner: dict[tuple[str, ...], str] = {}
        pending: list[tuple[tuple[str, ...], Sense, str, tuple[str, str] | None]] = []
        for key, concept in self._concepts.items():
            plural = concept.kind in self._inflect
            for forms, absent in ((concept.forms, False), (concept.absent_forms, True)):
                sense = Sense(concept.kind, concept.value, absent)
                for form in forms:
                    tokens = form_key(form)
                    where = f"{concept.kind} {concept.value!r} ({form!r})"
                    if tokens in owner and self._table[tokens] != sense:
                        raise InvalidInputError(f"the form {form!r} belongs to {owner[tokens]} "
                                                f"and to {where}")  # fmt: skip
                    owner[tokens] = where
                    self._table[tokens] = sense
                    if not absent:
                        self._surface[key].append(form)
                    for variant in variants(form, plural=plural)[1:]:
                        pending.append((form_key(variant), sense, variant,
                                        None if absent else key))  # fmt: skip
        for form in self._neutral:
            tokens = form_key(form)
            if not _has_word(form):
                raise InvalidInputError(f"neutral phrase {form!r} has no words")
            if tokens in owner:
                raise InvalidInputError(
                    f"neutral phrase {form!r} is also a form of {owner[tokens]}"
                )
            owner[tokens] = "a neutral phrase"
            self._table[tokens] = None
        for tokens, sense, variant, surface_key in pending:
            if tokens not in self._table:
                self._table[tokens] = sense
                if surface_key is not None:
                    self._surface[surface_key].append(variant)

    def _close(self, *, down: bool) -> dict[tuple[str, str], frozenset[str]]:
        """Per concept, itself and every value below (``down``) or above it."""
        edges: dict[tuple[str, str], set[str]] = {key: set() for key in self._concepts}
        for (kind, value), concept in self._concepts.items():
            for parent in concept.broader:
                if (kind, parent) not in self._concepts:
                    raise InvalidInputError(
                        f"{kind} {value!r}: broader value {parent!r} is not a {kind} of this "
                        "vocabulary"
                    )
                if down:
                    edges[(kind, parent)].add(value)
                else:
                    edges[(kind, value)].add(parent)
        closed: dict[tuple[str, str], frozenset[str]] = {}
        for kind, value in self._concepts:
            seen = {value}
            stack = [value]
            while stack:
                for nxt in edges[(kind, stack.pop())]:
                    if nxt == value:
                        raise InvalidInputError(f"{kind} {value!r} is broader than itself")
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            closed[(kind, value)] = frozenset(seen)
        return closed

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def default(cls) -> Vocabulary:
        """The shipped general music vocabulary (loaded once per process)."""
        return _shipped()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary JSON file in the format of the shipped one."""
        file = Path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MissingFileError(f"no vocabulary file {file}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{file} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(file))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "vocabulary") -> Vocabulary:
        """Build from the parsed JSON: ``{"format", "version", "kinds", "inflect", "neutral"}``
        and, optionally, ``"cues"``."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise InvalidInputError(f"{source}: not a {_FORMAT!r} document")
        if data.get("version") != 1:
            raise InvalidInputError(f"{source}: unsupported version {data.get('version')!r}")
        kinds = data.get("kinds")
        if not isinstance(kinds, Mapping) or not kinds:
            raise InvalidInputError(f"{source}: 'kinds' must map kinds to their values")
        concepts = []
        for kind, values in kinds.items():
            if not isinstance(values, Mapping):
                raise InvalidInputError(f"{source}: kind {kind!r} must map values to forms")
            for value, spec in values.items():
                concepts.append(_concept(kind, value, spec, source))
        return cls(
            concepts,
            neutral=_strings(data.get("neutral", []), f"{source}: neutral"),
            inflect=_strings(data.get("inflect", []), f"{source}: inflect"),
            cues=_strings(data.get("cues", []), f"{source}: cues"),
        )

    def extend(self, concepts: Iterable[Concept]) -> Vocabulary:
        """A new vocabulary with these concepts added (this one is unchanged)."""
        return Vocabulary(
            [*self._concepts.values(), *concepts],
            neutral=self._neutral,
            inflect=self._inflect,
            cues=self._cues,
        )

    def with_forms(
        self,
        forms: Mapping[tuple[str, str], Iterable[str]],
        *,
        absent_forms: Mapping[tuple[str, str], Iterable[str]] | None = None,
        cues: Iterable[str] = (),
    ) -> Vocabulary:
        """A new vocabulary whose concepts have these extra forms, and these extra ``cues``.

        Keys are ``(kind, value)`` of this vocabulary. A form this vocabulary already gives the
        same meaning is skipped; one it gives another meaning raises
        :class:`~newwave.errors.InvalidInputError`.
        """
        extra = {False: forms, True: absent_forms or {}}
        added: dict[tuple[str, str], dict[bool, list[str]]] = {}
        for absent, table in extra.items():
            for key, new in table.items():
                if key not in self._concepts:
                    raise InvalidInputError(f"the vocabulary has no {key[0]} {key[1]!r}")
                sense = Sense(key[0], key[1], absent)
                for form in new:
                    if not isinstance(form, str) or not _has_word(form):
                        raise InvalidInputError(f"{key[0]} {key[1]!r}: form {form!r} has no words")
                    if self._table.get(form_key(form), None) != sense:
                        added.setdefault(key, {False: [], True: []})[absent].append(form)
        concepts = []
        for key, concept in self._concepts.items():
            more = added.get(key)
            if more is not None:
                concept = replace(
                    concept,
                    forms=(*concept.forms, *more[False]),
                    absent_forms=(*concept.absent_forms, *more[True]),
                )
            concepts.append(concept)
        return Vocabulary(
            concepts,
            neutral=self._neutral,
            inflect=self._inflect,
            cues=(*self._cues, *cues),
        )

    # -- queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._concepts)

    def __iter__(self) -> Iterator[Concept]:
        return iter(self._concepts.values())

    def __contains__(self, key: object) -> bool:
        return key in self._concepts

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} concepts, {len(self._table)} forms)"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of attribute, in order of first definition."""
        return tuple(dict.fromkeys(kind for kind, _ in self._concepts))

    def concept(self, kind: str, value: str) -> Concept:
        """The concept ``(kind, value)``."""
        try:
            return self._concepts[(kind, value)]
        except KeyError:
            raise InvalidInputError(f"the vocabulary has no {kind} {value!r}") from None

    def narrower(self, kind: str, value: str) -> frozenset[str]:
        """``value`` and every value of ``kind`` that is a kind of it."""
        return self._narrower.get((kind, value), frozenset({value}))

    def broader(self, kind: str, value: str) -> frozenset[str]:
        """``value`` and every value of ``kind`` it is a kind of."""
        return self._broader.get((kind, value), frozenset({value}))

    def forms(self, kind: str, value: str) -> tuple[str, ...]:
        """The surface forms that express ``value`` or a narrower value, its own first."""
        key = (kind, value)
        cached = self._forms_cache.get(key)
        if cached is None:
            self.concept(kind, value)
            below = sorted(self.narrower(kind, value) - {value})
            forms = [*self._surface[key], *(f for v in below for f in self._surface[(kind, v)])]
            cached = self._forms_cache[key] = tuple(dict.fromkeys(forms))
        return cached

    def has_form(self, form: str) -> bool:
        """Whether ``form`` (or a spelling of it) is a form or neutral phrase of this vocabulary."""
        return form_key(form) in self._table

    def match(self, tokens: Sequence[str], start: int) -> tuple[int, Sense | None] | None:
        """The longest form at ``tokens[start:]``: (its length, its sense or None if neutral)."""
        return self._phrases.match(tokens, start)

    @property
    def cues(self) -> tuple[str, ...]:
        """The negation cues this vocabulary adds to the parser's own."""
        return self._cues

    def match_cue(self, tokens: Sequence[str], start: int) -> int | None:
        """The length in tokens of the longest of :attr:`cues` at ``tokens[start:]``, if any."""
        found = self._cue_table.match(tokens, start)
        return None if found is None else found[0]


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{where} must be a list of strings")
    return value


def _concept(kind: Any, value: Any, spec: Any, source: str) -> Concept:
    where = f"{source}: {kind} {value!r}"
    if isinstance(spec, list):
        return Concept(kind, value, tuple(_strings(spec, where)))
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"{where} must be a list of forms or an object with 'forms'")
    unknown = set(spec) - {"forms", "broader", "absent_forms"}
    if unknown:
        raise InvalidInputError(f"{where}: unknown keys {sorted(unknown)}")
    return Concept(
        kind,
        value,
        tuple(_strings(spec.get("forms"), f"{where} forms")),
        broader=tuple(_strings(spec.get("broader", []), f"{where} broader")),
        absent_forms=tuple(_strings(spec.get("absent_forms", []), f"{where} absent_forms")),
    )


@lru_cache(maxsize=1)
def _shipped() -> Vocabulary:
    text = resources.files("newwave").joinpath(SHIPPED_VOCABULARY).read_text(encoding="utf-8")
    return Vocabulary.from_dict(json.loads(text), source=SHIPPED_VOCABULARY)


def concepts_to_dict(concepts: Iterable[Concept]) -> dict[str, dict[str, Any]]:
    """``concepts`` as the ``kinds`` object of a vocabulary document, for JSON."""
    kinds: dict[str, dict[str, Any]] = {}
    for concept in concepts:
        spec: dict[str, list[str]] = {"forms": list(concept.forms)}
        if concept.broader:
            spec["broader"] = list(concept.broader)
        if concept.absent_forms:
            spec["absent_forms"] = list(concept.absent_forms)
        kinds.setdefault(concept.kind, {})[concept.value] = spec
    return kinds


def concepts_from_dict(kinds: Any, *, source: str) -> list[Concept]:
    """The concepts of a ``kinds`` object (:func:`concepts_to_dict`), checked."""
    if not isinstance(kinds, Mapping):
        raise InvalidInputError(f"{source}: 'kinds' must map kinds to their values")
    concepts: list[Concept] = []
    for kind, values in kinds.items():
        if not isinstance(values, Mapping):
            raise InvalidInputError(f"{source}: kind {kind!r} must map values to forms")
        concepts.extend(_concept(kind, value, spec, source) for value, spec in values.items())
    return concepts
