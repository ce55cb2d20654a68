"""Hits as tables: rows, HTML for notebooks, pandas, Arrow; the Recommender's HTML summary."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from newwave import Hit, Hits, MissingDependencyError, Recommender, Track
from newwave.query.base import Attribute, ParsedQuery
from newwave.tables import hits_csv, hits_html, hits_m3u, hits_rows


def hits() -> Hits:
    parsed = ParsedQuery(
        "sad piano, no vocals",
        "sad piano",
        (Attribute("vocals", "vocals", negated=True), Attribute("mood", "sad")),
        "rules",
    )
    return Hits(
        [
            Hit(
                Track(id="t1", title="Paper <Boats>", artist="Ann & Lee", audio="/m/1.mp3"),
                0.75,
                1,
                {"description": 0.61, "tags:bm25": 3.2},
                {"description": 2, "tags:bm25": 1},
            ),
            Hit(Track(id="t2"), 0.75, 2, {"description": 0.64}, {"description": 1}),
        ],
        query=parsed,
    )


def test_rows_have_every_channel_with_its_score_and_rank() -> None:
    rows = hits_rows(hits())
    assert list(rows[0]) == [
        "rank", "id", "title", "artist", "album", "audio", "score",
        "score_description", "rank_description", "score_tags:bm25", "rank_tags:bm25",
    ]  # fmt: skip
    assert (rows[1]["score_tags:bm25"], rows[1]["rank_tags:bm25"]) == (None, None)
    assert (rows[0]["rank_tags:bm25"], rows[1]["rank_description"]) == (1, 1)


def test_html_is_escaped_and_shows_the_parsed_query() -> None:
    text = hits()._repr_html_()
    for shown in ["Paper &lt;Boats&gt;", "Ann &amp; Lee", "searching for &#x27;sad piano&#x27;"]:
        assert shown in text
    for shown in ["unwanted: vocals (vocals)", "wanted: sad (mood)", "0.610 #2", "3.200 #1"]:
        assert shown in text
    assert text.count("<tr>") == 3
    assert "no results" in hits_html(Hits())


def test_to_pandas() -> None:
    pytest.importorskip("pandas")
    frame = hits().to_pandas()
    assert list(frame["id"]) == ["t1", "t2"]
    assert frame.loc[0, "rank_tags:bm25"] == 1
    assert list(Hits().to_pandas().columns)[:3] == ["rank", "id", "title"]


def test_to_arrow() -> None:
    pa = pytest.importorskip("pyarrow")
    table = hits().to_arrow()
    assert table.schema.field("rank_description").type == pa.int64()
    assert table.schema.field("score").type == pa.float64()
    assert table.column("score_tags:bm25").to_pylist() == [3.2, None]
    assert Hits().to_arrow().num_rows == 0


@pytest.mark.parametrize(("method", "extra"), [("to_pandas", "pandas"), ("to_arrow", "parquet")])
def test_a_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, method: str, extra: str
) -> None:
    real_import = builtins.__import__

    def no_dataframes(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("pandas", "pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dataframes)
    with pytest.raises(MissingDependencyError, match=rf"newwave-music\[{extra}\]"):
        getattr(hits(), method)()


def test_csv_and_m3u() -> None:
    lines = hits_csv(hits()).splitlines()
    assert lines[0].startswith("rank,id,title,artist,album,audio,score,score_description")
    assert lines[1].startswith("1,t1,Paper <Boats>,Ann & Lee,,/m/1.mp3,0.75,0.61,2,3.2,1")
    playlist, missing = hits_m3u(hits())
    assert playlist == "#EXTM3U\n#EXTINF:-1,Ann & Lee - Paper <Boats>\n/m/1.mp3\n"
    assert missing == 1


def test_recommender_html_summary(keyword_plugin: None) -> None:
    rec = Recommender({"description": "keyword", "tags": ["bm25", "keyword"]})
    rec.add([Track(id="a", description="<b>x</b>", tags=("y",)), Track(id="b", tags=("z",))])
    text = rec._repr_html_()
    assert "<b>Recommender</b>: 2 tracks, in memory; fuser weighted; query rewriter rules" in text
    assert "<td>description</td><td>keyword</td><td>keyword</td><td>1</td>" in text
    assert "<td>tags:bm25</td><td>bm25</td>" in text
    assert "chosen at the first add()" in Recommender()._repr_html_()
