r"""AdaMod, Ding et al.'s Adam with a long-term memory of its own step sizes, in NumPy.

Adam's per-coordinate step size :math:`\eta_t` can jump to very large values
when :math:`v_t` is small (early in training, or for a rarely active weight).
AdaMod keeps an exponential average :math:`s_t` of the step sizes and never lets
the step size exceed it:

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
    \eta_t &= \frac{\alpha\sqrt{1-\beta_2^t}}{(1-\beta_1^t)\,(\sqrt{v_t}+\epsilon)} \\
    s_t &= \beta_3 s_{t-1} + (1-\beta_3)\,\eta_t, \qquad s_0 = 0 \\
    \hat\eta_t &= \min(\eta_t, s_t) \\
    \theta_t &= \theta_{t-1} - \hat\eta_t \odot m_t.

:math:`\eta_t \odot m_t` is Adam's step in its combined form; the minimum
bounds each coordinate by its average over roughly the last
:math:`1/(1-\beta_3)` steps. Because :math:`s_0 = 0`, the first steps are
small: :math:`\hat\eta_1 \le (1-\beta_3)\eta_1`, a built-in warm-up of about
:math:`1/(1-\beta_3)` steps. The formulas and the epsilon placement are
pytorch-optimizer's ``AdaMod``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT_ZERO_DIVIDES,
    _real,
    as_array,
    check_beta,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    check_step_number,
    params_and_grad,
)
from optbook.reference.adam import first_moment, second_moment
from optbook.reference.adaptive import ema

__all__ = ["AdaModState", "init_adamod_state", "adamod_step_size", "adamod_bounded_step_size", "adamod_step"]
__helpers__ = ("init_adamod_state", "adamod_step")


@dataclass(frozen=True)
class AdaModState:
    """Moments :math:`m_t, v_t`, the average step size :math:`s_t`, and the step count."""

    m: np.ndarray
    v: np.ndarray
    s: np.ndarray
    t: int = 0


def init_adamod_state(x: np.ndarray) -> AdaModState:
    """:math:`m_0 = v_0 = s_0 = 0`, :math:`t = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return AdaModState(m=zeros, v=zeros.copy(), s=zeros.copy())


@symbol(
    r"\eta_t = \alpha\sqrt{1-\beta_2^t}/\big((1-\beta_1^t)(\sqrt{v_t}+\epsilon)\big)",
    "AdaMod: Adam's per-coordinate step size (multiplies the uncorrected m_t)",
)
def adamod_step_size(v: np.ndarray, lr: float, beta1: float, beta2: float, t: int, eps: float) -> np.ndarray:
    r""":math:`\eta_t = \alpha\sqrt{1-\beta_2^t}/((1-\beta_1^t)(\sqrt{v_t}+\epsilon))`, one per coordinate."""
    t = check_step_number(t)
    b1, b2 = check_beta(beta1, "beta1"), check_beta(beta2, "beta2")
    alpha_t = check_lr(lr) * np.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    return alpha_t / (np.sqrt(as_array(v, "v")) + check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES))


@symbol(r"\hat\eta_t = \min(\eta_t, s_t)", "AdaMod's step size, bounded by its own running average")
def adamod_bounded_step_size(eta: np.ndarray, s: np.ndarray) -> np.ndarray:
    r""":math:`\hat\eta_t = \min(\eta_t, s_t)`, coordinate by coordinate."""
    eta, s = as_array(eta, "eta"), as_array(s, "s")
    check_same_shape(eta, s, "s", "eta")
    return np.minimum(eta, s)


def adamod_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdaModState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float, float] = (0.9, 0.999, 0.999),
    eps: float = 1e-8,
) -> tuple[np.ndarray, AdaModState]:
    r"""One AdaMod step, :math:`\theta_t = \theta_{t-1} - \min(\eta_t, s_t)\odot m_t` (module docstring).

    ``betas`` = :math:`(\beta_1, \beta_2, \beta_3)`; the default is the paper's. (pytorch-optimizer's
    default is ``(0.9, 0.99, 0.9999)``.)
    """
    x, g = params_and_grad(x, g)
    try:
        b1, b2, b3 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a triple (beta1, beta2, beta3), got {betas!r}.") from None
    b1, b2, b3 = check_beta(b1, "betas[0]"), check_beta(b2, "betas[1]"), check_beta(b3, "betas[2]")
    lr = check_lr(lr)
    check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES)
    state = init_adamod_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v, s=state.s)
    t = state.t + 1
    m, v = first_moment(state.m, g, b1), second_moment(state.v, g, b2)
    eta = adamod_step_size(v, lr, b1, b2, t, eps)
    s = ema(state.s, eta, b3)
    return x - adamod_bounded_step_size(eta, s) * m, AdaModState(m=m, v=v, s=s, t=t)


adamod_step.init_state = init_adamod_state
