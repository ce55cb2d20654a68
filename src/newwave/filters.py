"""Metadata filters for search: ``where={"year": {">=": 2000}, "genre": ["rock", "pop"]}``.

A filter maps keys to conditions; a track matches when every condition holds.

- **Keys** are ``Track.metadata`` keys, or the Track attributes ``title``, ``artist``,
  ``album`` and ``tags``.
- **Conditions**: a scalar means equality (``"artist": "Nina Simone"``); a list means membership
  (``"genre": ["rock", "pop"]``); a dict applies operators, all of which must hold:
  ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``
  (``"year": {">=": 2000, "<": 2010}``).
- **Tags** (and any list-valued metadata) match a condition when one of their items does:
  ``"tags": "jazz"`` keeps tracks tagged jazz.
- **Missing values**: a track without the key (or with ``None``) matches no condition.
- **Types**: a value of another type is unequal (``!=`` and ``not in`` match it, ``==`` and
  ``in`` do not); ranges compare numbers with numbers and strings with strings only.
  ``True``/``False`` are not numbers here.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from newwave.errors import InvalidInputError
from newwave.types import Track

__all__ = ["OPERATORS", "Filter", "compile_filter"]

Filter = Callable[[Track], bool]

_ATTRIBUTES = ("title", "artist", "album", "tags")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: The operators a condition may use.
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


def compile_filter(where: Mapping[str, Any], *, known_keys: Iterable[str] | None = None) -> Filter:
    """A predicate for ``where``. With ``known_keys``, a key outside them (a typo) is an error."""
    if not isinstance(where, Mapping):
        raise InvalidInputError(
            f"where must be a dict of key -> condition, got {type(where).__name__}"
        )
    known = None if known_keys is None else set(known_keys) | set(_ATTRIBUTES)
    checks: list[tuple[str, Callable[[Any], bool]]] = []
    for key, condition in where.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"where keys must be non-empty strings, got {key!r}")
        if known is not None and key not in known:
            raise InvalidInputError(
                f"no track has the key {key!r}; keys: {', '.join(sorted(known))}"
            )
        checks.append((key, _condition(key, condition)))

    def matches(track: Track) -> bool:
        return all(_any_item(_value(track, key), check) for key, check in checks)

    return matches


def _value(track: Track, key: str) -> Any:
    if key in _ATTRIBUTES:
        return getattr(track, key)
    return track.metadata.get(key)


def _any_item(value: Any, check: Callable[[Any], bool]) -> bool:
    if value is None:
        return False
    if isinstance(value, (list, tuple)):
        return any(item is not None and check(item) for item in value)
    return check(value)


def _condition(key: str, condition: Any) -> Callable[[Any], bool]:
    if isinstance(condition, Mapping):
        if not condition:
            raise InvalidInputError(f"where[{key!r}] has no operators; use {', '.join(OPERATORS)}")
        parts = [_operation(key, op, operand) for op, operand in condition.items()]
        return lambda value: all(part(value) for part in parts)
    if isinstance(condition, (list, tuple, set, frozenset)):
        return _operation(key, "in", condition)
    return _operation(key, "==", condition)


def _operation(key: str, op: Any, operand: Any) -> Callable[[Any], bool]:
    if op in ("==", "!="):
        _check_scalar(key, op, operand)
        equal = op == "=="
        return lambda value: (_same_kind(value, operand) and value == operand) is equal
    if op in ("in", "not in"):
        if not isinstance(operand, (list, tuple, set, frozenset)) or not operand:
            raise InvalidInputError(f"where[{key!r}][{op!r}] needs a non-empty list of values")
        for item in operand:
            _check_scalar(key, op, item)
        inside = op == "in"
        options = list(operand)
        return lambda value: any(_same_kind(value, o) and value == o for o in options) is inside
    if op in _COMPARE:
        if not (_is_number(operand) or isinstance(operand, str)):
            raise InvalidInputError(
                f"where[{key!r}][{op!r}] compares numbers or strings, got {operand!r}"
            )
        compare = _COMPARE[op]
        return lambda value: _comparable(value, operand) and compare(value, operand)
    raise InvalidInputError(
        f"unknown operator {op!r} in where[{key!r}]; use {', '.join(OPERATORS)}"
    )


def _check_scalar(key: str, op: str, operand: Any) -> None:
    if not (isinstance(operand, (str, bool)) or _is_number(operand)):
        raise InvalidInputError(
            f"where[{key!r}][{op!r}] takes strings, numbers or booleans, got {operand!r}"
        )


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _same_kind(value: Any, operand: Any) -> bool:
    if isinstance(value, bool) or isinstance(operand, bool):
        return isinstance(value, bool) and isinstance(operand, bool)
    return (_is_number(value) and _is_number(operand)) or type(value) is type(operand)


def _comparable(value: Any, operand: Any) -> bool:
    return (_is_number(value) and _is_number(operand)) or (
        isinstance(value, str) and isinstance(operand, str)
    )
