"""What the training loop reports, and where: stdout, a JSONL file, MLflow.

A :class:`Callback` is told when training starts, every ``log_every`` steps (loss, learning
rate, and the task's own values), after each evaluation, after each checkpoint, and at the end.
:func:`make_loggers` builds the built-in ones by name; MLflow needs ``newwave-music[mlflow]``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from newwave._optional import import_optional
from newwave.errors import InvalidInputError

__all__ = ["Callback", "JsonlLogger", "MLflowLogger", "StdoutLogger", "make_loggers"]


class Callback:
    """Hooks of the training loop; each does nothing unless overridden."""

    def on_train_begin(self, info: Mapping[str, Any]) -> None:
        """Training starts (or resumes): ``info`` has the output folder, device, steps, config."""

    def on_log(self, step: int, values: Mapping[str, float]) -> None:
        """Training values (``loss``, ``lr``, ...) averaged since the last log."""

    def on_evaluate(self, step: int, metrics: Mapping[str, float], best: bool) -> None:
        """Held-out ``metrics`` after ``step``; ``best``: the best so far."""

    def on_checkpoint(self, step: int, directory: Path) -> None:
        """A resumable checkpoint of ``step`` was written to ``directory``."""

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        """Training finished: best step and metrics, where the model was saved."""


def _format(values: Mapping[str, float]) -> str:
    return "  ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )


class StdoutLogger(Callback):
    """One line per log and evaluation, printed so that a progress bar stays intact."""

    def on_train_begin(self, info: Mapping[str, Any]) -> None:
        verb = "resuming at step" if info["start_step"] else "training from step"
        tqdm.write(
            f"{verb} {info['start_step']} of {info['total_steps']} on {info['device']}, "
            f"into {info['output_dir']}"
        )

    def on_log(self, step: int, values: Mapping[str, float]) -> None:
        tqdm.write(f"step {step}  {_format(values)}")

    def on_evaluate(self, step: int, metrics: Mapping[str, float], best: bool) -> None:
        tqdm.write(f"eval {step}  {_format(metrics)}" + ("  (best)" if best else ""))

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        tqdm.write(
            f"best step {summary['best_step']}: {_format(summary['best_metrics'])}; "
            f"model saved to {summary['model_dir']}"
        )


class JsonlLogger(Callback):
    """Appends one JSON object per event to ``path``: ``{"event": "log", "step": ..., ...}``.

    On resume, records of steps after the resumed one (from the interrupted run) are dropped,
    so the file reads as one run.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def _write(self, record: Mapping[str, Any]) -> None:
        clean = {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(clean, sort_keys=True) + "\n")

    def on_train_begin(self, info: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            start = int(info["start_step"])
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if json.loads(line).get("step", 0) <= start]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self._write({"event": "begin", "step": info["start_step"], **info})

    def on_log(self, step: int, values: Mapping[str, float]) -> None:
        self._write({"event": "log", "step": step, **values})

    def on_evaluate(self, step: int, metrics: Mapping[str, float], best: bool) -> None:
        self._write({"event": "evaluate", "step": step, "best": best, **metrics})

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        self._write({"event": "end", "step": summary["steps"], **summary})


class MLflowLogger(Callback):
    """Logs the config as parameters and the values as metrics to MLflow (``[mlflow]`` extra).

    Uses MLflow's own settings (``MLFLOW_TRACKING_URI``, ...); ``experiment`` names the
    experiment, default MLflow's.
    """

    def __init__(self, experiment: str | None = None):
        self.mlflow: Any = import_optional("mlflow", purpose="logging to MLflow", extra="mlflow")
        self.experiment = experiment

    def on_train_begin(self, info: Mapping[str, Any]) -> None:
        if self.experiment is not None:
            self.mlflow.set_experiment(self.experiment)
        if self.mlflow.active_run() is None:
            self.mlflow.start_run()
        self.mlflow.log_params(_flatten(info["config"]))

    def on_log(self, step: int, values: Mapping[str, float]) -> None:
        self.mlflow.log_metrics({f"train/{k}": v for k, v in values.items()}, step=step)

    def on_evaluate(self, step: int, metrics: Mapping[str, float], best: bool) -> None:
        self.mlflow.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=step)

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        self.mlflow.log_metrics({f"best/{k}": v for k, v in summary["best_metrics"].items()})
        self.mlflow.end_run()


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def make_loggers(names: Sequence[str], output_dir: Path) -> list[Callback]:
    """The built-in loggers named: ``stdout``, ``jsonl`` (``output_dir/log.jsonl``), ``mlflow``."""
    loggers: list[Callback] = []
    for name in names:
        if name == "stdout":
            loggers.append(StdoutLogger())
        elif name == "jsonl":
            loggers.append(JsonlLogger(output_dir / "log.jsonl"))
        elif name == "mlflow":
            loggers.append(MLflowLogger())
        else:
            raise InvalidInputError(f"unknown logger {name!r}; use stdout, jsonl or mlflow")
    return loggers
