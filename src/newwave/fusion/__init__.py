"""Fusers: combine per-field results into one ranking. Built-ins are plugins."""

from newwave.fusion.base import EmbeddingFuser, Fuser

__all__ = ["EmbeddingFuser", "Fuser"]
