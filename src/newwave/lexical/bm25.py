"""Okapi BM25 over SciPy sparse postings: the built-in lexical index ``bm25``.

BM25 is written here over SciPy sparse matrices rather than taken from ``bm25s``: bm25s scores
every (document, term) pair when it indexes a corpus, with that corpus's idf and average length
baked in, so it cannot add or remove documents without indexing everything again (its issues
#5, #19, #98). Here the index stores only term frequencies and document lengths, and scores are
computed at search time from the statistics of the current contents.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from newwave._storage import read_json, write_json
from newwave.errors import IndexCorruptError, InvalidInputError
from newwave.hookspecs import Register, hookimpl
from newwave.lexical.base import ANALYZER_VERSION, LexicalIndex, analyze
from newwave.types import Ranking

__all__ = ["BM25Index", "register_lexical"]

_VOCABULARY = "vocabulary.json"
_IDS = "ids.json"
_POSTINGS = "postings.safetensors"
_PROGRESS_CHUNK = 10_000  # texts analysed between two updates of the progress bar

Rows = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


class BM25Index(LexicalIndex):
    """Okapi BM25: ranks texts by the words they share with a query, rarer words weighing more.

    Texts are split into terms by :func:`analyze`; a document D scores against a query Q as::

        score(D, Q) = Σ_{t in Q}  qtf(t) · idf(t) · tf(t, D) · (k1 + 1)
                                  / (tf(t, D) + k1 · (1 - b + b · |D| / avgdl))
        idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

    where ``tf(t, D)`` counts ``t`` in D, ``qtf(t)`` in Q (a repeated query word counts
    again, as in Lucene), ``|D|`` is D's number of terms, and ``N``, ``df(t)`` (documents
    holding ``t``) and ``avgdl`` (mean ``|D|``) describe the current contents, exactly, after
    any add, replacement or removal. The idf is Lucene's (always positive); the ``(k1 + 1)``
    factor, which Lucene 8+ drops without changing the ranking, makes a single matching word of
    a document of average length score its idf. ``k1`` sets how fast repeats of a word stop
    counting, ``b`` how much a long document is discounted.

    Documents are rows of sparse term-document matrices (CSC: a term's postings are one slice)
    holding term counts only; scores are computed at search time. An :meth:`add` queues its
    rows; the next search stores them as a new segment, merging the newest segments while one
    is not 4x the size of the next (so there are O(log n) of them). Removed rows are dropped
    from the statistics at once and from the matrices when they reach a quarter of the rows.

    A search keeps each query term's stored rows and their weights (its score in each, for a
    query holding it once) until the next add or removal, which change every weight through
    ``N`` and ``avgdl``: a term searched again costs one addition per posting into a score array
    of one slot per row. These caches take at most 16 bytes per posting of the searched terms.
    """

    name = "bm25"

    def __init__(self, *, k1: float = 1.2, b: float = 0.75):
        self.k1 = _number("k1", k1, 0.0, math.inf)
        self.b = _number("b", b, 0.0, 1.0)
        self._vocabulary: dict[str, int] = {}  # term -> column
        self._terms: list[str] = []  # column -> term
        self._rows: dict[str, int] = {}  # id -> row, in insertion order
        self._row_ids: list[str | None] = []  # row -> id; None once removed
        self._lengths: Rows = np.zeros(0, dtype=np.int64)  # row -> |D| (capacity-doubled)
        self._alive: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._total_length = 0  # Σ |D| over stored documents
        self._dead = 0  # removed rows still in the matrices
        self._segments: list[tuple[int, Any]] = []  # (first row, CSC matrix rows x terms)
        self._queued: list[tuple[Rows, npt.NDArray[np.int32]]] = []  # (rows, columns), per add
        self._queued_from = 0  # the first row not in a segment
        self._weights: dict[int, tuple[Rows, Floats]] = {}  # column -> stored rows, weights
        self._buffers: list[Floats] = []  # all-zero score arrays, one per search running

    @property
    def model_id(self) -> str:
        return f"bm25:k1={self.k1!r},b={self.b!r},analyzer={ANALYZER_VERSION}"

    def get_config(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._rows

    def ids(self) -> list[str]:
        return list(self._rows)

    @property
    def vocabulary_size(self) -> int:
        """How many distinct terms the index has seen (since it last dropped unused ones)."""
        return len(self._terms)

    # -- adding and removing -------------------------------------------------------------------

    def _add(self, ids: list[str], texts: list[str]) -> None:
        self._weights.clear()  # N and avgdl change
        replaced = [i for i in ids if i in self._rows]
        if replaced:
            self._remove_rows([self._rows[i] for i in replaced])
        first, count = len(self._row_ids), len(ids)
        columns, lengths = self._analyze_documents(texts)
        self._reserve(first + count)
        self._lengths[first : first + count] = lengths
        self._alive[first : first + count] = True
        self._queued.append((np.repeat(np.arange(first, first + count), lengths), columns))
        self._total_length += int(lengths.sum())
        self._row_ids.extend(ids)
        for row, track_id in enumerate(ids, start=first):
            self._rows[track_id] = row  # a replaced id keeps its place in the order

    def _analyze_documents(self, texts: list[str]) -> tuple[npt.NDArray[np.int32], Rows]:
        """The column of every term of every text, and each text's number of terms."""
        vocabulary, terms = self._vocabulary, self._terms
        columns: list[npt.NDArray[np.int32]] = []  # per chunk: a list of ints takes 5x the memory
        lengths = np.empty(len(texts), dtype=np.int64)
        chunks = range(0, len(texts), _PROGRESS_CHUNK)
        bar = tqdm(
            total=len(texts),
            desc=f"{self.name} index",
            unit="text",
            disable=True if len(chunks) < 2 else None,  # on a terminal only
        )
        with bar:
            for start in chunks:
                chunk: list[int] = []
                for row, text in enumerate(texts[start : start + _PROGRESS_CHUNK], start=start):
                    words = analyze(text)
                    lengths[row] = len(words)
                    for word in words:
                        column = vocabulary.get(word)
                        if column is None:
                            column = vocabulary[word] = len(terms)
                            terms.append(word)
                        chunk.append(column)
                columns.append(np.array(chunk, dtype=np.int32))
                bar.update(min(_PROGRESS_CHUNK, len(texts) - start))
        return np.concatenate([np.zeros(0, dtype=np.int32), *columns]), lengths

    def _reserve(self, rows: int) -> None:
        if rows > len(self._lengths):
            size = max(rows, 2 * len(self._lengths), 1024)
            self._lengths = np.resize(self._lengths, size)
            self._alive = np.concatenate([self._alive, np.zeros(size - len(self._alive), bool)])

    def _remove(self, ids: list[str]) -> None:
        self._remove_rows([self._rows.pop(i) for i in ids])

    def _remove_rows(self, rows: list[int]) -> None:
        self._weights.clear()
        at = np.array(rows, dtype=np.int64)
        self._alive[at] = False
        self._total_length -= int(self._lengths[at].sum())
        self._dead += len(rows)
        for row in rows:
            self._row_ids[row] = None

    # -- the matrices --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Store the queued rows as a segment; merge segments; drop removed rows when many."""
        import scipy.sparse as sp

        end = len(self._row_ids)
        if end > self._queued_from:
            rows = np.concatenate([r for r, _ in self._queued]) - self._queued_from
            columns = np.concatenate([c for _, c in self._queued])
            shape = (end - self._queued_from, len(self._terms))
            ones = np.ones(len(rows), dtype=np.int32)
            segment = sp.coo_array((ones, (rows, columns)), shape=shape).tocsc()
            segment.sum_duplicates()  # term counts
            self._segments.append((self._queued_from, segment))
            self._queued, self._queued_from = [], end
            while len(self._segments) > 1 and (
                self._segments[-2][1].shape[0] < 4 * self._segments[-1][1].shape[0]
            ):
                newer = self._segments.pop()
                older = self._segments.pop()
                self._segments.append((older[0], _stack([older[1], newer[1]])))
        if self._dead and 4 * self._dead >= len(self._row_ids):
            self._compact()

    def _compact(self) -> Any:
        """Keep only stored rows (renumbered in insertion order) and the terms they use.

        Expects no queued rows; returns the single segment it leaves.
        """
        order = np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))
        merged = _stack([m for _, m in self._segments], columns=len(self._terms))
        if merged is None:
            import scipy.sparse as sp

            merged = sp.csc_array((len(self._row_ids), len(self._terms)), dtype=np.int32)
        kept = merged[order, :]
        used = np.flatnonzero(np.diff(kept.indptr))
        matrix = kept[:, used]
        matrix.sort_indices()
        self._terms = [self._terms[c] for c in used.tolist()]
        self._vocabulary = {term: column for column, term in enumerate(self._terms)}
        self._lengths = self._lengths[order]
        self._alive = np.ones(len(order), dtype=bool)
        ids = list(self._rows)
        self._row_ids = list(ids)
        self._rows = {track_id: row for row, track_id in enumerate(ids)}
        self._segments = [(0, matrix)] if len(order) else []
        self._queued_from, self._dead = len(order), 0
        self._weights.clear()  # rows and columns are renumbered
        return matrix

    # -- searching -------------------------------------------------------------------------------

    def _search(self, queries: list[str], k: int, among: set[str] | None) -> list[Ranking]:
        self._flush()
        allowed = None
        if among is not None:
            allowed = np.zeros(len(self._row_ids), dtype=bool)
            allowed[[self._rows[i] for i in among if i in self._rows]] = True
        buffers = self._buffers
        scores = buffers.pop() if buffers else None  # a search running beside takes another
        if scores is None or len(scores) < len(self._row_ids):
            scores = np.zeros(len(self._row_ids), dtype=np.float64)
        rankings = [self._search_one(query, k, allowed, scores) for query in queries]
        buffers.append(scores)  # all zero again
        return rankings

    def _search_one(
        self, query: str, k: int, allowed: npt.NDArray[np.bool_] | None, scores: Floats
    ) -> Ranking:
        """The query's ranking, summing in ``scores`` (all zero, and left so)."""
        vocabulary = self._vocabulary
        counts = Counter(vocabulary[word] for word in analyze(query) if word in vocabulary)
        if not counts or not self._rows:
            return Ranking()
        hits: list[Rows] = []  # the rows each term scores first: all distinct
        for column, qtf in counts.items():
            rows, weights = self._term_weights(column, qtf)
            if allowed is not None:  # after the weights: the statistics are the whole index's
                keep = allowed[rows]
                rows, weights = rows[keep], weights[keep]
            if not len(rows):
                continue
            if not hits:
                scores[rows] = weights
                hits.append(rows)
                continue
            before = scores[rows]  # weights are positive: a row scored so far is not 0
            hits.append(rows[before == 0.0])
            scores[rows] = before + weights
        if not hits:
            return Ranking()
        rows = hits[0] if len(hits) == 1 else np.concatenate(hits)
        found = scores[rows]
        scores[rows] = 0.0
        return self._top(rows, found, k)

    def _term_weights(self, column: int, qtf: int) -> tuple[Rows, Floats]:
        """The stored rows holding the term of ``column``, and its score in each for ``qtf``
        occurrences in the query (kept for ``qtf == 1`` until the contents change)."""
        if qtf == 1 and column in self._weights:
            return self._weights[column]
        rows, tf = self._postings(column)  # of stored documents only
        documents = len(self._rows)
        avgdl = self._total_length / documents
        norm = self.k1 * (1.0 - self.b)
        per_length = self.k1 * self.b / avgdl if avgdl else 0.0
        idf = math.log1p((documents - len(rows) + 0.5) / (len(rows) + 0.5))
        counts = tf.astype(np.float64)
        weights: Floats = (
            (qtf * idf * (self.k1 + 1.0))
            * counts
            / (counts + norm + per_length * self._lengths[rows])
        )
        if qtf == 1:
            self._weights[column] = (rows, weights)
        return rows, weights

    def _postings(self, column: int) -> tuple[Rows, npt.NDArray[np.int32]]:
        """The stored rows holding the term of ``column``, and its count in each."""
        rows, counts = [], []
        for first, matrix in self._segments:
            if column < matrix.shape[1]:
                start, stop = matrix.indptr[column], matrix.indptr[column + 1]
                rows.append(matrix.indices[start:stop].astype(np.int64) + first)
                counts.append(matrix.data[start:stop])
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        all_rows, all_counts = np.concatenate(rows), np.concatenate(counts)
        alive = self._alive[all_rows]
        return all_rows[alive], all_counts[alive]

    def _top(self, rows: Rows, scores: npt.NDArray[np.float64], k: int) -> Ranking:
        """The best ``k`` rows by score, then by id: only the ties at the cut are sorted by id."""
        row_ids = self._row_ids
        if len(rows) > k:
            cut = float(np.partition(scores, len(scores) - k)[len(scores) - k])
            above = scores > cut
            tied = rows[scores == cut].tolist()
            rows, scores = rows[above], scores[above]
            kept_ties = heapq.nsmallest(k - len(rows), (str(row_ids[r]) for r in tied))
        else:
            cut, kept_ties = math.nan, []
        best = sorted(
            zip((str(row_ids[r]) for r in rows.tolist()), scores.tolist(), strict=True),
            key=lambda item: (-item[1], item[0]),
        )
        best.extend((track_id, cut) for track_id in kept_ties)
        return Ranking(tuple(i for i, _ in best), tuple(s for _, s in best))

    # -- persistence -----------------------------------------------------------------------------

    def _write(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        self._flush()
        matrix = self._compact()
        write_json(directory / _VOCABULARY, {"terms": self._terms})
        write_json(directory / _IDS, {"ids": self._row_ids})
        arrays = {
            "indptr": matrix.indptr.astype(np.int64),
            "rows": matrix.indices.astype(np.int32),
            "counts": matrix.data.astype(np.int32),
            "lengths": self._lengths.astype(np.int64),
        }
        save_file(arrays, str(directory / _POSTINGS))

    def _read(self, directory: Path, count: int) -> None:
        import scipy.sparse as sp

        terms = _string_list(read_json(directory / _VOCABULARY), "terms", directory / _VOCABULARY)
        ids = _string_list(read_json(directory / _IDS), "ids", directory / _IDS)
        if len(set(terms)) != len(terms) or len(set(ids)) != len(ids) or not all(ids):
            raise IndexCorruptError(f"{directory} repeats a term or an id, or has an empty id")
        if len(ids) != count:
            raise IndexCorruptError(f"{directory} has {len(ids)} ids for {count} texts")
        arrays = _read_postings(directory / _POSTINGS)
        indptr, rows, counts, lengths = (
            arrays["indptr"], arrays["rows"], arrays["counts"], arrays["lengths"]
        )  # fmt: skip
        consistent = (
            len(indptr) == len(terms) + 1
            and len(lengths) == count
            and indptr[0] == 0
            and indptr[-1] == len(rows) == len(counts)
            and bool(np.all(np.diff(indptr) >= 0))
            and bool(np.all((rows >= 0) & (rows < count)))
            and bool(np.all(counts > 0))
        )
        if consistent:
            matrix = sp.csc_array((counts, rows, indptr), shape=(count, len(terms)))
            per_row = np.bincount(rows, weights=counts, minlength=count)
            consistent = matrix.has_canonical_format and bool(np.array_equal(per_row, lengths))
        if not consistent:
            raise IndexCorruptError(f"{directory / _POSTINGS} does not fit its ids and vocabulary")
        self._terms, self._row_ids = terms, list(ids)
        self._vocabulary = {term: column for column, term in enumerate(terms)}
        self._rows = {track_id: row for row, track_id in enumerate(ids)}
        self._lengths, self._alive = lengths.copy(), np.ones(count, dtype=bool)
        self._total_length, self._dead = int(lengths.sum()), 0
        self._segments = [(0, matrix)] if count else []
        self._queued, self._queued_from = [], count
        self._weights.clear()


# -- helpers ---------------------------------------------------------------------------------------


def _number(what: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    if not low <= value <= high:
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise InvalidInputError(f"{what} must be {bounds}, got {value!r}")
    return float(value)


def _stack(matrices: list[Any], columns: int | None = None) -> Any:
    """The CSC matrices one above the other, widened to the widest (or ``columns``)."""
    if not matrices:
        return None
    import scipy.sparse as sp

    width = max(m.shape[1] for m in matrices) if columns is None else columns
    for matrix in matrices:
        if matrix.shape[1] != width:
            matrix.resize((matrix.shape[0], width))  # the vocabulary only grows between compactions
    return matrices[0] if len(matrices) == 1 else sp.vstack(matrices, format="csc")


def _string_list(document: Any, key: str, path: Path) -> list[str]:
    value = document.get(key) if isinstance(document, dict) else None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise IndexCorruptError(f"{path} lacks a list of strings under {key!r}")
    return value


def _read_postings(path: Path) -> dict[str, npt.NDArray[Any]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        raise IndexCorruptError(f"{path.parent} is incomplete: {path.name} is missing")
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IndexCorruptError(f"{path} is not a readable safetensors file: {exc}") from exc
    dtypes = {"indptr": np.int64, "rows": np.int32, "counts": np.int32, "lengths": np.int64}
    for name, dtype in dtypes.items():
        array = arrays.get(name)
        if array is None or array.ndim != 1 or array.dtype != dtype:
            raise IndexCorruptError(f"{path} lacks a 1-D {np.dtype(dtype).name} array {name!r}")
    return arrays


@hookimpl
def register_lexical(register: Register) -> None:
    register(BM25Index)
