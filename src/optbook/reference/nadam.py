r"""Nadam, Dozat's Nesterov-accelerated Adam, with torch's momentum schedule
(:func:`nadam_momentum`).
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
from optbook.reference.adam import bias_correction, first_moment, second_moment

__all__ = [
    "NadamState",
    "init_nadam_state",
    "nadam_momentum",
    "nadam_update",
    "nadam_step",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "init_nadam_state",
    "nadam_step",
)


@dataclass(frozen=True)
class NadamState:
    r"""Moments :math:`m_t, v_t`, the product :math:`\prod_{i\le t}\mu_i` of the momentum schedule, step count."""

    m: np.ndarray
    v: np.ndarray
    mu_product: float = 1.0
    t: int = 0


def init_nadam_state(x: np.ndarray) -> NadamState:
    r""":math:`m_0 = v_0 = 0`, empty product :math:`\prod \mu = 1`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return NadamState(m=zeros, v=zeros.copy())


@symbol(r"\mu_t = \beta_1\big(1 - \tfrac12\, 0.96^{t\psi}\big)", "Nadam's momentum schedule (psi = momentum_decay)")
def nadam_momentum(beta1: float, t: int, momentum_decay: float = 4e-3) -> float:
    r""":math:`\mu_t = \beta_1(1 - \tfrac12\,0.96^{t\psi})`: Dozat's warming-up momentum, as in ``torch.optim.NAdam``.

    It starts near :math:`\beta_1/2` and approaches :math:`\beta_1` as :math:`t\psi` grows.
    """
    b1 = check_beta(beta1, "beta1")
    psi = check_nonnegative(momentum_decay, "momentum_decay", "torch's default is 4e-3.")
    return b1 * (1.0 - 0.5 * 0.96 ** (check_step_number(t) * psi))


@symbol(
    r"\theta_t = \theta_{t-1} - \eta\Big(\frac{1-\mu_t}{1-\prod_{i\le t}\mu_i} g_t + \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i} m_t\Big) / (\sqrt{\hat v_t}+\epsilon)",
    "Nadam's step: a Nesterov look-ahead on Adam's momentum",
)
def nadam_update(
    x: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v_hat: np.ndarray,
    lr: float,
    mu: float,
    mu_next: float,
    mu_product: float,
    eps: float,
) -> np.ndarray:
    r"""Nadam's parameter update given :math:`\mu_t`, :math:`\mu_{t+1}` and :math:`\prod_{i\le t}\mu_i`.

    Adam would step along the bias-corrected :math:`m_t`. Nadam instead steps along
    the momentum it *will* have after the next step, the Nesterov idea: the new
    gradient :math:`g_t` with weight :math:`(1-\mu_t)` and the momentum :math:`m_t`
    with weight :math:`\mu_{t+1}`, each with its own bias correction.
    """
    x, g, m, v_hat = (as_array(a, n) for a, n in ((x, "x"), (g, "g"), (m, "m"), (v_hat, "v_hat")))
    for other, name in ((g, "g"), (m, "m"), (v_hat, "v_hat")):
        check_same_shape(x, other, name)
    lr = check_lr(lr)
    denom = np.sqrt(v_hat) + check_nonnegative(eps, "eps", EPS_HINT)
    return x - lr * (1.0 - mu) / (1.0 - mu_product) * g / denom - lr * mu_next / (1.0 - mu_product * mu_next) * m / denom


def nadam_step(
    x: np.ndarray,
    g: np.ndarray,
    state: NadamState | None = None,
    *,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum_decay: float = 4e-3,
) -> tuple[np.ndarray, NadamState]:
    r"""One Nadam step, as ``torch.optim.NAdam`` computes it (no weight decay)."""
    x, g = params_and_grad(x, g)
    state = init_nadam_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v)
    b1, b2 = check_betas(betas)
    t = state.t + 1
    mu, mu_next = nadam_momentum(b1, t, momentum_decay), nadam_momentum(b1, t + 1, momentum_decay)
    mu_product = state.mu_product * mu
    m = first_moment(state.m, g, b1)
    v = second_moment(state.v, g, b2)
    x_new = nadam_update(x, g, m, bias_correction(v, b2, t), lr, mu, mu_next, mu_product, eps)
    return x_new, NadamState(m=m, v=v, mu_product=mu_product, t=t)


nadam_step.init_state = init_nadam_state
