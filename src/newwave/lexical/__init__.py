"""Lexical indexes: their interface and the built-in ``bm25``."""

from newwave.lexical.base import ANALYZER_VERSION, LexicalIndex, analyze
from newwave.lexical.bm25 import BM25Index

__all__ = ["ANALYZER_VERSION", "BM25Index", "LexicalIndex", "analyze"]
