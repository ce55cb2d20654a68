"""newwave.readers: catalogue files (CSV, TSV, JSONL, Parquet) and music folders into Tracks."""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from newwave import readers
from newwave.errors import InvalidInputError, MissingDependencyError, MissingFileError
from newwave.readers import read_tracks, scan_music_folder
from newwave.types import Track

MUSICCAPS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "musiccaps" / "musiccaps-public.csv"
)
CAPS = {"id": "ytid", "description": "caption", "tags": "aspect_list"}
ROWS: list[dict[str, Any]] = [
    {
        "ytid": "a1",
        "caption": "A slow, sad piano ballad.",
        "aspect_list": "['piano', 'sad ballad']",
        "title": "Rain",
        "start_s": 30,
        "is_eval": True,
    },
    {
        "ytid": "b2",
        "caption": "Fast synthwave",
        "aspect_list": "['synth', \"80's\"]",
        "title": "",
        "start_s": 0,
        "is_eval": False,
    },
]


def _write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]], **options: Any) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, **options)
    return path


# -- formats and mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "delimiter"), [("caps.csv", ","), ("caps.TSV", "\t")])
def test_csv_and_tsv_round_trip_with_mapping_and_metadata(
    tmp_path: Path, name: str, delimiter: str
) -> None:
    source = _write_csv(tmp_path / name, ROWS, delimiter)
    tracks = read_tracks(source, columns=CAPS)
    assert isinstance(tracks, Iterator)
    first, second = tracks
    assert first == Track(
        id="a1",
        title="Rain",
        description="A slow, sad piano ballad.",
        tags=("piano", "sad ballad"),
        metadata={"start_s": 30, "is_eval": True},
    )
    assert second.title is None  # empty text -> None
    assert second.tags == ("synth", "80's")
    assert second.metadata == {"start_s": 0, "is_eval": False}


def test_jsonl_round_trip(tmp_path: Path) -> None:
    records = [
        {"track_id": 7, "text": "dreamy pop", "tags": ["pop", " dream ", ""], "bpm": 92.5},
        {"track_id": "x", "text": None, "tags": "rock, indie", "bpm": float("nan"), "n": None},
    ]
    source = tmp_path / "cat.ndjson"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    first, second = read_tracks(source, columns={"id": "track_id", "description": "text"})
    assert first == Track(
        id="7", description="dreamy pop", tags=("pop", "dream"), metadata={"bpm": 92.5}
    )
    assert second == Track(id="x", tags=("rock", "indie"), metadata={"bpm": None, "n": None})


def test_jsonl_of_dumped_tracks_round_trips(tmp_path: Path) -> None:
    tracks = [
        Track(id="a", title="A", tags=("x", "y"), metadata={"year": 1999, "k": [1, "b"]}),
        Track(id="b", lyrics="la la", metadata={}),
    ]
    source = tmp_path / "tracks.jsonl"
    source.write_text("".join(t.model_dump_json() + "\n" for t in tracks), encoding="utf-8")
    assert list(read_tracks(source)) == tracks


def test_parquet_round_trip_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_PARQUET_BATCH_ROWS", 2)
    rows = [
        {
            "track_id": f"t{i}",
            "caption": f"caption {i}",
            "genres": ["rock", f"g{i}"],
            "score": float("nan") if i == 1 else i / 2,
            "when": dt.datetime(2024, 1, i + 1, 12, 0),
            "flag": i % 2 == 0,
            "extra": {"k": i},
        }
        for i in range(5)
    ]
    source = _write_parquet(tmp_path / "cat.parquet", rows, row_group_size=3)
    tracks = list(
        read_tracks(source, columns={"id": "track_id", "description": "caption", "tags": "genres"})
    )
    assert [t.id for t in tracks] == [f"t{i}" for i in range(5)]
    assert tracks[1].tags == ("rock", "g1")
    assert tracks[1].metadata == {
        "score": None,
        "when": "2024-01-02T12:00:00",
        "flag": False,
        "extra": {"k": 1},
    }
    only = next(read_tracks(source, columns={"id": "track_id"}, metadata=["flag"]))
    assert only.metadata == {"flag": True}
    assert only.description is None


def test_parquet_tags_as_aspect_list_string(tmp_path: Path) -> None:
    source = _write_parquet(tmp_path / "caps.parquet", ROWS)
    first, _ = read_tracks(source, columns=CAPS, metadata=[])
    assert first.tags == ("piano", "sad ballad")
    assert first.metadata == {}


def test_format_argument_overrides_the_extension(tmp_path: Path) -> None:
    source = _write_jsonl(tmp_path / "catalogue.txt", [{"id": "a"}])
    assert [t.id for t in read_tracks(source, format="jsonl")] == ["a"]
    with pytest.raises(InvalidInputError, match=r"catalogue\.txt.*format="):
        read_tracks(source)
    with pytest.raises(InvalidInputError, match="unknown format 'xml'"):
        read_tracks(source, format="xml")  # type: ignore[arg-type]


def test_unmapped_fields_use_same_name_columns_and_metadata_rest(tmp_path: Path) -> None:
    rows = [{"id": "1", "artist": "Nina", "lyrics": "", "id_old": "9", "code": "007", "x": "1e3"}]
    (track,) = read_tracks(_write_csv(tmp_path / "c.csv", rows))
    assert track.artist == "Nina"
    assert track.lyrics is None
    assert track.metadata == {"id_old": 9, "code": "007", "x": 1000.0}


def test_mapped_column_overrides_same_name_column(tmp_path: Path) -> None:
    rows = [{"id": "old", "new_id": "n1", "name": "Song"}]
    (track,) = read_tracks(
        _write_csv(tmp_path / "c.csv", rows), columns={"id": "new_id", "title": "name"}
    )
    assert (track.id, track.title) == ("n1", "Song")
    assert track.metadata == {"id": "old"}


# -- tags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("['pop', 'tinny wide hi hats']", ("pop", "tinny wide hi hats")),
        ('["pop", "rock"]', ("pop", "rock")),
        ("  ", ()),
        ("[]", ()),
        ("pop; rock ;;jazz", ("pop", "rock", "jazz")),
        ("a,b", ("a,b",)),
    ],
)
def test_tag_strings(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    source = _write_csv(tmp_path / "c.csv", [{"id": "1", "tags": value}])
    (track,) = read_tracks(source, tag_separator=";")
    assert track.tags == expected


def test_tag_list_literal_is_never_evaluated(tmp_path: Path) -> None:
    value = "[__import__('os').system('echo pwned')]"
    source = _write_csv(tmp_path / "c.csv", [{"id": "1", "tags": "ok"}, {"id": "2", "tags": value}])
    with pytest.raises(InvalidInputError, match=r"c\.csv, line 3: tags look like a list"):
        list(read_tracks(source))


# -- CSV details ---------------------------------------------------------------------------------


def test_csv_quoted_newline_and_line_numbers(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text('id,lyrics\n1,"first line\nsecond line"\n\n2,x\n1,dup\n', encoding="utf-8")
    tracks = read_tracks(source)
    assert next(tracks).lyrics == "first line\nsecond line"
    assert next(tracks).id == "2"
    with pytest.raises(
        InvalidInputError, match=r"c\.csv, line 6: duplicate id '1' \(first at line 2\)"
    ):
        next(tracks)


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_bytes(b"\xef\xbb\xbfid,title\r\na,Alpha\r\n")
    assert list(read_tracks(source)) == [Track(id="a", title="Alpha")]


def test_empty_files_yield_nothing(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    assert list(read_tracks(tmp_path / "e.csv")) == []
    assert list(read_tracks(tmp_path / "e.jsonl")) == []


# -- relative audio paths ----------------------------------------------------------------------


def test_audio_paths_resolve_against_the_catalogue_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cat"
    folder.mkdir()
    absolute = str(tmp_path / "elsewhere" / "b.wav")
    rows = [
        {"id": "a", "audio": "audio/a.mp3"},
        {"id": "b", "audio": absolute},
        {"id": "c", "audio": "https://example.org/c.mp3"},
        {"id": "d", "audio": ""},
    ]
    _write_jsonl(folder / "c.jsonl", rows)
    monkeypatch.chdir(tmp_path)
    audio = [t.audio for t in read_tracks(Path("cat") / "c.jsonl")]
    assert audio == [
        str(folder.resolve() / "audio" / "a.mp3"),
        absolute,
        "https://example.org/c.mp3",
        None,
    ]


# -- errors ----------------------------------------------------------------------------------------


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.csv"):
        read_tracks(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match="directory"):
        read_tracks(tmp_path, format="csv")
    source = _write_csv(tmp_path / "c.csv", [{"id": "1"}])
    with pytest.raises(InvalidInputError, match="unknown Track field 'name'"):
        read_tracks(source, columns={"name": "x"})
    with pytest.raises(InvalidInputError, match=r"metadata=\[\.\.\.\]"):
        read_tracks(source, columns={"metadata": "x"})
    with pytest.raises(InvalidInputError, match="list of column names"):
        read_tracks(source, metadata="genre")
    with pytest.raises(InvalidInputError, match="tag_separator"):
        read_tracks(source, tag_separator="")


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("id,t\n1,a\n,b\n", {}, r"line 3: missing id"),
        ("id,t\n1,a\n  ,b\n", {}, r"line 3: missing id"),
        ("name,t\n1,a\n", {}, r"line 1: no 'id' column; map one"),
        ("id,t\n1,a\n", {"columns": {"description": "caption"}}, r"line 1: no column 'caption'"),
        ("id,t\n1,a\n", {"metadata": ["genre"]}, r"line 1: no column 'genre' \(listed in metadata"),
        ("id,t\n1,a\n2,b,c\n", {}, r"line 3: cannot parse the row: 3 fields, the header has 2"),
        ('id,t\n1,a\n2,"b\n', {}, r"line 3: cannot parse the row"),
        ('id,t\n1,"a"b\n', {}, r"line 2: cannot parse the row"),
        ("id,id\n1,2\n", {}, r"line 1: the header repeats column 'id'"),
        ("id,tags\n1,\"['a', 'b]\"\n", {}, r"line 2: tags look like a list but cannot be parsed"),
    ],
)
def test_csv_errors_name_file_and_line(
    tmp_path: Path, text: str, options: dict[str, Any], message: str
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"bad\.csv, " + message):
        list(read_tracks(source, **options))


@pytest.mark.parametrize(
    ("lines", "options", "message"),
    [
        (['{"id": "a"}', "{oops"], {}, r"line 2: cannot parse the line as JSON"),
        (['{"id": "a"}', "[1, 2]"], {}, r"line 2: expected a JSON object, found a list"),
        (['{"id": "a"}', '{"title": "x"}'], {}, r"line 2: no 'id' column"),
        (['{"id": "a"}', '{"id": null}'], {}, r"line 2: missing id"),
        (['{"id": "a"}', "", '{"id": "a"}'], {}, r"line 3: duplicate id 'a' \(first at line 1\)"),
        (['{"id": "a", "c": 1}', '{"id": "b"}'], {"columns": {"lyrics": "c"}}, r"line 2: no col"),
        (['{"id": "a", "title": ["x"]}'], {}, r"line 1: title must be text, not list"),
        (['{"id": "a", "tags": 5}'], {}, r"line 1: tags must be a list or a string"),
        (['{"id": "a", "tags": [{"x": 1}]}'], {}, r"line 1: tags must be strings, found dict"),
        (['{"id": true}'], {}, r"line 1: id must be text, not the boolean True"),
    ],
)
def test_jsonl_errors_name_file_and_line(
    tmp_path: Path, lines: list[str], options: dict[str, Any], message: str
) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"bad\.jsonl, " + message):
        list(read_tracks(source, **options))


def test_jsonl_undecodable_bytes(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b'{"id": "a"}\n{"id": "\xff\xfe"}\n')
    with pytest.raises(InvalidInputError, match=r"bad\.jsonl, line 2: not UTF-8 text"):
        list(read_tracks(source))


def test_parquet_errors_name_file_and_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_PARQUET_BATCH_ROWS", 2)
    rows: list[dict[str, Any]] = [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": None}, {"id": "b"}]
    source = _write_parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(InvalidInputError, match=r"bad\.parquet, row 4: missing id"):
        list(read_tracks(source))
    source = _write_parquet(tmp_path / "dup.parquet", [r for r in rows if r["id"]])
    with pytest.raises(InvalidInputError, match=r"dup\.parquet, row 4: duplicate id 'b' \(first"):
        list(read_tracks(source))
    with pytest.raises(InvalidInputError, match=r"dup\.parquet, row 1: no column 'caption'"):
        list(read_tracks(source, columns={"description": "caption"}))
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInputError, match=r"junk\.parquet, row 1: not a readable Parquet"):
        list(read_tracks(junk))


def test_missing_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "c.parquet"
    source.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r"newwave-music\[parquet\]"):
        read_tracks(source)


def test_importing_readers_loads_neither_pyarrow_nor_mutagen() -> None:
    code = (
        "import sys, newwave.readers; "
        "print(sorted(m for m in ('pyarrow', 'mutagen') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the real MusicCaps file -----------------------------------------------------------------------


@pytest.mark.skipif(not MUSICCAPS.exists(), reason="MusicCaps CSV not available")
def test_musiccaps_public_csv() -> None:
    tracks = list(read_tracks(MUSICCAPS, columns=CAPS))
    assert len(tracks) == 5521
    assert all(t.tags and t.description for t in tracks)
    assert tracks[0].tags[0] == "low quality"
    assert set(tracks[0].metadata) == {
        "start_s",
        "end_s",
        "audioset_positive_labels",
        "author_id",
        "is_balanced_subset",
        "is_audioset_eval",
    }
    assert isinstance(tracks[0].metadata["is_balanced_subset"], bool)


# -- scan_music_folder ---------------------------------------------------------------------------

SR = 8000


def _tone(path: Path, **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(SR // 4) / SR
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, **options)
    return path


def _mutagen(module: str) -> Any:
    """A mutagen module, untyped (mutagen's own hints are partial)."""
    return importlib.import_module(f"mutagen.{module}")


def _id3_frames(lyrics: str | None = None) -> list[Any]:
    id3 = _mutagen("id3")
    frames: list[Any] = [
        id3.TIT2(encoding=3, text="Id Three"),
        id3.TPE1(encoding=3, text=["Ann", "Bo"]),
        id3.TALB(encoding=3, text="Album"),
        id3.TCON(encoding=3, text=["Jazz", "Blues"]),
    ]
    if lyrics:
        frames.append(id3.USLT(encoding=3, lang="eng", desc="", text=lyrics))
    return frames


@pytest.fixture
def music(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    flac = _mutagen("flac").FLAC(_tone(root / "b" / "song.flac"))
    flac.update({"title": "Flac Song", "artist": "Fay", "genre": ["Folk"], "lyrics": "la la"})
    flac.save()
    ogg = _mutagen("oggvorbis").OggVorbis(
        _tone(root / "b" / "deep" / "v.ogg", format="OGG", subtype="VORBIS")
    )
    ogg.update({"TITLE": "Vorbis", "UNSYNCEDLYRICS": "oh oh"})
    ogg.save()
    wav = _mutagen("wave").WAVE(_tone(root / "a.wav"))
    wav.add_tags()
    for frame in _id3_frames(lyrics="wav words"):
        wav.tags.add(frame)
    wav.save()
    opus = _mutagen("oggopus").OggOpus(_tone(root / "o.opus", format="OGG", subtype="OPUS"))
    opus.update({"title": "Opus", "albumartist": "Band", "genre": ["Ambient", "Drone", "Ambient"]})
    opus.save()
    _tone(root / "plain.wav")
    (root / "plain.lrc").write_text(
        "[ar: Someone]\n[ti:Plain]\n[length: 03:20]\n[00:01.00]First line\n"
        "[00:05.50][01:10.00]Chorus <00:06.00>word\n[00:09.00]\n\n[Chorus: Someone]\n",
        encoding="utf-8",
    )
    _tone(root / "text.WAV")
    (root / "text.txt").write_text("plain words\n", encoding="utf-8")
    (root / "broken.mp3").write_bytes(b"this is not audio, just text pretending\n" * 50)
    (root / "cover.jpg").write_bytes(b"jpeg")
    (root / "._a.mp3").write_bytes(b"apple double")
    if "MP3" in sf.available_formats():
        id3 = _mutagen("id3").ID3()
        for frame in _id3_frames(lyrics="mp3 words"):
            id3.add(frame)
        id3.save(_tone(root / "c.mp3", format="MP3"))
    return root


def test_scan_music_folder(music: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="newwave.readers"):
        tracks = {t.id: t for t in scan_music_folder(music)}
    has_mp3 = "MP3" in sf.available_formats()
    expected = [
        "a.wav",
        "b/deep/v.ogg",
        "b/song.flac",
        "broken.mp3",
        "o.opus",
        "plain.wav",
        "text.WAV",
    ]
    if has_mp3:
        expected.insert(4, "c.mp3")
    assert list(tracks) == expected  # sorted relative POSIX paths
    assert tracks["b/song.flac"] == Track(
        id="b/song.flac",
        title="Flac Song",
        artist="Fay",
        audio=str(music.resolve() / "b" / "song.flac"),
        lyrics="la la",
        tags=("Folk",),
    )
    assert (tracks["b/deep/v.ogg"].title, tracks["b/deep/v.ogg"].lyrics) == ("Vorbis", "oh oh")
    wav = tracks["a.wav"]
    assert (wav.title, wav.artist, wav.album, wav.tags) == (
        "Id Three",
        "Ann",
        "Album",
        ("Jazz", "Blues"),
    )
    assert wav.lyrics == "wav words"
    opus = tracks["o.opus"]
    assert (opus.title, opus.artist, opus.tags) == ("Opus", "Band", ("Ambient", "Drone"))
    assert tracks["plain.wav"].title == "plain"
    assert tracks["plain.wav"].lyrics == "First line\nChorus word\n\n[Chorus: Someone]"
    assert tracks["text.WAV"].lyrics == "plain words"
    broken = tracks["broken.mp3"]
    assert broken == Track(
        id="broken.mp3", title="broken", audio=str(music.resolve() / "broken.mp3")
    )
    assert "broken.mp3" in caplog.text
    if has_mp3:
        mp3 = tracks["c.mp3"]
        assert (mp3.title, mp3.lyrics, mp3.tags) == ("Id Three", "mp3 words", ("Jazz", "Blues"))


def test_scan_filters(music: Path) -> None:
    flat = [t.id for t in scan_music_folder(music, recursive=False, extensions=[".wav"])]
    assert flat == ["a.wav", "plain.wav", "text.WAV"]
    nested = [t.id for t in scan_music_folder(music, extensions=("FLAC", ".ogg"))]
    assert nested == ["b/deep/v.ogg", "b/song.flac"]
    assert [t.id for t in scan_music_folder(music / "b" / "deep")] == ["v.ogg"]


def test_scan_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingFileError, match="nowhere"):
        scan_music_folder(tmp_path / "nowhere")
    (tmp_path / "f.mp3").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not a folder"):
        scan_music_folder(tmp_path / "f.mp3")
    with pytest.raises(InvalidInputError, match="extensions"):
        scan_music_folder(tmp_path, extensions=[])
    monkeypatch.setitem(sys.modules, "mutagen", None)
    with pytest.raises(MissingDependencyError, match=r"newwave-music\[tags\]"):
        scan_music_folder(tmp_path)


def test_lrc_cleaning() -> None:
    text = "[offset:+100]\r\n[00:01.2]Hello\r\n\r\n\r\n\r\n[1:02]World\r\n"
    assert readers._clean_lyrics(text) == "Hello\n\nWorld"
    assert readers._clean_lyrics("[00:01.00]\n[by:me]\n") is None


# -- hostile sidecar files: each scan runs in a child process, so a hang fails, not blocks ------

SCAN_CHILD = """
import json, logging, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # /dev/zero read whole: MemoryError
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
from newwave.readers import scan_music_folder
tracks = scan_music_folder(sys.argv[1], max_sidecar_bytes=int(sys.argv[2]))
print(json.dumps({track.id: track.lyrics for track in tracks}))
"""


def _scan_in_child(folder: Path, max_bytes: int = readers.MAX_SIDECAR_BYTES) -> tuple[Any, str]:
    """``{id: lyrics}`` of ``scan_music_folder(folder)`` run in a child, and its warnings."""
    result = subprocess.run(
        [sys.executable, "-c", SCAN_CHILD, str(folder), str(max_bytes)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    for name in ("fifo", "passwd", "zero", "big", "inside", "loop"):
        _tone(root / f"{name}.wav")
    os.mkfifo(root / "fifo.lrc")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "zero.lrc").symlink_to("/dev/zero")
    (root / "big.txt").write_bytes(b"la " * (readers.MAX_SIDECAR_BYTES // 3 + 1))
    (root / "words").mkdir()
    (root / "words" / "inside.txt").write_text("words from inside\n", encoding="utf-8")
    (root / "inside.lrc").symlink_to(root / "words" / "inside.txt")
    (root / "loop.lrc").symlink_to(root / "loop.lrc")
    return root


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_hostile_sidecars_are_skipped_without_hanging(hostile: Path) -> None:
    lyrics, log = _scan_in_child(hostile)
    assert lyrics == {
        "big.wav": None,
        "fifo.wav": None,
        "inside.wav": "words from inside",
        "loop.wav": None,
        "passwd.wav": None,
        "zero.wav": None,
    }
    assert f"skipping lyrics file {hostile / 'fifo.lrc'}: not a regular file" in log
    assert f"{hostile / 'passwd.txt'}: it links to /etc/passwd, outside the music folder" in log
    assert f"{hostile / 'zero.lrc'}: it links to /dev/zero, outside the music folder" in log
    assert f"{hostile / 'big.txt'}: 1000002 bytes, more than max_sidecar_bytes (1000000)" in log
    assert f"skipping lyrics file {hostile / 'loop.lrc'}" in log
    assert "Traceback" not in log


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_the_sidecar_size_limit_is_configurable(hostile: Path) -> None:
    lyrics, _ = _scan_in_child(hostile, max_bytes=2_000_000)
    assert lyrics["big.wav"] is not None
    assert lyrics["big.wav"].startswith("la la")
    with pytest.raises(InvalidInputError, match="max_sidecar_bytes must be a positive integer"):
        scan_music_folder(hostile, max_sidecar_bytes=0)


# -- sizes and encodings ----------------------------------------------------------------------


def test_a_value_past_max_field_chars_is_an_error_naming_the_row(tmp_path: Path) -> None:
    big = "la " * 400_000  # 1.2 million characters
    jsonl = _write_jsonl(tmp_path / "c.jsonl", [{"id": "a"}, {"id": "b", "description": big}])
    with pytest.raises(
        InvalidInputError,
        match=r"c\.jsonl, line 2: column 'description' has 1,200,000 characters, more than "
        r"max_field_chars \(100,000\)",
    ):
        list(read_tracks(jsonl))
    assert len(list(read_tracks(jsonl, max_field_chars=2_000_000))) == 2
    tags = _write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "tags": ["x" * 60_000] * 2}])
    with pytest.raises(InvalidInputError, match=r"line 1: column 'tags' has 120,000 characters"):
        list(read_tracks(tags))
    rows: list[dict[str, Any]] = [{"id": "a", "lyrics": "x"}, {"id": "b", "lyrics": big}]
    with pytest.raises(InvalidInputError, match=r"p\.parquet, row 2: column 'lyrics' has 1,2"):
        list(read_tracks(_write_parquet(tmp_path / "p.parquet", rows)))
    with pytest.raises(InvalidInputError, match="max_field_chars must be a positive integer"):
        read_tracks(jsonl, max_field_chars=0)


def test_csv_fields_past_the_limit_name_the_line(tmp_path: Path) -> None:
    source = _write_csv(
        tmp_path / "c.csv", [{"id": "a", "t": "x"}, {"id": "b", "t": "y" * 120_000}]
    )
    with pytest.raises(InvalidInputError, match=r"c\.csv, line 3: column 't' has 120,000 char"):
        list(read_tracks(source))
    huge = _write_csv(tmp_path / "h.csv", [{"id": "a", "t": "x"}, {"id": "b", "t": "y" * 300_000}])
    with pytest.raises(InvalidInputError, match=r"h\.csv, line 3: .*than max_field_chars \(100,0"):
        list(read_tracks(huge))  # maybe past the csv module's own limit (131 072 by default)
    assert len(list(read_tracks(huge, max_field_chars=400_000))) == 2


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_that_is_not_utf8_is_named_by_its_line(tmp_path: Path, suffix: str) -> None:
    lines = ["id,title"] if suffix == ".csv" else []
    row = "{0},Song {0}" if suffix == ".csv" else '{{"id": "{0}", "title": "Song {0}"}}'
    lines += [row.format(i) for i in range(3000)]
    bad = len(lines) - 5
    lines[bad - 1] = lines[bad - 1].replace("Song", "Caf\xe9")  # Latin-1, not UTF-8
    source = tmp_path / f"latin{suffix}"
    source.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(
        InvalidInputError, match=rf"latin\{suffix}, line {bad}: not UTF-8 text \(byte 0xe9 at"
    ):
        list(read_tracks(source))


def test_deeply_nested_values_are_errors(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    source = tmp_path / "deep.jsonl"
    source.write_text('{"id": "a"}\n{"id": "b", "x": ' + deep + "}\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"deep\.jsonl, line 2: .*nested too deeply"):
        list(read_tracks(source))
    nested = '{"id": "a", "x": ' + "[" * 32 + "]" * 32 + "}\n"
    nested += '{"id": "b", "x": ' + "[" * 200 + "]" * 200 + "}\n"
    (tmp_path / "n.jsonl").write_text(nested, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"n\.jsonl, line 2: column 'x' is nested more "):
        assert [t.id for t in read_tracks(tmp_path / "n.jsonl")] == ["a"]
    tags = _write_csv(tmp_path / "tags.csv", [{"id": "a", "tags": "[" * 5000 + "]" * 5000}])
    with pytest.raises(InvalidInputError, match=r"line 2: tags look like a list but cannot be"):
        list(read_tracks(tags))
