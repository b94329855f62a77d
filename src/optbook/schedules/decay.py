r"""Classic learning-rate decay: inverse time and step decay.
"""

from __future__ import annotations

from optbook.notation import symbol
from optbook.reference._checks import check_lr, check_step_count

__all__ = [
    "inverse_time_lr",
    "step_decay_lr",
]


@symbol(r"\eta_t = \eta_0/(1 + k t)", "inverse-time learning-rate decay")
def inverse_time_lr(t: int, lr0: float, decay: float) -> float:
    r""":math:`\eta_t = \eta_0/(1+kt)` after ``t`` steps; :math:`\sum_t\eta_t = \infty` and :math:`\sum_t\eta_t^2 < \infty`."""
    if float(decay) < 0:
        raise ValueError(f"decay must be >= 0, got {decay}.")
    return check_lr(lr0, "lr0") / (1.0 + float(decay) * check_step_count(t))


@symbol(r"\eta_t = \eta_0\,\delta^{\lfloor t/s\rfloor}", "step decay: multiply the learning rate by delta every s steps")
def step_decay_lr(t: int, lr0: float, factor: float, every: int) -> float:
    r""":math:`\eta_t = \eta_0\,\delta^{\lfloor t/s\rfloor}` with :math:`\delta` = ``factor`` and :math:`s` = ``every``."""
    if not 0.0 < float(factor) <= 1.0:
        raise ValueError(f"factor must lie in (0, 1], got {factor}.")
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise ValueError(f"every must be a whole number of steps >= 1, got {every!r}.")
    return check_lr(lr0, "lr0") * float(factor) ** (check_step_count(t) // int(every))
