r"""RAdam, Liu et al.'s rectified Adam, in NumPy.

Early in training the second moment :math:`v_t` averages only a few squared
gradients, so the adaptive rate :math:`1/\sqrt{\hat v_t}` has a large (for the
first steps unbounded) variance. RAdam measures how many gradients the average
effectively holds and scales Adam's step by a factor that removes that excess
variance:

.. math::

    \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
    \rho_t = \rho_\infty - \frac{2t\,\beta_2^t}{1-\beta_2^t} \\
    r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\,\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\,\rho_t}} \\
    \theta_t &= \begin{cases}
        \theta_{t-1} - \eta\, r_t\, \hat m_t\, l_t, & \rho_t > \rho_{\min} \\
        \theta_{t-1} - \eta\, \hat m_t, & \text{otherwise (momentum SGD)}
    \end{cases}
    \qquad l_t = \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}.

:math:`\rho_t` is the length of the simple moving average with the same
mean age as the exponential one (:func:`sma_length`); :math:`r_t`
(:func:`rectification`) is the ratio of the standard deviation the adaptive
rate would have with :math:`\rho_\infty` samples to the one it has with
:math:`\rho_t`, in the first-order approximation that is defined only for
:math:`\rho_t > 4` (the variance itself is finite for :math:`\rho_t > 2`): the paper's
Algorithm 2 takes the adaptive step when :math:`\rho_t > 4`, while
``torch.optim.RAdam`` uses :math:`\rho_t > 5` and pytorch-optimizer
:math:`\rho_t \ge 5` (``rho_threshold``). Below the threshold torch takes the
momentum-SGD step; pytorch-optimizer's default (``degenerated_to_sgd=False``)
takes *no* step (``below_threshold="skip"``).

Both implementations add :math:`\epsilon` to the root of the *uncorrected*
:math:`v_t`, as :math:`l_t` above does; this is Adam's combined form
(:func:`optbook.reference.combined_update`) with a constant :math:`\hat\epsilon`.

Weight decay: ``weight_decay`` :math:`\lambda` is an L2 penalty added to
:math:`g_t` (``decoupled=False``, torch's default) or a decoupled shrink
:math:`\theta \leftarrow (1-\eta\lambda)\theta` applied before the step
(``decoupled=True``, torch's ``decoupled_weight_decay=True`` and
pytorch-optimizer's default ``weight_decouple=True``).
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
    check_betas,
    check_lr,
    check_nonnegative,
    check_state_arrays,
    check_step_number,
    params_and_grad,
)
from optbook.reference.adam import AdamState, bias_correction, first_moment, init_adam_state, second_moment
from optbook.reference.gd import decoupled_weight_decay, l2_regularized_gradient

__all__ = [
    "sma_length_limit",
    "sma_length",
    "rectification",
    "radam_adaptive_rate",
    "radam_step",
    "init_radam_state",
    "BELOW_THRESHOLD",
]

__helpers__ = ("radam_step", "init_radam_state")

#: What :func:`radam_step` does while :math:`\rho_t` is at or below the threshold.
BELOW_THRESHOLD = ("sgd", "skip")


def init_radam_state(x: np.ndarray) -> AdamState:
    """:math:`m_0 = v_0 = 0`, :math:`t = 0` (RAdam keeps Adam's state)."""
    return init_adam_state(x)


@symbol(r"\rho_\infty = 2/(1-\beta_2) - 1", "RAdam: length of the SMA matching the EMA of beta2 in the limit")
def sma_length_limit(beta2: float) -> float:
    r""":math:`\rho_\infty = 2/(1-\beta_2) - 1`: the length of the simple moving average with the same mean age as
    the exponential average with decay :math:`\beta_2` after infinitely many steps (1999 for 0.999)."""
    b2 = check_beta(beta2, "beta2")
    if b2 == 0.0:
        raise ValueError("beta2 must be > 0 for RAdam; with beta2 = 0 the average holds one gradient (rho_inf = 1).")
    return 2.0 / (1.0 - b2) - 1.0


@symbol(r"\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)", "RAdam: effective number of squared gradients in v_t")
def sma_length(beta2: float, t: int) -> float:
    r""":math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`.

    :math:`\rho_1 = 1`, :math:`\rho_t \approx t` while :math:`t(1-\beta_2) \ll 1`,
    and :math:`\rho_t \to \rho_\infty` as :math:`t\to\infty`.
    """
    t = check_step_number(t)
    b2 = check_beta(beta2, "beta2")
    rho_inf = sma_length_limit(b2)
    b2t = b2**t
    return rho_inf - 2.0 * t * b2t / (1.0 - b2t)


@symbol(
    r"r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}",
    "RAdam's variance rectification term",
)
def rectification(beta2: float, t: int) -> float:
    r""":math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty / ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`.

    Defined for :math:`\rho_t > 4` (where the variance of the adaptive rate is
    finite); it rises from 0 towards 1. Raises for :math:`\rho_t \le 4` and for
    :math:`\beta_2 \le 0.6`, where :math:`\rho_\infty \le 4`.
    """
    b2 = check_beta(beta2, "beta2")
    rho_inf = sma_length_limit(b2)
    if rho_inf <= 4.0:
        raise ValueError(f"beta2 = {b2} gives rho_inf = {rho_inf} <= 4: no step is ever rectified; use beta2 > 0.6 (typically 0.999).")
    rho = sma_length(b2, t)
    if rho <= 4.0:
        raise ValueError(f"r_t is undefined for rho_t <= 4 (step t = {t} has rho_t = {rho:.4g}); RAdam takes a momentum step there.")
    return float(np.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)))


@symbol(r"l_t = \sqrt{1-\beta_2^t}/(\sqrt{v_t}+\epsilon)", "RAdam's adaptive rate (epsilon on the uncorrected root)")
def radam_adaptive_rate(v: np.ndarray, beta2: float, t: int, eps: float) -> np.ndarray:
    r""":math:`l_t = \sqrt{1-\beta_2^t}/(\sqrt{v_t}+\epsilon)`, as torch and pytorch-optimizer compute it.

    It equals :math:`1/(\sqrt{\hat v_t} + \epsilon/\sqrt{1-\beta_2^t})`: Adam's rate with an
    epsilon larger by :math:`1/\sqrt{1-\beta_2^t}`.
    """
    t = check_step_number(t)
    b2 = check_beta(beta2, "beta2")
    return np.sqrt(1.0 - b2**t) / (np.sqrt(as_array(v, "v")) + check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES))


def radam_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    rho_threshold: float = 5.0,
    below_threshold: str = "sgd",
) -> tuple[np.ndarray, AdamState]:
    r"""One RAdam step (module docstring). Defaults follow ``torch.optim.RAdam``.

    ``rho_threshold``: the adaptive step is taken when :math:`\rho_t` exceeds it
    (5 in torch and pytorch-optimizer, 4 in the paper's Algorithm 2).
    ``below_threshold``: ``"sgd"`` steps :math:`\eta\hat m_t` (torch; pytorch-optimizer with
    ``degenerated_to_sgd=True``), ``"skip"`` leaves :math:`\theta` unchanged, weight decay included
    (pytorch-optimizer's default). The moments are updated in both cases.
    """
    x, g = params_and_grad(x, g)
    if below_threshold not in BELOW_THRESHOLD:
        raise ValueError(f"below_threshold must be one of {BELOW_THRESHOLD}, got {below_threshold!r}.")
    if not isinstance(decoupled, bool):
        raise TypeError(f"decoupled must be True or False, got {decoupled!r}.")
    threshold = _real(rho_threshold, "rho_threshold")
    if threshold < 4.0:
        raise ValueError(f"rho_threshold must be >= 4 (r_t is undefined for rho_t <= 4), got {threshold}; use 5 (torch) or 4 (the paper).")
    lr = check_lr(lr)
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no decay, or a small value such as 1e-2.")
    state = init_radam_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v)
    b1, b2 = check_betas(betas)
    sma_length_limit(b2)
    t = state.t + 1
    rectified = sma_length(b2, t) > threshold
    moves = rectified or below_threshold == "sgd"
    if lam and not decoupled:
        g = l2_regularized_gradient(g, x, lam)
    m, v = first_moment(state.m, g, b1), second_moment(state.v, g, b2)
    x_new = decoupled_weight_decay(x, lr, lam) if (lam and decoupled and moves) else x
    m_hat = bias_correction(m, b1, t)
    if rectified:
        x_new = x_new - lr * rectification(b2, t) * m_hat * radam_adaptive_rate(v, b2, t, eps)
    elif moves:
        x_new = x_new - lr * m_hat
    return x_new, AdamState(m=m, v=v, t=t)


radam_step.init_state = init_radam_state
