"""The bge-m3 encoder, on a tiny random XLM-RoBERTa model and tokenizer built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from newwave.encoders.bge_m3 import BGEM3Encoder
from newwave.errors import InvalidInputError
from newwave.plugins import load_encoder

HIDDEN = 32
CORPUS = [
    "sad piano ballad about the rain",
    "aggressive metal riff with loud drums",
    "a melancholic piano song at night",
    "happy pop song for a summer road trip",
    "jazz trio with brushes and upright bass",
    "ambient synth pads, slow and dreamy",
]
LONG = " ".join(CORPUS)  # about 150 tokens


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer XLM-RoBERTa with a unigram tokenizer, saved like bge-m3."""
    directory = tmp_path_factory.mktemp("tiny-bge-m3")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0..4
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token="<unk>")
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer_class = getattr(transformers, "XLMRobertaTokenizerFast", None) or (
        transformers.XLMRobertaTokenizer
    )
    tokenizer = tokenizer_class(tokenizer_object=backend, model_max_length=64)
    tokenizer.save_pretrained(directory)

    config = transformers.XLMRobertaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,  # 64 tokens + XLM-R's position offset, as bge-m3's 8194
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        initializer_range=0.5,  # far from the default 0.02, so that the CLS token feels its context
    )
    torch.manual_seed(0)
    transformers.XLMRobertaModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path):
    """The bge-m3 dense recipe written out: the CLS (first) token's hidden state, L2-normalised."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    model = transformers.AutoModel.from_pretrained(tiny_model_dir).eval()

    def embed(text: str, max_length: int = 64) -> np.ndarray:
        inputs = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            cls = np.asarray(model(**inputs).last_hidden_state[0, 0].numpy(), dtype=np.float64)
        return np.asarray(cls / np.linalg.norm(cls))

    def mean_pooled(text: str) -> np.ndarray:
        with torch.no_grad():
            hidden = model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]
        return np.asarray(hidden.mean(dim=0).numpy(), dtype=np.float64)

    embed.tokenizer = tokenizer  # type: ignore[attr-defined]
    embed.mean_pooled = mean_pooled  # type: ignore[attr-defined]
    return embed


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> BGEM3Encoder:
    built = load_encoder("bge-m3", model=str(tiny_model_dir), device="cpu")
    assert isinstance(built, BGEM3Encoder)
    return built


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_dim_is_the_hidden_size(encoder: BGEM3Encoder) -> None:
    assert encoder.dim == HIDDEN
    vectors = encoder.encode_text(CORPUS)
    assert vectors.shape == (len(CORPUS), HIDDEN)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_cls_pooling_matches_the_reference(encoder: BGEM3Encoder, reference) -> None:
    vectors = encoder.encode_text(CORPUS, batch_size=4)
    for text, vector in zip(CORPUS, vectors, strict=True):
        assert _cos(vector, reference(text)) > 0.9999
        assert _cos(vector, reference.mean_pooled(text)) < 0.99  # the pooling is told apart
    assert _cos(vectors[0], vectors[1]) < 0.99  # and so are the texts


def test_long_text_is_truncated_at_max_length(tiny_model_dir: Path, reference) -> None:
    assert len(reference.tokenizer(LONG, verbose=False)["input_ids"]) > 64
    short = BGEM3Encoder(model=tiny_model_dir, device="cpu", max_length=16)
    (vector,) = short.encode_text([LONG])
    assert _cos(vector, reference(LONG, max_length=16)) > 0.9999
    (extended,) = short.encode_text([LONG + " and a different ending entirely"])
    np.testing.assert_allclose(extended, vector, atol=1e-6)  # the excess is ignored
    assert _cos(vector, reference(LONG, max_length=64)) < 0.99


def test_max_length_is_capped_at_the_model_limit(encoder: BGEM3Encoder, reference) -> None:
    assert encoder.max_length == 8192  # the default; the tiny model takes 64 tokens
    (vector,) = encoder.encode_text([LONG])
    assert _cos(vector, reference(LONG, max_length=64)) > 0.9999


def test_batch_composition_does_not_matter(encoder: BGEM3Encoder) -> None:
    (alone,) = encoder.encode_text([CORPUS[2]])
    batch = encoder.encode_text([LONG, CORPUS[0], CORPUS[2], "bass"], batch_size=3)
    np.testing.assert_allclose(batch[2], alone, atol=1e-6)


def test_bfloat16_on_cpu_is_close_to_float32(tiny_model_dir: Path, encoder: BGEM3Encoder) -> None:
    half = BGEM3Encoder(model=tiny_model_dir, device="cpu", dtype="bfloat16")
    low = half.encode_text(CORPUS[:3])
    assert low.dtype == np.float32
    assert np.all(np.sum(low * encoder.encode_text(CORPUS[:3]), axis=1) > 0.98)


def test_float16_on_cpu_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"float16.*GPU"):
        BGEM3Encoder(device="cpu", dtype="float16")


def test_defaults_and_config() -> None:
    encoder = BGEM3Encoder(device="cpu")
    assert encoder.model_id == "BAAI/bge-m3"
    assert encoder.dim == 1024
    assert encoder._state is None  # the default's dim needs no loading
    config = encoder.get_config()
    assert config == {
        "model": "BAAI/bge-m3",
        "max_length": 8192,
        "dtype": "float32",
        "batch_size": 8,
    }
    assert BGEM3Encoder(**config).get_config() == config


def test_a_multilingual_hybrid_field_is_one_option_away(encoder: BGEM3Encoder) -> None:
    """``fields={"tags": ["bm25", "bge-m3"]}``: the dense channel ranks what BM25 cannot read."""
    from newwave import Recommender, Track

    rec = Recommender(fields={"tags": ["bm25", encoder]})
    rec.add([Track(id=str(i), tags=tuple(text.split(", "))) for i, text in enumerate(CORPUS)])
    hits = rec.search("грустная баллада про дождь", k=3)  # no word BM25 knows
    assert len(hits) == 3
    dense = [name for name in hits[0].scores if name.startswith("tags:") and "bm25" not in name]
    assert dense
    assert all(dense[0] in hit.scores for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
