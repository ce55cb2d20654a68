"""``Recommender.search_many``: the same hits as a loop of ``search``, with one encoder call."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newwave import Recommender, Track
from newwave.errors import EmptyQueryError, InvalidInputError
from newwave.types import Hit
from tests.conftest import KeywordEncoder

WORDS = [
    "piano", "guitar", "drums", "vocals", "sad", "happy", "loud", "quiet", "jazz", "rock",
    "ballad", "techno", "strings", "violin", "bass", "female", "male", "slow", "fast", "lofi",
]  # fmt: skip
TEMPLATES = ["{} {}", "{} music without {}", "a {} song with {}", "no {} but {}", "{} and {}"]


def _catalogue() -> list[Track]:
    tracks = []
    for i in range(60):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(1 + i % 4)]
        tracks.append(
            Track(
                id=f"t{i:02d}",
                description=" ".join(words) + (" with vocals" if i % 5 == 0 else ""),
                tags=tuple(words[:2]) if i % 6 else (),  # some tracks lack tags...
                metadata={"year": 1980 if i % 6 == 0 else 1990 + i % 30},
            )
        )
    return tracks


def _recommender(fuser: str) -> tuple[Recommender, KeywordEncoder]:
    encoder = KeywordEncoder(dim=32)
    rec = Recommender(fields={"description": encoder, "tags": ["bm25", encoder]}, fuser=fuser)
    rec.add(_catalogue())
    return rec, encoder


REC, ENCODER = _recommender("weighted")

queries = st.lists(
    st.builds(lambda t, a, b: t.format(a, b), st.sampled_from(TEMPLATES),
              st.sampled_from(WORDS), st.sampled_from(WORDS)),
    min_size=1,
    max_size=4,
)  # fmt: skip


def _ranked(hits: list[Hit]) -> list[tuple[str, float, dict[str, float]]]:
    return [(h.track.id, h.score, h.scores) for h in hits]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=queries,
    k=st.integers(1, 12),
    rewrite=st.booleans(),
    where=st.sampled_from([None, {"year": {">=": 2005}}, {"year": 1850}]),  # ...not these
)
def test_search_many_ranks_as_a_loop_of_search(
    texts: list[str], k: int, rewrite: bool, where: dict[str, Any] | None
) -> None:
    many = REC.search_many(texts, k=k, rewrite=rewrite, where=where)
    assert len(many) == len(texts)
    for text, hits in zip(texts, many, strict=True):
        one = REC.search(text, k=k, rewrite=rewrite, where=where)
        assert _ranked(hits) == _ranked(one)
        assert hits.query == one.query


def test_search_many_embeds_all_queries_in_one_encoder_call() -> None:
    texts = [f"{a} {b}" for a in WORDS[:5] for b in WORDS[5:10]]  # 25 queries
    ENCODER.calls.clear()
    REC.search_many(texts, k=3)
    query_calls = [c for c in ENCODER.calls if c[1] == "query"]
    assert query_calls == [("text", "query", 25)]  # both channels share one embedding


def test_search_many_with_a_joint_index_matches_search() -> None:
    pytest.importorskip("torch")
    from newwave.fusion.mlp import MLPFuser, MLPFuserConfig

    encoder = KeywordEncoder(dim=16)
    config = MLPFuserConfig(
        fields=("description", "tags"),
        input_dims={"description": 16, "tags": 16},
        hidden_dims=(8,),
        output_dim=8,
    )
    fuser = MLPFuser.initialised(config, seed=1, device="cpu")
    rec = Recommender(fields={"description": encoder, "tags": encoder}, fuser=fuser)
    rec.add(_catalogue())
    texts = ["piano without vocals", "loud rock", "quiet jazz ballad"]
    many = rec.search_many(texts, k=5)
    for text, hits in zip(texts, many, strict=True):
        one = rec.search(text, k=5)
        assert [h.track.id for h in hits] == [h.track.id for h in one]
        # the network embeds a batch of queries to within float32 rounding of one at a time
        assert [h.score for h in hits] == pytest.approx([h.score for h in one], abs=1e-6)
        assert "joint" in hits[0].scores


def test_search_many_checks_its_input() -> None:
    assert REC.search_many([], k=3) == []
    with pytest.raises(InvalidInputError, match="sequence of str"):
        REC.search_many("piano", k=3)
    with pytest.raises(EmptyQueryError, match=r"query 1"):
        REC.search_many(["piano", "  "], k=3)
    with pytest.raises(InvalidInputError, match=r"query 0"):
        REC.search_many([3, "piano"], k=3)  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="k must be"):
        REC.search_many(["piano"], k=0)


def test_search_many_keeps_each_querys_own_named_filter() -> None:
    tracks = [
        Track(id="daft", artist="Daft Punk", title="One More Time", tags=("house", "electronic")),
        Track(id="synths", artist="Someone Else", title="Night Drive", tags=("electronic",)),
        Track(id="ramones", artist="Ramones", title="Blitzkrieg Bop", tags=("punk", "rock")),
    ]
    rec = Recommender(fields={"tags": "bm25"})
    rec.add(tracks)
    texts = ["songs by daft punk", "electronic", "songs by ramones", "punk rock"]
    many = rec.search_many(texts, k=3)
    assert [h.track.id for h in many[0]] == ["daft"]  # filtered by its own artist only
    assert [h.track.id for h in many[2]] == ["ramones"]
    for text, hits in zip(texts, many, strict=True):
        assert _ranked(hits) == _ranked(rec.search(text, k=3))
