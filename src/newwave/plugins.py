"""The plugin system: built-in and third-party components, registered through the same hooks.

Components are found in this order, the first registration of a name winning:

1. the built-in plugins (``BUILTIN_PLUGINS``), always loaded;
2. installed distributions that declare entry points in the group ``newwave``. The variable
   ``NEWWAVE_LOAD_PLUGINS``, read when the plugin manager is first built, restricts them to a
   comma-separated list of entry-point or distribution names; set it empty to load none.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from newwave import hookspecs
from newwave._distribution import is_this_distribution
from newwave.errors import (
    ComponentUnavailableError,
    InvalidInputError,
    PluginError,
    UnknownComponentError,
)

if TYPE_CHECKING:
    from newwave.encoders.base import Encoder
    from newwave.fusion.base import Fuser
    from newwave.index.base import Retriever
    from newwave.lexical.base import LexicalIndex
    from newwave.query.base import QueryRewriter

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "MODEL_ENCODER",
    "Kind",
    "Registration",
    "components",
    "get_plugin_manager",
    "load_encoder",
    "load_field_encoder",
    "load_fuser",
    "load_lexical",
    "load_retriever",
    "load_rewriter",
]

ENTRY_POINT_GROUP = "newwave"
LOAD_PLUGINS_ENV = "NEWWAVE_LOAD_PLUGINS"

#: Built-in plugin modules by plugin name: the same names as the entry points in pyproject.toml.
BUILTIN_PLUGINS: dict[str, str] = {
    "clap": "newwave.encoders.clap",
    "minilm": "newwave.encoders.minilm",
    "minilm-music": "newwave.encoders.minilm_music",
    "bge-m3": "newwave.encoders.bge_m3",
    "sentence-transformers": "newwave.encoders.sentence_transformers",
    "biencoder": "newwave.encoders.biencoder",
    "musicnn": "newwave.encoders.musicnn",
    "mlp": "newwave.fusion.mlp",
    "score-fusion": "newwave.fusion.score",
    "faiss": "newwave.index.faiss",
    "qdrant": "newwave.index.qdrant",
    "bm25": "newwave.lexical.bm25",
    "query-rules": "newwave.query.rules",
}

#: The encoder that a name shaped like a hub id (``"org/name"``) resolves to when no component
#: claims that name: ``load_encoder("org/name")`` means ``load_encoder(MODEL_ENCODER,
#: model="org/name")``.
MODEL_ENCODER = "sentence-transformers"
_HUB_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")

Kind = Literal["encoder", "lexical", "fuser", "retriever", "rewriter"]
_KINDS: tuple[Kind, ...] = ("encoder", "lexical", "fuser", "retriever", "rewriter")


@dataclass(frozen=True)
class Registration:
    """One registered component: its name, aliases, the factory that builds it and its plugin."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    aliases: tuple[str, ...]
    plugin: str

    @property
    def summary(self) -> str:
        """The first line of the factory's docstring."""
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_manager: pluggy.PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built (and plugins loaded) on first call."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = _new_plugin_manager()
        return _manager


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name, module in BUILTIN_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    _load_entry_points(pm, os.environ.get(LOAD_PLUGINS_ENV))
    pm.check_pending()
    return pm


def _load_entry_points(pm: pluggy.PluginManager, allowed: str | None) -> None:
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if is_this_distribution(dist):
            continue  # the built-ins, already registered above
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        if pm.get_plugin(ep.name) is not None:
            warnings.warn(
                f"plugin {ep.name!r} from {dist or 'an unknown distribution'} is not loaded: "
                "a plugin of that name is already registered",
                stacklevel=3,
            )
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            warnings.warn(
                f"plugin {ep.name!r} from {dist or 'an unknown distribution'} failed to load "
                f"and is skipped: {type(exc).__name__}: {exc}",
                stacklevel=3,
            )
            continue
        pm.register(plugin, name=ep.name)


def components(kind: Kind) -> dict[str, Registration]:
    """Every registered component of ``kind``, by primary name, sorted by name."""
    if kind not in _KINDS:
        raise UnknownComponentError(f"unknown component kind {kind!r}; choose from {_KINDS}")
    pm = get_plugin_manager()
    found: dict[str, Registration] = {}
    taken: dict[str, str] = {}  # every name and alias -> primary name
    hook = getattr(pm.hook, "register_lexical" if kind == "lexical" else f"register_{kind}s")
    # get_hookimpls() lists implementations in registration order, so the built-ins claim their
    # names before any third-party plugin.
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(
            factory: Any,
            *,
            name: str | None = None,
            aliases: tuple[str, ...] = (),
            _plugin: str = plugin_name,
        ) -> None:
            primary = name if name is not None else getattr(factory, "name", None)
            if not isinstance(primary, str) or not primary:
                raise PluginError(
                    f"plugin {_plugin!r} registered a {kind} without a name: pass name= "
                    "or give the factory a `name` attribute"
                )
            if not callable(factory):
                raise PluginError(f"plugin {_plugin!r} registered {kind} {primary!r}: not callable")
            clash = [n for n in (primary, *aliases) if n in taken]
            if clash:
                warnings.warn(
                    f"plugin {_plugin!r} registers {kind} name {clash[0]!r}, which "
                    f"{found[taken[clash[0]]].plugin!r} already registered; the first one is kept",
                    stacklevel=2,
                )
                return
            found[primary] = Registration(kind, primary, factory, tuple(aliases), _plugin)
            for n in (primary, *aliases):
                taken[n] = primary

        impl.function(*(register for _ in impl.argnames))
    return dict(sorted(found.items()))


def _resolve(kind: Kind, name: str) -> Registration:
    if not isinstance(name, str):
        raise UnknownComponentError(f"{kind} name must be a string, not {type(name).__name__}")
    registered = components(kind)
    for registration in registered.values():
        if name == registration.name or name in registration.aliases:
            return registration
    names = sorted(registered)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownComponentError(
        f"unknown {kind} {name!r}; available: {', '.join(names) or '(none)'}{hint}"
    )


def _build(
    kind: Kind, name: str, expected: type | tuple[type, ...], args: tuple[Any, ...], options: Any
) -> Any:
    registration = _resolve(kind, name)
    try:
        signature = inspect.signature(registration.factory)
    except (TypeError, ValueError):  # a callable without an introspectable signature
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **options)
        except TypeError as exc:
            accepted = [
                p.name
                for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            unknown = sorted(set(options) - set(accepted))
            problem = str(exc)  # e.g. too many positional arguments
            if unknown:
                plural = "s" if len(unknown) > 1 else ""
                problem = f"unknown option{plural} {', '.join(map(repr, unknown))}"
            raise InvalidInputError(
                f"{kind} {registration.name!r}: {problem}; it accepts: "
                f"{', '.join(accepted) or '(no options)'}"
            ) from None
    try:
        component = registration.factory(*args, **options)
    except TypeError as exc:  # a factory taking **options passes an unknown one further down
        if "unexpected keyword argument" not in str(exc):
            raise
        raise InvalidInputError(f"{kind} {registration.name!r}: {exc}") from None
    if not isinstance(component, expected):
        wanted = expected if isinstance(expected, tuple) else (expected,)
        raise PluginError(
            f"{kind} {registration.name!r} from plugin {registration.plugin!r} built a "
            f"{type(component).__name__}, not a {' or '.join(t.__name__ for t in wanted)}"
        )
    return component


def _model_reference(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(name, options)``, or for an unclaimed hub id ``(MODEL_ENCODER, {"model": name, ...})``."""
    if not isinstance(name, str) or not _HUB_ID.match(name):
        return name, options
    for registration in components("encoder").values():
        if name == registration.name or name in registration.aliases:
            return name, options
    if "model" in options:
        raise InvalidInputError(
            f"{name!r} names a model, so model={options['model']!r} cannot name another; use "
            f"load_encoder({MODEL_ENCODER!r}, model=...)"
        )
    return MODEL_ENCODER, {"model": name, **options}


def load_encoder(name: str, /, **options: Any) -> Encoder:
    """Build the encoder registered as ``name`` (or an alias) with keyword ``options``.

    A hub id that no component claims (``"sentence-transformers/all-mpnet-base-v2"``) builds the
    ``sentence-transformers`` encoder with that model. An unknown name raises
    :class:`~newwave.errors.UnknownComponentError` listing the known ones; a lexical index
    (``"bm25"``) raises :class:`~newwave.errors.ComponentUnavailableError`.
    """
    from newwave.encoders.base import Encoder

    _refuse_other_kind(name, "encoder", "lexical")
    name, options = _model_reference(name, dict(options))
    component: Encoder = _build("encoder", name, Encoder, (), options)
    return component


def load_lexical(name: str, /, **options: Any) -> LexicalIndex:
    """Build the empty lexical index registered as ``name``: ``load_lexical("bm25")``.

    An embedding model's name raises :class:`~newwave.errors.ComponentUnavailableError`.
    """
    from newwave.lexical.base import LexicalIndex

    _refuse_other_kind(name, "lexical", "encoder")
    component: LexicalIndex = _build("lexical", name, LexicalIndex, (), options)
    return component


def _refuse_other_kind(name: str, wanted: Kind, other: Kind) -> None:
    """Refuse ``name`` when only the ``other`` kind of field encoder registers it."""
    if isinstance(name, str) and _registered(other, name) and not _registered(wanted, name):
        what = {"encoder": "an embedding model", "lexical": "a lexical index"}
        raise ComponentUnavailableError(
            f"{name!r} is {what[other]}, not {what[wanted]}: use it as a Recommender field "
            f"encoder, or build it with newwave.plugins.load_{other}({name!r})"
        )


def _registered(kind: Kind, name: str) -> bool:
    return any(name == r.name or name in r.aliases for r in components(kind).values())


def load_field_encoder(name: str, /, **options: Any) -> Encoder | LexicalIndex:
    """Build what a Recommender field names: a lexical index (``"bm25"``) or an encoder."""
    if isinstance(name, str) and _registered("lexical", name):
        return load_lexical(name, **options)
    try:
        return load_encoder(name, **options)
    except UnknownComponentError as exc:
        lexical = ", ".join(components("lexical"))
        raise UnknownComponentError(f"{exc}; lexical indexes: {lexical}") from None


def load_fuser(name: str, /, *args: Any, **options: Any) -> Fuser:
    """Build the fuser registered as ``name``; ``args`` (e.g. a weights path) go to its factory."""
    from newwave.fusion.base import Fuser

    component: Fuser = _build("fuser", name, Fuser, args, options)
    return component


def load_retriever(name: str, /, **options: Any) -> Retriever:
    """Build an empty retriever registered as ``name``: ``load_retriever("faiss", dim=384)``."""
    from newwave.index.base import Retriever

    component: Retriever = _build("retriever", name, Retriever, (), options)
    return component


def load_rewriter(name: str, /, **options: Any) -> QueryRewriter:
    """Build the query rewriter registered as ``name``: ``load_rewriter("rules")``."""
    from newwave.query.base import QueryRewriter

    component: QueryRewriter = _build("rewriter", name, QueryRewriter, (), options)
    return component
