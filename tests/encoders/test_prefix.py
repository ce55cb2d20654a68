"""Encoders sharing lower layers (newwave.encoders.prefix), on a tiny random 3-layer BERT built
here: one copy of the shared modules, one pass of them per batch, and each encoder's own
vectors bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.tiny_models import save_tiny_bert

from newwave.encoders.adapters import transformer_layers
from newwave.encoders.minilm import MiniLMEncoder
from newwave.encoders.prefix import SharedPrefix, prefix_key, share_prefix, shared_prefix
from newwave.errors import InvalidInputError, TruncatedTextWarning
from newwave.search.channels import Queries
from newwave.train.top_layers import TopLayerInputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["soft", "piano", "ballad", "loud", "drums", "guitar", "solo", "a", "with", "and"]
LAYERS = 3
# varied lengths: one token to several windows of 12 tokens (stride 2)
TEXTS = ["piano"] + [" ".join(WORDS[: 2 + n]) for n in range(8)] + ["soft piano ballad " * 9]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 3-layer BERT and a word-level tokenizer, saved like MiniLM."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-3"), WORDS, layers=LAYERS)


def _encoder(tiny_bert: Path, batch_size: int = 3) -> MiniLMEncoder:
    return MiniLMEncoder(
        model=str(tiny_bert), device="cpu", batch_size=batch_size, max_length=12, stride=2
    )


def _retune(own_layers: int) -> Any:
    """Change the last ``own_layers`` layers of a model, as merging adapters does."""

    def prepare(model: Any) -> None:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for layer in transformer_layers(model)[LAYERS - own_layers :]:
                for parameter in layer.parameters():
                    parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))

    return prepare


def _alone(tiny_bert: Path, own_layers: int) -> MiniLMEncoder:
    """The follower's encoder with a model of its own: loaded, then retuned."""
    encoder = _encoder(tiny_bert)
    _retune(own_layers)(encoder._load().model)
    return encoder


def _runs(model: Any) -> list[int]:
    """Count the rows going through ``model``'s embeddings (each forward pass of them)."""
    rows: list[int] = []
    model.embeddings.register_forward_hook(lambda _m, _a, out: rows.append(out.shape[0]))
    return rows


@pytest.mark.parametrize("own_layers", [0, 1, LAYERS])
def test_followers_get_their_own_vectors_from_one_pass_of_the_prefix(
    tiny_bert: Path, own_layers: int
) -> None:
    leader, follower = _encoder(tiny_bert), _encoder(tiny_bert)
    assert share_prefix(leader, follower, own_layers, prepare=_retune(own_layers))
    assert shared_prefix(leader) is shared_prefix(follower) is leader.prefix
    rows = _runs(leader._load().model)
    queries = Queries(TEXTS)
    found = queries.vectors(follower)
    windows = len(leader._tokenize(leader._load(), TEXTS)["input_ids"])
    assert windows > len(TEXTS)  # the long text has several windows
    assert sum(rows) == windows  # the shared layers ran once for both encoders
    np.testing.assert_array_equal(
        queries.vectors(leader), _encoder(tiny_bert).encode_queries(TEXTS)
    )
    assert sum(rows) == windows  # the leader's vectors came from that same pass
    np.testing.assert_array_equal(found, _alone(tiny_bert, own_layers).encode_queries(TEXTS))
    if own_layers:
        assert not np.array_equal(found, queries.vectors(leader))
    # documents and single queries go through the follower's own model, the same weights
    np.testing.assert_array_equal(
        follower.encode_text(TEXTS), _alone(tiny_bert, own_layers).encode_text(TEXTS)
    )
    np.testing.assert_array_equal(Queries(TEXTS[-1:]).vectors(follower), found[-1:])


def test_the_follower_holds_no_copy_of_the_shared_layers(tiny_bert: Path) -> None:
    leader, follower = _encoder(tiny_bert), _encoder(tiny_bert)
    assert share_prefix(leader, follower, 1, prepare=_retune(1))
    before = {k: v.clone() for k, v in leader._load().model.state_dict().items()}
    mine, theirs = follower._load().model, leader._load().model
    assert mine is not theirs
    assert mine.embeddings is theirs.embeddings
    shared = [a is b for a, b in zip(mine.encoder.layer, theirs.encoder.layer, strict=True)]
    assert shared == [True] * (LAYERS - 1) + [False]
    after = leader._load().model.state_dict()  # preparing the follower left the leader as it was
    assert all(torch.equal(before[key], after[key]) for key in before)
    # and a call of the leader's model outside SharedPrefix records nothing
    leader.encode_queries(TEXTS[:2])
    follower.encode_queries(TEXTS[:2])


def test_queries_a_windowed_encoder_cuts_take_each_encoders_own_path(tiny_bert: Path) -> None:
    leader, follower = _encoder(tiny_bert), _encoder(tiny_bert)
    leader.max_query_windows = follower.max_query_windows = 2
    assert share_prefix(leader, follower, 1, prepare=_retune(1))
    rows = _runs(leader._load().model)
    with pytest.warns(TruncatedTextWarning):
        found = {id(m): v for m, v in leader.prefix.encode_queries(TEXTS)}  # type: ignore[union-attr]
    assert sum(rows) >= 2 * len(TEXTS)  # the leader's own pass, then the follower's
    alone = _alone(tiny_bert, 1)
    alone.max_query_windows = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedTextWarning)
        np.testing.assert_array_equal(found[id(follower)], alone.encode_queries(TEXTS))


def test_only_encoders_of_the_same_key_share_a_prefix(tiny_bert: Path) -> None:
    leader = _encoder(tiny_bert)
    assert not share_prefix(leader, _encoder(tiny_bert, batch_size=4), 1)  # other padding
    loaded = _encoder(tiny_bert)
    loaded._load()
    assert not share_prefix(leader, loaded, 1)  # its own model is already there
    assert not share_prefix(leader, leader, 1)
    with pytest.raises(InvalidInputError, match="non-negative integer"):
        share_prefix(leader, _encoder(tiny_bert), -1)
    assert prefix_key(leader, 1) != prefix_key(leader, 2)
    assert prefix_key(leader, 1) == prefix_key(_encoder(tiny_bert), 1)
    follower = _encoder(tiny_bert)
    assert share_prefix(leader, follower, LAYERS + 1)
    with pytest.raises(InvalidInputError, match="the model has 3"):
        follower._load()
    assert isinstance(leader.prefix, SharedPrefix)
    assert not share_prefix(follower, _encoder(tiny_bert), 1)  # a follower leads no one


def test_adapters_never_train_on_a_shared_prefix(tiny_bert: Path) -> None:
    leader, follower = _encoder(tiny_bert), _encoder(tiny_bert)
    assert share_prefix(leader, follower, 1)
    for encoder in (leader, follower):
        with pytest.raises(InvalidInputError, match="shares its lower layers"):
            TopLayerInputs(encoder, TEXTS, 1)
