"""Checks of argument values shared across the library."""

from __future__ import annotations

import numbers
from typing import Any, Literal, overload

from newwave.errors import InvalidInputError

__all__ = ["positive_int"]


@overload
def positive_int(
    value: Any, name: str, *, allow_none: Literal[False] = False, numpy: bool = False
) -> int: ...
@overload
def positive_int(
    value: Any, name: str, *, allow_none: Literal[True], numpy: bool = False
) -> int | None: ...
def positive_int(
    value: Any, name: str, *, allow_none: bool = False, numpy: bool = False
) -> int | None:
    """``value`` as an ``int`` if it is an integer of at least 1, else :class:`InvalidInputError`.

    A bool is rejected. ``allow_none`` also lets ``None`` through (the message then says
    "or None"); ``numpy`` also accepts numpy integers.
    """
    if value is None and allow_none:
        return None
    kind = numbers.Integral if numpy else int
    if isinstance(value, bool) or not isinstance(value, kind) or value < 1:
        either = " or None" if allow_none else ""
        raise InvalidInputError(f"{name} must be a positive integer{either}, got {value!r}")
    return int(value)
