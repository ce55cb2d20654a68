"""Query by audio: ``Recommender.search_audio``, ``newwave search --audio`` and ``newwave
similar LIB FILE``, with a tiny CLAP built from configs, the model-free ``keyword`` encoder and
musicnn's real weights on the synthesised clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import newwave
from newwave import Field, Recommender, Track
from newwave.cli import main
from newwave.encoders.clap import ClapEncoder
from newwave.encoders.musicnn import MusicnnEncoder, packaged_checkpoint
from newwave.errors import (
    AudioDecodeError,
    InvalidInputError,
    MissingFileError,
    NoAudioFieldError,
    UnsupportedModalityError,
)

from .conftest import KeywordEncoder
from .encoders.test_clap import _music, build_tiny_clap

SR = 48000
CLIPS = Path(newwave.__file__).parent / "data" / "synth_clips"


@pytest.fixture(scope="module")
def clap_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="module")
def clap(clap_model: Path) -> ClapEncoder:
    return ClapEncoder(model=clap_model, device="cpu")


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five 4-second songs of changing tones, as WAV files."""
    folder = tmp_path_factory.mktemp("songs")
    paths = {}
    for i in range(5):
        paths[f"s{i}"] = folder / f"s{i}.wav"
        sf.write(paths[f"s{i}"], _music(4, seed=i), SR)
    return paths


def _tracks(songs: dict[str, Path]) -> list[Track]:
    return [
        Track(
            id=i,
            audio=str(path),
            description=f"song number {i}",
            metadata={"side": "a" if n % 2 == 0 else "b"},
        )
        for n, (i, path) in enumerate(songs.items())
    ]


class Counting(ClapEncoder):
    """The tiny CLAP, counting the clips it embeds."""

    embedded = 0

    def encode_audio(self, audio: Any, **options: Any) -> Any:
        Counting.embedded += len(audio)
        return super().encode_audio(audio, **options)


@pytest.fixture(scope="module")
def clap_rec(clap: ClapEncoder, songs: dict[str, Path]) -> Recommender:
    """The songs, with a text field and two audio fields sharing the tiny CLAP."""
    rec = Recommender({"description": "bm25", "audio": clap, "again": Field(clap, "audio")})
    rec.add(_tracks(songs))
    return rec


def test_a_clip_finds_its_track_through_the_audio_fields_only(
    clap_rec: Recommender, songs: dict[str, Path]
) -> None:
    hits = clap_rec.search_audio(str(songs["s3"]), k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].track.id == "s3"
    assert hits[0].scores["audio"] == pytest.approx(1.0, abs=1e-5)
    assert {n for h in hits for n in h.scores} == {"audio", "again"}  # the text field took no part
    assert hits.query is None
    # the same clip as samples: the same ranking; a Path works as a str does
    samples, rate = sf.read(songs["s3"], dtype="float32")
    assert [h.track.id for h in clap_rec.search_audio((samples, rate), k=3)] == [
        h.track.id for h in hits
    ]
    assert [h.track.id for h in clap_rec.search_audio(songs["s3"], k=3)] == [
        h.track.id for h in hits
    ]


def test_the_clip_is_embedded_once_per_encoder(clap_model: Path, songs: dict[str, Path]) -> None:
    encoder = Counting(model=clap_model, device="cpu")
    rec = Recommender({"audio": encoder, "again": Field(encoder, "audio")})
    rec.add(_tracks(songs))
    Counting.embedded = 0
    rec.search_audio(str(songs["s1"]), k=2)
    assert Counting.embedded == 1  # two channels, one encoder: one embedding


def test_where_k_and_depth(keyword_encoder: Any, songs: dict[str, Path]) -> None:
    rec = Recommender({"audio": keyword_encoder})
    rec.add(_tracks(songs))
    hits = rec.search_audio(str(songs["s0"]), 5, where={"side": "b"})
    assert {h.track.id for h in hits} == {"s1", "s3"}
    assert hits[0].score >= hits[1].score
    assert len(rec.search_audio(str(songs["s0"]), k=2, depth=2)) == 2
    with pytest.raises(InvalidInputError, match="depth"):
        rec.search_audio(str(songs["s0"]), k=3, depth=2)
    with pytest.raises(InvalidInputError, match="k must be"):
        rec.search_audio(str(songs["s0"]), k=0)


def test_errors(clap_rec: Recommender, songs: dict[str, Path], tmp_path: Path) -> None:
    rec = clap_rec
    with pytest.raises(MissingFileError, match="no such file"):
        rec.search_audio(str(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError, match=r"bad\.wav"):
        rec.search_audio(str(bad))
    with pytest.raises(AudioDecodeError, match="not a regular file"):
        rec.search_audio(str(tmp_path))
    with pytest.raises(InvalidInputError, match="sample rate"):
        rec.search_audio(np.zeros(SR, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="NaN"):
        rec.search_audio((np.full(SR, np.nan, dtype=np.float32), SR))
    text_only = Recommender({"description": "bm25"})
    text_only.add(_tracks(songs))
    with pytest.raises(NoAudioFieldError, match=r"no audio field.*description \(text\)") as exc:
        text_only.search_audio(str(songs["s0"]))
    assert isinstance(exc.value, UnsupportedModalityError)
    with pytest.raises(NoAudioFieldError, match="none yet"):
        Recommender().search_audio(str(songs["s0"]))


def test_a_library_searched_by_audio_after_loading(
    clap_rec: Recommender, songs: dict[str, Path], tmp_path: Path
) -> None:
    before = clap_rec.search_audio(str(songs["s2"]), k=5)
    clap_rec.save(tmp_path / "lib")
    loaded = Recommender.load(tmp_path / "lib")
    after = loaded.search_audio(str(songs["s2"]), k=5)
    assert [h.track.id for h in after] == [h.track.id for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before])


def test_tiny_clap_windows_find_the_part_of_a_long_track(clap: ClapEncoder, tmp_path: Path) -> None:
    rate = 48000
    parts = [_music(10, seed=s) for s in range(6)]
    tracks = {"a": parts[0:3], "b": parts[3:5], "c": parts[5:6]}
    for name, pieces in tracks.items():
        sf.write(tmp_path / f"{name}.wav", np.concatenate(pieces), rate)
    rec = Recommender({"audio": clap, "parts": Field(clap, "audio", windows=True)}, fuser="rrf")
    rec.add([Track(id=n, audio=str(tmp_path / f"{n}.wav")) for n in tracks])
    hits = rec.search_audio((parts[1], rate), k=3)  # the middle ten seconds of "a"
    assert hits[0].track.id == "a"
    assert hits[0].scores["parts"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0].scores["audio"] < hits[0].scores["parts"]
    # a text query searches the windows too (CLAP embeds text in the same space)
    assert len(rec.search("jazz trio at night", k=3)) == 3


# -- musicnn, real weights --------------------------------------------------------------------


@pytest.mark.skipif(packaged_checkpoint() is None, reason="the musicnn weights are not installed")
def test_musicnn_a_snippet_finds_its_clip() -> None:
    from newwave.audio import load_audio

    names = ["piano-fast-1", "drums-fast-1", "flute-slow-2", "violin-fast-3"]
    rec = Recommender({"audio": MusicnnEncoder(device="cpu")})
    rec.add([Track(id=n, audio=str(CLIPS / f"{n}.ogg")) for n in names])
    for name in names:
        snippet = load_audio(CLIPS / f"{name}.ogg", sample_rate=16000, offset=1.3, duration=4.0)
        hits = rec.search_audio((snippet, 16000), k=2)
        assert hits[0].track.id == name
        assert hits[0].scores["audio"] > hits[1].scores["audio"]


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def library(
    songs: dict[str, Path], tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A library of the songs, their audio and descriptions embedded by ``keyword``."""
    catalogue = tmp_path / "songs.jsonl"
    catalogue.write_text("".join(t.model_dump_json() + "\n" for t in _tracks(songs)))
    path = tmp_path / "library"
    fields = ["--field", "audio=keyword", "--field", "description=keyword"]
    assert main(["index", str(catalogue), str(path), *fields]) == 0
    capsys.readouterr()
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def test_cli_search_by_audio(
    library: Path, songs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    clip = str(songs["s4"])
    result = json.loads(_run(capsys, "search", str(library), "--audio", clip, "-k", "2", "--json"))
    assert result["audio"] == clip
    assert result["hits"][0]["id"] == "s4"
    assert set(result["hits"][0]["scores"]) == {"audio"}
    out = _run(capsys, "search", str(library), "--audio", clip, "--where", '{"side": "b"}')
    header, *rows = out.splitlines()
    assert header.split() == ["#", "id", "score", "audio"]
    assert {row.split()[1] for row in rows} == {"s1", "s3"}


def test_cli_similar_to_a_file_outside_the_library(
    library: Path, songs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside.wav"
    sf.write(outside, _music(4, seed=3)[: 3 * SR], SR)  # the first 3 s of s3
    result = json.loads(_run(capsys, "similar", str(library), str(outside), "-k", "1", "--json"))
    assert result["file"] == str(outside)
    assert [h["id"] for h in result["hits"]] == ["s3"]
    # a track id is still a track id
    result = json.loads(_run(capsys, "similar", str(library), "s3", "-k", "1", "--json"))
    assert result["track_id"] == "s3"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "{lib}"], "either a QUERY in words or --audio FILE"),
        (["search", "{lib}", "piano", "--audio", "{clip}"], "either a QUERY"),
        (["search", "{lib}", "--audio", "{tmp}/nope.wav"], "no such file"),
        (["search", "{lib}", "--audio", "{clip}", "--user", "u1"], "--audio searches by sound"),
        (["similar", "{lib}", "{tmp}/nope.wav"], "no track with id"),
    ],
)
def test_cli_errors(
    argv: list[str],
    message: str,
    library: Path,
    songs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {"lib": str(library), "clip": str(songs["s0"]), "tmp": str(tmp_path)}
    argv = [a.format(**paths) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("newwave: error: ")
    assert message in err


class AudioOnly(KeywordEncoder):
    """``keyword`` for audio only, as musicnn is."""

    name = "audio-only"
    modalities = frozenset({"audio"})


def test_a_text_search_skips_the_fields_whose_encoder_embeds_no_text(
    songs: dict[str, Path],
) -> None:
    rec = Recommender({"description": "bm25", "audio": AudioOnly()})
    rec.add(_tracks(songs))
    hits = rec.search("song number s2", k=2)
    assert hits[0].track.id == "s2"
    assert {n for h in hits for n in h.scores} == {"description"}
    assert rec.search_audio(str(songs["s2"]), k=1)[0].track.id == "s2"


@pytest.mark.skipif(packaged_checkpoint() is None, reason="the musicnn weights are not installed")
def test_the_audio_demo_answers_through_musicnn_tags_and_sound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--audio", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Tagged and indexed 30 clips" in out
    answers = {
        block.splitlines()[0]: [line.split()[1] for line in block.splitlines()[1::2]]
        for block in out.split("\n> ")[1:]
    }
    assert set(answers["fast drums"]) <= {"drums-fast-1", "drums-fast-2", "drums-fast-3"}
    assert all(i.startswith("flute-") for i in answers["a gentle flute melody"])
    assert all(i.startswith("violin-") for i in answers["violin strings"])
    (by_sound,) = [ids for query, ids in answers.items() if "by audio" in query]
    assert by_sound[0] == "guitar-fast-2"
    assert "musicnn tags: drums" in out
