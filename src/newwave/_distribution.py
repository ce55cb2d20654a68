"""The name newwave is published under on PyPI (the import name stays ``newwave``)."""

from __future__ import annotations

import re

__all__ = ["DISTRIBUTION", "is_this_distribution"]

#: The distribution name: ``pip install newwave-music``. ``newwave`` on PyPI is another project.
DISTRIBUTION = "newwave-music"


def is_this_distribution(name: str) -> bool:
    """Whether ``name`` is this project's distribution, in any PEP 503 spelling."""
    return re.sub(r"[-_.]+", "-", name).lower() == DISTRIBUTION
