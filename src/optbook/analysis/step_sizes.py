r"""How the per-coordinate step size of an adaptive method evolves during a run.

Adagrad and RMSProp move coordinate :math:`i` by :math:`\alpha_{t,i}\,g_{t,i}` with
:math:`\alpha_{t,i} = \eta/\sqrt{A_{t,i} + \epsilon}`, where :math:`A_t` is the accumulator of
squared gradients (Adagrad's sum :math:`G_t`, RMSProp's average :math:`E[g^2]_t`).
:func:`median_step_size` summarises :math:`\alpha_t` over the coordinates by its median, one
number per logged state, so that its decay can be plotted against :math:`t`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from optbook.reference.adaptive import adaptive_step_size
from optbook.reference.logged_run import run_logged

__all__ = ["median_step_size", "step_size_trace"]

# A summary statistic of adaptive_step_size (which carries the symbol), not a formula of its own,
# and a runner that records it.
__helpers__ = ("median_step_size", "step_size_trace")


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


def step_size_trace(
    step_fn: Callable,
    x0: np.ndarray,
    grad_fn: Callable[[np.ndarray], np.ndarray],
    steps: int,
    *,
    log_every: int,
    lr: float,
    eps: float,
    accumulator: str,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Run an adaptive rule and return the steps :math:`t` and :func:`median_step_size` there.

    ``step_fn`` (e.g. :func:`optbook.reference.adagrad_step`) runs ``steps`` steps from ``x0``
    with gradients from ``grad_fn`` and hyperparameters ``lr`` and ``eps``
    (:func:`optbook.reference.run_logged`); every ``log_every`` steps (and after the last) the
    median over coordinates of :math:`\eta/\sqrt{A_t + \epsilon}` is recorded, with
    :math:`A_t` the state's field named ``accumulator``. Returns ``(t, alpha)``, two arrays
    with one entry per logged step (the start is not logged).
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1 (at least one state to summarise), got {steps!r}.")
    r = run_logged(step_fn, x0, grad_fn, steps, log_fn=lambda x: 0.0, log_every=log_every, keep_states=True,
                   lr=lr, eps=eps)
    return r.t[1:], median_step_size(r.states, lr, eps, accumulator)
