"""The built-in ``mlp`` plugin: the learned MLP late-fusion model.

The name is reserved and listed; building it raises
:class:`~newwave.errors.ComponentUnavailableError` until its implementation lands.
"""

from __future__ import annotations

from newwave.hookspecs import Register, hookimpl
from newwave.plugins import unavailable

_REASON = "the learned MLP late-fusion model is not implemented in this version"


@hookimpl
def register_fusers(register: Register) -> None:
    register(unavailable("fuser", "mlp", _REASON))
