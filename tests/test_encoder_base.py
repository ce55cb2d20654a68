"""The Encoder contract, enforced by the base class for every plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newwave import (
    AudioDecodeError,
    EmptyQueryError,
    Encoder,
    InvalidInputError,
    MissingFileError,
    NonFiniteVectorError,
    PluginError,
    SkippedInputWarning,
    TruncatedTextWarning,
    UnsupportedModalityError,
    Waveform,
)
from newwave.types import Modality, Role

from .conftest import KeywordEncoder

words = st.text(alphabet="abcdefgh ", min_size=1, max_size=30).filter(lambda s: s.strip())


def _check_contract(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    norms = np.linalg.norm(vectors, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


def test_text_output_follows_the_contract(keyword_encoder: KeywordEncoder) -> None:
    vectors = keyword_encoder.encode_text(["sad piano", "loud guitar solo", "piano"])
    _check_contract(vectors, 3, 64)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]


def test_empty_input_gives_an_empty_matrix(keyword_encoder: KeywordEncoder) -> None:
    _check_contract(keyword_encoder.encode_text([]), 0, 64)
    assert keyword_encoder.calls == []


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(words, min_size=1, max_size=25), batch_size=st.integers(1, 7))
def test_order_is_restored_whatever_the_batching(texts: list[str], batch_size: int) -> None:
    encoder = KeywordEncoder(batch_size=batch_size)
    together = encoder.encode_text(texts)
    one_by_one = np.vstack([encoder.encode_text([t]) for t in texts])
    np.testing.assert_array_equal(together, one_by_one)


def test_batches_are_sorted_longest_first() -> None:
    seen: list[list[str]] = []

    class Recording(KeywordEncoder):
        def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> Any:
            seen.append(list(batch))
            return super()._encode_batch(batch, modality, role)

    Recording(batch_size=2).encode_text(["a", "ccc", "bb", "dddd"])
    assert seen == [["dddd", "ccc"], ["bb", "a"]]


def test_role_reaches_the_plugin(keyword_encoder: KeywordEncoder) -> None:
    keyword_encoder.encode_queries(["q"])
    keyword_encoder.encode_text(["d"])
    assert [role for _, role, _ in keyword_encoder.calls] == ["query", "document"]
    with pytest.raises(InvalidInputError, match="role"):
        keyword_encoder.encode_text(["x"], role="passage")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ("one string", InvalidInputError, "wrap it"),
        (["ok", ""], EmptyQueryError, "text 1 is empty"),
        (["   \n"], EmptyQueryError, "text 0 is empty"),
        (["ok", 3], InvalidInputError, "text 1 is a int"),
    ],
)
def test_bad_text_input(
    keyword_encoder: KeywordEncoder, texts: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        keyword_encoder.encode_text(texts)


def test_bad_batch_size() -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        KeywordEncoder(batch_size=0)
    with pytest.raises(InvalidInputError, match="batch_size"):
        KeywordEncoder().encode_text(["x"], batch_size=-1)
    for wrong in (True, 2.0):  # a bool is not a size, nor is a float
        with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
            KeywordEncoder(batch_size=wrong)
        with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
            KeywordEncoder().encode_text(["x"], batch_size=wrong)  # type: ignore[arg-type]


def test_audio_waveforms_and_pairs(keyword_encoder: KeywordEncoder) -> None:
    t = np.linspace(0, 1, 8000, endpoint=False)
    low, high = np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 3000 * t)
    vectors = keyword_encoder.encode_audio(
        [(low, 8000), Waveform(np.stack([high, high]), 8000), (low * 0.5, 8000)]
    )
    _check_contract(vectors, 3, 64)
    assert vectors[0] @ vectors[2] > 0.99
    assert vectors[0] @ vectors[1] < 0.5


@pytest.mark.parametrize(
    ("item", "error", "match"),
    [
        (np.zeros(100), InvalidInputError, "give its sample rate"),
        ((np.zeros(100), 0), InvalidInputError, "sample rate must be a positive integer"),
        ((np.zeros(100), 44100.0), InvalidInputError, "sample rate must be a positive integer"),
        ((np.zeros(0), 16000), InvalidInputError, "n > 0"),
        ((np.zeros((2, 2, 2)), 16000), InvalidInputError, r"shape \(n,\)"),
        ((np.array([0.0, np.nan]), 16000), InvalidInputError, "NaN"),
        ((np.zeros(10, dtype=np.int16), 16000), InvalidInputError, "floating point"),
        (42, InvalidInputError, "audio 0 is a int"),
    ],
)
def test_bad_audio_input(
    keyword_encoder: KeywordEncoder, item: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        keyword_encoder.encode_audio([item])


def test_missing_audio_file(keyword_encoder: KeywordEncoder, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="no such file"):
        keyword_encoder.encode_audio([tmp_path / "missing.wav"])
    with pytest.raises(InvalidInputError, match="wrap it"):
        keyword_encoder.encode_audio(tmp_path / "missing.wav")  # type: ignore[arg-type]


def test_text_only_encoder_rejects_audio() -> None:
    class TextOnly(KeywordEncoder):
        modalities = frozenset({"text"})

    with pytest.raises(UnsupportedModalityError, match="embeds text, not audio"):
        TextOnly().encode_audio([(np.zeros(10), 100)])


class _Broken(Encoder):
    name = "broken"

    def __init__(self, output: Any):
        super().__init__()
        self.output = output

    @property
    def dim(self) -> int:
        return 4

    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> Any:
        return self.output


@pytest.mark.parametrize(
    ("output", "error", "match"),
    [
        (np.ones((1, 3)), PluginError, "dimension 3, expected 4"),
        (np.ones((2, 4)), PluginError, "returned 2 vectors for 1 inputs"),
        (np.ones(4), PluginError, "must be 2-D"),
        ("garbage", PluginError, "numeric"),
        (np.full((1, 4), np.nan), NonFiniteVectorError, "NaN"),
    ],
)
def test_bad_plugin_output_is_caught(output: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        _Broken(output).encode_text(["x"])


def test_unnormalised_output_is_normalised() -> None:
    vectors = _Broken(np.array([[3.0, 4.0, 0.0, 0.0]])).encode_text(["x"])
    np.testing.assert_allclose(vectors, [[0.6, 0.8, 0.0, 0.0]], rtol=1e-6)


class _Decoding(KeywordEncoder):
    """Decodes "files" in _prepare: a file holding b"bad" is not audio."""

    def _prepare(self, item: Any, modality: Modality) -> Any:
        if isinstance(item, str):
            if Path(item).read_bytes() == b"bad":
                raise AudioDecodeError("not an audio file")
            return Waveform(np.sin(np.arange(800) * len(item)), 8000)
        return item


def _files(tmp_path: Path, contents: list[bytes]) -> list[str]:
    paths = []
    for i, content in enumerate(contents):
        path = tmp_path / f"track{i:03d}.mp3"
        path.write_bytes(content)
        paths.append(str(path))
    return paths


def test_a_bad_file_is_named_in_the_error(tmp_path: Path) -> None:
    paths = _files(tmp_path, [b"ok", b"ok", b"bad", b"ok"])
    with pytest.raises(AudioDecodeError, match=r"audio 2 \(.*track002\.mp3\): not an audio file"):
        _Decoding(batch_size=2).encode_audio(paths)


def test_bad_and_missing_files_can_be_skipped(tmp_path: Path) -> None:
    paths = _files(tmp_path, [b"ok"] * 998 + [b"bad"])
    paths.insert(500, str(tmp_path / "missing.mp3"))
    encoder = _Decoding(batch_size=64)
    with pytest.warns(SkippedInputWarning, match="skipped 2 audio input") as record:
        vectors = encoder.encode_audio(paths, on_error="skip")
    assert vectors.shape == (1000, 64)
    norms = np.linalg.norm(vectors, axis=1)
    assert np.flatnonzero(norms == 0).tolist() == [500, 999]
    assert np.allclose(np.delete(norms, [500, 999]), 1.0, atol=1e-5)
    warning = record[0].message
    assert isinstance(warning, SkippedInputWarning)
    assert [(i, type(e)) for i, _, e in warning.failures] == [
        (500, MissingFileError),
        (999, AudioDecodeError),
    ]
    # The rows that were encoded equal encoding those inputs alone.
    np.testing.assert_allclose(vectors[:3], encoder.encode_audio(paths[:3]), atol=1e-6)


def test_on_error_is_checked(keyword_encoder: KeywordEncoder) -> None:
    with pytest.raises(InvalidInputError, match="on_error"):
        keyword_encoder.encode_audio([], on_error="ignore")  # type: ignore[arg-type]


def test_progress_bar_is_off_by_default_when_not_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    KeywordEncoder(batch_size=1).encode_text(["a", "b", "c"])
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    KeywordEncoder(batch_size=1).encode_text(["a", "b"], show_progress_bar=True)
    assert "keyword text" in capsys.readouterr().err
    KeywordEncoder(batch_size=1).encode_text(["a", "b"], show_progress_bar=False)
    assert capsys.readouterr().err == ""


# -- long text: documents refused past max_text_chars, queries cut with a warning -------------


def test_a_document_past_the_limit_is_refused_with_its_size() -> None:
    encoder = KeywordEncoder()
    text = "piano " * 20_000  # 120 000 characters
    with pytest.raises(InvalidInputError) as info:
        encoder.encode_text(["short", text])
    message = str(info.value)
    assert message.startswith("text 1 has 120,000 characters, more than encoder 'keyword' takes")
    assert "max_text_chars=100,000" in message
    assert "NEWWAVE_MAX_TEXT_CHARS" in message
    assert encoder.calls == []  # refused before any work
    encoder.max_text_chars = 200_000
    assert encoder.encode_text([text]).shape == (1, 64)


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = KeywordEncoder()
    monkeypatch.setenv("NEWWAVE_MAX_TEXT_CHARS", "10")
    assert encoder.text_limit_chars() == 10
    with pytest.raises(InvalidInputError, match=r"\(max_text_chars=10\);"):
        encoder.encode_text(["eleven char"])
    encoder.max_text_chars = 11  # the instance's own value wins
    assert encoder.encode_text(["eleven char"]).shape == (1, 64)
    monkeypatch.setenv("NEWWAVE_MAX_TEXT_CHARS", "lots")
    with pytest.raises(InvalidInputError, match="NEWWAVE_MAX_TEXT_CHARS must be a positive"):
        KeywordEncoder().encode_text(["x"])


def test_a_long_query_is_cut_to_the_limit_with_one_warning() -> None:
    encoder = KeywordEncoder()
    encoder.max_text_chars = 20
    queries = ["piano ballad " * 10, "short", "guitar solo " * 10]
    with pytest.warns(TruncatedTextWarning) as record:
        vectors = encoder.encode_queries(queries)
    assert len(record) == 1
    warning = record[0].message
    assert isinstance(warning, TruncatedTextWarning)
    assert warning.truncated == [(0, 130, 20), (2, 120, 20)]
    assert "query 0: 20 of 130" in str(warning)
    cut = encoder.encode_queries([q[:20] for q in queries])
    np.testing.assert_array_equal(vectors, cut)
