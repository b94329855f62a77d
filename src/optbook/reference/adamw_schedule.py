r"""AdamW in the form of Loshchilov & Hutter's Algorithm 2, with its schedule multiplier :math:`\eta_t`.

The paper separates a fixed step size :math:`\alpha` from a schedule
multiplier :math:`\eta_t` (constant, cosine-annealed, or restarted) that scales
*both* the Adam step and the decay:

.. math::

    \theta_t = \theta_{t-1} - \eta_t\Big(\alpha\,\frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon} + \lambda\,\theta_{t-1}\Big).

``torch.optim.AdamW`` has a single learning rate ``lr`` (which a scheduler changes) and computes

.. math::

    \theta_t = \theta_{t-1}(1 - \mathrm{lr}\cdot\lambda_{\text{torch}}) - \mathrm{lr}\,\frac{\hat m_t}{\sqrt{\hat v_t}+\epsilon}.

The two agree term by term when :math:`\mathrm{lr} = \eta_t\alpha` and
:math:`\mathrm{lr}\cdot\lambda_{\text{torch}} = \eta_t\lambda`, i.e.
:math:`\lambda_{\text{torch}} = \lambda/\alpha` (:func:`torch_adamw_hyperparameters`).
In the paper's form the shrink per step, :math:`\eta_t\lambda`, does not depend on
:math:`\alpha`; in torch's form it is :math:`\mathrm{lr}\cdot\lambda_{\text{torch}}`, so changing ``lr``
at fixed ``weight_decay`` also changes the decay.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT,
    as_array,
    check_betas,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adam import AdamState, adam_direction, bias_correction, first_moment, init_adam_state, second_moment

__all__ = ["adamw_paper_update", "torch_adamw_hyperparameters", "adamw_paper_step"]
__helpers__ = ("adamw_paper_step",)

_DECAY_HINT = "pass 0 for no decay, or a value such as 1e-4 (the paper's lambda, a shrink per unit of eta_t)."


@symbol(
    r"\theta_t = \theta_{t-1} - \eta_t\big(\alpha\,\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda\theta_{t-1}\big)",
    "AdamW as Loshchilov & Hutter write it, with schedule multiplier eta_t",
)
def adamw_paper_update(x: np.ndarray, direction: np.ndarray, alpha: float, eta_t: float, weight_decay: float) -> np.ndarray:
    r""":math:`\theta_{t-1} - \eta_t(\alpha u_t + \lambda\theta_{t-1})` with :math:`u_t = \hat m_t/(\sqrt{\hat v_t}+\epsilon)` = ``direction``."""
    x, u = as_array(x, "x"), as_array(direction, "direction")
    check_same_shape(x, u, "direction")
    eta_t = check_nonnegative(eta_t, "eta_t", "the schedule multiplier is usually in [0, 1].")
    return x - eta_t * (check_lr(alpha, "alpha") * u + check_nonnegative(weight_decay, "weight_decay", _DECAY_HINT) * x)


@symbol(
    r"\mathrm{lr} = \eta_t\alpha,\quad \lambda_{\text{torch}} = \lambda/\alpha",
    "torch AdamW's learning rate and weight decay that reproduce the paper's form",
)
def torch_adamw_hyperparameters(alpha: float, eta_t: float, weight_decay: float) -> tuple[float, float]:
    r"""``(lr, weight_decay_torch)`` = :math:`(\eta_t\alpha,\ \lambda/\alpha)`.

    With a scheduler that multiplies the base rate :math:`\alpha` by :math:`\eta_t`, the
    torch weight decay :math:`\lambda/\alpha` is a constant. ``alpha`` must be > 0.
    """
    alpha = check_lr(alpha, "alpha")
    if alpha == 0.0:
        raise ValueError("alpha must be > 0: torch's weight decay lambda/alpha is undefined for alpha = 0.")
    eta_t = check_nonnegative(eta_t, "eta_t", "the schedule multiplier is usually in [0, 1].")
    lam = check_nonnegative(weight_decay, "weight_decay", _DECAY_HINT)
    return eta_t * alpha, lam / alpha


def adamw_paper_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamState | None = None,
    *,
    alpha: float = 1e-3,
    schedule=1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, AdamState]:
    r"""One step of the paper's AdamW; ``schedule`` is :math:`\eta_t` (a number, or a function of the step ``t >= 1``)."""
    x, g = params_and_grad(x, g)
    state = init_adam_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v)
    b1, b2 = check_betas(betas)
    t = state.t + 1
    eta_t = schedule(t) if callable(schedule) else schedule
    m, v = first_moment(state.m, g, b1), second_moment(state.v, g, b2)
    u = adam_direction(bias_correction(m, b1, t), bias_correction(v, b2, t), check_nonnegative(eps, "eps", EPS_HINT))
    return adamw_paper_update(x, u, alpha, eta_t, weight_decay), AdamState(m=m, v=v, t=t)


adamw_paper_step.init_state = init_adam_state
