"""Score-level fusers: the formulas, the tie rule, and properties over many random inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newwave import InvalidInputError, Ranking
from newwave.fusion.score import IntersectFuser, RRFFuser, WeightedFuser


def ranking(pairs: list[tuple[str, float]]) -> Ranking:
    ordered = sorted(pairs, key=lambda p: -p[1])
    return Ranking(tuple(i for i, _ in ordered), tuple(s for _, s in ordered))


ids = st.sampled_from([f"t{i}" for i in range(12)])
scores = st.integers(-1000, 1000).map(lambda x: x / 1000)  # cosines, at float32-like resolution
rankings = st.lists(st.tuples(ids, scores), max_size=10, unique_by=lambda p: p[0]).map(ranking)
field_rankings = st.dictionaries(st.sampled_from(["audio", "lyrics", "tags"]), rankings, max_size=3)


def test_rrf_by_hand() -> None:
    fused = RRFFuser(c=60).fuse(
        {"audio": Ranking(("a", "b"), (0.9, 0.1)), "tags": Ranking(("b", "c"), (0.5, 0.4))}, k=3
    )
    assert fused.ids == ("b", "a", "c")
    # The mean over the two fields of 1 / (60 + rank), 0 where a track is not in a field's ranking.
    assert fused.scores == pytest.approx(((1 / 62 + 1 / 61) / 2, 1 / 61 / 2, 1 / 62 / 2))


def test_weighted_by_hand() -> None:
    fuser = WeightedFuser(weights={"audio": 3.0, "tags": 1.0})
    fused = fuser.fuse(
        {
            "audio": Ranking(("a", "b", "c"), (0.9, 0.5, 0.1)),
            "tags": Ranking(("c", "a"), (0.8, 0.2)),
        },
        k=3,
    )
    # audio norms: a 1, b 0.5, c 0; tags norms: c 1, a 0.  Shares: audio 3/4, tags 1/4.
    assert fused.as_dict() == pytest.approx({"a": 0.75, "b": 0.375, "c": 0.25})


def test_ties_break_by_id() -> None:
    fused = RRFFuser().fuse({"x": Ranking(("b",), (1.0,)), "y": Ranking(("a",), (1.0,))}, k=2)
    assert fused.ids == ("a", "b")


@settings(max_examples=200, deadline=None)
@given(field_rankings, st.integers(1, 15))
def test_rrf_matches_its_formula(per_field: dict[str, Ranking], k: int) -> None:
    fused = RRFFuser().fuse(per_field, k=k)
    expected: dict[str, float] = {}
    for r in per_field.values():
        for rank, track_id in enumerate(r.ids, start=1):
            expected[track_id] = expected.get(track_id, 0.0) + 1 / (60 + rank) / len(per_field)
    best = sorted(expected.items(), key=lambda p: (-p[1], p[0]))[:k]
    assert fused.ids == tuple(i for i, _ in best)
    assert fused.scores == pytest.approx(tuple(s for _, s in best))


@settings(max_examples=200, deadline=None)
@given(field_rankings, st.integers(1, 15))
def test_fused_rankings_are_sorted_cut_and_complete(per_field: dict[str, Ranking], k: int) -> None:
    candidates = {i for r in per_field.values() for i in r.ids}
    for fuser in (RRFFuser(), WeightedFuser()):
        fused = fuser.fuse(per_field, k=k)
        assert len(fused) == min(k, len(candidates))
        assert set(fused.ids) <= candidates
        assert list(fused.scores) == sorted(fused.scores, reverse=True)
        if isinstance(fuser, WeightedFuser):
            assert all(-1e-12 <= s <= 1 + 1e-12 for s in fused.scores)


@settings(max_examples=100, deadline=None)
@given(rankings)
def test_one_field_keeps_its_order(single: Ranking) -> None:
    for fuser in (RRFFuser(), WeightedFuser()):
        fused = fuser.fuse({"only": single}, k=20)
        # Same ids; equal scores may be reordered by the id tie rule, nothing else moves.
        assert set(fused.ids) == set(single.ids)
        original = single.as_dict()
        assert [original[i] for i in fused.ids] == sorted(original.values(), reverse=True)


@settings(max_examples=100, deadline=None)
@given(field_rankings, st.floats(0.1, 10))
def test_scaling_every_weight_changes_nothing(per_field: dict[str, Ranking], factor: float) -> None:
    weights = {"audio": 1.0, "lyrics": 2.0, "tags": 0.5}
    scaled = {f: w * factor for f, w in weights.items()}
    a = WeightedFuser(weights=weights).fuse(per_field, k=10)
    b = WeightedFuser(weights=scaled).fuse(per_field, k=10)
    assert a.scores == pytest.approx(b.scores)


def test_a_missing_field_is_neither_reward_nor_penalty() -> None:
    per_field = {
        "description": Ranking(("lullaby", "rock", "other"), (0.6, 0.5, 0.0)),
        "lyrics": Ranking(("rock",), (0.1,)),  # the lullaby is instrumental: no lyrics at all
    }
    coverage = {"description": {"lullaby", "rock", "other"}, "lyrics": {"rock"}}
    for fuser in (RRFFuser(), WeightedFuser()):
        assert fuser.fuse(per_field, k=2).ids == ("rock", "lullaby")  # penalised without coverage
        fused = fuser.fuse(per_field, k=2, coverage=coverage)
        assert fused.ids == ("lullaby", "rock")
    # RRF: the lullaby is judged on its description alone, the rock song on both fields.
    assert RRFFuser().fuse(per_field, k=2, coverage=coverage).scores == pytest.approx(
        (1 / 61, (1 / 62 + 1 / 61) / 2)
    )


def test_a_track_with_a_field_but_not_retrieved_scores_zero_there() -> None:
    per_field = {"tags": Ranking(("a",), (0.9,)), "lyrics": Ranking(("b",), (0.9,))}
    coverage = {"tags": {"a", "b"}, "lyrics": {"a", "b"}}
    fused = WeightedFuser().fuse(per_field, k=2, coverage=coverage)
    assert fused.as_dict() == pytest.approx({"a": 0.5, "b": 0.5})


@settings(max_examples=100, deadline=None)
@given(field_rankings)
def test_full_coverage_equals_no_coverage(per_field: dict[str, Ranking]) -> None:
    everyone = {f"t{i}" for i in range(12)}
    coverage = dict.fromkeys(per_field, everyone)
    for fuser in (RRFFuser(), WeightedFuser()):
        a = fuser.fuse(per_field, k=12)
        b = fuser.fuse(per_field, k=12, coverage=coverage)
        assert a.ids == b.ids
        assert a.scores == pytest.approx(b.scores)


@settings(max_examples=100, deadline=None)
@given(field_rankings, rankings)
def test_a_field_a_track_lacks_leaves_its_score_alone(
    per_field: dict[str, Ranking], extra: Ranking
) -> None:
    """Adding a field that only other tracks have does not change a track's fused score."""
    extra_ids = set(extra.ids)
    coverage = {**{f: {f"t{i}" for i in range(12)} for f in per_field}, "extra": extra_ids}
    for fuser in (RRFFuser(), WeightedFuser()):
        before = fuser.fuse(per_field, k=12, coverage=coverage).as_dict()
        after = fuser.fuse({**per_field, "extra": extra}, k=24, coverage=coverage).as_dict()
        for track_id, score in before.items():
            if track_id not in extra_ids:
                assert after[track_id] == pytest.approx(score)


def test_no_rankings_fuse_to_nothing() -> None:
    assert len(RRFFuser().fuse({}, k=5)) == 0
    assert len(WeightedFuser().fuse({"a": Ranking()}, k=5)) == 0


@pytest.mark.parametrize("weights", [{"a": -1.0}, {"a": float("nan")}, {"a": "high"}])
def test_bad_weights(weights: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError, match="weight of field 'a'"):
        WeightedFuser(weights=weights)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="k must be"):
        RRFFuser().fuse({}, k=0)
    with pytest.raises(InvalidInputError, match="not a Ranking"):
        RRFFuser().fuse({"a": [("x", 1.0)]}, k=1)  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="c must be"):
        RRFFuser(c=-1)


def test_config_rebuilds_the_fuser() -> None:
    fuser = RRFFuser(c=10, weights={"audio": 2.0})
    assert RRFFuser(**fuser.get_config()).get_config() == fuser.get_config()


def test_intersect_puts_tracks_found_by_every_field_first() -> None:
    per_field = {
        "audio": Ranking(("a", "b", "c"), (0.9, 0.8, 0.1)),
        "lyrics": Ranking(("c", "x"), (0.7, 0.6)),
    }
    coverage = {"audio": {"a", "b", "c", "x"}, "lyrics": {"c", "x"}}  # a, b: instrumentals
    fused = IntersectFuser().fuse(per_field, k=4, coverage=coverage)
    # a and b have no lyrics, so audio alone finds them; c is in both; x lacks from audio's list.
    assert fused.ids[:3] == ("a", "b", "c")
    assert fused.ids[3] == "x"
    assert all(s > 1 for s in fused.scores[:3])
    assert fused.scores[3] <= 1
    strict = IntersectFuser(fill=False).fuse(per_field, k=4, coverage=coverage)
    assert strict.ids == ("a", "b", "c")


@settings(max_examples=100, deadline=None)
@given(field_rankings, st.integers(1, 15))
def test_intersect_keeps_the_weighted_order_within_each_group(
    per_field: dict[str, Ranking], k: int
) -> None:
    weighted = WeightedFuser().fuse(per_field, k=50).as_dict()
    fused = IntersectFuser().fuse(per_field, k=k)
    everywhere = [i for i in fused.ids if all(i in r.ids for r in per_field.values())]
    assert list(fused.ids[: len(everywhere)]) == everywhere  # found-by-all first
    for track_id, score in fused:
        assert score - (1.0 if track_id in everywhere else 0.0) == pytest.approx(weighted[track_id])


def test_intersect_options() -> None:
    with pytest.raises(InvalidInputError, match="fill"):
        IntersectFuser(fill="yes")  # type: ignore[arg-type]
    assert IntersectFuser(fill=False).get_config() == {"fill": False}
