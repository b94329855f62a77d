r"""Adam as the lecture's slide writes it, and momentum with decoupled weight decay.

:func:`lecture_adam_step` puts :math:`\epsilon` *inside* the root,
:math:`\alpha_t m_t/\sqrt{v_t+\epsilon}`; :func:`momentum_decoupled_step` is
Loshchilov & Hutter's SGDW, the partner of momentum on an L2-penalised gradient;
:func:`adam_combined_step_eps_schedule` is the combined form with a step-dependent
:math:`\hat\epsilon_t`.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT,
    as_array,
    check_betas,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adam import (
    AdamState,
    adam_combined_step,
    combined_step_size,
    first_moment,
    init_adam_state,
    second_moment,
)
from optbook.reference.gd import decoupled_weight_decay
from optbook.reference.momentum import (
    MomentumState,
    init_momentum_state,
    momentum_update,
    velocity,
)

__all__ = [
    "eps_inside_update",
    "lecture_adam_step",
    "momentum_decoupled_step",
    "adam_combined_step_eps_schedule",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "lecture_adam_step",
    "momentum_decoupled_step",
    "adam_combined_step_eps_schedule",
)


@symbol(r"\theta_t = \theta_{t-1} - \alpha_t m_t / \sqrt{v_t + \epsilon}", "Adam's step with epsilon inside the root (the lecture's slide)")
def eps_inside_update(x: np.ndarray, m: np.ndarray, v: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \alpha_t\, m_t / \sqrt{v_t + \epsilon}` on the uncorrected moments."""
    x, m, v = as_array(x, "x"), as_array(m, "m"), as_array(v, "v")
    check_same_shape(x, m, "m")
    check_same_shape(x, v, "v")
    return x - alpha * m / np.sqrt(v + check_nonnegative(eps, "eps", EPS_HINT))


def lecture_adam_step(
    x: np.ndarray,
    g: np.ndarray,
    state=None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
):
    r"""Adam as the lecture's slide writes it: :math:`\alpha_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)`,
    :math:`\theta_t = \theta_{t-1} - \alpha_t m_t/\sqrt{v_t+\epsilon}`. State: :class:`optbook.reference.AdamState`."""
    x, g = params_and_grad(x, g)
    state = init_adam_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v)
    b1, b2 = check_betas(betas)
    m, v, t = first_moment(state.m, g, b1), second_moment(state.v, g, b2), state.t + 1
    return eps_inside_update(x, m, v, combined_step_size(lr, b1, b2, t), eps), AdamState(m=m, v=v, t=t)


lecture_adam_step.init_state = init_adam_state


def momentum_decoupled_step(
    x: np.ndarray, g: np.ndarray, state=None, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
):
    r"""Momentum with decoupled weight decay (SGDW): :math:`v_t = \gamma v_{t-1} + \eta g_t`,
    :math:`\theta_t = (1-\eta\lambda)\theta_{t-1} - v_t`.

    Momentum on the L2-penalised gradient :math:`g_t + \lambda\theta_{t-1}` instead
    feeds the decay into the velocity, where it accumulates over about
    :math:`1/(1-\gamma)` steps; the two differ as soon as :math:`\gamma > 0`.
    State: :class:`optbook.reference.MomentumState`.
    """
    x, g = params_and_grad(x, g)
    state = init_momentum_state(x) if state is None else state
    check_state_arrays(x, v=state.v)
    v = velocity(state.v, g, lr, momentum)
    return momentum_update(decoupled_weight_decay(x, lr, weight_decay), v), MomentumState(v=v, t=state.t + 1)


momentum_decoupled_step.init_state = init_momentum_state


def adam_combined_step_eps_schedule(
    x: np.ndarray,
    g: np.ndarray,
    state=None,
    *,
    eps_hat_of_t,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
):
    r"""One step of Adam's combined form whose :math:`\hat\epsilon_t` changes with the step.

    :math:`\theta_t = \theta_{t-1} - \alpha_t m_t/(\sqrt{v_t}+\hat\epsilon_t)` with
    :math:`\hat\epsilon_t` = ``eps_hat_of_t(t)`` for the step :math:`t` being taken
    (:math:`t = 1` on the first call). With ``eps_hat_of_t = lambda t:
    equivalent_eps_hat(eps, beta2, t)`` the iterates are those of Adam with that
    :math:`\epsilon`; with a constant they are the combined form most code uses.
    State: :class:`optbook.reference.AdamState`.
    """
    if not callable(eps_hat_of_t):
        raise TypeError("eps_hat_of_t must be a callable t -> eps_hat; for a constant c pass lambda t: c.")
    t = 1 if state is None else state.t + 1
    return adam_combined_step(x, g, state, lr=lr, betas=betas, eps_hat=eps_hat_of_t(t))


adam_combined_step_eps_schedule.init_state = init_adam_state
