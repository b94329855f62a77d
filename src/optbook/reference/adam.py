r"""Adam, its combined-step-size form, AdamW and Adam with an L2 penalty, in NumPy.

Adam (Kingma & Ba 2015, Algorithm 1) keeps moving averages of the gradient
and of its square, corrects both for their start at zero, and divides:

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t \\
    \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t) \\
    \theta_t &= \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

The same paper (end of its Section 2) folds both corrections into one step size,

.. math::

    \alpha_t = \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \qquad
    \theta_t = \theta_{t-1} - \alpha_t\, m_t / (\sqrt{v_t} + \hat\epsilon),

which is the form of the lecture's slide. The two agree exactly when
:math:`\hat\epsilon = \epsilon\sqrt{1-\beta_2^t}` (:func:`equivalent_eps_hat`),
because :math:`\hat m_t/(\sqrt{\hat v_t}+\epsilon) = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
m_t/(\sqrt{v_t} + \epsilon\sqrt{1-\beta_2^t})`. With a *constant*
:math:`\hat\epsilon = \epsilon` the combined form's epsilon is effectively
larger by :math:`1/\sqrt{1-\beta_2^t}` (about 31.6 at :math:`t=1` with
:math:`\beta_2 = 0.999`), which matters only while :math:`\sqrt{v_t}` is
comparable to :math:`\epsilon`. (The lecture's slide writes the root as
:math:`\sqrt{G_t + \epsilon}`; both published forms, and torch, put
:math:`\epsilon` outside it as here.)

Weight decay (Loshchilov & Hutter 2019):

* :func:`adam_step` with ``weight_decay`` = :math:`\lambda` adds
  :math:`\lambda\theta_{t-1}` to :math:`g_t` (an L2 penalty), as
  ``torch.optim.Adam(weight_decay=...)`` does. The decay then passes through
  the division by :math:`\sqrt{\hat v_t}`, so coordinates with large
  gradients are barely decayed.
* :func:`adamw_step` decouples it:
  :math:`\theta_t = \theta_{t-1} - \eta\,(\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda\theta_{t-1})`,
  as ``torch.optim.AdamW`` does (the decay is multiplied by the learning rate).

For gradient descent the two coincide (see :mod:`optbook.reference.gd`); for
Adam they do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT_ZERO_DIVIDES,
    as_array,
    check_beta,
    check_betas,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adaptive import ema, mean_square
from optbook.reference.gd import decoupled_weight_decay, l2_regularized_gradient

__all__ = [
    "AdamState",
    "init_adam_state",
    "first_moment",
    "second_moment",
    "bias_correction",
    "adam_direction",
    "combined_step_size",
    "equivalent_eps_hat",
    "combined_update",
    "adam_step",
    "adam_combined_step",
    "adamw_step",
]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("init_adam_state", "adam_step", "adam_combined_step", "adamw_step")


@dataclass(frozen=True)
class AdamState:
    """First moment :math:`m_t`, second moment :math:`v_t` (both uncorrected) and the step count ``t``."""

    m: np.ndarray
    v: np.ndarray
    t: int = 0


def init_adam_state(x: np.ndarray) -> AdamState:
    """:math:`m_0 = v_0 = 0`, :math:`t = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return AdamState(m=zeros, v=zeros.copy())


@symbol(r"m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t", "first moment: moving average of gradients")
def first_moment(m_prev: np.ndarray, g: np.ndarray, beta1: float) -> np.ndarray:
    r""":math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t` (an :func:`~optbook.reference.adaptive.ema`)."""
    return ema(m_prev, g, check_beta(beta1, "beta1"))


@symbol(r"v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2", "second moment: moving average of squared gradients")
def second_moment(v_prev: np.ndarray, g: np.ndarray, beta2: float) -> np.ndarray:
    r""":math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t \odot g_t` (RMSProp's :func:`~optbook.reference.adaptive.mean_square`)."""
    return mean_square(v_prev, g, check_beta(beta2, "beta2"))


@symbol(r"\hat m_t = m_t / (1-\beta_1^t)", "bias-corrected moving average")
def bias_correction(average: np.ndarray, beta: float, t: int) -> np.ndarray:
    r"""Divide a moving average started at zero by :math:`1-\beta^t`, the total weight it has collected.

    :math:`\hat m_t = m_t/(1-\beta_1^t)` and :math:`\hat v_t = v_t/(1-\beta_2^t)`.
    """
    beta = check_beta(beta, "beta")
    if int(t) != t or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    return as_array(average, "average") / (1.0 - beta ** int(t))


@symbol(r"\hat m_t / (\sqrt{\hat v_t} + \epsilon)", "Adam's update direction")
def adam_direction(m_hat: np.ndarray, v_hat: np.ndarray, eps: float) -> np.ndarray:
    r""":math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)`, with :math:`\epsilon` outside the root."""
    m_hat, v_hat = as_array(m_hat, "m_hat"), as_array(v_hat, "v_hat")
    check_same_shape(m_hat, v_hat, "v_hat", "m_hat")
    return m_hat / (np.sqrt(v_hat) + check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES))


def _step_counts(t):
    """``t`` as an ``int``, or an array of whole numbers as ``int64``; every step counts from 1."""
    if np.ndim(t) == 0:
        if int(t) != t or t < 1:
            raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
        return int(t)
    arr = np.asarray(t)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)) or np.any(arr < 1):
        raise ValueError("t must hold whole numbers >= 1 (steps count from 1), such as np.arange(1, 101).")
    return arr.astype(np.int64)


@symbol(r"\alpha_t = \eta \sqrt{1-\beta_2^t} / (1-\beta_1^t)", "Adam's combined step size")
def combined_step_size(lr: float, beta1: float, beta2: float, t: int) -> float:
    r""":math:`\alpha_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)`: both bias corrections in one scalar.

    It starts at :math:`\eta\sqrt{1-\beta_2}/(1-\beta_1)` and tends to :math:`\eta`. ``t`` may also
    be an array of steps, which gives the array of :math:`\alpha_t`.
    """
    t = _step_counts(t)
    b1, b2 = check_beta(beta1, "beta1"), check_beta(beta2, "beta2")
    return check_lr(lr) * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)


@symbol(r"\hat\epsilon_t = \epsilon \sqrt{1-\beta_2^t}", "epsilon of the combined form that reproduces Adam exactly")
def equivalent_eps_hat(eps: float, beta2: float, t: int) -> float:
    r""":math:`\hat\epsilon_t = \epsilon\sqrt{1-\beta_2^t}`.

    With this :math:`\hat\epsilon_t` the combined form
    :math:`\alpha_t m_t/(\sqrt{v_t}+\hat\epsilon_t)` equals
    :math:`\eta\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)` exactly; a constant
    :math:`\hat\epsilon` cannot, since the factor changes with :math:`t`. ``t`` may also be an
    array of steps.
    """
    t = _step_counts(t)
    eps = check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES)
    return eps * np.sqrt(1.0 - check_beta(beta2, "beta2") ** t)


@symbol(r"\theta_t = \theta_{t-1} - \alpha_t m_t / (\sqrt{v_t} + \hat\epsilon)", "Adam's step in the combined form")
def combined_update(x: np.ndarray, m: np.ndarray, v: np.ndarray, alpha: float, eps_hat: float) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \alpha_t\, m_t / (\sqrt{v_t} + \hat\epsilon)` on the *uncorrected* moments."""
    x, m, v = as_array(x, "x"), as_array(m, "m"), as_array(v, "v")
    check_same_shape(x, m, "m")
    check_same_shape(x, v, "v")
    return x - alpha * m / (np.sqrt(v) + check_nonnegative(eps_hat, "eps_hat", EPS_HINT_ZERO_DIVIDES))


def _moments(x, g, state, betas) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    state = init_adam_state(x) if state is None else state
    check_state_arrays(x, m=state.m, v=state.v)
    b1, b2 = check_betas(betas)
    return first_moment(state.m, g, b1), second_moment(state.v, g, b2), state.t + 1, b1, b2


def adam_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, AdamState]:
    r"""One Adam step, :math:`\theta_t = \theta_{t-1} - \eta\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)`.

    ``weight_decay`` :math:`\lambda` is an L2 penalty: :math:`g_t` is replaced by
    :math:`g_t + \lambda\theta_{t-1}` before the moments are updated (as in
    ``torch.optim.Adam``). For decoupled decay use :func:`adamw_step`.
    """
    x, g = params_and_grad(x, g)
    if weight_decay:
        g = l2_regularized_gradient(g, x, weight_decay)
    m, v, t, b1, b2 = _moments(x, g, state, betas)
    u = adam_direction(bias_correction(m, b1, t), bias_correction(v, b2, t), eps)
    return x - check_lr(lr) * u, AdamState(m=m, v=v, t=t)


def adam_combined_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps_hat: float = 1e-8,
) -> tuple[np.ndarray, AdamState]:
    r"""One Adam step in the combined form, :math:`\theta_t = \theta_{t-1} - \alpha_t m_t/(\sqrt{v_t}+\hat\epsilon)`.

    Same state as :func:`adam_step`; the iterates are identical when
    ``eps_hat`` is :func:`equivalent_eps_hat` of the step being taken.
    """
    x, g = params_and_grad(x, g)
    m, v, t, b1, b2 = _moments(x, g, state, betas)
    alpha = combined_step_size(lr, b1, b2, t)
    return combined_update(x, m, v, alpha, eps_hat), AdamState(m=m, v=v, t=t)


def adamw_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> tuple[np.ndarray, AdamState]:
    r"""One AdamW step, :math:`\theta_t = \theta_{t-1} - \eta\,(\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda\theta_{t-1})`.

    The moments see only the loss gradient :math:`g_t`; the decay shrinks every
    coordinate by the same factor :math:`1-\eta\lambda`. Defaults follow ``torch.optim.AdamW``.
    """
    x, g = params_and_grad(x, g)
    m, v, t, b1, b2 = _moments(x, g, state, betas)
    u = adam_direction(bias_correction(m, b1, t), bias_correction(v, b2, t), eps)
    return decoupled_weight_decay(x, lr, weight_decay) - check_lr(lr) * u, AdamState(m=m, v=v, t=t)


adam_step.init_state = init_adam_state
adam_combined_step.init_state = init_adam_state
adamw_step.init_state = init_adam_state
