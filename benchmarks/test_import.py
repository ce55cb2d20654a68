"""What `import newwave` costs, against starting Python at all."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.benchmark(group="import")
@pytest.mark.parametrize(
    "code",
    [
        pytest.param("pass", id="baseline: python -c pass"),
        pytest.param("import newwave", id="import newwave"),
        pytest.param("import newwave; newwave.Recommender", id="newwave.Recommender"),
    ],
)
def test_import(benchmark: Any, code: str) -> None:
    benchmark.pedantic(_run, args=(code,), rounds=5, warmup_rounds=1)
