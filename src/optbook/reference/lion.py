r"""Lion (EvoLved Sign Momentum; Chen et al. 2023, Algorithm 2), in NumPy.

Lion keeps one moving average and steps by the *sign* of an interpolation
between it and the new gradient:

.. math::

    c_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
    u_t &= \operatorname{sign}(c_t) \\
    \theta_t &= \theta_{t-1} - \eta\,(u_t + \lambda\theta_{t-1}) \\
    m_t &= \beta_2 m_{t-1} + (1-\beta_2)\, g_t

Every coordinate of :math:`\eta u_t` is :math:`-\eta`, :math:`0` or
:math:`+\eta` (zero only where :math:`c_t` is exactly zero), so the step
does not grow with the gradient, and Lion is unchanged when the loss is
multiplied by a positive constant. The momentum is updated *after* the
step with a second, slower rate :math:`\beta_2`. The weight decay is
decoupled and multiplied by :math:`\eta`.

``lion_pytorch.Lion`` computes the same iterates (it shrinks by
:math:`1-\eta\lambda` first, which is the same number). With
``decoupled_weight_decay=True`` it divides :math:`\lambda` by the initial
learning rate :math:`\eta_0`, i.e. it equals this rule with
:math:`\lambda/\eta_0` in place of :math:`\lambda`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    as_array,
    check_betas,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adaptive import ema

__all__ = [
    "LionState",
    "init_lion_state",
    "lion_interpolation",
    "sign_update",
    "lion_update",
    "lion_step",
]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("init_lion_state", "lion_step")


@dataclass(frozen=True)
class LionState:
    """The momentum :math:`m_t` (Lion's only state) and the step count ``t``."""

    m: np.ndarray
    t: int = 0


def init_lion_state(x: np.ndarray) -> LionState:
    """:math:`m_0 = 0`."""
    return LionState(m=np.zeros_like(as_array(x, "x")))


@symbol(r"c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t", "Lion's interpolation of momentum and gradient")
def lion_interpolation(m_prev: np.ndarray, g: np.ndarray, beta1: float) -> np.ndarray:
    r""":math:`c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`, the vector whose sign is the step."""
    return ema(m_prev, g, beta1)


@symbol(r"u_t = \operatorname{sign}(c_t)", "sign update: -1, 0 or +1 per coordinate")
def sign_update(c: np.ndarray) -> np.ndarray:
    r""":math:`u_t = \operatorname{sign}(c_t)` with :math:`\operatorname{sign}(0) = 0`."""
    return np.sign(as_array(c, "c"))


@symbol(r"\theta_t = \theta_{t-1} - \eta(u_t + \lambda\theta_{t-1})", "Lion's parameter update")
def lion_update(x: np.ndarray, u: np.ndarray, lr: float, weight_decay: float) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \eta(u_t + \lambda\theta_{t-1})`: sign step plus decoupled weight decay."""
    x, u = as_array(x, "x"), as_array(u, "u")
    check_same_shape(x, u, "u")
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    return x - check_lr(lr) * (u + lam * x)


def lion_step(
    x: np.ndarray,
    g: np.ndarray,
    state: LionState | None = None,
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, LionState]:
    r"""One Lion step: :math:`c_t`, :math:`u_t = \operatorname{sign}(c_t)`,
    :math:`\theta_t = \theta_{t-1} - \eta(u_t + \lambda\theta_{t-1})`, then
    :math:`m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t`.

    Defaults are the paper's (and ``lion_pytorch``'s): a learning rate 3 to 10
    times smaller than AdamW's, since every coordinate moves by the full :math:`\eta`.
    """
    x, g = params_and_grad(x, g)
    state = init_lion_state(x) if state is None else state
    check_state_arrays(x, m=state.m)
    b1, b2 = check_betas(betas)
    u = sign_update(lion_interpolation(state.m, g, b1))
    return lion_update(x, u, lr, weight_decay), LionState(m=ema(state.m, g, b2), t=state.t + 1)


lion_step.init_state = init_lion_state
