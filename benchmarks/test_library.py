"""The live library at scale: opening it, adding to it, filtered search (issue: the live store).

A library of N tracks with one 384-d channel is built once through the public API with
precomputed vectors (``Recommender.add(tracks, vectors=...)``), then measured in fresh processes:

- **open**: ``Recommender.load`` (its database, and the channel's saved FAISS index, checked
  against its checksum), against ``faiss.read_index`` of that index file alone; RSS after open
  against the raw size of the vectors (N x 384 x 4 bytes);
- **add 100 tracks** to the open library (one transaction; the index is not rewritten), against
  ``faiss.write_index`` of the whole index, which is what a snapshot save used to cost;
- **filtered search**, ``where`` keeping 1% of the tracks, against the same search unfiltered.

N is 1,000,000 when timed (``NEWWAVE_BENCH_LIBRARY_TRACKS`` overrides it) and 20,000 when the
benchmarks run once untimed (``--benchmark-disable``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newwave import Track

DIM = 384
GROUPS = 100  # metadata "group" = i % 100: a filter on one group keeps 1%
CHUNK = 100_000
ROOT = Path(__file__).resolve().parent.parent

ENCODER = """
import numpy as np
from newwave import Encoder, hookimpl

class WidthEncoder(Encoder):
    \"\"\"Feature-hashed words at 384 dimensions (the vectors of the benchmark are given).\"\"\"

    name = "width-384"
    modalities = frozenset({"text"})

    @property
    def dim(self):
        return 384

    def _encode_batch(self, batch, modality, role):
        out = np.zeros((len(batch), 384), dtype=np.float32)
        for row, text in enumerate(batch):
            for word in text.split():
                out[row, hash(word) % 384] += 1.0
            out[row, 0] += 1e-3
        return out

class Plugin:
    @hookimpl
    def register_encoders(self, register):
        register(WidthEncoder)

from newwave.plugins import get_plugin_manager
get_plugin_manager().register(Plugin(), name="width")
"""


def tracks_count(benchmark: Any) -> int:
    default = 20_000 if benchmark.disabled else 1_000_000
    return int(os.environ.get("NEWWAVE_BENCH_LIBRARY_TRACKS", default))


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def batch(start: int, stop: int) -> list[Track]:
    return [
        Track(id=f"t{i}", description=f"track {i}", metadata={"group": i % GROUPS})
        for i in range(start, stop)
    ]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A saved library of N tracks (N: see the module docstring), built in a child process."""
    disabled = request.config.getoption("benchmark_disable", False)
    n = int(os.environ.get("NEWWAVE_BENCH_LIBRARY_TRACKS", 20_000 if disabled else 1_000_000))
    root = tmp_path_factory.mktemp("library") / "lib"
    out = run(
        f"""
        from benchmarks.test_library import CHUNK, batch, unit_rows
        rng = np.random.default_rng(0)
        Recommender(fields={{"description": "width-384"}}).save({str(root)!r})
        rec = Recommender.load({str(root)!r})
        began = time.perf_counter()
        for start in range(0, {n}, CHUNK):
            stop = min(start + CHUNK, {n})
            rec.add(batch(start, stop), vectors={{"description": unit_rows(rng, stop - start)}})
        rec.save({str(root)!r})
        report(build_s=time.perf_counter() - began, tracks=len(rec))
        """
    )
    assert out["tracks"] == n
    return root


def run(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh Python process; what it passed to ``report(...)``."""
    script = (
        f"import sys, time, json\nsys.path.insert(0, {str(ROOT)!r})\n"
        "import numpy as np\n"
        "from newwave import Recommender, Track\n" + ENCODER + "def rss_gb():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'):\n"
        "            return int(line.split()[1]) / 2**20\n"
        "def report(**values):\n"
        "    print('REPORT ' + json.dumps(values), flush=True)\n" + textwrap.dedent(code)
    )
    env = {**os.environ, "NEWWAVE_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    result: dict[str, Any] = json.loads(lines[-1][len("REPORT ") :])
    return result


def index_file(library: Path) -> Path:
    (found,) = (library / "indexes" / "description").glob("*/index.faiss")
    return found


@pytest.mark.benchmark(group="library: open")
def test_open_library(benchmark: Any, library: Path) -> None:
    measured = benchmark.pedantic(
        run,
        args=(
            f"""
            began = time.perf_counter()
            rec = Recommender.load({str(library)!r})
            opened = time.perf_counter() - began
            report(open_s=opened, rss_gb=rss_gb(), tracks=len(rec))
            """,
        ),
        rounds=1 if benchmark.disabled else 3,
        iterations=1,
    )
    raw_gb = measured["tracks"] * DIM * 4 / 2**30
    benchmark.extra_info.update(
        {
            "tracks": measured["tracks"],
            "open_s": round(measured["open_s"], 3),
            "rss_after_open_gb": round(measured["rss_gb"], 3),
            "raw_index_gb": round(raw_gb, 3),
            "rss_over_raw_index": round(measured["rss_gb"] / raw_gb, 3),
        }
    )


@pytest.mark.benchmark(group="library: open")
def test_read_faiss_index_baseline(benchmark: Any, library: Path) -> None:
    measured = benchmark.pedantic(
        run,
        args=(
            f"""
            import faiss
            began = time.perf_counter()
            index = faiss.read_index({str(index_file(library))!r})
            report(read_s=time.perf_counter() - began, rss_gb=rss_gb(), tracks=index.ntotal)
            """,
        ),
        rounds=1 if benchmark.disabled else 3,
        iterations=1,
    )
    benchmark.extra_info.update(
        {"read_s": round(measured["read_s"], 3), "rss_gb": round(measured["rss_gb"], 3)}
    )


def test_add_100_tracks_to_the_library(benchmark: Any, library: Path) -> None:
    """Adding 100 tracks (vectors given) to the open library, against writing its whole FAISS
    index once (what each save cost when a library was a snapshot of an object)."""
    benchmark.group = "library: add 100 tracks"
    measured = benchmark.pedantic(
        run,
        args=(
            f"""
            import faiss
            from benchmarks.test_library import batch, unit_rows
            rng = np.random.default_rng(int(time.time()))
            rec = Recommender.load({str(library)!r})
            times = []
            for round in range(5):
                start = 10**9 + round * 100 + int(rng.integers(10**6)) * 1000
                tracks, vectors = batch(start, start + 100), unit_rows(rng, 100)
                began = time.perf_counter()
                rec.add(tracks, vectors={{"description": vectors}})
                times.append(time.perf_counter() - began)
            index = rec._channels["description"].index._index
            began = time.perf_counter()
            faiss.write_index(index, {str(library.parent / "whole.faiss")!r})
            write = time.perf_counter() - began
            report(add_s=float(np.median(times)), write_index_s=write)
            """,
        ),
        rounds=1,
        iterations=1,
    )
    (library.parent / "whole.faiss").unlink(missing_ok=True)
    benchmark.extra_info.update(
        {
            "baseline": "faiss.write_index of the whole index, timed in the test",
            "add_100_s": round(measured["add_s"], 3),
            "write_whole_index_s": round(measured["write_index_s"], 3),
            "add_over_write_index": round(measured["add_s"] / measured["write_index_s"], 4),
        }
    )


def test_filtered_search(benchmark: Any, library: Path) -> None:
    """A search whose ``where`` keeps 1% of the tracks, against the same search unfiltered."""
    benchmark.group = "library: filtered search"
    measured = benchmark.pedantic(
        run,
        args=(
            f"""
            rec = Recommender.load({str(library)!r})
            times = {{"filtered": [], "unfiltered": []}}
            for round in range(8):
                for name, where in (("filtered", {{"group": 7}}), ("unfiltered", None)):
                    began = time.perf_counter()
                    hits = rec.search(f"track {{round}}", k=10, where=where)
                    if round:  # the first round warms up
                        times[name].append(time.perf_counter() - began)
                    assert len(hits) == 10
                    if where:
                        assert all(hit.track.metadata["group"] == 7 for hit in hits)
            report(**{{name: float(np.median(values)) for name, values in times.items()}})
            """,
        ),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        {
            "baseline": "the same search without where, timed in the test",
            "filtered_search_s": round(measured["filtered"], 4),
            "unfiltered_search_s": round(measured["unfiltered"], 4),
            "filtered_over_unfiltered": round(measured["filtered"] / measured["unfiltered"], 3),
        }
    )
