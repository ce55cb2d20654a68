"""Window-level matching: a ten-second snippet finds the long track it was cut from.

Long tracks are built by concatenating distinct clips of ``src/newwave/data/synth_clips`` (each
clip in one track only; seeded order). Each query is a 10-second snippet cut from inside one
track at a random offset (not aligned to the 3-second patches nor to the clips). One library
indexes the tracks' audio twice with musicnn's real weights: ``mean``, one mean-pooled vector
per track (the baseline), and ``windows``, a windowed field (``Field(..., windows=True)``:
every 9-second window's vector, a track scored by its best window). The snippet is embedded
once and searched in both (``search_audio``); each channel's rank-1 track is read from
``hit.scores``.

``extra_info``: ``windows_hit_rate@1`` and ``mean_hit_rate@1`` (the snippet's own track
first; chance is one over the number of tracks), the sizes, and the time per query. Timed: 5
tracks of 6 clips (36 s each), 10 snippets per track; untimed (``--benchmark-disable``): 3
tracks of 3 clips, 2 snippets each, where the windowed rate must reach 0.9.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import newwave
from newwave import Field, Recommender, Track
from newwave.audio import load_audio
from newwave.encoders.musicnn import SAMPLE_RATE, MusicnnEncoder, packaged_checkpoint

if packaged_checkpoint() is None:
    pytest.skip(
        "the musicnn weights are not installed: pip install --no-deps 'musicnn==0.1.0'",
        allow_module_level=True,
    )

CLIPS = Path(newwave.__file__).parent / "data" / "synth_clips"
SNIPPET_SECONDS = 10.0


def _long_tracks(folder: Path, tracks: int, per_track: int, seed: int) -> dict[str, np.ndarray]:
    """``tracks`` tracks of ``per_track`` distinct clips each, written to ``folder`` as WAV."""
    listed = json.loads((CLIPS / "clips.json").read_text())
    order = np.random.default_rng(seed).permutation(len(listed))[: tracks * per_track]
    out = {}
    for t in range(tracks):
        clips = [listed[i]["file"] for i in order[t * per_track : (t + 1) * per_track]]
        samples = np.concatenate([load_audio(CLIPS / c, sample_rate=SAMPLE_RATE) for c in clips])
        out[f"track-{t}"] = samples
        sf.write(folder / f"track-{t}.wav", samples, SAMPLE_RATE)
    return out


def _snippets(
    tracks: dict[str, np.ndarray], per_track: int, seed: int
) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    length = round(SNIPPET_SECONDS * SAMPLE_RATE)
    out = []
    for name, samples in tracks.items():
        for _ in range(per_track):
            start = int(rng.integers(SAMPLE_RATE // 2, len(samples) - length - SAMPLE_RATE // 2))
            out.append((name, samples[start : start + length]))
    return out


@pytest.mark.benchmark(group="audio windows: a 10 s snippet finds its long track (musicnn)")
def test_snippet_finds_its_track_windows_vs_mean(benchmark: Any, tmp_path: Path) -> None:
    small = benchmark.disabled
    tracks, per_track, queries = (3, 3, 2) if small else (5, 6, 10)
    audio = _long_tracks(tmp_path, tracks, per_track, seed=0)
    encoder = MusicnnEncoder(device="cpu")
    rec = Recommender(
        {"mean": Field(encoder, "audio"), "windows": Field(encoder, "audio", windows=True)},
        fuser="rrf",
    )
    rec.add([Track(id=name, audio=str(tmp_path / f"{name}.wav")) for name in audio])
    snippets = _snippets(audio, queries, seed=1)

    def search_all() -> list[Any]:
        return [
            rec.search_audio((samples, SAMPLE_RATE), k=tracks, depth=tracks)
            for _, samples in snippets
        ]

    began = time.perf_counter()
    results = benchmark.pedantic(search_all, rounds=1 if small else 3)
    per_query = (time.perf_counter() - began) / (len(snippets) * (1 if small else 3))
    right = {"windows": 0, "mean": 0}
    for (truth, _), hits in zip(snippets, results, strict=True):
        for channel in right:
            best = max(hits, key=lambda hit: hit.scores.get(channel, -2.0))
            right[channel] += best.track.id == truth
    windows_rate = right["windows"] / len(snippets)
    mean_rate = right["mean"] / len(snippets)
    benchmark.extra_info.update(
        {
            "baseline": "the mean-pooled channel of the same library, same snippets",
            "windows_hit_rate@1": round(windows_rate, 3),
            "mean_hit_rate@1": round(mean_rate, 3),
            "tracks": tracks,
            "seconds_per_track": round(per_track * 6.0, 1),
            "snippets": len(snippets),
            "chance": round(1 / tracks, 3),
            "seconds_per_query": round(per_query, 3),
        }
    )
    assert windows_rate >= 0.9
