"""newwave index --prune, --option, --tag-separator; folder names matched by their words; track
ids given as audio file paths; search's parsed query, --format and --ignore-case."""

from __future__ import annotations

import csv
import importlib
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newwave.cli import main
from newwave.recommender import Recommender

KEYWORD = ["--field", "description=keyword"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def fail(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(list(argv))
    err = capsys.readouterr().err
    assert status == 1, err
    assert len(err.splitlines()) == 1, err
    return err


def write_wav(path: Path, seconds: float = 0.05, hz: float = 440.0, **tags: str) -> Path:
    """A tiny mono 16-bit WAV, with ID3 frames (title, artist, album) when given."""
    rate = 8000
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    if tags:
        id3: Any = importlib.import_module("mutagen.id3")  # mutagen's own hints are partial
        audio: Any = importlib.import_module("mutagen.wave").WAVE(path)
        audio.add_tags()
        frames = {"title": id3.TIT2, "artist": id3.TPE1, "album": id3.TALB}
        for key, text in tags.items():
            audio.tags.add(frames[key](encoding=3, text=[text]))
        audio.save()
    return path


def catalogue(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


ROWS: list[dict[str, object]] = [
    {"id": "a", "description": "slow sad piano ballad", "artist": "Mara Lind"},
    {"id": "b", "description": "loud techno for the club", "artist": "Kraft"},
    {"id": "c", "description": "acoustic folk with harmonica", "artist": "Émile Østergård"},
]


@pytest.fixture
def library(tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]) -> Path:
    lib = tmp_path / "lib"
    run(capsys, "index", str(catalogue(tmp_path / "t.jsonl", ROWS)), str(lib), *KEYWORD)
    return lib


# -- --prune ------------------------------------------------------------------------------------


def test_prune_removes_what_the_catalogue_no_longer_lists_in_the_same_transaction(
    tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [ROWS[0], {"id": "d", "description": "a choir singing a hymn"}]
    out = run(capsys, "index", str(catalogue(tmp_path / "t.jsonl", rows)), str(library), "--prune")
    assert "1 new, 0 changed, 1 unchanged, 2 pruned" in out
    rec = Recommender.load(library)
    assert sorted(rec.ids()) == ["a", "d"]
    hits = rec.search("loud techno for the club", k=3)
    assert "b" not in [hit.track.id for hit in hits]


def test_without_prune_nothing_is_removed(
    tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "index", str(catalogue(tmp_path / "t.jsonl", ROWS[:1])), str(library))
    assert "pruned" not in out
    assert len(Recommender.load(library)) == 3


def test_add_with_remove_is_one_transaction_and_checks_its_ids_first(
    library: Path, keyword_plugin: None
) -> None:
    from newwave import InvalidInputError, Track, UnknownTrackError

    rec = Recommender.load(library)
    store = rec._library.store
    seq = store.seq
    rec.add([Track(id="d", description="a hymn")], remove=["c"])
    assert store.seq == seq + 1
    assert sorted(rec.ids()) == ["a", "b", "d"]
    assert [hit.track.id for hit in rec.search("acoustic folk with harmonica")] != ["c"]
    assert "c" not in {hit.track.id for hit in Recommender.load(library).search("folk", k=5)}
    rec.add([Track(id="c", description="acoustic folk with harmonica")], remove=["d"])
    with pytest.raises(UnknownTrackError, match="'zz'"):
        rec.add([Track(id="d", description="new")], remove=["zz"])
    with pytest.raises(InvalidInputError, match="both added and removed"):
        rec.add([Track(id="a", description="new")], remove=["a"])
    assert sorted(rec.ids()) == ["a", "b", "c"]
    rec.add([], remove=["b"])
    assert sorted(rec.ids()) == ["a", "c"]


def test_prune_in_a_folder_keeps_the_tracks_of_other_sources(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "music"
    write_wav(folder / "one.wav", title="One")
    gone = write_wav(folder / "sub" / "two.wav", title="Two")
    other = tmp_path / "other"
    write_wav(other / "three.wav", title="Three")
    lib = tmp_path / "lib"
    fields = ["--field", "title=keyword"]
    run(capsys, "index", str(folder), str(lib), *fields)
    run(capsys, "index", str(other), str(lib))
    gone.unlink()
    out = run(capsys, "index", str(folder), str(lib), "--prune")
    assert "0 new, 0 changed, 1 unchanged, 1 pruned" in out
    assert sorted(Recommender.load(lib).ids()) == ["one.wav", "three.wav"]


# -- track ids from audio paths ------------------------------------------------------------------


def test_a_folder_track_is_named_by_its_absolute_or_relative_path(
    tmp_path: Path,
    keyword_plugin: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "music"
    first = write_wav(folder / "a" / "low.wav", hz=220.0)
    write_wav(folder / "b" / "high.wav", hz=1760.0)
    write_wav(folder / "b" / "low again.wav", hz=230.0)
    lib = tmp_path / "lib"
    run(capsys, "index", str(folder), str(lib), "--field", "audio=keyword")
    result = json.loads(run(capsys, "similar", str(lib), str(first), "-k", "1", "--json"))
    assert result["track_id"] == "a/low.wav"
    assert result["hits"][0]["id"] == "b/low again.wav"
    monkeypatch.chdir(folder / "b")
    run(capsys, "remove", str(lib), "../a/low.wav")
    assert "a/low.wav" not in Recommender.load(lib)
    # no longer a track: the file is searched by sound, as any file outside the library
    result = json.loads(run(capsys, "similar", str(lib), str(first), "-k", "1", "--json"))
    assert result["file"] == str(first)
    assert result["hits"][0]["id"] == "b/low again.wav"
    err = fail(capsys, "similar", str(lib), str(folder / "a" / "gone.wav"))
    assert "nor one whose audio file it is" in err


# -- --option -----------------------------------------------------------------------------------


def test_encoder_options_per_field(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = catalogue(tmp_path / "t.jsonl", [{**r, "tags": ["x"]} for r in ROWS])
    lib = tmp_path / "lib"
    argv = ["index", str(path), str(lib), "--field", "description=keyword"]
    argv += ["--field", "tags=bm25,keyword", "--option", "description.dim=16"]
    run(capsys, *argv, "--option", "tags:keyword.dim=8", "--option", "description.batch_size=2")
    info = json.loads(run(capsys, "info", str(lib), "--json"))
    assert info["fields"]["description"]["dim"] == 16
    assert info["fields"]["tags:keyword"]["dim"] == 8
    run(capsys, *argv, "--option", "tags:keyword.dim=8")  # repeating kept options is fine
    err = fail(capsys, *argv, "--option", "tags:keyword.dim=4")
    assert "was made with tags:keyword.dim 8; --option cannot change" in err
    err = fail(capsys, *argv, "--option", "description.batch_size=2")
    assert "the description encoder does not keep the option batch_size" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--option", "dim=16"], "--option takes FIELD.OPTION=VALUE"),
        (["--option", "description.dim"], "--option takes FIELD.OPTION=VALUE"),
        (["--option", "audio.model=/m"], "no --field audio=ENCODER is given"),
        (["--option", "tags.dim=8"], "field 'tags' has several encoders; name one"),
        (["--option", "description.nope=1"], "unexpected keyword argument 'nope'"),
        (["--option", "description.dim=8", "--option", "description.dim=9"], "given twice"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path,
    keyword_plugin: None,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    path = catalogue(tmp_path / "t.jsonl", ROWS)
    fields = ["--field", "description=keyword", "--field", "tags=bm25,keyword"]
    err = fail(capsys, "index", str(path), str(tmp_path / "lib"), *fields, *options)
    assert message in err
    assert not (tmp_path / "lib").exists()


# -- --tag-separator ----------------------------------------------------------------------------


def test_tag_separator(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text('id,tags\na,"rock, indie; lo-fi;jangle"\n', encoding="utf-8")
    lib = tmp_path / "lib"
    run(capsys, "index", str(path), str(lib), "--field", "tags=keyword", "--tag-separator", ";")
    assert Recommender.load(lib).get("a").tags == ("rock, indie", "lo-fi", "jangle")
    err = fail(capsys, "index", str(tmp_path), str(lib), "--tag-separator", ";")
    assert "apply to a catalogue file, not a folder" in err


# -- search output ------------------------------------------------------------------------------


def test_search_shows_what_the_rewriter_understood(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "search", str(library), "sad piano without vocals", "-k", "2")
    first = out.splitlines()[0]
    assert first.startswith("understood: searching for 'sad piano'")
    assert "unwanted: vocals (vocals)" in first
    data = json.loads(run(capsys, "search", str(library), "sad piano without vocals", "--json"))
    assert data["parsed"]["text"] == "sad piano"
    assert data["parsed"]["unwanted"] == [{"kind": "vocals", "value": "vocals"}]
    assert data["parsed"]["rewriter"] == "rules"


def test_per_channel_ranks_tell_tied_fused_scores_apart(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"id": "p1", "description": "piano", "tags": ["piano", "sad"]},
        {"id": "p2", "description": "piano piano rain", "tags": ["sad", "piano", "slow"]},
        {"id": "p3", "description": "guitar", "tags": ["folk"]},
    ]
    lib = tmp_path / "lib"
    fields = ["--field", "description=keyword", "--field", "tags=bm25,keyword"]
    run(capsys, "index", str(catalogue(tmp_path / "t.jsonl", rows)), str(lib), *fields)
    data = json.loads(run(capsys, "search", str(lib), "piano", "--json"))
    for hit in data["hits"]:
        assert set(hit["ranks"]) == set(hit["scores"])
        assert all(rank >= 1 for rank in hit["ranks"].values())
    ranks = [hit["ranks"]["tags:bm25"] for hit in data["hits"] if "tags:bm25" in hit["ranks"]]
    assert sorted(ranks) == list(range(1, len(ranks) + 1))
    table = run(capsys, "search", str(lib), "piano")
    assert " #1" in table
    assert " #2" in table


def test_csv_and_m3u_formats(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "music"
    write_wav(folder / "x.wav", title="Harbour Lights", artist="Mara Lind")
    write_wav(folder / "y.wav", title="Thunder", artist="Kraft")
    lib = tmp_path / "lib"
    run(capsys, "index", str(folder), str(lib), "--field", "title=keyword")
    playlist = run(capsys, "search", str(lib), "harbour lights", "--format", "m3u", "-k", "1")
    assert playlist.splitlines() == [
        "#EXTM3U",
        "#EXTINF:-1,Mara Lind - Harbour Lights",
        str((folder / "x.wav").resolve()),
    ]
    text = run(capsys, "search", str(lib), "harbour lights", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (rows[0]["id"], rows[0]["artist"], rows[0]["rank_title"]) == ("x.wav", "Mara Lind", "1")
    assert float(rows[0]["score_title"]) > 0
    err = fail(capsys, "search", str(lib), "thunder", "--json", "--format", "csv")
    assert "--json and --format csv disagree" in err


def test_m3u_leaves_out_hits_without_audio_with_a_warning(
    tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fail(capsys, "search", str(library), "piano", "--format", "m3u")
    assert "none of the hits has one" in err
    song = write_wav(tmp_path / "song.wav")
    rows = [{**ROWS[0], "audio": str(song)}, ROWS[1]]
    run(capsys, "index", str(catalogue(tmp_path / "t.jsonl", rows)), str(library))
    assert main(["search", str(library), "sad piano club", "-k", "2", "--format", "m3u"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["#EXTM3U", "#EXTINF:-1,Mara Lind", str(song)]
    assert err == "newwave: warning: 1 of 2 hits have no audio file and are not in the playlist\n"


# -- --ignore-case ------------------------------------------------------------------------------


def test_where_ignoring_case(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--where", '{"artist": "mara lind"}']
    assert json.loads(run(capsys, "search", str(library), "piano", *where, "--json"))["hits"] == []
    data = json.loads(
        run(capsys, "search", str(library), "piano", *where, "--ignore-case", "--json")
    )
    assert [hit["id"] for hit in data["hits"]] == ["a"]
    assert data["where"] == {"artist": {"~=": "mara lind"}}
    where = ["--where", '{"artist": ["ÉMILE ØSTERGÅRD", "nobody"]}', "--ignore-case"]
    data = json.loads(run(capsys, "similar", str(library), "a", *where, "--json"))
    assert [hit["id"] for hit in data["hits"]] == ["c"]
    err = fail(capsys, "search", str(library), "piano", "--ignore-case")
    assert "--ignore-case applies to --where" in err


def test_an_unknown_option_of_a_built_in_encoder_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = catalogue(tmp_path / "t.jsonl", ROWS)
    argv = ["index", str(path), str(tmp_path / "lib"), "--field", "description=minilm"]
    err = fail(capsys, *argv, "--option", "description.batch=8")
    assert "encoder 'minilm': unknown option 'batch'; it accepts: model, device, batch_size" in err
