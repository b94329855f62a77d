r"""What a moving average of squared gradients actually averages: its weights.

Every second-moment estimate in this book is an exponential moving average
(EMA) started at zero, possibly with a decay :math:`\beta_t` that changes with
the step:

.. math::

    V_t = \beta_t V_{t-1} + (1-\beta_t)\, y_t, \qquad V_0 = 0 .

Unrolling the recursion writes :math:`V_t` as a weighted sum of the past
inputs,

.. math::

    V_t = \sum_{k=1}^{t} w_{t,k}\, y_k + \Bigl(\prod_{j=1}^{t}\beta_j\Bigr) V_0,
    \qquad
    w_{t,k} = (1-\beta_k) \prod_{j=k+1}^{t} \beta_j ,

and the weights together with the weight left on :math:`V_0` always add up
to one (:func:`ema_weights`, :func:`initial_weight`). Adafactor's schedule
:math:`\hat\beta_{2t} = 1 - t^{-c}` has :math:`\hat\beta_{21} = 0`, so nothing is
left on :math:`V_0` and the weights sum to exactly one at every step. Adam
keeps a constant :math:`\beta_2` and divides by the missing mass
:math:`1-\beta_2^t` instead (:func:`adam_bias_corrected_weights`). The two are
the same thing for the schedule :func:`adam_style_decay`,
:math:`\hat\beta_{2t} = \beta_2(1-\beta_2^{t-1})/(1-\beta_2^t)`.

The functions accept Python numbers *or* :class:`fractions.Fraction`; with
fractions (and a rational schedule) the weights are computed in exact
arithmetic, so identities can be checked with ``==``.

The schedule classes (:class:`ConstantDecay`, :class:`PowerDecay`,
:class:`AdamStyleDecay`) are callables ``t -> beta_t`` that can be passed as
``decay=`` to :class:`optbook.reference.adafactor.AdafactorHyperparameters`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from optbook.notation import symbol
from optbook.reference.adafactor import second_moment_decay

__all__ = [
    "ConstantDecay",
    "PowerDecay",
    "AdamStyleDecay",
    "decay_sequence",
    "adam_style_decay",
    "ema_weights",
    "initial_weight",
    "adam_bias_corrected_weights",
    "effective_window",
    "mean_age",
]

# Public names that compose formulas rather than compute one book symbol.
__helpers__ = ("ConstantDecay", "PowerDecay", "AdamStyleDecay", "decay_sequence")


def _check_t(t) -> int:
    if int(t) != t or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    return int(t)


def _check_beta(beta, name: str = "beta2"):
    if not isinstance(beta, Real) or not 0 <= beta < 1:
        raise ValueError(f"{name} must be a real number in [0, 1), got {beta!r}; Adam's default is 0.999.")
    return beta


def _as_weights_input(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype != object:
        arr = arr.astype(float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}.")
    return arr


# --- decay schedules --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstantDecay:
    r"""The constant schedule :math:`\hat\beta_{2t} = \beta_2` (Adam or RMSProp *without* bias correction)."""

    beta2: float

    def __post_init__(self) -> None:
        _check_beta(self.beta2)

    def __call__(self, t: int) -> float:
        _check_t(t)
        return self.beta2


@dataclass(frozen=True)
class PowerDecay:
    r"""Adafactor's schedule :math:`\hat\beta_{2t} = 1 - t^{-c}` (:func:`~optbook.reference.adafactor.second_moment_decay`)."""

    exponent: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.exponent <= 1:
            raise ValueError(f"exponent must lie in (0, 1], got {self.exponent}; the paper uses 0.8.")

    def __call__(self, t: int) -> float:
        return second_moment_decay(_check_t(t), self.exponent)


@dataclass(frozen=True)
class AdamStyleDecay:
    r"""The schedule :func:`adam_style_decay`: Adam's bias correction folded into :math:`\hat\beta_{2t}`."""

    beta2: float = 0.999

    def __post_init__(self) -> None:
        _check_beta(self.beta2)

    def __call__(self, t: int):
        return adam_style_decay(t, self.beta2)


def decay_sequence(schedule: Callable[[int], float], t: int) -> np.ndarray:
    """``[schedule(1), ..., schedule(t)]`` as an array (object dtype if the schedule returns fractions)."""
    t = _check_t(t)
    values = [schedule(k) for k in range(1, t + 1)]
    if any(not isinstance(v, (float, int, np.floating)) for v in values):
        return np.array(values, dtype=object)
    return np.array(values, dtype=float)


@symbol(r"\hat\beta_{2t} = \beta_2\frac{1-\beta_2^{t-1}}{1-\beta_2^t}", "Adam-style decay: bias correction folded into the schedule")
def adam_style_decay(t: int, beta2: float = 0.999):
    r"""The decay :math:`\hat\beta_{2t} = \beta_2(1-\beta_2^{t-1})/(1-\beta_2^t)`, for :math:`t \ge 1`.

    It is 0 at :math:`t = 1` and tends to :math:`\beta_2`. An EMA with this
    decay equals Adam's bias-corrected :math:`v_t/(1-\beta_2^t)` exactly, because
    :math:`1-\hat\beta_{2t} = (1-\beta_2)/(1-\beta_2^t)` (Shazeer & Stern 2018, Sec. 7.1).
    Works in exact arithmetic when ``beta2`` is a :class:`fractions.Fraction`.
    """
    t = _check_t(t)
    beta2 = _check_beta(beta2)
    return beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t)


# --- weights ----------------------------------------------------------------------------------


@symbol(r"w_{t,k} = (1-\beta_k)\prod_{j=k+1}^{t}\beta_j", "weight of the input of step k in an EMA at step t")
def ema_weights(decays: Sequence[float]) -> np.ndarray:
    r"""Weights :math:`w_{t,k}`, :math:`k = 1, \dots, t`, of an EMA with decays ``decays`` = :math:`(\beta_1, \dots, \beta_t)`.

    :math:`V_t = \sum_k w_{t,k} y_k + (\prod_j \beta_j) V_0` for
    :math:`V_t = \beta_t V_{t-1} + (1-\beta_t) y_t`. Entry ``k - 1`` of the
    result is :math:`w_{t,k}`, so the last entry is the newest input's weight
    :math:`1-\beta_t`. Exact for fractions.
    """
    b = _as_weights_input(decays, "decays")
    if np.any(b < 0) or np.any(b >= 1):
        raise ValueError("every decay must lie in [0, 1).")
    # tail[k-1] = prod_{j=k+1}^{t} beta_j, the product over an empty range being 1
    tail = np.cumprod(b[::-1])[::-1]
    tail = np.concatenate([tail[1:], np.ones(1, dtype=b.dtype)])
    return (1 - b) * tail


@symbol(r"\prod_{j=1}^{t}\beta_j", "weight an EMA started at zero leaves on its initial value")
def initial_weight(decays: Sequence[float]):
    r""":math:`\prod_{j=1}^t \beta_j`: the weight of :math:`V_0` in :math:`V_t`, and so ``1 - sum(ema_weights(decays))``.

    For a constant :math:`\beta_2` it is :math:`\beta_2^t`, the mass that Adam's
    bias correction divides out; when :math:`\beta_1 = 0` it is exactly 0.
    """
    b = _as_weights_input(decays, "decays")
    return np.prod(b) if b.dtype == object else float(np.prod(b))


@symbol(r"w^{\mathrm{Adam}}_{t,k} = \frac{(1-\beta_2)\beta_2^{t-k}}{1-\beta_2^t}", "weights of Adam's bias-corrected second moment")
def adam_bias_corrected_weights(t: int, beta2: float = 0.999) -> np.ndarray:
    r"""Weights of :math:`\hat v_t = v_t/(1-\beta_2^t)` on :math:`g_1^2, \dots, g_t^2`; they sum to 1.

    Entry ``k - 1`` is :math:`(1-\beta_2)\beta_2^{t-k}/(1-\beta_2^t)`. Exact for fractions.
    """
    t = _check_t(t)
    beta2 = _check_beta(beta2)
    if isinstance(beta2, (float, int, np.floating)):
        ages = np.arange(t - 1, -1, -1, dtype=float)
        return (1 - beta2) * beta2**ages / (1 - beta2**t)
    return np.array([(1 - beta2) * beta2 ** (t - k) / (1 - beta2**t) for k in range(1, t + 1)], dtype=object)


@symbol(r"N_{\mathrm{eff}} = (\sum_k w_{t,k})^2 / \sum_k w_{t,k}^2", "effective number of past steps an average uses")
def effective_window(weights: Sequence[float]) -> float:
    r"""Effective sample size :math:`(\sum_k w_k)^2 / \sum_k w_k^2` of a set of averaging weights.

    It is :math:`N` for a plain mean of :math:`N` values and
    :math:`(1+\beta)/(1-\beta)` for an EMA with constant :math:`\beta` that has
    run for ever.
    """
    w = _as_weights_input(weights, "weights")
    if np.any(w < 0) or not np.sum(w) > 0:
        raise ValueError("weights must be non-negative with a positive sum.")
    total = np.sum(w)
    n_eff = total * total / np.sum(w * w)
    return n_eff if w.dtype == object else float(n_eff)


@symbol(r"\bar a_t = \sum_k w_{t,k}(t-k) / \sum_k w_{t,k}", "mean age, in steps, of the inputs an average uses")
def mean_age(weights: Sequence[float]) -> float:
    r"""Mean age :math:`\sum_k w_{t,k}(t-k)/\sum_k w_{t,k}` of the inputs, where ``weights[-1]`` is the newest (age 0).

    For an EMA with constant :math:`\beta` that has run for ever it is
    :math:`\beta/(1-\beta)`: how many steps out of date the average is.
    """
    w = _as_weights_input(weights, "weights")
    if np.any(w < 0) or not np.sum(w) > 0:
        raise ValueError("weights must be non-negative with a positive sum.")
    ages = np.arange(len(w) - 1, -1, -1)
    age = np.sum(w * ages) / np.sum(w)
    return age if w.dtype == object else float(age)
