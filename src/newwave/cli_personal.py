"""The ``newwave`` commands of personalisation: feedback, feedback-log, forget, recommend, and
``evaluate personal`` (kept apart from :mod:`newwave.cli` so that each stays small)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_personal_commands"]


def _feedback(args: argparse.Namespace) -> int:
    from newwave.cli import _open_library

    rec = _open_library(args.library)
    event = rec.feedback(
        args.user, args.track_id, args.event, at=args.at, weight=args.weight, seconds=args.seconds
    )
    print(
        f"{event.user}: {event.event} {event.track} ({len(rec.feedback_events(args.user))} events)"
    )
    return 0


def _feedback_log(args: argparse.Namespace) -> int:
    from newwave.cli import _open_library
    from newwave.search.personal import write_interactions

    rec = _open_library(args.library)
    if args.output:
        n = rec.export_feedback(args.output, args.user)
        print(f"{n} event(s) written to {args.output}")
        return 0
    users = [args.user] if args.user else list(rec.feedback_users())
    events = [e for u in users for e in rec.feedback_events(u)]
    write_interactions(sys.stdout, events)
    return 0


def _forget(args: argparse.Namespace) -> int:
    from newwave.cli import _open_library

    rec = _open_library(args.library)
    n = rec.forget(args.user)
    print(f"forgot {args.user}: {n} event(s) deleted; the library files hold nothing of them")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from newwave.cli import _hits_json, _open_library, _print_hits, _print_json, _where

    where = _where(args.where)
    rec = _open_library(args.library)
    hits = rec.recommend(args.user, k=args.k, where=where, diversity=args.diversity)
    if args.json:
        _print_json({"user": args.user, "where": where, "hits": _hits_json(hits)})
    else:
        _print_hits(hits, [*rec.fields, "taste"])
    return 0


def _evaluate_personal(args: argparse.Namespace) -> int:
    from newwave.cli import _open_library, _report
    from newwave.evaluation.personal import evaluate_listeners, evaluate_log
    from newwave.search.personal import read_interactions

    if args.log:
        if not args.library:
            raise SystemExit("newwave evaluate personal --log needs --library")
        report = evaluate_log(
            _open_library(args.library), read_interactions(args.log), train=args.train
        )
        _report(report.to_text(), report.as_dict(), args.json)
        return 0
    result = evaluate_listeners(
        args.catalogue,
        encoder=args.encoder,
        listeners=args.listeners,
        seed=args.seed,
        limit=args.limit,
    )
    _report(result.to_text(), result.as_dict(), args.json)
    return 0


def add_personal_commands(
    command: Callable[[str, str, str], argparse.ArgumentParser],
    benchmarks: Any,
    result_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the commands to the ``newwave`` parser (``benchmarks``: ``evaluate``'s)."""
    feedback = command(
        "feedback",
        "record a listener's feedback on a track",
        "Record that USER gave EVENT (like, dislike, skip, or play with --seconds) on TRACK_ID;\n"
        "stored in LIBRARY at once (docs/personalisation.md).\n\n"
        "example:\n"
        "  newwave feedback my-library ann -0Gj8-vB1q4 like\n"
        "  newwave feedback my-library ann -1UWSisR2zo play --seconds 12",
    )
    feedback.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    feedback.add_argument("user", metavar="USER", help="who gave it")
    feedback.add_argument("track_id", metavar="TRACK_ID", help="the id of a track in LIBRARY")
    feedback.add_argument("event", metavar="EVENT", help="like, dislike, skip or play")
    feedback.add_argument("--seconds", type=float, help="how long it played (play events)")
    feedback.add_argument("--at", help="when: ISO 8601 or Unix seconds (default: now)")
    feedback.add_argument("--weight", type=float, help="the event's magnitude (default: by event)")
    feedback.set_defaults(run=_feedback)

    log = command(
        "feedback-log",
        "print or export the feedback of a library",
        "Print the feedback of LIBRARY (of --user only) as an interaction log (CSV: user,\n"
        "track, event, timestamp, seconds, weight), or write it to --output (.jsonl: JSON lines).",
    )
    log.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    log.add_argument("--user", help="only this user's events")
    log.add_argument("--output", metavar="PATH", help="write the log to PATH")
    log.set_defaults(run=_feedback_log)

    forget = command(
        "forget",
        "remove everything about a user from a library",
        "Delete USER's feedback from LIBRARY; the freed space is zeroed and the database\n"
        "rewritten, so that no file of the library holds anything of USER.",
    )
    forget.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    forget.add_argument("user", metavar="USER", help="the user to forget")
    forget.set_defaults(run=_forget)

    recommend = command(
        "recommend",
        "recommend tracks to a user from their feedback, without a query",
        "Print the tracks of LIBRARY closest to USER's taste (docs/personalisation.md).",
    )
    recommend.add_argument("library", metavar="LIBRARY", help="a library made by newwave index")
    recommend.add_argument("user", metavar="USER", help="a user with feedback")
    result_options(recommend)
    recommend.add_argument(
        "--diversity", type=float, default=0.0, help="0 (default) to 1: spread the results"
    )
    recommend.set_defaults(run=_recommend)

    personal = benchmarks.add_parser(
        "personal",
        help="personal search: simulated listeners, or your own interaction log",
        description="Simulated listeners on MusicCaps (default): each has a hidden taste over\n"
        "aspects, issues generic requests and gives feedback on what it is shown; nDCG@10 of\n"
        "taste-matching tracks after 0, 5, 10 and 20 events, personal and not, and how well\n"
        "the top 10 still match the request. With --log and --library: a time-split evaluation\n"
        "of recommend() on an interaction log (docs/personalisation.md).\n\n"
        "example:\n"
        "  newwave evaluate personal --catalogue musiccaps-public.csv --listeners 50\n"
        "  newwave evaluate personal --log listens.csv --library my-library",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    personal.add_argument(
        "--catalogue", help="musiccaps-public.csv or MusicCaps JSON lines (default: the demo)"
    )
    personal.add_argument("--encoder", default="minilm", help="the encoder (default minilm)")
    personal.add_argument("--listeners", type=int, default=50, help="how many (default 50)")
    personal.add_argument("--seed", type=int, default=0, help="the seed (default 0)")
    personal.add_argument("--limit", type=int, help="use only the first N tracks")
    personal.add_argument("--log", help="an interaction log (CSV or .jsonl) to evaluate on")
    personal.add_argument("--library", help="the library the log's tracks are in")
    personal.add_argument(
        "--train", type=float, default=0.8, help="the share of the log's time used as feedback"
    )
    personal.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON (-: print)"
    )
    personal.set_defaults(run=_evaluate_personal)
