"""Encoders: text and audio to L2-normalised float32 vectors. Built-ins are plugins."""

from newwave.encoders.base import Encoder

__all__ = ["Encoder"]
