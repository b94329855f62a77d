r"""Problems the chapters optimise: each is a loss with its exact gradient.

The numbers in :func:`worked_example` are the 3-by-3 matrices of the Cornell
Optimization Wiki's Adafactor page; the two-dimensional test functions are the
standard ones from the optimisation literature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from optbook.notation import symbol

__all__ = [
    "Problem",
    "matrix_distance_loss",
    "matrix_distance_grad",
    "worked_example",
    "rosenbrock",
    "rosenbrock_grad",
    "beale",
    "beale_grad",
    "saddle",
    "saddle_grad",
    "rosenbrock_problem",
    "beale_problem",
    "saddle_problem",
    "FiniteSum",
]

# Gradients and problem constructors: not book symbols of their own.
__helpers__ = (
    "worked_example", "rosenbrock_grad", "beale_grad", "saddle_grad",
    "rosenbrock_problem", "beale_problem", "saddle_problem",
)


@dataclass(frozen=True)
class Problem:
    """A differentiable objective: ``loss(x)``, ``grad(x)``, a start point and, if known, a minimiser."""

    name: str
    loss: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    x0: np.ndarray
    minimizer: np.ndarray | None = None


# --- the wiki's worked example -------------------------------------------------------

WIKI_X0 = np.array([[0.7, -0.5, 0.9], [-1.1, 0.8, -1.6], [1.2, -0.7, 0.4]])
WIKI_TARGET = np.array([[0.4, -0.3, 0.5], [-0.6, 0.2, -1.5], [1.0, -0.3, 0.1]])


@symbol(r"f(X) = \tfrac12\lVert X - C\rVert_F^2", "loss of the worked example")
def matrix_distance_loss(x: np.ndarray, target: np.ndarray = WIKI_TARGET) -> float:
    r""":math:`f(X) = \tfrac12 \sum_{ij} (X_{ij} - C_{ij})^2`."""
    return 0.5 * float(np.sum(np.square(np.asarray(x) - target)))


@symbol(r"G_t = X_{t-1} - C", "gradient of the worked example's loss")
def matrix_distance_grad(x: np.ndarray, target: np.ndarray = WIKI_TARGET) -> np.ndarray:
    r""":math:`\nabla f(X) = X - C`."""
    return np.asarray(x, dtype=float) - target


def worked_example() -> Problem:
    """The wiki's 3x3 example: start at X0, pull towards the target C."""
    return Problem(
        name="wiki 3x3",
        loss=matrix_distance_loss,
        grad=matrix_distance_grad,
        x0=WIKI_X0.copy(),
        minimizer=WIKI_TARGET.copy(),
    )


# --- two-dimensional test functions ----------------------------------------------------


@symbol(r"f_{\mathrm{Rosenbrock}}(x, y)", "Rosenbrock's banana function")
def rosenbrock(xy: np.ndarray, a: float = 1.0, b: float = 100.0) -> float:
    r""":math:`(a - x)^2 + b (y - x^2)^2`, minimum 0 at :math:`(a, a^2)`."""
    x, y = np.asarray(xy, dtype=float)[..., 0], np.asarray(xy, dtype=float)[..., 1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


def rosenbrock_grad(xy: np.ndarray, a: float = 1.0, b: float = 100.0) -> np.ndarray:
    """Exact gradient of :func:`rosenbrock`."""
    x, y = np.asarray(xy, dtype=float)
    return np.array([-2 * (a - x) - 4 * b * x * (y - x**2), 2 * b * (y - x**2)])


@symbol(r"f_{\mathrm{Beale}}(x, y)", "Beale's function")
def beale(xy: np.ndarray) -> float:
    r""":math:`(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2`, minimum 0 at (3, 0.5)."""
    xy = np.asarray(xy, dtype=float)
    x, y = xy[..., 0], xy[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def beale_grad(xy: np.ndarray) -> np.ndarray:
    """Exact gradient of :func:`beale`."""
    x, y = np.asarray(xy, dtype=float)
    t1, t2, t3 = 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3
    dx = 2 * t1 * (y - 1) + 2 * t2 * (y**2 - 1) + 2 * t3 * (y**3 - 1)
    dy = 2 * t1 * x + 2 * t2 * 2 * x * y + 2 * t3 * 3 * x * y**2
    return np.array([dx, dy])


@symbol(r"f_{\mathrm{saddle}}(x, y) = x^2 - y^2", "a saddle point at the origin")
def saddle(xy: np.ndarray) -> float:
    r""":math:`x^2 - y^2`: a stationary point at the origin that is a minimum along x and a maximum along y."""
    xy = np.asarray(xy, dtype=float)
    return xy[..., 0] ** 2 - xy[..., 1] ** 2


def saddle_grad(xy: np.ndarray) -> np.ndarray:
    """Exact gradient of :func:`saddle`."""
    x, y = np.asarray(xy, dtype=float)
    return np.array([2 * x, -2 * y])


def rosenbrock_problem(x0=(-1.5, 2.0)) -> Problem:
    return Problem("Rosenbrock", rosenbrock, rosenbrock_grad, np.array(x0, dtype=float), np.array([1.0, 1.0]))


def beale_problem(x0=(1.0, 1.5)) -> Problem:
    return Problem("Beale", beale, beale_grad, np.array(x0, dtype=float), np.array([3.0, 0.5]))


def saddle_problem(x0=(1.0, 1e-3)) -> Problem:
    return Problem("saddle x^2 - y^2", saddle, saddle_grad, np.array(x0, dtype=float), None)


@dataclass(frozen=True)
class FiniteSum:
    r"""A loss :math:`J(\theta) = \frac1N\sum_{i=1}^N J_i(\theta)` with exact gradients.

    ``loss(x)`` and ``grad(x)`` are the full-batch :math:`J` and :math:`\nabla J`;
    ``example_grads(x, indices)`` returns the per-example gradients
    :math:`\nabla J_i(x)` for ``indices``, shape ``(len(indices), *x.shape)``,
    as :func:`optbook.reference.minibatch_gradient` expects. ``n`` is :math:`N`.
    """

    name: str
    n: int
    loss: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    example_grads: Callable[[np.ndarray, np.ndarray], np.ndarray]
    x0: np.ndarray
