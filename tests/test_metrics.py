"""Tests of newwave.metrics: hand-computed values, trec_eval parity, the dense path, bad input."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newwave import metrics as metrics_module
from newwave.errors import DimensionMismatchError, InvalidInputError, NonFiniteVectorError
from newwave.metrics import (
    DEFAULT_METRICS,
    METRIC_PATTERNS,
    EvaluationResult,
    evaluate,
    evaluate_dense,
    evaluate_embeddings,
    hit_rate_at_k,
    mean_average_precision,
    mean_rank,
    median_rank,
    mrr,
    ndcg,
    parse_metrics,
    precision_at_k,
    ranked_ids,
    recall_at_k,
)

FAST = settings(max_examples=60, deadline=None)

CUTOFFS = (1, 2, 3, 5, 10, 20)
ALL_METRICS = (
    *(
        f"{m}@{k}"
        for m in ("recall", "precision", "hit_rate", "mrr", "map", "ndcg")
        for k in CUTOFFS
    ),
    *(f"ndcg_binary@{k}" for k in CUTOFFS),
    "mrr",
    "map",
    "ndcg",
    "ndcg_binary",
    "mean_rank",
    "median_rank",
)

# ---------------------------------------------------------------------------------------------
# hand-computed cases


def test_binary_hand_computed() -> None:
    # ranking: a (rel), x, b (rel); relevant = {a, b, c, d}, so |relevant| = 4.
    run = {"q": {"a": 3.0, "x": 2.0, "b": 1.0}}
    qrels = {"q": {"a": 1, "b": 1, "c": 1, "d": 1, "x": 0}}
    r = evaluate(
        run,
        qrels,
        ["recall@1", "recall@3", "precision@3", "precision@5", "mrr", "map", "map@2", "ndcg@3"],
    )
    assert r["recall@1"] == 1 / 4
    assert r["recall@3"] == 2 / 4
    assert r["precision@3"] == 2 / 3
    assert r["precision@5"] == 2 / 5  # divides by K even though only 3 were retrieved
    assert r["mrr"] == 1.0
    # AP: precision at each retrieved relevant item (1/1 at rank 1, 2/3 at rank 3) over |rel| = 4
    assert r["map"] == pytest.approx((1 + 2 / 3) / 4)
    assert r["map@2"] == pytest.approx(1 / 4)  # map_cut divides by |relevant| too
    # DCG@3 = 1/log2(2) + 1/log2(4) = 1.5; IDCG@3 = 1 + 1/log2(3) + 1/log2(4)
    assert r["ndcg@3"] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))


def test_graded_hand_computed() -> None:
    # ranking: c (not judged), b (grade 2), a (grade 1)
    run = {"q": {"a": 1.0, "b": 2.0, "c": 3.0}}
    qrels = {"q": {"a": 1, "b": 2}}
    r = evaluate(run, qrels, ["ndcg@3", "ndcg@2", "ndcg_binary@3", "mrr", "mrr@1", "map"])
    # DCG@3 = 2/log2(3) + 1/log2(4); IDCG@3 = 2/log2(2) + 1/log2(3)
    assert r["ndcg@3"] == pytest.approx((2 / math.log2(3) + 0.5) / (2 + 1 / math.log2(3)))
    # DCG@2 = 2/log2(3); IDCG@2 = 2 + 1/log2(3)
    assert r["ndcg@2"] == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # binary gains: DCG = 1/log2(3) + 1/2, IDCG = 1 + 1/log2(3)
    assert r["ndcg_binary@3"] == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert r["mrr"] == 0.5
    assert r["mrr@1"] == 0.0
    assert r["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_negative_grades_are_not_relevant() -> None:
    # "a" is judged -1 (not relevant): it is no hit and adds no (negative) gain.
    r = evaluate({"q": {"a": 3.0, "b": 2.0}}, {"q": {"a": -1, "b": 2}}, ["ndcg@2", "mrr"])
    assert r["mrr"] == 0.5
    assert r["ndcg@2"] == pytest.approx((2 / math.log2(3)) / 2)


def test_mean_and_median_rank() -> None:
    # first relevant item at ranks 1, 2 and 6
    run = {
        "q1": ["r", "x"],
        "q2": ["x", "r", "r2"],
        "q3": ["x1", "x2", "x3", "x4", "x5", "r"],
    }
    qrels = {"q1": {"r": 1}, "q2": {"r": 1, "r2": 1}, "q3": {"r": 1}}
    r = evaluate(run, qrels, ["mean_rank", "median_rank"])
    assert r.per_metric("mean_rank") == {"q1": 1.0, "q2": 2.0, "q3": 6.0}
    assert r["mean_rank"] == 3.0
    assert r["median_rank"] == 2.0
    assert mean_rank(run, qrels) == 3.0
    assert median_rank(run, qrels) == 2.0


def test_individual_functions_match_evaluate() -> None:
    run = {"q1": {"a": 0.5, "b": 0.4, "c": 0.3}, "q2": {"a": 0.1, "b": 0.9}}
    qrels = {"q1": {"b": 1, "c": 2}, "q2": {"a": 3}}
    r = evaluate(run, qrels, ALL_METRICS)
    assert recall_at_k(run, qrels, 2) == r["recall@2"]
    assert precision_at_k(run, qrels, 1) == r["precision@1"]
    assert hit_rate_at_k(run, qrels, 1) == r["hit_rate@1"]
    assert mrr(run, qrels) == r["mrr"]
    assert mrr(run, qrels, 1) == r["mrr@1"]
    assert mean_average_precision(run, qrels) == r["map"]
    assert mean_average_precision(run, qrels, 2) == r["map@2"]
    assert ndcg(run, qrels, 3) == r["ndcg@3"]
    assert ndcg(run, qrels) == r["ndcg"]
    assert ndcg(run, qrels, 3, binary=True) == r["ndcg_binary@3"]
    # means are over queries: q1 has rr 1/2, q2 has rr 1/2
    assert r["mrr"] == 0.5


def test_result_object() -> None:
    r = evaluate({"q": ["a", "b"]}, {"q": {"b": 1}}, ["MRR", " recall@01 ", "mrr"])
    assert r.metrics == ("mrr", "recall@1")
    assert r.as_dict() == {"mrr": 0.5, "recall@1": 0.0}
    assert r.queries == ("q",)
    assert r.num_queries == 1
    assert r.per_query["q"]["mrr"] == 0.5
    assert "num_queries=1" in repr(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.metrics = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.means["mrr"] = 1.0  # type: ignore[index]
    with pytest.raises(InvalidInputError, match="not evaluated"):
        r.per_metric("map")
    assert isinstance(r, EvaluationResult)


def test_parse_metrics_and_defaults() -> None:
    assert parse_metrics("NDCG@010") == ("ndcg@10",)
    assert parse_metrics(DEFAULT_METRICS) == DEFAULT_METRICS
    assert len(METRIC_PATTERNS) == 13


# ---------------------------------------------------------------------------------------------
# tie rule


def test_ties_put_larger_id_first() -> None:
    assert ranked_ids({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
    assert ranked_ids({"9": 0.0, "10": 0.0, "1": 0.0}) == ["9", "10", "1"]  # lexical, not numeric
    assert evaluate({"q": {"a": 1.0, "b": 1.0}}, {"q": {"a": 1}}, ["mrr"])["mrr"] == 0.5
    assert evaluate({"q": {"a": 1.0, "b": 1.0}}, {"q": {"b": 1}}, ["mrr"])["mrr"] == 1.0


def test_ties_compare_float32_scores() -> None:
    # 1 + 1e-12 and 1.0 are the same float32: a tie, broken by id ("b" first)
    scores = {"a": 1.0 + 1e-12, "b": 1.0}
    assert ranked_ids(scores) == ["b", "a"]
    assert ranked_ids({"a": -0.0, "b": 0.0}) == ["b", "a"]
    assert ranked_ids({"a": 1.0 + 1e-6, "b": 1.0}) == ["a", "b"]  # distinct in float32
    assert evaluate({"q": scores}, {"q": {"a": 1}}, ["mrr"])["mrr"] == 0.5


def test_ties_with_many_relevant_items_use_the_same_rule() -> None:
    # more relevant items than the per-row scan limit: the sort-based counting path
    ids = [f"d{i:03d}" for i in range(120)]
    run = {"q": {d: float(i % 3) for i, d in enumerate(ids)}}
    qrels = {"q": dict.fromkeys(ids[::2], 1)}
    assert len(qrels["q"]) > metrics_module._SCAN_LIMIT
    order = ranked_ids(run["q"])
    ranks = sorted(order.index(d) + 1 for d in qrels["q"])
    expected_ap = sum((i + 1) / rank for i, rank in enumerate(ranks)) / len(ranks)
    assert evaluate(run, qrels, ["map"])["map"] == pytest.approx(expected_ap, abs=1e-15)
    # the dense path with as many relevant items agrees with the dict path
    scores = np.array([[run["q"][d] for d in ids]])
    dense = evaluate_dense(scores, [list(range(0, 120, 2))], ALL_METRICS, candidate_ids=ids)
    assert dense.as_dict() == evaluate(run, qrels, ALL_METRICS).as_dict()


def test_dense_ties_default_to_larger_index_first() -> None:
    scores = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)
    r = evaluate_dense(scores, [[0]], ["mean_rank"])
    assert r["mean_rank"] == 3.0
    r = evaluate_dense(scores, [[2]], ["mean_rank"])
    assert r["mean_rank"] == 1.0
    # with ids, the dict-path rule: "c" > "b" > "a"
    r = evaluate_dense(scores, [[0]], ["mean_rank"], candidate_ids=["c", "a", "b"])
    assert r["mean_rank"] == 1.0


# ---------------------------------------------------------------------------------------------
# queries without relevant items, queries missing from the run


def test_empty_missing_and_unjudged_queries_are_reported() -> None:
    run = {"q1": {"a": 1.0}, "q2": {"a": 1.0}, "q4": {"a": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"a": 0, "b": -1}, "q3": {"a": 2}, "q5": {}}
    r = evaluate(run, qrels, ["mrr", "recall@1", "mean_rank"])
    assert r.empty_queries == ("q2", "q5")
    assert r.missing_queries == ("q3",)
    assert r.unjudged_queries == ("q4",)
    assert r.queries == ("q1", "q3")
    assert dict(r.per_query["q3"]) == {"mrr": 0.0, "recall@1": 0.0, "mean_rank": math.inf}
    assert r["mrr"] == 0.5  # mean over q1 (1.0) and q3 (0.0); q2 and q5 are not averaged
    assert r["mean_rank"] == math.inf


def test_all_queries_empty_gives_nan_means() -> None:
    r = evaluate({"q": {"a": 1.0}}, {"q": {"a": 0}}, ["mrr", "median_rank"])
    assert r.num_queries == 0
    assert r.empty_queries == ("q",)
    assert math.isnan(r["mrr"])
    assert math.isnan(r["median_rank"])


def test_dense_empty_queries_are_reported() -> None:
    scores = np.arange(6, dtype=np.float64).reshape(2, 3)
    grades = np.array([[0, 0, -1], [1, 0, 0]])
    r = evaluate_dense(scores, grades, ["mrr"], query_ids=["x", "y"])
    assert r.empty_queries == ("x",)
    assert r.queries == ("y",)
    assert r["mrr"] == 1 / 3


# ---------------------------------------------------------------------------------------------
# bad input


def test_unknown_metric_lists_valid_names() -> None:
    for bad in ("foo", "recall", "recall@0", "mrr@x", "mean_rank@5", "ndcg@-1", ""):
        with pytest.raises(InvalidInputError, match=r"recall@K") as info:
            evaluate({"q": ["a"]}, {"q": {"a": 1}}, [bad])
        assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError):
        evaluate({"q": ["a"]}, {"q": {"a": 1}}, [])
    with pytest.raises(InvalidInputError):
        evaluate({"q": ["a"]}, {"q": {"a": 1}}, [3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("run", "qrels"),
    [
        ({"q": {"a": math.nan}}, {"q": {"a": 1}}),
        ({"q": {"a": "1.0"}}, {"q": {"a": 1}}),
        ({"q": {"a": 1.0}}, {"q": {"a": 1.5}}),
        ({"q": ["a", "b", "a"]}, {"q": {"a": 1}}),
        ({"q": ["a", 3]}, {"q": {"a": 1}}),
        ({"q": "ab"}, {"q": {"a": 1}}),
        ({"q": {"a": 1.0}}, {}),
        ({"q": {"a": 1.0}}, {"q": [("a", 1)]}),
        ([("q", {"a": 1.0})], {"q": {"a": 1}}),
        ({"q": {"a": math.nan}}, {"q": {"b": 0}}),  # validated even when the query is empty
        ({"q": {"a": [1.0]}}, {"q": {"a": 1}}),
        ({"q": {"a": True}}, {"q": {"a": 1}}),
        ({"q": {"a": None}}, {"q": {"a": 1}}),
        ({"q": {1: 1.0}}, {"q": {"a": 1}}),
        ({1: {"a": 1.0}}, {1: {"a": 1}}),
        ({"q": {"a": 1.0}}, {"q": {1: 1}}),
    ],
)
def test_bad_runs_and_qrels(run: Any, qrels: Any) -> None:
    with pytest.raises(InvalidInputError):
        evaluate(run, qrels, ["mrr"])


def test_bad_k() -> None:
    run, qrels = {"q": ["a"]}, {"q": {"a": 1}}
    for k in (0, -1, 1.5, True, None):
        with pytest.raises(InvalidInputError):
            recall_at_k(run, qrels, k)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        mrr(run, qrels, 0)


def test_bad_dense_input() -> None:
    s = np.zeros((2, 3))
    with pytest.raises(InvalidInputError, match="index"):
        evaluate_dense(s, [[3], [0]], ["mrr"])
    with pytest.raises(InvalidInputError, match="repeats"):
        evaluate_dense(s, [[1, 1], [0]], ["mrr"])
    with pytest.raises(InvalidInputError, match="rows"):
        evaluate_dense(s, [[1]], ["mrr"])
    with pytest.raises(InvalidInputError, match="rows"):
        evaluate_dense(s, [[1], [0], [2]], ["mrr"])
    with pytest.raises(DimensionMismatchError):
        evaluate_dense(s, np.ones((2, 4), dtype=int), ["mrr"])
    with pytest.raises(InvalidInputError, match="integers"):
        evaluate_dense(s, np.ones((2, 3)), ["mrr"])
    with pytest.raises(InvalidInputError):
        evaluate_dense(s, [[0], [0]], ["mrr"], chunk_size=0)
    with pytest.raises(InvalidInputError, match="NaN"):
        evaluate_dense(np.full((2, 3), np.nan), [[0], [0]], ["mrr"])
    with pytest.raises(InvalidInputError):
        evaluate_dense(np.zeros(3), [[0]], ["mrr"])
    with pytest.raises(InvalidInputError, match="duplicate"):
        evaluate_dense(s, [[0], [0]], ["mrr"], candidate_ids=["a", "a", "b"])
    with pytest.raises(InvalidInputError):
        evaluate_dense(s, [[0], [0]], ["mrr"], query_ids=["x"])
    with pytest.raises(InvalidInputError):
        evaluate_dense(s, [], ["mrr"])
    with pytest.raises(DimensionMismatchError):
        evaluate_dense(iter([np.zeros((1, 3)), np.zeros((1, 4))]), [[0], [0]], ["mrr"])
    with pytest.raises(DimensionMismatchError):
        evaluate_embeddings(np.ones((2, 4)), np.ones((3, 5)), [[0], [0]])
    with pytest.raises(NonFiniteVectorError):
        evaluate_embeddings(np.full((2, 4), np.inf), np.ones((3, 4)), [[0], [0]])


# ---------------------------------------------------------------------------------------------
# hypothesis: random runs against pytrec_eval (trec_eval)

_IDS = st.text(alphabet="ab19Zé", min_size=1, max_size=3)
_SCORES = st.one_of(
    st.integers(-3, 3).map(float),  # many ties
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, 1.0 + 1e-12, 1.0 + 1e-7, 1.0000001, -0.0, 0.0]),  # float32 collisions
)
_QIDS = st.sampled_from(["q1", "q2", "q3", "q4", "q5"])


@st.composite
def run_and_qrels(
    draw: st.DrawFn, max_docs: int = 12
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    qrels = draw(
        st.dictionaries(
            _QIDS, st.dictionaries(_IDS, st.integers(-1, 3), max_size=max_docs), min_size=1
        )
    )
    run = draw(st.dictionaries(_QIDS, st.dictionaries(_IDS, _SCORES, max_size=max_docs)))
    return run, qrels


def _trec(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Our metric names computed with pytrec_eval, per query."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    if not qrels:
        return {}
    cuts = ",".join(map(str, CUTOFFS))
    measures = {f"{m}.{cuts}" for m in ("P", "recall", "success", "map_cut", "ndcg_cut")}
    measures |= {"recip_rank", "map", "ndcg"}
    graded = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    binary_qrels = {q: {d: int(g > 0) for d, g in j.items()} for q, j in qrels.items()}
    binary = pytrec_eval.RelevanceEvaluator(binary_qrels, {f"ndcg_cut.{cuts}", "ndcg"}).evaluate(
        run
    )
    out: dict[str, dict[str, float]] = {}
    for q, v in graded.items():
        rr = v["recip_rank"]
        first = round(1 / rr) if rr > 0 else math.inf
        row = {"mrr": rr, "map": v["map"], "ndcg": v["ndcg"], "ndcg_binary": binary[q]["ndcg"]}
        row["mean_rank"] = row["median_rank"] = float(first)
        for k in CUTOFFS:
            row[f"recall@{k}"] = v[f"recall_{k}"]
            row[f"precision@{k}"] = v[f"P_{k}"]
            row[f"hit_rate@{k}"] = v[f"success_{k}"]
            row[f"mrr@{k}"] = rr if first <= k else 0.0
            row[f"map@{k}"] = v[f"map_cut_{k}"]
            row[f"ndcg@{k}"] = v[f"ndcg_cut_{k}"]
            row[f"ndcg_binary@{k}"] = binary[q][f"ndcg_cut_{k}"]
        out[q] = row
    return out


def _assert_matches_trec(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> EvaluationResult:
    ours = evaluate(run, qrels, ALL_METRICS)
    with patch.object(metrics_module, "_SCAN_LIMIT", 0):  # rank by sorting, not by scanning
        assert evaluate(run, qrels, ALL_METRICS) == ours
    scored = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    assert list(ours.queries) == scored
    assert set(ours.empty_queries) == set(qrels) - set(scored)
    assert set(ours.missing_queries) == set(scored) - set(run)
    assert set(ours.unjudged_queries) == set(run) - set(qrels)
    # pytrec_eval only sees scored queries with a non-empty ranking: trec_eval's per-query cache
    # misbehaves on all-negative qrels and on empty rankings (it can hang or reuse stale state),
    # and those queries have no trec_eval value to compare with anyway.
    compared = [q for q in scored if run.get(q)]
    theirs = _trec({q: run[q] for q in compared}, {q: qrels[q] for q in compared})
    for q in scored:
        if q not in compared:  # retrieved nothing
            zero = {m: (math.inf if "rank" in m else 0.0) for m in ALL_METRICS}
            assert dict(ours.per_query[q]) == zero
            continue
        for metric in ALL_METRICS:
            assert ours.per_query[q][metric] == pytest.approx(theirs[q][metric], abs=1e-9, rel=0), (
                q,
                metric,
            )
    return ours


@FAST
@given(run_and_qrels())
def test_matches_pytrec_eval(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]],
) -> None:
    run, qrels = data
    _assert_matches_trec(run, qrels)


@FAST
@given(run_and_qrels(max_docs=60))
def test_matches_pytrec_eval_many_relevant(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]],
) -> None:
    run, qrels = data
    # every retrieved document relevant too: many relevant items per query
    for q, cands in run.items():
        qrels.setdefault(q, {}).update({d: 1 + len(d) % 3 for d in cands})
    _assert_matches_trec(run, qrels)


def test_matches_pytrec_eval_example() -> None:
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(300)]
    run = {
        f"q{j}": {d: float(s) for d, s in zip(ids, rng.integers(0, 50, 300), strict=True)}
        for j in range(20)
    }
    qrels = {
        f"q{j}": {d: int(g) for d, g in zip(ids, rng.integers(-1, 4, 300), strict=True) if g}
        for j in range(20)
    }
    ours = _assert_matches_trec(run, qrels)
    assert ours.num_queries == 20
    assert ours.empty_queries == ours.missing_queries == ()


@FAST
@given(run_and_qrels())
def test_ranked_ids_is_the_metric_order(
    data: tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]],
) -> None:
    run, qrels = data
    for q, cands in run.items():
        order = ranked_ids(cands)
        assert sorted(order) == sorted(cands)
        # a ranked list in that order gives the same values as the scores
        for qrel in (qrels.get(q, {}), dict.fromkeys(list(cands)[:3], 1)):
            if any(g > 0 for g in qrel.values()):
                by_score = evaluate({q: cands}, {q: qrel}, ALL_METRICS)
                by_list = evaluate({q: order}, {q: qrel}, ALL_METRICS)
                assert by_score.as_dict() == by_list.as_dict()


# ---------------------------------------------------------------------------------------------
# dense path: same numbers as the dict path, whatever the chunking


@st.composite
def dense_case(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], list[dict[int, int]], list[str]]:
    n_q = draw(st.integers(1, 6))
    n_c = draw(st.integers(1, 30))
    levels = draw(st.integers(1, 5))  # few distinct scores: many ties
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (n_q, n_c)).astype(np.float64) / 3
    rel = [
        {int(j): int(rng.integers(-1, 4)) for j in rng.choice(n_c, rng.integers(0, n_c + 1), False)}
        for _ in range(n_q)
    ]
    ids = draw(st.lists(_IDS, min_size=n_c, max_size=n_c, unique=True))
    return scores, rel, ids


def _as_dict_inputs(
    scores: np.ndarray[Any, Any], rel: list[dict[int, int]], ids: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    run = {str(i): {ids[j]: float(s) for j, s in enumerate(row)} for i, row in enumerate(scores)}
    qrels = {str(i): {ids[j]: g for j, g in r.items()} for i, r in enumerate(rel)}
    return run, qrels


@FAST
@given(dense_case())
def test_dense_equals_dict(
    case: tuple[np.ndarray[Any, Any], list[dict[int, int]], list[str]],
) -> None:
    scores, rel, ids = case
    run, qrels = _as_dict_inputs(scores, rel, ids)
    expected = evaluate(run, qrels, ALL_METRICS)
    got = evaluate_dense(scores, rel, ALL_METRICS, candidate_ids=ids)
    assert got == expected
    # without ids, ties go to the larger column index: the dict path with zero-padded ids
    padded = [f"{j:04d}" for j in range(scores.shape[1])]
    run, qrels = _as_dict_inputs(scores, rel, padded)
    assert evaluate_dense(scores, rel, ALL_METRICS) == evaluate(run, qrels, ALL_METRICS)


@FAST
@given(dense_case(), st.integers(1, 7))
def test_chunking_does_not_change_results(
    case: tuple[np.ndarray[Any, Any], list[dict[int, int]], list[str]], chunk: int
) -> None:
    scores, rel, ids = case
    whole = evaluate_dense(scores, rel, ALL_METRICS, candidate_ids=ids, chunk_size=10**6)
    assert evaluate_dense(scores, rel, ALL_METRICS, candidate_ids=ids, chunk_size=chunk) == whole
    with patch.object(metrics_module, "_SCAN_LIMIT", 0):  # rank by sorting, not by scanning
        assert evaluate_dense(scores, rel, ALL_METRICS, candidate_ids=ids) == whole
    blocks = (scores[i : i + chunk] for i in range(0, len(scores), chunk))
    assert evaluate_dense(blocks, rel, ALL_METRICS, candidate_ids=ids) == whole
    # a dense grade matrix instead of index -> grade maps
    grades = np.zeros(scores.shape, dtype=np.int64)
    for i, r in enumerate(rel):
        for j, g in r.items():
            grades[i, j] = g
    assert evaluate_dense(scores, grades, ALL_METRICS, candidate_ids=ids, chunk_size=chunk) == whole


def test_index_lists_and_float32_input() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    a = evaluate_dense(scores, [[1, 2], np.array([2])], ALL_METRICS)
    b = evaluate_dense(scores.astype(np.float32), [{1: 1, 2: 1}, {2: 1, 0: 0}], ALL_METRICS)
    assert a == b
    assert a.per_metric("mean_rank") == {"0": 1.0, "1": 3.0}


def test_embeddings_equal_dense_scores() -> None:
    rng = np.random.default_rng(1)
    # small integer embeddings: the dot products are exact whatever the chunking, with ties
    queries = rng.integers(-2, 3, (37, 8)).astype(np.float32)
    cands = rng.integers(-2, 3, (101, 8)).astype(np.float32)
    rel = [list(rng.choice(101, rng.integers(0, 6), replace=False)) for _ in range(37)]
    expected = evaluate_dense(queries @ cands.T, rel, ALL_METRICS)
    for chunk in (1, 5, 37, None):
        got = evaluate_embeddings(queries, cands, rel, ALL_METRICS, chunk_size=chunk)
        assert got == expected
    ids = [f"track-{j}" for j in range(101)]
    run, qrels = _as_dict_inputs(
        (queries @ cands.T).astype(np.float64), [dict.fromkeys(r, 1) for r in rel], ids
    )
    assert evaluate_embeddings(queries, cands, rel, ALL_METRICS, candidate_ids=ids) == evaluate(
        run, qrels, ALL_METRICS
    )


def test_score_blocks_are_consumed_lazily() -> None:
    seen: list[int] = []

    def blocks() -> Iterator[np.ndarray[Any, Any]]:
        for start in range(0, 10, 4):
            seen.append(start)
            yield np.tile(np.arange(5.0), (min(4, 10 - start), 1))

    r = evaluate_dense(blocks(), [[4]] * 10, ["mrr", "median_rank"])
    assert seen == [0, 4, 8]
    assert r["mrr"] == 1.0
    assert r.num_queries == 10


# ---------------------------------------------------------------------------------------------
# the documentation's examples run and print what it shows


def test_docs_examples_print_what_they_show(capsys: pytest.CaptureFixture[str]) -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
    if not doc.exists():
        pytest.skip("docs/metrics.md not present")
    pairs = re.findall(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", doc.read_text(), re.S)
    assert len(pairs) == 2
    for code, shown in pairs:
        exec(compile(code, str(doc), "exec"), {})
        assert capsys.readouterr().out == shown
