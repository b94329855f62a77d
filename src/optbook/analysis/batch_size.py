r"""Learning rate against batch size: :func:`linear_scaling_lr`, :func:`sqrt_scaling_lr`
(the two rules) and :func:`log_parabola_argmin` (the best learning rate of a grid,
refined by a parabola in :math:`\log\eta`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_lr

__all__ = [
    "linear_scaling_lr",
    "sqrt_scaling_lr",
    "log_parabola_argmin",
]


@symbol(r"\eta(b) = \eta_0\, b / b_0", "linear scaling rule (Goyal et al.)")
def linear_scaling_lr(lr0: float, b0: int, b: int | np.ndarray) -> float | np.ndarray:
    r""":math:`\eta(b) = \eta_0\,b/b_0`: keep the step per example seen fixed."""
    return check_lr(lr0, "lr0") * np.asarray(b, dtype=float) / float(b0)


@symbol(r"\eta(b) = \eta_0 \sqrt{b / b_0}", "square-root scaling rule (Hoffer et al.)")
def sqrt_scaling_lr(lr0: float, b0: int, b: int | np.ndarray) -> float | np.ndarray:
    r""":math:`\eta(b) = \eta_0\sqrt{b/b_0}`: keep the variance of the update per example seen fixed."""
    return check_lr(lr0, "lr0") * np.sqrt(np.asarray(b, dtype=float) / float(b0))


@symbol(
    r"\eta^\star = \exp\big(\operatorname{argmin}\ \text{parabola through } (\log\eta_i, L_i)\big)",
    "best learning rate of a grid, refined by a parabola in log eta",
)
def log_parabola_argmin(lrs: Sequence[float], losses: Sequence[float]) -> float:
    r"""The grid's best learning rate, refined by the vertex of the parabola through it and its neighbours.

    With the best grid point at an end of the grid, or a parabola that is not
    convex, the grid point itself is returned. Non-finite losses (divergence)
    count as worse than any finite one. The vertex is kept within the two neighbours.
    """
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if lrs.shape != losses.shape or lrs.ndim != 1 or len(lrs) < 1:
        raise ValueError("lrs and losses must be 1-D sequences of the same length.")
    order = np.argsort(lrs)
    lrs, losses = lrs[order], np.where(np.isfinite(losses[order]), losses[order], np.inf)
    i = int(np.argmin(losses))
    if i == 0 or i == len(lrs) - 1 or not np.all(np.isfinite(losses[i - 1 : i + 2])):
        return float(lrs[i])
    xs = np.log(lrs[i - 1 : i + 2])
    a, b, _ = np.polyfit(xs, losses[i - 1 : i + 2], 2)
    if a <= 0:
        return float(lrs[i])
    return float(np.exp(np.clip(-b / (2 * a), xs[0], xs[2])))
