"""A new user's first session, as the README and docs/cli.md tell it: install, index a folder of
tagged music, prune a deleted file, search with --json and --format m3u and see what the query
was understood as. Every message the command prints on stderr is one line."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

import newwave
from newwave._distribution import is_this_distribution
from newwave.cli import main
from tests.test_cli_library import write_wav

ROOT = Path(__file__).resolve().parent.parent
SONGS = {
    "Mara Lind/Tidewater/01 Harbour Lights.wav": ("Harbour Lights", "Mara Lind", "Tidewater"),
    "Mara Lind/Tidewater/02 Salt.wav": ("Salt", "Mara Lind", "Tidewater"),
    "Kraft/Voltage.wav": ("Voltage", "Kraft", "Circuits"),
    "Porch/Porch Song.wav": ("Porch Song", "The Porch Band", "Front Steps"),
}


def readme_install_name() -> str:
    """The distribution of the README's bare ``pip install`` line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install in your project", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^pip install\s+['\"]?([A-Za-z0-9][A-Za-z0-9._-]*)", section, re.M)
    assert names, "the README's install section has no pip install line"
    return str(names[0])


def test_a_new_users_first_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mutagen")
    # 1. pip install NAME: NAME is this project, the one that provides `import newwave`.
    name = readme_install_name()
    assert is_this_distribution(name)
    assert importlib.metadata.version(name) == newwave.__version__

    # No model weights anywhere: the audio cannot be embedded and a warning says so.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    music, lib = tmp_path / "Music", tmp_path / "my-music"
    for path, (title, artist, album) in SONGS.items():
        write_wav(music / path, title=title, artist=artist, album=album)
    errors: list[str] = []

    def newwave_(*argv: str) -> str:
        status = main(list(argv))
        captured = capsys.readouterr()
        errors.extend(captured.err.splitlines())
        assert status == 0, captured.err
        return captured.out

    # 2. Index the folder with the defaults: names matched by their words.
    out = newwave_("index", str(music), str(lib))
    assert "4 new" in out
    assert "fields title=bm25, artist=bm25, album=bm25" in out
    (warning,) = [line for line in errors if "the tracks' audio is not indexed" in line]
    assert warning.startswith("newwave: warning: ")
    assert "--field audio=clap --option audio.model=DIR" in warning

    # 3. A file is deleted; indexing again with --prune removes it.
    (music / "Kraft" / "Voltage.wav").unlink()
    out = newwave_("index", str(music), str(lib), "--prune")
    assert "0 new, 0 changed, 3 unchanged, 1 pruned" in out

    # 4. Search: JSON with what the query was understood as, an M3U playlist, the table.
    data = json.loads(newwave_("search", str(lib), "songs by Mara Lind", "--json"))
    assert data["parsed"]["text"]
    assert {hit["track"]["artist"] for hit in data["hits"][:2]} == {"Mara Lind"}
    assert all(hit["id"] != "Kraft/Voltage.wav" for hit in data["hits"])
    playlist = newwave_("search", str(lib), "harbour lights", "--format", "m3u", "-k", "1")
    assert playlist.splitlines() == [
        "#EXTM3U",
        "#EXTINF:-1,Mara Lind - Harbour Lights",
        str((music / "Mara Lind/Tidewater/01 Harbour Lights.wav").resolve()),
    ]
    table = newwave_("search", str(lib), "porch band songs without vocals").splitlines()
    assert table[0].startswith("understood: searching for")
    assert "unwanted: vocals (vocals)" in table[0]
    assert table[1].split() == ["#", "id", "track", "score", "title", "artist", "album"]
    assert "Porch/Porch Song.wav" in table[2]

    # 5. More like a file, named by its path.
    salt = music / "Mara Lind/Tidewater/02 Salt.wav"
    data = json.loads(newwave_("similar", str(lib), str(salt), "--json"))
    assert data["track_id"] == "Mara Lind/Tidewater/02 Salt.wav"

    # Every message on stderr is a single line of its own.
    assert errors, "the missing audio model is reported"
    assert all(line.startswith("newwave: ") for line in errors), errors
