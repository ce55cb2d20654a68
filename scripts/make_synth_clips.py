"""Synthesise the real-audio clips in ``src/newwave/data/synth_clips/`` from seeded MIDI.

Each clip is a short piece written here (a seeded random melody, chords or drum pattern), saved
as a General MIDI file, rendered by FluidSynth with the FluidR3_GM soundfont (MIT licence) at
16 kHz, averaged to mono, cut to 6 seconds, brought to -20 dBFS RMS and written as OGG/Vorbis.
Five instruments (piano, acoustic guitar, drums, violin, flute), slow (60-72 BPM, long soft
notes) or fast (160-180 BPM, short loud notes), three pieces each: 30 clips, and ``clips.json``
listing each clip's instrument, tempo, BPM, GM program and seed. Needs Debian's ``fluidsynth``
and ``fluid-soundfont-gm`` (``apt-get install fluidsynth fluid-soundfont-gm``)::

    python scripts/make_synth_clips.py [--out src/newwave/data/synth_clips]

The same FluidSynth, soundfont and libvorbis give the same audio (the files' bytes differ in
their random OGG stream serial numbers).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "newwave" / "data" / "synth_clips"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RATE = 16000
SECONDS = 6.0
TPB = 480  # MIDI ticks per quarter note

# instrument -> General MIDI program (0-based; None: the drum channel) and pitch range
INSTRUMENTS: dict[str, tuple[int | None, int, int]] = {
    "piano": (0, 48, 84),  # Acoustic Grand Piano
    "guitar": (24, 40, 76),  # Acoustic Guitar (nylon)
    "drums": (None, 0, 0),  # Standard kit on channel 10
    "violin": (40, 55, 88),  # Violin
    "flute": (73, 72, 96),  # Flute
}
TEMPI = {"slow": (60, 72), "fast": (160, 180)}
PIECES = 3
MAJOR = (0, 2, 4, 5, 7, 9, 11)
KICK, SNARE, HAT, OPEN_HAT, CRASH = 36, 38, 42, 46, 49


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(events: list[tuple[int, bytes]], bpm: float) -> bytes:
    """A format-0 MIDI file: ``events`` are (absolute tick, message bytes)."""
    track = bytearray()
    track += b"\x00\xff\x51\x03" + struct.pack(">I", round(60_000_000 / bpm))[1:]
    now = 0
    for tick, message in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        track += _varlen(tick - now) + message
        now = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPB)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _note(events: list[tuple[int, bytes]], channel: int, start: int, length: int, pitch: int,
          velocity: int) -> None:  # fmt: skip
    events.append((start, bytes([0x90 | channel, pitch, velocity])))
    events.append((start + length, bytes([0x80 | channel, pitch, 0])))


def _scale(low: int, high: int, key: int) -> list[int]:
    return [p for p in range(low, high + 1) if (p - key) % 12 in MAJOR]


def melodic_piece(
    rng: random.Random, instrument: str, tempo: str, beats: int
) -> list[tuple[int, bytes]]:
    """A melody (a random walk on a major scale), with chords for piano and guitar."""
    program, low, high = INSTRUMENTS[instrument]
    assert program is not None
    events: list[tuple[int, bytes]] = [(0, bytes([0xC0, program]))]
    key = rng.randrange(12)
    scale = _scale(low, high, key)
    fast = tempo == "fast"
    step = TPB // 4 if fast else TPB * 2  # sixteenths or half notes
    velocity = (85, 110) if fast else (40, 60)
    position = rng.randrange(len(scale) // 3, 2 * len(scale) // 3)
    tick = 0
    while tick < beats * TPB:
        length = step * rng.choice((1, 1, 2))
        position = min(max(position + rng.choice((-2, -1, -1, 1, 1, 2)), 0), len(scale) - 1)
        _note(events, 0, tick, int(length * 0.9), scale[position], rng.randint(*velocity))
        tick += length
    if instrument in ("piano", "guitar"):  # chords below: one per bar (fast: broken, in eighths)
        roots = [0, 5, 7, 3] if rng.random() < 0.5 else [0, 3, 5, 4]
        for bar in range(beats // 4 + 1):
            degree = roots[bar % len(roots)]
            chord = [_scale(low - 12, high, key)[degree + i] for i in (0, 2, 4)]
            start = bar * 4 * TPB
            if fast:
                for i in range(8):
                    _note(events, 1, start + i * TPB // 2, TPB // 2 - 20, chord[i % 3],
                          rng.randint(70, 95))  # fmt: skip
            else:
                for pitch in chord:
                    _note(events, 1, start, 4 * TPB - 40, pitch, rng.randint(35, 50))
        events.append((0, bytes([0xC1, program])))
    return events


def drum_piece(rng: random.Random, tempo: str, beats: int) -> list[tuple[int, bytes]]:
    """A rock beat: slow, kick and snare on the beats with quarter hats; fast, eighth-note
    kicks and sixteenth hats with fills."""
    events: list[tuple[int, bytes]] = []
    fast = tempo == "fast"
    ch = 9
    sixteenth = TPB // 4
    for beat in range(beats):
        start = beat * TPB
        if beat % 4 == 0 and (fast or beat == 0):
            _note(events, ch, start, sixteenth, CRASH, 100 if fast else 60)
        if fast:
            _note(
                events,
                ch,
                start,
                sixteenth,
                KICK if beat % 2 == 0 else SNARE,
                rng.randint(100, 120),
            )
            for s in range(4):
                hat = OPEN_HAT if rng.random() < 0.1 else HAT
                _note(events, ch, start + s * sixteenth, sixteenth, hat, rng.randint(70, 100))
            if rng.random() < 0.5:
                _note(events, ch, start + 2 * sixteenth, sixteenth, KICK, rng.randint(90, 110))
            if rng.random() < 0.3:
                _note(events, ch, start + 3 * sixteenth, sixteenth, SNARE, rng.randint(70, 100))
        else:
            _note(
                events, ch, start, TPB // 2, KICK if beat % 2 == 0 else SNARE, rng.randint(55, 75)
            )
            _note(events, ch, start, TPB // 2, HAT, rng.randint(35, 55))
    return events


def render(midi: bytes, fluidsynth: str) -> np.ndarray:
    """Mono float32 at 16 kHz, ``SECONDS`` long, at -20 dBFS RMS."""
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp, "piece.mid"), Path(tmp, "piece.wav")
        mid.write_bytes(midi)
        subprocess.run(
            [fluidsynth, "-ni", "-q", "-g", "0.5", "-r", str(RATE), "-F", str(wav),
             str(SOUNDFONT), str(mid)],
            check=True, capture_output=True,
        )  # fmt: skip
        data, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == RATE, rate
    mono = data.mean(axis=1)[: round(SECONDS * RATE)]
    if mono.size < round(SECONDS * RATE):
        raise SystemExit(f"the rendering is {mono.size / RATE:.2f} s long, shorter than {SECONDS}")
    rms = float(np.sqrt(np.mean(mono**2)))
    mono = mono * (0.1 / rms)
    peak = float(np.abs(mono).max())
    if peak > 0.99:
        mono *= 0.99 / peak
    return mono.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None or not SOUNDFONT.is_file():
        raise SystemExit("needs fluidsynth and fluid-soundfont-gm: apt-get install both")
    args.out.mkdir(parents=True, exist_ok=True)
    clips = []
    for instrument in INSTRUMENTS:
        for tempo, (low, high) in TEMPI.items():
            for piece in range(PIECES):
                seed = args.seed * 1000 + len(clips)
                rng = random.Random(seed)
                bpm = rng.randint(low, high)
                beats = int(SECONDS * bpm / 60) + 2  # past the cut, so no clip fades out early
                events = (
                    drum_piece(rng, tempo, beats)
                    if instrument == "drums"
                    else melodic_piece(rng, instrument, tempo, beats)
                )
                name = f"{instrument}-{tempo}-{piece + 1}.ogg"
                samples = render(midi_file(events, bpm), fluidsynth)
                sf.write(args.out / name, samples, RATE, format="OGG", subtype="VORBIS")
                program = INSTRUMENTS[instrument][0]
                clips.append(
                    {
                        "file": name,
                        "instrument": instrument,
                        "tempo": tempo,
                        "bpm": bpm,
                        "gm_program": program,
                        "seed": seed,
                        "seconds": SECONDS,
                    }
                )
                print(name, bpm)
    (args.out / "clips.json").write_text(json.dumps(clips, indent=1) + "\n")


if __name__ == "__main__":
    main()
