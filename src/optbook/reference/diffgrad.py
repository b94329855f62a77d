r"""diffGrad (Dubey et al. 2020): Adam's step scaled by a friction coefficient from the gradient change.

.. math::

    \xi_t &= \operatorname{sigmoid}(|g_{t-1} - g_t|), \qquad g_0 = 0 \\
    \theta_t &= \theta_{t-1} - \alpha_t\, \xi_t \odot m_t / (\sqrt{v_t} + \epsilon), \qquad
    \alpha_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t).

:math:`\xi_t \in [\tfrac12, 1)`: where the gradient barely changes between steps
(a flat stretch, or close to a minimum where it has settled) the step is halved;
where it changes fast the step is Adam's. The paper's "AbsSig" is the sigmoid of
the absolute difference. The combined form with :math:`\epsilon` on the root
of the uncorrected :math:`v_t`, and :math:`g_0 = 0` (so :math:`\xi_1 =
\operatorname{sigmoid}(|g_1|)`), follow pytorch-optimizer's ``DiffGrad``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT_ZERO_DIVIDES,
    as_array,
    check_betas,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adam import combined_step_size, combined_update, first_moment, second_moment

__all__ = ["DiffGradState", "init_diffgrad_state", "friction_coefficient", "diffgrad_step"]
__helpers__ = ("init_diffgrad_state", "diffgrad_step")


@dataclass(frozen=True)
class DiffGradState:
    """Moments :math:`m_t, v_t`, the previous gradient :math:`g_{t-1}`, and the step count."""

    m: np.ndarray
    v: np.ndarray
    g_prev: np.ndarray
    t: int = 0


def init_diffgrad_state(x: np.ndarray) -> DiffGradState:
    """:math:`m_0 = v_0 = g_0 = 0`, :math:`t = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return DiffGradState(m=zeros, v=zeros.copy(), g_prev=zeros.copy())


@symbol(r"\xi_t = \operatorname{sigmoid}(|g_{t-1} - g_t|)", "diffGrad's friction coefficient")
def friction_coefficient(g_prev: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`\xi_t = 1/(1+e^{-|g_{t-1}-g_t|})`, in :math:`[\tfrac12, 1)`."""
    g_prev, g = as_array(g_prev, "g_prev"), as_array(g, "g")
    check_same_shape(g, g_prev, "g_prev", "g")
    return 1.0 / (1.0 + np.exp(-np.abs(g_prev - g)))


def diffgrad_step(
    x: np.ndarray,
    g: np.ndarray,
    state: DiffGradState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    eps_inside: float = 0.0,
) -> tuple[np.ndarray, DiffGradState]:
    r"""One diffGrad step, :math:`\theta_t = \theta_{t-1} - \alpha_t\,\xi_t\odot m_t/(\sqrt{v_t+\delta}+\epsilon)`.

    ``eps_inside`` is :math:`\delta`, a constant added under the root: pytorch-optimizer's ``DiffGrad``
    adds :math:`\delta = 10^{-15}` there (besides ``eps`` outside); the paper has no :math:`\delta`.
    """
    x, g = params_and_grad(x, g)
    b1, b2 = check_betas(betas)
    lr = check_lr(lr)
    check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES)
    delta = check_nonnegative(eps_inside, "eps_inside", "pass 0 (the paper) or 1e-15 (pytorch-optimizer).")
    state = init_diffgrad_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v, g_prev=state.g_prev)
    t = state.t + 1
    m, v = first_moment(state.m, g, b1), second_moment(state.v, g, b2)
    xi = friction_coefficient(state.g_prev, g)
    x_new = combined_update(x, xi * m, v + delta, combined_step_size(lr, b1, b2, t), eps)
    return x_new, DiffGradState(m=m, v=v, g_prev=g.copy(), t=t)


diffgrad_step.init_state = init_diffgrad_state
