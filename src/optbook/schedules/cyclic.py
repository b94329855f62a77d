r"""Schedules that rise again: cosine annealing with warm restarts (SGDR) and the one-cycle policy.

Same step convention as :mod:`optbook.schedules.annealing`: :math:`t = 0, 1, \dots` updates taken.
"""

from __future__ import annotations

import math

from optbook.notation import symbol
from optbook.reference._checks import check_lr, check_step_count
from optbook.schedules._args import count, real

__all__ = [
    "sgdr_cycle",
    "cosine_restarts_lr",
    "one_cycle_lr",
]
# sgdr_cycle locates t in its cycle (bookkeeping, no formula of its own).
__helpers__ = ("sgdr_cycle",)


def sgdr_cycle(t: int, period: int, period_mult: int = 1) -> tuple[int, int]:
    r"""``(t_cur, T_i)``: the position of step ``t`` in its SGDR cycle and that cycle's length.

    Cycle :math:`i = 0, 1, \dots` lasts :math:`T_i = T_0\,T_{\mathrm{mult}}^i` steps (``period``
    :math:`T_0`, ``period_mult`` :math:`T_{\mathrm{mult}}`) and starts at
    :math:`\sum_{j<i} T_j`. Integer arithmetic, so there is no rounding at a cycle boundary.
    """
    t = check_step_count(t)
    period, period_mult = count(period, "period"), count(period_mult, "period_mult")
    start, length = 0, period
    while t >= start + length:
        start += length
        length *= period_mult
    return t - start, length


@symbol(r"\eta_t = \eta_{\min} + \tfrac12(\eta_0 - \eta_{\min})\bigl(1 + \cos(\pi t_{\mathrm{cur}}/T_i)\bigr)",
        "cosine annealing with warm restarts (SGDR): cycle i lasts T_i = T_0 T_mult^i steps")
def cosine_restarts_lr(t: int, lr0: float, period: int, period_mult: int = 1, lr_min: float = 0.0) -> float:
    r"""SGDR (Loshchilov and Hutter, 2017): :math:`\eta_t = \eta_{\min} + \tfrac12(\eta_0-\eta_{\min})(1+\cos(\pi t_{\mathrm{cur}}/T_i))`.

    :math:`t_{\mathrm{cur}}` is the number of steps since the last restart and :math:`T_i` the
    length of the current cycle (:func:`sgdr_cycle`). At a restart :math:`t_{\mathrm{cur}} = 0` and
    the rate jumps back to :math:`\eta_0`. ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``
    computes the same with ``T_0=period, T_mult=period_mult, eta_min=lr_min``.
    """
    lr0, lr_min = check_lr(lr0, "lr0"), check_lr(lr_min, "lr_min")
    t_cur, length = sgdr_cycle(t, period, period_mult)
    return lr_min + 0.5 * (lr0 - lr_min) * (1.0 + math.cos(math.pi * t_cur / length))


@symbol(r"\eta_t^{\mathrm{1cycle}}",
        "one-cycle policy: rise from eta_max/div to eta_max, then anneal to eta_max/(div * final_div)")
def one_cycle_lr(t: int, lr_max: float, total: int, *, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, anneal: str = "cos", three_phase: bool = False) -> float:
    r"""The one-cycle policy (Smith and Topin, 2019) in the form of ``torch.optim.lr_scheduler.OneCycleLR``.

    With :math:`\eta_{\mathrm{init}} = \eta_{\max}/d` (``div_factor`` :math:`d`) and
    :math:`\eta_{\mathrm{end}} = \eta_{\mathrm{init}}/f` (``final_div_factor`` :math:`f`), phase 1
    runs from :math:`\eta_{\mathrm{init}}` at :math:`t = 0` to :math:`\eta_{\max}` at
    :math:`t = pT - 1` (``pct_start`` :math:`p`, ``total`` :math:`T`); phase 2 from there to
    :math:`\eta_{\mathrm{end}}` at :math:`t = T - 1`. Within a phase from :math:`a` to :math:`b`
    at fraction :math:`q` of it, ``anneal="cos"`` gives :math:`b + \tfrac12(a - b)(1 + \cos\pi q)`
    and ``anneal="linear"`` gives :math:`a + (b - a) q`. ``three_phase=True`` inserts torch's
    symmetric descent back to :math:`\eta_{\mathrm{init}}` at :math:`t = 2pT - 2` before the final
    annealing. Defined for :math:`0 \le t \le T` (torch raises beyond :math:`T`).
    """
    lr_max = check_lr(lr_max, "lr_max")
    total = count(total, "total")
    t = check_step_count(t)
    if t > total:
        raise ValueError(f"t={t} is past total={total}; the one-cycle policy is defined for 0 <= t <= total.")
    pct_start = real(pct_start, "pct_start", 0.0, 1.0, hint="Pass the fraction of steps spent rising, e.g. 0.3.")
    div_factor = real(div_factor, "div_factor", 0.0, None, open_low=True, hint="The default is 25.")
    final_div_factor = real(final_div_factor, "final_div_factor", 0.0, None, open_low=True, hint="The default is 1e4.")
    if anneal not in ("cos", "linear"):
        raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}.")
    lr_init = lr_max / div_factor
    lr_end = lr_init / final_div_factor
    if three_phase:
        phases = [(pct_start * total - 1, lr_init, lr_max), (2 * pct_start * total - 2, lr_max, lr_init),
                  (total - 1, lr_init, lr_end)]
    else:
        phases = [(pct_start * total - 1, lr_init, lr_max), (total - 1, lr_max, lr_end)]
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
        if t <= end or i == len(phases) - 1:
            q = (t - start) / (end - start)
            if anneal == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * q) + 1)
            return (b - a) * q + a
        start = end
    raise AssertionError("unreachable")  # pragma: no cover
