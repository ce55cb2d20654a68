"""Requests in other languages: the vocabulary's values in five languages besides English.

``newwave/data/vocabulary_translations.tsv`` is a hand-reviewed table with one row per surface
form: ``language``, ``role``, ``kind``, ``value`` and ``form``. A ``form`` row names a value of
the shipped vocabulary ("es, form, mood, relaxing, relajante"), an ``absent`` row says a value is
absent ("de, absent, vocals, vocals, instrumentale"), a ``cue`` row is a negation word ("ohne",
"sin", "без") and a ``stop`` row a request word left out of the text to embed ("música",
"для"). :func:`load_translations` reads the rows of some languages, and
:meth:`Translations.apply` adds them to a vocabulary. Forms are matched like English ones: case,
accents and apostrophes aside.

>>> from newwave.query.vocabulary import Vocabulary
>>> vocabulary = load_translations(("es",)).apply(Vocabulary.default())
>>> from newwave.query.negation import parse
>>> [(m.value, m.negated) for m in parse("guitarra española sin voz", vocabulary).mentions]
[('classical guitar', False), ('vocals', True)]
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from newwave.errors import InvalidInputError, MissingFileError
from newwave.query.vocabulary import Vocabulary, form_key

__all__ = ["LANGUAGES", "SHIPPED_TRANSLATIONS", "Translations", "load_translations"]

SHIPPED_TRANSLATIONS = "data/vocabulary_translations.tsv"
"""The shipped table, relative to the ``newwave`` package."""

LANGUAGES = ("es", "ru", "de", "fr", "pt")
"""The languages of the shipped table (ISO 639-1 codes)."""

_COLUMNS = ["language", "role", "kind", "value", "form"]
_ROLES = frozenset({"form", "absent", "cue", "stop"})


@dataclass(frozen=True)
class Translations:
    """The rows of a translation table for some languages, grouped by role."""

    languages: tuple[str, ...]
    forms: dict[tuple[str, str], tuple[str, ...]]
    absent_forms: dict[tuple[str, str], tuple[str, ...]]
    cues: tuple[str, ...]
    stop_words: tuple[str, ...]

    def apply(self, vocabulary: Vocabulary) -> Vocabulary:
        """``vocabulary`` with these forms (of the values it has) and negation cues added."""
        return vocabulary.with_forms(
            {key: forms for key, forms in self.forms.items() if key in vocabulary},
            absent_forms={k: f for k, f in self.absent_forms.items() if k in vocabulary},
            cues=self.cues,
        )

    def foreign_keys(self, vocabulary: Vocabulary) -> frozenset[tuple[str, ...]]:
        """The normalised tokens of the table's forms that are not forms of ``vocabulary``
        ("relajante", but not "violín", which is spelled as the English "violin")."""
        every = (
            f for table in (self.forms, self.absent_forms) for fs in table.values() for f in fs
        )
        return frozenset(
            key for key in map(form_key, every) if not vocabulary.has_form(" ".join(key))
        )


def load_translations(
    languages: Iterable[str] = LANGUAGES, *, path: str | os.PathLike[str] | None = None
) -> Translations:
    """The rows of ``languages`` in the table at ``path`` (default: the shipped one)."""
    if isinstance(languages, str):
        raise InvalidInputError("languages must be a list of language codes, not one string")
    wanted = tuple(dict.fromkeys(languages))
    if path is None:
        for language in wanted:
            if not isinstance(language, str):
                raise InvalidInputError(f"a language must be a code like 'es', got {language!r}")
        return _shipped(wanted)
    return _load(wanted, path)


@lru_cache(maxsize=8)
def _shipped(languages: tuple[str, ...]) -> Translations:
    return _load(languages, None)


def _load(wanted: tuple[str, ...], path: str | os.PathLike[str] | None) -> Translations:
    if path is None:
        rows = _shipped_rows()
        known: Iterable[str] = LANGUAGES
        source = SHIPPED_TRANSLATIONS
    else:
        file = Path(path)
        try:
            rows = _parse(file.read_text(encoding="utf-8"), str(file))
        except FileNotFoundError:
            raise MissingFileError(f"no translation table {file}") from None
        known = {row[0] for row in rows}
        source = str(file)
    unknown = [language for language in wanted if language not in known]
    if unknown:
        raise InvalidInputError(
            f"{source} has no language {', '.join(map(repr, unknown))}; "
            f"it has {', '.join(sorted(known))}"
        )
    forms: dict[tuple[str, str], list[str]] = {}
    absent: dict[tuple[str, str], list[str]] = {}
    cues: list[str] = []
    stop: list[str] = []
    for language, role, kind, value, form in rows:
        if language not in wanted:
            continue
        if role == "cue":
            cues.append(form)
        elif role == "stop":
            stop.append(form)
        else:
            (forms if role == "form" else absent).setdefault((kind, value), []).append(form)
    return Translations(
        languages=wanted,
        forms={key: tuple(dict.fromkeys(v)) for key, v in forms.items()},
        absent_forms={key: tuple(dict.fromkeys(v)) for key, v in absent.items()},
        cues=tuple(dict.fromkeys(cues)),
        stop_words=tuple(dict.fromkeys(stop)),
    )


@lru_cache(maxsize=1)
def _shipped_rows() -> tuple[tuple[str, str, str, str, str], ...]:
    text = resources.files("newwave").joinpath(SHIPPED_TRANSLATIONS).read_text(encoding="utf-8")
    return _parse(text, SHIPPED_TRANSLATIONS)


def _parse(text: str, source: str) -> tuple[tuple[str, str, str, str, str], ...]:
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header != _COLUMNS:
        raise InvalidInputError(f"{source}: the header must be {' '.join(_COLUMNS)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(_COLUMNS) or not all(cell.strip() for cell in row):
            raise InvalidInputError(f"{source}, line {number}: expected 5 non-empty columns")
        language, role, kind, value, form = (cell.strip() for cell in row)
        if role not in _ROLES:
            raise InvalidInputError(f"{source}, line {number}: unknown role {role!r}")
        rows.append((language, role, kind, value, form))
    return tuple(rows)
