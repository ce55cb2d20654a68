"""Benchmarks: run with `make bench` (timed) or `pytest benchmarks --benchmark-disable` (once each).

Each group times newwave next to a baseline measured in the same run; compare medians within a
group, not across machines. A baseline's test name contains "baseline"; a test that measures its
baseline itself names it in ``extra_info["baseline"]`` (benchmarks/README.md).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import pytest

os.environ["NEWWAVE_LOAD_PLUGINS"] = ""


def _median_seconds(call: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


@pytest.fixture(scope="session")
def median_s() -> Callable[[Callable[[], object], int], float]:
    """Times a baseline inside a benchmark: the median seconds of ``rounds`` calls of ``call``."""
    return _median_seconds
