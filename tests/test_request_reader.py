"""The request reader: names (query.entities), other languages (query.languages), fixed misreads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newwave import Recommender, Track
from newwave.errors import InvalidInputError, MissingFileError
from newwave.query import Entity, ParsedQuery, RuleRewriter
from newwave.query.entities import EntityIndex, shipped_artist_styles
from newwave.query.languages import LANGUAGES, load_translations
from newwave.query.vocabulary import Vocabulary
from newwave.search.names import named_filter


@pytest.fixture(scope="module")
def rewriter() -> RuleRewriter:
    return RuleRewriter()


def _read(parsed: ParsedQuery) -> set[tuple[str, str, bool]]:
    return {(a.kind, a.value, a.negated) for a in parsed.attributes}


CATALOGUE = [
    Track(id="nina", artist="Nina Simone", title="Feeling Good", album="I Put a Spell on You",
          tags=("jazz", "soul", "piano", "female vocal")),
    Track(id="daft", artist="Daft Punk", title="One More Time", tags=("house", "electronic")),
    Track(id="ramones", artist="Ramones", title="Blitzkrieg Bop", tags=("punk", "rock")),
    Track(id="beyonce", artist="Beyoncé", title="Halo", tags=("pop", "r&b")),
    Track(id="synths", artist="Someone Else", title="Night Drive", tags=("electronic", "dance")),
    Track(id="kids", artist="Kids Choir", title="ABC", tags=("children's songs", "happy")),
    Track(id="reggae", artist="Island Band", title="Sunshine", tags=("reggae", "guitar")),
]  # fmt: skip


# -- fixed misreads ------------------------------------------------------------------------------


def test_sounds_like_daft_punk_is_not_punk(rewriter: RuleRewriter) -> None:
    parsed = rewriter.rewrite("something that sounds like Daft Punk")
    assert ("genre", "punk", False) not in _read(parsed)
    [entity] = parsed.entities
    assert (entity.field, entity.name, entity.relation) == ("artist", "Daft Punk", "like")
    assert not entity.in_catalogue  # the shipped table of well-known artists knows it
    assert "punk" not in parsed.text.split()
    assert "house" in parsed.text
    off = RuleRewriter(entities=False).rewrite("something that sounds like Daft Punk")
    assert ("genre", "punk", False) in _read(off)
    assert not off.entities


def test_songs_like_bob_marley_embeds_no_request_words(rewriter: RuleRewriter) -> None:
    parsed = rewriter.rewrite("songs like Bob Marley")
    assert parsed.text == "reggae"
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(CATALOGUE)
    assert rec.search("songs like Bob Marley", k=1)[0].track.id == "reggae"
    assert rec.search("songs like Bob Marley", k=1, rewrite=False)[0].track.id == "kids"


def test_sung_by_a_woman_not_a_man(rewriter: RuleRewriter) -> None:
    parsed = rewriter.rewrite("sung by a woman, not a man")
    assert _read(parsed) == {("vocals", "female vocals", False), ("vocals", "male vocals", True)}
    assert parsed.text == "sung by a woman"


def test_music_without_words_has_no_vocals(rewriter: RuleRewriter) -> None:
    parsed = rewriter.rewrite("music without words")
    assert _read(parsed) == {("vocals", "vocals", True)}
    assert parsed.judge("A woman sings over a piano.")[1]
    assert not parsed.judge("Instrumental piano, no voices.")[1]


def test_sings_over_a_backing_instrumental_is_no_negation(rewriter: RuleRewriter) -> None:
    for query in ("sings over a backing instrumental", "a man sings over an instrumental"):
        parsed = rewriter.rewrite(query)
        assert not parsed.unwanted, query
        assert any(a.kind == "vocals" for a in parsed.wanted), query


# -- names -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> RuleRewriter:
    rewriter = RuleRewriter()
    rewriter.fit_names(CATALOGUE)
    return rewriter


def test_catalogue_names_case_and_accent_insensitive(fitted: RuleRewriter) -> None:
    for query, name in [
        ("songs by nina simone", "Nina Simone"),
        ("songs by NINA SIMONE", "Nina Simone"),
        ("something by beyonce", "Beyoncé"),
        ("Beyonce", "Beyoncé"),
    ]:
        [entity] = fitted.rewrite(query).entities
        assert (entity.name, entity.relation, entity.in_catalogue) == (name, "by", True), query


def test_like_a_catalogue_artist_is_read_as_its_tracks_tags(fitted: RuleRewriter) -> None:
    parsed = fitted.rewrite("something that sounds like Daft Punk")
    [entity] = parsed.entities
    assert entity.in_catalogue
    assert entity.styles == ("house", "electronic")
    assert parsed.text == "house electronic"


def test_titles_and_albums_need_a_lead_in(fitted: RuleRewriter) -> None:
    assert not fitted.rewrite("feeling good music").entities
    [title] = fitted.rewrite("the song Feeling Good").entities
    assert (title.field, title.name, title.relation) == ("title", "Feeling Good", "by")
    [album] = fitted.rewrite("from the album I Put a Spell on You").entities
    assert (album.field, album.name) == ("album", "I Put a Spell on You")


def test_unknown_names_after_like_are_not_genres(fitted: RuleRewriter) -> None:
    parsed = fitted.rewrite("songs like Ghost Pepper Trio")
    [entity] = parsed.entities
    assert (entity.name, entity.in_catalogue, entity.styles) == ("Ghost Pepper Trio", False, ())
    assert parsed.text == "Ghost Pepper Trio"
    # vocabulary words are no name, capitalised or not
    assert not fitted.rewrite("something like Jazz").entities
    assert ("genre", "jazz", False) in _read(fitted.rewrite("I like jazz"))


def test_songs_by_an_artist_filter_search() -> None:
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(CATALOGUE)
    hits = rec.search("songs by daft punk", k=5)
    assert [hit.track.id for hit in hits] == ["daft"]
    assert hits.query is not None
    assert hits.query.entities[0].name == "Daft Punk"
    like = rec.search("something that sounds like Daft Punk", k=2)
    assert [hit.track.id for hit in like] == ["daft", "synths"]
    kept = rec.search("songs by daft punk", k=5, where={"artist": "Someone Else"})
    assert [hit.track.id for hit in kept] == ["synths"]  # the caller's filter wins


def test_named_filter() -> None:
    entity = Entity("artist", "Daft Punk", "by", (0, 9), (0, 9), in_catalogue=True)
    parsed = ParsedQuery("Daft Punk", "house", entities=(entity,))
    assert named_filter(parsed, None) == {"artist": ["Daft Punk"]}
    assert named_filter(parsed, {"year": 2001}) == {"year": 2001, "artist": ["Daft Punk"]}
    assert named_filter(None, {"year": 2001}) == {"year": 2001}
    unknown = ParsedQuery(
        "Daft Punk", "house", entities=(Entity("artist", "X", "by", (0, 1), (0, 1)),)
    )
    assert named_filter(unknown, None) is None


def test_entity_index_is_plain_data(fitted: RuleRewriter) -> None:
    index = fitted.names
    assert index is not None
    data = json.loads(json.dumps(index.to_dict()))
    again = EntityIndex.from_dict(data)
    assert again.to_dict() == index.to_dict()
    vocabulary = fitted.vocabulary
    query = "songs by Nina Simone"
    assert again.find(query, vocabulary) == index.find(query, vocabulary)
    with pytest.raises(InvalidInputError, match="names"):
        EntityIndex.from_dict({"artists": {}})
    with pytest.raises(InvalidInputError, match="field"):
        EntityIndex({"genre": {"x": []}})


def test_shipped_artists_use_vocabulary_values() -> None:
    values = {concept.value for concept in Vocabulary.default()}
    for artist, styles in shipped_artist_styles().items():
        assert styles, artist
        assert set(styles) <= values, artist


def test_entity_spans_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="outside"):
        ParsedQuery("abc", "abc", entities=(Entity("artist", "X", "by", (0, 9), (0, 3)),))
    with pytest.raises(InvalidInputError, match="relation"):
        ParsedQuery("abc", "abc", entities=(Entity("artist", "X", "near", (0, 3), (0, 3)),))


# -- other languages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "read", "text"),
    [
        ("música relajante con guitarra española",
         {("mood", "relaxing", False), ("instrument", "classical guitar", False)},
         "relaxing classical guitar"),
        ("спокойная музыка для сна", {("mood", "calm", False)}, "calm"),
        ("ruhige Klaviermusik ohne Gesang",
         {("mood", "calm", False), ("instrument", "piano", False), ("vocals", "vocals", True)},
         "calm piano"),
        ("musique calme, sans paroles", {("mood", "calm", False), ("vocals", "vocals", True)},
         "calm"),
        ("música relaxante sem voz", {("mood", "relaxing", False), ("vocals", "vocals", True)},
         "relaxing"),
        ("песня без слов", {("vocals", "vocals", True)}, "песня без слов"),
    ],
)  # fmt: skip
def test_other_languages(
    rewriter: RuleRewriter, query: str, read: set[tuple[str, str, bool]], text: str
) -> None:
    parsed = rewriter.rewrite(query)
    assert _read(parsed) == read
    assert parsed.text == text


def test_languages_option() -> None:
    assert not RuleRewriter(languages=()).rewrite("música relajante").attributes
    spanish = RuleRewriter(languages=["es"])
    assert _read(spanish.rewrite("música relajante")) == {("mood", "relaxing", False)}
    assert not spanish.rewrite("ruhige Musik").attributes
    assert spanish.get_config() == {"languages": ["es"]}
    assert RuleRewriter().get_config() == {}
    assert RuleRewriter(languages=(), entities=False).get_config() == {
        "languages": [],
        "entities": False,
    }
    with pytest.raises(InvalidInputError, match="'xx'"):
        RuleRewriter(languages=["xx"])
    with pytest.raises(InvalidInputError, match="one string"):
        RuleRewriter(languages="es")


def test_translation_table_is_consistent() -> None:
    """Every row names a value of the shipped vocabulary, and no form means two things."""
    translations = load_translations(LANGUAGES)
    vocabulary = Vocabulary.default()
    for key in (*translations.forms, *translations.absent_forms):
        assert key in vocabulary, key
    extended = translations.apply(vocabulary)  # raises on a form with two meanings
    assert len(extended) == len(vocabulary)
    assert set(extended.cues) >= {"ohne", "sin", "без"}


def test_translation_table_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        load_translations(["es"], path=tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("language\trole\tkind\tvalue\tform\nes\tword\tmood\tcalm\ttranquila\n")
    with pytest.raises(InvalidInputError, match="role"):
        load_translations(["es"], path=bad)
    bad.write_text("lang\tform\n")
    with pytest.raises(InvalidInputError, match="header"):
        load_translations(["es"], path=bad)
    clash = tmp_path / "clash.tsv"
    clash.write_text("language\trole\tkind\tvalue\tform\nes\tform\tmood\tcalm\tsad\n")
    with pytest.raises(InvalidInputError, match="'sad'"):
        load_translations(["es"], path=clash).apply(Vocabulary.default())


def test_vocabulary_cues_round_trip() -> None:
    vocabulary = Vocabulary.default().with_forms({}, cues=["ohne"])
    assert vocabulary.cues == ("ohne",)
    assert vocabulary.extend([]).cues == ("ohne",)
    assert vocabulary.match_cue(["ohne", "x"], 0) == 1
    assert vocabulary.match_cue(["x"], 0) is None
    with pytest.raises(InvalidInputError, match="cue"):
        Vocabulary(list(Vocabulary.default()), cues=["--"])


def test_the_options_are_saved_with_the_recommender(tmp_path: Path) -> None:
    rec = Recommender(
        fields={"tags": "bm25"}, rewriter=RuleRewriter(languages=["es"], entities=False)
    )
    rec.add(CATALOGUE)
    rec.save(tmp_path / "library")
    loaded = Recommender.load(tmp_path / "library")
    assert isinstance(loaded.rewriter, RuleRewriter)
    assert loaded.rewriter.get_config() == {"languages": ["es"], "entities": False}
    assert not loaded.search("songs by daft punk", k=1).query.entities  # type: ignore[union-attr]
