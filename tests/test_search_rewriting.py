"""The Recommender's query rewriting: the embedded text, demoted tracks, what hits.query says."""

from __future__ import annotations

from pathlib import Path

import pytest

from newwave import InvalidInputError, Recommender, Track
from newwave.query import ParsedQuery, QueryRewriter, RuleRewriter

pytestmark = pytest.mark.usefixtures("keyword_plugin")

TRACKS = [
    Track(id="sung", description="soft piano ballad with female vocals", tags=["piano", "vocal"]),
    Track(id="solo", description="solo piano piece", tags=["piano", "instrumental"]),
    Track(id="band", description="rock band with loud drums and vocals", tags=["rock"]),
]


class Shouting(QueryRewriter):
    """A rewriter of one's own: embeds the query in capitals, understands nothing."""

    name = "shouting"

    def __init__(self) -> None:
        self.fitted: list[str] = []

    def fit(self, tags: object) -> None:
        self.fitted = list(tags)  # type: ignore[call-overload]

    def _rewrite(self, query: str) -> ParsedQuery:
        return ParsedQuery(original=query, text=query.upper(), rewriter=self.name)


def test_negated_attributes_demote_the_tracks_that_have_them() -> None:
    rec = Recommender({"description": "keyword"})
    rec.add(TRACKS)
    query = "piano ballad, no vocals"
    plain = rec.search(query, k=3, rewrite=False)
    assert plain.query is None
    assert plain[0].track.id == "sung"  # the words match; the negation is read backwards

    hits = rec.search(query, k=3)
    assert hits.query is not None
    assert [(a.kind, a.value) for a in hits.query.unwanted] == [("vocals", "vocals")]
    assert "no vocals" not in hits.query.text
    # The same search without the rewriter's judgement: the tracks with vocals score half.
    before = {h.track.id: h.score for h in rec.search(hits.query.text, k=3, rewrite=False)}
    after = {h.track.id: h.score for h in hits}
    assert after == pytest.approx(
        {"solo": before["solo"], **{i: before[i] / 2 for i in ("sung", "band")}}
    )
    assert [h.score for h in hits] == sorted(after.values(), reverse=True)
    assert [h.rank for h in hits] == [1, 2, 3]


def test_without_a_rewriter_the_query_is_embedded_as_it_is(tmp_path: Path) -> None:
    rec = Recommender({"description": "keyword"}, rewriter=None)
    rec.add(TRACKS)
    assert rec.search("piano without vocals", k=1).query is None
    assert rec.config.rewriter is None
    rec.save(tmp_path / "lib")
    assert Recommender.load(tmp_path / "lib").rewriter is None


def test_the_rewriter_is_saved_with_its_options(tmp_path: Path) -> None:
    rec = Recommender({"description": "keyword"}, rewriter=RuleRewriter(max_tag_words=2))
    rec.add(TRACKS)
    assert rec.config.rewriter is not None
    assert rec.config.rewriter.model_dump() == {"name": "rules", "options": {"max_tag_words": 2}}
    rec.save(tmp_path / "lib")
    loaded = Recommender.load(tmp_path / "lib")
    assert isinstance(loaded.rewriter, RuleRewriter)
    assert loaded.rewriter.max_tag_words == 2


def test_a_rewriter_of_ones_own_is_fitted_to_the_catalogue_tags() -> None:
    rewriter = Shouting()
    rec = Recommender({"description": "keyword"}, rewriter=rewriter)
    rec.add(TRACKS)
    hits = rec.search("solo piano", k=1)
    assert hits.query is not None
    assert hits.query.text == "SOLO PIANO"
    assert sorted(rewriter.fitted) == ["instrumental", "piano", "piano", "rock", "vocal"]
    rec.remove(["band"])
    rec.search("solo piano", k=1)
    assert "rock" not in rewriter.fitted  # fitted again after the catalogue changed


def test_the_catalogue_tags_become_attributes() -> None:
    rec = Recommender({"description": "keyword"})
    rec.add([*TRACKS, Track(id="x", description="glassy textures", tags=["glitchcore"])])
    hits = rec.search("some glitchcore please", k=1)
    assert hits.query is not None
    assert [(a.kind, a.value) for a in hits.query.wanted] == [("tag", "glitchcore")]


def test_a_bad_rewriter_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="rewriter must be a name"):
        Recommender({"description": "keyword"}, rewriter=3)  # type: ignore[arg-type]


def test_a_huge_query_is_cut_before_it_is_read() -> None:
    from newwave import TruncatedTextWarning
    from newwave.recommender import MAX_QUERY_CHARS

    rec = Recommender({"description": "keyword"})
    rec.add(TRACKS)
    with pytest.warns(TruncatedTextWarning, match=f"{MAX_QUERY_CHARS:,} of 1,000,010"):
        hits = rec.search("solo piano " + "x" * 999_999, k=1)
    assert hits.query is not None
    assert len(hits.query.original) == MAX_QUERY_CHARS
