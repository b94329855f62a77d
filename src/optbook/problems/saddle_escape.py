r"""Leaving the saddle :math:`x^2 - y^2` (:func:`optbook.problems.saddle`):
:func:`saddle_escape_steps` predicts how long gradient descent needs, :func:`steps_within`
measures it on a path, :func:`numerical_hessian` checks the curvature.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_positive_finite

__all__ = [
    "saddle_escape_steps",
    "steps_within",
    "numerical_hessian",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "steps_within",
    "numerical_hessian",
)


@symbol(
    r"T_{\mathrm{esc}} = \frac{\log(r/\delta)}{\log(1+2\eta)}",
    "GD steps to carry y from delta to r on the saddle x^2 - y^2",
)
def saddle_escape_steps(delta: float, lr: float, radius: float) -> float:
    r"""On :math:`x^2 - y^2` gradient descent multiplies :math:`y` by :math:`1+2\eta` every step, so
    :math:`|y_t| = (1+2\eta)^t\delta` reaches ``radius`` after :math:`\log(r/\delta)/\log(1+2\eta)` steps.

    It grows without bound as the start approaches the stable manifold :math:`y = 0`.
    """
    delta, radius = check_positive_finite(delta, "delta"), check_positive_finite(radius, "radius")
    lr = check_positive_finite(lr, "lr")
    return max(0.0, math.log(radius / delta) / math.log1p(2.0 * lr))


def steps_within(xs: np.ndarray, radius: float, center: np.ndarray | None = None) -> int:
    """Number of iterates of a path ``xs`` (shape ``(steps + 1, n)``) closer than ``radius`` to ``center``."""
    xs = as_array(xs, "xs")
    if xs.ndim != 2:
        raise ValueError(f"xs must be a path of shape (steps + 1, n), got {xs.shape}.")
    c = np.zeros(xs.shape[1]) if center is None else as_array(center, "center")
    return int(np.sum(np.linalg.norm(xs - c, axis=1) < check_positive_finite(radius, "radius")))


def numerical_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference Hessian of a function from its exact gradient: column ``j`` is
    ``(grad(x + h e_j) - grad(x - h e_j)) / (2 h)``, symmetrised. For measuring local curvature."""
    x = as_array(x, "x")
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D point, got shape {x.shape}.")
    h = check_positive_finite(h, "h")
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((as_array(grad(x + e), "grad(x)") - as_array(grad(x - e), "grad(x)")) / (2.0 * h))
    hess = np.stack(cols, axis=1)
    return 0.5 * (hess + hess.T)
