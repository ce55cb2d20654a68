"""Windowed audio fields (``Field(..., windows=True)``): every window's vector in the live
store, a track scored by its best window. A model-free windowed encoder (band energies of
one-second windows) for the store's behaviour; the tiny CLAP for a real encoder's windows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from newwave import Field, Recommender, Track, hookimpl
from newwave.errors import IndexCorruptError, InvalidInputError
from newwave.hookspecs import Register
from newwave.plugins import get_plugin_manager
from newwave.search.windows import WindowChannel

from .conftest import KeywordEncoder

RATE = 8000


class BandWindows(KeywordEncoder):
    """``keyword``'s band energies, of each one-second window too (``encode_audio_windows``)."""

    name = "bands"

    def encode_audio_windows(self, audio: Any) -> list[np.ndarray]:
        out = []
        for item in audio:
            samples, rate = sf.read(item, dtype="float32")
            cuts = [samples[s : s + rate] for s in range(0, len(samples) - rate + 1, rate)]
            out.append(self.encode_audio([(c, rate) for c in cuts]))
        return out


class BandsPlugin:
    @hookimpl
    def register_encoders(self, register: Register) -> None:
        register(BandWindows)


@pytest.fixture
def bands() -> Iterator[None]:
    get_plugin_manager().register(BandsPlugin(), name="test-bands")
    try:
        yield
    finally:
        get_plugin_manager().unregister(name="test-bands")


def _tone(seconds: int, freq: float) -> np.ndarray:
    t = np.arange(seconds * RATE) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, *parts: np.ndarray) -> str:
    sf.write(path, np.concatenate(parts), RATE)
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Tones, one second per window: ``long`` holds 440 Hz for one second among eight of noise,
    ``drone`` 30 s of 1530 Hz."""
    noise = np.random.default_rng(0).standard_normal(8 * RATE).astype(np.float32) * 0.3
    return {
        "long": _write(tmp_path / "long.wav", noise[: 4 * RATE], _tone(1, 440), noise[4 * RATE :]),
        "low": _write(tmp_path / "low.wav", _tone(3, 200)),
        "high": _write(tmp_path / "high.wav", _tone(3, 1500)),
        "mix": _write(tmp_path / "mix.wav", _tone(1, 700), _tone(2, 1500)),
        "drone": _write(tmp_path / "drone.wav", _tone(30, 1530)),
        "query": _write(tmp_path / "query.wav", _tone(1, 440)),
    }


def _library(files: dict[str, str], **options: Any) -> Recommender:
    rec = Recommender(
        {"audio": "bands", "parts": Field("bands", "audio", windows=True)}, fuser="rrf", **options
    )
    rec.add(
        [
            Track(id=i, audio=files[i], metadata={"kind": "tone" if i != "long" else "noise"})
            for i in ("long", "low", "high", "mix")
        ]
    )
    return rec


def _windowed(rec: Recommender) -> WindowChannel:
    channel = rec._channels["parts"]
    assert isinstance(channel, WindowChannel)
    return channel


def _ids(hits: Any) -> list[str]:
    return [h.track.id for h in hits]


def test_a_snippet_matches_the_best_window_not_the_mean(bands: None, files: dict[str, str]) -> None:
    rec = _library(files)
    hits = rec.search_audio(files["query"], k=4, depth=4)
    by_id = {h.track.id: h.scores for h in hits}
    assert by_id["long"]["parts"] == pytest.approx(1.0, abs=1e-5)  # its fifth second
    assert by_id["long"]["audio"] < 0.5  # its mean is mostly noise
    assert max(by_id, key=lambda i: by_id[i]["parts"]) == "long"
    assert hits[0].track.id == "long"
    channel = _windowed(rec)
    assert channel.windows == {1: 9, 2: 3, 3: 3, 4: 3}  # track label -> windows
    # the pooled vector is the mean of the windows; similar() searches the windows with it
    assert rec.vectors("parts", ["low"]) @ rec.vectors("audio", ["low"]).T == pytest.approx(1.0)
    similar = {h.track.id: h.scores for h in rec.similar("high", k=3)}
    assert similar["mix"]["parts"] == pytest.approx(1.0, abs=1e-5)  # its last two seconds
    assert "high" not in similar


def test_enough_window_hits_are_asked_for_k_tracks(
    bands: None, files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from newwave.search.searcher import audio_query

    rec = _library(files)
    rec.add([Track(id="drone", audio=files["drone"], metadata={"kind": "tone"})])
    channel = _windowed(rec)
    assert channel.index is not None
    store = rec._library.store
    asked: list[int] = []
    search = channel.index.search_labelled

    def spy(vector: Any, k: int, **options: Any) -> Any:
        asked.append(k)
        return search(vector, k, **options)

    monkeypatch.setattr(channel.index, "search_labelled", spy)
    found = channel.search(store, audio_query(files["drone"]), depth=2, among=None)
    # 48 windows of 5 tracks: 20 window hits first, all the drone's; then all 48
    assert asked == [20, 48]
    assert len(found.ids) == 2
    assert found.ids[0] == "drone"
    assert found.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert found.scores[1] < found.scores[0]
    asked.clear()
    among = store.matching({"kind": "noise"})
    limited = channel.search(store, audio_query(files["query"]), depth=3, among=among)
    assert list(limited.ids) == ["long"]
    assert asked == [9]  # only the windows of "long"


def test_windows_live_in_the_database_and_follow_adds_and_removes(
    bands: None, files: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    _library(files).save(root)
    assert (root / "indexes" / "parts" / "checkpoint.json").is_file()
    writer, reader = Recommender.load(root), Recommender.load(root)
    assert writer.config.fields["parts"].windows
    assert not writer.config.fields["audio"].windows

    def rows() -> dict[str, int]:
        with sqlite3.connect(root / "library.sqlite") as db:
            found = db.execute(
                "SELECT t.id, length(w.vectors) FROM windows AS w JOIN tracks AS t "
                "ON t.label = w.label WHERE w.channel = 'parts'"
            ).fetchall()
        return {i: n // (4 * 64) for i, n in found}

    assert rows() == {"long": 9, "low": 3, "high": 3, "mix": 3}
    assert _ids(reader.search_audio(files["query"], k=1)) == ["long"]
    writer.remove(["long"])  # one transaction: the track, its entries and its windows
    assert "long" not in rows()
    assert "long" not in _ids(reader.search_audio(files["query"], k=4))  # the reader caught up
    _write(Path(files["low"]), _tone(2, 200), _tone(1, 440))  # the file changed: embedded again
    writer.add([Track(id="low", audio=files["low"])])
    assert rows()["low"] == 3
    hit = reader.search_audio(files["query"], k=1)[0]
    assert hit.track.id == "low"
    assert hit.scores["parts"] == pytest.approx(1.0, abs=1e-5)
    reopened = Recommender.load(root)  # the checkpoint, then the rows written since
    assert _windowed(reopened).windows == _windowed(writer).windows
    for rec in (writer, reader, reopened):
        assert _windowed(rec).total == sum(_windowed(writer).windows.values()) == 9
    assert _ids(reopened.search_audio(files["query"], k=3)) == _ids(
        writer.search_audio(files["query"], k=3)
    )


def test_a_damaged_window_count_file_is_an_error_and_repair_rebuilds_it(
    bands: None, files: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    _library(files).save(root)
    (counts,) = (root / "indexes" / "parts").glob("*/windows.safetensors")
    counts.write_bytes(counts.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(IndexCorruptError, match=r"windows\.safetensors"):
        Recommender.load(root)
    assert Recommender.repair(root) == {"audio": 4, "parts": 4}
    assert _ids(Recommender.load(root).search_audio(files["query"], k=1)) == ["long"]


def test_bad_windowed_fields_are_refused(
    bands: None, keyword_plugin: None, files: dict[str, str]
) -> None:
    with pytest.raises(InvalidInputError, match="only an audio field keeps window vectors"):
        Recommender({"description": Field("bands", windows=True)})
    with pytest.raises(InvalidInputError, match="gives no window vectors"):
        Recommender({"audio": Field("keyword", windows=True)})
    with pytest.raises(InvalidInputError, match="windows must be True or False"):
        Field("bands", windows="yes")  # type: ignore[arg-type]
    rec = Recommender({"audio": Field("bands", windows=True)})
    with pytest.raises(InvalidInputError, match="windowed channel"):
        rec.add([Track(id="a", audio=files["low"])], vectors={"audio": np.ones((1, 64))})
    assert len(rec) == 0


# -- newwave index --windows ---------------------------------------------------------------------


def test_the_cli_makes_a_windowed_field_and_keeps_it(
    tmp_path: Path, bands: None, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from newwave.cli import main

    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("long", "low", "high"):
        Path(files[name]).rename(folder / f"{name}.wav")
    lib = str(tmp_path / "lib")
    argv = ["index", str(folder), lib, "--field", "audio=bands"]
    hybrid = ["index", str(folder), str(tmp_path / "other"), "--field", "audio=bm25,bands"]
    assert main([*argv, "--windows", "audio"]) == 0, capsys.readouterr().err
    assert Recommender.load(lib).saved_config.fields["audio"].windows
    hits = Recommender.load(lib).search_audio(files["query"], k=1)
    assert hits[0].track.id == "long.wav"  # its best window, not its mean of noise
    assert main([*argv, "--windows", "audio"]) == 0  # the same setup again
    capsys.readouterr()
    for wrong, message in [
        (argv, "was made with --windows audio; --windows cannot change"),
        ([*argv, "--windows", "tags"], "--windows tags: no --field tags=ENCODER is given"),
        ([*hybrid, "--windows", "audio"], "--windows audio: a windowed field has one encoder"),
    ]:
        assert main(wrong) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
