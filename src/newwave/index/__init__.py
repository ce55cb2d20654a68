"""Retrievers: vector indexes with persistence. Built-ins are plugins."""

from newwave.index.base import Retriever

__all__ = ["Retriever"]
