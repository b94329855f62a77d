r"""AdaMax, Kingma & Ba's infinity-norm variant of Adam, in torch's convention
:math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT,
    as_array,
    check_beta,
    check_betas,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    check_step_number,
    params_and_grad,
)
from optbook.reference.adam import bias_correction, first_moment

__all__ = [
    "AdamaxState",
    "init_adamax_state",
    "infinity_norm_moment",
    "adamax_update",
    "adamax_step",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "init_adamax_state",
    "adamax_step",
)


@dataclass(frozen=True)
class AdamaxState:
    r"""First moment :math:`m_t`, exponentially weighted infinity norm :math:`u_t`, step count ``t``."""

    m: np.ndarray
    u: np.ndarray
    t: int = 0


def init_adamax_state(x: np.ndarray) -> AdamaxState:
    """:math:`m_0 = u_0 = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return AdamaxState(m=zeros, u=zeros.copy())


@symbol(r"u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)", "AdaMax's exponentially weighted infinity norm")
def infinity_norm_moment(u_prev: np.ndarray, g: np.ndarray, beta2: float, eps: float) -> np.ndarray:
    r""":math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`.

    Kingma & Ba obtain it as the limit :math:`p \to \infty` of an Adam whose second
    moment is a :math:`p`-th moment: :math:`\big((1-\beta_2^p)\sum_i \beta_2^{p(t-i)}|g_i|^p\big)^{1/p}
    \to \max_i \beta_2^{t-i}|g_i|`. The paper has no :math:`\epsilon`; torch adds it
    inside the max, which keeps :math:`u_t > 0`. It needs no bias correction.
    """
    u_prev, g = as_array(u_prev, "u_prev"), as_array(g, "g")
    check_same_shape(u_prev, g, "g", "u_prev")
    eps = check_nonnegative(eps, "eps", EPS_HINT)
    return np.maximum(check_beta(beta2, "beta2") * u_prev, np.abs(g) + eps)


@symbol(r"\theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\, m_t / u_t", "AdaMax's step")
def adamax_update(x: np.ndarray, m: np.ndarray, u: np.ndarray, lr: float, beta1: float, t: int) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \eta\, \hat m_t / u_t` with :math:`\hat m_t = m_t/(1-\beta_1^t)`."""
    x, m, u = as_array(x, "x"), as_array(m, "m"), as_array(u, "u")
    check_same_shape(x, m, "m")
    check_same_shape(x, u, "u")
    return x - check_lr(lr) * bias_correction(m, beta1, check_step_number(t)) / u


def adamax_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamaxState | None = None,
    *,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[np.ndarray, AdamaxState]:
    r"""One AdaMax step (``torch.optim.Adamax``'s defaults and :math:`\epsilon` convention)."""
    x, g = params_and_grad(x, g)
    state = init_adamax_state(x) if state is None else state
    check_state_arrays(x, m=state.m, u=state.u)
    b1, b2 = check_betas(betas)
    m = first_moment(state.m, g, b1)
    u = infinity_norm_moment(state.u, g, b2, eps)
    t = state.t + 1
    return adamax_update(x, m, u, lr, b1, t), AdamaxState(m=m, u=u, t=t)


adamax_step.init_state = init_adamax_state
