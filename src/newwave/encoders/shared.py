"""One transformer backbone shared by the encoders that run it: one model in memory, and one
forward pass per batch of queries for all of them.

A :class:`~newwave.encoders.biencoder.BiEncoder` with heads only (such as one trained by
``newwave train biencoder`` with a frozen ``minilm`` backbone) runs its backbone exactly as the
backbone's own plugin does, then applies a head. When a :class:`~newwave.Recommender` has both,
:func:`share_backbones` gives the bi-encoder the ``minilm`` field's encoder as its backbone, so
the model loads once; and a batch of queries is embedded once by that backbone, the heads then
applied to its vectors (:class:`BackboneQueries`), which gives the vectors the bi-encoder
computes on its own, bit for bit. The shipped ``minilm-music`` shares nothing: its adapters
change its backbone's weights.

Two encoders share a backbone only when they would compute the same vectors: the same plugin,
model, device and options (:func:`backbone_key`). Inference changes no state, so sharing is
safe across fields and threads. Training changes weights: ``newwave train biencoder`` loads
backbones of its own, never one a Recommender holds, and refuses to fine-tune a bi-encoder
whose backbone is shared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from newwave.types import FloatMatrix

if TYPE_CHECKING:
    from newwave.encoders._hf import TransformerTextEncoder
    from newwave.encoders.base import Encoder

__all__ = ["BackboneQueries", "backbone_key", "share_backbones"]


@runtime_checkable
class BackboneQueries(Protocol):
    """An encoder whose query vectors are computed from another encoder's (its backbone's)."""

    def query_backbone(self, texts: Sequence[str]) -> Encoder | None:
        """The encoder whose query vectors of ``texts`` :meth:`project_queries` takes; None when
        ``texts`` must go through this encoder's own ``encode_queries``."""

    def project_queries(self, texts: Sequence[str], vectors: FloatMatrix) -> FloatMatrix:
        """This encoder's query vectors of ``texts``, from the backbone's ``vectors`` of them."""


def backbone_key(encoder: TransformerTextEncoder) -> str:
    """What makes two transformer encoders compute the same vectors: plugin class, model,
    device, options (batch size included: it decides the padding) and query limits."""
    kind = type(encoder)
    return json.dumps(
        [
            f"{kind.__module__}.{kind.__qualname__}",
            encoder.model,
            str(encoder.device),
            encoder.get_config(),
            encoder.max_query_windows,
            encoder.max_text_chars,
        ],
        sort_keys=True,
        default=str,
    )


def share_backbones(encoders: Iterable[object]) -> int:
    """Make the bi-encoders among ``encoders`` use, as backbone, a transformer encoder among
    them (or another bi-encoder's backbone) with the same :func:`backbone_key`.

    The first encoder of each key is kept. Returns how many backbones were replaced; a replaced
    backbone that was never used has loaded nothing.
    """
    from newwave.encoders._hf import TransformerTextEncoder
    from newwave.encoders.biencoder import BiEncoder

    items = list({id(item): item for item in encoders}.values())
    pool: dict[str, TransformerTextEncoder] = {}
    for item in items:
        if isinstance(item, TransformerTextEncoder):
            pool.setdefault(backbone_key(item), item)
    return sum(item.use_backbones(pool) for item in items if isinstance(item, BiEncoder))
