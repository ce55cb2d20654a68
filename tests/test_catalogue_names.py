"""Catalogue names looked up in the library database (query.catalogue_names, store.names)."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from newwave import Recommender, Track
from newwave.query import RuleRewriter
from newwave.query.catalogue_names import CatalogueNames
from newwave.query.entities import EntityIndex
from newwave.store.database import LibraryStore
from newwave.store.lock import WriterLock
from tests.test_request_reader import CATALOGUE as READER_CATALOGUE

FORMAT_2 = Path(__file__).parent / "data" / "library-format-2"
"""A library written by newwave before the names table: the tracks of ``CATALOGUE[:7]``, the
request reader tests' catalogue."""

CATALOGUE = [
    *READER_CATALOGUE,
    # names shared across fields and with the shipped artists, "the", ties among tags
    Track(id="beatles", artist="the beatles", title="Help", tags=("Rock", "pop ", "happy")),
    Track(id="beatles2", artist="the  beatles", title="Yesterday", tags=("rock", "ballad")),
    Track(id="cover", artist="Tribute Trio", title="Daft Punk", album="Sunshine",
          tags=("pop", "rock", "cover")),
    Track(id="marley", artist="bob marley", title="Jamming", tags=("rock", "reggae")),
    Track(id="ties", artist="Nina  Simone", title="Sinnerman", tags=("soul", "jazz", "blues")),
    Track(id="blank", artist=" ", title="!!!", album="Sunshine", tags=()),
]  # fmt: skip

QUERIES = [
    "songs by nina simone",
    "songs by NINA SIMONE and Beyonce",
    "something that sounds like Daft Punk",
    "the song Daft Punk",
    "songs like the Beatles",
    "songs like Beatles please",
    "music by The Beatles, not Metallica",
    "sounds like Bob Marley",
    "from the album Sunshine",
    "the song Sunshine by Island Band",
    "the song Feeling Good",
    "feeling good music",
    "from the album I Put a Spell on You",
    "songs like Ghost Pepper Trio",
    "something like Jazz",
    "Ramones or Nirvana",
    "called Help",
    "the song !!!",
    "relaxing piano music without vocals",
]


@pytest.fixture(scope="module")
def store() -> LibraryStore:
    store = LibraryStore(None, create=True)
    with store.transaction():
        store.put_tracks(CATALOGUE[:-3])
    with store.transaction():  # a replaced track keeps its place; its tags are its new ones
        store.put_tracks([CATALOGUE[1].model_copy(update={"tags": ("electronic", "house")})])
        store.put_tracks(CATALOGUE[-3:])
    return store


def test_stored_names_read_requests_as_the_whole_index(store: LibraryStore) -> None:
    tracks = list(store.iter_tracks())
    vocabulary = RuleRewriter().vocabulary
    whole = EntityIndex.from_tracks(tracks)
    stored = CatalogueNames(store)
    for query in QUERIES:
        assert stored.find(query, vocabulary) == whole.find(query, vocabulary), query
    assert store.longest_name() == 6  # "i put a spell on you"


def test_a_catalogue_name_has_the_styles_of_its_tracks(store: LibraryStore) -> None:
    rewriter = RuleRewriter()
    rewriter.fit_names(CatalogueNames(store))
    assert rewriter.names is EntityIndex.shipped()  # nothing of the catalogue held in memory
    [beatles] = rewriter.rewrite("songs like the Beatles").entities
    assert (beatles.name, beatles.in_catalogue) == ("the beatles", True)
    assert beatles.styles == ("rock", "pop", "happy", "ballad")  # "Rock" and "rock": 2 tracks
    [daft] = rewriter.rewrite("sounds like Daft Punk").entities
    assert daft.styles == ("electronic", "house")  # its tags as last written
    assert rewriter.rewrite("sounds like Daft Punk").text == "electronic house"


def test_styles_are_counted_over_a_names_first_tracks(store: LibraryStore) -> None:
    nina = ("nina simone", "artist", "Nina Simone")
    assert store.name_styles(*nina, 5) == ["jazz", "soul", "piano", "female vocal", "blues"]
    assert store.name_styles(*nina, 5, tracks=1) == ["jazz", "soul", "piano", "female vocal"]
    assert store.name_styles(*nina, 2) == ["jazz", "soul"]


def test_names_of_removed_and_replaced_tracks_are_gone() -> None:
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(CATALOGUE[:7])
    rec.remove(["daft"])
    hits = rec.search("songs by daft punk", k=5)
    assert hits.query is not None
    [entity] = hits.query.entities
    assert not entity.in_catalogue  # the shipped well-known artist, no filter
    rec.add([CATALOGUE[2].model_copy(update={"artist": "The Ramones Revival"})])
    parsed = rec.search("songs by ramones", k=5).query
    assert parsed is not None
    assert not parsed.entities[0].in_catalogue  # the shipped one
    parsed = rec.search("songs by ramones revival", k=5).query
    assert parsed is not None
    assert [(e.name, e.in_catalogue) for e in parsed.entities] == [("The Ramones Revival", True)]
    store = rec._library.store
    assert store.names_of_keys(["daft punk", "ramones"]) == []
    assert store.names_current()


def test_any_catalogue_size_finds_its_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("newwave.search.names.NAME_SCAN_LIMIT", 0)  # no track is read
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(CATALOGUE[:7])
    hits = rec.search("songs by daft punk", k=5)
    assert [hit.track.id for hit in hits] == ["daft"]
    like = rec.search("something that sounds like Daft Punk", k=2)
    assert [hit.track.id for hit in like] == ["daft", "synths"]


def test_a_library_written_before_the_names_table(tmp_path: Path) -> None:
    shutil.copytree(FORMAT_2, tmp_path / "lib")
    rec = Recommender.load(tmp_path / "lib")
    store = rec._library.store
    seq = store.seq
    assert not store.names_current()
    hits = rec.search("songs by Daft Punk", k=5)
    assert [hit.track.id for hit in hits] == ["daft"]
    assert hits.query is not None
    assert hits.query.entities[0].in_catalogue
    assert store.names_current()
    assert store.seq == seq  # derived data: the indexes and the fitted rewriter stay current
    again = Recommender.load(tmp_path / "lib")
    assert [h.track.id for h in again.search("the song Halo", k=5)] == ["beyonce"]


def test_names_changed_by_a_version_that_does_not_keep_them(tmp_path: Path) -> None:
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(CATALOGUE[:7])
    rec.save(tmp_path / "lib")
    rec = Recommender.load(tmp_path / "lib")
    store = rec._library.store
    old = sqlite3.connect(tmp_path / "lib" / "library.sqlite", isolation_level=None)
    old.executescript(  # a write by a version without the table: the track, not its names
        "BEGIN IMMEDIATE; "
        "UPDATE tracks SET track = replace(track, 'Daft Punk', 'Daft Funk'); "
        "UPDATE track_values SET text = 'Daft Funk' WHERE text = 'Daft Punk'; "
        "UPDATE meta SET value = value + 1 WHERE key = 'seq'; COMMIT;"
    )
    old.close()
    assert not store.names_current()
    with WriterLock(tmp_path / "lib").hold(timeout=1):  # another writer: the tracks are read
        parsed = rec.search("songs by daft funk", k=5).query
        assert parsed is not None
        assert [(e.name, e.in_catalogue) for e in parsed.entities] == [("Daft Funk", True)]
        assert not store.names_current()
    with store.transaction():
        store._db.execute("UPDATE meta SET value = 'x' WHERE key = 'names:keys'")
    assert [h.track.id for h in rec.search("songs by daft funk", k=5)] == ["daft"]
    assert store.names_current()  # rebuilt
    assert store.names_of_keys(["daft punk"]) == []


def test_repair_rebuilds_the_names(tmp_path: Path) -> None:
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(CATALOGUE[:7])
    rec.save(tmp_path / "lib")
    store = Recommender.load(tmp_path / "lib")._library.store
    with store.transaction(catalogue=False):
        store._db.execute("DELETE FROM track_names")
    Recommender.repair(tmp_path / "lib")
    assert store.names_of_keys(["daft punk"]) == [("daft punk", "artist", "Daft Punk")]


def test_random_catalogues_and_requests_read_alike() -> None:
    """Names sharing words, case, accents, "the", tags repeated in a track, replaced tracks."""
    words = (
        "the The jazz Punk Daft punk Nina simone Beyoncé beyonce Bob Marley of & rock Rock "
        "love Love blue songs by like album"
    ).split()
    tags = "rock Rock pop jazz  soul happy R&B r&b".split(" ")
    leads = ["songs by ", "sounds like ", "the song ", "from the album ", "", "I like "]
    vocabulary = RuleRewriter().vocabulary
    for seed in range(40):
        rng = random.Random(seed)

        def name(rng: random.Random = rng) -> str:
            return " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))

        tracks = [
            Track(
                id=f"t{i}",
                artist=name() if rng.random() < 0.9 else None,
                title=name(),
                album=name() if rng.random() < 0.5 else None,
                tags=tuple(rng.choice(tags) for _ in range(rng.randint(0, 4))),
            )
            for i in range(rng.randint(1, 12))
        ]
        store = LibraryStore(None, create=True)
        with store.transaction():
            store.put_tracks(tracks)
        with store.transaction():
            store.put_tracks([tracks[0].model_copy(update={"tags": ("blue", "Rock")})])
        whole = EntityIndex.from_tracks(list(store.iter_tracks()))
        for _ in range(10):
            query = rng.choice(leads) + name() + " " + name()
            expected = whole.find(query, vocabulary)
            assert CatalogueNames(store).find(query, vocabulary) == expected, (seed, query)
