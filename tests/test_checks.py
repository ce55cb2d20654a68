"""The shared check of positive integer arguments."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from newwave._checks import positive_int
from newwave.errors import InvalidInputError


def test_positive_integers_pass_as_int() -> None:
    assert positive_int(3, "k") == 3
    assert positive_int(None, "k", allow_none=True) is None
    value = positive_int(np.int64(5), "k", numpy=True)
    assert value == 5
    assert type(value) is int


@pytest.mark.parametrize("bad", [0, -1, True, False, 2.0, "3", None, np.int64(2)])
def test_anything_else_is_rejected_with_its_name(bad: Any) -> None:
    with pytest.raises(
        InvalidInputError, match="^k must be a positive integer, got " + re.escape(repr(bad)) + "$"
    ):
        positive_int(bad, "k")


def test_the_message_says_when_none_is_allowed() -> None:
    with pytest.raises(
        InvalidInputError, match=r"^top_k must be a positive integer or None, got 0$"
    ):
        positive_int(0, "top_k", allow_none=True)
    with pytest.raises(InvalidInputError, match="got True"):
        positive_int(True, "rate", numpy=True)
    with pytest.raises(InvalidInputError, match="got " + re.escape(repr(np.int32(0)))):
        positive_int(np.int32(0), "rate", numpy=True)
