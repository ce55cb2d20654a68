"""Build the demo catalogue that ``newwave demo`` searches, from the MusicCaps CSV.

MusicCaps (Google, CC BY-SA 4.0) describes 5,521 ten-second YouTube clips, each with a caption
written by a musician and a list of aspects (genre, instruments, mood...). This script keeps a
seeded random sample of the AudioSet-eval split, reads it with :func:`newwave.readers.read_tracks`
(so the demo's tags are parsed exactly as a user's catalogue would be) and writes one Track per
line to ``src/newwave/data/musiccaps_demo.jsonl``::

    python scripts/make_demo_catalogue.py /work/shared/data/musiccaps/musiccaps-public.csv

The library never reads the CSV: it ships the JSONL written here (see MUSICCAPS_LICENSE.md).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from newwave.readers import read_tracks
from newwave.types import Track

DATA = Path(__file__).resolve().parent.parent / "src" / "newwave" / "data"
COLUMNS = {"id": "ytid", "description": "caption", "tags": "aspect_list"}
METADATA = ["start_s", "audioset_positive_labels", "is_audioset_eval"]


def demo_tracks(csv_path: Path, *, count: int, seed: int) -> list[Track]:
    """``count`` clips of the eval split, sampled with ``seed``, in the CSV's order."""
    clips = [
        track
        for track in read_tracks(csv_path, columns=COLUMNS, metadata=METADATA)
        if track.metadata.get("is_audioset_eval") is True and track.description
    ]
    if len(clips) < count:
        raise SystemExit(f"{csv_path} has only {len(clips)} eval clips with a caption")
    chosen = sorted(random.Random(seed).sample(range(len(clips)), count))
    return [_demo_track(clips[i]) for i in chosen]


def _demo_track(clip: Track) -> Track:
    start = clip.metadata["start_s"]
    labels = clip.metadata.get("audioset_positive_labels")
    return Track(
        id=clip.id,
        title=f"{clip.id} @ {start}s",
        description=clip.description,
        tags=clip.tags,
        metadata={
            "audioset_labels": [x for x in str(labels or "").split(",") if x],
            "start_s": start,
            "source": "MusicCaps",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="musiccaps-public.csv")
    parser.add_argument(
        "--output", type=Path, default=DATA / "musiccaps_demo.jsonl", help="the JSONL to write"
    )
    parser.add_argument("--count", type=int, default=300, help="clips to keep (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    args = parser.parse_args()
    tracks = demo_tracks(args.csv, count=args.count, seed=args.seed)
    lines = (
        json.dumps(t.model_dump(mode="json", exclude_defaults=True), ensure_ascii=False)
        for t in tracks
    )
    args.output.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    size = args.output.stat().st_size
    print(f"wrote {len(tracks)} tracks ({size / 1024:.0f} KiB) to {args.output}")


if __name__ == "__main__":
    main()
