"""The collaborative signal of personal search: ALS factors of the feedback log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from newwave import Hits, Recommender, Track
from newwave.errors import IndexCorruptError, InvalidInputError, MissingDependencyError
from newwave.search.collaborative import ALPHA, COLLABORATIVE_WEIGHT, confidences
from newwave.search.personal import Feedback

pytestmark = pytest.mark.usefixtures("keyword_plugin")

GROUP = 10  # tracks per group: a0..a9, b0..b9
FACTORS = 2  # the log below has two groups: ALS with more factors fits its noise


def tracks() -> list[Track]:
    """20 tracks equally relevant to "calm" (three words each, "calm" one of them)."""
    return [
        Track(id=f"{group}{i}", description=f"calm {group}x{i} {group}y{i}")
        for group in "ab"
        for i in range(GROUP)
    ]


def library(tmp_path: Path) -> Recommender:
    rec = Recommender(fields={"description": "keyword"}, rewriter=None)
    rec.add(tracks())
    rec.save(tmp_path / "lib")
    return Recommender.load(tmp_path / "lib")


def with_log(rec: Recommender, *, seed: int = 0) -> None:
    """40 listeners in two groups, each liking and playing 5 of their group's tracks; the
    newcomer, in group b, has liked b0 only."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(40):
        group = "ab"[u % 2]
        for i, n in enumerate(rng.choice(GROUP, 5, replace=False)):
            event = "like" if i % 2 else "play"
            seconds = 90.0 if event == "play" else None
            events.append(Feedback(f"u{u}", f"{group}{n}", event, 100.0 + u, seconds))
        events.append(Feedback(f"u{u}", f"{'ba'[u % 2]}{u % GROUP}", "skip", 200.0 + u))
    events.append(Feedback("newcomer", "b0", "like", 300.0))
    rec.add_feedback(events)


def group_b_in_top(hits: Hits, n: int = 10) -> int:
    return sum(h.track.id.startswith("b") for h in hits[:n])


def test_als_moves_the_tracks_the_users_group_co_likes_up(tmp_path: Path) -> None:
    rec = library(tmp_path)
    with_log(rec)
    before = rec.search("calm", k=20, user="newcomer")
    assert all("collaborative" not in h.scores for h in before)
    fitted = rec.fit_collaborative(factors=FACTORS)
    assert "newcomer" in fitted.users
    assert fitted.events == 241
    after = rec.search("calm", k=20, user="newcomer")
    assert group_b_in_top(before) <= 1  # equally relevant: the a group first, by id
    assert group_b_in_top(after) == 10
    assert all("collaborative" in h.scores for h in after)
    terms = [h.scores["collaborative"] for h in after]
    assert max(terms) <= COLLABORATIVE_WEIGHT / 2
    assert min(terms) >= -COLLABORATIVE_WEIGHT / 2
    # the same user given as events (e.g. from a log) has no stored factors: no term
    events = rec.feedback_events("newcomer")
    assert [h.track.id for h in rec.search("calm", k=20, user=events)] == [
        h.track.id for h in before
    ]


def test_without_factors_for_the_user_personal_search_is_unchanged(tmp_path: Path) -> None:
    rec = library(tmp_path)
    with_log(rec)
    for track, event in (("a1", "like"), ("b2", "dislike"), ("b3", "like")):
        rec.feedback("stranger", track, event, at=50.0)
    before = rec.search("calm", k=20, user="stranger")
    rec.fit_collaborative(factors=FACTORS)
    rec.forget("stranger")  # their row dropped: the factors hold no stranger any more
    for track, event in (("a1", "like"), ("b2", "dislike"), ("b3", "like")):
        rec.feedback("stranger", track, event, at=50.0)
    after = rec.search("calm", k=20, user="stranger")
    assert [(h.track.id, h.score, h.scores) for h in after] == [
        (h.track.id, h.score, h.scores) for h in before
    ]
    assert "taste" in after[0].scores
    assert "collaborative" not in after[0].scores


def test_factors_round_trip_as_safetensors_and_json(tmp_path: Path) -> None:
    rec = library(tmp_path)
    with_log(rec)
    fitted = rec.fit_collaborative(factors=FACTORS)
    folder = tmp_path / "lib" / "collaborative"
    tensors = load_file(folder / "factors.safetensors")  # no pickle
    model = json.loads((folder / "model.json").read_text())
    assert tensors["users"].shape == (41, FACTORS)
    assert tensors["tracks"].shape == (len(model["tracks"]), FACTORS)
    assert model["users"][fitted.users["newcomer"]] == "newcomer"
    np.testing.assert_array_equal(tensors["users"], fitted.user_factors)
    again = Recommender.load(tmp_path / "lib")
    assert [(h.track.id, h.scores) for h in again.search("calm", k=20, user="newcomer")] == [
        (h.track.id, h.scores) for h in rec.search("calm", k=20, user="newcomer")
    ]
    # refitting gives the same factors (fixed seed, one thread)
    np.testing.assert_allclose(
        again.fit_collaborative(factors=FACTORS).user_factors, fitted.user_factors
    )


def test_stale_factors_are_ignored(tmp_path: Path) -> None:
    rec = library(tmp_path)
    with_log(rec)
    rec.fit_collaborative(factors=FACTORS)
    assert "collaborative" in rec.search("calm", user="newcomer")[0].scores
    # the log grows past twice the events fitted: the factors are ignored until refitted
    rec.add_feedback([Feedback("late", "b1", "like", 400.0 + i) for i in range(242)])
    assert "collaborative" not in rec.search("calm", user="newcomer")[0].scores
    rec.fit_collaborative(factors=FACTORS)
    assert "collaborative" in rec.search("calm", user="newcomer")[0].scores
    # a factors file that does not match model.json (rewritten apart) is ignored
    path = tmp_path / "lib" / "collaborative" / "factors.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    again = Recommender.load(tmp_path / "lib")
    assert "collaborative" not in again.search("calm", user="newcomer")[0].scores
    # a damaged model.json is named; forgetting anyone removes the unusable files
    (tmp_path / "lib" / "collaborative" / "model.json").write_text("{")
    with pytest.raises(IndexCorruptError, match=r"model\.json"):
        Recommender.load(tmp_path / "lib").search("calm", user="newcomer")
    again.forget("newcomer")
    assert list((tmp_path / "lib" / "collaborative").iterdir()) == []


def test_confidence_counts_positive_feedback_only() -> None:
    rows = [
        ("u", "liked", "like", 1.0, None, None),
        ("u", "liked", "play", 2.0, 30.0, None),  # half of a full play
        ("u", "played", "play", 1.0, 120.0, None),
        ("u", "cancelled", "like", 1.0, None, None),
        ("u", "cancelled", "dislike", 2.0, None, None),
        ("u", "skipped", "skip", 1.0, None, None),
        ("u", "weighted", "like", 1.0, None, 3.0),
        ("u", "skipped-then-liked", "skip", 1.0, None, None),
        ("u", "skipped-then-liked", "like", 2.0, None, None),
    ]
    assert confidences(rows) == {
        ("u", "liked"): pytest.approx(ALPHA * 1.25),
        ("u", "played"): pytest.approx(ALPHA * 0.5),
        ("u", "weighted"): pytest.approx(ALPHA * 3.0),
        ("u", "skipped-then-liked"): pytest.approx(ALPHA * 1.0),
    }


def test_fitting_needs_positive_feedback_and_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = library(tmp_path)
    rec.feedback("ann", "a1", "dislike")
    with pytest.raises(InvalidInputError, match="no positive feedback"):
        rec.fit_collaborative(factors=FACTORS)
    rec.feedback("ann", "a2", "like")
    with pytest.raises(InvalidInputError, match="factors must be a positive int"):
        rec.fit_collaborative(factors=0)
    with pytest.raises(InvalidInputError, match="regularization must be finite and > 0"):
        rec.fit_collaborative(regularization=float("nan"))
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)
    with pytest.raises(MissingDependencyError, match=r"newwave-music\[implicit\]"):
        rec.fit_collaborative(factors=FACTORS)
    assert not (tmp_path / "lib" / "collaborative").exists()


def test_a_library_in_memory_keeps_its_factors_in_memory() -> None:
    rec = Recommender(fields={"description": "keyword"}, rewriter=None)
    rec.add(tracks())
    with_log(rec)
    rec.fit_collaborative(factors=FACTORS)
    assert group_b_in_top(rec.search("calm", k=20, user="newcomer")) == 10
    rec.forget("newcomer")
    rec.feedback("newcomer", "b0", "like", at=300.0)
    assert "collaborative" not in rec.search("calm", user="newcomer")[0].scores
