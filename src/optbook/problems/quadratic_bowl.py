r"""The quadratic bowl :math:`f(\theta) = \frac12(\theta-\theta^\star)^\top A(\theta-\theta^\star)`,
on which every rule of Part I can be analysed exactly, direction by direction.
"""

from __future__ import annotations

import math

import numpy as np

from optbook.notation import symbol
from optbook.problems.analytic import Problem
from optbook.reference._checks import as_array

__all__ = [
    "quadratic",
    "quadratic_grad",
    "quadratic_problem",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "quadratic_problem",
)


def _matrix(a) -> np.ndarray:
    a = as_array(a, "A")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {a.shape}.")
    # Exact symmetry is the common case and cheap to test; allclose (slow) only decides the rest.
    if not np.array_equal(a, a.T) and not np.allclose(a, a.T):
        raise ValueError("A must be symmetric (it is the Hessian of the quadratic).")
    return a


@symbol(r"f(\theta) = \tfrac12(\theta-\theta^\star)^\top A(\theta-\theta^\star)", "quadratic bowl with Hessian A")
def quadratic(x: np.ndarray, a: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    r""":math:`f(\theta) = \frac12(\theta-\theta^\star)^\top A(\theta-\theta^\star)`; ``x`` may be a batch ``(..., n)``."""
    a = _matrix(a)
    x = as_array(x, "x")
    e = x - (0.0 if center is None else as_array(center, "center"))
    if e.shape[-1] != a.shape[0]:
        raise ValueError(f"x has {e.shape[-1]} coordinates in its last axis but A is {a.shape}.")
    return 0.5 * np.einsum("...i,ij,...j->...", e, a, e)


@symbol(r"\nabla f(\theta) = A(\theta-\theta^\star)", "gradient of the quadratic bowl")
def quadratic_grad(x: np.ndarray, a: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\nabla f(\theta) = A(\theta-\theta^\star)`."""
    a = _matrix(a)
    x = as_array(x, "x")
    e = x - (0.0 if center is None else as_array(center, "center"))
    if e.shape != (a.shape[0],):
        raise ValueError(f"x must have shape ({a.shape[0]},) to match A, got {x.shape}.")
    return a @ e


def quadratic_problem(curvatures, x0, *, center=None, angle: float = 0.0, name: str | None = None) -> Problem:
    r"""The quadratic with eigenvalues ``curvatures`` (the Hessian's), as a :class:`~optbook.problems.Problem`.

    In two dimensions ``angle`` (radians) rotates the eigenvectors away from
    the axes: :math:`A = R\,\mathrm{diag}(\lambda)\,R^\top`. The minimiser is
    ``center`` (the origin by default).
    """
    lam = as_array(curvatures, "curvatures")
    if lam.ndim != 1 or lam.size == 0 or np.any(lam < 0):
        raise ValueError(f"curvatures must be a non-empty 1-D array of eigenvalues >= 0, got {curvatures!r}.")
    a = np.diag(lam)
    if angle:
        if lam.size != 2:
            raise ValueError("angle rotates a two-dimensional quadratic only.")
        c, s = math.cos(angle), math.sin(angle)
        r = np.array([[c, -s], [s, c]])
        a = r @ a @ r.T
        a = 0.5 * (a + a.T)
    center = np.zeros(lam.size) if center is None else as_array(center, "center")
    x0 = as_array(x0, "x0")
    if x0.shape != (lam.size,) or center.shape != (lam.size,):
        raise ValueError(f"x0 and center must have shape ({lam.size},), got {x0.shape} and {center.shape}.")
    label = name or "quadratic, curvatures " + ", ".join(f"{v:g}" for v in lam)
    return Problem(
        name=label,
        loss=lambda x: quadratic(x, a, center),
        grad=lambda x: quadratic_grad(x, a, center),
        x0=x0.copy(),
        minimizer=center.copy(),
    )
