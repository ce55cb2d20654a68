"""BM25 over 100,000 short descriptor-like texts, against baselines timed in the same run.

The corpus draws 5-15 words per text from about 200 music words with Zipf-like frequencies (the
commonest word is in ~40% of the texts). When benchmarks run once (``--benchmark-disable``) it
has 10,000 texts.

- Search, one query, k=10 (the queries cycle through 50 of 1-3 words): ``BM25Index.search``
  against bm25s (the same BM25, Lucene's variant, over the same terms: its ``get_scores`` and
  NumPy's ``argpartition`` for the top 10; bm25s bakes the scores into its index, so it cannot
  add or remove texts), against a brute-force lexical scorer (scikit-learn's
  ``TfidfVectorizer.transform`` of the query, then its sparse product with every document, and
  the top 10), and against what a dense field of the same catalogue costs: the exact FAISS
  retriever over 384-d vectors. The BM25 test checks that bm25s finds the same top scores and
  reports its median over each baseline's, timed in the same test, in ``extra_info``.
- Indexing: ``BM25Index.add`` of every text plus the first search (which stores the added rows
  as a searchable segment), against ``TfidfVectorizer.fit_transform`` of the same texts.
- A change: ``BM25Index.add`` of 1,000 more texts to the 100,000, or their ``remove``, each
  followed by one search (which stores the added rows and works out the weights of its terms
  again), against the same search of the unchanged index, timed in the same test.
"""

from __future__ import annotations

import functools
import itertools
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from newwave.index.faiss import FaissRetriever
from newwave.lexical import BM25Index, analyze

K, DIM, QUERIES, CHANGE = 10, 384, 50, 1_000

WORDS = """
guitar vocal piano drums bass synth female male acoustic electric ambient rock pop jazz folk
techno house hip hop classical orchestral strings violin cello brass trumpet saxophone flute
choir organ harp ukulele banjo mandolin harmonica accordion percussion tabla sitar marimba
vibraphone glockenspiel xylophone clarinet oboe bassoon trombone tuba horn timpani cymbals
snare kick hihat tambourine shaker congas bongos djembe beatbox turntable sampler theremin
calm upbeat dark dreamy mellow aggressive happy sad melancholic energetic relaxing romantic
epic cinematic nostalgic uplifting haunting playful tense peaceful angry hopeful lonely warm
cold bright gritty lush sparse dense distorted clean reverb echo delay fuzz chorus phaser
slow fast midtempo groovy swinging driving bouncy laid floating pulsing hypnotic minimal
lofi chillhop trap drill dubstep drum dnb jungle garage grime disco funk soul blues gospel
reggae dub ska punk metal grunge emo indie shoegaze psychedelic progressive krautrock
country bluegrass americana latin salsa bossa nova samba tango flamenco afrobeat highlife
kpop jpop bollywood celtic nordic arabic balkan klezmer polka waltz march lullaby anthem
ballad duet instrumental acapella spoken rap whisper falsetto growl scream harmony unison
solo riff arpeggio chord melody hook chant loop groove breakbeat bassline drone pad pluck
live studio vintage retro modern analog digital acoustic bedroom stadium club radio vinyl
""".split()


@functools.lru_cache(maxsize=2)
def corpus(size: int) -> tuple[list[str], list[str], list[str]]:
    """``size`` ids and texts, and the queries."""
    rng = np.random.default_rng(0)
    words = np.array(sorted(set(WORDS)))
    weights = 1.0 / np.arange(1, len(words) + 1) ** 0.8
    weights /= weights.sum()
    lengths = rng.integers(5, 16, size=size)
    drawn = rng.choice(words, size=int(lengths.sum()), p=weights)
    ends = np.cumsum(lengths)
    texts = [" ".join(drawn[end - n : end]) for end, n in zip(ends, lengths, strict=True)]
    queries = [" ".join(rng.choice(words, size=int(rng.integers(1, 4)))) for _ in range(QUERIES)]
    return [f"t{i}" for i in range(size)], texts, queries


def _size(benchmark: Any) -> int:
    return 10_000 if benchmark.disabled else 100_000


@functools.lru_cache(maxsize=2)
def bm25(size: int) -> BM25Index:
    ids, texts, _ = corpus(size)
    index = BM25Index()
    index.add(ids, texts)
    index.search(["guitar"], K)  # stores the added rows
    return index


@functools.lru_cache(maxsize=2)
def bm25s_index(size: int) -> Any:
    import bm25s  # type: ignore[import-untyped]

    retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)  # BM25Index's defaults
    retriever.index([analyze(text) for text in corpus(size)[1]], show_progress=False)
    return retriever


def bm25s_search(size: int, query: str) -> tuple[np.ndarray, np.ndarray]:
    """bm25s's 10 best rows and their scores, scoring every document."""
    scores = bm25s_index(size).get_scores(analyze(query))
    top = np.argpartition(-scores, K)[:K]
    top = top[np.argsort(-scores[top])]
    return top, scores[top]


@functools.lru_cache(maxsize=2)
def tfidf(size: int) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b\w+\b")
    return vectorizer, vectorizer.fit_transform(corpus(size)[1]).T.tocsr()


@functools.lru_cache(maxsize=2)
def dense(size: int) -> FaissRetriever:
    rows = np.random.default_rng(1).standard_normal((size, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    retriever = FaissRetriever(DIM)
    retriever.add(corpus(size)[0], rows)
    return retriever


def tfidf_scores(size: int, query: str) -> np.ndarray:
    """The TF-IDF cosine of every document with ``query``."""
    vectorizer, by_term = tfidf(size)
    scores: np.ndarray = (vectorizer.transform([query]) @ by_term).toarray().ravel()
    return scores


def tfidf_search(size: int, query: str) -> list[str]:
    """The 10 best ids by TF-IDF cosine, scoring every document."""
    scores = tfidf_scores(size, query)
    top = np.argpartition(-scores, K)[:K]
    ids = corpus(size)[0]
    return [ids[i] for i in top[np.argsort(-scores[top])] if scores[i] > 0]


def dense_queries() -> list[np.ndarray]:
    """One-row query matrices for the dense baseline."""
    return list(np.random.default_rng(2).standard_normal((QUERIES, 1, DIM)).astype(np.float32))


def cycling(call: Callable[[Any], object], items: list[Any]) -> Callable[[], object]:
    pool = itertools.cycle(items)
    return lambda: call(next(pool))


# -- search -------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="lexical search: 1 query, k=10")
def test_tfidf_brute_force_baseline(benchmark: Any) -> None:
    size = _size(benchmark)
    tfidf(size)
    benchmark(cycling(lambda q: tfidf_search(size, q), corpus(size)[2]))


@pytest.mark.benchmark(group="lexical search: 1 query, k=10")
def test_bm25s_baseline(benchmark: Any) -> None:
    size = _size(benchmark)
    bm25s_index(size)
    benchmark(cycling(lambda q: bm25s_search(size, q), corpus(size)[2]))


@pytest.mark.benchmark(group="lexical search: 1 query, k=10")
def test_faiss_flat_384d_baseline(benchmark: Any) -> None:
    retriever = dense(_size(benchmark))
    benchmark(cycling(lambda q: retriever.search(q, K), dense_queries()))


@pytest.mark.benchmark(group="lexical search: 1 query, k=10")
def test_bm25_search(benchmark: Any, median_s: Callable[..., float]) -> None:
    size = _size(benchmark)
    index, queries = bm25(size), corpus(size)[2]
    benchmark(cycling(lambda q: index.search([q], K), queries))
    row_of = {track_id: row for row, track_id in enumerate(corpus(size)[0])}
    for query in queries:
        (ranking,) = index.search([query], K)
        sharing = tfidf_scores(size, query) > 0  # the documents sharing a word with the query
        assert len(ranking) == min(K, int(sharing.sum()))
        assert all(sharing[row_of[track_id]] for track_id in ranking.ids)
        _, theirs = bm25s_search(size, query)  # float32, without BM25Index's factor k1 + 1
        np.testing.assert_allclose(
            (index.k1 + 1.0) * theirs[: len(ranking)], ranking.scores, rtol=1e-5
        )
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        {
            "documents": size,
            "over_bm25s": median / median_s(cycling(lambda q: bm25s_search(size, q), queries), 200),
            "over_tfidf_brute_force": median
            / median_s(cycling(lambda q: tfidf_search(size, q), queries), 200),
            "over_faiss_flat_384d": median
            / median_s(cycling(lambda q: dense(size).search(q, K), dense_queries()), 50),
        }
    )
    index.add(["probe"], ["guitar"])  # a change: the index forgets what searches kept
    index.remove(["probe"])
    tracemalloc.start()
    index.search(queries, K)
    kept = tracemalloc.get_traced_memory()[0]  # the queries' terms, the score array
    tracemalloc.stop()
    postings = sum(len(set(analyze(text))) for text in corpus(size)[1])
    benchmark.extra_info.update({"postings": postings, "kept_mb_50_queries": kept / 1e6})


# -- indexing -----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="lexical indexing: 100,000 texts")
def test_tfidf_fit_baseline(benchmark: Any) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = corpus(_size(benchmark))[1]
    vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b\w+\b")
    matrix = benchmark.pedantic(vectorizer.fit_transform, args=(texts,), rounds=5)
    assert matrix.shape[0] == len(texts)


@pytest.mark.benchmark(group="lexical indexing: 100,000 texts")
def test_bm25_add(benchmark: Any) -> None:
    ids, texts, _ = corpus(_size(benchmark))

    def index_all() -> BM25Index:
        index = BM25Index()
        index.add(ids, texts)
        index.search(["guitar"], K)
        return index

    index = benchmark.pedantic(index_all, rounds=5)
    assert len(index) == len(ids)


# -- a change -----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="lexical change: 1,000 texts more or less, then a search")
@pytest.mark.parametrize("change", ["add", "remove"])
def test_bm25_change_then_search(
    benchmark: Any, change: str, median_s: Callable[..., float]
) -> None:
    ids, texts, queries = corpus(_size(benchmark))
    index = BM25Index()
    index.add(ids, texts)
    more = [f"more{i}" for i in range(CHANGE)]
    search = cycling(lambda q: index.search([q], K), queries)

    def add() -> None:
        index.add(more, texts[:CHANGE])
        search()

    def remove() -> None:
        index.remove(more)
        search()

    def setup() -> None:  # undo the last change, untimed
        if change == "add" and more[0] in index:
            remove()
        elif change == "remove" and more[0] not in index:
            add()

    benchmark.pedantic(add if change == "add" else remove, setup=setup, rounds=25)
    assert (more[0] in index) == (change == "add")
    assert len(index) == len(ids) + (CHANGE if change == "add" else 0)
    found = {track_id for ranking in index.search(queries, K) for track_id in ranking.ids}
    if change == "add":
        assert any(len(ranking) for ranking in index.search(queries, K, among=more))
    else:
        assert not found & set(more)  # copies of texts[:CHANGE], first among equal scores
    if benchmark.disabled:
        return
    benchmark.extra_info.update(
        {
            "baseline": "the same searches of the unchanged index",
            "documents": len(ids),
            "over_unchanged_search": benchmark.stats.stats.median / median_s(search, 200),
        }
    )
