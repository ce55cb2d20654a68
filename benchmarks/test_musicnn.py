"""musicnn tagging on real (synthesised) audio: accuracy, text-to-audio retrieval, speed.

The 30 clips of ``src/newwave/data/synth_clips`` (``scripts/make_synth_clips.py``: seeded MIDI
pieces rendered by FluidSynth with the FluidR3_GM soundfont, 6 s, 16 kHz mono OGG) play one of
five instruments (piano, acoustic guitar, drums, violin, flute), slow (60-72 BPM) or fast
(160-180 BPM), three pieces each. Needs the musicnn weights (``pip install --no-deps
'musicnn==0.1.0'``; ``make test`` and ``make bench`` install them); skipped without them.

* ``test_musicnn_tag_clips``: ``MusicnnEncoder.tag_probabilities`` (MTT model) on the 30 files:
  decode, log-mel, network. ``extra_info``: ``instrument_accuracy`` (the most probable of the
  five instrument tags is the one played; chance 0.2), ``tempo_accuracy`` ("fast" above "slow"
  for the fast pieces, the reverse for the slow ones; chance 0.5), and text-to-audio retrieval
  through the tags: each of the seven tags (five instruments, "fast", "slow") as a query, the
  clips ranked by its probability, the clips that play it relevant (``map``, ``mrr``,
  ``precision@3``); audio seconds per second.
* ``test_decode_and_log_mel_baseline``: the same files decoded and turned into musicnn's
  log-mel patches, without the network: the part of the time that is not the model. Its
  ``extra_info`` has ``librosa_tempo_accuracy``, a tempo classifier without learning
  (``librosa.feature.tempo``, fast when it finds 110 BPM or more), against which musicnn's
  ``tempo_accuracy`` compares.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import newwave
from newwave.audio import load_audio
from newwave.encoders.musicnn import MusicnnEncoder, packaged_checkpoint
from newwave.metrics import evaluate

if packaged_checkpoint() is None:
    pytest.skip(
        "the musicnn weights are not installed: pip install --no-deps 'musicnn==0.1.0'",
        allow_module_level=True,
    )

CLIPS = Path(newwave.__file__).parent / "data" / "synth_clips"
GROUP = "musicnn: tag 30 synthesised clips (180 s of 16 kHz audio), CPU"
INSTRUMENTS = ("piano", "guitar", "drums", "violin", "flute")
FAST_BPM = 110


def _clips() -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads((CLIPS / "clips.json").read_text())
    return listed


def _rounds(benchmark: Any) -> dict[str, int]:
    return {"rounds": 1} if benchmark.disabled else {"rounds": 3, "warmup_rounds": 1}


@pytest.mark.benchmark(group=GROUP)
def test_decode_and_log_mel_baseline(benchmark: Any) -> None:
    import librosa

    clips = _clips()
    encoder = MusicnnEncoder(device="cpu")
    files = [str(CLIPS / clip["file"]) for clip in clips]
    patches = benchmark.pedantic(lambda: [encoder.patches(f) for f in files], **_rounds(benchmark))
    assert [p.shape for p in patches] == [(2, 187, 96)] * len(clips)
    right = 0
    for clip, path in zip(clips, files, strict=True):
        y = load_audio(path, sample_rate=16000)
        bpm = float(librosa.feature.tempo(y=y, sr=16000)[0])
        right += ("fast" if bpm >= FAST_BPM else "slow") == clip["tempo"]
    benchmark.extra_info["librosa_tempo_accuracy"] = round(right / len(clips), 3)


@pytest.mark.benchmark(group=GROUP)
def test_musicnn_tag_clips(benchmark: Any) -> None:
    clips = _clips()
    encoder = MusicnnEncoder(device="cpu")
    files = [str(CLIPS / clip["file"]) for clip in clips]
    encoder.tag_probabilities(files[:1])  # load the weights outside the timing
    began = time.perf_counter()
    probabilities = benchmark.pedantic(
        lambda: encoder.tag_probabilities(files), **_rounds(benchmark)
    )
    seconds = time.perf_counter() - began
    labels = encoder.labels
    column = {tag: labels.index(tag) for tag in (*INSTRUMENTS, "fast", "slow")}
    right_instrument = right_tempo = 0
    for clip, row in zip(clips, probabilities, strict=True):
        guess = max(INSTRUMENTS, key=lambda name: row[column[name]])
        right_instrument += guess == clip["instrument"]
        tempo = "fast" if row[column["fast"]] > row[column["slow"]] else "slow"
        right_tempo += tempo == clip["tempo"]
    instrument_accuracy = right_instrument / len(clips)
    tempo_accuracy = right_tempo / len(clips)
    # text -> audio through the tags: query "piano" ranks the clips by P(piano)
    run = {
        tag: {clip["file"]: float(row[j]) for clip, row in zip(clips, probabilities, strict=True)}
        for tag, j in column.items()
    }
    qrels = {
        tag: {c["file"]: 1 for c in clips if tag in (c["instrument"], c["tempo"])} for tag in column
    }
    retrieval = evaluate(run, qrels, ["map", "mrr", "precision@3"]).as_dict()
    rounds = 1 if benchmark.disabled else 4
    benchmark.extra_info.update(
        {
            "baseline": "test_decode_and_log_mel_baseline; chance: 0.2 instrument, 0.5 tempo",
            "instrument_accuracy": round(instrument_accuracy, 3),
            "tempo_accuracy": round(tempo_accuracy, 3),
            **{f"tag_retrieval_{k}": round(float(v), 3) for k, v in retrieval.items()},
            "audio_seconds_per_second": round(180 * rounds / seconds, 1),
        }
    )
    # measured: 26/30 instruments (slow piano heard as guitar), 29/30 tempi
    assert instrument_accuracy >= 0.8
    assert tempo_accuracy >= 0.9
    assert retrieval["map"] >= 0.7
