"""The musicnn network (Pons & Serra, 2019) in PyTorch, loaded from its TensorFlow 1 variables.

A rebuild of ``musicnn.models.build_musicnn`` at inference (``is_training=False``), layer by
layer; batch normalisations use their moving statistics and TensorFlow's epsilon (0.001).
Imported only when the ``musicnn`` encoder loads its weights (it imports torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from newwave.errors import ModelNotFoundError

__all__ = ["N_FRAMES", "N_MELS", "Musicnn"]

N_MELS = 96
N_FRAMES = 187  # 3 s at 16 kHz with a hop of 256 (librosa.time_to_frames(3, ...) + 1)
_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default epsilon

Weights = Mapping[str, npt.NDArray[np.generic]]


class _BatchNorm(nn.Module):
    """Inference batch normalisation over the last axis, from TF's four variables."""

    def __init__(self, weights: Weights, name: str) -> None:
        super().__init__()
        mean, var = _get(weights, f"{name}/moving_mean"), _get(weights, f"{name}/moving_variance")
        gamma, beta = _get(weights, f"{name}/gamma"), _get(weights, f"{name}/beta")
        scale = gamma / torch.sqrt(var + _EPS)
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", scale)
        self.register_buffer("shift", beta - mean * scale)
        # channels whose scale is negative (the affine map reverses order), if any
        self.reverses = bool((scale < 0).any())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class Musicnn(nn.Module):
    """musicnn: log-mel patches ``(batch, 187, 96)`` -> ``(logits, penultimate)``.

    Front end: five convolutions over the normalised spectrogram (timbral 7x38 and 7x67 kernels
    over frequency, temporal 128x1, 64x1 and 32x1 kernels), each ReLU, batch norm and a max over
    frequency; mid end: three 7-frame convolutions with residual connections (dense
    connections: the front end and each mid-end output are concatenated, 753 features); back
    end: max and mean over time, interleaved per feature (1506), batch norm, a 200-unit dense
    layer with ReLU and batch norm (the penultimate features), and the output layer.
    """

    def __init__(self, weights: Weights) -> None:
        super().__init__()
        self.input_bn = _BatchNorm(weights, "batch_normalization")
        self.frontend = nn.ModuleList()
        self.frontend_bn = nn.ModuleList()
        self._front_pads: list[tuple[int, int, int, int]] = []  # F.pad's (freq, freq, time, time)
        for i in range(5):
            kernel = _get(weights, f"conv2d{_suffix(i)}/kernel")  # (kt, kf, 1, out)
            conv2d = nn.Conv2d(1, kernel.shape[3], (kernel.shape[0], kernel.shape[1]))
            _set(conv2d, kernel.permute(3, 2, 0, 1), _get(weights, f"conv2d{_suffix(i)}/bias"))
            self.frontend.append(conv2d)
            kt, kf = int(kernel.shape[0]), int(kernel.shape[1])
            # timbral (kf > 1): time padded 3 + 3, frequency valid; temporal: TF's "same"
            # padding in time, the extra sample after
            before = 3 if kf > 1 else (kt - 1) // 2
            self._front_pads.append((0, 0, before, kt - 1 - before))
            self.frontend_bn.append(_BatchNorm(weights, f"batch_normalization_{i + 1}"))
        self.midend = nn.ModuleList()
        self.midend_bn = nn.ModuleList()
        for i in range(5, 8):
            kernel = _get(weights, f"conv2d_{i}/kernel")  # (7, features, 1, out)
            conv = nn.Conv1d(kernel.shape[1], kernel.shape[3], kernel.shape[0])
            _set(conv, kernel[:, :, 0, :].permute(2, 1, 0), _get(weights, f"conv2d_{i}/bias"))
            self.midend.append(conv)
            self.midend_bn.append(_BatchNorm(weights, f"batch_normalization_{i + 1}"))
        self.pool_bn = _BatchNorm(weights, "batch_normalization_9")
        self.dense = _linear(weights, "dense")
        self.dense_bn = _BatchNorm(weights, "batch_normalization_10")
        self.output = _linear(weights, "dense_1")

    @property
    def n_labels(self) -> int:
        return int(self.output.out_features)

    @property
    def n_penultimate(self) -> int:
        return int(self.dense.out_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches ``(batch, frames, mels)`` -> logits ``(batch, labels)`` and the penultimate
        features ``(batch, 200)``."""
        x = self.input_bn(x).unsqueeze(1)  # (B, 1, T, F): NCHW of TF's NHWC (B, T, F, 1)
        features = []
        for conv, bn, pad in zip(self.frontend, self.frontend_bn, self._front_pads, strict=True):
            y = conv(F.pad(x, pad))  # (B, C, T, F')
            # TF: max over frequency of bn(relu(y)). ReLU and a channel's affine batch norm are
            # monotone (decreasing where its scale is negative), so the max is taken first, on
            # the channel's max or min over frequency: the same floats, a fraction of the work.
            norm = cast(_BatchNorm, bn)
            if norm.reverses:
                low, high = torch.aminmax(y, dim=3)  # (B, C, T)
                top = torch.where((norm.scale >= 0)[None, :, None], high, low)
            else:
                top = y.amax(dim=3)
            features.append(bn(torch.relu(top).transpose(1, 2)))  # (B, T, C)
        front = torch.cat(features, dim=2)  # (B, T, 561)
        h = front.transpose(1, 2)  # (B, 561, T)
        outs = [h]
        previous: torch.Tensor | None = None
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn, strict=True)):
            y = torch.relu(conv(F.pad(h, (3, 3))))
            y = bn(y.transpose(1, 2)).transpose(1, 2)  # (B, 64, T)
            h = y if i == 0 or previous is None else y + previous
            previous = h
            outs.append(h)
        mid = torch.cat(outs, dim=1)  # (B, 753, T)
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # (B, 1506)
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(pooled))))
        return self.output(penultimate), penultimate


def _suffix(i: int) -> str:
    return "" if i == 0 else f"_{i}"


def _get(weights: Weights, name: str) -> torch.Tensor:
    if name not in weights:
        raise ModelNotFoundError(f"the musicnn checkpoint has no variable {name!r}")
    return torch.from_numpy(np.asarray(weights[name], dtype=np.float32))


def _set(
    layer: nn.Conv1d | nn.Conv2d | nn.Linear, weight: torch.Tensor, bias: torch.Tensor
) -> None:
    if tuple(layer.weight.shape) != tuple(weight.shape) or layer.bias is None:
        raise ModelNotFoundError(
            f"a musicnn variable has shape {tuple(weight.shape)}, "
            f"expected {tuple(layer.weight.shape)}"
        )
    with torch.no_grad():
        layer.weight.copy_(weight.contiguous())
        layer.bias.copy_(bias)


def _linear(weights: Weights, name: str) -> nn.Linear:
    kernel = _get(weights, f"{name}/kernel")  # (in, out)
    layer = nn.Linear(kernel.shape[0], kernel.shape[1])
    _set(layer, kernel.T, _get(weights, f"{name}/bias"))
    return layer
