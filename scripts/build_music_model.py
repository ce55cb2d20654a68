"""Rebuild the adapters and heads of the ``minilm-music`` encoder from their recipe, byte for byte.

The recipe (``src/newwave/data/minilm-music/recipe.json``) names the training data (the
MusicCaps CSV, by SHA-256: the rows of its train split, ``is_audioset_eval`` false; the
evaluation split is held out and checked never to train), the backbone (all-MiniLM-L6-v2, by the
SHA-256 of its files) and every training setting. The build trains on one CPU thread with
deterministic algorithms and writes ``adapters.safetensors``, ``adapters.json``,
``heads.safetensors`` and ``biencoder.json``::

    python scripts/build_music_model.py ../shared/data/musiccaps/musiccaps-public.csv
    python scripts/build_music_model.py musiccaps-public.csv --out /tmp/heads --check

``--check`` compares the SHA-256 of the built heads and adapters with the recipe's
``heads_sha256`` and ``adapters_sha256`` (exit 1 when they differ); ``--record`` writes them
into the recipe. Without ``--out``, the shipped
directory is rewritten.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from newwave._storage import write_json
from newwave.encoders.minilm_music import MODEL_DIR
from newwave.train.recipe import build_heads, read_recipe

RECIPE = MODEL_DIR / "recipe.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="musiccaps-public.csv")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help=f"default: {RECIPE}")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help=f"default: {MODEL_DIR}")
    parser.add_argument("--check", action="store_true", help="compare with the recipe's hash")
    parser.add_argument("--record", action="store_true", help="write the hash into the recipe")
    args = parser.parse_args()
    recipe = read_recipe(args.recipe)
    started = time.perf_counter()
    result = build_heads(recipe, args.data, args.out)
    print(
        f"{recipe.name}: {result.pairs} training pairs ({result.held_out_tracks} held-out tracks "
        f"never trained on), {result.steps} steps, {time.perf_counter() - started:.0f} s\n"
        f"{result.directory / 'heads.safetensors'}: sha256 {result.heads_sha256}\n"
        f"{result.directory / 'adapters.safetensors'}: sha256 {result.adapters_sha256}"
    )
    if args.record:
        recorded = recipe.model_copy(
            update={
                "heads_sha256": result.heads_sha256,
                "adapters_sha256": result.adapters_sha256,
            }
        )
        write_json(args.recipe, recorded.model_dump(mode="json"))
        print(f"recorded in {args.recipe}")
    if args.check:
        if result.matches_recipe:
            print("identical to the recipe's heads_sha256 and adapters_sha256")
            return 0
        print(
            f"DIFFERENT from the recipe's heads_sha256 ({recipe.heads_sha256}) or "
            f"adapters_sha256 ({recipe.adapters_sha256})"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
