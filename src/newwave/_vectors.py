"""Checks and conversions for the one embedding contract: 2-D C-contiguous float32 rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from newwave.errors import DimensionMismatchError, InvalidInputError, NonFiniteVectorError
from newwave.types import FloatMatrix

__all__ = ["as_matrix", "l2_normalize"]


def as_matrix(vectors: Any, *, dim: int | None = None, what: str = "vectors") -> FloatMatrix:
    """``vectors`` as a C-contiguous float32 (n, dim) array, rejecting other widths and NaN/inf."""
    try:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a numeric array: {exc}") from exc
    if matrix.ndim != 2:
        raise InvalidInputError(
            f"{what} must be 2-D (n, dim), got shape {matrix.shape}; "
            "for one vector use vector.reshape(1, -1)"
        )
    if dim is not None and matrix.shape[1] != dim:
        raise DimensionMismatchError(f"{what} have dimension {matrix.shape[1]}, expected {dim}")
    if not np.isfinite(matrix).all():
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        raise NonFiniteVectorError(
            f"{what} contain NaN or infinity in row(s) {bad[:10].tolist()}"
            + (" ..." if bad.size > 10 else "")
        )
    return matrix


def l2_normalize(matrix: FloatMatrix) -> FloatMatrix:
    """Rows scaled to unit L2 norm, as a new array; all-zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)
