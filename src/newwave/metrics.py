"""Exact ranking metrics for retrieval evaluation, numerically identical to trec_eval.

Two ways in, one set of numbers:

* :func:`evaluate` takes a *run* (per query, ``{candidate id: score}`` or a ranked list of ids) and
  *qrels* (per query, ``{candidate id: grade}``), the formats of ``pytrec_eval``.
* :func:`evaluate_dense` takes a dense ``(queries, candidates)`` score matrix, or an iterator of row
  blocks, and the relevant candidate indices; :func:`evaluate_embeddings` computes the dot-product
  scores block by block, so 10k x 1M never needs the whole matrix in memory.

Ranking rule (the one trec_eval applies): scores are rounded to float32 (trec_eval stores them as C
``float``), sorted in decreasing order, and equal scores are ordered by candidate id in *decreasing*
code-point order (``"b"`` before ``"a"``, ``"9"`` before ``"10"``). :func:`ranked_ids` applies it.

Definitions, per query, with R the number of relevant items (grade > 0) and ranks 1-based; an
item the run does not contain is not retrieved:

* ``recall@K``: |relevant in the top K| / R (trec_eval ``recall_K``).
* ``precision@K``: |relevant in the top K| / K, even if fewer were retrieved (``P_K``).
* ``hit_rate@K``: 1 if a relevant item is in the top K, else 0 (``success_K``).
* ``mrr`` / ``mrr@K``: 1 / rank of the first relevant item, 0 if none (within K) (``recip_rank``).
* ``map`` / ``map@K``: sum of Precision@rank(d) over the retrieved relevant d (with rank <= K),
  divided by R, not by min(K, R) (``map``, ``map_cut_K``).
* ``ndcg`` / ``ndcg@K``: DCG / IDCG with DCG = sum over relevant d (rank <= K) of
  grade(d) / log2(rank(d) + 1), and IDCG the same for all relevant items by decreasing grade, cut
  at K; 0 if IDCG is 0 (``ndcg``, ``ndcg_cut_K``). ``ndcg_binary``: every grade > 0 counts as 1.
* ``mean_rank`` / ``median_rank``: mean / median over queries of the rank of the first relevant
  item (``inf`` if none is retrieved).

All other metrics average over the queries. Queries without a relevant item are listed in
:attr:`EvaluationResult.empty_queries`, not scored; see ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import numbers
import re
import statistics
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from newwave._checks import positive_int
from newwave.errors import DimensionMismatchError, InvalidInputError, NonFiniteVectorError

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_PATTERNS",
    "EvaluationResult",
    "Qrels",
    "Relevant",
    "Run",
    "evaluate",
    "evaluate_dense",
    "evaluate_embeddings",
    "hit_rate_at_k",
    "mean_average_precision",
    "mean_rank",
    "median_rank",
    "mrr",
    "ndcg",
    "parse_metrics",
    "precision_at_k",
    "ranked_ids",
    "recall_at_k",
]

Run: TypeAlias = Mapping[str, Mapping[str, float] | Sequence[str]]
"""Per query id: ``{candidate id: score}`` (higher is better) or candidate ids best first."""

Qrels: TypeAlias = Mapping[str, Mapping[str, int]]
"""Per query id: ``{candidate id: grade}``; a grade ``<= 0`` means not relevant."""

Relevant: TypeAlias = npt.NDArray[Any] | Sequence[Mapping[int, int] | Collection[int]]
"""Dense relevance: a 2-D ``(queries, candidates)`` grade matrix, or per query the relevant
candidate indices (grade 1 each) or ``{candidate index: grade}``."""

METRIC_PATTERNS: Final[tuple[str, ...]] = (
    "recall@K",
    "precision@K",
    "hit_rate@K",
    "mrr",
    "mrr@K",
    "map",
    "map@K",
    "ndcg",
    "ndcg@K",
    "ndcg_binary",
    "ndcg_binary@K",
    "mean_rank",
    "median_rank",
)
"""The metric names :func:`evaluate` understands; ``K`` is a positive integer."""

DEFAULT_METRICS: Final[tuple[str, ...]] = (
    "recall@1",
    "recall@10",
    "mrr",
    "ndcg@10",
    "map",
    "median_rank",
)

_CUT_REQUIRED: Final = frozenset({"recall", "precision", "hit_rate"})
_CUT_OPTIONAL: Final = frozenset({"mrr", "map", "ndcg", "ndcg_binary"})
_NO_CUT: Final = frozenset({"mean_rank", "median_rank"})
_NAME_RE: Final = re.compile(r"([a-z_]+)(?:@(\d+))?")
_SCAN_LIMIT: Final = 32  # up to this many relevant items per row, scan the row; more: sort it
_CHUNK_ELEMENTS: Final = 1 << 24  # default block: 16M scores (64 MiB of float32)

_FloatRow: TypeAlias = npt.NDArray[np.float32]
_IntArray: TypeAlias = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str
    k: int | None


@dataclass(frozen=True, repr=False)
class EvaluationResult:
    """Per-query values and their aggregates for a set of metrics.

    ``per_query[query_id][metric]`` holds the value of every scored query (those with at least one
    relevant item); ``means[metric]`` is their mean (the median for ``median_rank``), ``nan`` when
    no query was scored. Queries that could not be scored are listed, never dropped silently.
    """

    metrics: tuple[str, ...]
    """Canonical metric names, in the order asked for."""
    means: Mapping[str, float]
    """Aggregate per metric over the scored queries (median for ``median_rank``)."""
    per_query: Mapping[str, Mapping[str, float]]
    """``{query id: {metric: value}}`` for every scored query."""
    empty_queries: tuple[str, ...] = ()
    """Queries whose qrels hold no relevant item (grade > 0): not scored, not in ``means``."""
    missing_queries: tuple[str, ...] = ()
    """Scored queries absent from the run: they retrieved nothing and score 0 (rank ``inf``)."""
    unjudged_queries: tuple[str, ...] = ()
    """Queries in the run but not in the qrels: ignored."""

    @property
    def queries(self) -> tuple[str, ...]:
        """The scored query ids."""
        return tuple(self.per_query)

    @property
    def num_queries(self) -> int:
        """How many queries were scored (the denominator of the means)."""
        return len(self.per_query)

    def as_dict(self) -> dict[str, float]:
        """The flat view ``{"recall@10": ..., "mrr": ...}`` of :attr:`means`."""
        return dict(self.means)

    def per_metric(self, metric: str) -> dict[str, float]:
        """``{query id: value}`` of one evaluated metric."""
        name = parse_metrics([metric])[0]
        if name not in self.means:
            raise InvalidInputError(
                f"metric {name!r} was not evaluated; evaluated: {', '.join(self.metrics)}"
            )
        return {qid: values[name] for qid, values in self.per_query.items()}

    def __getitem__(self, metric: str) -> float:
        """The aggregate of one evaluated metric, ``result["mrr"]`` (any spelling of the name)."""
        return self.means[parse_metrics(metric)[0]]

    def __repr__(self) -> str:
        def ids(queries: tuple[str, ...]) -> str:
            return repr(list(queries)) if len(queries) <= 5 else f"<{len(queries)} queries>"

        return (
            f"EvaluationResult(num_queries={self.num_queries}, means={dict(self.means)!r}, "
            f"empty_queries={ids(self.empty_queries)}, "
            f"missing_queries={ids(self.missing_queries)}, "
            f"unjudged_queries={ids(self.unjudged_queries)})"
        )


# ---------------------------------------------------------------------------------------------
# metric names


def _parse_one(raw: object) -> _Spec:
    if not isinstance(raw, str):
        raise InvalidInputError(f"metric names must be strings, got {raw!r}")
    text = raw.strip().lower()
    match = _NAME_RE.fullmatch(text)
    valid = ", ".join(METRIC_PATTERNS)
    if match is None:
        raise InvalidInputError(
            f"unknown metric {raw!r}; valid names: {valid} (K a positive integer)"
        )
    kind, cut = match.group(1), match.group(2)
    if kind in _NO_CUT and cut is None:
        return _Spec(kind, kind, None)
    if kind in _CUT_OPTIONAL and cut is None:
        return _Spec(kind, kind, None)
    if (kind in _CUT_REQUIRED or kind in _CUT_OPTIONAL) and cut is not None:
        k = int(cut)
        if k < 1:
            raise InvalidInputError(
                f"metric {raw!r}: the cutoff K must be a positive integer; valid names: {valid}"
            )
        return _Spec(f"{kind}@{k}", kind, k)
    raise InvalidInputError(f"unknown metric {raw!r}; valid names: {valid} (K a positive integer)")


def _parse_specs(metrics: Iterable[str] | str) -> tuple[_Spec, ...]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise InvalidInputError("no metric given; valid names: " + ", ".join(METRIC_PATTERNS))
    specs: dict[str, _Spec] = {}
    for raw in names:
        spec = _parse_one(raw)
        specs.setdefault(spec.name, spec)
    return tuple(specs.values())


def parse_metrics(metrics: Iterable[str] | str) -> tuple[str, ...]:
    """Canonical names (lower case, ``@K`` without leading zeros, duplicates removed) of metrics.

    Raises :class:`InvalidInputError`, listing the valid names, for an unknown name.
    """
    return tuple(spec.name for spec in _parse_specs(metrics))


def _check_k(k: int | None, *, optional: bool = False) -> str:
    if k is None and optional:
        return ""
    return f"@{positive_int(k, 'k', numpy=True)}"


def _is_int(value: object, *, allow_bool: bool = False) -> bool:
    """Whether ``value`` is an integer (Python or numpy), a bool only if ``allow_bool``."""
    return isinstance(value, numbers.Integral) and (allow_bool or not isinstance(value, bool))


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


# ---------------------------------------------------------------------------------------------
# per-query values from the ranks of the relevant items


def _query_values(
    ranks: Sequence[int], gains: Sequence[int], ideal: Sequence[int], specs: Sequence[_Spec]
) -> dict[str, float]:
    """Metric values of one query.

    ``ranks``: 1-based ranks of the retrieved relevant items, increasing; ``gains[i]`` the grade of
    the item at ``ranks[i]``; ``ideal``: the grades of all relevant items, decreasing. Sums run in
    rank order, as in trec_eval, so the values are bit-identical to it.
    """
    n_rel = len(ideal)
    out: dict[str, float] = {}
    for spec in specs:
        k = spec.k
        hits = len(ranks) if k is None else bisect_right(ranks, k)
        kind = spec.kind
        value: float
        if kind == "recall":
            value = hits / n_rel
        elif kind == "precision":
            assert k is not None
            value = hits / k
        elif kind == "hit_rate":
            value = 1.0 if hits else 0.0
        elif kind == "mrr":
            value = 1.0 / ranks[0] if hits else 0.0
        elif kind == "map":
            total = 0.0
            for i in range(hits):
                total += (i + 1) / ranks[i]
            value = total / n_rel
        elif kind in ("ndcg", "ndcg_binary"):
            binary = kind == "ndcg_binary"
            dcg = 0.0
            for i in range(hits):
                dcg += (1 if binary else gains[i]) / math.log2(ranks[i] + 1)
            idcg = 0.0
            for i, grade in enumerate(ideal if k is None else ideal[:k]):
                idcg += (1 if binary else grade) / math.log2(i + 2)
            value = dcg / idcg if idcg > 0 else 0.0
        else:  # mean_rank, median_rank: rank of the first relevant item
            value = float(ranks[0]) if ranks else math.inf
        out[spec.name] = value
    return out


def _aggregate(spec: _Spec, values: list[float]) -> float:
    if not values:
        return math.nan
    if spec.kind == "median_rank":
        return float(statistics.median(values))
    return math.fsum(values) / len(values)


def _result(
    specs: Sequence[_Spec],
    per_query: dict[str, dict[str, float]],
    *,
    empty: Sequence[str] = (),
    missing: Sequence[str] = (),
    unjudged: Sequence[str] = (),
) -> EvaluationResult:
    means = {s.name: _aggregate(s, [v[s.name] for v in per_query.values()]) for s in specs}
    return EvaluationResult(
        metrics=tuple(s.name for s in specs),
        means=MappingProxyType(means),
        per_query=MappingProxyType({q: MappingProxyType(v) for q, v in per_query.items()}),
        empty_queries=tuple(empty),
        missing_queries=tuple(missing),
        unjudged_queries=tuple(unjudged),
    )


# ---------------------------------------------------------------------------------------------
# ranks: count the candidates ranked above each relevant one


def _to_float32(values: npt.NDArray[Any], what: str) -> _FloatRow:
    """Scores as trec_eval sees them: float64, then rounded to float32; NaN rejected."""
    if values.dtype.kind not in "iuf":
        raise InvalidInputError(f"{what} must be real numbers, got dtype {values.dtype}")
    if values.dtype == np.float32:
        if np.isnan(values).any():
            raise InvalidInputError(f"{what} contain NaN")
        return values
    as64 = values.astype(np.float64, copy=False)
    if np.isnan(as64).any():
        raise InvalidInputError(f"{what} contain NaN")
    with np.errstate(over="ignore"):
        return as64.astype(np.float32)


def _score_row(values: list[Any], what: str) -> _FloatRow:
    """A list of Python or numpy real numbers as trec_eval's float32 scores."""
    try:
        row = np.array(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be real numbers: {exc}") from exc
    if row.ndim != 1:
        raise InvalidInputError(f"{what} must be real numbers, not sequences")
    return _to_float32(row, what)


def _above_counts(row: _FloatRow, values: _FloatRow) -> tuple[_IntArray, _IntArray]:
    """For each ``v`` in ``values``: how many entries of ``row`` are ``> v`` and ``== v``."""
    if values.size <= _SCAN_LIMIT:  # a scan of the row per value beats sorting it
        greater = np.array([np.count_nonzero(row > v) for v in values], dtype=np.int64)
        equal = np.array([np.count_nonzero(row == v) for v in values], dtype=np.int64)
        return greater, equal
    ordered = np.sort(row)
    low = np.searchsorted(ordered, values, side="left")
    high = np.searchsorted(ordered, values, side="right")
    return (row.size - high).astype(np.int64), (high - low).astype(np.int64)


def _ranks_from_scores(
    cands: Mapping[str, float], rel: Mapping[str, int], qid: str
) -> list[tuple[int, int]]:
    """``(rank, grade)`` of the relevant candidates present in ``cands``, by increasing rank."""
    what = f"scores of query {qid!r}"
    ids = list(cands)
    if not all(isinstance(doc, str) for doc in ids):
        raise InvalidInputError(f"candidate ids of query {qid!r} must be strings")
    row = _score_row(list(cands.values()), what)
    found = [(doc, grade) for doc, grade in rel.items() if doc in cands]
    if not found:
        return []
    mine = _score_row([cands[doc] for doc, _ in found], what)
    greater, equal = _above_counts(row, mine)
    ties: dict[float, list[str]] = {}
    out: list[tuple[int, int]] = []
    for i, (doc, grade) in enumerate(found):
        rank = int(greater[i]) + 1
        if equal[i] > 1:
            value = float(mine[i])
            tied = ties.get(value)
            if tied is None:
                tied = sorted(ids[j] for j in np.flatnonzero(row == mine[i]))
                ties[value] = tied
            rank += len(tied) - bisect_right(tied, doc)  # tied ids sorting after doc rank first
        out.append((rank, grade))
    out.sort()
    return out


def _ranks_from_list(
    ranking: Sequence[str], rel: Mapping[str, int], qid: str
) -> list[tuple[int, int]]:
    position: dict[str, int] = {}
    for i, doc in enumerate(ranking):
        if not isinstance(doc, str):
            raise InvalidInputError(f"ranked list of query {qid!r} holds a non-string id {doc!r}")
        if position.setdefault(doc, i + 1) != i + 1:
            raise InvalidInputError(f"ranked list of query {qid!r} repeats id {doc!r}")
    return sorted((position[doc], grade) for doc, grade in rel.items() if doc in position)


def ranked_ids(scores: Mapping[str, float]) -> list[str]:
    """Candidate ids in rank order under the tie rule of every metric here (trec_eval's).

    Scores are rounded to float32 and sorted decreasingly; equal scores put the larger id (by
    code point) first.

    >>> ranked_ids({"a": 1.0, "b": 1.0, "c": 2.0})
    ['c', 'b', 'a']
    """
    ids = list(scores)
    if not all(isinstance(doc, str) for doc in ids):
        raise InvalidInputError("candidate ids must be strings")
    row = _score_row([scores[d] for d in ids], "scores")
    keyed = sorted(zip(row.tolist(), ids, strict=True), reverse=True)
    return [doc for _, doc in keyed]


# ---------------------------------------------------------------------------------------------
# dict path


def _relevant_grades(qrels: Qrels) -> dict[str, dict[str, int]]:
    if not isinstance(qrels, Mapping):
        raise InvalidInputError(f"qrels must be a mapping query id -> {{id: grade}}, got {qrels!r}")
    if not qrels:
        raise InvalidInputError("qrels is empty: there is no query to evaluate")
    out: dict[str, dict[str, int]] = {}
    for qid, judged in qrels.items():
        if not isinstance(qid, str):
            raise InvalidInputError(f"query ids must be strings, got {qid!r}")
        if not isinstance(judged, Mapping):
            raise InvalidInputError(f"qrels of query {qid!r} must be a mapping id -> grade")
        rel: dict[str, int] = {}
        for doc, grade in judged.items():
            if not isinstance(doc, str):
                raise InvalidInputError(f"candidate ids must be strings, got {doc!r} in {qid!r}")
            if not _is_int(grade, allow_bool=True):
                raise InvalidInputError(
                    f"grade of {doc!r} in query {qid!r} must be an integer, got {grade!r}"
                )
            if grade > 0:
                rel[doc] = int(grade)
        out[qid] = rel
    return out


def evaluate(
    run: Run, qrels: Qrels, metrics: Iterable[str] | str = DEFAULT_METRICS
) -> EvaluationResult:
    """Evaluate a run against qrels.

    ``run[q]`` is ``{candidate id: score}`` (ranked by the tie rule of :func:`ranked_ids`) or a
    list of ids, best first. The queries are those of ``qrels``: one without a relevant item
    (grade > 0) is listed in ``empty_queries`` and not scored; one missing from ``run`` retrieved
    nothing (all metrics 0, rank ``inf``) and is listed in ``missing_queries``; run queries absent
    from ``qrels`` are listed in ``unjudged_queries`` and ignored.

    >>> r = evaluate({"q": {"a": 0.9, "b": 0.5}}, {"q": {"b": 1}}, ["mrr", "recall@1"])
    >>> r.as_dict()
    {'mrr': 0.5, 'recall@1': 0.0}
    """
    specs = _parse_specs(metrics)
    grades = _relevant_grades(qrels)
    if not isinstance(run, Mapping):
        raise InvalidInputError(f"run must be a mapping query id -> candidates, got {run!r}")
    per_query: dict[str, dict[str, float]] = {}
    empty: list[str] = []
    missing: list[str] = []
    for qid, rel in grades.items():
        entry = run.get(qid)
        if not rel:
            empty.append(qid)
            if entry is not None:
                _ranks_of(entry, rel, qid)  # still validate it
            continue
        if entry is None:
            missing.append(qid)
            ranked: list[tuple[int, int]] = []
        else:
            ranked = _ranks_of(entry, rel, qid)
        ideal = sorted(rel.values(), reverse=True)
        per_query[qid] = _query_values([r for r, _ in ranked], [g for _, g in ranked], ideal, specs)
    unjudged = [qid for qid in run if qid not in grades]
    return _result(specs, per_query, empty=empty, missing=missing, unjudged=unjudged)


def _ranks_of(entry: object, rel: Mapping[str, int], qid: str) -> list[tuple[int, int]]:
    if isinstance(entry, Mapping):
        return _ranks_from_scores(entry, rel, qid)
    if isinstance(entry, Sequence) and _is_sequence(entry):
        return _ranks_from_list(entry, rel, qid)
    raise InvalidInputError(
        f"run of query {qid!r} must be {{id: score}} or a list of ids, got {type(entry).__name__}"
    )


def _single(run: Run, qrels: Qrels, name: str) -> float:
    return evaluate(run, qrels, [name]).means[name]


def recall_at_k(run: Run, qrels: Qrels, k: int) -> float:
    """Mean Recall@k: |relevant in the top k| / |relevant| (trec_eval ``recall_k``)."""
    return _single(run, qrels, "recall" + _check_k(k))


def precision_at_k(run: Run, qrels: Qrels, k: int) -> float:
    """Mean Precision@k: |relevant in the top k| / k, even if fewer are retrieved (``P_k``)."""
    return _single(run, qrels, "precision" + _check_k(k))


def hit_rate_at_k(run: Run, qrels: Qrels, k: int) -> float:
    """Fraction of queries with a relevant item in the top k (trec_eval ``success_k``)."""
    return _single(run, qrels, "hit_rate" + _check_k(k))


def mrr(run: Run, qrels: Qrels, k: int | None = None) -> float:
    """Mean reciprocal rank: 1 / rank of the first relevant item, 0 if it is not in the top k.

    ``k=None`` is trec_eval's ``recip_rank`` (no cutoff).
    """
    return _single(run, qrels, "mrr" + _check_k(k, optional=True))


def mean_average_precision(run: Run, qrels: Qrels, k: int | None = None) -> float:
    """MAP: per query, the sum of Precision@rank over the relevant items retrieved (within k),
    divided by |relevant| (trec_eval ``map``, ``map_cut_k``)."""
    return _single(run, qrels, "map" + _check_k(k, optional=True))


def ndcg(run: Run, qrels: Qrels, k: int | None = None, *, binary: bool = False) -> float:
    """Mean nDCG@k with gain = grade (1 if ``binary``) and discount log2(rank + 1).

    The ideal DCG orders all relevant items by grade and cuts at k (trec_eval ``ndcg_cut_k``;
    ``k=None`` is ``ndcg``).
    """
    return _single(run, qrels, ("ndcg_binary" if binary else "ndcg") + _check_k(k, optional=True))


def mean_rank(run: Run, qrels: Qrels) -> float:
    """Mean over queries of the 1-based rank of the first relevant item (``inf`` if not found)."""
    return _single(run, qrels, "mean_rank")


def median_rank(run: Run, qrels: Qrels) -> float:
    """Median over queries of the 1-based rank of the first relevant item (``inf`` if not found)."""
    return _single(run, qrels, "median_rank")


# ---------------------------------------------------------------------------------------------
# dense path


def _ids(ids: Sequence[str] | None, n: int, what: str) -> list[str] | None:
    if ids is None:
        return None
    out = list(ids)
    if len(out) != n:
        raise InvalidInputError(f"{what} has {len(out)} ids for {n} rows/columns")
    if not all(isinstance(x, str) for x in out):
        raise InvalidInputError(f"{what} must hold strings")
    if len(set(out)) != n:
        raise InvalidInputError(f"{what} holds duplicate ids")
    return out


class _DenseRelevance:
    """Per query, the relevant candidate indices and their grades, from either input form."""

    def __init__(self, relevant: Relevant) -> None:
        self.matrix: npt.NDArray[Any] | None = None
        self.lists: Sequence[Mapping[int, int] | Collection[int]] = ()
        if isinstance(relevant, np.ndarray):
            if relevant.ndim != 2:
                raise InvalidInputError(
                    "a relevance array must be 2-D (queries, candidates); "
                    "give per-query index lists as a list"
                )
            if relevant.dtype.kind not in "biu":
                raise InvalidInputError(f"relevance grades must be integers, got {relevant.dtype}")
            self.matrix = relevant
            self.n_queries = relevant.shape[0]
        elif _is_sequence(relevant):
            self.lists = relevant
            self.n_queries = len(relevant)
        else:
            raise InvalidInputError(
                "relevant must be a 2-D grade array or a list (per query) of indices or "
                f"{{index: grade}}, got {type(relevant).__name__}"
            )
        if self.n_queries == 0:
            raise InvalidInputError("there is no query to evaluate")

    def row(self, q: int, n: int) -> tuple[npt.NDArray[np.intp], list[int]]:
        """Indices (increasing) and grades of the relevant candidates of query ``q``."""
        if self.matrix is not None:
            if self.matrix.shape[1] != n:
                raise DimensionMismatchError(
                    f"relevance matrix has {self.matrix.shape[1]} columns, scores have {n}"
                )
            grades_row = np.asarray(self.matrix[q])
            idx = np.flatnonzero(grades_row > 0)
            return idx, [int(g) for g in grades_row[idx]]
        item = self.lists[q]
        pairs: dict[int, int] = {}
        if isinstance(item, Mapping):
            source: Iterable[tuple[Any, Any]] = item.items()
        elif isinstance(item, Collection) and not isinstance(item, str | bytes):
            source = ((j, 1) for j in (item.tolist() if isinstance(item, np.ndarray) else item))
        else:
            raise InvalidInputError(f"relevant[{q}] must be indices or {{index: grade}}")
        for j, grade in source:
            if not _is_int(j) or not 0 <= int(j) < n:
                raise InvalidInputError(f"relevant[{q}] holds {j!r}, not an index in [0, {n})")
            if not _is_int(grade, allow_bool=True):
                raise InvalidInputError(f"relevant[{q}] grade {grade!r} is not an integer")
            if int(j) in pairs:
                raise InvalidInputError(f"relevant[{q}] repeats index {j}")
            pairs[int(j)] = int(grade)
        keep = sorted(j for j, g in pairs.items() if g > 0)
        return np.array(keep, dtype=np.intp), [pairs[j] for j in keep]


def _score_blocks(
    scores: npt.NDArray[Any] | Iterable[npt.ArrayLike], chunk_size: int | None
) -> Iterator[npt.NDArray[Any]]:
    if isinstance(scores, np.ndarray):
        if scores.ndim != 2:
            raise InvalidInputError(f"scores must be 2-D (queries, candidates), got {scores.shape}")
        step = _chunk_rows(chunk_size, scores.shape[1])
        for start in range(0, scores.shape[0], step):
            yield scores[start : start + step]
        return
    if isinstance(scores, str | bytes) or not isinstance(scores, Iterable):
        raise InvalidInputError(
            "scores must be a 2-D array or an iterable of 2-D row blocks, "
            f"got {type(scores).__name__}"
        )
    for block in scores:
        array = np.asarray(block)
        if array.ndim != 2:
            raise InvalidInputError(f"each score block must be 2-D, got shape {array.shape}")
        yield array


def _chunk_rows(chunk_size: int | None, n_candidates: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // max(1, n_candidates))
    return positive_int(chunk_size, "chunk_size", numpy=True)


def evaluate_dense(
    scores: npt.NDArray[Any] | Iterable[npt.ArrayLike],
    relevant: Relevant,
    metrics: Iterable[str] | str = DEFAULT_METRICS,
    *,
    query_ids: Sequence[str] | None = None,
    candidate_ids: Sequence[str] | None = None,
    chunk_size: int | None = None,
) -> EvaluationResult:
    """Evaluate a dense score matrix, ``chunk_size`` query rows at a time.

    ``scores``: a ``(queries, candidates)`` array (a ``np.memmap`` works), or an iterable of 2-D
    row blocks in query order (e.g. a generator computing them), so the whole matrix never has to
    be in memory. Every candidate is ranked. ``relevant``: a ``(queries, candidates)`` integer grade
    array, or per query a list of relevant indices or ``{index: grade}``; grade <= 0 is not
    relevant. Ties follow :func:`evaluate`: float32 scores, then the larger id first, the id being
    ``candidate_ids[j]`` or, without them, the column index ``j`` itself. With ``candidate_ids``
    the result equals :func:`evaluate` on the same scores as a dict run. Queries are named
    ``query_ids[i]`` or ``str(i)``; those without a relevant item are listed in ``empty_queries``.
    ``chunk_size`` (rows per block of an array) defaults to about 16M scores per block.
    """
    specs = _parse_specs(metrics)
    rel = _DenseRelevance(relevant)
    n_q = rel.n_queries
    qids = _ids(query_ids, n_q, "query_ids") or [str(i) for i in range(n_q)]
    tie_key = _TieKey(None)
    n_cand = -1
    per_query: dict[str, dict[str, float]] = {}
    empty: list[str] = []
    q = 0
    for block in _score_blocks(scores, chunk_size):
        if n_cand < 0:
            n_cand = block.shape[1]
            tie_key = _TieKey(_ids(candidate_ids, n_cand, "candidate_ids"))
        elif block.shape[1] != n_cand:
            raise DimensionMismatchError(
                f"score block has {block.shape[1]} columns, earlier blocks had {n_cand}"
            )
        if q + block.shape[0] > n_q:
            raise InvalidInputError(f"scores have more rows than the {n_q} queries of relevant")
        for row in _to_float32(np.asarray(block), "scores"):
            idx, grades = rel.row(q, n_cand)
            qid = qids[q]
            q += 1
            if idx.size == 0:
                empty.append(qid)
                continue
            ranked = sorted(zip(_dense_ranks(row, idx, tie_key), grades, strict=True))
            per_query[qid] = _query_values(
                [r for r, _ in ranked], [g for _, g in ranked], sorted(grades, reverse=True), specs
            )
    if q != n_q:
        raise InvalidInputError(f"scores have {q} rows, relevant has {n_q} queries")
    return _result(specs, per_query, empty=empty)


class _TieKey:
    """Tie order of the dense path: the candidate index, or the rank of its id (made on demand)."""

    def __init__(self, ids: list[str] | None) -> None:
        self.ids = ids
        self._key: npt.NDArray[np.int64] | None = None

    def greater(self, tied: npt.NDArray[np.intp], j: int) -> int:
        """How many of the ``tied`` candidates rank before candidate ``j`` (larger id first)."""
        if self.ids is None:
            return int(np.count_nonzero(tied > j))
        if self._key is None:
            self._key = _lexical_key(self.ids)
        return int(np.count_nonzero(self._key[tied] > self._key[j]))


def _dense_ranks(row: _FloatRow, idx: npt.NDArray[np.intp], tie_key: _TieKey) -> list[int]:
    """1-based ranks of candidates ``idx`` (in that order) among all of ``row``."""
    mine = row[idx]
    greater, equal = _above_counts(row, mine)
    ranks = greater + 1
    for t in np.flatnonzero(equal > 1):
        ranks[t] += tie_key.greater(np.flatnonzero(row == mine[t]), int(idx[t]))
    return [int(r) for r in ranks]


def _lexical_key(ids: Sequence[str]) -> npt.NDArray[np.int64]:
    """Position of each id in increasing code-point order (Python's ``str`` order)."""
    key = np.empty(len(ids), dtype=np.int64)
    key[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids), dtype=np.int64)
    return key


def evaluate_embeddings(
    queries: npt.ArrayLike,
    candidates: npt.ArrayLike,
    relevant: Relevant,
    metrics: Iterable[str] | str = DEFAULT_METRICS,
    *,
    query_ids: Sequence[str] | None = None,
    candidate_ids: Sequence[str] | None = None,
    chunk_size: int | None = None,
) -> EvaluationResult:
    """Evaluate dot-product retrieval of ``queries`` (q, d) over ``candidates`` (n, d).

    Scores are computed ``chunk_size`` queries at a time (``queries[i:j] @ candidates.T``, in
    float32 unless an input is float64) and ranked as in :func:`evaluate_dense`; normalise the rows
    first for cosine similarity.
    """
    q_mat = _embedding_matrix(queries, "queries")
    c_mat = _embedding_matrix(candidates, "candidates")
    if q_mat.shape[1] != c_mat.shape[1]:
        raise DimensionMismatchError(
            f"queries have dimension {q_mat.shape[1]}, candidates {c_mat.shape[1]}"
        )
    dtype = np.result_type(q_mat.dtype, c_mat.dtype, np.float32)
    c_t = c_mat.astype(dtype, copy=False).T
    step = _chunk_rows(chunk_size, c_mat.shape[0])

    def blocks() -> Iterator[npt.NDArray[Any]]:
        for start in range(0, q_mat.shape[0], step):
            yield q_mat[start : start + step].astype(dtype, copy=False) @ c_t

    return evaluate_dense(
        blocks(), relevant, metrics, query_ids=query_ids, candidate_ids=candidate_ids
    )


def _embedding_matrix(values: npt.ArrayLike, what: str) -> npt.NDArray[np.floating[Any]]:
    try:
        matrix = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a numeric array: {exc}") from exc
    if matrix.ndim != 2:
        raise InvalidInputError(f"{what} must be 2-D (n, dim), got shape {matrix.shape}")
    if matrix.dtype.kind not in "iuf":
        raise InvalidInputError(f"{what} must be real numbers, got dtype {matrix.dtype}")
    if matrix.dtype.kind != "f":
        matrix = matrix.astype(np.float64)
    if not np.isfinite(matrix).all():
        raise NonFiniteVectorError(f"{what} contain NaN or inf")
    return matrix
