"""The collaborative signal of personal search: ALS factors of the library's feedback log.

``implicit``'s alternating least squares (the ``implicit`` extra) factorises the users x tracks
matrix of *positive* feedback. Per (user, track), over the user's events on the track::

    r_ut = sum of the positive events' weights     like: 1 (or its weight=),
                                                   play: 0.5 * min(seconds / 60, 1)
    pair kept only if r_ut > 0 and the net feedback sum_i s_i > 0 (dislikes and skips count
    against it: a track the user is net negative about is no positive)
    confidence c_ut = ALPHA * r_ut                 (implicit's weight of an observed pair)

ALS is a model of implicit positives: a dislike or a skip is not evidence of a *different*
taste, only of less of this one, so such tracks are left as unobserved. No time decay: the
factors describe the log as it was fitted.

Fitted explicitly (:func:`fit`, ``Recommender.fit_collaborative``), never at search time, and
stored in the library directory as ``collaborative/factors.safetensors`` (the user and track
factor matrices, float32) and ``collaborative/model.json`` (the user and track ids, one per
row, the library's epoch, the number of events fitted and the factors file's SHA-256). No
pickle. The factors are ignored (:func:`load` gives None) when they are *stale*: the library
was replaced (another epoch), the feedback log has grown to more than :data:`STALE_GROWTH`
times the events fitted, or the two files do not match each other. Forgetting a user drops
their row and rewrites both files (:func:`forget`).

A personal search of a user with a row scores each candidate track with a row by
``u . v_t``; :func:`collaborative_term` turns those into the bounded re-ranking term.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from weakref import WeakKeyDictionary

import numpy as np

from newwave._checks import positive_int
from newwave._optional import import_optional
from newwave._storage import atomic_file, write_json
from newwave.errors import IndexCorruptError, InvalidInputError
from newwave.search.personal import standardised
from newwave.store.database import FeedbackRow, LibraryStore

__all__ = [
    "ALPHA",
    "COLLABORATIVE_WEIGHT",
    "FACTORS",
    "ITERATIONS",
    "REGULARIZATION",
    "STALE_GROWTH",
    "Factors",
    "collaborative_term",
    "confidences",
    "fit",
    "forget",
    "load",
]

COLLABORATIVE_WEIGHT: Final = 0.3
"""The span of the collaborative term, relevance being scaled to [0, 1]: it adds between
``-0.15`` and ``+0.15`` to a candidate's score."""
FACTORS: Final = 32
ITERATIONS: Final = 15
REGULARIZATION: Final = 0.05
ALPHA: Final = 10.0
"""The confidence of an observed (user, track) pair per unit of positive feedback."""
SEED: Final = 0
STALE_GROWTH: Final = 2.0
"""Factors are ignored once the log holds more than this many times the events fitted (read
as the feedback table's largest row number, which forgetting a user brings back down)."""
FORMAT: Final = 1
DIRECTORY: Final = "collaborative"
FACTORS_FILE: Final = "factors.safetensors"
MODEL_FILE: Final = "model.json"
_PLAY_FULL_S: Final = 60.0


@dataclass(frozen=True)
class Factors:
    """Fitted ALS factors: one row of ``users`` per user id, one of ``tracks`` per track id."""

    users: dict[str, int]
    tracks: dict[str, int]
    user_factors: np.ndarray  # (users, FACTORS) float32
    track_factors: np.ndarray  # (tracks, FACTORS) float32
    epoch: str
    events: int  # how many events of the log were fitted

    def scorer(self, user: str) -> Callable[[Sequence[str]], np.ndarray] | None:
        """Scores ``u . v_t`` of track ids (NaN for a track without a row); None without
        a row for ``user``."""
        row = self.users.get(user)
        if row is None:
            return None
        vector = self.user_factors[row]

        def scores(track_ids: Sequence[str]) -> np.ndarray:
            out = np.full(len(track_ids), np.nan)
            known = [(i, self.tracks[t]) for i, t in enumerate(track_ids) if t in self.tracks]
            if known:
                at, rows = zip(*known, strict=True)
                out[list(at)] = self.track_factors[list(rows)] @ vector
            return out

        return scores


def confidences(rows: Sequence[FeedbackRow]) -> dict[tuple[str, str], float]:
    """``ALPHA * r_ut`` per (user, track) with positive feedback (see the module docstring)."""
    positive: dict[tuple[str, str], float] = {}
    net: dict[tuple[str, str], float] = {}
    for user, track, event, _at, seconds, weight in rows:
        if event == "like":
            value = 1.0 if weight is None else float(weight)
        elif event == "play":
            value = 0.5 * min((seconds or 0.0) / _PLAY_FULL_S, 1.0) if weight is None else weight
        else:  # dislike, skip
            magnitude = (1.0 if event == "dislike" else 0.25) if weight is None else weight
            net[user, track] = net.get((user, track), 0.0) - float(magnitude)
            continue
        positive[user, track] = positive.get((user, track), 0.0) + float(value)
        net[user, track] = net.get((user, track), 0.0) + float(value)
    return {pair: ALPHA * r for pair, r in positive.items() if r > 0 and net[pair] > 0}


def fit(
    store: LibraryStore,
    root: Path | None,
    *,
    factors: int = FACTORS,
    iterations: int = ITERATIONS,
    regularization: float = REGULARIZATION,
) -> Factors:
    """Fit ALS on every event of ``store``'s feedback log; saved under ``root`` if given."""
    factors, iterations = positive_int(factors, "factors"), positive_int(iterations, "iterations")
    if isinstance(regularization, bool) or not isinstance(regularization, (int, float)):
        raise InvalidInputError(f"regularization must be a number, got {regularization!r}")
    if not regularization > 0 or not np.isfinite(regularization):
        raise InvalidInputError(f"regularization must be finite and > 0, got {regularization!r}")
    implicit_als = import_optional(
        "implicit.cpu.als", purpose="the collaborative signal", extra="implicit"
    )
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    rows = store.all_feedback()
    pairs = confidences(rows)
    if not pairs:
        raise InvalidInputError("no positive feedback (likes or plays) to fit ALS on")
    users = {u: i for i, u in enumerate(sorted({u for u, _ in pairs}))}
    tracks = {t: i for i, t in enumerate(sorted({t for _, t in pairs}))}
    matrix = csr_matrix(
        (
            np.fromiter(pairs.values(), dtype=np.float32, count=len(pairs)),
            (
                np.fromiter((users[u] for u, _ in pairs), dtype=np.int64, count=len(pairs)),
                np.fromiter((tracks[t] for _, t in pairs), dtype=np.int64, count=len(pairs)),
            ),
        ),
        shape=(len(users), len(tracks)),
    )
    with threadpool_limits(1, "blas"):  # implicit's advice: BLAS's own threads slow ALS
        model = implicit_als.AlternatingLeastSquares(
            factors=factors,
            regularization=float(regularization),
            iterations=iterations,
            num_threads=1,
            random_state=SEED,
        )
        model.fit(matrix, show_progress=False)
    fitted = Factors(
        users,
        tracks,
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
        store.epoch,
        len(rows),
    )
    _remember(store, root, fitted)
    return fitted


def forget(store: LibraryStore, root: Path | None, user: str) -> bool:
    """Drop ``user``'s row from the stored factors, rewriting them; whether there was one."""
    try:
        found = _read(store, root, check=False)
    except IndexCorruptError:
        found = None
    if found is None and root is not None:
        for name in (FACTORS_FILE, MODEL_FILE):  # unusable files: removed, whatever they hold
            (root / DIRECTORY / name).unlink(missing_ok=True)
    if found is None or user not in found.users:
        return False
    keep = [u for u in sorted(found.users, key=found.users.__getitem__) if u != user]
    rows = [found.users[u] for u in keep]
    dropped = Factors(
        {u: i for i, u in enumerate(keep)},
        found.tracks,
        np.ascontiguousarray(found.user_factors[rows]),
        found.track_factors,
        found.epoch,
        found.events,
    )
    _remember(store, root, dropped)
    return True


def load(store: LibraryStore, root: Path | None) -> Factors | None:
    """The library's fitted factors, or None if there are none or they are stale."""
    return _read(store, root, check=True)


# -- the re-ranking term --------------------------------------------------------------------------


def collaborative_term(
    raw: np.ndarray, own: np.ndarray | None = None, weight: float = COLLABORATIVE_WEIGHT
) -> np.ndarray:
    """``weight * (std(raw) - 0.5)``, NaN where ``raw`` is NaN (a track without factors).

    ``std`` is personal search's standardisation: z-scores clipped at +-2, mapped onto
    [0, 1], so the term lies in ``[-weight / 2, weight / 2]``. The mean and deviation are
    those of the scored candidates other than the user's ``own`` (net liked) tracks: ALS
    reproduces those, and one of them would squeeze the others together."""
    term = np.full(len(raw), np.nan)
    known = ~np.isnan(raw)
    if not known.any():
        return term
    basis = None if own is None or not (known & ~own).any() else ~own[known]
    term[known] = weight * (standardised(raw[known], basis) - 0.5)
    return term


# -- storage --------------------------------------------------------------------------------------

_CACHE: WeakKeyDictionary[LibraryStore, tuple[object, Factors | None]] = WeakKeyDictionary()
_LOCK = threading.Lock()


def _stamp(root: Path) -> object:
    """What changes when either file is rewritten."""
    stamps = []
    for name in (FACTORS_FILE, MODEL_FILE):
        try:
            stat = (root / DIRECTORY / name).stat()
        except FileNotFoundError:
            return None
        stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(stamps)


def _remember(store: LibraryStore, root: Path | None, factors: Factors) -> None:
    if root is not None:
        _save(root, factors)
    with _LOCK:
        _CACHE[store] = (None if root is None else _stamp(root), factors)


def _read(store: LibraryStore, root: Path | None, *, check: bool) -> Factors | None:
    """The factors (cached while the files stay the same); with ``check``, None if stale."""
    with _LOCK:
        cached = _CACHE.get(store)
    if root is None:
        found = None if cached is None else cached[1]
    else:
        stamp = _stamp(root)
        if cached is not None and cached[0] == stamp and stamp is not None:
            found = cached[1]
        else:
            found = None if stamp is None else _load(root)
            with _LOCK:
                _CACHE[store] = (stamp, found)
    if found is None or not check:
        return found
    if found.epoch != store.epoch or store.feedback_extent() > STALE_GROWTH * found.events:
        return None
    return found


def _save(root: Path, factors: Factors) -> None:
    from safetensors.numpy import save

    folder = root / DIRECTORY
    folder.mkdir(exist_ok=True)
    data = save({"users": factors.user_factors, "tracks": factors.track_factors})
    with atomic_file(folder / FACTORS_FILE, umask=True) as tmp:
        tmp.write_bytes(data)
    write_json(
        folder / MODEL_FILE,
        {
            "format": FORMAT,
            "epoch": factors.epoch,
            "events": factors.events,
            "users": sorted(factors.users, key=factors.users.__getitem__),
            "tracks": sorted(factors.tracks, key=factors.tracks.__getitem__),
            "factors_sha256": hashlib.sha256(data).hexdigest(),
        },
    )


def _load(root: Path) -> Factors | None:
    """The stored factors; None when the two files do not belong together (one rewritten
    while the other was read); a damaged file raises IndexCorruptError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_bytes

    folder = root / DIRECTORY
    try:
        data = (folder / FACTORS_FILE).read_bytes()
        model = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{folder / MODEL_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise IndexCorruptError(f"{folder / MODEL_FILE}: not collaborative factors of format 1")
    if model.get("factors_sha256") != hashlib.sha256(data).hexdigest():
        return None
    try:
        tensors = load_bytes(data)
        users, tracks = list(model["users"]), list(model["tracks"])
        user_factors, track_factors = tensors["users"], tensors["tracks"]
    except (SafetensorError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"{folder} holds damaged collaborative factors: {exc}") from exc
    if user_factors.shape[0] != len(users) or track_factors.shape[0] != len(tracks):
        raise IndexCorruptError(f"{folder}: the factors do not match the ids")
    return Factors(
        {u: i for i, u in enumerate(users)},
        {t: i for i, t in enumerate(tracks)},
        user_factors,
        track_factors,
        str(model.get("epoch")),
        int(model.get("events", 0)),
    )
