"""A frozen backbone's lower layers run once; its top layers run at every step.

When only the last layers of a transformer text encoder train (adapters on them,
:mod:`newwave.encoders.adapters`), the hidden states entering those layers never change:
:class:`TopLayerInputs` computes them once per text (each window of a long text, tokenised as
the encoder tokenises it) and :meth:`TopLayerInputs.embed` runs only the top layers on them,
then pools and normalises as the encoder does: the same vectors as ``encode_text``, but
differentiable and several times cheaper to train.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from newwave.encoders._hf import TransformerTextEncoder
from newwave.encoders.adapters import transformer_layers
from newwave.errors import InvalidInputError

__all__ = ["TopLayerInputs"]


class TopLayerInputs:
    """The hidden states entering the last ``layers`` layers of ``backbone`` for ``texts``."""

    def __init__(
        self,
        backbone: TransformerTextEncoder,
        texts: Sequence[str],
        layers: int,
        *,
        batch_size: int = 64,
    ) -> None:
        if backbone.prefix is not None:  # adapters on its layers would change other encoders
            raise InvalidInputError(
                "this backbone shares its lower layers with other encoders "
                "(newwave.encoders.prefix); train adapters on a backbone of its own"
            )
        state = backbone._load()
        self.backbone = backbone
        self.model = state.model
        self.first = len(transformer_layers(self.model)) - layers
        self.hidden: list[torch.Tensor] = []
        """One (tokens, width) tensor per window."""
        self.windows: list[list[int]] = []
        """Each text's windows (indices into :attr:`hidden`)."""
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                chunk = list(texts[start : start + batch_size])
                encoded = backbone._tokenize(state, chunk, return_tensors="pt")
                owner = encoded.pop("overflow_to_sample_mapping", None)
                owners = list(range(len(chunk))) if owner is None else [int(o) for o in owner]
                inputs = {k: v.to(backbone.device) for k, v in encoded.items()}
                states = self.model(**inputs, output_hidden_states=True).hidden_states[self.first]
                lengths = inputs["attention_mask"].sum(dim=1).tolist()
                windows: list[list[int]] = [[] for _ in chunk]
                for row, (text, length) in enumerate(zip(owners, lengths, strict=True)):
                    windows[text].append(len(self.hidden))
                    self.hidden.append(states[row, : int(length)].float().clone())
                self.windows.extend(windows)

    def __len__(self) -> int:
        return len(self.windows)

    def embed(self, rows: Sequence[int] | npt.NDArray[np.int64]) -> torch.Tensor:
        """L2-normalised vectors of the texts at ``rows``, through the top layers (with whatever
        adapters are attached to them): differentiable."""
        windows = [w for row in rows for w in self.windows[int(row)]]
        owner = torch.tensor(
            [i for i, row in enumerate(rows) for _ in self.windows[int(row)]],
            device=self.hidden[0].device,
        )
        lengths = [self.hidden[w].shape[0] for w in windows]
        width = max(lengths)
        device = self.hidden[0].device
        hidden = torch.zeros(len(windows), width, self.hidden[0].shape[1], device=device)
        mask = torch.zeros(len(windows), width, device=device)
        for i, (w, length) in enumerate(zip(windows, lengths, strict=True)):
            hidden[i, :length] = self.hidden[w]
            mask[i, :length] = 1
        additive = (1.0 - mask[:, None, None, :]) * torch.finfo(hidden.dtype).min
        for layer in transformer_layers(self.model)[self.first :]:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        if self.backbone.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        per_window = F.normalize(pooled, dim=1)
        counts = mask.sum(dim=1, keepdim=True)
        sums = per_window.new_zeros(len(rows), per_window.shape[1]).index_add(
            0, owner, per_window * counts
        )
        totals = per_window.new_zeros(len(rows), 1).index_add(0, owner, counts)
        return F.normalize(sums / totals, dim=1)

    def to(self, device: str) -> None:
        """Move the cached states to ``device``."""
        self.hidden = [h.to(device) for h in self.hidden]
