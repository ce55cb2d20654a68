"""The ``newwave`` command line: ``newwave demo``, ``newwave plugins``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources

from newwave.errors import NewWaveError

__all__ = ["main"]

DEMO_QUERIES = (
    "a melancholic indie ballad with soft vocals about lost love",
    "something upbeat to dance to in the kitchen",
    "calm instrumental music for falling asleep",
    "aggressive music with heavy guitars",
)


def _demo(args: argparse.Namespace) -> int:
    from newwave.recommender import Recommender
    from newwave.types import Track

    lines = resources.files("newwave").joinpath("data/demo_tracks.jsonl").read_text("utf-8")
    tracks = [Track.model_validate(json.loads(line)) for line in lines.splitlines() if line]
    rec = Recommender(fuser=args.fuser)
    rec.add(tracks)
    fields = ", ".join(f"{f} ({e.model_id})" for f, e in rec.fields.items())
    print(f"Indexed {len(rec)} demo tracks; fields: {fields}; fuser: {rec.fuser.name}\n")
    for query in args.query or DEMO_QUERIES:
        print(f"> {query}")
        for hit in rec.search(query, k=args.k):
            why = ", ".join(f"{f} {s:.2f}" for f, s in sorted(hit.scores.items()))
            print(f"  {hit.rank}. {hit.track.title} - {hit.track.artist}  [{why}]")
        print()
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from newwave.plugins import components

    rows = [
        {"kind": kind, "name": r.name, "aliases": list(r.aliases), "plugin": r.plugin,
         "summary": r.summary}
        for kind in ("encoder", "fuser", "retriever")
        for r in components(kind).values()
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        aliases = f" (aliases: {', '.join(row['aliases'])})" if row["aliases"] else ""
        print(f"{row['kind']:<10} {row['name']:<10} plugin {row['plugin']}{aliases}")
        print(f"{'':<21}{row['summary']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``newwave`` command."""
    from newwave import __version__

    parser = argparse.ArgumentParser(prog="newwave", description=__doc__)
    parser.add_argument("--version", action="version", version=f"newwave {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="search a small bundled catalogue")
    demo.add_argument("query", nargs="*", help="queries to run (default: a few examples)")
    demo.add_argument("-k", type=int, default=3, help="results per query (default 3)")
    demo.add_argument("--fuser", default="rrf", help="how to combine fields (default rrf)")
    demo.set_defaults(run=_demo)

    plugins = commands.add_parser("plugins", help="list the registered components")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except NewWaveError as exc:
        print(f"newwave: error: {exc}", file=sys.stderr)
        return 1
    return status
