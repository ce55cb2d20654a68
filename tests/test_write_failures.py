"""Writes the file system refuses (a full disk, read-only files) and hostile --where filters:
one line ``newwave: error: ...``, exit status 1, and a library that still opens as committed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newwave import Recommender
from newwave.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ["--field", "description=keyword"]

# Runs the command line in a child process whose files may not grow past a limit (a full disk,
# as far as the writer can tell: SIGXFSZ ignored, so a write past the limit fails with EFBIG).
_CHILD = """
import contextlib, io, json, resource, signal, sys
from newwave.plugins import get_plugin_manager
from tests.conftest import KeywordPlugin
from newwave.cli import main

get_plugin_manager().register(KeywordPlugin(), name="test-keyword")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
results = []
for limit, argv in json.loads(sys.argv[1]):
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    err = io.StringIO()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with contextlib.redirect_stderr(err):
            status = main(argv)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    results.append({"status": status, "err": err.getvalue()})
print(json.dumps(results))
"""


def _catalogue(path: Path, count: int, start: int = 0) -> Path:
    lines = (
        json.dumps({"id": f"t{i}", "description": f"song {i} with words w{i % 7} and v{i % 13}"})
        for i in range(start, start + count)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def library(tmp_path: Path, keyword_plugin: None, capsys: pytest.CaptureFixture[str]) -> Path:
    """1,000 tracks: a 0.26 MB FAISS index, a 0.6 MB database."""
    path = tmp_path / "library"
    assert main(["index", str(_catalogue(tmp_path / "a.jsonl", 1000)), str(path), *FIELDS]) == 0
    capsys.readouterr()
    return path


def _tracks(library: Path) -> int:
    rec = Recommender.load(library)
    assert rec.search("song with words w3", k=3)  # the indexes load and answer
    return len(rec)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_is_a_storage_error_and_the_library_keeps_what_was_committed(
    library: Path, tmp_path: Path, keyword_plugin: None
) -> None:
    more = _catalogue(tmp_path / "b.jsonl", 1000, start=1000)
    copies = {name: tmp_path / name for name in ("sqlite", "faiss")}
    for copy in copies.values():
        shutil.copytree(library, copy)
    cases = [  # (the largest file size allowed, the command)
        (20_000, ["index", str(more), str(copies["sqlite"]), *FIELDS]),  # the log cannot grow
        (100_000, ["repair", str(copies["faiss"])]),  # the index file cannot be written
    ]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cases)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sqlite, faiss = json.loads(done.stdout.strip().splitlines()[-1])
    for result in (sqlite, faiss):
        assert result["status"] == 1
        assert len(result["err"].splitlines()) == 1, result["err"]
        assert result["err"].startswith("newwave: error: cannot ")
    assert "library.sqlite: disk I/O error" in sqlite["err"]
    assert "index.faiss" in faiss["err"]
    assert "File too large" in faiss["err"]
    assert _tracks(copies["sqlite"]) == 1000  # the failed transaction left nothing
    assert _tracks(copies["faiss"]) == 1000  # rebuilt from the database on opening


def test_deeply_nested_where_is_a_specific_error(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for depth in (20, 100_000):
        where = '{"year": ' + "[" * depth + "1" + "]" * depth + "}"
        assert main(["search", str(library), "song", "--where", where]) == 1
        err = capsys.readouterr().err
        assert err.startswith("newwave: error: --where is nested more than 16 levels deep")
        assert len(err.splitlines()) == 1
    assert main(["search", str(library), "song", "--where", '{"title": {"in": ["a"]}}']) == 0
    assert capsys.readouterr().out == "no results\n"


# Adds to libraries through the API and the command line, as a user who may not write them.
_READ_ONLY_CHILD = """
import contextlib, io, json, sys
from newwave.plugins import get_plugin_manager
from tests.conftest import KeywordPlugin
from newwave import Recommender, StorageError, Track
from newwave.cli import main

get_plugin_manager().register(KeywordPlugin(), name="test-keyword")
catalogue, fields, results = sys.argv[1], sys.argv[2:4], []
for library in sys.argv[4:]:
    api = {"tracks": None, "error": None, "document_batches": 0}
    try:
        rec = Recommender.load(library)
        api["tracks"] = len(rec)
        try:
            rec.add([Track(id="new", description="a new song")])
        finally:
            calls = [call for c in rec._channels.values() for call in c.encoder.calls]
            api["document_batches"] = sum(1 for call in calls if call[1] == "document")
    except StorageError as exc:
        api["error"] = str(exc)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["index", catalogue, library, *fields])
    results.append({"api": api, "status": status, "err": err.getvalue()})
print(json.dumps(results))
"""


def _as_another_user() -> list[str]:
    """A command prefix that makes chmod bind: as root, run as ``nobody`` (util-linux setpriv)."""
    import os
    import pwd

    if os.getuid() != 0:
        return []
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no user 'nobody' for whom chmod binds")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and setpriv is missing to run as another user")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_read_only_library_is_refused_before_embedding(library: Path, tmp_path: Path) -> None:
    """Read-only index folders (the library opens, but cannot be written), then everything."""
    import os
    import stat
    import tempfile

    # pytest's folders are private: as root, the libraries go where 'nobody' can reach them
    home = Path(tempfile.mkdtemp(dir=None if os.getuid() == 0 else tmp_path))
    try:
        home.chmod(0o755)
        catalogue = _catalogue(home / "more.jsonl", 1000, start=1000)
        no_write = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        copies = {name: home / name for name in ("indexes", "all")}
        for name, copy in copies.items():
            shutil.copytree(library, copy)
            for path in [copy, *copy.rglob("*")]:
                writable = name == "indexes" and "indexes" not in path.relative_to(copy).parts
                mode = 0o777 if path.is_dir() else 0o666
                path.chmod(mode if writable else mode & no_write)
        command = [sys.executable, "-c", _READ_ONLY_CHILD, str(catalogue), *FIELDS]
        done = subprocess.run(
            [*_as_another_user(), *command, *map(str, copies.values())],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        indexes, everything = json.loads(done.stdout.strip().splitlines()[-1])
        assert indexes["api"]["tracks"] == 1000  # readable, only not writable
        assert "indexes is read-only" in indexes["api"]["error"]
        assert "is read-only" in everything["api"]["error"]
        for result in (indexes, everything):
            assert result["api"]["document_batches"] == 0  # nothing was embedded
            assert result["status"] == 1
            assert result["err"].startswith("newwave: error: ")
            assert "is read-only" in result["err"]
            assert len(result["err"].splitlines()) == 1
    finally:
        for path in [home, *home.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(home)
