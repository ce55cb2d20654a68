from __future__ import annotations

import itertools
import json
import math
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from newwave import hookimpl
from newwave.cli import main
from newwave.errors import (
    ComponentUnavailableError,
    EmptyQueryError,
    IndexCorruptError,
    InvalidInputError,
    UnknownTrackError,
)
from newwave.hookspecs import Register
from newwave.lexical import BM25Index, LexicalIndex, analyze
from newwave.plugins import components, get_plugin_manager, load_encoder, load_lexical
from newwave.types import Ranking

WORDS = ["guitar", "piano", "vocal", "female", "drums", "sad", "acoustic", "bass"]
STOP = ["the", "and", "of", "with"]
ID_POOL = [f"d{i}" for i in range(8)]


def bm25_by_definition(
    docs: dict[str, str], query: str, k1: float = 1.2, b: float = 0.75
) -> dict[str, float]:
    """BM25 scores of the documents sharing a word with ``query``, straight from the formula."""
    terms = {
        i: [w for w in text.split() if w not in ENGLISH_STOP_WORDS] for i, text in docs.items()
    }
    n = len(terms)
    avgdl = sum(len(t) for t in terms.values()) / n if n else 0.0
    scores: dict[str, float] = {}
    for doc_id, doc_terms in terms.items():
        for word in (w for w in query.split() if w not in ENGLISH_STOP_WORDS):
            tf = doc_terms.count(word)
            if not tf:
                continue
            df = sum(word in t for t in terms.values())
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            norm = tf + k1 * (1 - b + b * len(doc_terms) / avgdl)
            scores[doc_id] = scores.get(doc_id, 0.0) + idf * tf * (k1 + 1) / norm
    return scores


def assert_matches_definition(ranking: Ranking, expected: dict[str, float]) -> None:
    assert sorted(ranking.ids) == sorted(expected)
    for doc_id, score in ranking:
        assert score == pytest.approx(expected[doc_id], rel=1e-9, abs=1e-12)
    assert_ordered(ranking)


def assert_ordered(ranking: Ranking) -> None:
    """Best first; equal scores by ascending id."""
    pairs = list(ranking)
    for (id1, s1), (id2, s2) in itertools.pairwise(pairs):
        assert s1 > s2 or (s1 == s2 and id1 < id2)


def fresh(docs: dict[str, str], **options: Any) -> BM25Index:
    index = BM25Index(**options)
    if docs:
        index.add(list(docs), list(docs.values()))
    return index


# -- the analyzer -------------------------------------------------------------------------------


def test_analyzer_lowercases_splits_words_and_drops_stop_words() -> None:
    assert analyze("The Female Vocal, lo-fi!") == ["female", "vocal", "lo", "fi"]
    assert analyze("the and of") == []
    assert analyze("R&B 80s\tguitar\nsolo") == ["r", "b", "80s", "guitar", "solo"]


def test_analyzer_normalises_unicode() -> None:
    full_width_loud, ligature_fiddle = "\uff2c\uff2f\uff35\uff24", "\ufb01ddle"
    assert analyze(f"{full_width_loud} {ligature_fiddle}") == ["loud", "fiddle"]
    assert analyze("Café Ça") == analyze("Cafe\u0301 C\u0327a") == ["café", "ça"]
    assert analyze("Música ÉTÉ") == ["música", "été"]


def test_model_id_names_algorithm_parameters_and_analyzer() -> None:
    assert BM25Index().model_id == "bm25:k1=1.2,b=0.75,analyzer=words-v1"
    assert BM25Index(k1=2, b=0).model_id == "bm25:k1=2.0,b=0.0,analyzer=words-v1"
    assert BM25Index(k1=2).get_config() == {"k1": 2.0, "b": 0.75}
    assert BM25Index.modalities == frozenset({"text"})


# -- scoring against the definition -------------------------------------------------------------

texts = st.lists(st.sampled_from(WORDS + STOP), min_size=1, max_size=8).map(" ".join)
queries = st.lists(st.sampled_from([*WORDS, *STOP, "unknown"]), min_size=1, max_size=4).map(
    " ".join
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.dictionaries(st.sampled_from(ID_POOL), texts, max_size=5)),
        st.tuples(st.just("remove"), st.sets(st.sampled_from(ID_POOL), min_size=1, max_size=3)),
        st.tuples(st.just("search"), queries),
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=operations,
    final_query=queries,
    k1=st.floats(0.0, 3.0),
    b=st.floats(0.0, 1.0),
    among=st.sets(st.sampled_from(ID_POOL)),
    k=st.integers(1, 4),
)
def test_scores_follow_the_definition_through_adds_upserts_and_removals(
    ops: list[tuple[str, Any]], final_query: str, k1: float, b: float, among: set[str], k: int
) -> None:
    index = BM25Index(k1=k1, b=b)
    docs: dict[str, str] = {}  # what the index should hold, in insertion order
    for op, arg in [*ops, ("search", final_query)]:
        if op == "add":
            index.add(list(arg), list(arg.values()))
            docs.update(arg)
        elif op == "remove":
            assert index.remove(arg, missing_ok=True) == len(arg & docs.keys())
            for doc_id in arg:
                docs.pop(doc_id, None)
        else:
            (full,) = index.search([arg], k=len(ID_POOL))
            assert_matches_definition(full, bm25_by_definition(docs, arg, k1, b))
            (top,) = index.search([arg], k=k)
            assert list(top) == list(full)[:k]
            (restricted,) = index.search([arg], k=len(ID_POOL), among=among)
            assert list(restricted) == [(i, s) for i, s in full if i in among]
        assert index.ids() == list(docs)
        assert len(index) == len(docs)


def bm25_in_summation_order(
    docs: dict[str, str], query: str, k1: float, b: float
) -> dict[str, float]:
    """The formula of ``BM25Index``'s docstring, evaluated in the order the index documents:
    query terms by first occurrence, a repeated one as ``qtf`` times its idf."""
    terms = {i: analyze(text) for i, text in docs.items()}
    n = len(terms)
    avgdl = sum(len(t) for t in terms.values()) / n if n else 0.0
    norm, per_length = k1 * (1.0 - b), (k1 * b / avgdl if avgdl else 0.0)
    scores: dict[str, float] = {}
    for word in dict.fromkeys(analyze(query)):
        qtf = analyze(query).count(word)
        df = sum(word in t for t in terms.values())
        if not df:
            continue
        idf = math.log1p((n - df + 0.5) / (df + 0.5))
        for doc_id, doc_terms in terms.items():
            tf = float(doc_terms.count(word))
            if tf:
                weight = (qtf * idf * (k1 + 1.0)) * tf / (tf + norm + per_length * len(doc_terms))
                scores[doc_id] = scores.get(doc_id, 0.0) + weight
    return scores


@settings(max_examples=60, deadline=None)
@given(
    ops=operations,
    repeated=queries,
    k1=st.floats(0.0, 3.0),
    b=st.floats(0.0, 1.0),
    among=st.sets(st.sampled_from(ID_POOL)),
)
def test_scores_are_exact_through_changes_and_repeated_searches(
    ops: list[tuple[str, Any]], repeated: str, k1: float, b: float, among: set[str]
) -> None:
    """Weights kept between searches give the very floats of the formula, after any change."""
    index = BM25Index(k1=k1, b=b)
    docs: dict[str, str] = {}
    for op, arg in [*ops, ("search", repeated)]:
        if op == "add":
            index.add(list(arg), list(arg.values()))
            docs.update(arg)
        elif op == "remove":
            index.remove(arg, missing_ok=True)
            for doc_id in arg:
                docs.pop(doc_id, None)
        for query in ([arg] if op == "search" else []) + [repeated, f"{repeated} {repeated}"]:
            expected = bm25_in_summation_order(docs, query, k1, b)
            full, again = index.search([query, query], len(ID_POOL))
            (restricted,) = index.search([query], len(ID_POOL), among=among)
            assert full.as_dict() == expected  # equal floats, not approximately equal
            assert list(again) == list(full)
            assert_ordered(full)
            assert list(restricted) == [(i, s) for i, s in full if i in among]


def test_replacing_a_text_updates_the_statistics_and_keeps_the_order() -> None:
    index = fresh({"a": "sad piano", "b": "sad guitar", "c": "drums"})
    index.search(["sad"], 3)  # the first texts are in a segment now
    index.add(["a", "d"], ["happy drums", "sad sad vocal"])
    assert index.ids() == ["a", "b", "c", "d"]
    docs = {"a": "happy drums", "b": "sad guitar", "c": "drums", "d": "sad sad vocal"}
    for query in ["sad", "drums", "piano", "happy sad drums"]:
        (ranking,) = index.search([query], 10)
        assert_matches_definition(ranking, bm25_by_definition(docs, query))


def test_removal_updates_the_statistics() -> None:
    docs = {f"t{i}": f"guitar {WORDS[i % len(WORDS)]} {'bass ' * (i % 3)}" for i in range(40)}
    index = fresh(docs)
    index.search(["guitar"], 5)
    assert index.remove([f"t{i}" for i in range(0, 40, 3)]) == 14
    for i in range(0, 40, 3):
        del docs[f"t{i}"]
    for query in ["guitar", "bass piano", "vocal vocal"]:
        (ranking,) = index.search([query], 100)
        assert_matches_definition(ranking, bm25_by_definition(docs, query))
    assert "t0" not in index
    assert "t1" in index


def test_many_small_adds_keep_few_segments_and_exact_scores() -> None:
    index = BM25Index()
    docs: dict[str, str] = {}
    rng = np.random.default_rng(0)
    for i in range(300):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))
        index.add([f"t{i}"], [text])
        docs[f"t{i}"] = text
        if i % 7 == 0:
            index.remove([f"t{i // 2}"], missing_ok=True)
            docs.pop(f"t{i // 2}", None)
        index.search(["guitar"], 1)
        assert len(index._segments) <= 1 + math.log(i + 1, 4)
    (ranking,) = index.search(["guitar piano"], 1000)
    assert_matches_definition(ranking, bm25_by_definition(docs, "guitar piano"))


# -- search semantics ---------------------------------------------------------------------------


def test_search_finds_documents_sharing_a_word_best_first() -> None:
    index = fresh(
        {
            "strum": "acoustic guitar ballad",
            "shred": "electric guitar solo",
            "keys": "female vocal over piano",
        }
    )
    rankings = index.search(["acoustic guitar", "female vocal", "guitar"], 10)
    assert rankings[0].ids == ("strum", "shred")
    assert rankings[1].ids == ("keys",)
    assert set(rankings[2].ids) == {"strum", "shred"}
    assert all(score > 0 for r in rankings for score in r.scores)


def test_equal_scores_are_ordered_by_id_also_at_the_cut() -> None:
    index = fresh({"c": "sad piano", "a": "sad piano", "b": "sad piano", "z": "sad sad piano"})
    (ranking,) = index.search(["sad"], 10)
    assert ranking.ids == ("z", "a", "b", "c")
    assert ranking.scores[1] == ranking.scores[2] == ranking.scores[3]
    assert index.search(["sad"], 3)[0].ids == ("z", "a", "b")
    assert index.search(["sad"], 1)[0].ids == ("z",)


def test_queries_without_known_words_find_nothing() -> None:
    index = fresh({"a": "sad piano"})
    assert [len(r) for r in index.search(["the and of", "trumpet", "sad"], 5)] == [0, 0, 1]
    assert index.search([], 5) == []
    assert len(BM25Index().search(["piano"], 5)[0]) == 0


def test_a_text_of_stop_words_is_stored_and_counts_in_the_average_length() -> None:
    docs = {"a": "the and of", "b": "sad piano", "c": "piano"}
    index = fresh(docs)
    assert "a" in index
    (ranking,) = index.search(["piano"], 5)
    assert_matches_definition(ranking, bm25_by_definition(docs, "piano"))


def test_k_larger_than_the_index_returns_every_match() -> None:
    index = fresh({"a": "sad piano", "b": "happy piano", "c": "drums"})
    assert sorted(index.search(["piano"], 1000)[0].ids) == ["a", "b"]


def test_among_restricts_results_but_not_statistics() -> None:
    docs = {"a": "sad piano", "b": "happy piano", "c": "piano piano", "d": "drums"}
    index = fresh(docs)
    (full,) = index.search(["piano"], 10)
    (some,) = index.search(["piano"], 10, among={"b", "c", "d", "not-stored"})
    assert list(some) == [(i, s) for i, s in full if i in {"b", "c"}]
    assert not index.search(["piano"], 10, among=[])[0].ids
    with pytest.raises(InvalidInputError, match="among"):
        index.search(["piano"], 10, among="a")


def test_searches_in_threads_find_what_they_find_alone() -> None:
    rng = np.random.default_rng(1)
    docs = {f"t{i}": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 8)))) for i in range(500)}
    index = fresh(docs)
    queries = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)))) for _ in range(100)]
    alone = [list(r) for r in index.search(queries, 5)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns inside searches
    try:
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda _: index.search(queries, 5), range(16)))
    finally:
        sys.setswitchinterval(interval)
    assert all([list(r) for r in run] == alone for run in runs)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "texts", "error"),
    [
        ("a", ["x"], InvalidInputError),
        (["a", "a"], ["x", "y"], InvalidInputError),
        ([""], ["x"], InvalidInputError),
        ([1], ["x"], InvalidInputError),
        (["a"], [b"x"], InvalidInputError),
        (["a"], "x", InvalidInputError),
        (["a", "b"], ["x"], InvalidInputError),
        (["a"], ["  "], EmptyQueryError),
    ],
)
def test_bad_add_arguments_raise(ids: Any, texts: Any, error: type[Exception]) -> None:
    index = fresh({"kept": "piano"})
    with pytest.raises(error):
        index.add(ids, texts)
    assert index.ids() == ["kept"]


@pytest.mark.parametrize(
    ("queries", "k", "error"),
    [
        ("piano", 5, InvalidInputError),
        ([3], 5, InvalidInputError),
        ([""], 5, EmptyQueryError),
        (["piano"], 0, InvalidInputError),
        (["piano"], True, InvalidInputError),
        (["piano"], 2.0, InvalidInputError),
    ],
)
def test_bad_search_arguments_raise(queries: Any, k: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        fresh({"a": "piano"}).search(queries, k)


@pytest.mark.parametrize(
    "options", [{"k1": -0.1}, {"b": 1.5}, {"b": -1}, {"k1": "1"}, {"k1": True}, {"k1": math.nan}]
)
def test_bad_parameters_raise(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        BM25Index(**options)


def test_removing_unknown_ids() -> None:
    index = fresh({"a": "piano", "b": "drums"})
    with pytest.raises(UnknownTrackError, match="'zz'"):
        index.remove(["a", "zz"])
    assert index.ids() == ["a", "b"]
    assert index.remove(["a", "zz"], missing_ok=True) == 1
    assert index.ids() == ["b"]
    with pytest.raises(InvalidInputError):
        index.remove("b")


# -- persistence --------------------------------------------------------------------------------


@pytest.fixture
def history() -> tuple[BM25Index, dict[str, str]]:
    """An index after adds, a search, replacements and removals, and what it should hold."""
    index = BM25Index(k1=1.5, b=0.5)
    docs = {f"t{i}": f"{WORDS[i % 8]} {WORDS[(3 * i) % 8]} guitar" for i in range(30)}
    index.add(list(docs), list(docs.values()))
    index.search(["guitar"], 3)
    index.add(["t3", "new"], ["sad sad piano", "female vocal"])
    docs.update({"t3": "sad sad piano", "new": "female vocal"})
    index.remove(["t0", "t7"])
    del docs["t0"], docs["t7"]
    return index, docs


def test_save_and_load_round_trip(
    history: tuple[BM25Index, dict[str, str]], tmp_path: Path
) -> None:
    index, docs = history
    before = index.search(["guitar", "sad piano", "female vocal drums"], 50)
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    assert isinstance(loaded, BM25Index)
    assert loaded.get_config() == {"k1": 1.5, "b": 0.5}
    assert loaded.ids() == index.ids() == list(docs)
    after = loaded.search(["guitar", "sad piano", "female vocal drums"], 50)
    assert [list(r) for r in after] == [list(r) for r in before]
    loaded.add(["later"], ["guitar guitar"])
    loaded.remove(["t1"])
    docs["later"] = "guitar guitar"
    del docs["t1"]
    (ranking,) = loaded.search(["guitar"], 50)
    assert_matches_definition(ranking, bm25_by_definition(docs, "guitar", 1.5, 0.5))
    index.save(tmp_path / "lex")  # a second save: a new snapshot
    assert BM25Index.load(tmp_path / "lex").ids() == index.ids()


def test_an_empty_index_round_trips(tmp_path: Path) -> None:
    index = fresh({"a": "piano"})
    index.remove(["a"])
    loaded = LexicalIndex.load(index.save(tmp_path / "empty"))
    assert len(loaded) == 0
    assert not loaded.search(["piano"], 3)[0].ids


def _saved(index: BM25Index, root: Path) -> Path:
    """Write ``index`` into a plain directory (no snapshots) and return it."""
    root.mkdir()
    index.write(root)
    return root


def _edit_json(path: Path, change: Any) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


@pytest.mark.parametrize(
    "damage",
    [
        lambda root: (root / "postings.safetensors").write_bytes(b"not safetensors"),
        lambda root: (root / "postings.safetensors").unlink(),
        lambda root: (root / "vocabulary.json").write_text("{"),
        lambda root: _edit_json(root / "vocabulary.json", lambda v: v["terms"].pop()),
        lambda root: _edit_json(root / "ids.json", lambda v: v["ids"].pop()),
        lambda root: _edit_json(root / "ids.json", lambda v: v["ids"].__setitem__(1, v["ids"][0])),
        lambda root: _edit_json(root / "lexical.json", lambda v: v.pop("count")),
        lambda root: _edit_json(root / "lexical.json", lambda v: v.__setitem__("count", 2)),
        lambda root: _edit_json(
            root / "lexical.json", lambda v: v.__setitem__("model_id", "bm25:analyzer=words-v0")
        ),
        lambda root: _edit_json(root / "lexical.json", lambda v: v["options"].update(k1=-3)),
    ],
)
def test_damaged_files_raise_index_corrupt(
    history: tuple[BM25Index, dict[str, str]], tmp_path: Path, damage: Any
) -> None:
    root = _saved(history[0], tmp_path / "lex")
    damage(root)
    with pytest.raises(IndexCorruptError):
        LexicalIndex.load(root)


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a["lengths"].__setitem__(0, a["lengths"][0] + 1),
        lambda a: a["rows"].__setitem__(0, 10_000),
        lambda a: a["counts"].__setitem__(0, 0),
        lambda a: a["indptr"].__setitem__(1, a["indptr"][2] + 1),
        lambda a: a.__setitem__("rows", a["rows"].astype(np.int64)),
        lambda a: a.pop("lengths"),
    ],
)
def test_inconsistent_postings_raise_index_corrupt(
    history: tuple[BM25Index, dict[str, str]], tmp_path: Path, change: Any
) -> None:
    from safetensors.numpy import load_file, save_file

    root = _saved(history[0], tmp_path / "lex")
    arrays = load_file(str(root / "postings.safetensors"))
    change(arrays)
    save_file(arrays, str(root / "postings.safetensors"))
    with pytest.raises(IndexCorruptError):
        LexicalIndex.load(root)


def test_duplicate_postings_raise_index_corrupt(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    root = _saved(fresh({"a": "piano", "b": "piano drums"}), tmp_path / "lex")
    arrays = load_file(str(root / "postings.safetensors"))
    # "piano" listed twice in "b" (row 1), its length raised to match: only the duplicate is wrong
    arrays["indptr"] = np.array([0, 3, 4], dtype=np.int64)
    arrays["rows"] = np.array([0, 1, 1, 1], dtype=np.int32)
    arrays["counts"] = np.array([1, 1, 1, 1], dtype=np.int32)
    arrays["lengths"] = np.array([1, 3], dtype=np.int64)
    save_file(arrays, str(root / "postings.safetensors"))
    with pytest.raises(IndexCorruptError):
        LexicalIndex.load(root)


# -- plugins ------------------------------------------------------------------------------------


def test_load_encoder_refuses_a_lexical_index_and_says_what_to_do() -> None:
    message = (
        "'bm25' is a lexical index, not an embedding model: use it as a Recommender "
        "field encoder, or build it with newwave.plugins.load_lexical('bm25')"
    )
    with pytest.raises(ComponentUnavailableError) as info:
        load_encoder("bm25")
    assert str(info.value) == message
    with pytest.raises(ComponentUnavailableError, match="is a lexical index"):
        load_encoder("bm25", device="cpu")  # encoder options do not hide the reason


def test_load_lexical_builds_bm25_and_refuses_embedding_models() -> None:
    index = load_lexical("bm25", k1=2.0)
    assert isinstance(index, BM25Index)
    assert index.get_config() == {"k1": 2.0, "b": 0.75}
    assert components("lexical")["bm25"].plugin == "bm25"
    assert "bm25" not in components("encoder")
    with pytest.raises(ComponentUnavailableError, match="'minilm' is an embedding model"):
        load_lexical("minilm")


class _FactoryPlugin:
    """A plugin registering lexical indexes through a function, not a class."""

    @hookimpl
    def register_lexical(self, register: Register) -> None:
        def bm25_strict(**options: Any) -> BM25Index:
            """BM25 that ignores length."""
            return BM25Index(b=0.0, **options)

        register(bm25_strict, name="bm25-flat")


def test_lexical_factory_functions_are_their_own_kind() -> None:
    pm = get_plugin_manager()
    pm.register(_FactoryPlugin(), name="test-lexical-factory")
    try:
        with pytest.raises(ComponentUnavailableError, match="'bm25-flat' is a lexical index"):
            load_encoder("bm25-flat")
        assert load_lexical("bm25-flat").get_config() == {"k1": 1.2, "b": 0.0}
    finally:
        pm.unregister(name="test-lexical-factory")


def test_newwave_plugins_lists_bm25(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    (row,) = [r for r in rows if r["name"] == "bm25"]
    assert row["kind"] == "lexical"
    assert row["plugin"] == "bm25"
    assert row["summary"].startswith("Okapi BM25")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_any_history_round_trips(ops: list[tuple[str, Any]]) -> None:
    index = BM25Index()
    for op, arg in ops:
        if op == "add":
            index.add(list(arg), list(arg.values()))
        elif op == "remove":
            index.remove(arg, missing_ok=True)
        else:
            index.search([arg], 3)
    with tempfile.TemporaryDirectory() as directory:
        loaded = LexicalIndex.load(index.save(Path(directory) / "lex"))
    assert loaded.ids() == index.ids()
    for query in WORDS:
        assert list(loaded.search([query], 8)[0]) == list(index.search([query], 8)[0])


def test_the_analyzer_drops_scikit_learns_english_stop_words() -> None:
    from newwave.lexical.base import _stop_words

    assert _stop_words() == ENGLISH_STOP_WORDS  # a copy: pinned with the analyzer's version
