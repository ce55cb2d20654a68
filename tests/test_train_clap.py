"""The CLAP trainer: it learns, it serves what it trained, and its curriculum survives a resume.

A tiny, randomly initialised CLAP (8 kHz audio, 16 mel bins, a BPE tokenizer of the captions'
words) learns synthetic tones: each tone's pitch (low/high), rhythm (steady/pulsing) and timbre
(sine/square) are named by its caption. Tones of one class share their caption's meaning, so
retrieval is scored by class: a caption is answered right when the top track has its class.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from newwave.cli import main
from newwave.encoders.clap import ClapEncoder
from newwave.errors import InvalidInputError, MissingFileError
from newwave.metrics import evaluate_embeddings
from newwave.plugins import load_encoder
from newwave.train import LoopConfig, load_config
from newwave.train.clap import (
    ClapConfig,
    ClapData,
    ClapResult,
    _Batch,
    _ClapTask,
    _split,
    evaluate_clap,
    train_clap,
)
from newwave.train.curriculum import Curriculum, Stage
from newwave.train.loop import Progress
from newwave.types import Waveform
from tests.tiny_models import tiny_roberta_tokenizer

SR = 8000
PITCHES = {"low": (150.0, 200.0), "high": (1000.0, 1300.0)}
RHYTHMS = ("steady", "pulsing")
TIMBRES = ("sine", "square")
CLASSES = list(itertools.product(PITCHES, RHYTHMS, TIMBRES))
TEMPLATES = ("a {pitch} {rhythm} {timbre} tone", "{rhythm} {timbre} wave, {pitch} pitch")
POSITIONS = 64  # the tiny text model's max_position_embeddings: 62 usable tokens


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tone(pitch: str, rhythm: str, timbre: str, seconds: float, rng: np.random.Generator) -> Any:
    """A tone of the class: a sine or square wave, steady or gated in 2-3 Hz pulses."""
    t = np.arange(round(seconds * SR)) / SR
    low, high = PITCHES[pitch]
    phase = 2 * np.pi * rng.uniform(low, high) * t + rng.uniform(0, 2 * np.pi)
    wave = np.sin(phase) if timbre == "sine" else 0.6 * np.sign(np.sin(phase))
    if rhythm == "pulsing":
        wave = wave * ((t * rng.uniform(2.0, 3.0) + rng.uniform(0, 1)) % 1.0 < 0.3)
    x = rng.uniform(0.2, 0.5) * wave + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def tones(count: int, seed: int, seconds: float = 2.5) -> tuple[ClapData, list[int]]:
    """``count`` captioned tones, the classes in turn, and each tone's class."""
    rng = np.random.default_rng(seed)
    audio: list[Any] = []
    captions, classes = [], []
    for i in range(count):
        c = i % len(CLASSES)
        pitch, rhythm, timbre = CLASSES[c]
        audio.append(Waveform(tone(pitch, rhythm, timbre, seconds, rng), SR))
        template = TEMPLATES[(i // len(CLASSES)) % len(TEMPLATES)]
        captions.append(template.format(pitch=pitch, rhythm=rhythm, timbre=timbre))
        classes.append(c)
    tracks = [f"s{seed}-t{i}" for i in range(count)]
    return ClapData.from_pairs(audio, captions, tracks=tracks), classes


def class_metrics(encoder: ClapEncoder, data: ClapData, classes: list[int]) -> dict[str, float]:
    """Captions over their tracks, a track relevant when it has the caption's class."""
    tracks = encoder.encode_audio([data.audio[t] for t in data.track_ids])
    queries = encoder.encode_queries(list(data.captions))
    relevant = [[j for j, d in enumerate(classes) if d == c] for c in classes]
    return evaluate_embeddings(queries, tracks, relevant, ["hit_rate@1", "mrr"]).as_dict()


def build_tiny_clap(directory: Path) -> Path:
    """A randomly initialised CLAP for 8 kHz audio in 10 s windows, saved with its processor."""
    words = " ".join([*PITCHES, *RHYTHMS, *TIMBRES, "a tone wave, pitch"])
    tokenizer = tiny_roberta_tokenizer([words] * 20, vocab_size=300)
    # hop 320 at 8 kHz: 251 frames of 16 mel bins per 10 s, an HTSAT with spec_size 64.
    extractor = transformers.ClapFeatureExtractor(
        feature_size=16, sampling_rate=SR, hop_length=320, max_length_s=10, fft_window_size=256,
        frequency_min=50, frequency_max=4000, truncation="rand_trunc", padding="repeatpad",
    )  # fmt: skip
    config = transformers.ClapConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": POSITIONS,
        },
        audio_config={
            "spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 16,
            "hidden_size": 32, "depths": [1, 1], "num_attention_heads": [1, 2],
            "num_hidden_layers": 2, "window_size": 4,
        },
        projection_dim=64,  # narrower projections (with their ReLU) learn much more slowly
    )  # fmt: skip
    torch.manual_seed(0)
    model: Any = transformers.ClapModel(config)
    model.eval().save_pretrained(directory)
    make_processor: Any = transformers.ClapProcessor  # untyped constructor
    make_processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


def tiny_config(output_dir: Path, model: Path, **loop: Any) -> ClapConfig:
    settings = {"epochs": 50, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 10,
                "eval_every": 50, "selection_metric": "hit_rate@1", "loggers": (),
                **loop}  # fmt: skip
    return ClapConfig(
        output_dir=output_dir,
        model=str(model),
        curriculum=Curriculum(
            start_seconds=10, target_seconds=30, start_tokens=8, target_tokens=16, steps=50
        ),
        loop=LoopConfig.model_validate(settings),
        validation_fraction=0.1,
        test_fraction=0.1,
        metrics=("hit_rate@1", "mrr@10"),
    )


@pytest.fixture(scope="module")
def learned(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, one_torch_thread: None
) -> tuple[ClapResult, ClapData, list[int], dict[str, float]]:
    data, classes = tones(48, seed=0)
    before = class_metrics(ClapEncoder(model=model_dir, device="cpu"), data, classes)
    output = tmp_path_factory.mktemp("clap-run")
    return train_clap(tiny_config(output, model_dir), data=data), data, classes, before


# -- learning, and serving what was learned -------------------------------------------------------


def test_retrieval_of_the_training_pairs_rises_far_above_chance(
    learned: tuple[ClapResult, ClapData, list[int], dict[str, float]],
) -> None:
    result, data, classes, before = learned
    after = class_metrics(result.encoder, data, classes)
    assert before["hit_rate@1"] < 0.3  # chance: 1 / 8
    assert after["hit_rate@1"] > 0.6
    assert after["mrr"] > before["mrr"] + 0.3
    assert set(result.comparison) == {"base", "fine-tuned"}
    assert result.held_out == "test"
    assert result.training.steps == 100
    assert result.training.best_step in [int(h["step"]) for h in result.training.history]


@pytest.mark.filterwarnings("ignore::newwave.errors.TruncatedTextWarning")  # the second text
def test_training_and_serving_embed_alike(
    learned: tuple[ClapResult, ClapData, list[int], dict[str, float]], model_dir: Path
) -> None:
    result, data, _, _ = learned
    served = load_encoder("clap", **{**result.encoder_options, "device": "cpu"})
    assert isinstance(served, ClapEncoder)
    assert served.windowing.max_windows == 3  # the curriculum's last stage: 30 s
    rng = np.random.default_rng(7)
    audio = [Waveform(tone("low", "pulsing", "square", 47.0, rng), SR),  # five windows: three
             Waveform(tone("high", "steady", "sine", 3.0, rng), 22050)]  # fmt: skip
    texts = ["a high pulsing sine tone", "square wave, low pitch " * 12]  # the second: truncated
    np.testing.assert_allclose(result.encoder.encode_audio(audio), served.encode_audio(audio),
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(result.encoder.encode_queries(texts), served.encode_text(texts),
                               atol=1e-5)  # fmt: skip
    # The loss's differentiable path, in eval mode, at the curriculum's end: the same vectors.
    config = tiny_config(result.training.output_dir, model_dir)
    task = _ClapTask(result.encoder, data, _split(data, config), config, config.curriculum)
    task.module.eval()
    with torch.no_grad():
        trained_audio = task.embed_audio(served._check_audio(audio), config.curriculum.final)
        trained_texts = task.embed_captions(texts, config.curriculum.final)
    np.testing.assert_allclose(trained_audio.numpy(), served.encode_audio(audio), atol=1e-5)
    np.testing.assert_allclose(trained_texts.numpy(), served.encode_text(texts), atol=1e-5)


def test_the_run_saves_a_clap_directory_and_its_serving_options(
    learned: tuple[ClapResult, ClapData, list[int], dict[str, float]],
) -> None:
    result = learned[0]
    model_dir = result.model_dir
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"):
        assert (model_dir / name).is_file(), name
    saved = load_file(model_dir / "model.safetensors")
    learned_scale = float(result.encoder.torch_model().logit_scale_t.detach())
    assert float(saved["logit_scale_t"]) == float(saved["logit_scale_a"]) == learned_scale
    assert learned_scale != pytest.approx(math.log(1 / 0.07))  # the learned temperature
    output = result.training.output_dir
    options = json.loads((output / "encoder.json").read_text())
    assert options == {"name": "clap", "options": result.encoder_options}
    assert options["options"]["model"] == str(model_dir)
    comparison = json.loads((output / "comparison.json").read_text())
    assert comparison["held_out"] == "test"
    assert comparison["fine-tuned"] == result.comparison["fine-tuned"]
    summary = result.summary()
    assert summary.startswith("test tracks:\n")
    assert "\nfine-tuned " in summary
    assert f"load_encoder('clap', model='{model_dir}', max_windows=3, max_text_length=16)" in (
        summary
    )


# -- the loss -------------------------------------------------------------------------------------


def task_for(model_dir: Path, data: ClapData, curriculum: Curriculum) -> _ClapTask:
    config = tiny_config(Path("unused"), model_dir).model_copy(update={"curriculum": curriculum})
    encoder = ClapEncoder(model=model_dir, device="cpu", max_windows=3)
    return _ClapTask(encoder, data, _split(data, config), config, curriculum)


def test_captions_of_one_track_are_not_each_other_s_negatives(model_dir: Path) -> None:
    data, _ = tones(8, seed=1)
    task = task_for(model_dir, data, Curriculum(target_seconds=10, start_tokens=9, target_tokens=9))
    one, two = data.track_ids[:2]
    same = _Batch(captions=["a low tone", "low sine", "a sine tone"], tracks=[one, one, one])
    mixed = _Batch(captions=["a low tone", "low sine", "a sine tone"], tracks=[one, one, two])
    with torch.no_grad():
        assert float(task.loss(same, Progress(0, 0, 10))) == 0.0  # only the positives are left
        assert float(task.loss(mixed, Progress(0, 0, 10))) > 0.0


def test_the_curriculum_sets_each_batch_s_windows_and_tokens(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = tones(8, seed=2, seconds=45.0)
    curriculum = Curriculum(start_seconds=10, target_seconds=40, start_tokens=6,
                            target_tokens=30, start_step=2, steps=6)  # fmt: skip
    task = task_for(model_dir, data, curriculum)
    seen: list[tuple[int, int]] = []
    encoder = task.encoder
    features, tokenize = encoder.window_features, encoder.tokenize

    def count_windows(windows: Any) -> Any:
        seen.append((len(windows), -1))
        return features(windows)

    def count_tokens(texts: Any, max_length: int | None = None) -> Any:
        tokens = tokenize(texts, max_length)
        seen[-1] = (seen[-1][0], int(tokens["input_ids"].shape[1]))
        return tokens

    monkeypatch.setattr(encoder, "window_features", count_windows)
    monkeypatch.setattr(encoder, "tokenize", count_tokens)
    batch = _Batch(captions=[" ".join(["low"] * 40)] * 2, tracks=list(data.track_ids[:2]))
    with torch.no_grad():
        for step in (0, 2, 5, 8, 20):
            task.loss(batch, Progress(step, 0, 30))
    # windows of the two tracks; tokens: the whole caption is longer than every stage's limit
    assert seen == [(2, 6), (2, 6), (4, 18), (8, 30), (8, 30)]
    assert task.log_values()["audio_seconds"] == 40.0
    with pytest.raises(InvalidInputError, match="max_length"):
        tokenize(["low"], POSITIONS)  # past the text model's limit (62)


# -- the curriculum -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    start=st.tuples(st.floats(1, 600), st.integers(3, 1024)),
    target=st.tuples(st.floats(1, 600), st.integers(3, 1024)),
    start_step=st.integers(0, 50),
    steps=st.integers(0, 200),
    probes=st.lists(st.integers(0, 400), min_size=2, max_size=10),
)
def test_the_curriculum_ramps_linearly_between_its_ends(
    start: tuple[float, int],
    target: tuple[float, int],
    start_step: int,
    steps: int,
    probes: list[int],
) -> None:
    curriculum = Curriculum(start_seconds=start[0], start_tokens=start[1],
                            target_seconds=target[0], target_tokens=target[1],
                            start_step=start_step, steps=steps)  # fmt: skip
    assert curriculum.at(0).audio_seconds == (
        start[0] if start_step > 0 or steps > 0 else target[0]
    )
    assert curriculum.final.audio_seconds == pytest.approx(target[0])
    assert curriculum.final.text_tokens == target[1]
    low_s, high_s = sorted((start[0], target[0]))
    low_t, high_t = sorted((start[1], target[1]))
    stages = [curriculum.at(step) for step in sorted(probes)]
    for stage in stages:
        assert low_s - 1e-9 <= stage.audio_seconds <= high_s + 1e-9
        assert low_t <= stage.text_tokens <= high_t
        if stage.step <= start_step:
            assert stage.audio_seconds == start[0] or (steps == 0 and stage.step == start_step)
    direction = 1 if target[0] >= start[0] else -1
    for a, b in itertools.pairwise(stages):  # monotone towards the target
        assert direction * (b.audio_seconds - a.audio_seconds) >= -1e-9
    if steps >= 2:
        middle = curriculum.at(start_step + steps // 2)
        expected = start[0] + (steps // 2) / steps * (target[0] - start[0])
        assert middle.audio_seconds == pytest.approx(expected)


def test_stage_windows_capping_and_checkpoint_state() -> None:
    assert [Stage(0, s, 77).windows(10.0) for s in (5, 10, 19.99, 20, 240)] == [1, 1, 1, 2, 24]
    with pytest.raises(InvalidInputError):
        Stage(0, 10, 77).windows(0)
    curriculum = Curriculum()  # 10 s and 77 tokens to 240 s and 512 tokens over 1000 steps
    assert curriculum.at(500) == Stage(500, 125.0, 294)
    capped = curriculum.capped(62)
    assert (capped.start_tokens, capped.target_tokens) == (62, 62)
    state = curriculum.state(curriculum.at(500))
    assert json.loads(json.dumps(state)) == state
    assert curriculum.restore(state) == curriculum.at(500)
    with pytest.raises(InvalidInputError, match="differs"):
        capped.restore(state)
    with pytest.raises(InvalidInputError, match="no curriculum state"):
        curriculum.restore(None)
    with pytest.raises(InvalidInputError):
        curriculum.at(-1)


# -- resume ---------------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_to_the_same_weights_and_stage(
    model_dir: Path, tmp_path: Path, run_until_killed: Callable[..., None]
) -> None:
    data, _ = tones(24, seed=3, seconds=31.0)
    curriculum = Curriculum(start_seconds=10, target_seconds=30, start_tokens=6,
                            target_tokens=14, start_step=1, steps=5)  # fmt: skip
    loop = {"epochs": 3, "batch_size": 8, "warmup_steps": 2, "eval_every": 2, "checkpoint_every": 2}
    config = tiny_config(tmp_path / "whole", model_dir, **loop)
    config = config.model_copy(update={"curriculum": curriculum})
    whole = train_clap(config, data=data)
    cut = config.model_copy(update={"output_dir": tmp_path / "cut"})
    run_until_killed(4, train_clap, cut, data=data)
    saved = json.loads(next((tmp_path / "cut" / "checkpoint").glob("snapshot-*/state.json"))
                       .read_text())["state"]["schedule_state"]  # fmt: skip
    assert saved["stage"] == {"step": 3, "audio_seconds": 18.0, "text_tokens": 9}
    other = cut.model_copy(update={"curriculum": curriculum.model_copy(update={"steps": 6})})
    with pytest.raises(InvalidInputError, match="curriculum"):
        train_clap(other, data=data, resume=True)
    resumed = train_clap(cut, data=data, resume=True)
    assert resumed.training.history == whole.training.history
    weights = resumed.encoder.torch_model().state_dict()
    for name, value in whole.encoder.torch_model().state_dict().items():
        assert torch.equal(weights[name], value), name
    assert resumed.comparison == whole.comparison


# -- data, config and command line ----------------------------------------------------------------


def test_data_from_lists_and_their_checks(tmp_path: Path) -> None:
    wave = Waveform(np.zeros(800, np.float32), SR)
    data = ClapData.from_pairs([wave, wave, (np.ones(80, np.float32), SR)],
                               ["one", "one again", "two"], tracks=["a", "a", "b"],
                               artists=["x", None, None])  # fmt: skip
    assert data.track_ids == ("a", "b")
    assert data.artists == {"a": "x"}
    assert data.caption_tracks == ("a", "a", "b")
    assert isinstance(data.audio["b"], Waveform)
    assert ClapData.from_pairs([wave], ["x"]).track_ids == ("pair-0",)
    with pytest.raises(InvalidInputError, match="other audio"):
        ClapData.from_pairs([wave, (np.ones(80, np.float32), SR)], ["x", "y"], tracks=["a", "a"])
    with pytest.raises(InvalidInputError, match="one entry per pair"):
        ClapData.from_pairs([wave], ["x", "y"])
    with pytest.raises(InvalidInputError, match="caption 1 is empty"):
        ClapData.from_pairs([wave, wave], ["x", " "])
    with pytest.raises(MissingFileError, match="no audio file"):
        ClapData.from_pairs([str(tmp_path / "missing.wav")], ["x"])
    with pytest.raises(InvalidInputError, match="without audio"):
        ClapData({"a": wave}, ("x",), ("b",))


def test_split_by_artist_keeps_every_artist_on_one_side(model_dir: Path) -> None:
    wave = Waveform(np.zeros(800, np.float32), SR)
    count = 60
    artists = [f"artist-{i % 12}" if i % 5 else None for i in range(count)]
    data = ClapData.from_pairs([wave] * count, [f"caption {i}" for i in range(count)],
                               tracks=[f"t{i}" for i in range(count)], artists=artists)  # fmt: skip
    config = tiny_config(Path("unused"), model_dir).model_copy(update={"split_by": "artist"})
    parts = _split(data, config)
    sides = [{data.artists[t] for t in part if t in data.artists} for part in parts.values()]
    assert sum(len(side) for side in sides) == 12
    assert sorted(t for part in parts.values() for t in part) == sorted(data.track_ids)
    plain = ClapData.from_pairs([wave] * 10, [f"c{i}" for i in range(10)])
    with pytest.raises(InvalidInputError, match="needs the tracks' artists"):
        _split(plain, config)


def write_tones(directory: Path, count: int, seed: int) -> list[int]:
    """WAV files of tones and a CSV of (audio, caption, track, artist) rows for them."""
    data, classes = tones(count, seed)
    rows = ["file,text,track,artist"]
    for i, (caption, track) in enumerate(zip(data.captions, data.caption_tracks, strict=True)):
        wave = data.audio[track]
        assert isinstance(wave, Waveform)
        sf.write(directory / f"{track}.wav", wave.samples, wave.sample_rate)
        rows.append(f'{track}.wav,"{caption}",{track},band {i % 4}')
    (directory / "pairs.csv").write_text("\n".join(rows) + "\n")
    return classes


def test_data_from_a_file_of_rows(tmp_path: Path) -> None:
    write_tones(tmp_path, 6, seed=4)
    data = ClapData.from_records(tmp_path / "pairs.csv", audio_column="file",
                                 caption_column="text", track_column="track",
                                 artist_column="artist")  # fmt: skip
    assert data.track_ids == tuple(f"s4-t{i}" for i in range(6))
    assert data.audio["s4-t0"] == str(tmp_path / "s4-t0.wav")
    assert data.artists["s4-t5"] == "band 1"
    lines = [json.dumps({"audio": f"s4-t{i}.wav", "caption": f"tone {i}"}) for i in range(3)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines))
    rows = ClapData.from_records(tmp_path / "pairs.jsonl", track_column=None)
    assert rows.track_ids == ("row-0", "row-1", "row-2")
    with pytest.raises(InvalidInputError, match="no column 'track_id'"):
        ClapData.from_records(tmp_path / "pairs.jsonl")


def test_evaluate_clap_counts_every_track_of_a_shared_caption(model_dir: Path) -> None:
    wave = Waveform(np.zeros(800, np.float32), SR)
    data = ClapData.from_pairs([wave] * 3, ["same", "same", "other"])
    encoder = ClapEncoder(model=model_dir, device="cpu")
    metrics = evaluate_clap(encoder, data, metrics=["recall@3", "hit_rate@3"])
    assert metrics == {"recall@3": 1.0, "hit_rate@3": 1.0}  # three tracks: all are retrieved
    with pytest.raises(InvalidInputError, match="none of the tracks"):
        evaluate_clap(encoder, data, ["nope"])


def test_config_checks(model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", model_dir)
    with pytest.raises(InvalidInputError, match="no data"):
        train_clap(config)
    (tmp_path / "clap.toml").write_text(
        'output_dir = "run"\nmodel = "tiny"\nvalidation_fraction = 0.5\ntest_fraction = 0.5\n'
        '[loop]\nselection_metric = "recall@1"\n'
    )
    (tmp_path / "tiny").mkdir()  # a directory beside the config: the model's path
    with pytest.raises(InvalidInputError, match="must leave tracks to train on"):
        load_config(tmp_path / "clap.toml", ClapConfig)
    (tmp_path / "clap.toml").write_text('output_dir = "run"\nmodel = "tiny"\n')
    assert load_config(tmp_path / "clap.toml", ClapConfig).model == str(tmp_path / "tiny")
    (tmp_path / "clap.toml").write_text('output_dir = "run"\nmodel = "laion/clap"\n')
    assert load_config(tmp_path / "clap.toml", ClapConfig).model == "laion/clap"  # a hub id
    with pytest.raises(ValueError, match="selection_metric"):
        ClapConfig(
            output_dir=tmp_path, metrics=("mrr@10",), loop=LoopConfig(selection_metric="ndcg@10")
        )


def test_the_command_line_trains_from_a_toml_config(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tones(tmp_path, 16, seed=5)
    (tmp_path / "clap.toml").write_text(
        f'output_dir = "run"\nmodel = "{model_dir}"\nsplit_by = "artist"\n'
        "validation_fraction = 0.25\ntest_fraction = 0.25\n"
        '[data]\npairs = "pairs.csv"\naudio_column = "file"\ncaption_column = "text"\n'
        'track_column = "track"\nartist_column = "artist"\n'
        "[curriculum]\nsteps = 2\n"  # from 10 s and 77 tokens to 240 s and 512
        '[loop]\nepochs = 2\nbatch_size = 4\nloggers = ["jsonl"]\n'
    )
    argv = ["train", "clap", "--config", str(tmp_path / "clap.toml"), "--device", "cpu"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^newwave: warning: .*up to 512 text tokens.* reads at most 62", err, re.M)
    assert out.startswith("test tracks:\n")
    assert "\nbase " in out
    assert "\nfine-tuned " in out
    assert "max_windows=24, max_text_length=512)" in out
    served = load_encoder("clap", model=str(tmp_path / "run" / "model"), device="cpu")
    assert served.encode_text(["a low tone"]).shape == (1, 64)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logged = [entry for entry in log if entry["event"] == "log"]
    assert logged
    assert all(entry["text_tokens"] == 62 for entry in logged)  # capped at the model's limit
