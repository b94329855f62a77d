r"""Newton's method, :math:`\theta - \eta H^{-1} g`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_lr, params_and_grad

__all__ = [
    "NewtonState",
    "newton_direction",
    "newton_step",
    "init_newton_state",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "newton_step",
    "init_newton_state",
)


@dataclass(frozen=True)
class NewtonState:
    """Newton's method keeps nothing between steps but the step count ``t``."""

    t: int = 0


@symbol(r"H^{-1} g", "Newton direction: the gradient divided by the curvature")
def newton_direction(hessian: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`H^{-1}g`. ``hessian`` is the full matrix (shape ``(n, n)`` for ``g`` of size
    :math:`n`) or, for a separable loss, its diagonal (the shape of ``g``)."""
    H, g = as_array(hessian, "hessian"), as_array(g, "g")
    if H.shape == g.shape:
        return g / H
    n = g.size
    if H.shape != (n, n):
        raise ValueError(f"hessian must have shape {(n, n)} or the shape of g {g.shape}, got {H.shape}.")
    return np.linalg.solve(H, g.ravel()).reshape(g.shape)


def newton_step(
    x: np.ndarray, g: np.ndarray, state: NewtonState | None = None, *, hessian_fn: Callable, lr: float = 1.0
) -> tuple[np.ndarray, NewtonState]:
    r"""One (damped) Newton step :math:`\theta_t = \theta_{t-1} - \eta H(\theta_{t-1})^{-1} g_t`.

    ``hessian_fn(x)`` returns the Hessian at ``x`` (matrix or, if separable, diagonal).
    Newton's method looks for a zero of the gradient: it is attracted by maxima and
    saddle points as much as by minima.
    """
    x, g = params_and_grad(x, g)
    state = NewtonState() if state is None else state
    return x - check_lr(lr) * newton_direction(hessian_fn(x), g), NewtonState(t=state.t + 1)


def init_newton_state(x: np.ndarray) -> NewtonState:
    """Newton's method starts with ``t = 0`` and nothing else."""
    return NewtonState()


newton_step.init_state = init_newton_state
