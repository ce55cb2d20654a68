"""Fusers: combine per-field results into one ranking. Built-ins are plugins."""

from newwave.fusion.base import Fuser

__all__ = ["Fuser"]
