"""Metadata filters for search: ``where={"year": {">=": 2000}, "genre": ["rock", "pop"]}``.

A filter maps keys to conditions; a track matches when every condition holds.

- **Keys** are ``Track.metadata`` keys, or the Track attributes ``title``, ``artist``,
  ``album`` and ``tags``.
- **Conditions**: a scalar means equality (``"artist": "Nina Simone"``); a list means membership
  (``"genre": ["rock", "pop"]``); a dict applies operators, all of which must hold:
  ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``
  (``"year": {">=": 2000, "<": 2010}``).
- **Ignoring case**: ``~=``, ``!~=``, ``~in`` and ``not ~in`` are ``==``, ``!=``, ``in`` and
  ``not in`` with strings compared by their Unicode case folding (``str.casefold``: "MARA
  LIND" ~= "mara lind", "STRASSE" ~= "straße"); :func:`ignore_case` turns a filter's equality
  and membership conditions into these (``newwave search --ignore-case``). No index serves
  them: SQLite folds every string the key has, so they cost time in proportion to the tracks
  (benchmarks/test_filters.py), where exact equality is an index lookup.
- **Tags** (and any list-valued metadata) match a condition when one of their items does:
  ``"tags": "jazz"`` keeps tracks tagged jazz.
- **Missing values**: a track without the key (or with ``None``) matches no condition.
- **Types**: a value of another type is unequal (``!=`` and ``not in`` match it, ``==`` and
  ``in`` do not); ranges compare numbers with numbers and strings with strings only.
  ``True``/``False`` are not numbers here.

Filters run in Python (:func:`compile_filter`) or in SQLite, with the same results, over a table
of indexed values (:data:`VALUES_SCHEMA`): :func:`filter_values` gives a track's rows,
:func:`filter_sql` compiles ``where`` to a ``SELECT`` of the matching tracks' rowids, and
:func:`check_keys` refuses unknown keys with indexed lookups. The SQL of the case-folding
operators calls ``casefold(text)``, which :func:`add_sql_functions` registers on a connection.
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from newwave.errors import InvalidInputError
from newwave.types import Track

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "OPERATORS",
    "VALUES_SCHEMA",
    "Filter",
    "ValueRow",
    "add_sql_functions",
    "check_keys",
    "compile_filter",
    "filter_sql",
    "filter_values",
    "ignore_case",
]

Filter = Callable[[Track], bool]

ValueRow: TypeAlias = tuple[str, str, str | None, int | float | None]
"""One row of ``track_values`` without its track: ``(key, kind, text, num)``."""

#: The table :func:`filter_values` fills and :func:`filter_sql` queries. ``kind`` is ``'s'`` (a
#: string in ``text``), ``'n'`` (a number in ``num``), ``'b'`` (a boolean, 0 or 1 in ``num``),
#: ``'o'`` (a value no operand equals: a dict, a nested list, NaN) or ``'-'`` (a key whose value is
#: None or holds no item: it makes the key known and matches nothing). A number is stored exactly,
#: an ``int`` as INTEGER, a ``float`` as REAL, except an int beyond 64 bits: ``num`` is then the
#: nearest float (clamped to the largest finite one) and ``text`` the exact remainder, encoded so
#: that text order is numeric order (``text`` is NULL for a zero remainder).
VALUES_SCHEMA = """\
CREATE TABLE IF NOT EXISTS track_values (
    track INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT,
    num
);
CREATE INDEX IF NOT EXISTS track_values_text ON track_values (key, kind, text);
CREATE INDEX IF NOT EXISTS track_values_num ON track_values (key, kind, num);
CREATE INDEX IF NOT EXISTS track_values_track ON track_values (track);
"""

_ATTRIBUTES = ("title", "artist", "album", "tags")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: The operators a condition may use.
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "~=", "!~=", "~in", "not ~in")
#: Each equality or membership operator and its case-folding twin.
_FOLDING = {"==": "~=", "!=": "!~=", "in": "~in", "not in": "not ~in"}
_EQUALITY = ("==", "!=", "~=", "!~=")
_MEMBERSHIP = ("in", "not in", "~in", "not ~in")

# A validated condition: (operator, operand) pairs that must all hold; the operand of "in" and
# "not in" is a tuple.
_Operations: TypeAlias = list[tuple[str, Any]]


def compile_filter(where: Mapping[str, Any], *, known_keys: Iterable[str] | None = None) -> Filter:
    """A predicate for ``where``. With ``known_keys``, a key outside them (a typo) is an error."""
    if known_keys is None:
        parsed = _parse(where)
    else:
        known = set(known_keys)
        parsed = _parse(where, known.__contains__, lambda: known)
    checks = [(key, _python_check(operations)) for key, operations in parsed]

    def matches(track: Track) -> bool:
        return all(_any_item(_value(track, key), check) for key, check in checks)

    return matches


def ignore_case(where: Mapping[str, Any]) -> dict[str, Any]:
    """``where`` with its equality and membership conditions ignoring case (see above).

    ``{"artist": "mara lind", "year": {">=": 2000}}`` becomes
    ``{"artist": {"~=": "mara lind"}, "year": {">=": 2000}}``; ranges are kept as they are.
    """
    if not isinstance(where, Mapping):
        raise InvalidInputError(
            f"where must be a dict of key -> condition, got {type(where).__name__}"
        )
    folded: dict[str, Any] = {}
    for key, condition in where.items():
        if isinstance(condition, Mapping):
            folded[key] = {_FOLDING.get(op, op): operand for op, operand in condition.items()}
        elif isinstance(condition, (list, tuple, set, frozenset)):
            folded[key] = {"~in": condition}
        else:
            folded[key] = {"~=": condition}
    return folded


def add_sql_functions(connection: sqlite3.Connection) -> None:
    """Register on ``connection`` the SQL functions :func:`filter_sql` may call: ``casefold``."""
    connection.create_function("casefold", 1, _casefold_sql, deterministic=True)


def _casefold_sql(text: Any) -> Any:
    return text.casefold() if isinstance(text, str) else text


def check_keys(
    where: Mapping[str, Any], has_key: Callable[[str], bool], keys: Callable[[], Iterable[str]]
) -> None:
    """Validate ``where`` as ``compile_filter(where, known_keys=keys())`` does, asking per key.

    ``has_key(key)`` says whether some track has the metadata key, e.g.
    ``SELECT 1 FROM track_values WHERE key = ? LIMIT 1``; ``keys()``, called only for the error
    message, lists the metadata keys. The Track attributes are always known.
    """
    _parse(where, lambda key: _storable(key) and has_key(key), keys)


def filter_values(track: Track) -> list[ValueRow]:
    """The ``(key, kind, text, num)`` rows of ``track`` in ``track_values`` (see VALUES_SCHEMA).

    One row per item of a list, none for a None item; a key whose value gives no row (None, an
    empty list) gets one ``'-'`` row. Raises InvalidInputError for a string SQLite cannot store
    (a lone surrogate), which Track's JSON cannot hold either.
    """
    rows: dict[ValueRow, None] = {}
    for key in _ATTRIBUTES:
        for kind, text, num in _rows(track, key, getattr(track, key)):
            rows[key, kind, text, num] = None
    for key, value in track.metadata.items():
        if key in _ATTRIBUTES:
            continue  # the attribute wins, as in _value
        if not _storable(key):
            raise InvalidInputError(f"track {track.id!r}: the metadata key {key!r} is not UTF-8")
        found = list(_rows(track, key, value))
        for kind, text, num in found or [("-", None, None)]:
            rows[key, kind, text, num] = None
    return list(rows)


def filter_sql(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A ``SELECT`` of the distinct rowids of the tracks ``where`` keeps, and its parameters.

    It reads ``track_values`` (see VALUES_SCHEMA), and ``tracks`` only for an empty ``where``
    (``SELECT rowid FROM tracks``); it may be embedded as ``rowid IN (...)``. Each key is one
    ``SELECT track`` per kind of row that can match (``key = ? AND kind = ?`` and the condition on
    ``text`` or ``num``, so that the indexes serve it), joined by UNION; keys by INTERSECT.
    Raises as :func:`compile_filter` does.
    """
    parsed = _parse(where)
    if not parsed:
        return "SELECT rowid FROM tracks", []
    keys = [_sql_branches(key, operations) if _storable(key) else [] for key, operations in parsed]
    params = [arg for branches in keys for _, args in branches for arg in args]
    if len(keys) == 1 and len(keys[0]) == 1:
        return "SELECT DISTINCT" + keys[0][0][0].removeprefix("SELECT"), params
    if len(keys) == 1 and keys[0]:
        return " UNION ".join(sql for sql, _ in keys[0]), params
    selects = []
    for branches in keys:
        if not branches:  # no row of any kind can match
            selects.append("SELECT track FROM track_values WHERE 0")
        elif len(branches) == 1:
            selects.append(branches[0][0])
        else:
            selects.append(f"SELECT track FROM ({' UNION ALL '.join(sql for sql, _ in branches)})")
    return " INTERSECT ".join(selects), params


def _parse(
    where: Mapping[str, Any],
    is_known: Callable[[str], bool] | None = None,
    known: Callable[[], Iterable[str]] = tuple,
) -> list[tuple[str, _Operations]]:
    """Validate ``where``: its keys (with ``is_known``, that they are known) and conditions."""
    if not isinstance(where, Mapping):
        raise InvalidInputError(
            f"where must be a dict of key -> condition, got {type(where).__name__}"
        )
    parsed = []
    for key, condition in where.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"where keys must be non-empty strings, got {key!r}")
        if is_known is not None and key not in _ATTRIBUTES and not is_known(key):
            names = set(known()) | set(_ATTRIBUTES)
            raise InvalidInputError(
                f"no track has the key {key!r}; keys: {', '.join(sorted(names))}"
            )
        parsed.append((key, _condition(key, condition)))
    return parsed


def _condition(key: str, condition: Any) -> _Operations:
    if isinstance(condition, Mapping):
        if not condition:
            raise InvalidInputError(f"where[{key!r}] has no operators; use {', '.join(OPERATORS)}")
        return [_operation(key, op, operand) for op, operand in condition.items()]
    if isinstance(condition, (list, tuple, set, frozenset)):
        return [_operation(key, "in", condition)]
    return [_operation(key, "==", condition)]


def _operation(key: str, op: Any, operand: Any) -> tuple[str, Any]:
    if op in _EQUALITY:
        _check_scalar(key, op, operand)
        return OPERATORS[OPERATORS.index(op)], operand
    if op in _MEMBERSHIP:
        if not isinstance(operand, (list, tuple, set, frozenset)) or not operand:
            raise InvalidInputError(f"where[{key!r}][{op!r}] needs a non-empty list of values")
        for item in operand:
            _check_scalar(key, op, item)
        return OPERATORS[OPERATORS.index(op)], tuple(operand)
    if op in _COMPARE:
        if not (_is_number(operand) or isinstance(operand, str)):
            raise InvalidInputError(
                f"where[{key!r}][{op!r}] compares numbers or strings, got {operand!r}"
            )
        return OPERATORS[OPERATORS.index(op)], operand
    raise InvalidInputError(
        f"unknown operator {op!r} in where[{key!r}]; use {', '.join(OPERATORS)}"
    )


def _check_scalar(key: str, op: str, operand: Any) -> None:
    if not (isinstance(operand, (str, bool)) or _is_number(operand)):
        raise InvalidInputError(
            f"where[{key!r}][{op!r}] takes strings, numbers or booleans, got {operand!r}"
        )


# --- Python ------------------------------------------------------------------------------------


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


def _python_check(operations: _Operations) -> Callable[[Any], bool]:
    parts = [_python_operation(op, operand) for op, operand in operations]
    return lambda value: all(part(value) for part in parts)


def _python_operation(op: str, operand: Any) -> Callable[[Any], bool]:
    if op in _EQUALITY or op in _MEMBERSHIP:
        options = (operand,) if op in _EQUALITY else operand
        inside = not op.startswith(("!", "not"))
        if "~" not in op:
            return lambda value: any(_same_kind(value, o) and value == o for o in options) is inside
        folded = [(o, _fold(o)) for o in options]
        return lambda value: (
            any(_same_kind(value, o) and _fold(value) == f for o, f in folded) is inside
        )
    compare = _COMPARE[op]
    return lambda value: _comparable(value, operand) and compare(value, operand)


def _fold(value: Any) -> Any:
    """A string's case folding; other values as they are."""
    return value.casefold() if isinstance(value, str) else value


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


# --- SQL ---------------------------------------------------------------------------------------

_INT64 = range(-(2**63), 2**63)
_REST = "COALESCE(text, '1')"  # a number's remainder past num; '1' encodes zero
_FLIP = str.maketrans("0123456789abcdef", "fedcba9876543210")


def _rows(track: Track, key: str, value: Any) -> Iterable[tuple[str, str | None, Any]]:
    """(kind, text, num) for each item of ``value`` that is not None."""
    if value is None:
        return
    for item in value if isinstance(value, (list, tuple)) else (value,):
        if item is None:
            continue
        if isinstance(item, bool):
            yield "b", None, int(item)
        elif isinstance(item, str):
            if not _storable(item):
                raise InvalidInputError(f"track {track.id!r}: {key!r} holds a string not UTF-8")
            yield "s", item, None
        elif _is_number(item):
            num, rest = _number(item)
            yield "n", rest, num
        else:
            yield "o", None, None


def _storable(text: str) -> bool:
    """Whether SQLite can hold ``text``: not when it has a lone surrogate."""
    return _surrogate(text) < 0


def _surrogate(text: str) -> int:
    """The index of the first lone surrogate in ``text`` (what UTF-8 cannot encode), or -1."""
    if text.isascii():
        return -1
    try:
        text.encode()
    except UnicodeEncodeError as error:
        return error.start
    return -1


def _number(value: int | float) -> tuple[int | float, str | None]:
    """``(num, text)`` for a number: itself, or for an int beyond 64 bits its nearest float
    (at most the largest finite one) and the remainder as :func:`_int_key`, None for zero."""
    if isinstance(value, float):
        return float(value), None
    value = int(value)
    if value in _INT64:
        return value, None
    try:
        approx = float(value)
    except OverflowError:
        approx = sys.float_info.max if value > 0 else -sys.float_info.max
    rest = value - int(approx)
    return approx, (_int_key(rest) if rest else None)


def _int_key(value: int) -> str:
    """A text for a nonzero int, ordered (byte-wise) as the ints are; '0…' < '1' (zero) < '2…'."""
    digits = format(abs(value), "x")
    body = format(len(digits), "08x") + digits
    return "2" + body if value > 0 else "0" + body.translate(_FLIP)


# A condition on a row's text or num for each kind of row it can hold on: {kind: (sql, args)},
# with None for "always"; a kind left out never matches. The sql is never NULL on a row of its kind.
_KindConditions: TypeAlias = dict[str, tuple[str | None, list[Any]]]
_KINDS = ("s", "n", "b", "o")  # '-' rows match no condition


def _sql_branches(key: str, operations: _Operations) -> list[tuple[str, list[Any]]]:
    """One ``SELECT track`` per kind of row on which all of ``operations`` can hold."""
    conditions = [_sql_operation(op, operand) for op, operand in operations]
    branches = []
    for kind in _KINDS:
        if not all(kind in condition for condition in conditions):
            continue
        sql = f"SELECT track FROM track_values WHERE key = ? AND kind = '{kind}'"
        args: list[Any] = [key]
        for condition in conditions:
            term, term_args = condition[kind]
            if term is not None:
                sql += f" AND ({term})"
                args.extend(term_args)
        branches.append((sql, args))
    return branches


def _sql_operation(op: str, operand: Any) -> _KindConditions:
    if op in _EQUALITY or op in _MEMBERSHIP:
        equal = _sql_equal_any((operand,) if op in _EQUALITY else operand, fold="~" in op)
        if not op.startswith(("!", "not")):
            return equal
        return {
            kind: (None, []) if kind not in equal else (f"NOT ({equal[kind][0]})", equal[kind][1])
            for kind in _KINDS
        }
    if isinstance(operand, str):
        cut = _surrogate(operand)
        if cut < 0:
            return {"s": (f"text {op} ?", [operand])}
        # stored strings have no surrogate, so they compare with the operand as with its prefix
        # before the first one followed by U+E000, the code point after the surrogates
        return {"s": ("text < ?" if op[0] == "<" else "text >= ?", [operand[:cut] + "\ue000"])}
    num, rest = _number(operand)
    # (num, rest) orders like the numbers: num first, then the remainder among equal nums
    sql = f"num {op[0]}= ? AND (num {op[0]} ? OR {_REST} {op} ?)"
    return {"n": (sql, [num, num, rest or "1"])}


def _sql_equal_any(options: Iterable[Any], *, fold: bool = False) -> _KindConditions:
    """The rows equal to one of ``options``; with ``fold``, strings by their case folding."""
    strings: dict[str, None] = {}
    bools: dict[int, None] = {}
    exact: dict[int | float, None] = {}
    inexact: list[tuple[int | float, str]] = []
    for option in options:
        if isinstance(option, bool):
            bools[int(option)] = None
        elif isinstance(option, str):
            # stored strings are plain str (Track converts subclasses); _same_kind wants the type
            if type(option) is str and _storable(option):
                strings[option.casefold() if fold else option] = None
        else:
            num, rest = _number(option)
            if rest is None:
                exact[num] = None
            else:
                inexact.append((num, rest))
    conditions: _KindConditions = {}
    if strings:
        text = "casefold(text)" if fold else "text"
        conditions["s"] = (f"{text} IN ({_marks(strings)})", list(strings))
    if bools:
        conditions["b"] = (f"num IN ({_marks(bools)})", list(bools))
    numbers = [f"num IN ({_marks(exact)}) AND {_REST} = '1'"] if exact else []
    numbers += [f"num = ? AND {_REST} = ?"] * len(inexact)
    if numbers:
        args = [*exact, *(arg for pair in inexact for arg in pair)]
        conditions["n"] = (
            numbers[0] if len(numbers) == 1 else " OR ".join(f"({n})" for n in numbers),
            args,
        )
    return conditions


def _marks(values: Mapping[Any, None]) -> str:
    return ", ".join("?" * len(values))
