"""Imports of optional dependencies, failing with the pip command that installs them."""

from __future__ import annotations

import sys
from types import ModuleType

from newwave.errors import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(
    module: str,
    *,
    purpose: str,
    extra: str | None = None,
    package: str | None = None,
    catch: tuple[type[Exception], ...] = (ImportError,),
) -> ModuleType:
    """The imported ``module``, or :class:`MissingDependencyError` saying how to install it.

    The message reads "``purpose`` needs ``package``, which is not installed (reason): pip
    install ...": the newwave-music ``extra`` if given, else ``package`` (by default the
    module's top-level name). ``catch``: the exceptions that mean the module cannot be used.
    """
    name = package or module.partition(".")[0]
    try:
        __import__(module)
    except catch as exc:
        install = f"'newwave-music[{extra}]'" if extra else name
        raise MissingDependencyError(
            f"{purpose} needs {name}, which is not installed ({exc}): pip install {install}"
        ) from exc
    return sys.modules[module]
