r"""How the per-coordinate step size of an adaptive method evolves during a run.

Adagrad and RMSProp move coordinate :math:`i` by :math:`\alpha_{t,i}\,g_{t,i}` with
:math:`\alpha_{t,i} = \eta/\sqrt{A_{t,i} + \epsilon}`, where :math:`A_t` is the accumulator of
squared gradients (Adagrad's sum :math:`G_t`, RMSProp's average :math:`E[g^2]_t`).
:func:`median_step_size` summarises :math:`\alpha_t` over the coordinates by its median, one
number per logged state, so that its decay can be plotted against :math:`t`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from optbook.reference.adaptive import adaptive_step_size

__all__ = ["median_step_size"]

# A summary statistic of adaptive_step_size (which carries the symbol), not a formula of its own.
__helpers__ = ("median_step_size",)


def median_step_size(states: Sequence, lr: float, eps: float, accumulator: str) -> np.ndarray:
    r"""Median over coordinates of :math:`\eta/\sqrt{A_t + \epsilon}`, one value per state in ``states``.

    ``accumulator`` names the state's field that holds :math:`A_t` (``"G"`` for Adagrad,
    ``"Eg2"`` for RMSProp). Only the coordinates whose accumulator is non-zero in the *last*
    state enter the median at every step: a coordinate that never received a gradient (say, a
    pixel that is blank in every image) keeps the step size :math:`\eta/\sqrt\epsilon` throughout
    and would otherwise dominate the median.
    """
    if len(states) == 0:
        raise ValueError("states must hold at least one optimizer state (run with keep_states=True).")
    if not hasattr(states[0], accumulator):
        raise ValueError(f"accumulator must name a field of the states, e.g. 'G' or 'Eg2'; "
                         f"{type(states[0]).__name__} has no field {accumulator!r}.")
    acc = np.array([np.ravel(getattr(s, accumulator)) for s in states])
    live = acc[-1] > 0
    if not live.any():
        raise ValueError("every coordinate's accumulator is zero in the last state: there is no step size to summarise.")
    return np.array([np.median(adaptive_step_size(a[live], lr, eps)) for a in acc])
