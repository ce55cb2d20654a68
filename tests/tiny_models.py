"""Tiny randomly initialised models for tests, saved as their real counterparts are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_bert(
    directory: Path, words: Sequence[str], *, layers: int, hidden: int = 32, max_length: int = 24
) -> Path:
    """A random BERT of ``layers`` layers (seed 0) with a word-level tokenizer of ``words``,
    saved in ``directory`` like all-MiniLM-L6-v2."""
    vocab = {word: i for i, word in enumerate([*SPECIALS, *words])}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer_class: Any = getattr(transformers, "BertTokenizerFast", None) or (
        transformers.BertTokenizer
    )
    tokenizer = tokenizer_class(tokenizer_object=backend, model_max_length=max_length)
    tokenizer.save_pretrained(directory)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_length,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(directory)
    return directory
