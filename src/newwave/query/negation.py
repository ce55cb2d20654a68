"""Finding the vocabulary's attributes in text, and which of them the text negates.

The same parser reads queries and track descriptions, so "without drums" in a query and "there
are no drums" in a caption mean the same thing. English only.

**The negation rule.** A *cue* ("no", "not", "without", "except", "anything but", "other than",
"instead of", "free of", "lacking", "non", "never", "don't", "isn't", "w/o", ...) opens a
*scope*; the first attribute after it is negated, after up to five other words ("not too fast",
"without any loud drums", "don't want anything with vocals"). The scope then goes on to:

- an attribute right after the negated one, with no word between ("no rock ballads", "no 80s
  synths");
- an attribute after "or", "nor" or "/" ("without drums or bass", "not too fast or too slow");
- an attribute after "and" that is of the same kind as the last negated one ("without drums and
  bass"; but in "no vocals and upbeat" only the vocals are negated);
- an attribute after a comma when the list ends with "or"/"nor" ("no drums, bass or guitar";
  but "a song with no drums, female vocals" and "no drums, piano and strings" negate the drums
  only).

Anything else ends it: another attribute, a sentence mark (. ; : ! ? brackets), "but",
"just", "only", "plus", "also", "featuring", "though", "however", "instead", and, once something
was negated, "with". A hyphenated "-free" or "-less" negates the attribute before it
("vocal-free", "drum-less", "drumless"), and "non" the one attribute after it ("non-vocal
lo-fi"). A form that itself means absence ("instrumental": no vocals) is negated by a cue ("not
instrumental": vocals wanted). Phrases like "not only", "nothing but", "don't mind" are not
negations, and "no other percussion" (after "a cymbal plays") says nothing about percussion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from newwave.query.vocabulary import PhraseTable, Sense, Token, Vocabulary, tokenize

__all__ = ["Mention", "Parse", "has_cue", "parse"]

MAX_FILLER = 5
"""Words a scope waits through for its first attribute before it lapses."""
_LOOKAHEAD = 12  # items a continuation check looks ahead: keeps the parse linear


class _Role(Enum):
    MENTION = "mention"
    CUE = "cue"
    PREFIX = "prefix"
    NO_OTHER = "no other"
    NEUTRAL = "neutral"
    REQUEST = "request"
    LEADING_REQUEST = "leading request"
    BOUNDARY = "boundary"
    WEAK_BOUNDARY = "weak boundary"
    OR = "or"
    NOR = "nor"
    AND = "and"
    COMMA = "comma"
    POSTFIX = "postfix"
    WORD = "word"


_GRAMMAR_PHRASES: dict[_Role, str] = {  # phrases separated by " | "
    _Role.CUE: (
        "no | not | without | w/o | except | excluding | exclude | minus | sans | nothing | "
        "never | none | neither | zero | lacking | lacks | lack | lack of | absence of | "
        "free of | free from | anything but | everything but | anything except | "
        "everything except | anything other than | other than | rather than | instead of | "
        "don't | do not | doesn't | does not | didn't | isn't | aren't | wasn't | weren't | "
        "won't | can't | cannot | shouldn't | wouldn't | couldn't | hate | dislike | avoid | "
        "skip | no more"
    ),
    _Role.PREFIX: "non",
    _Role.NO_OTHER: (
        "no other | not any other | without other | without any other | no additional | "
        "no further | no more other | nothing else but"
    ),
    _Role.NEUTRAL: (
        "not only | not just | nothing but | no doubt | no matter | not sure | no wonder | "
        "not bad | don't mind | do not mind | wouldn't mind | would not mind | can't wait | "
        "can't get enough | can't stop | never mind | no longer"
    ),
    _Role.REQUEST: (
        "i'm looking for | i am looking for | looking for | i'm searching for | searching for | "
        "can you find me | can you find | could you find me | could you find | "
        "can you recommend | could you recommend | can you suggest | could you suggest | "
        "can you play | could you play | can i get | can i have | could i get | find me | "
        "give me | show me | play me | get me | recommend me | suggest me | i want | i need | "
        "i'd like | i would like | i'd love | i would love | i wanna | i'm in the mood for | "
        "in the mood for | please | pls | plz | thanks | thank you | some | something like | "
        "something | hey | hi | hello"
    ),
    _Role.LEADING_REQUEST: (
        "play | find | recommend | suggest | search for | search | put on | queue | give | "
        "show | get"
    ),
    _Role.BOUNDARY: (
        '. | ; | : | ! | ? | ( | ) | [ | ] | { | } | " | \u2026 | + | but | just | only | plus | '
        "also | featuring | feat | ft | though | although | however | yet | instead | rather | "
        "whereas"
    ),
    _Role.WEAK_BOUNDARY: "with | that | which | who | while | has | have | having",
    _Role.OR: "or | /",
    _Role.NOR: "nor",
    _Role.AND: "and",
    _Role.COMMA: ",",
    _Role.POSTFIX: "free | less",
}


def _grammar() -> PhraseTable[_Role]:
    table = {}
    for role, phrases in _GRAMMAR_PHRASES.items():
        for phrase in phrases.split(" | "):
            table[tuple(t.norm for t in tokenize(phrase))] = role
    return PhraseTable(table)


_GRAMMAR = _grammar()


@dataclass(frozen=True)
class Mention:
    """An attribute found in text: ``text[start:end]`` names ``value``; ``negated`` if absent.

    ``by_form`` marks a negation said by the form alone, with no cue ("instrumental").
    """

    kind: str
    value: str
    negated: bool
    start: int
    end: int
    by_form: bool = False


@dataclass(frozen=True)
class Parse:
    """The mentions of a text, and the character spans of its negated and request phrases."""

    mentions: tuple[Mention, ...]
    negated_spans: tuple[tuple[int, int], ...]
    """From each cue to the last attribute it negates ("without drums or bass")."""
    request_spans: tuple[tuple[int, int], ...]
    """Request boilerplate: "can you find me", "please", "some", "something like"."""


class _Item(NamedTuple):
    role: _Role
    start: int
    end: int
    sense: Sense | None = None


def _items(
    tokens: list[Token], vocabulary: Vocabulary, masked: Sequence[tuple[int, int]] = ()
) -> list[_Item]:
    """Split the tokens into phrases: vocabulary forms and grammar words, longest first."""
    norms = [t.norm for t in tokens]
    items: list[_Item] = []
    leading = True  # nothing but request phrases so far
    i = 0
    while i < len(tokens):
        if any(start <= tokens[i].start < end for start, end in masked):
            items.append(_Item(_Role.WORD, tokens[i].start, tokens[i].end))
            leading = False
            i += 1
            continue
        grammar = _GRAMMAR.match(norms, i)
        cue = vocabulary.match_cue(norms, i)
        if cue is not None and (grammar is None or cue > grammar[0]):
            grammar = (cue, _Role.CUE)
        found = vocabulary.match(norms, i)
        if found is not None and (grammar is None or found[0] > grammar[0]):
            length, sense = found
            role = _Role.NEUTRAL if sense is None else _Role.MENTION
        elif grammar is not None:
            length, role = grammar
            if role is _Role.LEADING_REQUEST and not leading:
                length, role = 1, _Role.WORD
            elif role is _Role.POSTFIX and not (
                tokens[i].hyphen_before and items and items[-1].role is _Role.MENTION
            ):
                role = _Role.WORD
            sense = None
        else:
            length, role, sense = 1, _Role.WORD, None
            negated = _less_suffixed(norms[i], vocabulary)
            if negated is not None:  # "drumless": the attribute, then a zero-width "-less"
                items.append(_Item(_Role.MENTION, tokens[i].start, tokens[i].end, negated))
                items.append(_Item(_Role.POSTFIX, tokens[i].end, tokens[i].end))
                leading = False
                i += 1
                continue
        leading = leading and role in (_Role.REQUEST, _Role.LEADING_REQUEST)
        items.append(_Item(role, tokens[i].start, tokens[i + length - 1].end, sense))
        i += length
    return items


def has_cue(text: str) -> bool:
    """Whether ``text`` holds a negation cue ("no", "without", "non-", ...)."""
    norms = [t.norm for t in tokenize(text)]
    for i in range(len(norms)):
        found = _GRAMMAR.match(norms, i)
        if found is not None and found[1] in (_Role.CUE, _Role.PREFIX, _Role.NOR):
            return True
    return False


def _less_suffixed(word: str, vocabulary: Vocabulary) -> Sense | None:
    """The sense of the stem of a one-word "...less" form ("drumless", "vocalless")."""
    if len(word) <= 6 or not word.endswith("less"):
        return None
    found = vocabulary.match([word[:-4]], 0)
    return found[1] if found is not None else None


def parse(text: str, vocabulary: Vocabulary, *, masked: Sequence[tuple[int, int]] = ()) -> Parse:
    """The attributes ``text`` mentions, each negated or not, by the rule in the module doc.

    Words starting inside a ``masked`` character span (a name: "Daft Punk") are read as plain
    words, never as attributes.
    """
    items = _items(tokenize(text), vocabulary, masked)
    return _Negation(items).run()


class _Negation:
    """One left-to-right pass over the items, holding the open negation scope."""

    def __init__(self, items: list[_Item]):
        self.items = items
        self.negated: dict[int, bool] = {}  # item index of a mention -> negated
        self.spans: list[tuple[int, int]] = []
        self.requests: list[tuple[int, int]] = []
        self.open = False  # a scope is open
        self.waiting = False  # the scope waits for an attribute (after a cue or connector)
        self.scope_start = 0
        self.last_end = 0  # end of the scope's last negated attribute
        self.last_kind = ""
        self.last_index = -2  # item index of the scope's last negated attribute
        self.count = 0  # attributes the scope negated
        self.filler = 0
        self.single = False  # the scope negates one attribute ("non-vocal")
        self.others = False  # "no other percussion": says nothing of the percussion mentioned
        self.dropped: set[int] = set()  # mentions in an "others" scope

    def run(self) -> Parse:
        for index, item in enumerate(self.items):
            self.step(index, item)
        self.close()
        mentions = tuple(
            Mention(
                item.sense.kind,
                item.sense.value,
                self.negated[i],
                item.start,
                item.end,
                by_form=self.negated[i] and item.sense.absent,
            )
            for i, item in enumerate(self.items)
            if item.role is _Role.MENTION and item.sense is not None and i not in self.dropped
        )
        return Parse(mentions, tuple(self.spans), tuple(self.requests))

    def close(self) -> None:
        if self.open and self.count and not self.others:
            self.spans.append((self.scope_start, self.last_end))
        self.open = self.waiting = self.others = False

    def step(self, index: int, item: _Item) -> None:
        role = item.role
        if role is _Role.MENTION:
            self.mention(index, item)
        elif role in (_Role.CUE, _Role.PREFIX, _Role.NO_OTHER) or (
            role is _Role.NOR and not self.open
        ):
            self.close()
            self.open = self.waiting = True
            self.scope_start, self.count, self.filler = item.start, 0, 0
            self.single = role is _Role.PREFIX
            self.others = role is _Role.NO_OTHER
        elif role is _Role.POSTFIX:
            self.postfix(index, item)
        elif not self.open:
            if role in (_Role.REQUEST, _Role.LEADING_REQUEST):
                self.requests.append((item.start, item.end))
        elif role is _Role.BOUNDARY:
            self.close()
        elif role in (_Role.OR, _Role.NOR):
            self.waiting, self.filler = True, 0
        elif role is _Role.AND:
            if not self.waiting:
                self.continue_if(self.next_kind(index + 1) == self.last_kind)
        elif role is _Role.COMMA:
            self.continue_if(not self.waiting and self.list_ends_with_or(index + 1))
        elif role is _Role.WEAK_BOUNDARY and self.count:
            self.close()
        else:  # a word, a neutral phrase, a request phrase, or a weak boundary before any negation
            if role in (_Role.REQUEST, _Role.LEADING_REQUEST):
                self.requests.append((item.start, item.end))
            if self.waiting:
                self.filler += 1
                if self.filler > MAX_FILLER:
                    self.close()

    def continue_if(self, condition: bool) -> None:
        if condition:
            self.waiting, self.filler = True, 0
        else:
            self.close()

    def mention(self, index: int, item: _Item) -> None:
        assert item.sense is not None
        adjacent = self.open and self.count and index == self.last_index + 1
        if self.open and (self.waiting or adjacent):
            self.negated[index] = not item.sense.absent
            if self.others:
                self.dropped.add(index)
            self.count += 1
            self.last_end, self.last_kind, self.last_index = item.end, item.sense.kind, index
            self.waiting = False
            if self.single:
                self.close()
            return
        self.close()
        self.negated[index] = item.sense.absent

    def postfix(self, index: int, item: _Item) -> None:
        """ "-free"/"-less" after an attribute: the attribute is absent."""
        previous = index - 1
        sense = self.items[previous].sense
        assert sense is not None
        self.negated[previous] = not sense.absent
        if self.open and self.last_index == previous:  # "no vocal-free": the scope ends here
            self.spans.append((self.scope_start, item.end))
            self.open = self.waiting = False
            return
        self.spans.append((self.items[previous].start, item.end))

    def next_kind(self, start: int) -> str | None:
        """The kind of the next attribute, if only plain words come before it."""
        for item in self.items[start : start + _LOOKAHEAD]:
            if item.role is _Role.MENTION and item.sense is not None:
                return item.sense.kind
            if item.role not in (_Role.WORD, _Role.NEUTRAL):
                return None
        return None

    def list_ends_with_or(self, start: int) -> bool:
        """Whether the comma list from ``start`` ("bass, guitar or keys") ends with "or"/"nor"."""
        expect_mention = True
        for item in self.items[start : start + _LOOKAHEAD]:
            role = item.role
            if role in (_Role.OR, _Role.NOR):
                return True
            if role is _Role.MENTION:
                if not expect_mention:
                    continue
                expect_mention = False
            elif role is _Role.COMMA and not expect_mention:
                expect_mention = True
            elif role not in (_Role.WORD, _Role.NEUTRAL):
                return False
        return False
