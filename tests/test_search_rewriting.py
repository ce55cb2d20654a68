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


def test_a_library_keeps_its_fitted_rewriter_until_the_catalogue_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newwave.search.fitted_rewriter import META_KEY

    rec = Recommender({"description": "keyword"})
    rec.add([*TRACKS, Track(id="x", description="glassy textures", tags=["glitchcore"])])
    rec.save(tmp_path / "lib")
    first = Recommender.load(tmp_path / "lib")
    assert first.search("glitchcore", k=1).query.wanted[0].value == "glitchcore"  # type: ignore[union-attr]
    stored = first._library.store.meta(META_KEY)
    assert stored is not None
    assert "glitchcore" in stored

    fits: list[int] = []
    monkeypatch.setattr(RuleRewriter, "fit", lambda self, tags: fits.append(1))
    again = Recommender.load(tmp_path / "lib")
    hits = again.search("some glitchcore please", k=1)
    assert fits == []  # read from the library, not fitted
    assert [(a.kind, a.value) for a in hits.query.wanted] == [("tag", "glitchcore")]  # type: ignore[union-attr]
    again.add([Track(id="y", description="bright", tags=["hyperpop"])])
    again.search("hyperpop", k=1)
    assert fits == [1]  # the catalogue changed: fitted again


def test_a_damaged_fitted_rewriter_is_fitted_again(tmp_path: Path) -> None:
    from newwave.search.fitted_rewriter import META_KEY

    rec = Recommender({"description": "keyword"})
    rec.add([*TRACKS, Track(id="x", description="glassy textures", tags=["glitchcore"])])
    rec.save(tmp_path / "lib")
    Recommender.load(tmp_path / "lib").search("glitchcore", k=1)
    loaded = Recommender.load(tmp_path / "lib")
    store = loaded._library.store
    text = store.meta(META_KEY)
    assert text is not None
    with store.transaction(catalogue=False):
        store.set_meta(META_KEY, text.replace('"forms"', '"frms"'))
    hits = loaded.search("some glitchcore please", k=1)
    assert [(a.kind, a.value) for a in hits.query.wanted] == [("tag", "glitchcore")]  # type: ignore[union-attr]
    assert '"forms"' in (store.meta(META_KEY) or "")  # replaced by a good one
