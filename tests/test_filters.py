from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newwave import InvalidInputError, Track
from newwave.filters import compile_filter

TRACKS = [
    Track(id="a", artist="Nina", tags=("jazz", "piano"), metadata={"year": 1965, "live": True}),
    Track(id="b", artist="Kraft", tags=("electronic",), metadata={"year": 1978, "mood": "cold"}),
    Track(id="c", artist="Nina", metadata={"year": "unknown", "mood": ["warm", "sad"]}),
    Track(id="d", metadata={"year": 2011.5, "live": False}),
]


def ids(where: dict[str, Any]) -> list[str]:
    keep = compile_filter(where)
    return [t.id for t in TRACKS if keep(t)]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"artist": "Nina"}, ["a", "c"]),
        ({"artist": ["Kraft", "Nobody"]}, ["b"]),
        ({"tags": "jazz"}, ["a"]),
        ({"mood": "sad"}, ["c"]),  # list-valued metadata: any item
        ({"year": {">=": 1970}}, ["b", "d"]),  # "unknown" is not a number: no match
        ({"year": {">=": 1960, "<": 1970}}, ["a"]),
        ({"year": {"!=": 1965}}, ["b", "c", "d"]),  # "unknown" is unequal to 1965
        ({"year": {"not in": [1965, 1978]}}, ["c", "d"]),
        ({"live": True}, ["a"]),
        ({"live": 1}, []),  # booleans are not numbers
        ({"mood": {"in": ["cold", "warm"]}}, ["b", "c"]),
        ({"artist": "Nina", "tags": "jazz"}, ["a"]),
        ({"missing": "x"}, []),
        ({}, ["a", "b", "c", "d"]),
    ],
)
def test_conditions(where: dict[str, Any], expected: list[str]) -> None:
    assert ids(where) == expected


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ({"year": {"~": 1}}, "unknown operator '~'"),
        ({"year": {}}, "no operators"),
        ({"year": {"in": []}}, "non-empty list"),
        ({"year": {">": [1]}}, "compares numbers or strings"),
        ({"year": {"==": {"a": 1}}}, "takes strings, numbers or booleans"),
        ({"year": None}, "takes strings, numbers or booleans"),
        ({"": 1}, "non-empty strings"),
    ],
)
def test_bad_filters(where: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        compile_filter(where)


def test_unknown_key_is_an_error_when_keys_are_known() -> None:
    with pytest.raises(InvalidInputError, match=r"no track has the key 'yeer'; keys: .*year"):
        compile_filter({"yeer": 1}, known_keys={"year", "mood"})
    assert compile_filter({"artist": "x"}, known_keys=set())(TRACKS[0]) is False


def test_where_must_be_a_mapping() -> None:
    with pytest.raises(InvalidInputError, match="dict"):
        compile_filter([("year", 1)])  # type: ignore[arg-type]


values = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "y", "z"]), st.booleans())
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.none(), values), op=st.sampled_from(sorted(OPS)), operand=st.integers(-5, 5)
)
def test_ranges_match_a_reference(value: Any, op: str, operand: int) -> None:
    track = Track(id="t", metadata={} if value is None else {"v": value})
    is_number = isinstance(value, int) and not isinstance(value, bool)
    expected = is_number and OPS[op](value, operand)
    assert compile_filter({"v": {op: operand}})(track) is expected


@settings(max_examples=300, deadline=None)
@given(value=values, options=st.lists(values, min_size=1, max_size=4))
def test_membership_matches_a_reference(value: Any, options: list[Any]) -> None:
    track = Track(id="t", metadata={"v": value})
    expected = any(type(value) is type(o) and value == o for o in options)
    assert compile_filter({"v": {"in": options}})(track) is expected
    assert compile_filter({"v": {"not in": options}})(track) is (not expected)


@settings(max_examples=300, deadline=None)
@given(value=values, operand=values)
def test_equality_matches_a_reference(value: Any, operand: Any) -> None:
    track = Track(id="t", metadata={"v": value})
    expected = type(value) is type(operand) and value == operand
    assert compile_filter({"v": operand})(track) is expected
    assert compile_filter({"v": {"!=": operand}})(track) is (not expected)
