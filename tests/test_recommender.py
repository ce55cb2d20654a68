"""The Recommender through the public API, with the fake keyword encoder plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from newwave import (
    EmptyQueryError,
    InvalidInputError,
    MissingFileError,
    Recommender,
    Track,
    UnknownTrackError,
)

from .conftest import KeywordEncoder

TRACKS = [
    Track(
        id="rain",
        title="Rain on Glass",
        description="a slow sad piano ballad",
        tags=["piano", "ballad"],
        lyrics="the rain keeps falling on the glass",
    ),
    Track(id="drive", title="Night Drive", description="fast synthwave with neon synths"),
    Track(id="storm", description="loud metal with heavy guitar", tags=["metal", "guitar"]),
]


@pytest.fixture
def rec(keyword_plugin: None, retriever_kwargs: dict[str, Any]) -> Recommender:
    rec = Recommender(
        fields={"description": "keyword", "tags": "keyword", "lyrics": "keyword"},
        **retriever_kwargs,
    )
    rec.add(TRACKS)
    return rec


def test_search_ranks_and_explains(rec: Recommender) -> None:
    hits = rec.search("sad piano ballad", k=3)
    assert hits[0].track.id == "rain"
    assert [h.rank for h in hits] == [1, 2, 3]
    assert set(hits[0].scores) == {"description", "tags", "lyrics"}
    assert hits[0].scores["description"] > 0.5
    assert "lyrics" not in next(h for h in hits if h.track.id == "drive").scores


def test_a_track_without_a_field_is_not_penalised(
    keyword_plugin: None, retriever_kwargs: dict[str, Any]
) -> None:
    rec = Recommender(fields={"description": "keyword", "lyrics": "keyword"}, **retriever_kwargs)
    rec.add(
        [
            Track(id="lullaby", description="calm harp music for sleep"),  # instrumental
            Track(id="rock", description="loud rock music", lyrics="calm down and sleep"),
        ]
    )
    hits = rec.search("calm harp music for sleep", k=2)
    assert [h.track.id for h in hits] == ["lullaby", "rock"]
    assert set(hits[0].scores) == {"description"}


def test_fields_share_one_encoder_instance(rec: Recommender) -> None:
    encoders = rec.fields
    assert encoders["description"] is encoders["tags"] is encoders["lyrics"]


def test_query_is_embedded_once_per_encoder(rec: Recommender) -> None:
    encoder = rec.fields["description"]
    assert isinstance(encoder, KeywordEncoder)
    encoder.calls.clear()
    rec.search("piano")
    assert encoder.calls == [("text", "query", 1)]


def test_default_fields_come_from_the_tracks(
    keyword_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("newwave.search.defaults.DEFAULT_TEXT_ENCODER", "keyword")
    monkeypatch.setattr("newwave.search.defaults.DEFAULT_TAGS_ENCODER", "keyword")
    rec = Recommender()
    rec.add([Track(id="a", description="calm", tags=["ambient"])])
    assert list(rec.config.fields) == ["description", "tags:bm25", "tags:keyword"]
    assert rec.fuser.get_config() == {"weights": {"tags:bm25": 1.0}}
    with pytest.raises(InvalidInputError, match="no description, tags, lyrics or audio"):
        Recommender().add([Track(id="b", title="only a title")])


def test_replacing_a_track_updates_every_field(rec: Recommender) -> None:
    rec.add([Track(id="rain", description="aggressive drum and bass")])
    assert len(rec) == 3
    assert rec.get("rain").lyrics is None
    hit = next(h for h in rec.search("aggressive drum", k=3) if h.track.id == "rain")
    assert set(hit.scores) == {"description"}
    assert hit.scores["description"] == pytest.approx(
        2 / (2**0.5 * 4**0.5), abs=1e-6
    )  # 2 shared words


def test_remove(rec: Recommender) -> None:
    rec.remove(["storm"])
    assert "storm" not in rec
    assert all(h.track.id != "storm" for h in rec.search("metal guitar"))
    with pytest.raises(UnknownTrackError, match="'storm'"):
        rec.remove(["storm"])
    with pytest.raises(UnknownTrackError):
        rec.get("storm")


@pytest.mark.parametrize(
    ("query", "error"), [("", EmptyQueryError), ("   ", EmptyQueryError), (None, InvalidInputError)]
)
def test_bad_queries(rec: Recommender, query: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        rec.search(query)  # type: ignore[arg-type]


def test_bad_configuration(keyword_plugin: None) -> None:
    with pytest.raises(InvalidInputError, match="unknown field 'mood'"):
        Recommender(fields={"mood": "keyword"})
    with pytest.raises(InvalidInputError, match="fields is empty"):
        Recommender(fields={})
    with pytest.raises(InvalidInputError, match="add\\(\\) takes a list"):
        Recommender(fields={"title": "keyword"}).add(TRACKS[0])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="appears twice"):
        Recommender(fields={"title": "keyword"}).add([TRACKS[0], TRACKS[0]])


def test_save_and_load(rec: Recommender, tmp_path: Path) -> None:
    rec.save(tmp_path / "lib")
    loaded = Recommender.load(tmp_path / "lib")
    assert len(loaded) == 3
    assert loaded.config.fields == rec.config.fields
    assert loaded.config.fuser == rec.config.fuser
    before, after = rec.search("heavy guitar"), loaded.search("heavy guitar")
    assert [h.track for h in after] == [h.track for h in before]
    assert [h.scores for h in after] == [h.scores for h in before]


def test_unchanged_tracks_are_not_encoded_again(rec: Recommender, tmp_path: Path) -> None:
    encoder = rec.fields["description"]
    assert isinstance(encoder, KeywordEncoder)
    encoder.calls.clear()
    rec.add(TRACKS)
    assert encoder.calls == []

    changed = TRACKS[0].model_copy(update={"lyrics": "the rain has stopped"})
    rec.add([changed, *TRACKS[1:]])
    assert encoder.calls == [("text", "document", 1)]  # one field of one track
    assert rec.search("the rain has stopped", k=1)[0].track.id == "rain"

    rec.save(tmp_path / "lib")
    loaded = Recommender.load(tmp_path / "lib")
    reloaded_encoder = loaded.fields["description"]
    assert isinstance(reloaded_encoder, KeywordEncoder)
    loaded.add([changed, *TRACKS[1:]])
    assert reloaded_encoder.calls == []


def test_a_failed_add_changes_nothing(keyword_plugin: None, tmp_path: Path) -> None:
    rec = Recommender(fields={"description": "keyword", "audio": "keyword"})
    rec.add([Track(id="a", description="first")])
    with pytest.raises(MissingFileError):
        rec.add(
            [
                Track(id="a", description="replaced"),
                Track(id="b", description="new", audio=str(tmp_path / "missing.wav")),
            ]
        )
    assert len(rec) == 1
    assert rec.get("a").description == "first"
    assert [h.track.id for h in rec.search("new replaced", k=5)] == ["a"]


def test_depth_must_cover_k(rec: Recommender) -> None:
    with pytest.raises(InvalidInputError, match="depth must be an integer >= k"):
        rec.search("piano", k=5, depth=2)


def test_track_metadata_must_be_json(tmp_path: Path) -> None:
    track = Track(id="a", metadata={"year": 2011, "moods": ["calm"], "live": False})
    assert Track.model_validate_json(track.model_dump_json()) == track
    with pytest.raises(ValueError, match="metadata"):
        Track(id="b", metadata={"when": object()})


def test_default_fields_include_audio_when_its_encoder_loads(
    keyword_plugin: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import numpy as np
    import soundfile

    path = tmp_path / "tone.wav"
    soundfile.write(path, np.sin(np.arange(8000) / 5.0).astype(np.float32), 8000)
    monkeypatch.setattr("newwave.search.defaults.DEFAULT_TEXT_ENCODER", "keyword")
    monkeypatch.setattr("newwave.search.defaults.DEFAULT_AUDIO_ENCODER", "keyword")
    rec = Recommender()
    rec.add([Track(id="a", description="a tone", audio=str(path))])
    assert list(rec.config.fields) == ["description", "audio"]


def test_default_fields_leave_audio_out_with_a_warning_when_clap_cannot_load(
    keyword_plugin: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("newwave.search.defaults.DEFAULT_TEXT_ENCODER", "keyword")
    rec = Recommender()
    with pytest.warns(UserWarning, match="audio is not indexed: the 'clap' encoder cannot load"):
        rec.add([Track(id="a", description="a tone", audio=str(tmp_path / "tone.wav"))])
    assert list(rec.config.fields) == ["description"]


def test_add_reports_what_it_encoded_and_loads_from_a_relative_path(
    rec: Recommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rec.field_counts == {"description": 3, "tags": 2, "lyrics": 1}
    assert rec.add(TRACKS) == {"description": 0, "tags": 0, "lyrics": 0}
    changed = TRACKS[1].model_copy(update={"description": "slow jazz"})
    assert rec.add([changed]) == {"description": 1, "tags": 0, "lyrics": 0}
    monkeypatch.chdir(tmp_path)
    rec.save("lib")
    assert len(Recommender.load("lib")) == 3


def test_the_batch_size_does_not_change_the_content_hash(keyword_plugin: None) -> None:
    encoder = KeywordEncoder(batch_size=2)
    first = Recommender(fields={"description": encoder})
    first.add(TRACKS)
    encoder.batch_size = 7
    assert first.add(TRACKS) == {"description": 0}


def test_a_too_long_document_is_named_by_track_and_field(rec: Recommender) -> None:
    encoder = rec.fields["description"]
    assert isinstance(encoder, KeywordEncoder)
    encoder.max_text_chars = 20
    with pytest.raises(
        InvalidInputError, match=r"track 'long', field 'description': text 0 has 30"
    ):
        rec.add([Track(id="long", description="a" * 30)])
    assert "long" not in rec


def test_a_loaded_library_shares_one_encoder_between_fields_that_name_the_same(
    keyword_plugin: None, tmp_path: Path
) -> None:
    title = KeywordEncoder(dim=32)
    rec = Recommender({"description": "keyword", "tags": ["bm25", "keyword"], "title": title})
    rec.add([Track(id="a", title="A", description="soft piano", tags=["piano"])])
    rec.save(tmp_path / "lib")
    fields = Recommender.load(tmp_path / "lib").fields
    assert fields["description"] is fields["tags:keyword"]  # one model, one query embedding
    assert fields["title"] is not fields["description"]  # other options: its own
