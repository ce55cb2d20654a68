"""Encoding on a cluster: a Parquet manifest of the values to embed, encoded by Ray Data into
Parquet shards, then loaded into a library (``newwave index ... --executor ray``).

Only :mod:`newwave.distributed.manifest` is imported here; Ray is imported by
:func:`index_with_ray` when it runs (``pip install 'newwave-music[ray]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from newwave.distributed.manifest import TRACK_FIELD, export_manifest

if TYPE_CHECKING:
    from newwave.distributed.ray_executor import RayReport

__all__ = ["TRACK_FIELD", "RayReport", "export_manifest", "index_with_ray", "load_shards"]


def __getattr__(name: str) -> Any:
    if name in ("index_with_ray", "load_shards", "RayReport", "encode_shards"):
        from newwave.distributed import ray_executor

        return getattr(ray_executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
