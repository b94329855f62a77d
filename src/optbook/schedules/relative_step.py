r"""Adafactor's relative step :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)` as a member of the schedule family.

The formula lives once, in :func:`optbook.reference.adafactor.relative_step_size`, which counts
Adam-style from :math:`t = 1`. :func:`relative_step_lr` only shifts it to this package's step
convention (:math:`t = 0, 1, \dots` updates taken), so it can be plotted, composed and fed to
:func:`optbook.schedules.torch_adapter.lambda_lr` like any other schedule. Seen this way it is
T5's inverse square root (:func:`optbook.schedules.warmup.t5_inverse_sqrt_lr`) with
:math:`k = 10^4`: constant at :math:`10^{-2}` for :math:`10^4` steps, then :math:`s^{-1/2}`.
"""

from __future__ import annotations

from optbook.reference._checks import check_step_count
from optbook.reference.adafactor import relative_step_size

__all__ = ["relative_step_lr"]
__helpers__ = ("relative_step_lr",)


def relative_step_lr(t: int, cap: float = 1e-2) -> float:
    r""":math:`\rho_{t+1}` of :func:`optbook.reference.adafactor.relative_step_size`: the relative step of update :math:`t + 1`."""
    return relative_step_size(check_step_count(t) + 1, cap)
