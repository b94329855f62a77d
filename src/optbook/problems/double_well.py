r"""A one-dimensional non-convex finite sum: the tilted double well
:func:`tilted_double_well`, whose examples differ by a linear tilt (:func:`double_well_task`).
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.problems.analytic import FiniteSum
from optbook.reference._checks import as_array

__all__ = [
    "tilted_double_well",
    "tilted_double_well_grad",
    "double_well_task",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "double_well_task",
)


@symbol(r"J(x) = \tfrac14 x^4 - \tfrac12 x^2 + c\,x", "tilted double well: two minima, the left one deeper for c > 0")
def tilted_double_well(x: np.ndarray, tilt: float = 0.25) -> np.ndarray:
    r""":math:`J(x) = \frac14 x^4 - \frac12 x^2 + c x` with :math:`c` = ``tilt``, element-wise.

    For :math:`0 < c < 2/(3\sqrt3)` it has a deep minimum at negative
    :math:`x`, a shallow one at positive :math:`x` and a maximum between them.
    """
    x = as_array(x, "x")
    return 0.25 * x**4 - 0.5 * x**2 + tilt * x


@symbol(r"J'(x) = x^3 - x + c", "derivative of the tilted double well")
def tilted_double_well_grad(x: np.ndarray, tilt: float = 0.25) -> np.ndarray:
    r""":math:`J'(x) = x^3 - x + c`."""
    x = as_array(x, "x")
    return x**3 - x + tilt


def double_well_task(n: int = 100, tilt: float = 0.25, spread: float = 1.0, seed: int = 0, x0: float = 1.0) -> FiniteSum:
    r"""A finite sum of tilted double wells, :math:`J_i(x) = J(x) + a_i x`, with :math:`\frac1N\sum_i a_i = 0`.

    The :math:`a_i` are ``spread`` times standard normal draws (from ``seed``),
    centred so that their mean is exactly zero: the average of the :math:`J_i`
    is :func:`tilted_double_well` and a per-example gradient is
    :math:`J'(x) + a_i`. The parameter has shape ``(1,)``; it starts at ``x0``
    (by default in the shallow right-hand basin).
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be a whole number >= 2, got {n!r}.")
    a = np.random.default_rng(seed).standard_normal(int(n)) * float(spread)
    a -= a.mean()

    def example_grads(x, idx):
        return (tilted_double_well_grad(x, tilt) + a[np.asarray(idx)][:, None])

    return FiniteSum(
        name=f"tilted double well (c = {tilt:g}, N = {n})",
        n=int(n),
        loss=lambda x: float(np.sum(tilted_double_well(x, tilt))),
        grad=lambda x: tilted_double_well_grad(x, tilt),
        example_grads=example_grads,
        x0=np.array([float(x0)]),
    )
