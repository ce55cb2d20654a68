"""The training loop: a resumed run equals an uninterrupted one; best-model selection; logs."""

from __future__ import annotations

import itertools
import json
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from newwave import IndexCorruptError, InvalidInputError, MissingDependencyError
from newwave.metrics import evaluate_embeddings
from newwave.train import (
    Callback,
    LoopConfig,
    Progress,
    ShuffledBatches,
    Task,
    Trainer,
    TrainResult,
)
from newwave.train.checkpoint import load_checkpoint, save_checkpoint

Batch = tuple[torch.Tensor, torch.Tensor]

GENERATOR = np.random.default_rng(0)
X = torch.from_numpy(GENERATOR.standard_normal((40, 6)).astype(np.float32))
Y = torch.from_numpy((X.numpy() @ GENERATOR.standard_normal((6, 6))).astype(np.float32))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Regression(Task[Batch]):
    """Learn a linear map; retrieve each held-out target from its input. Uses dropout (the RNG)
    and a curriculum whose state lives in the task."""

    def __init__(self) -> None:
        torch.manual_seed(123)
        self.module = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.2), nn.Linear(16, 6))
        self.calls = 0
        self.seen: list[Progress] = []

    def loss(self, batch: Batch, progress: Progress) -> torch.Tensor:
        self.calls += 1  # the curriculum: later batches weigh a little more
        self.seen.append(progress)
        x, y = (t.to(self.device) for t in batch)
        return nn.functional.mse_loss(self.module(x), y) * (1 + 0.01 * self.calls)

    def evaluate(self) -> dict[str, float]:
        predicted = self.module(X[30:]).detach().numpy()
        result = evaluate_embeddings(predicted, Y[30:].numpy(), [[i] for i in range(10)], "mrr@10")
        return {
            "mrr@10": result["mrr@10"],
            "mse": float(((predicted - Y[30:].numpy()) ** 2).mean()),
        }

    def save(self, directory: Path) -> None:
        save_file(dict(self.module.state_dict()), str(directory / "weights.safetensors"))

    def schedule_state(self) -> Any:
        return {"calls": self.calls}

    def load_schedule_state(self, state: Any) -> None:
        self.calls = state["calls"]


def _data(seed: int = 0) -> ShuffledBatches[Batch]:
    return ShuffledBatches(30, 6, lambda i: (X[i], Y[i]), seed=seed)


CONFIG = LoopConfig(
    epochs=4,
    accumulate=2,  # 5 batches: steps of 2, 2 and 1 batches, 3 steps an epoch
    learning_rate=0.02,
    warmup_steps=3,
    eval_every=4,
    checkpoint_every=5,
    selection_metric="mrr@10",
    log_every=2,
    loggers=("jsonl",),
    seed=9,
)


def _records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] in ("log", "evaluate")]


def _fit(output_dir: Path, callbacks: Sequence[Callback]) -> TrainResult:
    return Trainer(Regression(), _data(), CONFIG, output_dir, callbacks=callbacks).fit()


def test_a_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, run_until_killed: Callable[..., None]
) -> None:
    whole_task = Regression()
    whole = Trainer(whole_task, _data(), CONFIG, tmp_path / "whole").fit()
    assert whole.steps == 12

    run_until_killed(5, _fit, tmp_path / "cut")  # right after step 5's checkpoint, mid-epoch 1
    state = load_checkpoint(tmp_path / "cut" / "checkpoint", Regression().module)
    assert (state["step"], state["epoch"], state["position"]) == (5, 1, 4)
    with pytest.raises(InvalidInputError, match="already holds a training run"):
        Trainer(Regression(), _data(), CONFIG, tmp_path / "cut").fit()
    resumed_task = Regression()
    resumed = Trainer(resumed_task, _data(), CONFIG, tmp_path / "cut", resume=True).fit()

    for name, value in whole_task.module.state_dict().items():
        assert torch.equal(value, resumed_task.module.state_dict()[name]), name
    assert resumed_task.calls == whole_task.calls == 20
    assert resumed_task.seen == whole_task.seen[-len(resumed_task.seen) :]
    assert (resumed.best_step, resumed.best_metrics, resumed.history) == (
        whole.best_step,
        whole.best_metrics,
        whole.history,
    )
    assert _records(tmp_path / "cut" / "log.jsonl") == _records(tmp_path / "whole" / "log.jsonl")
    whole_files = sorted(p.name for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert {Path(n).suffix for n in whole_files} == {".json", ".jsonl", ".safetensors"}  # no pickle


def test_the_best_evaluation_is_served_not_the_last(tmp_path: Path) -> None:
    class Peaked(Regression):
        """The selection metric peaks at the second evaluation (step 8)."""

        def __init__(self) -> None:
            super().__init__()
            self.weights: list[dict[str, torch.Tensor]] = []

        def evaluate(self) -> dict[str, float]:
            self.weights.append({k: v.clone() for k, v in self.module.state_dict().items()})
            return {**super().evaluate(), "mrr@10": [0.5, 0.9, 0.7][len(self.weights) - 1]}

    task = Peaked()
    result = Trainer(task, _data(), CONFIG, tmp_path).fit()
    assert [h["step"] for h in result.history] == [4, 8, 12]
    assert result.best_step == 8
    assert result.best_metrics["mrr@10"] == 0.9
    assert result.best_metrics["mse"] == result.history[1]["mse"]
    served = load_file(str(result.model_dir / "weights.safetensors"))
    for name, value in task.weights[1].items():
        assert torch.equal(served[name], value)
        assert torch.equal(task.module.state_dict()[name], value)  # the task ends with them
    assert not torch.equal(task.weights[1]["0.weight"], task.weights[2]["0.weight"])


def test_per_epoch_evaluation_and_a_step_budget(tmp_path: Path) -> None:
    config = CONFIG.model_copy(
        update={"eval_every": None, "checkpoint_every": None, "max_steps": 7, "epochs": None}
    )
    result = Trainer(Regression(), _data(), config, tmp_path).fit()
    assert result.steps == 7
    assert [h["step"] for h in result.history] == [3, 6, 7]  # epoch ends, then the last step
    assert load_checkpoint(tmp_path / "checkpoint", Regression().module)["step"] == 7

    config = CONFIG.model_copy(update={"eval_every": None})  # checkpoints every 5 steps
    Trainer(Regression(), _data(), config, tmp_path / "again").fit()
    state = load_checkpoint(tmp_path / "again" / "checkpoint", Regression().module)
    assert (state["step"], state["last_eval"]) == (12, 12)  # the end is always checkpointed


def test_accumulated_batches_give_the_gradient_of_one_big_batch(tmp_path: Path) -> None:
    class Linear(Regression):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Sequential(nn.Linear(6, 6))

        def loss(self, batch: Batch, progress: Progress) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.module(x), y)

    def run(batch_size: int, accumulate: int, name: str) -> nn.Module:
        config = LoopConfig(max_steps=5, epochs=None, accumulate=accumulate, loggers=(),
                            max_grad_norm=None, eval_every=5)  # fmt: skip
        task = Linear()
        data = ShuffledBatches(30, batch_size, lambda i: (X[i], Y[i]), shuffle=False)
        Trainer(task, data, config, tmp_path / name).fit()
        return task.module

    big, accumulated = run(10, 1, "big"), run(5, 2, "accumulated")
    for (name, a), b in zip(
        big.state_dict().items(), accumulated.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_warmup_then_cosine_decay(tmp_path: Path) -> None:
    rates: list[float] = []

    class Rates(Callback):
        def on_log(self, step: int, values: Mapping[str, float]) -> None:
            rates.append(values["lr"])

    config = CONFIG.model_copy(update={"log_every": 1, "loggers": (), "warmup_steps": 4})
    Trainer(Regression(), _data(), config, tmp_path, callbacks=[Rates()]).fit()
    assert len(rates) == 12
    peak = config.learning_rate
    assert rates[:4] == pytest.approx([peak * 2 / 4, peak * 3 / 4, peak, peak])
    assert all(a > b for a, b in itertools.pairwise(rates[3:]))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_resuming_with_other_settings_is_refused(
    tmp_path: Path, run_until_killed: Callable[..., None]
) -> None:
    run_until_killed(5, _fit, tmp_path)
    other = CONFIG.model_copy(update={"learning_rate": 0.5, "loggers": ()})
    with pytest.raises(InvalidInputError, match="learning_rate differ"):
        Trainer(Regression(), _data(), other, tmp_path, resume=True).fit()


def test_checkpoints_round_trip_and_corrupt_ones_are_reported(tmp_path: Path) -> None:
    module = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "ck", module, {"step": 1}, optimizer)
    other, other_optimizer = nn.Linear(3, 2), torch.optim.AdamW(nn.Linear(3, 2).parameters())
    other_optimizer = torch.optim.AdamW(other.parameters())
    assert load_checkpoint(tmp_path / "ck", other, other_optimizer) == {"step": 1}
    assert torch.equal(other.weight, module.weight)
    saved, restored = optimizer.state_dict(), other_optimizer.state_dict()
    assert restored["param_groups"] == saved["param_groups"]
    for index, values in saved["state"].items():
        for name, value in values.items():
            assert torch.equal(restored["state"][index][name], value)
    with pytest.raises(IndexCorruptError, match="does not fit"):
        load_checkpoint(tmp_path / "ck", nn.Linear(3, 4))
    snapshot = next((tmp_path / "ck").glob("snapshot-*"))
    (snapshot / "optimizer.safetensors").write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "ck", other, other_optimizer)


def test_a_diverging_loss_stops_training(tmp_path: Path) -> None:
    class Diverging(Regression):
        def loss(self, batch: Batch, progress: Progress) -> torch.Tensor:
            return super().loss(batch, progress) * float("nan")

    with pytest.raises(InvalidInputError, match="the loss is nan at step 1"):
        Trainer(Diverging(), _data(), CONFIG, tmp_path).fit()


def test_mlflow_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CONFIG.model_copy(update={"loggers": ("mlflow",)})
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed
    with pytest.raises(MissingDependencyError, match=r"newwave-music\[mlflow\]"):
        Trainer(Regression(), _data(), config, tmp_path)

    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("mlflow")
    fake.active_run = lambda: None  # type: ignore[attr-defined]
    fake.start_run = lambda: calls.append(("start", None))  # type: ignore[attr-defined]
    fake.end_run = lambda: calls.append(("end", None))  # type: ignore[attr-defined]
    fake.log_params = lambda params: calls.append(("params", params))  # type: ignore[attr-defined]
    fake.log_metrics = lambda metrics, step=None: calls.append(("metrics", (metrics, step)))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    Trainer(Regression(), _data(), config, tmp_path).fit()
    assert calls[0] == ("start", None)
    assert calls[1][0] == "params"
    assert calls[1][1]["learning_rate"] == 0.02
    evaluations = [c[1] for c in calls if c[0] == "metrics" and "eval/mrr@10" in c[1][0]]
    assert [step for _, step in evaluations] == [4, 8, 12]
    assert calls[-1] == ("end", None)


def test_stdout_logging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = CONFIG.model_copy(update={"loggers": ("stdout",)})
    Trainer(Regression(), _data(), config, tmp_path).fit()
    out = capsys.readouterr().out
    assert out.startswith("training from step 0 of 12 on cpu")
    assert "step 2  loss " in out
    assert "eval 4  mrr@10 " in out
    assert f"model saved to {tmp_path / 'model'}" in out
