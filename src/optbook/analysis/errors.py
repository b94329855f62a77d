r"""Comparing an estimate with the exact value.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_same_shape

__all__ = [
    "relative_error",
]


@symbol(r"\lVert \hat h - h\rVert / \lVert h\rVert", "relative error of an estimate")
def relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    r""":math:`\lVert\hat h - h\rVert_2/\lVert h\rVert_2` over all entries."""
    estimate, exact = as_array(estimate, "estimate"), as_array(exact, "exact")
    check_same_shape(exact, estimate, "estimate", "exact")
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))
