"""Benchmarks: run with `make bench` (timed) or `pytest benchmarks --benchmark-disable` (once each).

Each group times newwave next to a baseline measured in the same run; compare medians within a
group, not across machines.
"""

from __future__ import annotations

import os

os.environ["NEWWAVE_LOAD_PLUGINS"] = ""
