"""The library directory as a live store: transactions, readers and writers in real processes,
crashes, damaged files, repair, and the conversion of format-1 libraries."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newwave import (
    IndexCorruptError,
    InvalidInputError,
    LibraryLockedError,
    Recommender,
    Track,
)
from newwave.plugins import get_plugin_manager
from newwave.store.lock import WriterLock

from .conftest import KeywordEncoder, KeywordPlugin

ROOT = Path(__file__).resolve().parent.parent
FORMAT_1 = Path(__file__).parent / "data" / "library-format-1"

TRACKS = [
    Track(id="rain", description="a slow sad piano ballad", tags=["piano", "ballad"]),
    Track(id="drive", description="fast synthwave with neon synths", tags=["synthwave"]),
    Track(id="storm", description="loud metal with heavy guitar", tags=["metal", "guitar"]),
]

# A child process: the keyword encoder registered, then the given code.
PRELUDE = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import KeywordPlugin
from newwave import Recommender, Track
from newwave.plugins import get_plugin_manager
get_plugin_manager().register(KeywordPlugin(), name="kw")
"""


def child(code: str) -> list[str]:
    """The command line of a Python child process running ``code`` after :data:`PRELUDE`."""
    return [sys.executable, "-c", PRELUDE + textwrap.dedent(code)]


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWWAVE_LOAD_PLUGINS": ""}
    return subprocess.run(
        child(code), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def saved_library(root: Path, **retriever_kwargs: Any) -> Path:
    """A saved library of TRACKS in ``root``: description (keyword), tags (bm25 + keyword)."""
    fields: dict[str, Any] = {"description": "keyword", "tags": ["bm25", "keyword"]}
    rec = Recommender(fields=fields, **retriever_kwargs)
    rec.add(TRACKS)
    rec.save(root)
    return root


@pytest.fixture
def library(keyword_plugin: None, tmp_path: Path) -> Path:
    """A saved library of TRACKS (FAISS), which child processes may open too."""
    return saved_library(tmp_path / "lib")


@pytest.fixture
def any_library(keyword_plugin: None, tmp_path: Path, retriever_kwargs: dict[str, Any]) -> Path:
    """The same library for each retriever (Qdrant's local mode serves this process only)."""
    return saved_library(tmp_path / "lib", **retriever_kwargs)


def results(
    rec: Recommender, query: str = "sad piano ballad"
) -> list[tuple[str, dict[str, float]]]:
    return [(hit.track.id, hit.scores) for hit in rec.search(query, k=3)]


# -- a live library -------------------------------------------------------------------------------


def test_each_add_and_remove_is_committed_at_once(any_library: Path) -> None:
    library = any_library
    writer = Recommender.load(library)
    reader = Recommender.load(library)
    writer.add([Track(id="calm", description="calm ambient piano", tags=["ambient"])])
    assert "calm" in reader  # no save(): the add is in the library
    assert reader.search("calm ambient", k=1)[0].track.id == "calm"  # the reader caught up
    writer.remove(["rain"])
    assert "rain" not in reader
    assert all(hit.track.id != "rain" for hit in reader.search("sad piano ballad", k=5))
    assert Recommender.load(library).ids() == ["drive", "storm", "calm"]


def test_an_add_writes_only_what_changed(library: Path) -> None:
    rec = Recommender.load(library)
    database = library / "library.sqlite"
    before = database.stat().st_size
    rec.add([Track(id=f"new-{i}", description=f"song number {i}") for i in range(5)])
    rec.save(library)  # folds the write-ahead log into the database
    assert database.stat().st_size - before < 64 * 1024
    assert len(Recommender.load(library)) == 8


def test_indexes_are_saved_now_and_then_and_caught_up_from_the_store(any_library: Path) -> None:
    library = any_library
    manifest = library / "indexes" / "description" / "checkpoint.json"
    saved_at = json.loads(manifest.read_text())["seq"]
    rec = Recommender.load(library)
    rec.add([Track(id="calm", description="calm ambient piano")])
    assert json.loads(manifest.read_text())["seq"] == saved_at  # one track: not worth saving
    assert Recommender.load(library).search("calm ambient", k=1)[0].track.id == "calm"
    rec.save(library)
    assert json.loads(manifest.read_text())["seq"] > saved_at


def test_save_refuses_a_folder_that_is_not_a_library(keyword_plugin: None, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"...")
    rec = Recommender(fields={"description": "keyword"})
    with pytest.raises(InvalidInputError, match="not a newwave library"):
        rec.save(tmp_path / "photos")


def test_save_over_a_library_replaces_it_for_its_readers(library: Path) -> None:
    reader = Recommender.load(library)
    other = Recommender(fields={"description": "keyword", "tags": ["bm25", "keyword"]})
    other.add([Track(id="only", description="a sad piano song")])
    other.save(library)
    assert reader.ids() == ["only"]
    assert [hit.track.id for hit in reader.search("sad piano")] == ["only"]


def test_save_without_replace_keeps_a_library(library: Path) -> None:
    other = Recommender(fields={"description": "keyword"})
    other.save(library, replace=False)
    assert len(Recommender.load(library)) == 3


# -- one writer, many readers ---------------------------------------------------------------------


def test_a_second_writer_waits_then_fails_naming_the_holder(library: Path) -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
            "from pathlib import Path\n"
            "from newwave.store.lock import WriterLock\n"
            f"with WriterLock(Path({str(library)!r})).hold(timeout=5):\n"
            "    print('held', flush=True); time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            rec = Recommender.load(library, lock_timeout=0.2)
            with pytest.raises(LibraryLockedError, match=f"process {holder.pid} on .*since"):
                rec.add([Track(id="late", description="waited too long")])
            assert "late" not in rec
        finally:
            holder.kill()
    rec.add([Track(id="late", description="the lock died with its process")])
    assert "late" in Recommender.load(library)


def test_two_concurrent_index_commands_lose_nothing(tmp_path: Path) -> None:
    """20 times: two ``newwave index`` processes on one new library; both sets of tracks stay."""
    for side in ("a", "b"):
        rows = [f"{side}{i},{side} song {i} with words" for i in range(5)]
        (tmp_path / f"{side}.csv").write_text("id,description\n" + "\n".join(rows) + "\n")
    script = """
        from newwave.cli import main
        sys.exit(main(["index", sys.argv[1], sys.argv[2], "--field", "description=keyword"]))
    """
    env = {**os.environ, "NEWWAVE_LOAD_PLUGINS": ""}
    for repetition in range(20):
        library = tmp_path / f"lib-{repetition}"
        writers = [
            subprocess.Popen(
                [*child(script), str(tmp_path / f"{side}.csv"), str(library)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for side in ("a", "b")
        ]
        errors = [writer.communicate(timeout=120)[1] for writer in writers]
        assert [w.returncode for w in writers] == [0, 0], errors
        with_plugin = get_plugin_manager()
        with_plugin.register(KeywordPlugin(), name="kw-two-writers")
        try:
            ids = Recommender.load(library).ids()
        finally:
            with_plugin.unregister(name="kw-two-writers")
        assert sorted(ids) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])


def test_a_reader_never_fails_while_another_process_writes(library: Path) -> None:
    """A reader process searches in a loop while this one commits 50 adds and saves."""
    reader = subprocess.Popen(
        child(
            f"""
            from pathlib import Path
            rec = Recommender.load({str(library)!r})
            stop = Path({str(library.parent / "stop")!r})
            rec.search("piano song", k=3)  # loaded and searching before the writes begin
            Path({str(library.parent / "ready")!r}).touch()
            searches = failures = 0
            while not stop.exists():
                try:
                    rec.search("piano song", k=3)
                    if searches % 10 == 0:
                        Recommender.load({str(library)!r}).search("guitar", k=3)
                    searches += 1
                except Exception as exc:
                    failures += 1
                    print(repr(exc), file=sys.stderr)
            print(searches, failures)
            """
        ),
        env={**os.environ, "NEWWAVE_LOAD_PLUGINS": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = library.parent / "ready"
        deadline = time.monotonic() + 60
        while not ready.exists() and reader.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        writer = Recommender.load(library)
        for i in range(50):
            writer.add([Track(id=f"w{i}", description=f"piano song number {i}")])
            writer.save(library)
    finally:
        (library.parent / "stop").touch()
    out, err = reader.communicate(timeout=120)
    assert out, err
    searches, failures = map(int, out.split())
    assert (failures, err) == (0, "")
    assert searches > 0
    assert len(writer) == 53


@pytest.mark.parametrize("run", range(20))
def test_kill_9_during_adds_leaves_the_last_committed_state(library: Path, run: int) -> None:
    """Killed at a random moment while adding batches of 10 (and saving every third): the
    library opens with the tracks of whole batches only, at least every reported one."""
    progress = library.parent / "progress"
    writer = subprocess.Popen(
        child(
            f"""
            rec = Recommender.load({str(library)!r})
            for batch in range(1000):
                rec.add([Track(id=f"k{{batch}}-{{i}}", description=f"song {{i}} of {{batch}}")
                         for i in range(10)])
                if batch % 3 == 2:
                    rec.save({str(library)!r})
                with open({str(progress)!r}, "a") as out:
                    out.write(f"{{batch}}\\n")
            """
        ),
        env={**os.environ, "NEWWAVE_LOAD_PLUGINS": ""},
    )
    random.seed(run)
    deadline = time.monotonic() + 60
    while not progress.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.5))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    reported = len(progress.read_text().split()) if progress.exists() else 0
    rec = Recommender.load(library)
    added = [i for i in rec.ids() if i.startswith("k")]
    assert len(added) % 10 == 0
    assert len(added) // 10 in (reported, reported + 1)
    assert len(rec) == 3 + len(added)
    if added:
        assert rec.search(f"song 3 of {len(added) // 10 - 1}", k=1)[0].track.id.startswith("k")


# -- damaged files and repair ---------------------------------------------------------------------


def library_files(root: Path) -> Iterator[Path]:
    """The non-empty files a library keeps its data in (not its lock files, nor SQLite's)."""
    for path in sorted(root.rglob("*")):
        ignored = path.name in ("write.lock", "writer.json") or path.name.endswith(("-shm", "-wal"))
        if path.is_file() and path.stat().st_size and not ignored:
            yield path


def test_a_missing_or_damaged_file_is_an_error_naming_it(library: Path, tmp_path: Path) -> None:
    files = list(library_files(library))
    assert {p.name for p in files} >= {"library.sqlite", "index.faiss", "postings.safetensors"}
    for path in files:
        relative = path.relative_to(library)
        for damage in ("delete", "flip"):
            copy = tmp_path / f"copy-{damage}-{relative.as_posix().replace('/', '_')}"
            shutil.copytree(library, copy)
            target = copy / relative
            if damage == "delete":
                target.unlink()
            else:
                data = bytearray(target.read_bytes())
                start = 0 if target.name == "library.sqlite" else len(data) // 2
                for i in range(start, min(start + 20, len(data))):
                    data[i] ^= 0xFF
                target.write_bytes(bytes(data))
            with pytest.raises(IndexCorruptError) as raised:
                Recommender.load(copy)
            assert target.name in str(raised.value), (damage, relative, raised.value)


def test_a_deleted_index_folder_is_an_error_and_repair_restores_it(any_library: Path) -> None:
    library = any_library
    before = results(Recommender.load(library))
    shutil.rmtree(library / "indexes" / "tags+bm25")
    with pytest.raises(IndexCorruptError, match=r"tags\+bm25.*newwave repair"):
        Recommender.load(library)
    counts = Recommender.repair(library)
    assert counts == {"description": 3, "tags:bm25": 3, "tags:keyword": 3}
    assert results(Recommender.load(library)) == before


def test_a_damaged_index_file_is_repaired_from_the_stored_vectors(library: Path) -> None:
    before = results(Recommender.load(library))
    (faiss_file,) = (library / "indexes" / "description").glob("*/index.faiss")
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match=r"index\.faiss is damaged"):
        Recommender.load(library)
    Recommender.repair(library)
    assert results(Recommender.load(library)) == before


def test_a_damaged_database_cannot_be_repaired(library: Path) -> None:
    database = library / "library.sqlite"
    database.write_bytes(database.read_bytes()[:4096])
    with pytest.raises(IndexCorruptError, match=r"library\.sqlite"):
        Recommender.repair(library)


def test_an_export_killed_before_its_indexes_leaves_a_whole_library(
    keyword_plugin: None, tmp_path: Path
) -> None:
    result = run_child(
        f"""
        from newwave.index.base import Retriever
        rec = Recommender(fields={{"description": "keyword"}})
        rec.add([Track(id="a", description="first")])
        def die(self, directory):
            os._exit(9)  # killed while writing the indexes, after the database
        Retriever.write_labelled = die
        rec.save({str(tmp_path / "lib")!r})
        """
    )
    assert result.returncode == 9, result.stderr
    assert not list((tmp_path / "lib" / "indexes").rglob("checkpoint.json"))
    loaded = Recommender.load(tmp_path / "lib")  # the index is built from the stored vectors
    assert loaded.search("first", k=1)[0].track.id == "a"
    rec = Recommender(fields={"description": "keyword"})
    rec.add([Track(id="b", description="second")])
    rec.save(tmp_path / "lib")  # an unfinished library is written over
    assert Recommender.load(tmp_path / "lib").ids() == ["b"]


# -- format 1 -------------------------------------------------------------------------------------


def test_a_format_1_library_is_converted_on_load(keyword_plugin: None, tmp_path: Path) -> None:
    """A library written by newwave 0.1 (before the live store) searches as it did."""
    shutil.copytree(FORMAT_1, tmp_path / "lib")
    rec = Recommender.load(tmp_path / "lib")
    expected = json.loads((FORMAT_1.parent / "library-format-1.expected.json").read_text())
    found = [(hit.track.id, hit.scores) for hit in rec.search("sad piano", k=3)]
    assert [i for i, _ in found] == [e["id"] for e in expected]
    for (_, scores), e in zip(found, expected, strict=True):
        assert scores == pytest.approx(e["scores"])
    names = {p.name for p in (tmp_path / "lib").iterdir()} - {"write.lock", "writer.json"}
    assert names - {"library.sqlite-shm", "library.sqlite-wal", "indexes"} == {"library.sqlite"}
    assert rec.ids() == ["rain", "drive", "storm"]
    encoder = rec.fields["description"]
    assert isinstance(encoder, KeywordEncoder)
    encoder.calls.clear()
    rec.add([rec.get("rain")])  # the vectors and content hashes came along: nothing to encode
    assert encoder.calls == []
    assert len(Recommender.load(tmp_path / "lib")) == 3


def test_a_busy_library_is_converted_once(keyword_plugin: None, tmp_path: Path) -> None:
    shutil.copytree(FORMAT_1, tmp_path / "lib")
    with WriterLock(tmp_path / "lib").hold(timeout=1):
        pass
    first, second = Recommender.load(tmp_path / "lib"), Recommender.load(tmp_path / "lib")
    assert first.ids() == second.ids() == ["rain", "drive", "storm"]


def test_library_files_follow_the_umask(library: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    for path in library.rglob("*"):
        if path.name in ("write.lock", "writer.json") or path.name.endswith(("-shm", "-wal")):
            continue
        mode = path.stat().st_mode & 0o777
        assert mode == (0o777 if path.is_dir() else 0o666) & ~mask, (path, oct(mode))
