"""The hooks a newwave plugin implements.

Each hook receives a ``register`` callback and calls it once per component::

    from newwave import hookimpl

    @hookimpl
    def register_encoders(register):
        register(MyEncoder, aliases=("mine",))

``register(factory, *, name=None, aliases=())`` takes a callable that builds the component from
keyword options (usually the class itself); ``name`` defaults to ``factory.name``.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

__all__ = ["Register", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("newwave")
hookimpl = pluggy.HookimplMarker("newwave")


class Register(Protocol):
    """The callback a hook receives."""

    def __call__(
        self, factory: Any, *, name: str | None = None, aliases: tuple[str, ...] = ()
    ) -> None: ...


@hookspec
def register_encoders(register: Register) -> None:
    """Register :class:`~newwave.encoders.Encoder` factories."""


@hookspec
def register_lexical(register: Register) -> None:
    """Register :class:`~newwave.lexical.LexicalIndex` factories (e.g. ``bm25``)."""


@hookspec
def register_fusers(register: Register) -> None:
    """Register :class:`~newwave.fusion.Fuser` factories."""


@hookspec
def register_retrievers(register: Register) -> None:
    """Register :class:`~newwave.index.Retriever` factories."""


@hookspec
def register_rewriters(register: Register) -> None:
    """Register :class:`~newwave.query.QueryRewriter` factories."""
