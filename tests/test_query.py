"""Query rewriting: the vocabulary, negation scope, the text to embed, judging tracks, plugins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newwave import EmptyQueryError, InvalidInputError, MissingFileError, PluginError, hookimpl
from newwave.cli import main
from newwave.hookspecs import Register
from newwave.plugins import components, get_plugin_manager, load_rewriter
from newwave.query import (
    Attribute,
    Concept,
    ParsedQuery,
    QueryRewriter,
    RuleRewriter,
    Vocabulary,
    track_text,
)
from newwave.query.evaluation import NegationCase, load_negation_cases, negation_accuracy
from newwave.query.negation import parse
from newwave.query.vocabulary import form_key
from newwave.types import Track

ROOT = Path(__file__).resolve().parents[1]
NEGATION_QUERIES = ROOT / "benchmarks" / "data" / "negation_queries.jsonl"

Key = tuple[str, str]


@pytest.fixture(scope="module")
def rewriter() -> RuleRewriter:
    return RuleRewriter()


@pytest.fixture(scope="module")
def demo_tracks() -> list[Track]:
    text = resources.files("newwave").joinpath("data/musiccaps_demo.jsonl").read_text("utf-8")
    return [Track(**json.loads(line)) for line in text.splitlines() if line.strip()]


def wanted(parsed: ParsedQuery) -> set[Key]:
    return {(a.kind, a.value) for a in parsed.wanted}


def unwanted(parsed: ParsedQuery) -> set[Key]:
    return {(a.kind, a.value) for a in parsed.unwanted}


# -- the shipped vocabulary -------------------------------------------------------------------


def test_shipped_vocabulary_has_a_few_hundred_values_of_every_kind() -> None:
    vocabulary = Vocabulary.default()
    assert len(vocabulary) >= 250
    assert set(vocabulary.kinds) == {"genre", "mood", "instrument", "vocals", "tempo", "era"}
    per_kind = {kind: sum(c.kind == kind for c in vocabulary) for kind in vocabulary.kinds}
    assert min(per_kind.values()) >= 3, per_kind
    assert vocabulary is Vocabulary.default()  # loaded once


def test_every_shipped_form_reads_back_as_its_value(rewriter: RuleRewriter) -> None:
    wrong = []
    for concept in Vocabulary.default():
        for form in concept.forms:
            parsed = rewriter.rewrite(form)
            expected = Attribute(concept.kind, concept.value, False, (0, len(form)))
            found = [(a.kind, a.value, a.negated, a.span) for a in parsed.attributes]
            if found != [(expected.kind, expected.value, False, expected.span)]:
                wrong.append((form, found))
    assert not wrong


def test_every_shipped_form_is_negated_by_without(rewriter: RuleRewriter) -> None:
    wrong = []
    for concept in Vocabulary.default():
        for form in concept.forms:
            if unwanted(rewriter.rewrite(f"without {form}")) != {(concept.kind, concept.value)}:
                wrong.append(form)
    assert not wrong


@pytest.mark.parametrize(
    ("spellings", "expected"),
    [
        (["lo-fi", "lofi", "lo fi", "Lo-Fi", "LOFI"], ("genre", "lo-fi")),
        (["hip-hop", "hip hop", "hiphop", "Hip Hop"], ("genre", "hip hop")),
        (["r&b", "R & B", "rnb", "rhythm and blues", "r'n'b"], ("genre", "r&b")),
        (["drum and bass", "drum & bass", "drum n bass", "dnb"], ("genre", "drum and bass")),
        (["drum", "drums", "Drums", "drumming"], ("instrument", "drums")),
        (["80s", "1980s", "eighties", "'80s", "80's", "80\u2019s"], ("era", "1980s")),
        (["female vocals", "female vocal", "female singer", "Female Vocalist", "female voices"],
         ("vocals", "female vocals")),
        (["male vocals", "male singer", "a man singing"], ("vocals", "male vocals")),
        (["mid-tempo", "midtempo", "mid tempo", "medium tempo"], ("tempo", "mid-tempo")),
        (["slow", "slow tempo", "slow-paced"], ("tempo", "slow")),
        (["fast", "fast-paced", "uptempo", "up-tempo"], ("tempo", "fast")),
        (["reggaeton", "Reggaetón"], ("genre", "reggaeton")),
        (["acoustic guitars", "acoustic guitar"], ("instrument", "acoustic guitar")),
    ],
)  # fmt: skip
def test_spelling_variants_name_one_value(
    rewriter: RuleRewriter, spellings: list[str], expected: Key
) -> None:
    for spelling in spellings:
        assert wanted(rewriter.rewrite(spelling)) == {expected}, spelling


def test_the_longest_form_wins(rewriter: RuleRewriter) -> None:
    assert wanted(rewriter.rewrite("acoustic guitar")) == {("instrument", "acoustic guitar")}
    assert wanted(rewriter.rewrite("heavy metal")) == {("genre", "heavy metal")}
    assert wanted(rewriter.rewrite("electronic drums")) == {("instrument", "drum machine")}
    assert wanted(rewriter.rewrite("bass drum and bass guitar")) == {
        ("instrument", "kick drum"),
        ("instrument", "bass guitar"),
    }


@pytest.mark.parametrize(
    "query", ["popular classics", "rocking chair", "metallic clank", "breakfast", "drumsticks"]
)
def test_forms_match_whole_words_only(rewriter: RuleRewriter, query: str) -> None:
    assert rewriter.rewrite(query).attributes == ()


# -- negation -----------------------------------------------------------------------------------

NEGATION_CASES = [
    ("no vocals but with piano", {("instrument", "piano")}, {("vocals", "vocals")}),
    ("without drums or bass", set(), {("instrument", "drums"), ("instrument", "bass")}),
    ("not too fast", set(), {("tempo", "fast")}),
    ("instrumental", set(), {("vocals", "vocals")}),
    ("instrumental hip hop", {("genre", "hip hop")}, {("vocals", "vocals")}),
    ("not instrumental", {("vocals", "vocals")}, set()),
    ("a song with no drums, female vocals", {("vocals", "female vocals")},
     {("instrument", "drums")}),
    ("not metal", set(), {("genre", "metal")}),
    ("heavy metal", {("genre", "heavy metal")}, set()),
    ("anything but metal", set(), {("genre", "metal")}),
    ("no drums, bass or guitar", set(),
     {("instrument", "drums"), ("instrument", "bass"), ("instrument", "guitar")}),
    ("no drums, piano and strings", {("instrument", "piano"), ("instrument", "strings")},
     {("instrument", "drums")}),
    ("without drums and bass", set(), {("instrument", "drums"), ("instrument", "bass")}),
    ("without drums and female vocals", {("vocals", "female vocals")}, {("instrument", "drums")}),
    ("no vocals and upbeat", {("mood", "upbeat")}, {("vocals", "vocals")}),
    ("neither rock nor metal", set(), {("genre", "rock"), ("genre", "metal")}),
    ("not too slow or too fast", set(), {("tempo", "slow"), ("tempo", "fast")}),
    ("no rock ballads", set(), {("genre", "rock"), ("genre", "ballad")}),
    ("vocal-free ambient", {("genre", "ambient")}, {("vocals", "vocals")}),
    ("drumless jazz", {("genre", "jazz")}, {("instrument", "drums")}),
    ("non-vocal lo-fi", {("genre", "lo-fi")}, {("vocals", "vocals")}),
    ("not only jazz but also blues", {("genre", "jazz"), ("genre", "blues")}, set()),
    ("nothing but piano", {("instrument", "piano")}, set()),
    ("I don't mind vocals", {("vocals", "vocals")}, set()),
    ("I don't want vocals, just piano", {("instrument", "piano")}, {("vocals", "vocals")}),
    ("jazz, no saxophone, with trumpet", {("genre", "jazz"), ("instrument", "trumpet")},
     {("instrument", "saxophone")}),
    ("rock without the drums", {("genre", "rock")}, {("instrument", "drums")}),
    ("not something with drums", set(), {("instrument", "drums")}),
    ("no vocals. piano", {("instrument", "piano")}, {("vocals", "vocals")}),
    ("no vocals with piano", {("instrument", "piano")}, {("vocals", "vocals")}),
    ("no, jazz please", {("genre", "jazz")}, set()),
    ("nothing I have ever heard on the radio sounds like jazz", {("genre", "jazz")}, set()),
    ("w/o drums", set(), {("instrument", "drums")}),
    ("free of autotune", set(), {("vocals", "autotune")}),
    ("other than reggae", set(), {("genre", "reggae")}),
    ("hip hop without rapping", {("genre", "hip hop")}, {("vocals", "rap")}),
    ("a fast song that isn't metal", {("tempo", "fast")}, {("genre", "metal")}),
    ("upbeat electronic track that is not too fast", {("mood", "upbeat"), ("genre", "electronic")},
     {("tempo", "fast")}),
    # A voice (or any value) the query asks for is not also ruled out by a broader negation.
    ("an instrumental with female vocals", {("vocals", "female vocals")}, set()),
    ("a male voice speaking instead of singing", {("vocals", "male vocals")}, set()),
    ("no drums, just a snare", {("instrument", "snare")}, set()),
    ("rock but not hard rock", {("genre", "rock")}, {("genre", "hard rock")}),
    ("female vocals, no male vocals", {("vocals", "female vocals")}, {("vocals", "male vocals")}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "wants", "avoids"), NEGATION_CASES)
def test_negation_scope(
    rewriter: RuleRewriter, query: str, wants: set[Key], avoids: set[Key]
) -> None:
    parsed = rewriter.rewrite(query)
    assert (wanted(parsed), unwanted(parsed)) == (wants, avoids)


def test_attributes_point_at_the_words_that_say_them(rewriter: RuleRewriter) -> None:
    query = "Chill LO-FI beats, no vocals"
    parsed = rewriter.rewrite(query)
    spans = {a.value: query[a.span[0] : a.span[1]] for a in parsed.attributes if a.span}
    assert spans == {"relaxing": "Chill", "lo-fi hip hop": "LO-FI beats", "vocals": "vocals"}
    drums = rewriter.rewrite("no drums").attributes[0]
    assert {"drums", "snare", "hi-hat", "drum machine"} <= set(drums.forms)  # narrower values too
    assert drums.forms[:2] == ("drum", "drums")  # its own forms first


def test_repeated_attributes_are_listed_once(rewriter: RuleRewriter) -> None:
    parsed = rewriter.rewrite("jazz, more jazz, no drums, no drums at all")
    assert [(a.value, a.negated, a.span) for a in parsed.attributes] == [
        ("jazz", False, (0, 4)),
        ("drums", True, (20, 25)),
    ]


# -- the text to embed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("relaxing piano music without vocals", "relaxing piano music"),
        ("I'm looking for some 80's synth pop, please", "80's synth pop"),
        ("Can you find me something like hip-hop without rapping?", "hip-hop?"),
        ("a song with no drums, female vocals", "a song with female vocals"),
        ("a song with no drums and female vocals", "a song with female vocals"),
        ("upbeat electronic track that is not too fast", "upbeat electronic track"),
        ("no vocals but with piano", "piano"),
        ("play some jazz for a rainy day", "jazz for a rainy day"),
        ("Jazz for a rainy day", "Jazz for a rainy day"),
        ("a song that isn't too loud", "a song that isn't too loud"),  # "loud": not a value
        ("please find me some", "please find me some"),  # only boilerplate: the original
        ("no vocals", "no vocals"),  # only a negation: the original
        ("  something, please  ", "something, please"),
    ],
)
def test_text_drops_boilerplate_and_negated_phrases(
    rewriter: RuleRewriter, query: str, text: str
) -> None:
    assert rewriter.rewrite(query).text == text


def test_blank_or_non_string_queries_are_rejected(rewriter: RuleRewriter) -> None:
    for query in ("", "   ", "\n\t"):
        with pytest.raises(EmptyQueryError):
            rewriter.rewrite(query)
    with pytest.raises(InvalidInputError, match="must be a str"):
        rewriter.rewrite(None)  # type: ignore[arg-type]


def test_a_ten_thousand_word_query_is_handled(rewriter: RuleRewriter) -> None:
    query = " ".join(["please play jazz with female vocals but no drums. Today"] * 1000)
    assert len(query.split()) == 10_000
    parsed = rewriter.rewrite(query)
    assert {(a.value, a.negated) for a in parsed.attributes} == {
        ("drums", True),
        ("jazz", False),
        ("female vocals", False),
    }
    assert "drums" not in parsed.text
    assert parsed.text.count("jazz") == 1000


WORDS = [
    "no", "not", "without", "anything but", "non-", "w/o", "neither", "nor", "or", "and", ",",
    ".", "but", "with", "just", "-free", "the", "a", "song", "too", "please", "some", "I'm",
    "looking for", "instrumental", "vocals", "female singer", "drums", "snare", "piano", "jazz",
    "heavy metal", "metal", "lo-fi", "80s", "fast", "slow", "sad", "happy", "acoustic guitar",
    "guitar", "choir", "rap", "the instrumental", "no other", "nothing but", "drumless", "'",
    "\u2014", "-", "&", "Rock", "\u00e9t\u00e9", "\U0001f3b8",
]  # fmt: skip
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(" ".join)


def _positive_below(parsed: ParsedQuery, attribute: Attribute) -> bool:
    vocabulary = parsed.vocabulary
    assert vocabulary is not None
    below = vocabulary.narrower(attribute.kind, attribute.value)
    return any(a.kind == attribute.kind and a.value in below for a in parsed.wanted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries)
def test_rewriting_any_word_salad_is_consistent(query: str) -> None:
    rewriter = _shared_rewriter()
    if not query.strip():
        return
    parsed = rewriter.rewrite(query)
    assert parsed.text.strip()
    assert all(piece in query for piece in re.split(r"[ ,;:.!?]+", parsed.text))
    vocabulary = parsed.vocabulary
    assert vocabulary is not None
    for attribute in parsed.attributes:
        assert attribute.span is not None
        said = query[attribute.span[0] : attribute.span[1]]
        concept = vocabulary.concept(attribute.kind, attribute.value)
        keys = {form_key(f) for f in (*attribute.forms, *concept.absent_forms)}
        assert form_key(said) in keys or said.lower().endswith("less"), (said, attribute)
    # What the query asks for (or a narrower value of it) is never also ruled out.
    assert not any(_positive_below(parsed, a) for a in parsed.unwanted)
    # The judge reads the query like the rewriter: it never shows an unwanted attribute unless
    # the query also wants it (or a narrower value) somewhere, and without negation it shows
    # every wanted one.
    shown_wanted, shown_unwanted = parsed.judge(query)
    assert all(_positive_below(parsed, a) for a in shown_unwanted)
    if not any(mention.negated for mention in parse(query, vocabulary).mentions):
        assert shown_wanted == parsed.wanted


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_rewritten_or_rejected_as_empty(query: str) -> None:
    rewriter = _shared_rewriter()
    if not query.strip():
        with pytest.raises(EmptyQueryError):
            rewriter.rewrite(query)
        return
    parsed = rewriter.rewrite(query)
    assert parsed.original == query
    assert parsed.text.strip()


_REWRITER: list[RuleRewriter] = []


def _shared_rewriter() -> RuleRewriter:
    if not _REWRITER:
        _REWRITER.append(RuleRewriter())
    return _REWRITER[0]


# -- judging tracks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "track", "shows_wanted", "shows_unwanted"),
    [
        ("jazz without drums", "A mellow jazz trio. There are no drums.", ["jazz"], []),
        ("jazz without drums", "Jazz with a drum kit and brushes.", ["jazz"], ["drums"]),
        ("no vocals", "The song is an instrumental.", [], []),
        ("no vocals", "A male vocalist sings over a piano.", [], ["vocals"]),
        ("no vocals", "This is instrumental music; there are no voices.", [], []),
        ("no vocals", "A female singer over a groovy beat. The instrumental is a guitar.", [],
         ["vocals"]),
        ("female vocals", "A passionate male vocal.", [], []),
        ("female vocals", "Soft female voice singing.", ["female vocals"], []),
        ("female vocals", "Instrumental; female voice sample.", ["female vocals"], []),
        ("no vocals", "Screaming male vocal over a muffled instrumental.", [], ["vocals"]),
        ("no vocals", "An instrumental with muffled voices of a crowd.", [], []),
        ("no vocals", "No voices; a male vocal sample.", [], []),
        ("without drums", "Punchy snare and a deep kick.", [], ["drums"]),
        ("without drums", "Shakers and a tambourine keep time.", [], []),
        ("without percussion", "A full drum kit.", [], ["percussion"]),
        ("without drums", "A cymbal crash. There is no percussion.", [], []),
        ("without drums", "A cymbal on every beat. No other percussion is played.", [],
         ["drums"]),
        ("not metal", "A heavy metal song with growling vocals.", [], ["metal"]),
        ("not too fast", "The tempo is not fast.", [], []),
        ("guitar music", "An upright bass and a bass guitar.", [], []),
    ],
)  # fmt: skip
def test_judge_reads_tracks_with_the_same_rules(
    rewriter: RuleRewriter,
    query: str,
    track: str,
    shows_wanted: list[str],
    shows_unwanted: list[str],
) -> None:
    parsed = rewriter.rewrite(query)
    shown, avoided = parsed.judge(track)
    assert ([a.value for a in shown], [a.value for a in avoided]) == (
        shows_wanted,
        shows_unwanted,
    )


def test_judge_of_blank_or_non_string_text(rewriter: RuleRewriter) -> None:
    parsed = rewriter.rewrite("no vocals")
    assert parsed.judge("") == ((), ())
    with pytest.raises(InvalidInputError):
        parsed.judge(42)  # type: ignore[arg-type]


def test_judge_uses_the_attribute_forms_without_a_vocabulary() -> None:
    cozy = Attribute("mood", "cozy", forms=("cozy", "snug"))
    organ = Attribute("instrument", "organ", negated=True)  # no forms: its value is the form
    parsed = ParsedQuery("cozy, no organ", "cozy", (cozy, organ), rewriter="handmade")
    assert parsed.judge("a snug little song with an organ") == ((cozy,), (organ,))
    assert parsed.judge("not snug at all, no organ") == ((), ())


def test_a_parsed_query_checks_itself() -> None:
    with pytest.raises(EmptyQueryError):
        ParsedQuery("q", " ")
    with pytest.raises(InvalidInputError, match="outside"):
        ParsedQuery("q", "q", (Attribute("genre", "jazz", span=(0, 5)),))


def test_track_text_is_description_and_tags_one_clause_each() -> None:
    track = Track(id="t", description="A calm song.", tags=("no drums", " piano "))
    assert track_text(track) == "A calm song.; no drums; piano"
    assert track_text(Track(id="u", tags=("jazz",))) == "jazz"


def test_the_demo_catalogue_instrumentals_show_no_vocals(
    rewriter: RuleRewriter, demo_tracks: list[Track]
) -> None:
    no_vocals = rewriter.rewrite("no vocals")
    instrumental = [t for t in demo_tracks if "instrumental" in (tag.lower() for tag in t.tags)]
    assert len(instrumental) >= 20
    flagged = [track_text(t) for t in instrumental if no_vocals.judge(track_text(t))[1]]
    assert len(flagged) <= 1
    assert all("choir singers" in text for text in flagged)  # names a voice: see judge()
    singing = [t for t in demo_tracks if any("male vocal" in tag.lower() for tag in t.tags)]
    assert len(singing) >= 20
    assert all(no_vocals.judge(track_text(t))[1] for t in singing)


# -- learning the catalogue's tags ------------------------------------------------------------


def test_fit_learns_the_tags_the_vocabulary_lacks() -> None:
    rewriter = RuleRewriter()
    rewriter.fit(
        ["four on the floor", "Live  Performance", "live performance", "lo-fi", "no voices",
         "female vocal", "the", "a very long tag that goes on and on", "crowd noise"]
    )  # fmt: skip
    learned = {c.value for c in rewriter.vocabulary if c.kind == "tag"}
    assert learned == {"four on the floor", "live performance", "crowd noise"}
    parsed = rewriter.rewrite("a Live Performances without crowd noise")
    assert [(a.kind, a.value, a.negated) for a in parsed.attributes] == [
        ("tag", "live performance", False),
        ("tag", "crowd noise", True),
    ]
    assert parsed.judge("live performance; crowd noise") == (parsed.wanted, parsed.unwanted)
    assert wanted(rewriter.rewrite("e-bass")) == {("instrument", "bass guitar")}

    rewriter.fit(["tape hiss"])  # starts over
    assert {c.value for c in rewriter.vocabulary if c.kind == "tag"} == {"tape hiss"}


def test_fit_options() -> None:
    tags = ["tape hiss", "tape hiss", "vinyl crackle", "a b c d e"]
    counted = RuleRewriter(min_tag_count=2)
    counted.fit(tags)
    assert {c.value for c in counted.vocabulary if c.kind == "tag"} == {"tape hiss"}
    longer = RuleRewriter(max_tag_words=5)
    longer.fit(tags)
    assert "a b c d e" in {c.value for c in longer.vocabulary}
    off = RuleRewriter(learn_tags=False, languages=())
    off.fit(tags)
    assert off.vocabulary is Vocabulary.default()
    with pytest.raises(InvalidInputError, match="not one string"):
        off.fit("tape hiss")
    with pytest.raises(InvalidInputError, match="strings"):
        RuleRewriter().fit([3])  # type: ignore[list-item]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(InvalidInputError):
            RuleRewriter(max_tag_words=bad)  # type: ignore[arg-type]


def test_the_demo_catalogue_tags_are_learned(demo_tracks: list[Track]) -> None:
    rewriter = RuleRewriter()
    rewriter.fit(tag for track in demo_tracks for tag in track.tags)
    learned = {c.value for c in rewriter.vocabulary if c.kind == "tag"}
    assert {"low quality", "live performance", "amateur recording"} <= learned
    assert not learned & {"instrumental", "no voices", "male vocal", "female voice", "rock"}


# -- custom vocabularies ------------------------------------------------------------------------


def _vocabulary_file(tmp_path: Path, kinds: object, **extra: object) -> Path:
    path = tmp_path / "vocabulary.json"
    data = {"format": "newwave-music-vocabulary", "version": 1, "kinds": kinds, **extra}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_custom_vocabulary_file(tmp_path: Path) -> None:
    path = _vocabulary_file(
        tmp_path,
        {
            "instrument": {
                "percussion": ["percussion"],
                "cowbell": {"forms": ["cowbell"], "broader": ["percussion"]},
            },
            "vocals": {"vocals": {"forms": ["vocal"], "absent_forms": ["karaoke"]}},
        },
        inflect=["instrument", "vocals"],
    )
    rewriter = RuleRewriter(vocabulary=path)
    parsed = rewriter.rewrite("karaoke without cowbells")
    assert unwanted(parsed) == {("vocals", "vocals"), ("instrument", "cowbell")}
    assert parsed.judge("two cowbells") == ((), parsed.unwanted[1:])
    assert rewriter.get_config() == {"vocabulary": str(path)}
    assert load_rewriter("rules", **rewriter.get_config()).rewrite("vocals").wanted


@pytest.mark.parametrize(
    ("kinds", "extra", "message"),
    [
        ({"genre": {"a": ["rock"], "b": ["Rock"]}}, {}, "belongs to"),
        ({"genre": {"a": {"forms": ["x"], "broader": ["z"]}}}, {}, "broader value 'z'"),
        ({"genre": {"a": {"forms": ["x"], "broader": ["b"]},
                    "b": {"forms": ["y"], "broader": ["a"]}}}, {}, "broader than itself"),
        ({"genre": {"a": []}}, {}, "non-empty list"),
        ({"genre": {"a": ["!!"]}}, {"neutral": ["x"]}, "non-empty list"),
        ({"genre": {"a": {"forms": ["x"], "colour": "red"}}}, {}, "unknown keys"),
        ({"genre": {"a": ["x"]}}, {"neutral": ["x"]}, "neutral phrase"),
        ({"genre": ["x"]}, {}, "must map values"),
        ({}, {}, "'kinds'"),
        ({"genre": {"a": ["x"]}}, {"version": 2}, "unsupported version"),
    ],
)  # fmt: skip
def test_bad_vocabularies_are_rejected(
    tmp_path: Path, kinds: object, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        Vocabulary.load(_vocabulary_file(tmp_path, kinds, **extra))


def test_vocabulary_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        RuleRewriter(vocabulary=tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not a 'newwave-music-vocabulary'"):
        Vocabulary.load(tmp_path / "other.json")


def test_extending_a_vocabulary_leaves_it_unchanged() -> None:
    base = Vocabulary([Concept("genre", "jazz", ("jazz",))])
    more = base.extend([Concept("genre", "bebop", ("bebop",), broader=("jazz",))])
    assert len(base) == 1
    assert len(more) == 2
    assert more.narrower("genre", "jazz") == {"jazz", "bebop"}
    assert more.broader("genre", "bebop") == {"jazz", "bebop"}
    assert more.forms("genre", "jazz") == ("jazz", "bebop")
    with pytest.raises(InvalidInputError, match="defined twice"):
        base.extend([Concept("genre", "jazz", ("jazz music",))])
    with pytest.raises(InvalidInputError, match="no genre 'funk'"):
        base.concept("genre", "funk")


# -- the plugin kind ----------------------------------------------------------------------------


def test_rules_is_a_registered_rewriter() -> None:
    registration = components("rewriter")["rules"]
    assert registration.plugin == "query-rules"
    rewriter = load_rewriter("rules", learn_tags=False, max_tag_words=3)
    assert isinstance(rewriter, RuleRewriter)
    config = rewriter.get_config()
    assert config == {"learn_tags": False, "max_tag_words": 3}
    assert json.loads(json.dumps(config)) == config
    assert load_rewriter("rules", **config).get_config() == config
    assert repr(rewriter) == "RuleRewriter(learn_tags=False, max_tag_words=3)"
    assert RuleRewriter().get_config() == {}


class _EchoRewriter(QueryRewriter):
    """Keeps the query as it is: what a rewriter backed by a local LLM would replace."""

    name = "echo"

    def _rewrite(self, query: str) -> ParsedQuery:
        return ParsedQuery(query, query, rewriter=self.name)


class _BrokenRewriter(QueryRewriter):
    name = "broken"

    def _rewrite(self, query: str) -> ParsedQuery:
        return ParsedQuery("something else", "something else")


class _RewriterPlugin:
    @hookimpl
    def register_rewriters(self, register: Register) -> None:
        register(_EchoRewriter, aliases=("parrot",))
        register(_BrokenRewriter)


@pytest.fixture
def rewriter_plugin() -> Iterator[None]:
    pm = get_plugin_manager()
    pm.register(_RewriterPlugin(), name="test-rewriters")
    try:
        yield
    finally:
        pm.unregister(name="test-rewriters")


def test_a_third_party_rewriter_plugs_in(rewriter_plugin: None) -> None:
    echo = load_rewriter("parrot")
    assert isinstance(echo, _EchoRewriter)
    assert echo.rewrite("no vocals").text == "no vocals"
    echo.fit(["anything"])  # the default fit learns nothing
    assert components("rewriter")["echo"].plugin == "test-rewriters"
    with pytest.raises(PluginError, match="not a ParsedQuery of the query"):
        load_rewriter("broken").rewrite("jazz")


def test_newwave_plugins_lists_rewriters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"kind": "rewriter", "name": "rules", "aliases": [], "plugin": "query-rules",
            "summary": RuleRewriter.__doc__.splitlines()[0]} in rows  # type: ignore[union-attr]  # fmt: skip


def test_the_rewriter_is_cheap_to_import() -> None:
    code = (
        "import sys\nfrom newwave.query import RuleRewriter\n"
        "RuleRewriter().rewrite('jazz without drums')\n"
        "heavy = {'torch', 'transformers', 'faiss', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)


# -- the negation query set and its accuracy --------------------------------------------------


def test_the_negation_query_set_is_answerable(demo_tracks: list[Track]) -> None:
    cases = load_negation_cases(NEGATION_QUERIES)
    assert 30 <= len(cases) <= 40
    for case in cases:
        satisfied = [t.id for t in demo_tracks if case.satisfied_by(t)]
        assert len(satisfied) >= 3, case.query


def test_the_negation_query_forms_are_never_negated_otherwise(demo_tracks: list[Track]) -> None:
    """A form occurs negated only right after "no"/"not"/"without", which the judging skips."""
    texts = [track_text(t).lower() for t in demo_tracks]
    cue = r"\b(?:no|not|without|lacks?|lacking|zero|none|never|nor|neither|free of)\b"
    found = []
    for case in load_negation_cases(NEGATION_QUERIES):
        for form in case.must_not_any:
            pattern = re.compile(rf"{cue}([^.;,]{{0,40}}?)(?<!\w){re.escape(form)}(?!\w)")
            for text in texts:
                found += [m.group(0) for m in pattern.finditer(text) if m.group(1) != " "]
    assert not found


def test_negation_accuracy_of_an_oracle_and_of_an_adversary(demo_tracks: list[Track]) -> None:
    cases = load_negation_cases(NEGATION_QUERIES)[:5]
    by_query = {c.query: c for c in cases}

    def oracle(query: str) -> list[str]:
        return [t.id for t in demo_tracks if by_query[query].satisfied_by(t)]

    def adversary(query: str) -> list[str]:
        return [t.id for t in demo_tracks if not by_query[query].satisfied_by(t)]

    best = negation_accuracy(cases, oracle, demo_tracks, k=5)
    assert best.as_dict() == {"precision@1": 1.0, "precision@5": 1.0}
    assert set(best.per_query) == set(by_query)
    assert negation_accuracy(cases, adversary, demo_tracks).as_dict() == {
        "precision@1": 0.0,
        "precision@5": 0.0,
    }
    assert negation_accuracy(cases, oracle, demo_tracks, k=1).as_dict() == {"precision@1": 1.0}
    with pytest.raises(InvalidInputError, match="positive integer"):
        negation_accuracy(cases, oracle, demo_tracks, k=0)


def test_a_negation_case_judges_with_word_boundaries_and_skips_direct_negation() -> None:
    case = NegationCase("piano without drums", ("piano",), ("drums", "male vocal"))
    judged = {
        "piano, no drums": True,
        "piano with drums": False,
        "piano; e-drums": False,
        "piano without drums; female vocal": True,
        "piano; male vocal": False,
        "pianos": False,
        "no piano": False,
    }
    assert {text: case.satisfied_by(Track(id="t", description=text)) for text in judged} == judged


def test_negation_case_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"query": "jazz", "must_any": ["jazz"]}\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="line 1"):
        load_negation_cases(path)
    path.write_text('{"query": "x", "must_not_any": ["y"]}\n' * 2, encoding="utf-8")
    with pytest.raises(InvalidInputError, match="twice"):
        load_negation_cases(path)
    with pytest.raises(InvalidInputError, match="must_not_any is empty"):
        NegationCase("jazz", ("jazz",))
    with pytest.raises(MissingFileError):
        load_negation_cases(tmp_path / "missing.jsonl")
