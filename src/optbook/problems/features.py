r"""Features of different scale and frequency, the case for per-coordinate rates.
"""

from __future__ import annotations

import numpy as np

from optbook.reference._checks import as_array

__all__ = [
    "feature_design",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "feature_design",
)


def feature_design(
    n: int, scales, frequencies, rng: np.random.Generator
) -> np.ndarray:
    r"""An ``(n, d)`` design matrix whose column :math:`j` is ``scales[j]`` times a standard normal
    draw, kept with probability ``frequencies[j]`` and zero otherwise.

    A rare or small feature gives its weight a small curvature
    :math:`\frac1N\sum_i a_{ij}^2 \approx s_j^2 p_j` in the least-squares loss
    (:mod:`optbook.tasks.least_squares`), and so a small gradient.
    """
    scales, frequencies = as_array(scales, "scales"), as_array(frequencies, "frequencies")
    if scales.ndim != 1 or scales.shape != frequencies.shape:
        raise ValueError("scales and frequencies must be 1-D arrays of the same length (one entry per feature).")
    if np.any(scales <= 0) or np.any((frequencies <= 0) | (frequencies > 1)):
        raise ValueError("scales must be > 0 and frequencies must lie in (0, 1].")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy Generator such as np.random.default_rng(0).")
    z = rng.standard_normal((int(n), scales.size))
    present = rng.random((int(n), scales.size)) < frequencies
    return z * present * scales
