"""Feedback, taste, personal search, refinement, diversity, forgetting a user (issue 14)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newwave import Recommender, Track
from newwave.errors import InvalidInputError, UnknownTrackError
from newwave.search import personal
from newwave.search.personal import (
    Feedback,
    Taste,
    mmr,
    read_interactions,
    taste,
    write_interactions,
)

pytestmark = pytest.mark.usefixtures("keyword_plugin")

TRACKS = [
    Track(id="g1", description="acoustic guitar folk song soft female vocals"),
    Track(id="g2", description="acoustic guitar ballad soft female vocals calm"),
    Track(id="g3", description="acoustic guitar calm folk tune"),
    Track(id="d1", description="distorted electric guitar rock loud calm"),
    Track(id="d2", description="distorted heavy metal guitar riff calm"),
    Track(id="d3", description="distorted punk rock fast"),
    Track(id="p1", description="calm piano solo slow"),
    Track(id="p2", description="calm piano ambient slow"),
    Track(id="f1", description="fast techno club beat"),
    Track(id="f2", description="fast drum and bass beat calm"),
]


def library(tmp_path: Path) -> Recommender:
    rec = Recommender(fields={"description": "keyword"}, rewriter=None)
    rec.add(TRACKS)
    rec.save(tmp_path / "lib")
    return Recommender.load(tmp_path / "lib")


def test_feedback_is_stored_listed_and_survives_a_restart(tmp_path: Path) -> None:
    rec = library(tmp_path)
    rec.feedback("ann", "g1", "like", at=100.0)
    rec.feedback("ann", "d1", "dislike", at="1970-01-01T00:03:20Z")
    rec.feedback("ann", "p1", "play", at=300, seconds=42.5)
    rec.feedback("bob", "f1", "skip", at=50, weight=0.1)
    again = Recommender.load(tmp_path / "lib")
    events = again.feedback_events("ann")
    assert [(e.track, e.event, e.at, e.seconds) for e in events] == [
        ("g1", "like", 100.0, None),
        ("d1", "dislike", 200.0, None),
        ("p1", "play", 300.0, 42.5),
    ]
    assert again.feedback_users() == {"ann": 3, "bob": 1}
    assert again.feedback_events("bob")[0].signed_weight == pytest.approx(-0.1)


def test_bad_feedback_is_refused_with_clear_errors(tmp_path: Path) -> None:
    rec = library(tmp_path)
    with pytest.raises(InvalidInputError, match="unknown feedback event 'love'"):
        rec.feedback("ann", "g1", "love")
    with pytest.raises(UnknownTrackError, match="'nope'"):
        rec.feedback("ann", "nope", "like")
    with pytest.raises(InvalidInputError, match="weight must be finite and >= 0"):
        rec.feedback("ann", "g1", "like", weight=-1)
    with pytest.raises(InvalidInputError, match="needs seconds"):
        rec.feedback("ann", "g1", "play")
    with pytest.raises(InvalidInputError, match="for 'play' events"):
        rec.feedback("ann", "g1", "like", seconds=3)
    with pytest.raises(InvalidInputError, match="ISO 8601"):
        rec.feedback("ann", "g1", "like", at="yesterday")
    with pytest.raises(InvalidInputError, match="user"):
        rec.feedback("", "g1", "like")
    assert rec.feedback_events("ann") == []


def test_personal_search_moves_the_users_taste_up_and_explains_it(tmp_path: Path) -> None:
    rec = library(tmp_path)
    plain = rec.search("calm", k=10)
    assert "taste" not in plain[0].scores
    for track in ("g2", "g3"):
        rec.feedback("ann", track, "like")
    rec.feedback("ann", "d1", "dislike")
    hits = rec.search("calm", k=10, user="ann")
    ranks = {h.track.id: h.rank for h in hits}
    plain_ranks = {h.track.id: h.rank for h in plain}
    assert ranks["g2"] < plain_ranks["g2"]  # liked: up
    assert ranks["d1"] > plain_ranks["d1"]  # disliked: down
    assert all("taste" in h.scores and "relevance" in h.scores for h in hits)
    assert max(h.scores["taste"] for h in hits) <= 1.25
    assert hits[0].scores["taste"] > 0
    # the same taste given as events, e.g. from a log, ranks alike
    events = rec.feedback_events("ann")
    assert [h.track.id for h in rec.search("calm", user=events)] == [h.track.id for h in hits]


def test_the_taste_is_a_classifier_of_the_users_feedback(tmp_path: Path) -> None:
    rec = library(tmp_path)
    feedback = [("g1", "like"), ("p1", "like"), ("f1", "skip"), ("f2", "skip"), ("d3", "dislike")]
    events = [Feedback("ann", t, e, 100.0 + i) for i, (t, e) in enumerate(feedback)]
    found = taste(rec._library.store, rec._channels, events)
    ids = [t.id for t in TRACKS]
    scores = rec.vectors("description", ids) @ found.classifiers["description"]
    margin = dict(zip(ids, scores, strict=True))
    assert min(margin["g1"], margin["p1"]) > 0 > max(margin["f1"], margin["f2"], margin["d3"])
    # unjudged tracks: either liked aspect (acoustic guitar, piano) above neither
    assert min(margin["g2"], margin["g3"], margin["p2"]) > max(margin["d1"], margin["d2"])
    # feedback all on one side: no classifier, so no taste term; recommend has the mean taste
    only_likes = taste(rec._library.store, rec._channels, events[:2])
    assert not only_likes.classifiers
    assert "description" in only_likes.vectors
    plain = [h.track.id for h in rec.search("calm", k=6)]
    assert [h.track.id for h in rec.search("calm", k=6, user=events[:2])] == plain
    assert rec.search("calm", k=6, user=events)[0].scores["taste"] > 0


def test_the_taste_classifier_is_ridge_regression() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((7, 12))
    net = np.array([1.0, -1.0, -0.25, 0.5, 0.0, -1.0, 1.0])  # the 0: no example
    recency = rng.uniform(0.2, 1.0, 7)
    judged = net != 0
    expected = Ridge(alpha=personal.TASTE_ALPHA).fit(
        rows[judged], np.sign(net[judged]), sample_weight=recency[judged]
    )
    found = personal._classifier(rows, net, recency)
    assert found is not None
    np.testing.assert_allclose(found, expected.coef_, rtol=1e-4, atol=1e-6)
    assert personal._classifier(rows[:2], np.array([1.0, 0.5]), recency[:2]) is None


def test_the_taste_classifier_reads_the_channels_side_by_side(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    tracks = [
        Track(id=t.id, description=t.description, tags=[str(t.description).split()[0], t.id[0]])
        for t in TRACKS
    ]
    rec = Recommender(fields={"description": "keyword", "tags": "keyword"}, rewriter=None)
    rec.add(tracks)
    feedback = [("g1", "like"), ("p1", "like"), ("f1", "skip"), ("d3", "dislike")]
    events = [Feedback("ann", t, e, 100.0 + i) for i, (t, e) in enumerate(feedback)]
    found = taste(rec._library.store, rec._channels, events)
    ids = [t for t, _ in feedback]
    both = np.hstack([rec.vectors("description", ids), rec.vectors("tags", ids)])
    recency = 0.5 ** ((103.0 - np.array([100.0, 101.0, 102.0, 103.0])) / personal.HALF_LIFE_S)
    expected = Ridge(alpha=personal.TASTE_ALPHA).fit(
        both, [1.0, 1.0, -1.0, -1.0], sample_weight=recency
    )
    joined = np.concatenate([found.classifiers["description"], found.classifiers["tags"]])
    np.testing.assert_allclose(joined, expected.coef_, rtol=1e-4, atol=1e-6)


def test_relevance_and_taste_are_standardised_over_the_candidates() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 100.0])
    scaled = personal.standardised(values)
    z = (values - values.mean()) / values.std()
    expected = (np.clip(z, -2, 2) + 2) / 4
    np.testing.assert_allclose(scaled, expected)
    assert scaled[-1] == 1.0  # the outlier is clipped
    assert 0 < scaled[0] < scaled[4] < 0.5
    assert list(personal.standardised(np.full(3, 7.0))) == [0.5, 0.5, 0.5]
    assert len(personal.standardised(np.zeros(0))) == 0


def test_a_taste_is_computed_once_per_state_of_the_feedback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = library(tmp_path)
    rec.feedback("ann", "g1", "like", at=1.0)
    rec.feedback("ann", "f1", "skip", at=2.0)
    made: list[int] = []

    def counted(*args: Any) -> Taste:
        made.append(1)
        return taste(*args)

    monkeypatch.setattr(personal, "taste", counted)
    first = rec.search("calm", user="ann")
    assert [h.track.id for h in rec.search("calm", user="ann")] == [h.track.id for h in first]
    rec.search("piano", user="ann")
    rec.recommend("ann")
    assert len(made) == 1
    rec.feedback("ann", "p1", "like", at=3.0)  # new feedback: a new taste
    rec.search("calm", user="ann")
    assert len(made) == 2
    rec.add([Track(id="p3", description="calm piano nocturne")])  # changed tracks: too
    rec.search("calm", user="ann")
    assert len(made) == 3


def test_recommend_without_a_query_follows_the_taste_and_leaves_out_dislikes(
    tmp_path: Path,
) -> None:
    rec = library(tmp_path)
    rec.feedback("ann", "g1", "like")
    rec.feedback("ann", "d1", "dislike")
    hits = rec.recommend("ann", k=3)
    assert hits[0].track.id in {"g1", "g2", "g3"}
    assert "d1" not in {h.track.id for h in rec.recommend("ann", k=10)}
    assert hits[0].scores["taste"] >= hits[-1].scores["taste"]
    with pytest.raises(InvalidInputError, match="no feedback from user 'zed'"):
        rec.recommend("zed")


def test_refinement_is_rocchio_and_leaves_the_examples_out(tmp_path: Path) -> None:
    rec = library(tmp_path)
    plain = [h.track.id for h in rec.search("guitar", k=10)]
    refined = [h.track.id for h in rec.search("guitar", k=10, like=["d1"])]
    assert "d1" not in refined
    assert refined.index("d2") < plain.index("d2")  # "like d1": distorted guitars move up
    away = [h.track.id for h in rec.search("guitar", k=10, dislike=["d1"])]
    assert away.index("g1") <= plain.index("g1")
    with pytest.raises(UnknownTrackError):
        rec.search("guitar", like=["nope"])
    with pytest.raises(InvalidInputError, match="list of track ids"):
        rec.search("guitar", like="d1")


def test_diversity_spreads_the_hits(tmp_path: Path) -> None:
    rec = library(tmp_path)
    plain = rec.search("calm slow piano", k=3)
    spread = rec.search("calm slow piano", k=3, diversity=0.9)
    assert plain[0].track.id == spread[0].track.id
    assert {h.track.id for h in plain} != {h.track.id for h in spread}
    with pytest.raises(InvalidInputError, match="diversity"):
        rec.search("calm", diversity=2)
    similarity = np.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mmr(np.array([1.0, 0.9, 0.5]), similarity, 2, 0.0) == [0, 1]
    assert mmr(np.array([1.0, 0.9, 0.5]), similarity, 2, 0.7) == [0, 2]


def test_interaction_logs_round_trip(tmp_path: Path) -> None:
    rec = library(tmp_path)
    rec.feedback("ann", "g1", "like", at=1_700_000_000.25)
    rec.feedback("ann", "p1", "play", at=1_700_000_100, seconds=12)
    rec.feedback("bob", "f1", "skip", at=1_700_000_050)
    for name in ("log.csv", "log.jsonl"):
        assert rec.export_feedback(tmp_path / name) == 3
        events = read_interactions(tmp_path / name)
        assert {(e.user, e.track, e.event, e.at, e.seconds) for e in events} == {
            ("ann", "g1", "like", 1_700_000_000.25, None),
            ("ann", "p1", "play", 1_700_000_100.0, 12.0),
            ("bob", "f1", "skip", 1_700_000_050.0, None),
        }
    header = (tmp_path / "log.csv").read_text().splitlines()[0]
    assert header == "user,track,event,timestamp,seconds,weight"
    other = Recommender(fields={"description": "keyword"}, rewriter=None)
    other.add(TRACKS)
    assert other.add_feedback(read_interactions(tmp_path / "log.csv")) == 3
    assert len(other.feedback_events("ann")) == 2
    (tmp_path / "bad.csv").write_text("user,track,event,timestamp\nann,g1,love,1\n")
    with pytest.raises(InvalidInputError, match="event 1: unknown feedback event"):
        read_interactions(tmp_path / "bad.csv")
    write_interactions(tmp_path / "one.csv", [Feedback("u", "t", "like", 0.0)])
    assert read_interactions(tmp_path / "one.csv")[0].at == 0.0


def files_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_forget_leaves_nothing_of_the_user_in_the_library_files(tmp_path: Path) -> None:
    rec = library(tmp_path)
    marker = "secret-listener-7f3a"
    for i, track in enumerate(["g1", "g2", "d1", "p1"] * 50):
        rec.feedback(marker, track, "like" if i % 2 else "skip", at=float(i))
    rec.feedback("keeper", "g1", "like")
    assert set(rec.fit_collaborative(factors=2).users) == {marker, "keeper"}
    assert marker.encode() in files_bytes(tmp_path / "lib")
    reader = Recommender.load(tmp_path / "lib")  # another open connection
    assert reader.feedback_users()[marker] == 200
    reader._library.store.close()
    assert rec.forget(marker) == 200
    data = files_bytes(tmp_path / "lib")
    assert marker.encode() not in data
    assert marker.encode("utf-16-le") not in data
    assert rec.feedback_users() == {"keeper": 1}
    again = Recommender.load(tmp_path / "lib")
    assert again.feedback_events("keeper")[0].track == "g1"
    model = json.loads((tmp_path / "lib" / "collaborative" / "model.json").read_text())
    assert model["users"] == ["keeper"]  # the user's factors are gone, the others' kept
    hits = again.search("calm", user="keeper")
    scored = {h.track.id for h in hits if "collaborative" in h.scores}
    assert scored == {"g1", "g2", "p1"}  # the tracks the factors know


def test_a_library_without_the_feedback_table_gets_it(tmp_path: Path) -> None:
    rec = library(tmp_path)
    rec._library.store.close()
    db = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    db.execute("DROP TABLE feedback")  # as a library written before feedback existed
    db.commit()
    db.close()
    old = Recommender.load(tmp_path / "lib")
    assert old.feedback_users() == {}
    assert old.feedback_events("ann") == []
    assert old.forget("ann") == 0
    assert len(old.search("calm", user="ann")) == 10  # no taste yet: the plain order
    old.feedback("ann", "g1", "like")
    assert [e.track for e in Recommender.load(tmp_path / "lib").feedback_events("ann")] == ["g1"]
    tables = sqlite3.connect(tmp_path / "lib" / "library.sqlite").execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'feedback_by_user'"
    )
    assert tables.fetchall() == [("feedback_by_user",)]


def test_feedback_keeps_the_catalogue_seq(tmp_path: Path) -> None:
    rec = library(tmp_path)
    seq = rec._library.store.seq
    rec.feedback("ann", "g1", "like")
    rec.forget("ann")
    assert rec._library.store.seq == seq


# -- the command line -----------------------------------------------------------------------------


def test_the_feedback_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from newwave.cli import main

    lib = str(library(tmp_path).directory)
    assert main(["feedback", lib, "ann", "g1", "like"]) == 0
    assert main(["feedback", lib, "ann", "p1", "play", "--seconds", "30", "--at", "100"]) == 0
    assert "ann: play p1 (2 events)" in capsys.readouterr().out
    assert main(["feedback", lib, "ann", "g1", "love"]) == 1
    assert "unknown feedback event 'love'" in capsys.readouterr().err
    assert main(["feedback-log", lib, "--user", "ann"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user,track,event,timestamp,seconds,weight"
    assert lines[1].startswith("ann,p1,play,1970-01-01T00:01:40.000Z,30.0,")
    assert main(["feedback-log", lib, "--output", str(tmp_path / "log.jsonl")]) == 0
    assert "2 event(s) written" in capsys.readouterr().out
    assert len(read_interactions(tmp_path / "log.jsonl")) == 2
    assert main(["search", lib, "calm", "--user", "ann", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert "taste" in hits[0]["scores"]
    assert main(["search", lib, "guitar", "--like", "d1", "--diversity", "0.3"]) == 0
    assert "d1" not in capsys.readouterr().out
    assert main(["recommend", lib, "ann", "-k", "3"]) == 0
    assert "taste" in capsys.readouterr().out
    assert main(["forget", lib, "ann"]) == 0
    assert "2 event(s) deleted" in capsys.readouterr().out
    assert main(["recommend", lib, "ann"]) == 1


# -- the evaluation -------------------------------------------------------------------------------


def test_simulated_listeners_are_reproducible_and_personal_search_helps() -> None:
    from newwave.evaluation.personal import evaluate_listeners, read_catalogue

    tracks = read_catalogue()[:120]
    first = evaluate_listeners(tracks, encoder="keyword", listeners=3, seed=1)
    again = evaluate_listeners(tracks, encoder="keyword", listeners=3, seed=1)
    assert first.as_dict()["stages"] == again.as_dict()["stages"]
    assert first.ndcg[0] == first.ndcg_plain[0]  # no feedback yet: the plain ranking
    assert first.ndcg[20] > first.ndcg_plain[20]
    assert "nDCG@10" in first.to_text()


def test_evaluate_on_an_interaction_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from newwave.cli import main

    rec = library(tmp_path)
    events = [
        Feedback("ann", "g1", "like", 1.0),
        Feedback("ann", "d1", "dislike", 2.0),
        Feedback("bob", "d2", "like", 3.0),
        Feedback("ann", "g2", "like", 10.0),
        Feedback("bob", "d3", "play", 11.0, seconds=40),
    ]
    write_interactions(tmp_path / "log.csv", events)
    assert main(["evaluate", "personal", "--log", str(tmp_path / "log.csv"), "--library",
                 str(rec.directory), "--train", "0.6", "--json", "-"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == 2
    assert 0 < report["ndcg@10"] <= 1
    assert rec.feedback_users() == {}  # the evaluation writes nothing
