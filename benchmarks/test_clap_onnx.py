"""CLAP's towers on ONNX Runtime (float32 and int8) against its torch path, on the CPU.

No CLAP weights can be downloaded here, so the model is randomly initialised with the sizes of
``laion/clap-htsat-unfused``: the audio tower is ClapAudioConfig's default (HTSAT-tiny, 64 mel
bins, 10 s windows at 48 kHz, 28M parameters), the text tower a RoBERTa-base (12 layers of 768,
with a byte-level BPE vocabulary of 2,000 pieces trained on the captions below instead of 50k
pieces), projections to 512. The figures are about the runtime, not about the quality of
the vectors; the smallest cosine to torch's vectors is recorded all the same (``extra_info``).

* ``encode 32 captions``: ``ClapEncoder.encode_text`` on captions of the bundled MusicCaps
  demo, ``backend="torch"`` (the baseline), ``"onnx"`` and ``"onnx", quantize="int8"``, same
  batch size (16) and threads.
* ``encode 8 tracks (24 windows)``: ``encode_audio`` on eight 25 s waveforms (three windows
  each; resampling, windows, log-mel features and pooling included, the same for all three).

Under ``--benchmark-disable`` the model is tiny (two layers of 32, an HTSAT of 50k parameters)
and the groups encode 8 captions and 2 tracks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from newwave.cli import demo_tracks
from newwave.encoders import _onnx
from newwave.encoders.clap import ClapEncoder
from newwave.types import Waveform

SR = 48000
CAPTIONS = [track.description or "" for track in demo_tracks()]
VARIANTS = {"onnx-float32": None, "onnx-int8": "int8"}
GROUP_TEXT = "encode 32 captions, CLAP text tower (RoBERTa-base size, random), CPU"
GROUP_AUDIO = "encode 8 tracks (24 windows), CLAP audio tower (HTSAT-tiny, random), CPU"


def _save_random_clap(directory: Path, *, small: bool) -> Path:
    """A random CLAP of the LAION sizes (or a tiny one when ``small``), saved with its processor."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        CAPTIONS,
        trainers.BpeTrainer(
            vocab_size=2000,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = transformers.RobertaTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", sep_token="</s>", cls_token="<s>",
        model_max_length=512,
    )  # fmt: skip
    if small:
        text: dict[str, Any] = {
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 514,
        }  # fmt: skip
        audio: dict[str, Any] = {
            "spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 16,
            "hidden_size": 32, "depths": [1, 1], "num_attention_heads": [1, 2],
            "num_hidden_layers": 2, "window_size": 4,
        }  # fmt: skip
        extractor = transformers.ClapFeatureExtractor(
            feature_size=16, hop_length=1920, truncation="rand_trunc", frequency_min=50
        )
        projection = 16
    else:  # RoBERTa-base; ClapAudioConfig's defaults are the LAION HTSAT-tiny tower
        text = {"max_position_embeddings": 514}
        audio = {}
        extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", frequency_min=50)
        projection = 512
    config = transformers.ClapConfig(
        text_config={"vocab_size": len(tokenizer), **text},
        audio_config=audio,
        projection_dim=projection,
    )
    torch.manual_seed(0)
    model: Any = transformers.ClapModel(config)
    model.eval().save_pretrained(directory)
    make_processor: Any = transformers.ClapProcessor  # untyped constructor
    make_processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def _tracks(count: int) -> list[Waveform]:
    """25 s of changing tones over noise each: three windows (0, 10 and 15 s)."""
    out = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        t = np.arange(25 * SR) / SR
        freqs = rng.uniform(100, 4000, size=26)[np.floor(t).astype(int)]
        samples = 0.3 * np.sin(2 * np.pi * freqs * t) + 0.05 * rng.standard_normal(t.size)
        out.append(Waveform(samples.astype(np.float32), SR))
    return out


@pytest.fixture(scope="module")
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The three encoders (exported into the session's temporary folder) and their inputs."""
    small = bool(request.config.getoption("benchmark_disable", False))
    root = tmp_path_factory.mktemp("clap-onnx")
    model = str(_save_random_clap(root / "model", small=small))
    texts = CAPTIONS[: 8 if small else 32]
    tracks = _tracks(2 if small else 8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(_onnx.CACHE_ENV, str(root / "onnx-cache"))
        built = {"torch": ClapEncoder(model=model, device="cpu", batch_size=16)}
        for name, quantize in VARIANTS.items():
            built[name] = ClapEncoder(model=model, backend="onnx", quantize=quantize, batch_size=16)
        for encoder in built.values():  # load, export, warm up
            encoder.encode_text(texts[:2])
            encoder.encode_audio(tracks[:1])
    expected = {
        "text": built["torch"].encode_text(texts),
        "audio": built["torch"].encode_audio(tracks),
    }
    return {"encoders": built, "text": texts, "audio": tracks, "expected": expected}


def _encode(encoder: ClapEncoder, tower: str, inputs: list[Any]) -> Any:
    return encoder.encode_text(inputs) if tower == "text" else encoder.encode_audio(inputs)


@pytest.mark.parametrize("tower", ["text", "audio"])
def test_torch_baseline(benchmark: Any, setup: dict[str, Any], tower: str) -> None:
    benchmark.group = GROUP_TEXT if tower == "text" else GROUP_AUDIO
    encoder, inputs = setup["encoders"]["torch"], setup[tower]
    vectors = benchmark.pedantic(_encode, args=(encoder, tower, inputs), rounds=3, warmup_rounds=1)
    assert vectors.shape == (len(inputs), encoder.dim)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("tower", ["text", "audio"])
def test_onnx(benchmark: Any, setup: dict[str, Any], tower: str, variant: str) -> None:
    benchmark.group = GROUP_TEXT if tower == "text" else GROUP_AUDIO
    encoder, inputs = setup["encoders"][variant], setup[tower]
    vectors = benchmark.pedantic(_encode, args=(encoder, tower, inputs), rounds=3, warmup_rounds=1)
    cosine = float((vectors * setup["expected"][tower]).sum(axis=1).min())
    benchmark.extra_info["min_cosine_to_torch"] = round(cosine, 6)
    assert cosine >= (0.98 if VARIANTS[variant] else 0.9999)
