"""CLAP's two towers on ONNX Runtime: the ``clap`` encoder's ``backend="onnx"``.

Each tower is exported on its own, the first time it is used, from the model's files
(:func:`newwave.encoders._onnx.open_cached`: same cache, same session settings, same int8
recipe as the transformer text encoders):

- **text**: token ids and attention mask -> ``ClapModel.get_text_features`` (the text model, its
  projection), batch and sequence length dynamic;
- **audio**: the feature extractor's log-mel features of whole windows -> ``get_audio_features``
  with ``is_longer`` false for every window (HTSAT and its projection), batch dynamic. The
  encoder always marks windows unfused, so a fusion checkpoint's export holds its unfused path
  only.

Cutting tracks into windows, the features, pooling and normalisation stay in the encoder, as
with PyTorch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

from newwave.encoders._onnx import OnnxSession, export_module, model_files, open_cached

__all__ = ["RECIPE", "ClapTowers", "Tower"]

Tower = Literal["text", "audio"]

#: Part of the cache's fingerprint: changed when the export of either tower changes.
RECIPE = (
    "newwave-onnx-clap-1;opset=17;attention=eager;text=get_text_features;"
    "audio=get_audio_features,is_longer=false;int8=dynamic,per-channel,matmul,keep-first-ffn-down"
)


class ClapTowers:
    """The ONNX Runtime sessions of a CLAP model's towers, each opened (and exported, unless
    cached) on first use, once, under a lock.

    ``source`` is where the weights were found; ``local_dir`` the directory the user gave, if
    any; ``load_model()`` loads the torch ``ClapModel``, only when a tower must be exported;
    ``sample_tokens()`` and ``sample_features()`` give a batch of each tower's input (token
    tensors of texts of different lengths; window features) to trace the exports with.
    """

    def __init__(
        self,
        *,
        source: str,
        local_dir: Path | None,
        quantize: str | None,
        load_model: Callable[[], Any],
        sample_tokens: Callable[[], dict[str, Any]],
        sample_features: Callable[[], np.ndarray],
        torch: ModuleType,
    ) -> None:
        self._files = model_files(source)
        self._local_dir = local_dir
        self._quantize = quantize
        self._load_model = load_model
        self._sample_tokens = sample_tokens
        self._sample_features = sample_features
        self._torch = torch
        self._sessions: dict[str, OnnxSession] = {}
        self._lock = threading.Lock()

    def session(self, tower: Tower) -> OnnxSession:
        """The tower's session (exported first if the cache has none)."""
        opened = self._sessions.get(tower)
        if opened is not None:
            return opened
        with self._lock:
            if tower not in self._sessions:
                self._sessions[tower] = open_cached(
                    files=self._files,
                    local_dir=self._local_dir,
                    stem=tower,
                    recipe=RECIPE,
                    quantize=self._quantize,
                    export=lambda target: self._export(tower, target),
                    torch=self._torch,
                )
            return self._sessions[tower]

    def text(self, input_ids: Any, attention_mask: Any) -> np.ndarray:
        """The projected text embeddings (float32, not normalised) of token tensors."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        opened = self.session("text")
        (out,) = opened.run({name: feed[name].cpu().numpy() for name in opened.input_names})
        return np.asarray(out, dtype=np.float32)

    def audio(self, features: np.ndarray) -> np.ndarray:
        """The projected audio embeddings (float32, not normalised) of window features."""
        feed = np.ascontiguousarray(features, dtype=np.float32)
        (out,) = self.session("audio").run({"input_features": feed})
        return np.asarray(out, dtype=np.float32)

    def _export(self, tower: Tower, target: Path) -> None:
        torch = self._torch
        model = self._load_model().float().cpu().eval()
        # Attention written out, as for the text encoders (CLAP has no other in transformers 5).
        if hasattr(model, "set_attn_implementation"):
            with contextlib.suppress(ValueError):
                model.set_attn_implementation("eager")
        if tower == "text":
            tokens = self._sample_tokens()
            export_module(
                _text_tower(model, torch),
                (tokens["input_ids"], tokens["attention_mask"]),
                inputs=["input_ids", "attention_mask"],
                outputs=["embedding"],
                axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "embedding": {0: "batch"},
                },
                target=target,
                torch=torch,
                what="CLAP's text tower",
            )
        else:
            export_module(
                _audio_tower(model, torch),
                (torch.from_numpy(self._sample_features()),),
                inputs=["input_features"],
                outputs=["embedding"],
                axes={"input_features": {0: "batch"}, "embedding": {0: "batch"}},
                target=target,
                torch=torch,
                what="CLAP's audio tower",
            )


def _projected(torch: ModuleType, output: Any) -> Any:
    """The embedding of ``get_*_features``: a tensor (transformers 4) or ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _text_tower(model: Any, torch: ModuleType) -> Any:
    """``get_text_features`` as a module of two tensors."""

    class TextTower(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            output = self.model.get_text_features(
                input_ids=input_ids, attention_mask=attention_mask
            )
            return _projected(torch, output)

    return TextTower()


def _audio_tower(model: Any, torch: ModuleType) -> Any:
    """``get_audio_features`` of unfused windows as a module of one tensor."""

    class AudioTower(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_features: Any) -> Any:
            unfused = torch.zeros(
                (input_features.shape[0], 1), dtype=torch.bool, device=input_features.device
            )
            output = self.model.get_audio_features(input_features=input_features, is_longer=unfused)
            return _projected(torch, output)

    return AudioTower()
