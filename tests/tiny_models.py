"""Tiny randomly initialised models for tests, saved as their real counterparts are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_bert(
    directory: Path,
    words: Sequence[str],
    *,
    layers: int,
    hidden: int = 32,
    max_length: int = 24,
    initializer_range: float = 0.02,
) -> Path:
    """A random BERT of ``layers`` layers (seed 0, weights of standard deviation
    ``initializer_range``) with a word-level tokenizer of ``words``, saved in ``directory`` like
    all-MiniLM-L6-v2."""
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
        initializer_range=initializer_range,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(directory)
    return directory


def tiny_roberta_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with RoBERTa's special tokens at ids
    0..4 (what CLAP's text tower reads)."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return transformers.RobertaTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=512,
    )  # fmt: skip
