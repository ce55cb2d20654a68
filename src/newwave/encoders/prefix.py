"""Lower layers shared by transformer text encoders: one copy in memory, one pass per batch.

Two transformer text encoders with the same :func:`~newwave.encoders.shared.backbone_key`
whose weights differ only in their top layers (``minilm-music``'s backbone is ``minilm`` with
adapters merged into its last layers) compute the same embeddings and the same hidden states
below those layers for every text. :func:`share_prefix` makes such a *follower* share the
*leader*'s *prefix*: its model is then built as a copy of the leader's that holds the same
embedding and lower layer modules (no second copy in memory) and its own top layers, which
``prepare`` (e.g. merging the adapters) may then change. :meth:`SharedPrefix.encode_queries`
embeds a batch of queries for all of them at once: per batch, the leader's model runs once and
each follower's top layers run on the hidden states entering them, called as the model calls
its layers. Each encoder gets the vectors of its own ``encode_queries``, bit for bit: the same
tokenisation, batches, padding and layer calls. Queries that a windowed encoder must cut (longer
than ``max_query_windows`` windows) take each encoder's own path.

A prefix of all the layers (a follower with no top layers of its own) is the shared backbone of
:mod:`newwave.encoders.shared`, whose followers use the leader itself. Inference changes no
weights: the only change to the leader's model is a hook installed once per prefix depth on the
first layer above the prefix, which records that layer's inputs during
:meth:`~SharedPrefix.encode_queries` only (a context variable: other calls and threads see
nothing). Training must not change a prefix: ``newwave train`` refuses to fine-tune or adapt a
backbone that shares one.
"""

from __future__ import annotations

import contextvars
import copy
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from newwave._vectors import as_matrix, l2_normalize
from newwave.encoders.adapters import transformer_layers
from newwave.encoders.shared import backbone_key
from newwave.errors import InvalidInputError
from newwave.types import FloatMatrix

if TYPE_CHECKING:
    from newwave.encoders._hf import TransformerTextEncoder, _Model

__all__ = ["SharedPrefix", "prefix_key", "share_prefix", "shared_prefix"]

#: During SharedPrefix.encode_queries: the inputs of the leader's layers above each prefix.
_CAPTURED: contextvars.ContextVar[dict[int, tuple[Any, Any]] | None] = contextvars.ContextVar(
    "newwave_prefix_inputs", default=None
)


def prefix_key(encoder: TransformerTextEncoder, own_layers: int) -> str:
    """What two encoders must agree on to share the layers below their last ``own_layers``:
    their :func:`~newwave.encoders.shared.backbone_key` and that number."""
    return json.dumps([backbone_key(encoder), own_layers])


@dataclass(frozen=True)
class _Follower:
    encoder: TransformerTextEncoder
    own_layers: int
    prepare: Callable[[Any], None] | None


class SharedPrefix:
    """A leader encoder and the followers sharing its embeddings and lower layers."""

    def __init__(self, leader: TransformerTextEncoder) -> None:
        self.leader = leader
        self._followers: dict[int, _Follower] = {}
        self._hooked: set[int] = set()
        self._lock = threading.Lock()

    @property
    def members(self) -> list[TransformerTextEncoder]:
        """The leader, then the followers in the order they joined."""
        return [self.leader] + [f.encoder for f in self._followers.values()]

    def build(self, encoder: TransformerTextEncoder) -> _Model:
        """The loaded state of follower ``encoder``: the leader's, with a copy of the leader's
        model that shares its embeddings and prefix layers, then ``prepare``-d."""
        follower = self._followers[id(encoder)]
        state = self.leader._load()
        model = state.model
        layers = transformer_layers(model)
        depth = self._depth(layers, follower.own_layers)
        shared = [_embeddings(model), *layers[:depth]]
        own = copy.deepcopy(model, memo={id(module): module for module in shared})
        if follower.prepare is not None:
            follower.prepare(own)
        return type(state)(state.torch, state.tokenizer, own, state.max_length, state.source)

    def encode_queries(
        self, texts: Sequence[str]
    ) -> list[tuple[TransformerTextEncoder, FloatMatrix]]:
        """Each member's ``encode_queries(texts)``, computed together (see the module
        docstring)."""
        leader = self.leader
        items = leader._check_texts(texts)
        members = self.members
        if not items or leader._fit_query_batch(items, leader.text_limit_chars()) != items:
            return [(m, m.encode_queries(items, show_progress_bar=False)) for m in members]
        states = [member._load() for member in members]  # followers build from the leader
        depths = [None] + [
            self._depth(transformer_layers(states[0].model), f.own_layers)
            for f in self._followers.values()
        ]
        self._hook(states[0].model, [d for d in depths if d is not None])
        order = leader._order(items, "text")
        outs = [np.zeros((len(items), member.dim), dtype=np.float32) for member in members]
        for start in range(0, len(items), leader.batch_size):
            index = order[start : start + leader.batch_size]
            batch = [leader._prepare(items[i], "text") for i in index]
            for out, member, vectors in zip(
                outs, members, self._encode_batch(states, depths, batch), strict=True
            ):
                out[index] = as_matrix(vectors, dim=member.dim, what=f"{member.name} embeddings")
        return [(member, l2_normalize(out)) for member, out in zip(members, outs, strict=True)]

    # -- internals ----------------------------------------------------------------------------

    def _encode_batch(
        self, states: list[_Model], depths: list[int | None], batch: list[str]
    ) -> list[FloatMatrix]:
        """The leader's ``_encode_batch`` for every member at once."""
        from newwave.encoders._hf import _pool_windows

        leader = self.leader
        torch = states[0].torch
        with torch.inference_mode():
            encoded = leader._tokenize(states[0], batch, return_tensors="pt")
            owner = encoded.pop("overflow_to_sample_mapping", None)
            mask = encoded["attention_mask"]
            size = leader.batch_size
            chunks = [
                self._embed(states, depths, {k: v[i : i + size] for k, v in encoded.items()})
                for i in range(0, mask.shape[0], size)
            ]
            found: list[FloatMatrix] = []
            for member in range(len(states)):
                windows = torch.cat([chunk[member] for chunk in chunks])
                if owner is None:
                    found.append(np.ascontiguousarray(windows.cpu().numpy(), dtype=np.float32))
                else:
                    counts = mask.sum(dim=1)
                    found.append(_pool_windows(windows, torch.as_tensor(owner), counts, len(batch)))
            return found

    def _embed(
        self, states: list[_Model], depths: list[int | None], inputs: dict[str, Any]
    ) -> list[Any]:
        """The leader's ``_embed`` of one chunk of rows for every member: the leader's model
        once, recording what enters each prefix's next layer, then each follower's top layers
        called as the model called the leader's."""
        leader = self.leader
        torch = states[0].torch
        width = int(inputs["attention_mask"].sum(dim=1).max())  # as TransformerTextEncoder._embed
        inputs = {k: v[:, :width].to(leader.device) for k, v in inputs.items()}
        captured: dict[int, tuple[Any, Any]] = {}
        token = _CAPTURED.set(captured)
        try:
            last = states[0].model(**inputs).last_hidden_state
        finally:
            _CAPTURED.reset(token)
        mask = inputs["attention_mask"]
        pooled = [leader._pool(torch, last, mask)]
        for state, depth in zip(states[1:], depths[1:], strict=True):
            assert depth is not None
            layers = transformer_layers(state.model)
            if depth == len(layers):  # the whole model is shared
                pooled.append(pooled[0])
                continue
            args, kwargs = captured[depth]
            hidden = args[0]
            for layer in layers[depth:]:
                out = layer(hidden, *args[1:], **kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
            pooled.append(leader._pool(torch, hidden, mask))
        return pooled

    def _hook(self, model: Any, depths: list[int]) -> None:
        """Record the inputs of the leader's layer ``depth`` (for each prefix depth below the
        top) during :meth:`encode_queries`; installed once per depth."""
        layers = transformer_layers(model)
        with self._lock:
            for depth in sorted(set(depths) - self._hooked):
                if depth < len(layers):
                    layers[depth].register_forward_pre_hook(
                        _recorder(layers[depth], depth), with_kwargs=True
                    )
                self._hooked.add(depth)

    @staticmethod
    def _depth(layers: Sequence[Any], own_layers: int) -> int:
        if own_layers > len(layers):
            raise InvalidInputError(
                f"{own_layers} top layers of its own, but the model has {len(layers)}"
            )
        return len(layers) - own_layers


def share_prefix(
    leader: TransformerTextEncoder,
    follower: TransformerTextEncoder,
    own_layers: int,
    *,
    prepare: Callable[[Any], None] | None = None,
) -> bool:
    """Make ``follower`` share ``leader``'s embeddings and all its layers but the last
    ``own_layers``; ``prepare`` then changes the follower's model (its own top layers only)
    once built. Their :func:`~newwave.encoders.shared.backbone_key` must agree, both run on
    PyTorch, and the follower must not be loaded yet nor share a prefix already; returns
    whether it shares it."""
    if isinstance(own_layers, bool) or not isinstance(own_layers, int) or own_layers < 0:
        raise InvalidInputError(f"own_layers must be a non-negative integer, got {own_layers!r}")
    if (
        leader is follower
        or follower.prefix is not None
        or follower._state is not None
        or (leader.prefix is not None and leader.prefix.leader is not leader)
        or getattr(leader, "backend", "torch") != "torch"
        or backbone_key(leader) != backbone_key(follower)
    ):
        return False
    group = leader.prefix or SharedPrefix(leader)
    group._followers[id(follower)] = _Follower(follower, own_layers, prepare)
    leader.prefix = follower.prefix = group
    return True


def shared_prefix(encoder: object) -> SharedPrefix | None:
    """The :class:`SharedPrefix` that ``encoder`` (any encoder) belongs to, if any."""
    group = getattr(encoder, "prefix", None)
    return group if isinstance(group, SharedPrefix) else None


def _embeddings(model: Any) -> Any:
    embeddings = getattr(model, "embeddings", None)
    if embeddings is None:
        raise InvalidInputError(
            f"{type(model).__name__} has no embeddings module: a shared prefix needs a "
            "BERT-like model"
        )
    return embeddings


def _recorder(target: Any, depth: int) -> Callable[[Any, Any, Any], None]:
    def record(module: Any, args: Any, kwargs: Any) -> None:
        captured = _CAPTURED.get()
        if captured is not None and module is target:  # not a copy of it (a follower's)
            captured[depth] = (args, dict(kwargs))

    return record
