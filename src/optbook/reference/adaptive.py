r"""Per-coordinate adaptive step sizes: Adagrad, RMSProp and AdaDelta, in NumPy.

All three divide the gradient, coordinate by coordinate, by a root of past
squared gradients, so a coordinate that has seen large gradients takes small
steps. They differ in the past they remember.

Adagrad sums every squared gradient, so its step sizes can only shrink:

.. math::

    G_t &= G_{t-1} + g_t \odot g_t \\
    \theta_t &= \theta_{t-1} - \frac{\eta}{\sqrt{G_t + \epsilon}} \odot g_t

RMSProp replaces the sum by an exponential moving average, which forgets:

.. math::

    E[g^2]_t &= \beta E[g^2]_{t-1} + (1-\beta)\, g_t \odot g_t \\
    \theta_t &= \theta_{t-1} - \frac{\eta}{\sqrt{E[g^2]_t + \epsilon}} \odot g_t

AdaDelta also averages the squares of its own past steps and uses their root
in place of :math:`\eta`, so it has no learning rate at all:

.. math::

    E[g^2]_t &= \beta E[g^2]_{t-1} + (1-\beta)\, g_t \odot g_t \\
    \Delta\theta_t &= -\frac{\mathrm{RMS}[\Delta\theta]_{t-1}}{\mathrm{RMS}[g]_t} \odot g_t,
        \qquad \mathrm{RMS}[y]_t = \sqrt{E[y^2]_t + \epsilon} \\
    \theta_t &= \theta_{t-1} + \Delta\theta_t \\
    E[\Delta\theta^2]_t &= \beta E[\Delta\theta^2]_{t-1} + (1-\beta)\, \Delta\theta_t \odot \Delta\theta_t

Relation to ``torch.optim``:

* ``Adagrad`` and ``RMSprop`` add :math:`\epsilon` *outside* the root,
  :math:`\eta g / (\sqrt{G} + \epsilon)`; the lecture puts it inside,
  :math:`\eta g / \sqrt{G + \epsilon}`. They agree exactly for
  :math:`\epsilon = 0`; otherwise, for the same accumulator, torch's step is
  the lecture's times :math:`\sqrt{G + \epsilon} / (\sqrt{G} + \epsilon)`.
  Torch's RMSprop calls :math:`\beta` ``alpha`` (default 0.99).
* ``Adadelta`` puts :math:`\epsilon` inside both roots, as here, but
  multiplies the step by an ``lr`` (default 1.0) that is not in the paper;
  ``lr=1`` gives this module's iterates, and for a fixed sequence of
  gradients ``lr`` scales every displacement :math:`\theta_t - \theta_0` by ``lr``
  (the average :math:`E[\Delta\theta^2]` stores the step *before* ``lr``).
  Torch calls :math:`\beta` ``rho``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    EPS_HINT_ZERO_DIVIDES,
    as_array,
    check_beta,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)

__all__ = [
    "ema",
    "AdagradState",
    "init_adagrad_state",
    "adagrad_accumulator",
    "adaptive_step_size",
    "adagrad_step",
    "RMSPropState",
    "init_rmsprop_state",
    "mean_square",
    "rmsprop_step",
    "AdaDeltaState",
    "init_adadelta_state",
    "running_rms",
    "adadelta_step_size",
    "adadelta_delta",
    "adadelta_step",
]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("init_adagrad_state", "adagrad_step", "init_rmsprop_state", "rmsprop_step", "init_adadelta_state", "adadelta_step")


@symbol(r"\beta\, a_{t-1} + (1-\beta)\, y_t", "exponential moving average with decay beta")
def ema(average: np.ndarray, value: np.ndarray, decay: float) -> np.ndarray:
    r"""Exponential moving average :math:`a_t = \beta a_{t-1} + (1-\beta) y_t` with :math:`\beta` = ``decay``.

    Every running average of Part I (RMSProp, AdaDelta, Adam's two moments,
    Lion's momentum, Sophia's Hessian estimate) is this one formula.
    """
    average, value = as_array(average, "average"), as_array(value, "value")
    check_same_shape(average, value, "value", "average")
    beta = check_beta(decay, "decay")
    return beta * average + (1.0 - beta) * value


# --- Adagrad ------------------------------------------------------------------------


@dataclass(frozen=True)
class AdagradState:
    """The accumulated squared gradients :math:`G_t` and the number of steps ``t``."""

    G: np.ndarray
    t: int = 0


def init_adagrad_state(x: np.ndarray) -> AdagradState:
    """:math:`G_0 = 0`."""
    return AdagradState(G=np.zeros_like(as_array(x, "x")))


@symbol(r"G_t = G_{t-1} + g_t \odot g_t", "Adagrad's sum of squared gradients")
def adagrad_accumulator(G_prev: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`G_t = G_{t-1} + g_t \odot g_t`; it never decreases."""
    G_prev, g = as_array(G_prev, "G_prev"), as_array(g, "g")
    check_same_shape(G_prev, g, "g", "G_prev")
    return G_prev + g * g


@symbol(r"\eta / \sqrt{G_t + \epsilon}", "per-coordinate step size of Adagrad and RMSProp")
def adaptive_step_size(G: np.ndarray, lr: float, eps: float) -> np.ndarray:
    r"""Per-coordinate step size :math:`\eta / \sqrt{G_t + \epsilon}`, with :math:`\epsilon` inside the root."""
    return check_lr(lr) / running_rms(G, eps)


def adagrad_step(
    x: np.ndarray, g: np.ndarray, state: AdagradState | None = None, *, lr: float = 1e-2, eps: float = 1e-10
) -> tuple[np.ndarray, AdagradState]:
    r"""One Adagrad step: :math:`G_t = G_{t-1} + g_t^2`, :math:`\theta_t = \theta_{t-1} - \eta g_t / \sqrt{G_t + \epsilon}`."""
    x, g = params_and_grad(x, g)
    state = init_adagrad_state(x) if state is None else state
    check_state_arrays(x, G=state.G)
    G = adagrad_accumulator(state.G, g)
    return x - adaptive_step_size(G, lr, eps) * g, AdagradState(G=G, t=state.t + 1)


# --- RMSProp ------------------------------------------------------------------------


@dataclass(frozen=True)
class RMSPropState:
    r"""The running mean of squared gradients :math:`E[g^2]_t` and the number of steps ``t``."""

    Eg2: np.ndarray
    t: int = 0


def init_rmsprop_state(x: np.ndarray) -> RMSPropState:
    r""":math:`E[g^2]_0 = 0`."""
    return RMSPropState(Eg2=np.zeros_like(as_array(x, "x")))


@symbol(r"E[g^2]_t = \beta E[g^2]_{t-1} + (1-\beta)\, g_t^2", "running mean of squares")
def mean_square(mean_sq_prev: np.ndarray, y: np.ndarray, beta: float) -> np.ndarray:
    r""":math:`E[y^2]_t = \beta E[y^2]_{t-1} + (1-\beta) y_t \odot y_t`: the :func:`ema` of the squares.

    RMSProp and AdaDelta apply it to the gradient; AdaDelta also to its own steps.
    """
    y = as_array(y, "y")
    return ema(mean_sq_prev, y * y, check_beta(beta, "beta"))


def rmsprop_step(
    x: np.ndarray,
    g: np.ndarray,
    state: RMSPropState | None = None,
    *,
    lr: float = 1e-2,
    beta: float = 0.9,
    eps: float = 1e-8,
) -> tuple[np.ndarray, RMSPropState]:
    r"""One RMSProp step: :math:`E[g^2]_t = \beta E[g^2]_{t-1} + (1-\beta) g_t^2`,
    :math:`\theta_t = \theta_{t-1} - \eta g_t / \sqrt{E[g^2]_t + \epsilon}`.

    ``beta`` = 0.9 is Hinton's suggestion (torch's ``alpha`` defaults to 0.99).
    """
    x, g = params_and_grad(x, g)
    state = init_rmsprop_state(x) if state is None else state
    check_state_arrays(x, Eg2=state.Eg2)
    Eg2 = mean_square(state.Eg2, g, beta)
    return x - adaptive_step_size(Eg2, lr, eps) * g, RMSPropState(Eg2=Eg2, t=state.t + 1)


# --- AdaDelta -----------------------------------------------------------------------


@dataclass(frozen=True)
class AdaDeltaState:
    r"""Running means of squared gradients :math:`E[g^2]` and of squared steps :math:`E[\Delta\theta^2]`."""

    Eg2: np.ndarray
    Edx2: np.ndarray
    t: int = 0


def init_adadelta_state(x: np.ndarray) -> AdaDeltaState:
    r""":math:`E[g^2]_0 = E[\Delta\theta^2]_0 = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return AdaDeltaState(Eg2=zeros, Edx2=zeros.copy())


@symbol(r"\mathrm{RMS}[y]_t = \sqrt{E[y^2]_t + \epsilon}", "root of a running mean of squares")
def running_rms(mean_sq: np.ndarray, eps: float) -> np.ndarray:
    r""":math:`\mathrm{RMS}[y]_t = \sqrt{E[y^2]_t + \epsilon}`."""
    return np.sqrt(as_array(mean_sq, "mean_sq") + check_nonnegative(eps, "eps", EPS_HINT_ZERO_DIVIDES))


@symbol(
    r"\mathrm{RMS}[\Delta\theta]_{t-1} / \mathrm{RMS}[g]_t",
    "AdaDelta's per-coordinate step size, in the units of the parameters",
)
def adadelta_step_size(Eg2: np.ndarray, Edx2_prev: np.ndarray, eps: float) -> np.ndarray:
    r""":math:`\mathrm{RMS}[\Delta\theta]_{t-1} / \mathrm{RMS}[g]_t`: replaces :math:`\eta`.

    The numerator uses the steps up to :math:`t-1` because :math:`\Delta\theta_t`
    is not known yet. On the first step it is :math:`\sqrt{\epsilon}`, which
    therefore sets the scale of the very first moves.
    """
    Eg2, Edx2_prev = as_array(Eg2, "Eg2"), as_array(Edx2_prev, "Edx2_prev")
    check_same_shape(Eg2, Edx2_prev, "Edx2_prev", "Eg2")
    return running_rms(Edx2_prev, eps) / running_rms(Eg2, eps)


@symbol(
    r"\Delta\theta_t = -\frac{\mathrm{RMS}[\Delta\theta]_{t-1}}{\mathrm{RMS}[g]_t} \odot g_t",
    "AdaDelta step",
)
def adadelta_delta(g: np.ndarray, Eg2: np.ndarray, Edx2_prev: np.ndarray, eps: float) -> np.ndarray:
    r""":math:`\Delta\theta_t = -\frac{\mathrm{RMS}[\Delta\theta]_{t-1}}{\mathrm{RMS}[g]_t} \odot g_t`."""
    g = as_array(g, "g")
    check_same_shape(g, Eg2, "Eg2", "g")
    return -adadelta_step_size(Eg2, Edx2_prev, eps) * g


def adadelta_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdaDeltaState | None = None,
    *,
    beta: float = 0.9,
    eps: float = 1e-6,
) -> tuple[np.ndarray, AdaDeltaState]:
    r"""One AdaDelta step (Zeiler 2012, Algorithm 1); there is no learning rate.

    :math:`E[g^2]_t = \beta E[g^2]_{t-1} + (1-\beta) g_t^2`,
    :math:`\Delta\theta_t = -\mathrm{RMS}[\Delta\theta]_{t-1} / \mathrm{RMS}[g]_t \odot g_t`,
    :math:`\theta_t = \theta_{t-1} + \Delta\theta_t`,
    :math:`E[\Delta\theta^2]_t = \beta E[\Delta\theta^2]_{t-1} + (1-\beta)\Delta\theta_t^2`.
    """
    x, g = params_and_grad(x, g)
    state = init_adadelta_state(x) if state is None else state
    check_state_arrays(x, Eg2=state.Eg2, Edx2=state.Edx2)
    Eg2 = mean_square(state.Eg2, g, beta)
    dx = adadelta_delta(g, Eg2, state.Edx2, eps)
    Edx2 = mean_square(state.Edx2, dx, beta)
    return x + dx, AdaDeltaState(Eg2=Eg2, Edx2=Edx2, t=state.t + 1)


adagrad_step.init_state = init_adagrad_state
rmsprop_step.init_state = init_rmsprop_state
adadelta_step.init_state = init_adadelta_state
