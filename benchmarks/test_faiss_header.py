"""Peak memory of loading a crafted FAISS index whose counts claim far more than the file holds.

A saved ``Flat`` retriever of 300 x 384 vectors (a 0.46 MB ``index.faiss``) has the count of
its vector data patched to claim 2 GiB. Each benchmark loads it in a fresh process:
``faiss.read_index`` (the baseline: FAISS allocates the claimed size, then fails when the file
ends) against ``Retriever.load`` (newwave checks the file's layout first and raises
``IndexCorruptError``). ``extra_info`` has the growth of the process's peak RSS during the call
(Linux ``VmHWM`` after resetting it, once the modules that loading imports are imported), in
MB, and the error. The claim is 64 MiB under
``--benchmark-disable``. Linux only (``/proc``); skipped elsewhere.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GROUP = "peak memory, loading a 0.46 MB FAISS index that claims 2 GiB"
_FLAT_COUNT_AT = 74  # IxM2 header (37 bytes), IxFI header (37 bytes), then the float count

_MEASURE = """
import json, sys, time

def status(field):  # Linux: kB of the current process (VmRSS now, VmHWM its peak)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

import faiss
from newwave import Retriever
from newwave.plugins import load_retriever
load_retriever("faiss", dim=4)  # import what loading imports, before measuring
root, path, mode = sys.argv[1:4]
run = (lambda: faiss.read_index(path)) if mode == "faiss" else (lambda: Retriever.load(root))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS to the current RSS
before = status("VmRSS")
began = time.perf_counter()
try:
    run()
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
print(json.dumps({"seconds": time.perf_counter() - began, "error": error,
                  "peak_rss_growth_mb": (status("VmHWM") - before) / 1024}))
"""


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    from newwave._storage import resolve_directory
    from newwave.index.faiss import FaissRetriever

    claim = 64 * 2**20 if request.config.getoption("benchmark_disable") else 2 * 2**30
    retriever = FaissRetriever(384)
    rows = np.random.default_rng(0).standard_normal((300, 384)).astype(np.float32)
    retriever.add([f"t{i}" for i in range(300)], rows)
    root = retriever.save(tmp_path_factory.mktemp("crafted") / "index")
    path = resolve_directory(root) / "index.faiss"
    data = bytearray(path.read_bytes())
    assert data[37:41] == b"IxFI"
    struct.pack_into("<Q", data, _FLAT_COUNT_AT, claim // 4)
    path.write_bytes(bytes(data))
    return {"root": root, "path": path, "claim_mb": claim / 2**20}


def _measure(mode: str, crafted: dict[str, Any]) -> dict[str, Any]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("measuring peak RSS needs Linux /proc")
    command = [sys.executable, "-c", _MEASURE, str(crafted["root"]), str(crafted["path"]), mode]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        file_mb=round(crafted["path"].stat().st_size / 2**20, 2), claim_mb=crafted["claim_mb"]
    )
    return result


@pytest.mark.benchmark(group=GROUP)
def test_faiss_read_index_baseline(benchmark: Any, crafted: dict[str, Any]) -> None:
    result = benchmark.pedantic(_measure, args=("faiss", crafted), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["error"] is not None  # FAISS fails too, once it has allocated


@pytest.mark.benchmark(group=GROUP)
def test_newwave_retriever_load(benchmark: Any, crafted: dict[str, Any]) -> None:
    result = benchmark.pedantic(_measure, args=("newwave", crafted), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["error"].startswith("IndexCorruptError")
    assert result["peak_rss_growth_mb"] < min(16, 0.05 * result["claim_mb"])
