r"""Schedule-free AdamW (Defazio et al. 2024), in NumPy.

Schedule-free methods replace the learning-rate schedule by an average. Three
sequences are involved: the base iterate :math:`z_t` that takes the gradient
steps, the average :math:`x_t` that is evaluated, and the point
:math:`y_t = (1-\beta_1)z_t + \beta_1 x_t` at which the gradient is taken:

.. math::

    v_t &= \beta_2 v_{t-1} + (1-\beta_2)g_t^2, \qquad \hat g_t = g_t / (\sqrt{v_t/(1-\beta_2^t)} + \epsilon) + \lambda y_t \\
    z_{t+1} &= z_t - \gamma_t \hat g_t \\
    x_{t+1} &= (1-c_{t+1})\,x_t + c_{t+1} z_{t+1}, \qquad c_{t+1} = \gamma_t^2 / \textstyle\sum_{s\le t}\gamma_s^2

with :math:`\gamma_t` the learning rate after a linear warm-up. The
parameters the model holds during training are :math:`y_t`, so the optimizer
stores :math:`z_t` and :math:`v_t`: :math:`2N` numbers, as AdamW's
:math:`m_t, v_t`; :math:`x_t = (y_t - (1-\beta_1)z_t)/\beta_1` is recovered when
needed (:func:`schedule_free_average`). This reference works on :math:`y` and
:math:`z` directly, as ``pytorch_optimizer.ScheduleFreeAdamW`` does:
:math:`y \leftarrow (1-c)y + cz + \gamma(\beta_1(1-c) - 1)\hat g`. That
implementation also adds :math:`10^{-15}` to :math:`v_t/(1-\beta_2^t)` inside the
square root (``eps_inside``; 0 is the paper's form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_betas, check_lr, check_nonnegative, params_and_grad

__all__ = ["ScheduleFreeState", "init_schedule_free_state", "schedule_free_average", "schedule_free_adamw_step"]
__helpers__ = ("init_schedule_free_state", "schedule_free_adamw_step")


@dataclass(frozen=True)
class ScheduleFreeState:
    """Base iterate ``z``, second moment ``v``, the running sum of weights and the largest rate so far."""

    z: np.ndarray
    v: np.ndarray
    weight_sum: float = 0.0
    lr_max: float = -1.0
    t: int = 0


def init_schedule_free_state(x) -> ScheduleFreeState:
    """:math:`z_1 = y_1` (a copy of the parameters) and :math:`v_0 = 0`."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return ScheduleFreeState(z=np.array(x, dtype=dtype), v=np.zeros(x.shape, dtype))


@symbol(r"x_t = (y_t - (1-\beta_1) z_t)/\beta_1", "schedule-free average recovered from y and z")
def schedule_free_average(y, z, beta1: float) -> np.ndarray:
    r""":math:`x_t = (y_t - (1-\beta_1)z_t)/\beta_1`, the point to evaluate."""
    if not 0 < beta1 < 1:
        raise ValueError(f"beta1 must lie in (0, 1), got {beta1}.")
    return (np.asarray(y, dtype=float) - (1 - beta1) * np.asarray(z, dtype=float)) / beta1


def schedule_free_adamw_step(y, g, state: ScheduleFreeState | None = None, *, lr: float = 2.5e-3, betas=(0.9, 0.999),
                             eps: float = 1e-8, weight_decay: float = 0.0, warmup_steps: int = 0,
                             weight_lr_power: float = 2.0, eps_inside: float = 0.0):
    """One schedule-free AdamW step on the training point ``y`` (``pytorch_optimizer`` defaults, ``r = 0``)."""
    y, g = params_and_grad(y, g)
    lr = check_lr(lr)
    b1, b2 = check_betas(betas)
    if b1 == 0:
        raise ValueError("betas[0] must be > 0 for schedule-free AdamW (it interpolates y between z and x).")
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    state = init_schedule_free_state(y) if state is None else state
    t = state.t + 1
    gamma = lr * (t / warmup_steps if t < warmup_steps else 1.0)
    lr_max = max(gamma, state.lr_max)
    weight = lr_max**weight_lr_power
    weight_sum = state.weight_sum + weight
    c = weight / weight_sum if weight_sum != 0 else 0.0
    v = b2 * state.v + (1 - b2) * g * g
    g_hat = g / (np.sqrt(v / (1 - b2**t) + eps_inside) + eps) + lam * y
    y_new = (1 - c) * y + c * state.z + gamma * (b1 * (1 - c) - 1) * g_hat
    z = state.z - gamma * g_hat
    return y_new, ScheduleFreeState(z=z, v=v, weight_sum=weight_sum, lr_max=lr_max, t=t)


schedule_free_adamw_step.init_state = init_schedule_free_state
