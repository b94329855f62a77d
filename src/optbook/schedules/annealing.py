r"""Monotone decays of the learning rate :math:`\eta_t`: constant, exponential, linear and cosine.

Step convention of the whole package: :math:`\eta_t` is the rate of the update that takes
:math:`\theta_t` to :math:`\theta_{t+1}`, with :math:`t = 0, 1, 2, \dots` the number of updates
already taken. This is ``last_epoch`` of ``torch.optim.lr_scheduler`` and ``current_step`` of
the schedules in ``transformers``.
"""

from __future__ import annotations

import math

from optbook.notation import symbol
from optbook.reference._checks import check_lr, check_step_count
from optbook.schedules._args import count, real

__all__ = [
    "constant_lr",
    "exponential_lr",
    "linear_lr",
    "cosine_lr",
]


@symbol(r"\eta_t = \eta_0", "constant learning rate")
def constant_lr(t: int, lr0: float) -> float:
    r""":math:`\eta_t = \eta_0` for every :math:`t \ge 0`."""
    check_step_count(t)
    return check_lr(lr0, "lr0")


@symbol(r"\eta_t = \eta_0\,\delta^t", "exponential learning-rate decay")
def exponential_lr(t: int, lr0: float, gamma: float) -> float:
    r""":math:`\eta_t = \eta_0\,\delta^t` with :math:`0 < \delta \le 1` = ``gamma`` (the name ``torch.optim.lr_scheduler.ExponentialLR`` gives it)."""
    gamma = real(gamma, "gamma", 0.0, 1.0, open_low=True, hint="Pass a factor such as 0.99.")
    return check_lr(lr0, "lr0") * gamma ** check_step_count(t)


@symbol(r"\eta_t = \eta_0 + (\eta_T - \eta_0)\,\min(t, T)/T", "linear interpolation of the learning rate over T steps")
def linear_lr(t: int, lr0: float, lr_end: float, total: int) -> float:
    r""":math:`\eta_t = \eta_0 + (\eta_T - \eta_0)\min(t, T)/T`, then constant at :math:`\eta_T` (``lr_end``).

    ``total`` is :math:`T`. With :math:`\eta_T < \eta_0` this is a linear decay; with
    :math:`\eta_T > \eta_0` a linear ramp (``torch.optim.lr_scheduler.LinearLR`` is the case
    :math:`\eta_0 = s\,\eta`, :math:`\eta_T = e\,\eta` with its start and end factors :math:`s, e`).
    """
    lr0, lr_end = check_lr(lr0, "lr0"), check_lr(lr_end, "lr_end")
    total = count(total, "total")
    return lr0 + (lr_end - lr0) * min(check_step_count(t), total) / total


@symbol(r"\eta_t = \eta_{\min} + \tfrac12(\eta_0 - \eta_{\min})\bigl(1 + \cos(\pi \min(t, T)/T)\bigr)",
        "cosine annealing from eta_0 to the floor eta_min over T steps")
def cosine_lr(t: int, lr0: float, total: int, lr_min: float = 0.0) -> float:
    r"""Cosine annealing :math:`\eta_t = \eta_{\min} + \tfrac12(\eta_0-\eta_{\min})(1+\cos(\pi\min(t,T)/T))`.

    It reaches the floor :math:`\eta_{\min}` (``lr_min``) at :math:`t = T` (``total``) and stays
    there. This is the closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` for
    :math:`t \le T` (torch continues the cosine beyond :math:`T`, back up towards :math:`\eta_0`).
    """
    lr0, lr_min = check_lr(lr0, "lr0"), check_lr(lr_min, "lr_min")
    total = count(total, "total")
    t = min(check_step_count(t), total)
    return lr_min + 0.5 * (lr0 - lr_min) * (1.0 + math.cos(math.pi * t / total))
