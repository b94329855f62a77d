r"""Momentum and Nesterov's accelerated gradient, in the lecture's form.

Momentum keeps a velocity :math:`v`, a decayed sum of past steps:

.. math::

    g_t &= \nabla J(\theta_{t-1}) \\
    v_t &= \gamma v_{t-1} + \eta g_t \\
    \theta_t &= \theta_{t-1} - v_t

Nesterov's accelerated gradient (NAG) only moves the point where the gradient
is taken, to where the velocity is about to carry the parameters:

.. math::

    g_t &= \nabla J(\theta_{t-1} - \gamma v_{t-1}) \\
    v_t &= \gamma v_{t-1} + \eta g_t \\
    \theta_t &= \theta_{t-1} - v_t

Relation to ``torch.optim.SGD(momentum=gamma, nesterov=...)``. Torch keeps a
buffer :math:`b_t = \gamma b_{t-1} + g_t` *without* the learning rate and steps
:math:`\theta_t = \theta_{t-1} - \eta_t b_t`. With a constant :math:`\eta`,
:math:`v_t = \eta b_t` and the iterates coincide. When :math:`\eta` changes
during a run they differ: here a new :math:`\eta` affects only new gradients,
in torch it rescales the whole accumulated velocity at once.
Torch's Nesterov variant takes the gradient at its own iterate and steps
:math:`\theta - \eta(g_t + \gamma b_t)`; its iterates are exactly this module's
look-ahead points :math:`\theta_t - \gamma v_t` (:func:`nesterov_lookahead`),
so both trace the same path, shifted by one look-ahead.

In the code :math:`\theta` is ``x``, :math:`\eta` is ``lr`` and :math:`\gamma` is ``momentum``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    as_array,
    check_beta,
    check_lr,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)

__all__ = [
    "MomentumState",
    "init_momentum_state",
    "velocity",
    "momentum_update",
    "nesterov_lookahead",
    "momentum_step",
    "nesterov_step",
    "nesterov_momentum_schedule",
]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("init_momentum_state", "momentum_step", "nesterov_step")


@dataclass(frozen=True)
class MomentumState:
    """The velocity :math:`v_{t}` and the number of steps taken ``t``."""

    v: np.ndarray
    t: int = 0


def init_momentum_state(x: np.ndarray) -> MomentumState:
    """:math:`v_0 = 0`."""
    return MomentumState(v=np.zeros_like(as_array(x, "x")))


@symbol(r"v_t = \gamma v_{t-1} + \eta g_t", "velocity of momentum: decayed sum of past steps")
def velocity(v_prev: np.ndarray, g: np.ndarray, lr: float, momentum: float) -> np.ndarray:
    r""":math:`v_t = \gamma v_{t-1} + \eta g_t`."""
    v_prev, g = as_array(v_prev, "v_prev"), as_array(g, "g")
    check_same_shape(v_prev, g, "g", "v_prev")
    return check_beta(momentum, "momentum") * v_prev + check_lr(lr) * g


@symbol(r"\theta_t = \theta_{t-1} - v_t", "momentum step: move by the velocity")
def momentum_update(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - v_t`."""
    x, v = as_array(x, "x"), as_array(v, "v")
    check_same_shape(x, v, "v")
    return x - v


@symbol(r"\theta_{t-1} - \gamma v_{t-1}", "Nesterov look-ahead point, where NAG takes the gradient")
def nesterov_lookahead(x: np.ndarray, v: np.ndarray, momentum: float) -> np.ndarray:
    r""":math:`\theta_{t-1} - \gamma v_{t-1}`: where the velocity alone would carry the parameters.

    It is also the iterate that ``torch.optim.SGD(nesterov=True)`` reports
    (with :math:`v = \eta b` for torch's buffer :math:`b`).
    """
    x, v = as_array(x, "x"), as_array(v, "v")
    check_same_shape(x, v, "v")
    return x - check_beta(momentum, "momentum") * v


@symbol(
    r"\gamma_k = (a_k - 1)/a_{k+1},\ a_{k+1} = \tfrac12\bigl(1+\sqrt{1+4a_k^2}\bigr),\ a_1 = 1",
    "Nesterov's momentum schedule for the O(1/k^2) rate on smooth convex functions",
)
def nesterov_momentum_schedule(steps: int) -> np.ndarray:
    r"""The momentum coefficients :math:`\gamma_1, \dots, \gamma_K` of Nesterov's accelerated method for smooth convex functions.

    :math:`a_1 = 1`, :math:`a_{k+1} = (1+\sqrt{1+4a_k^2})/2` and :math:`\gamma_k = (a_k-1)/a_{k+1}`
    (Nesterov 1983; the form of Beck and Teboulle's FISTA). :math:`a_k \approx (k+1)/2`, so
    :math:`\gamma_k \approx 1 - 3/k`: the coefficient starts at 0 and creeps towards 1. The
    :math:`O(1/k^2)` guarantee is proved for this schedule, not for the constant :math:`\gamma` of the
    lecture's form and of ``torch.optim.SGD(nesterov=True)``.
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    a = np.empty(int(steps) + 1)
    a[0] = 1.0
    for k in range(int(steps)):
        a[k + 1] = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * a[k] * a[k]))
    return (a[:-1] - 1.0) / a[1:]


def _state(x: np.ndarray, state: MomentumState | None) -> MomentumState:
    state = init_momentum_state(x) if state is None else state
    check_state_arrays(x, v=state.v)
    return state


def momentum_step(
    x: np.ndarray, g: np.ndarray, state: MomentumState | None = None, *, lr: float, momentum: float = 0.9
) -> tuple[np.ndarray, MomentumState]:
    r"""One momentum step: :math:`v_t = \gamma v_{t-1} + \eta g_t`, :math:`\theta_t = \theta_{t-1} - v_t`.

    ``g`` is the gradient at ``x``. Returns the new parameters and state.
    """
    x, g = params_and_grad(x, g)
    state = _state(x, state)
    v = velocity(state.v, g, lr, momentum)
    return momentum_update(x, v), MomentumState(v=v, t=state.t + 1)


def nesterov_step(
    x: np.ndarray, g: np.ndarray, state: MomentumState | None = None, *, lr: float, momentum: float = 0.9
) -> tuple[np.ndarray, MomentumState]:
    r"""One NAG step. ``g`` must be the gradient at the look-ahead point
    :math:`\theta_{t-1} - \gamma v_{t-1}` (:func:`nesterov_lookahead`), not at ``x``.

    :func:`optbook.reference.run` evaluates it there by itself, through
    ``nesterov_step.gradient_at``. Given that gradient, the update is the one
    of :func:`momentum_step`.
    """
    return momentum_step(x, g, state, lr=lr, momentum=momentum)


def _nesterov_gradient_at(
    x: np.ndarray, state: MomentumState | None, *, momentum: float = 0.9, **_ignored
) -> np.ndarray:
    x = as_array(x, "x")
    state = _state(x, state)
    return nesterov_lookahead(x, state.v, momentum)


momentum_step.init_state = init_momentum_state
nesterov_step.init_state = init_momentum_state
nesterov_step.gradient_at = _nesterov_gradient_at
