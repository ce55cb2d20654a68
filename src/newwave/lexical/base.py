"""Lexical indexes: a text field matched by the words a query shares with it.

Descriptor-like text ("acoustic guitar", "female vocal") is matched better by its words than by
a dense embedding, and a hybrid field indexes it both ways. :class:`LexicalIndex` is the
interface; lexical indexes are their own plugin kind (``register_lexical``), named where
encoders are: ``Recommender(fields={"tags": ["bm25", "minilm"]})``. The built-in one is
:class:`~newwave.lexical.bm25.BM25Index` (``"bm25"``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from newwave._checks import positive_int
from newwave._storage import atomic_directory, read_json, resolve_directory, write_json
from newwave.errors import EmptyQueryError, IndexCorruptError, InvalidInputError, UnknownTrackError
from newwave.index.base import _check_ids
from newwave.types import Modality, Ranking

__all__ = ["ANALYZER_VERSION", "LexicalIndex", "analyze", "check_texts"]

#: Names the behaviour of :func:`analyze`; part of every model id, so a change re-indexes.
ANALYZER_VERSION = "words-v1"

_HEADER = "lexical.json"
_STOP_WORDS = "data/english_stop_words.json"
_WORD = re.compile(r"\w+")


@functools.cache
def _stop_words() -> frozenset[str]:
    """scikit-learn's English stop words (its ``ENGLISH_STOP_WORDS``), a copy that pins the
    analyzer and spares importing scikit-learn (seconds) to search a library."""
    from importlib import resources

    text = resources.files("newwave").joinpath(_STOP_WORDS).read_text(encoding="utf-8")
    return frozenset(json.loads(text)["words"])


def analyze(text: str) -> list[str]:
    """The terms of ``text`` (analyzer ``words-v1``).

    NFKC-normalised and lowercased, split into Unicode word tokens (runs of ``\\w``), without
    scikit-learn's English stop words: ``"The Female Vocal, lo-fi"`` gives ``["female", "vocal",
    "lo", "fi"]``.
    """
    stop = _stop_words()
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return [word for word in words if word not in stop]


class LexicalIndex(ABC):
    """A text field's encoder and index in one: stores texts under ids, finds them by the words
    they share with a query.

    The base class validates arguments and handles persistence; a subclass implements
    :meth:`_add`, :meth:`_remove`, :meth:`_search`, :meth:`_write` and :meth:`_read`.
    """

    name: ClassVar[str] = ""
    modalities: ClassVar[frozenset[Modality]] = frozenset({"text"})

    @property
    @abstractmethod
    def model_id(self) -> str:
        """What shapes the scores (algorithm, analyzer, parameters); part of content hashes."""

    def get_config(self) -> dict[str, Any]:
        """JSON-able keyword options that rebuild an empty index through the registered factory."""
        return {}

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, track_id: object) -> bool: ...

    @abstractmethod
    def ids(self) -> list[str]:
        """The stored ids, in insertion order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, count={len(self)})"

    # -- the part a subclass implements ----------------------------------------------------------

    @abstractmethod
    def _add(self, ids: list[str], texts: list[str]) -> None:
        """Store ``texts`` under the distinct ``ids``, replacing the texts of stored ones."""

    @abstractmethod
    def _remove(self, ids: list[str]) -> None:
        """Forget the distinct ``ids``, all of which are stored."""

    @abstractmethod
    def _search(self, queries: list[str], k: int, among: set[str] | None) -> list[Ranking]:
        """As :meth:`search`, with checked arguments."""

    @abstractmethod
    def _write(self, directory: Path) -> None:
        """Write the data into ``directory``, which holds nothing else of this index."""

    @abstractmethod
    def _read(self, directory: Path, count: int) -> None:
        """Restore the data written by :meth:`_write`; ``count`` texts were saved."""

    # -- public API ---------------------------------------------------------------------------

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Store one text per id; an id already stored has its text replaced."""
        id_list = _check_ids(ids)
        text_list = check_texts(texts, "texts")
        if len(text_list) != len(id_list):
            raise InvalidInputError(f"{len(id_list)} ids but {len(text_list)} texts")
        if id_list:
            self._add(id_list, text_list)

    def remove(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Remove ``ids``; return how many were stored. Unknown ids raise unless ``missing_ok``."""
        id_list = _check_ids(ids if isinstance(ids, str) else list(ids))  # a str is refused
        missing = [i for i in id_list if i not in self]
        if missing and not missing_ok:
            raise UnknownTrackError(
                f"{len(missing)} id(s) not in the index: {', '.join(map(repr, missing[:5]))}"
            )
        stored = [i for i in id_list if i in self]
        if stored:
            self._remove(stored)
        return len(stored)

    def search(
        self, queries: Sequence[str], k: int = 10, *, among: Collection[str] | None = None
    ) -> list[Ranking]:
        """One :class:`Ranking` per query: at most ``k`` ids sharing a term with it, best first.

        Equal scores are ordered by id. A query none of whose terms is in the index finds
        nothing. ``among`` restricts the results to those ids (ids not stored are ignored); the
        scores, and the statistics behind them, stay those of the whole index.
        """
        positive_int(k, "k")
        query_list = check_texts(queries, "queries")
        allowed = None
        if among is not None:
            if isinstance(among, str):
                raise InvalidInputError("among must be a collection of ids, not one string")
            allowed = set(among)
        return self._search(query_list, k, allowed) if query_list else []

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Save atomically to ``directory``: a crash mid-save leaves the previous save loadable."""
        with atomic_directory(directory) as staging:
            self.write(staging)
        return Path(directory)

    def write(self, directory: Path) -> None:
        """Write into the existing, empty ``directory`` (not atomic: :meth:`save` wraps this)."""
        from newwave import __version__

        self._write(directory)
        write_json(
            directory / _HEADER,
            {
                "lexical": self.name,
                "model_id": self.model_id,
                "count": len(self),
                "options": self.get_config(),
                "newwave_version": __version__,
            },
        )

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LexicalIndex:
        """Load an index saved with :meth:`save`, rebuilt through the plugin registry."""
        from newwave.plugins import load_lexical

        root = resolve_directory(directory)
        header = read_json(root / _HEADER)
        try:
            name, model_id, count = header["lexical"], header["model_id"], header["count"]
            options = dict(header.get("options", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"{root / _HEADER} lacks {exc}") from exc
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise IndexCorruptError(f"{root / _HEADER} has an invalid count {count!r}")
        try:
            index = load_lexical(name, **options)
        except (InvalidInputError, TypeError) as exc:
            raise IndexCorruptError(f"{root / _HEADER} has invalid options: {exc}") from exc
        if not isinstance(index, cls):
            raise IndexCorruptError(f"{root} holds a {name!r} index, not a {cls.__name__}")
        if index.model_id != model_id:
            raise IndexCorruptError(
                f"{root} was indexed as {model_id!r}, which this version reads as "
                f"{index.model_id!r}; add the texts to a new index"
            )
        index._read(root, count)
        return index


# -- helpers ---------------------------------------------------------------------------------------


def check_texts(texts: Sequence[str], what: str) -> list[str]:
    """``texts`` as a list of non-blank strings, else InvalidInputError/EmptyQueryError."""
    if isinstance(texts, str):
        raise InvalidInputError(
            f"{what} must be a list of strings, got one string; wrap it: [text]"
        )
    text_list = list(texts)
    for text in text_list:
        if not isinstance(text, str):
            raise InvalidInputError(f"{what} must be strings, got {type(text).__name__}")
        if not text.strip():
            raise EmptyQueryError(f"{what} must not be empty or blank, got {text!r}")
    return text_list
