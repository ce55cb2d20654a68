"""The built-in ``clap`` plugin: the CLAP audio-text encoder.

The name is reserved and listed; building it raises
:class:`~newwave.errors.ComponentUnavailableError` until its implementation lands.
"""

from __future__ import annotations

from newwave.hookspecs import Register, hookimpl
from newwave.plugins import unavailable

_REASON = "the CLAP audio-text encoder is not implemented in this version"


@hookimpl
def register_encoders(register: Register) -> None:
    register(unavailable("encoder", "clap", _REASON))
