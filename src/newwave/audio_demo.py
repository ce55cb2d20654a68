"""``newwave demo --audio``: search real audio, offline, with musicnn.

The 30 synthesised clips bundled with newwave (``newwave/data/synth_clips``: piano, acoustic
guitar, drums, violin and flute, slow and fast, rendered from MIDI with the FluidR3_GM
soundfont) are tagged by musicnn (MagnaTagATune's 50 tags) and indexed in two fields: their
``auto_tags`` (the five most probable tags, kept in ``track.metadata`` apart from human tags,
matched by words and with all-MiniLM-L6-v2) and their ``audio`` (musicnn's 200-d vectors, one
pass of the network for both). Text requests are answered through the auto-tags; a snippet cut
from one clip is searched by sound (:meth:`~newwave.Recommender.search_audio`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from newwave.types import Hit, Track

__all__ = ["AUDIO_DEMO_QUERIES", "SNIPPET", "clip_tracks", "run_audio_demo"]

#: The text requests of the audio demo.
AUDIO_DEMO_QUERIES = ("slow piano", "fast drums", "a gentle flute melody", "violin strings")
#: The query by example: ``(clip, offset, seconds)`` of the snippet cut from a clip.
SNIPPET = ("guitar-fast-2.ogg", 1.5, 4.0)
_TOP_TAGS = 5


def clip_tracks(folder: Path) -> list[Track]:
    """The bundled clips as tracks (no tags: musicnn gives them), from ``clips.json``."""
    listed = json.loads((folder / "clips.json").read_text(encoding="utf-8"))
    return [
        Track(
            id=Path(clip["file"]).stem,
            audio=str(folder / clip["file"]),
            metadata={"instrument": clip["instrument"], "tempo": clip["tempo"]},
        )
        for clip in listed
    ]


def run_audio_demo(queries: Sequence[str] = (), *, k: int = 3) -> int:
    """Index the bundled clips with musicnn and print the answers to a few requests and to a
    snippet; ``queries`` replace the default text requests."""
    with resources.as_file(resources.files("newwave").joinpath("data/synth_clips")) as folder:
        return _run(Path(folder), list(queries) or list(AUDIO_DEMO_QUERIES), k)


def _run(folder: Path, queries: list[str], k: int) -> int:
    from newwave.audio import load_audio
    from newwave.encoders.musicnn import MusicnnEncoder
    from newwave.fields import Field
    from newwave.recommender import Recommender

    started = time.perf_counter()
    tracks = clip_tracks(folder)
    print(f"Audio demo: {len(tracks)} synthesised clips (FluidR3_GM soundfont, MIT licence)")
    musicnn = MusicnnEncoder()
    probabilities, vectors = musicnn.tag_probabilities_and_vectors([str(t.audio) for t in tracks])
    labels = musicnn.labels
    for track, row in zip(tracks, probabilities, strict=True):
        best = sorted(range(len(labels)), key=lambda j: (-row[j], j))[:_TOP_TAGS]
        track.metadata["auto_tags"] = [labels[j] for j in best]
        track.metadata["tagged_by"] = musicnn.model_id
    rec = Recommender(
        {
            "auto_tags": Field(["bm25", "minilm"], source="metadata.auto_tags"),
            "audio": Field(musicnn, source="audio"),
        }
    )
    rec.add(tracks, vectors={"audio": vectors})  # the vectors of the tagging pass
    seconds = time.perf_counter() - started
    print(
        f"Tagged and indexed {len(rec)} clips in {seconds:.1f} s with musicnn "
        f"({musicnn.model_id}); fields: auto_tags (bm25 + minilm), audio (musicnn)"
    )
    for query in queries:
        print(f"\n> {query}")
        _print(rec.search(query, k=k))
    clip, offset, length = SNIPPET
    snippet = load_audio(folder / clip, sample_rate=16000, offset=offset, duration=length)
    print(f"\n> the sound of {length:g} s of {clip} (from {offset:g} s), by audio")
    _print(rec.search_audio((snippet, 16000), k=k))
    return 0


def _print(hits: Sequence[Hit]) -> None:
    for hit in hits:
        why = "  ".join(f"{f} {s:.2f}" for f, s in sorted(hit.scores.items()))
        found = hit.track.metadata.get("auto_tags")
        tags = ", ".join(map(str, found)) if isinstance(found, list) else ""
        print(f"  {hit.rank}. {hit.track.id:<15} {why}")
        print(f"     musicnn tags: {tags}")
