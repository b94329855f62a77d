r"""A toy with one sharp and one flat direction.

:func:`sharp_flat_loss`,
:math:`L(\theta) = 8(\theta_1-1)^2(1.3\theta_1^2+2\theta_1+1) + \tfrac12(\theta_2-4)^2`,
the shape of the motivating example of the Sophia paper (Liu et al., Figure 2):
curvature about 69 along :math:`\theta_1` at the minimum :math:`(1, 4)` against 1
along :math:`\theta_2`, and a non-convex :math:`\theta_1` with a local maximum at
:math:`\theta_1 = 0`, so that :math:`(0, 4)` is a saddle point.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.problems.analytic import Problem

__all__ = [
    "sharp_flat_loss",
    "sharp_flat_grad",
    "sharp_flat_hessian_diagonal",
    "sharp_flat_problem",
    "SHARP_FLAT_MINIMIZER",
    "SHARP_FLAT_SADDLE",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "sharp_flat_problem",
)


SHARP_FLAT_MINIMIZER = np.array([1.0, 4.0])
SHARP_FLAT_SADDLE = np.array([0.0, 4.0])


def _theta(theta):
    t = np.asarray(theta, dtype=float)
    return t[..., 0], t[..., 1]


@symbol(
    r"L(\theta) = 8(\theta_1-1)^2(1.3\theta_1^2+2\theta_1+1) + \tfrac12(\theta_2-4)^2",
    "toy loss with a sharp direction theta_1 and a flat direction theta_2",
)
def sharp_flat_loss(theta: np.ndarray) -> np.ndarray:
    r""":math:`L(\theta) = 8(\theta_1-1)^2(1.3\theta_1^2+2\theta_1+1) + \tfrac12(\theta_2-4)^2`; accepts shape ``(..., 2)``.

    Global minimum :math:`0` at :math:`(1, 4)`; along :math:`\theta_1` also a local
    minimum near :math:`-0.654` and a local maximum at :math:`0`, so :math:`(0, 4)` is a saddle.
    """
    a, b = _theta(theta)
    return 8.0 * (a - 1.0) ** 2 * (1.3 * a**2 + 2.0 * a + 1.0) + 0.5 * (b - 4.0) ** 2


@symbol(r"\nabla L(\theta) = \big(8\theta_1(\theta_1-1)(5.2\theta_1+3.4),\ \theta_2-4\big)", "gradient of the sharp/flat toy")
def sharp_flat_grad(theta: np.ndarray) -> np.ndarray:
    r""":math:`\partial_1 L = 8\theta_1(\theta_1-1)(5.2\theta_1+3.4)`, :math:`\partial_2 L = \theta_2 - 4`."""
    a, b = _theta(theta)
    return np.stack([8.0 * a * (a - 1.0) * (5.2 * a + 3.4), b - 4.0], axis=-1)


@symbol(r"\operatorname{diag}\nabla^2 L(\theta) = \big(8(15.6\theta_1^2 - 3.6\theta_1 - 3.4),\ 1\big)", "Hessian of the sharp/flat toy (diagonal: the loss is separable)")
def sharp_flat_hessian_diagonal(theta: np.ndarray) -> np.ndarray:
    r"""The Hessian is diagonal: :math:`\partial_1^2 L = 8(15.6\theta_1^2 - 3.6\theta_1 - 3.4)`, :math:`\partial_2^2 L = 1`.

    :math:`\partial_1^2 L` is :math:`68.8` at the minimum and negative for
    :math:`\theta_1 \in (-0.365, 0.596)`.
    """
    a, b = _theta(theta)
    return np.stack([8.0 * (15.6 * a**2 - 3.6 * a - 3.4), np.ones_like(b)], axis=-1)


def sharp_flat_problem(x0=(-0.2, 0.5)) -> Problem:
    """The toy as a :class:`optbook.problems.Problem`, minimiser :math:`(1, 4)`."""
    return Problem("sharp/flat toy", sharp_flat_loss, sharp_flat_grad, np.array(x0, dtype=float), SHARP_FLAT_MINIMIZER.copy())
