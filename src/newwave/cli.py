"""The newwave command line: index a catalogue into a library directory, then search it.

  newwave index tracks.csv my-library --column id=ytid --column description=caption
  newwave search my-library "mellow acoustic guitar with soft female vocals"
  newwave similar my-library TRACK_ID
  newwave info my-library
  newwave demo
  newwave plugins

Errors print "newwave: error: ..." and exit with status 1. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newwave.errors import InvalidInputError, MissingFileError, NewWaveError

if TYPE_CHECKING:
    from newwave.recommender import Recommender
    from newwave.types import Hit, Track

__all__ = ["build_parser", "main"]

DEMO_CATALOGUE = "data/musiccaps_demo.jsonl"
DEMO_FIELDS = {"description": "minilm", "tags": "minilm"}
DEMO_QUERIES = (
    "mellow acoustic guitar with soft female vocals",
    "fast aggressive heavy metal",
    "calm ambient electronic music",
    "upbeat latin dance song with brass",
    "a hip hop beat with a male rapper",
)
_POINTER = "newwave.json"  # the file that marks a saved library (see newwave._storage)
_FORMATS = ("csv", "tsv", "jsonl", "parquet")


# -- newwave demo -----------------------------------------------------------------------------


def demo_tracks() -> list[Track]:
    """The bundled demo catalogue: 300 MusicCaps clips (see data/MUSICCAPS_LICENSE.md)."""
    from newwave.types import Track

    text = resources.files("newwave").joinpath(DEMO_CATALOGUE).read_text(encoding="utf-8")
    return [Track.model_validate_json(line) for line in text.splitlines() if line.strip()]


def _demo(args: argparse.Namespace) -> int:
    from newwave.recommender import Recommender

    started = time.perf_counter()
    tracks = demo_tracks()
    print(f"Demo catalogue: {len(tracks)} clips of MusicCaps (Google, CC BY-SA 4.0)")
    rec = Recommender(DEMO_FIELDS, fuser=args.fuser)
    rec.add(tracks)
    fields = ", ".join(f"{f} ({e.model_id})" for f, e in rec.fields.items())
    seconds = time.perf_counter() - started
    print(f"Indexed {len(rec)} clips in {seconds:.1f} s; fields: {fields}; fuser: {rec.fuser.name}")
    for query in args.query or DEMO_QUERIES:
        print(f"\n> {query}")
        for hit in rec.search(query, k=args.k):
            why = "  ".join(f"{f} {s:.2f}" for f, s in sorted(hit.scores.items()))
            print(f"  {hit.rank}. {hit.track.id}  {why}")
            print(f"     {_shorten(hit.track.description or '', 88)}")
    return 0


# -- newwave index ----------------------------------------------------------------------------


def _index(args: argparse.Namespace) -> int:
    from newwave.readers import read_tracks, scan_music_folder
    from newwave.recommender import Recommender

    started = time.perf_counter()
    fields = _pairs(args.field, "--field", "FIELD=ENCODER")
    columns = _pairs(args.column, "--column", "FIELD=COLUMN")
    source = Path(args.source)
    library = Path(args.library)
    existing = _is_library(library)
    if not existing and library.exists():
        if not library.is_dir():
            raise InvalidInputError(f"{library} exists and is not a directory")
        if any(library.iterdir()):
            raise InvalidInputError(
                f"{library} is not empty and is not a newwave library; choose a new directory"
            )
    if source.is_dir():
        if columns or args.format:
            raise InvalidInputError("--column and --format apply to a catalogue file, not a folder")
        tracks = list(scan_music_folder(source))
    else:
        tracks = list(read_tracks(source, columns=columns or None, format=args.format))
    if not tracks:
        raise InvalidInputError(f"{source} holds no tracks")

    if existing:
        rec = Recommender.load(library)
        _check_same_setup(rec, library, fields, args.fuser)
    else:
        rec = Recommender(fields or None, fuser=args.fuser or "rrf")
    new = sum(track.id not in rec for track in tracks)
    unchanged = sum(track.id in rec and rec.get(track.id) == track for track in tracks)
    encoded = rec.add(tracks)
    rec.save(library)
    seconds = time.perf_counter() - started

    changed = len(tracks) - new - unchanged
    print(f"read {len(tracks)} tracks from {source}: {new} new, {changed} changed, "
          f"{unchanged} unchanged")  # fmt: skip
    per_field = ", ".join(f"{f} {n}" for f, n in encoded.items())
    print(f"encoded: {sum(encoded.values())} field values ({per_field})")
    setup = ", ".join(f"{f}={e.name}" for f, e in rec.fields.items())
    print(f"library {library}: {len(rec)} tracks; fields {setup}; fuser {rec.fuser.name}")
    print(f"saved in {seconds:.1f} s")
    return 0


def _check_same_setup(
    rec: Recommender, library: Path, fields: Mapping[str, str], fuser: str | None
) -> None:
    """A saved library keeps its fields and fuser: asking for others is an error."""
    saved = {f: e.name for f, e in rec.fields.items()}
    if fields and dict(fields) != saved:
        setup = " ".join(f"--field {f}={e}" for f, e in saved.items())
        raise InvalidInputError(
            f"{library} already indexes {setup}; --field cannot change the fields of a "
            "library (index into a new directory instead)"
        )
    if fuser is not None and fuser != rec.fuser.name:
        raise InvalidInputError(
            f"{library} already uses --fuser {rec.fuser.name}; index into a new directory to "
            "use another"
        )


# -- newwave search / similar -----------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    where = _where(args.where)
    rec = _open_library(args.library)
    hits = rec.search(args.query, k=args.k, where=where)
    if args.json:
        _print_json({"query": args.query, "where": where, "hits": _hits_json(hits)})
    else:
        _print_hits(hits, list(rec.fields))
    return 0


def _similar(args: argparse.Namespace) -> int:
    where = _where(args.where)
    rec = _open_library(args.library)
    hits = rec.similar(args.track_id, k=args.k, where=where)
    if args.json:
        _print_json({"track_id": args.track_id, "where": where, "hits": _hits_json(hits)})
    else:
        _print_hits(hits, list(rec.fields))
    return 0


def _hits_json(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "rank": hit.rank,
            "id": hit.track.id,
            "score": hit.score,
            "scores": hit.scores,
            "track": hit.track.model_dump(mode="json"),
        }
        for hit in hits
    ]


def _print_hits(hits: Sequence[Hit], fields: Sequence[str]) -> None:
    """A table: rank, id, title - artist (when any hit has them), fused and per-field scores."""
    if not hits:
        print("no results")
        return
    names = [_shorten(" - ".join(filter(None, (h.track.title, h.track.artist))), 40) for h in hits]
    ids = [_shorten(hit.track.id, 40) for hit in hits]
    columns: list[tuple[str, list[str], str]] = [  # header, cells, alignment
        ("#", [str(hit.rank) for hit in hits], ">"),
        ("id", ids, "<"),
    ]
    if any(names):
        columns.append(("title", names, "<"))
    columns.append(("score", [f"{hit.score:.4f}" for hit in hits], ">"))
    for field in fields:
        cells = [f"{hit.scores[field]:.3f}" if field in hit.scores else "-" for hit in hits]
        columns.append((field, cells, ">"))
    widths = [max(len(header), *map(len, cells)) for header, cells, _ in columns]
    rows = [[header for header, _, _ in columns]]
    rows += [[cells[i] for _, cells, _ in columns] for i in range(len(hits))]
    for row in rows:
        line = "  ".join(
            f"{cell:{align}{width}}"
            for cell, width, (_, _, align) in zip(row, widths, columns, strict=True)
        )
        print(line.rstrip())


# -- newwave info -----------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    from newwave._storage import resolve_directory
    from newwave.config import RecommenderConfig

    rec = _open_library(args.library)
    config = RecommenderConfig.load(resolve_directory(args.library) / "config.json")
    counts = rec.field_counts
    info = {
        "library": str(args.library),
        "tracks": len(rec),
        "fields": {
            name: {
                "encoder": field.encoder.name,
                "options": field.encoder.options,
                "model_id": field.model_id,
                "dim": field.dim,
                "tracks": counts.get(name, 0),
            }
            for name, field in config.fields.items()
        },
        "fuser": config.fuser.model_dump(mode="json"),
        "retriever": config.retriever.model_dump(mode="json"),
        "saved_with": config.versions,
    }
    if args.json:
        _print_json(info)
        return 0
    print(f"library:   {args.library}")
    print(f"tracks:    {len(rec)}")
    print("fields:")
    width = max((len(name) for name in config.fields), default=0)
    for name, field in config.fields.items():
        dim = f"{field.dim}-d" if field.dim is not None else "?-d"
        print(f"  {name:<{width}}  {field.encoder.name}  {field.model_id}  {dim}  "
              f"{counts.get(name, 0)} tracks")  # fmt: skip
        if field.encoder.options:
            print(f"  {'':<{width}}  options {_options(field.encoder.options)}")
    print(f"fuser:     {config.fuser.name}  {_options(config.fuser.options)}".rstrip())
    print(f"retriever: {config.retriever.name}  {_options(config.retriever.options)}".rstrip())
    versions = dict(config.versions)
    saved_by = versions.pop("newwave", "unknown version")
    others = ", ".join(f"{name} {version}" for name, version in versions.items())
    print(f"saved by:  newwave {saved_by}" + (f" ({others})" if others else ""))
    return 0


def _options(options: Mapping[str, Any]) -> str:
    return json.dumps(options, sort_keys=True) if options else ""


# -- newwave plugins --------------------------------------------------------------------------


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


# -- shared helpers ---------------------------------------------------------------------------


def _is_library(path: Path) -> bool:
    return (path / _POINTER).is_file() or (path / "config.json").is_file()


def _open_library(path: str) -> Recommender:
    from newwave.recommender import Recommender

    library = Path(path)
    if not library.exists():
        raise MissingFileError(
            f"no library at {library}; create one with: newwave index SOURCE {library}"
        )
    if not _is_library(library):
        raise InvalidInputError(
            f"{library} is not a newwave library; create one with: newwave index SOURCE LIBRARY"
        )
    return Recommender.load(library)


def _pairs(values: Sequence[str] | None, option: str, form: str) -> dict[str, str]:
    """``["a=b", ...]`` as ``{"a": "b"}``; a malformed or repeated key is an error."""
    pairs: dict[str, str] = {}
    for value in values or ():
        key, sep, item = (part.strip() for part in value.partition("="))
        if not sep or not key or not item:
            raise InvalidInputError(f"{option} takes {form}, got {value!r}")
        if key in pairs:
            raise InvalidInputError(f"{option} {key}=... is given twice")
        pairs[key] = item
    return pairs


def _where(text: str | None) -> dict[str, Any] | None:
    """The ``--where`` JSON object (see newwave.filters), or None."""
    if text is None:
        return None
    try:
        where = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--where is not valid JSON ({exc}): {text}") from None
    if not isinstance(where, dict):
        raise InvalidInputError(
            f'--where takes a JSON object such as \'{{"tags": "jazz"}}\', got: {text}'
        )
    return where


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut[width // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# -- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``newwave`` command."""
    from newwave import __version__

    parser = argparse.ArgumentParser(
        prog="newwave", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"newwave {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    index = command(
        "index",
        "add a catalogue file or a music folder to a library",
        "Add the tracks of SOURCE to the library directory LIBRARY, creating it if needed.\n\n"
        "SOURCE is a catalogue file (CSV, TSV, JSONL or Parquet; see newwave.readers) or a\n"
        "folder of music files (tags and lyrics are read with mutagen: newwave[tags]).\n"
        "An existing library keeps its fields and fuser; tracks whose content is unchanged\n"
        "are not encoded again, and the library is saved atomically.\n\n"
        "example:\n"
        "  newwave index musiccaps-public.csv my-library \\\n"
        "      --column id=ytid --column description=caption --column tags=aspect_list",
    )
    index.add_argument("source", metavar="SOURCE", help="a catalogue file or a music folder")
    index.add_argument("library", metavar="LIBRARY", help="the library directory")
    index.add_argument(
        "--field",
        action="append",
        metavar="FIELD=ENCODER",
        help="embed FIELD (description, tags, lyrics, title, artist, album, audio) with "
        "ENCODER (see newwave plugins); repeat for several fields. Default for a new library: "
        "description, tags and lyrics with minilm, those the tracks carry",
    )
    index.add_argument("--fuser", help="how a new library combines its fields (default rrf)")
    index.add_argument(
        "--column",
        action="append",
        metavar="FIELD=COLUMN",
        help="read the track FIELD (id, title, artist, album, audio, lyrics, description, tags) "
        "from COLUMN of the catalogue; repeat for several. Other columns become metadata",
    )
    index.add_argument(
        "--format", choices=_FORMATS, help="the catalogue's format (default: from its extension)"
    )
    index.set_defaults(run=_index)

    search = command(
        "search",
        "search a library with a natural-language query",
        "Print the tracks of LIBRARY that best match QUERY: rank, id, title - artist, the fused\n"
        "score and each field's cosine similarity ('-': the field did not return the track).\n\n"
        "example:\n"
        '  newwave search my-library "calm ambient electronic music" -k 5 \\\n'
        '      --where \'{"tags": "ambient"}\'',
    )
    search.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    search.add_argument("query", metavar="QUERY", help="what to look for, in words")
    _result_options(search)
    search.set_defaults(run=_search)

    similar = command(
        "similar",
        "find the tracks most like one track of a library",
        "Print the tracks of LIBRARY most like TRACK_ID, found with that track's own vectors.",
    )
    similar.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    similar.add_argument("track_id", metavar="TRACK_ID", help="the id of a track in LIBRARY")
    _result_options(similar)
    similar.set_defaults(run=_similar)

    info = command(
        "info",
        "describe a library",
        "Print what LIBRARY is made of: its fields (encoder, model, vector width, tracks),\n"
        "fuser and retriever, its number of tracks, and the newwave version that saved it.",
    )
    info.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)

    demo = command(
        "demo",
        "search a small bundled catalogue (300 MusicCaps clips)",
        "Index the bundled demo catalogue (300 clips of MusicCaps, Google, CC BY-SA 4.0) with\n"
        "all-MiniLM-L6-v2 and answer a few queries, or the ones given.",
    )
    demo.add_argument("query", nargs="*", help="queries to run (default: a few examples)")
    demo.add_argument("-k", type=int, default=3, help="results per query (default 3)")
    demo.add_argument("--fuser", default="rrf", help="how to combine fields (default rrf)")
    demo.set_defaults(run=_demo)

    plugins = command(
        "plugins",
        "list the registered components",
        "List the registered encoders, fusers and retrievers, third-party plugins included.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=_plugins)
    return parser


def _result_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument(
        "--where",
        metavar="JSON",
        help='keep only tracks whose metadata match, e.g. \'{"year": {">=": 2000}}\' '
        "(see newwave.filters)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except NewWaveError as exc:
        print(f"newwave: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `newwave search ... --json | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail again
        return 1
    except OSError as exc:  # an unreadable file or a full disk, say
        print(f"newwave: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("newwave: interrupted", file=sys.stderr)
        return 130
    return status
