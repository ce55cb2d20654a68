"""The MusicCaps text benchmark on a hand-made CSV, through the API and the command line."""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from newwave import Encoder, hookimpl
from newwave.cli import main
from newwave.errors import InvalidInputError, MissingFileError, ModelNotFoundError
from newwave.evaluation import evaluate_musiccaps, musiccaps, read_musiccaps_eval
from newwave.evaluation.musiccaps import ENV_VAR, request_for
from newwave.evaluation.paraphrase import paraphrase_as_request
from newwave.hookspecs import Register
from newwave.plugins import get_plugin_manager
from newwave.recommender import Recommender
from newwave.types import Hits, Modality, Role

from .conftest import KeywordEncoder

REAL_CSV = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "musiccaps"
    / "musiccaps-public.csv"
)  # fmt: skip
HEADER = [
    "ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
    "author_id", "is_balanced_subset", "is_audioset_eval",
]  # fmt: skip
ROWS = [  # ytid, aspect_list, caption, is_audioset_eval
    ("a1", "['piano', 'ballad']", "a sad piano ballad", "True"),
    ("t1", "['slow', 'piano', 'piece']", "a slow piano piece", "False"),  # train: never used
    ("a2", '["heavy metal", "distorted guitar"]', "loud heavy metal with distorted guitar", "True"),
    ("a3", "['jazz', 'saxophone']", "smooth jazz saxophone", "True"),
    ("a4", "['ambient', 'drone']", "a slow piano piece", "True"),
]  # fmt: skip


def write_musiccaps(path: Path, rows: list[tuple[str, str, str, str]] = ROWS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for ytid, aspects, caption, is_eval in rows:
            writer.writerow([ytid, 30, 40, "/m/0", aspects, caption, 4, "False", is_eval])
    return path


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_musiccaps(tmp_path / "musiccaps-public.csv")


def test_only_the_evaluation_split_is_read_and_aspects_are_parsed(table: Path) -> None:
    clips = read_musiccaps_eval(table)
    assert [clip.ytid for clip in clips] == ["a1", "a2", "a3", "a4"]
    assert clips[0].aspects == ("piano", "ballad")
    assert clips[1].aspects == ("heavy metal", "distorted guitar")  # JSON quotes too
    assert clips[1].aspect_text == "heavy metal, distorted guitar"
    assert clips[3].caption == "a slow piano piece"
    assert [clip.ytid for clip in read_musiccaps_eval(table, limit=2)] == ["a1", "a2"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a1", "['x']", "a caption", "maybe")], "is_audioset_eval must be True or False"),
        ([("a1", "[]", "a caption", "True")], "evaluation clip 'a1' has no aspects"),
        ([("a1", "['x']", "", "True")], "evaluation clip 'a1' has no caption"),
        ([("t1", "['x']", "a caption", "False")], "no clip of the evaluation split"),
        ([("a1", "['x', 'y]", "a caption", "True")], "cannot be parsed"),
    ],
)
def test_bad_rows_are_rejected(
    tmp_path: Path, rows: list[tuple[str, str, str, str]], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_musiccaps_eval(write_musiccaps(tmp_path / "bad.csv", rows))


def test_bad_arguments(table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(InvalidInputError, match=f"set {ENV_VAR}"):
        evaluate_musiccaps(systems=["tfidf"])
    with pytest.raises(MissingFileError):
        evaluate_musiccaps(tmp_path / "none.csv", systems=["tfidf"])
    with pytest.raises(InvalidInputError, match="wrap one"):
        evaluate_musiccaps(table, systems="tfidf")
    with pytest.raises(InvalidInputError, match="'tfidf' is listed twice"):
        evaluate_musiccaps(table, systems=["tfidf", "tfidf"])
    with pytest.raises(InvalidInputError, match="limit must be a positive integer"):
        evaluate_musiccaps(table, systems=["tfidf"], limit=0)
    table.write_text(table.read_text().replace("is_audioset_eval", "split"), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no column 'is_audioset_eval'"):
        evaluate_musiccaps(table, systems=["tfidf"])


def test_tfidf_ranks_by_hand(table: Path) -> None:
    report = evaluate_musiccaps(table, systems=["tfidf"])
    assert report.clips == 4
    result = report["tfidf"].result
    assert result is not None
    # a1-a3 share words only with their own aspects. a4 ("a slow piano piece") shares "piano"
    # with a1 and nothing with the rest, which tie at 0, the larger id first: a4 comes second.
    # (The train clip t1, whose aspects are that caption's words, would come first.)
    assert result.per_metric("median_rank") == {"a1": 1, "a2": 1, "a3": 1, "a4": 2}
    assert result["recall@1"] == 0.75
    assert result["mrr"] == 0.875
    assert report["tfidf"].queries_per_second is not None


def test_a_sample_of_queries_ranks_every_candidate(
    table: Path, keyword_plugin: None, tmp_path: Path
) -> None:
    full = evaluate_musiccaps(table, systems=["tfidf", "keyword"])
    report = evaluate_musiccaps(table, systems=["tfidf", "keyword"], sample=2)
    assert (report.clips, report.queries, report.sample) == (4, 2, 2)
    chosen = sorted(np.random.default_rng(musiccaps.SAMPLE_SEED).choice(4, 2, replace=False))
    ids = [read_musiccaps_eval(table)[int(i)].ytid for i in chosen]
    for name in ("tfidf", "keyword"):
        sampled, every = report[name].result, full[name].result
        assert sampled is not None
        assert every is not None
        assert sampled.num_queries == 2
        ranks = sampled.per_metric("median_rank")
        assert ranks == {i: every.per_metric("median_rank")[i] for i in ids}
    data = report.as_dict()
    assert (data["queries"], data["candidates"], data["sample"]) == (2, 4, 2)
    assert "2 captions of the evaluation split (a sample, seed 0)" in report.to_text()
    for bad in (0, 5, True):
        with pytest.raises(InvalidInputError, match="sample"):
            evaluate_musiccaps(table, systems=["tfidf"], sample=bad)
    argv = ["evaluate", "musiccaps", "--csv", str(table), "--system", "tfidf", "--sample", "2"]
    assert main([*argv, "--json", str(tmp_path / "sample.json")]) == 0
    written = json.loads((tmp_path / "sample.json").read_text(encoding="utf-8"))
    assert written["systems"][0]["metrics"] == data["systems"][0]["metrics"]
    assert (written["queries"], written["sample"]) == (2, 2)


def test_a_recommender_system_ranks_as_its_encoder_s_cosines(
    table: Path, keyword_plugin: None
) -> None:
    report = evaluate_musiccaps(table, systems=["keyword"])
    system = report["keyword"]
    assert system.result is not None
    assert "Recommender(fields={'tags': 'keyword'}): tags=keyword (keyword)" in system.setup
    clips = read_musiccaps_eval(table)
    encoder = KeywordEncoder()
    scores = (
        encoder.encode_queries([c.caption for c in clips])
        @ encoder.encode_text([c.aspect_text for c in clips]).T
    )
    ranks = system.result.per_metric("median_rank")
    for i, clip in enumerate(clips):  # the own clip's rank, anywhere among the ties of its score
        above, tied = (
            np.count_nonzero(scores[i] > scores[i, i]),
            np.count_nonzero(scores[i] == scores[i, i]),
        )
        assert above + 1 <= ranks[clip.ytid] <= above + tied
    assert ranks["a1"] == 1


class UnloadableEncoder(Encoder):
    """An encoder whose weights are never there."""

    name = "unloadable"

    @property
    def dim(self) -> int:
        raise ModelNotFoundError("could not find the weights of 'unloadable'\nTried: nothing")

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> Any:
        raise AssertionError("never reached")


class UnloadablePlugin:
    @hookimpl
    def register_encoders(self, register: Register) -> None:
        register(UnloadableEncoder)


@pytest.fixture
def unloadable_plugin() -> Iterator[None]:
    pm = get_plugin_manager()
    pm.register(UnloadablePlugin(), name="test-unloadable")
    try:
        yield
    finally:
        pm.unregister(name="test-unloadable")


def test_a_system_that_cannot_load_is_skipped_with_the_reason(
    table: Path, unloadable_plugin: None
) -> None:
    report = evaluate_musiccaps(table, systems=["tfidf", "unloadable"])
    skipped = report["unloadable"]
    assert skipped.result is None
    assert skipped.skipped == "ModelNotFoundError: could not find the weights of 'unloadable'"
    assert skipped.as_dict()["metrics"] is None
    assert "- unloadable: skipped: ModelNotFoundError" in report.to_text()
    assert report["tfidf"].result is not None


def test_a_list_spec_reaches_the_recommender_unchanged(
    table: Path, keyword_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[Any] = []

    class Recording(Recommender):
        def __init__(self, fields: Any = None, **options: Any) -> None:
            given.append(fields)
            one = {name: spec[0] for name, spec in fields.items()} if fields else None
            super().__init__(one, **options)

    monkeypatch.setattr(musiccaps, "Recommender", Recording)
    report = evaluate_musiccaps(table, systems=[["keyword"]])
    assert given == [{"tags": ["keyword"]}]
    assert report.systems[0].name == "keyword"


def test_the_command_line_runs_systems_side_by_side(
    table: Path,
    tmp_path: Path,
    keyword_plugin: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV_VAR, str(table))  # no --csv: the environment names the file
    out = tmp_path / "musiccaps.json"
    argv = ["evaluate", "musiccaps", "--system", "tfidf", "--system", "keyword", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert any(line.startswith("tfidf ") and "0.7500" in line for line in lines)
    assert any(line.startswith("keyword ") for line in lines)
    assert "queries/s" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["queries"], data["candidates"], data["limit"]) == (4, 4, None)
    assert [s["name"] for s in data["systems"]] == ["tfidf", "keyword"]
    assert data["systems"][0]["metrics"]["mrr"] == 0.875
    assert data["systems"][0]["queries"] == 4

    assert main(["evaluate", "musiccaps", "--system", "tfidf", "--limit", "2", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["queries"] == 2
    assert main(["evaluate", "musiccaps", "--system", "tfidf", "--limit", "-1"]) == 1
    assert "limit must be a positive integer" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CSV.is_file(), reason="musiccaps-public.csv is not in ../shared")
def test_the_real_csv_with_minilm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with REAL_CSV.open(newline="", encoding="utf-8") as handle:
        first = [r["ytid"] for r in csv.DictReader(handle) if r["is_audioset_eval"] == "True"]
    out = tmp_path / "real.json"
    systems = ["--system", "tfidf", "--system", "minilm", "--system", "defaults"]
    argv = ["evaluate", "musiccaps", "--csv", str(REAL_CSV), *systems, "--limit", "60"]
    argv += ["--json", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["queries"] == 60
    assert read_musiccaps_eval(REAL_CSV, limit=60)[-1].ytid == first[59]
    assert [s["name"] for s in data["systems"]] == ["tfidf", "minilm", "defaults"]
    # Recommender() picks its fields from the tracks: tags only, never the captions (the queries).
    assert data["systems"][2]["setup"].startswith("Recommender(): tags:bm25=bm25")
    assert "description" not in data["systems"][2]["setup"]
    for system in data["systems"]:
        # Chance is an MRR of about 0.08 among 60 candidates; both systems do far better.
        assert system["metrics"]["mrr"] > 0.4, system
        assert system["metrics"]["recall@20"] > 0.8, system


# -- queries rephrased as requests ---------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Lowercased words, without the courtesies a request may add."""
    return [w for w in re.findall(r"[\w'-]+", text.lower()) if w not in {"please", "thanks"}]


CAPTION_WORDS = ["This", "is", "a", "an", "The", "song", "music", "I", "EDM", "slow", "piano"]
CAPTION_WORDS += ["rock", "with", "female", "vocals", "no", "drums", "please", "thanks"]


@given(
    st.lists(
        st.lists(st.sampled_from(CAPTION_WORDS), min_size=1, max_size=8).map(" ".join),
        min_size=1,
        max_size=3,
    ).map(lambda sentences: ". ".join(sentences) + "."),
    st.integers(min_value=0, max_value=2**32),
)
def test_a_request_keeps_the_caption_s_words_after_its_opening(caption: str, seed: int) -> None:
    request = paraphrase_as_request(caption, seed)
    assert request == paraphrase_as_request(caption, seed)  # deterministic
    assert request != caption
    said, asked = _words(caption), _words(request)
    # The opening ("this is", "the song is") may go; every other word stays, in order, at the end.
    assert any(said[skip:] == asked[len(asked) - len(said) + skip :] for skip in range(4)), (
        caption,
        request,
    )
    assert len(asked) > len(said) - 3  # a request wraps the caption


def test_requests_are_varied_and_shaped_like_requests() -> None:
    caption = "This is a live recording of a rock song. The crowd is cheering."
    requests = {paraphrase_as_request(caption, seed) for seed in range(200)}
    assert len(requests) >= 8  # the seed picks a template and the courtesies
    for request in requests:
        assert "a live recording of a rock song" in request
        assert "this is" not in request.lower()  # a noun phrase now
    assert "Can you find me a live recording of a rock song? The crowd is cheering." in requests
    assert "I'm looking for a live recording of a rock song. The crowd is cheering." in requests
    clause = "A male vocalist sings over an acoustic guitar."
    clauses = {paraphrase_as_request(clause, seed) for seed in range(200)}
    assert "Play something where a male vocalist sings over an acoustic guitar." in clauses
    assert "Play something like this. A male vocalist sings over an acoustic guitar." in clauses
    assert any(r.startswith("do you have anything where a male vocalist") for r in clauses)
    assert any(r.endswith("acoustic guitar please.") for r in clauses)
    # The first letter is kept for "I" and acronyms.
    assert all("EDM track" in paraphrase_as_request("EDM track.", s) for s in range(50))
    assert all(" I sing" in paraphrase_as_request("I sing.", s) for s in range(50))


@pytest.mark.parametrize(("caption", "seed"), [("", 0), ("   ", 0), ("a song", True)])
def test_bad_paraphrase_input(caption: str, seed: Any) -> None:
    with pytest.raises(InvalidInputError):
        paraphrase_as_request(caption, seed)


def test_request_for_seeds_with_the_clip_id(table: Path) -> None:
    clips = read_musiccaps_eval(table)
    expected = paraphrase_as_request(clips[0].caption, zlib.crc32(b"a1"))
    assert request_for(clips[0]) == expected
    assert request_for(read_musiccaps_eval(table, limit=1)[0]) == expected


# -- systems: hybrids, the rewrite option, the query set -----------------------------------------


class _Recording(Recommender):
    """A Recommender that notes the fields it is given and every query's text and rewrite."""

    made: ClassVar[list[Any]] = []
    searched: ClassVar[list[tuple[str, bool]]] = []

    def __init__(self, fields: Any = None, **options: Any) -> None:
        _Recording.made.append(fields)
        super().__init__(fields, **options)

    def search(self, query: str, **options: Any) -> Hits:
        _Recording.searched.append((query, options["rewrite"]))
        return super().search(query, **options)

    def search_many(self, queries: Any, **options: Any) -> list[Hits]:
        _Recording.searched.extend((query, options["rewrite"]) for query in queries)
        return super().search_many(queries, **options)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[_Recording]:
    monkeypatch.setattr(musiccaps, "Recommender", _Recording)
    _Recording.made, _Recording.searched = [], []
    return _Recording


def test_no_rewrite_reaches_recommender_search(
    table: Path, keyword_plugin: None, recording: type[_Recording]
) -> None:
    report = evaluate_musiccaps(table, systems=["keyword", "keyword/no-rewrite"])
    clips = read_musiccaps_eval(table)
    captions = [clip.caption for clip in clips]
    assert recording.searched == [(c, True) for c in captions] + [(c, False) for c in captions]
    assert recording.made == [{"tags": "keyword"}, {"tags": "keyword"}]
    assert [s.name for s in report.systems] == ["keyword", "keyword/no-rewrite"]
    assert (report["keyword"].rewrite, report["keyword/no-rewrite"].rewrite) == (True, False)
    assert report["keyword"].setup.endswith("rewriter rules")
    assert report["keyword/no-rewrite"].setup.endswith("rewriter off")
    assert report.as_dict()["systems"][1]["rewrite"] is False


def test_the_rewriter_changes_what_is_found(tmp_path: Path) -> None:
    rows = [
        ("a1", "['piano', 'vocals']", "piano with vocals", "True"),
        ("a2", "['piano', 'instrumental', 'solo', 'grand']", "solo grand piano", "True"),
        ("a3", "['piano', 'calm']", "piano music without vocals", "True"),
    ]
    table = write_musiccaps(tmp_path / "negated.csv", rows)
    report = evaluate_musiccaps(table, systems=["bm25", "bm25/no-rewrite"])
    with_rewriter, without = report["bm25"].result, report["bm25/no-rewrite"].result
    assert with_rewriter is not None
    assert without is not None
    # As it is, a3's query matches a1 best (piano and vocals). Rewritten, it is "piano music",
    # which a1 and a3 match equally, and a1 (vocals, unwanted) is demoted.
    assert without.per_metric("median_rank")["a3"] == 2
    assert with_rewriter.per_metric("median_rank")["a3"] == 1
    assert with_rewriter.per_metric("median_rank")["a1"] == 1  # nothing negated: as before


def test_hybrid_systems_by_name(
    table: Path, keyword_plugin: None, recording: type[_Recording]
) -> None:
    report = evaluate_musiccaps(table, systems=["bm25", "bm25+keyword", "bm25+keyword/no-rewrite"])
    assert recording.made == [
        {"tags": "bm25"},
        {"tags": ["bm25", "keyword"]},
        {"tags": ["bm25", "keyword"]},
    ]
    hybrid = report["bm25+keyword"]
    assert hybrid.result is not None
    assert hybrid.rewrite is True
    assert "tags:bm25=bm25" in hybrid.setup
    assert "tags:keyword=keyword" in hybrid.setup
    assert "weighted {'weights': {'tags:bm25': 1.0}}" in hybrid.setup  # the default fuser
    assert report["bm25+keyword/no-rewrite"].rewrite is False
    for bad in ("tfidf/no-rewrite", "bm25+", "/no-rewrite"):
        with pytest.raises(InvalidInputError):
            evaluate_musiccaps(table, systems=[bad])


def test_the_requests_query_set(
    table: Path, keyword_plugin: None, recording: type[_Recording]
) -> None:
    report = evaluate_musiccaps(table, systems=["tfidf", "keyword"], queries="requests")
    clips = read_musiccaps_eval(table)
    assert recording.searched == [(request_for(clip), True) for clip in clips]
    assert report.query_set == "requests"
    assert report.as_dict()["query_set"] == "requests"
    assert "captions of the evaluation split, rephrased as requests," in report.to_text()
    assert evaluate_musiccaps(table, systems=["tfidf"]).query_set == "captions"
    with pytest.raises(InvalidInputError, match="queries must be one of captions, requests"):
        evaluate_musiccaps(table, systems=["tfidf"], queries="questions")  # type: ignore[arg-type]


def test_the_command_line_takes_queries_and_no_rewrite(
    table: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "musiccaps", "--csv", str(table), "--queries", "requests"]
    argv += ["--system", "keyword+bm25/no-rewrite", "--system", "keyword", "--json", "-"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["query_set"] == "requests"
    assert [(s["name"], s["rewrite"]) for s in data["systems"]] == [
        ("keyword+bm25/no-rewrite", False),
        ("keyword", True),
    ]
    with pytest.raises(SystemExit) as exited:  # argparse rejects it
        main(["evaluate", "musiccaps", "--csv", str(table), "--queries", "questions"])
    assert exited.value.code == 2
    assert "invalid choice: 'questions'" in capsys.readouterr().err
