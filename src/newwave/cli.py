"""The newwave command line: index a catalogue into a library directory, then search it.

  newwave index tracks.csv my-library --column id=ytid --column description=caption
  newwave search my-library "mellow acoustic guitar with soft female vocals"
  newwave search my-library --audio snippet.wav
  newwave similar my-library TRACK_ID
  newwave info my-library
  newwave demo
  newwave plugins
  newwave evaluate sdd --csv song_describer.csv --audio-dir audio
  newwave evaluate musiccaps --csv musiccaps-public.csv
  newwave train fusion --config fusion.toml

Errors print "newwave: error: ..." and exit with status 1. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newwave.errors import InvalidInputError, MissingFileError, NewWaveError, UnknownTrackError

if TYPE_CHECKING:
    from newwave.recommender import Recommender
    from newwave.search.defaults import FieldSpec
    from newwave.types import Hit, Hits, Track

__all__ = ["build_parser", "main"]

DEMO_CATALOGUE = "data/musiccaps_demo.jsonl"
DEMO_QUERIES = (
    "mellow acoustic guitar with soft female vocals",
    "fast aggressive heavy metal",
    "calm ambient electronic music",
    "upbeat latin dance song with brass",
    "a hip hop beat with a male rapper",
    "relaxing piano music without vocals",
)
_FORMATS = ("csv", "tsv", "jsonl", "parquet")


# -- newwave demo -----------------------------------------------------------------------------


def demo_tracks() -> list[Track]:
    """The bundled demo catalogue: 300 MusicCaps clips (see data/MUSICCAPS_LICENSE.md)."""
    from newwave.types import Track

    text = resources.files("newwave").joinpath(DEMO_CATALOGUE).read_text(encoding="utf-8")
    return [Track.model_validate_json(line) for line in text.splitlines() if line.strip()]


def _demo(args: argparse.Namespace) -> int:
    from newwave.recommender import Recommender

    if args.audio:
        from newwave.audio_demo import run_audio_demo

        return run_audio_demo(args.query, k=args.k)

    started = time.perf_counter()
    tracks = demo_tracks()
    print(f"Demo catalogue: {len(tracks)} clips of MusicCaps (Google, CC BY-SA 4.0)")
    rec = Recommender(fuser=args.fuser)  # the defaults, chosen from what the clips carry
    rec.add(tracks)
    fields = ", ".join(f"{f} ({e.model_id})" for f, e in rec.fields.items())
    seconds = time.perf_counter() - started
    print(f"Indexed {len(rec)} clips in {seconds:.1f} s; fields: {fields}; fuser: {rec.fuser.name}")
    for query in args.query or DEMO_QUERIES:
        print(f"\n> {query}")
        hits = rec.search(query, k=args.k)
        if hits.query is not None and hits.query.attributes:
            understood = ", ".join(
                f"{'not ' if a.negated else ''}{a.value} ({a.kind})" for a in hits.query.attributes
            )
            print(f"  understood: {understood}")
        for hit in hits:
            why = "  ".join(f"{f} {s:.2f}" for f, s in sorted(hit.scores.items()))
            print(f"  {hit.rank}. {hit.track.id}  {why}")
            print(f"     {_shorten(hit.track.description or '', 88)}")
    return 0


# -- newwave index ----------------------------------------------------------------------------


def _index(args: argparse.Namespace) -> int:
    from newwave.cli_library import (
        check_saved_options,
        encoder_options,
        vanished,
        windowed_fields,
        with_options,
    )
    from newwave.readers import read_tracks, scan_music_folder
    from newwave.recommender import Recommender
    from newwave.search.defaults import default_fields
    from newwave.store.lock import LOCK_FILE, WRITER_FILE

    started = time.perf_counter()
    fields = {
        name: encoders.split(",") if "," in encoders else encoders
        for name, encoders in _pairs(args.field, "--field", "FIELD=ENCODER[,ENCODER]").items()
    }
    options = encoder_options(args.option, fields)
    windowed = windowed_fields(args.windows, fields)
    columns = _pairs(args.column, "--column", "FIELD=COLUMN")
    source = Path(args.source)
    library = Path(args.library)
    existing = _is_library(library)
    if not existing and library.exists():
        if not library.is_dir():
            raise InvalidInputError(f"{library} exists and is not a directory")
        if any(p.name not in (LOCK_FILE, WRITER_FILE) for p in library.iterdir()):
            raise InvalidInputError(
                f"{library} is not empty and is not a newwave library; choose a new directory"
            )
    if source.is_dir():
        if columns or args.format or args.tag_separator:
            raise InvalidInputError(
                "--column, --format and --tag-separator apply to a catalogue file, not a folder"
            )
        tracks = list(scan_music_folder(source))
    else:
        tracks = list(
            read_tracks(
                source,
                columns=columns or None,
                format=args.format,
                tag_separator=args.tag_separator or ",",
            )
        )
    if not tracks:
        raise InvalidInputError(f"{source} holds no tracks")

    if not existing:  # a new, empty library; unless another process just made one
        spec: Mapping[str, FieldSpec] | None = (
            with_options(fields, options, windowed) if fields else None
        )
        if spec is None and source.is_dir():  # names matched by words: "songs by Mara Lind"
            spec = default_fields(tracks, names=True)
        Recommender(spec, fuser=args.fuser).save(library, replace=False)
    rec = Recommender.load(library)
    _check_same_setup(rec, library, fields, args.fuser, windowed)
    if existing:
        check_saved_options(rec, library, options)
    gone = vanished(rec, tracks, source) if args.prune else []
    new = sum(track.id not in rec for track in tracks)
    unchanged = sum(track.id in rec and rec.get(track.id) == track for track in tracks)
    if args.executor == "ray":  # encoded on a Ray cluster, loaded in transactions
        from newwave.distributed import export_manifest, index_with_ray

        if gone:
            raise InvalidInputError("--prune works with the local executor only")
        work = Path(args.work_dir) if args.work_dir else library / "ray"
        export_manifest(tracks, work / "manifest.parquet", rec)
        report = index_with_ray(rec, work / "manifest.parquet", work, address=args.address)
        encoded = report.loaded
    else:
        encoded = rec.add(tracks, remove=gone)  # committed to the library as one transaction
    rec.save(library)  # and its indexes saved, so that the next start reads them
    seconds = time.perf_counter() - started

    changed = len(tracks) - new - unchanged
    pruned = f", {len(gone)} pruned" if args.prune else ""
    print(f"read {len(tracks)} tracks from {source}: {new} new, {changed} changed, "
          f"{unchanged} unchanged{pruned}")  # fmt: skip
    per_field = ", ".join(f"{f} {n}" for f, n in encoded.items())
    print(f"encoded: {sum(encoded.values())} field values ({per_field})")
    setup = ", ".join(f"{f}={e.name}" for f, e in rec.fields.items())
    print(f"library {library}: {len(rec)} tracks; fields {setup}; fuser {rec.fuser.name}")
    print(f"saved in {seconds:.1f} s")
    return 0


def _check_same_setup(
    rec: Recommender,
    library: Path,
    fields: Mapping[str, str | list[str]],
    fuser: str | None,
    windowed: set[str],
) -> None:
    """A saved library keeps its fields, their windows and its fuser: asking for others is an
    error."""
    saved: dict[str, list[str]] = {}
    for name, encoder in rec.fields.items():
        saved.setdefault(name.partition(":")[0], []).append(encoder.name)
    asked = {f: [e] if isinstance(e, str) else list(e) for f, e in fields.items()}
    if fields and asked != saved:
        setup = " ".join(f"--field {f}={','.join(e)}" for f, e in saved.items())
        raise InvalidInputError(
            f"{library} already indexes {setup}; --field cannot change the fields of a "
            "library (index into a new directory instead)"
        )
    saved_windows = {c for c, f in rec.saved_config.fields.items() if f.windows}
    if fields and windowed != saved_windows:
        have = " ".join(f"--windows {c}" for c in sorted(saved_windows)) or "no --windows"
        raise InvalidInputError(
            f"{library} was made with {have}; --windows cannot change the fields of a library "
            "(index into a new directory instead)"
        )
    if fuser is not None and fuser != rec.fuser.name:
        raise InvalidInputError(
            f"{library} already uses --fuser {rec.fuser.name}; index into a new directory to "
            "use another"
        )


# -- newwave search / similar -----------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    from newwave.cli_library import resolve_track_id
    from newwave.tables import parsed_query_dict

    if (args.query is None) == (args.audio is None):
        raise InvalidInputError("give either a QUERY in words or --audio FILE, not both")
    personal = [o for o in ("user", "like", "dislike", "diversity") if getattr(args, o)]
    if args.audio is not None and personal:
        raise InvalidInputError(
            "--audio searches by sound alone: --user, --like, --dislike and --diversity "
            "apply to a QUERY in words"
        )
    output = _output_format(args)
    where = _where(args.where, ignore_case=args.ignore_case)
    rec = _open_library(args.library)
    if args.audio is not None:
        return _search_audio(rec, args, output, args.audio, where, {"audio": args.audio})
    hits = rec.search(
        args.query,
        k=args.k,
        where=where,
        user=args.user,
        like=[resolve_track_id(rec, i) for i in args.like or ()] or None,
        dislike=[resolve_track_id(rec, i) for i in args.dislike or ()] or None,
        diversity=args.diversity,
    )
    parsed = parsed_query_dict(hits.query)
    data = {"query": args.query, "parsed": parsed, "where": where, "hits": _hits_json(hits)}
    _print_results(output, data, hits, list(rec.fields))
    return 0


def _search_audio(
    rec: Recommender,
    args: argparse.Namespace,
    output: str,
    audio: str,
    where: dict[str, Any] | None,
    echo: dict[str, Any],
) -> int:
    """Print the tracks of ``rec`` that sound most like the file ``audio``."""
    hits = rec.search_audio(audio, k=args.k, where=where)
    data = {**echo, "where": where, "hits": _hits_json(hits)}
    audio_fields = [n for n, c in rec.config.fields.items() if c.modality == "audio"]
    _print_results(output, data, hits, audio_fields)
    return 0


def _similar(args: argparse.Namespace) -> int:
    from newwave.cli_library import resolve_track_id

    output = _output_format(args)
    where = _where(args.where, ignore_case=args.ignore_case)
    rec = _open_library(args.library)
    try:
        track_id = resolve_track_id(rec, args.track_id)
    except UnknownTrackError:
        if not Path(args.track_id).is_file():
            raise
        # more like this file: an audio file that is not a track of the library
        return _search_audio(rec, args, output, args.track_id, where, {"file": args.track_id})
    hits = rec.similar(track_id, k=args.k, where=where)
    data = {"track_id": track_id, "where": where, "hits": _hits_json(hits)}
    _print_results(output, data, hits, list(rec.fields))
    return 0


def _output_format(args: argparse.Namespace) -> str:
    """``--format``, or ``json`` for ``--json``; both, disagreeing, is an error."""
    if args.json and args.format not in (None, "json"):
        raise InvalidInputError(f"--json and --format {args.format} disagree; give one")
    return "json" if args.json else args.format or "text"


def _print_results(output: str, data: Mapping[str, Any], hits: Hits, fields: list[str]) -> None:
    """Print ``hits`` as a table (with what the rewriter understood), JSON, M3U or CSV."""
    from newwave.tables import hits_csv, hits_m3u, parsed_query_text

    if output == "json":
        _print_json(data)
    elif output == "csv":
        print(hits_csv(hits), end="")
    elif output == "m3u":
        playlist, missing = hits_m3u(hits)
        if missing:
            warnings.warn(f"{missing} of {len(hits)} hits have no audio file and are not in "
                          "the playlist", UserWarning, stacklevel=1)  # fmt: skip
        print(playlist, end="")
    else:
        understood = parsed_query_text(hits.query)
        if understood is not None:
            print(f"understood: {_one_line(understood)}")
        _print_hits(hits, fields)


def _hits_json(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "rank": hit.rank,
            "id": hit.track.id,
            "score": hit.score,
            "scores": hit.scores,
            "ranks": hit.ranks,
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
    if any(names):  # "title", unless a field has that name
        columns.append(("track" if "title" in fields else "title", names, "<"))
    columns.append(("score", [f"{hit.score:.4f}" for hit in hits], ">"))
    for field in fields:  # the channel's score, and the track's rank in it: "0.695 #3"
        cells = [
            f"{hit.scores[field]:.3f}" + (f" #{hit.ranks[field]}" if field in hit.ranks else "")
            if field in hit.scores
            else "-"
            for hit in hits
        ]
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
    rec = _open_library(args.library)
    config = rec.saved_config
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
        dim = f"{field.dim}-d" if field.dim is not None else "lexical"
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


def _remove(args: argparse.Namespace) -> int:
    from newwave.cli_library import resolve_track_id

    rec = _open_library(args.library)
    ids = list(dict.fromkeys(resolve_track_id(rec, i) for i in args.track_ids))
    rec.remove(ids)
    print(f"removed {len(ids)} track(s); library {args.library}: {len(rec)} tracks")
    return 0


def _repair(args: argparse.Namespace) -> int:
    from newwave.recommender import Recommender

    library = Path(args.library)
    if not _is_library(library):
        raise InvalidInputError(f"{library} is not a newwave library")
    counts = Recommender.repair(library)
    rebuilt = ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"
    print(f"{library}: the database is sound; indexes rebuilt (tracks per channel: {rebuilt})")
    return 0


def _options(options: Mapping[str, Any]) -> str:
    return json.dumps(options, sort_keys=True) if options else ""


# -- newwave plugins --------------------------------------------------------------------------


def _plugins(args: argparse.Namespace) -> int:
    from newwave.plugins import components

    rows = [
        {"kind": kind, "name": r.name, "aliases": list(r.aliases), "plugin": r.plugin,
         "summary": r.summary}
        for kind in ("encoder", "lexical", "fuser", "retriever", "rewriter")
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


# -- newwave evaluate sdd / musiccaps ---------------------------------------------------------


def _evaluate_sdd(args: argparse.Namespace) -> int:
    from newwave.evaluation.sdd import evaluate_sdd

    result = evaluate_sdd(
        args.csv,
        args.audio_dir,
        subset=args.subset,
        protocol=args.protocol,
        audio_encoder=args.audio_encoder,
        text_encoder=args.text_encoder,
        encoder_options=_option_values(
            _pairs(args.encoder_option, "--encoder-option", "KEY=VALUE")
        ),
        cache_dir=args.cache_dir,
        cache=not args.no_cache,
        skip_missing=args.skip_missing,
    )
    _report(result.to_text(), result.as_dict(), args.json)
    return 0


def _evaluate_musiccaps(args: argparse.Namespace) -> int:
    from newwave.evaluation.musiccaps import DEFAULT_SYSTEMS, evaluate_musiccaps

    report = evaluate_musiccaps(
        args.csv,
        systems=args.system or DEFAULT_SYSTEMS,
        queries=args.queries,
        limit=args.limit,
        sample=args.sample,
    )
    _report(report.to_text(), report.as_dict(), args.json)
    return 0


def _option_values(options: Mapping[str, str]) -> dict[str, Any]:
    """``--encoder-option`` values: JSON where they parse (``3``, ``null``, ``true``), else text."""
    values: dict[str, Any] = {}
    for key, text in options.items():
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def _report(text: str, data: Mapping[str, Any], destination: str | None) -> None:
    """Print a benchmark's table; ``--json PATH`` also writes its JSON (``-``: prints it only)."""
    from newwave._storage import write_json

    if destination == "-":
        _print_json(data)
        return
    print(text)
    if destination:
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
        print(f"\nJSON written to {path}")


# -- newwave train ---------------------------------------------------------------------------

#: The trainers of ``newwave train``: name -> (module with ``train_from_file``, summary, about).
TRAINERS: dict[str, tuple[str, str, str]] = {
    "fusion": (
        "newwave.train.fusion",
        "train the mlp fuser on per-field vectors of tracks and queries",
        "Train an mlp fuser (learned late fusion) as the TOML or JSON config says, then compare\n"
        "it on held-out tracks with each field alone and the weighted and rrf fusers. The\n"
        "fuser is saved to OUTPUT_DIR/model: load_fuser('mlp', 'OUTPUT_DIR/model'). See\n"
        "docs/training.md.",
    ),
    "biencoder": (
        "newwave.train.biencoder",
        "train a two-tower text encoder on (query, document) pairs, e.g. descriptions/lyrics",
        "Train a bi-encoder (a query tower and a document tower over a minilm or bge-m3\n"
        "backbone, with optional heads) as the TOML or JSON config says, then compare it on\n"
        "held-out pairs with its untrained backbone. The encoder is saved to OUTPUT_DIR/model:\n"
        "load_encoder('biencoder', model='OUTPUT_DIR/model'). See docs/training.md.",
    ),
    "clap": (
        "newwave.train.clap",
        "fine-tune CLAP on (audio, caption) pairs with a long-context curriculum",
        "Fine-tune a CLAP model as the TOML or JSON config says, growing the audio seconds and\n"
        "text tokens it sees step by step, then compare it on held-out tracks with the model\n"
        "it started from. The model is saved to OUTPUT_DIR/model:\n"
        "load_encoder('clap', model='OUTPUT_DIR/model'). See docs/training.md.",
    ),
}


def _train(args: argparse.Namespace) -> int:
    from importlib import import_module

    module = import_module(TRAINERS[args.trainer][0])
    result = module.train_from_file(args.config, resume=args.resume, device=args.device)
    print(result.summary())
    return 0


def _train_commands(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    train = command(
        "train",
        "train a learned component (see docs/training.md)",
        "Train a learned component from a config file. Checkpoints go to the config's\n"
        "output_dir; --resume continues an interrupted run exactly where it stopped.",
    )
    trainers = train.add_subparsers(dest="trainer", required=True, metavar="TRAINER")
    for name, (_, summary, about) in TRAINERS.items():
        trainer = trainers.add_parser(
            name,
            help=summary,
            description=about + f"\n\nexample:\n  newwave train {name} --config {name}.toml",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        trainer.add_argument(
            "--config", required=True, metavar="PATH", help="the run's .toml or .json config"
        )
        trainer.add_argument(
            "--resume", action="store_true", help="continue the run in the config's output_dir"
        )
        trainer.add_argument("--device", help="torch device (default: the config's, else auto)")
        trainer.set_defaults(run=_train)


# -- shared helpers ---------------------------------------------------------------------------


def _is_library(path: Path) -> bool:
    from newwave.store.library import is_library

    return is_library(path)


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


def _where(text: str | None, *, ignore_case: bool = False) -> dict[str, Any] | None:
    """The ``--where`` JSON object (see newwave.filters), or None; ``--ignore-case`` folds it."""
    if text is None:
        if ignore_case:
            raise InvalidInputError("--ignore-case applies to --where, which is not given")
        return None
    too_deep = InvalidInputError(
        f"--where is nested more than {_WHERE_NESTING} levels deep; a filter needs 3 at most "
        f'(\'{{"genre": {{"in": ["rock", "pop"]}}}}\'), got: {text:.80}'
    )
    try:
        where = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--where is not valid JSON ({exc}): {text}") from None
    except RecursionError:
        raise too_deep from None
    if _nesting(where) > _WHERE_NESTING:
        raise too_deep
    if not isinstance(where, dict):
        raise InvalidInputError(
            f'--where takes a JSON object such as \'{{"tags": "jazz"}}\', got: {text}'
        )
    if ignore_case:
        from newwave.filters import ignore_case as folded

        return folded(where)
    return where


_WHERE_NESTING = 16  # the deepest --where accepted: filters need 3 levels


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON ``value`` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _shorten(text: str, width: int) -> str:
    """``text`` on one line, without control characters (an id may hold terminal escapes),
    cut at a word to at most ``width`` characters."""
    text = _one_line(text)
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
        "folder of music files (tags and lyrics are read with mutagen: newwave-music[tags]).\n"
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
        metavar="FIELD=ENCODER[,ENCODER]",
        help="embed FIELD (description, tags, lyrics, title, artist, album, audio) with "
        "ENCODER (see newwave plugins), or with several fused (a hybrid: tags=bm25,minilm); "
        "repeat for several fields. Default for a new library: description, tags and lyrics "
        "with minilm, those the tracks carry",
    )
    index.add_argument(
        "--option",
        action="append",
        metavar="FIELD.OPTION=VALUE",
        help="an option of the encoder of a field given with --field, e.g. audio.model=/path "
        "or audio.batch_size=8 (FIELD:ENCODER.OPTION in a hybrid field; VALUE is read as JSON "
        "when it parses); repeat for several",
    )
    index.add_argument(
        "--windows",
        action="append",
        metavar="FIELD",
        help="make the audio FIELD (given with --field, one encoder) windowed: every window's "
        "vector is indexed and a track scores by its best window (docs/audio.md); repeat for "
        "several",
    )
    index.add_argument("--fuser", help="how a new library combines its fields (default weighted)")
    index.add_argument(
        "--prune",
        action="store_true",
        help="also remove the library's tracks that SOURCE no longer has (for a folder: those "
        "whose file inside it is gone), in the same transaction",
    )
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
    index.add_argument(
        "--tag-separator",
        metavar="SEP",
        help="what separates the tags in a catalogue's tags text, e.g. ';' (default ',')",
    )
    index.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where to encode: in this process (default), or on a Ray cluster (newwave[ray]); "
        "see docs/scale-out.md",
    )
    index.add_argument(
        "--address", help="with --executor ray: the cluster (default: a local one, or RAY_ADDRESS)"
    )
    index.add_argument(
        "--work-dir",
        help="with --executor ray: the manifest and shards, on storage every node reaches "
        "(default LIBRARY/ray); a rerun reuses the shards a killed run finished",
    )
    index.set_defaults(run=_index)

    search = command(
        "search",
        "search a library with a natural-language query",
        "Print what the query rewriter understood, then the tracks of LIBRARY that best match\n"
        "QUERY: rank, id, title - artist, the fused score and, per field, its score and the\n"
        "track's rank in it ('0.695 #3'; '-': the field did not return the track).\n"
        "With --audio FILE instead of QUERY, the tracks that sound most like FILE (a clip or\n"
        "a snippet), compared by the library's audio fields.\n\n"
        "examples:\n"
        '  newwave search my-library "calm ambient electronic music" -k 5 \\\n'
        '      --where \'{"tags": "ambient"}\'\n'
        "  newwave search my-library --audio snippet.wav -k 5",
    )
    search.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    search.add_argument("query", metavar="QUERY", nargs="?", help="what to look for, in words")
    search.add_argument(
        "--audio",
        metavar="FILE",
        help="search by example: the tracks that sound most like this audio file (needs an "
        "audio field)",
    )
    _result_options(search)
    _output_options(search)
    _personal_search_options(search)
    search.set_defaults(run=_search)

    similar = command(
        "similar",
        "find the tracks most like one track of a library",
        "Print the tracks of LIBRARY most like TRACK_ID, found with that track's own vectors.\n"
        "An audio file that is not a track of LIBRARY is compared by the library's audio\n"
        "fields instead (as search --audio FILE).",
    )
    similar.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    similar.add_argument(
        "track_id",
        metavar="TRACK_ID",
        help="the id of a track in LIBRARY, its audio file, or an audio file outside it",
    )
    _result_options(similar)
    _output_options(similar)
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

    remove = command(
        "remove",
        "remove tracks from a library",
        "Remove the tracks TRACK_ID ... from LIBRARY, in one transaction.",
    )
    remove.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    remove.add_argument(
        "track_ids", metavar="TRACK_ID", nargs="+", help="ids (or audio files) of tracks to remove"
    )
    remove.set_defaults(run=_remove)

    repair = command(
        "repair",
        "check a library and rebuild its indexes",
        "Check LIBRARY's database in full (SQLite's integrity check) and rebuild every index\n"
        "from the vectors and texts it stores: for an index file that is missing or damaged.\n"
        "A damaged database cannot be rebuilt from anything else: restore it from a backup.",
    )
    repair.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    repair.set_defaults(run=_repair)

    demo = command(
        "demo",
        "search a small bundled catalogue (300 MusicCaps clips)",
        "Index the bundled demo catalogue (300 clips of MusicCaps, Google, CC BY-SA 4.0) with\n"
        "all-MiniLM-L6-v2 and answer a few queries, or the ones given. With --audio, tag and\n"
        "index the 30 bundled synthesised clips with musicnn instead (needs its weights:\n"
        "pip install --no-deps 'musicnn==0.1.0'), answer the requests through the clips'\n"
        "musicnn tags, and search by the sound of a snippet.",
    )
    demo.add_argument("query", nargs="*", help="queries to run (default: a few examples)")
    demo.add_argument("-k", type=int, default=3, help="results per query (default 3)")
    demo.add_argument("--fuser", help="how to combine fields (default weighted)")
    demo.add_argument(
        "--audio",
        action="store_true",
        help="search real audio: the bundled synthesised clips, tagged and embedded by musicnn",
    )
    demo.set_defaults(run=_demo)

    plugins = command(
        "plugins",
        "list the registered components",
        "List the registered encoders, fusers and retrievers, third-party plugins included.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=_plugins)

    evaluate = command(
        "evaluate",
        "run a retrieval benchmark (Song Describer, MusicCaps)",
        "Run a retrieval benchmark and print its metrics (R@1/5/10/20, MRR, mAP@10, median\n"
        "rank) next to published reference numbers; see docs/evaluation.md.",
    )
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    sdd = benchmarks.add_parser(
        "sdd",
        help="text-to-music retrieval on the Song Describer Dataset",
        description="Text-to-music retrieval on the Song Describer Dataset (SDD): each caption\n"
        "is a query, its track the relevant item. Audio vectors are cached on disk, keyed by\n"
        "the file's content and the encoder's setup, so a second run embeds no audio.\n\n"
        "example:\n"
        "  newwave evaluate sdd --csv song_describer.csv --audio-dir audio \\\n"
        "      --encoder-option model=laion/larger_clap_music --json sdd.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sdd.add_argument("--csv", required=True, help="the dataset's song_describer.csv")
    sdd.add_argument(
        "--audio-dir",
        required=True,
        help="the folder of the audio (the CSV's paths; NN/ID.2min.mp3 clips are found)",
    )
    sdd.add_argument(
        "--subset",
        choices=("valid", "full"),
        default="valid",
        help="valid: the validated captions (is_valid_subset); full: all (default valid)",
    )
    sdd.add_argument(
        "--protocol",
        choices=("caption", "row-diagonal"),
        default="caption",
        help="caption: candidates are the tracks, once each; row-diagonal: the research "
        "prototype's, one candidate per caption row (default caption)",
    )
    sdd.add_argument("--audio-encoder", default="clap", help="embeds the audio (default clap)")
    sdd.add_argument(
        "--text-encoder",
        help="embeds the captions (default: the audio encoder, one instance for both)",
    )
    sdd.add_argument(
        "--encoder-option",
        action="append",
        metavar="KEY=VALUE",
        help="an option of the encoders, e.g. model=laion/larger_clap_music or max_windows=3 "
        "(VALUE is read as JSON when it parses); repeat for several",
    )
    sdd.add_argument(
        "--cache-dir",
        help="where audio vectors are cached (default $XDG_CACHE_HOME/newwave/sdd, "
        "~/.cache/newwave/sdd)",
    )
    sdd.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    sdd.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out tracks whose audio file is missing, and their captions (default: error)",
    )
    sdd.add_argument("--json", metavar="PATH", help="also write the results as JSON (-: print)")
    sdd.set_defaults(run=_evaluate_sdd)

    musiccaps = benchmarks.add_parser(
        "musiccaps",
        help="MusicCaps text benchmark: captions against aspect lists",
        description="Text retrieval on MusicCaps (setting of Epure et al., NLP4MusA 2024): the\n"
        "captions of the evaluation split are the queries, the same clips' aspect lists the\n"
        "candidates. Systems: tfidf, defaults (Recommender()), or an encoder for the tags\n"
        "field (minilm, bge-m3, ...; a+b for a hybrid field), reported side by side. A\n"
        "Recommender system ending in /no-rewrite searches without the query rewriter.\n\n"
        "example:\n"
        "  newwave evaluate musiccaps --csv musiccaps-public.csv --system tfidf --system minilm\n"
        "  newwave evaluate musiccaps --queries requests --system defaults \\\n"
        "      --system defaults/no-rewrite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    musiccaps.add_argument(
        "--csv", help="musiccaps-public.csv (default: the path in $NEWWAVE_MUSICCAPS)"
    )
    musiccaps.add_argument(
        "--system",
        action="append",
        metavar="NAME",
        help="a system to run; repeat for several (default: tfidf, minilm, bge-m3, defaults)",
    )
    musiccaps.add_argument(
        "--queries",
        choices=("captions", "requests"),
        default="captions",
        help="the captions as they are (default), or each rephrased as a listener's request",
    )
    musiccaps.add_argument(
        "--limit",
        type=int,
        help="use only the first N evaluation clips, as queries and candidates (a smaller task)",
    )
    musiccaps.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="search the queries of only N clips (seeded sample), each against every candidate",
    )
    musiccaps.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON (-: print)"
    )
    musiccaps.set_defaults(run=_evaluate_musiccaps)
    _personal_commands(command, benchmarks, _result_options)
    _train_commands(command)
    return parser


def _personal_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="re-rank by this user's taste (see newwave feedback)")
    parser.add_argument(
        "--like", action="append", metavar="TRACK_ID", help="more like this track (repeat)"
    )
    parser.add_argument(
        "--dislike", action="append", metavar="TRACK_ID", help="less like this track (repeat)"
    )
    parser.add_argument(
        "--diversity", type=float, default=0.0, help="0 (default) to 1: spread the results"
    )


def _personal_commands(command: Any, benchmarks: Any, result_options: Any) -> None:
    from newwave.cli_personal import add_personal_commands

    add_personal_commands(command, benchmarks, result_options)


def _result_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument(
        "--where",
        metavar="JSON",
        help='keep only tracks whose metadata match, e.g. \'{"year": {">=": 2000}}\' '
        "(see newwave.filters)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json", "m3u", "csv"),
        help="text (a table, default), json (as --json), m3u (a playlist of the hits' audio "
        "files) or csv (one row per hit, with each field's score and rank)",
    )
    parser.add_argument(
        "--ignore-case",
        action="store_true",
        help="--where compares strings ignoring case ('mara lind' matches 'Mara Lind')",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Every failure is one line on stderr, ``newwave: error: ...``, with exit status 1; warnings
    are one line each, ``newwave: warning: ...``. ``NEWWAVE_DEBUG=1`` shows the traceback of an
    unexpected error.
    """
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each warning once, as a line
        warnings.showwarning = _show_warning
        try:
            status: int = args.run(args)
        except (NewWaveError, OSError) as exc:  # OSError: an unreadable file, a full disk
            if isinstance(exc, BrokenPipeError):  # `newwave search ... --json | head`
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail
                return 1
            _error(str(exc))
            return 1
        except KeyboardInterrupt:
            print("newwave: interrupted", file=sys.stderr)
            return 130
        except (MemoryError, RecursionError) as exc:
            _error(f"out of memory or too deeply nested input ({type(exc).__name__})")
            return 1
        except Exception as exc:
            if os.environ.get("NEWWAVE_DEBUG"):
                raise
            _error(f"unexpected {type(exc).__name__}: {exc} (NEWWAVE_DEBUG=1 shows where)")
            return 1
    return status


def _error(message: str) -> None:
    print(f"newwave: error: {_one_line(message)}", file=sys.stderr)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as one line: ``newwave: warning: ...`` (no source location)."""
    print(f"newwave: warning: {_one_line(str(message))}", file=sys.stderr)


def _one_line(text: str) -> str:
    """``text`` on one line, without terminal control characters."""
    printable = "".join(c for c in text if c.isprintable() or c.isspace())
    return " ".join(printable.split())
