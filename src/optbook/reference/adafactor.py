r"""Adafactor in NumPy, one function per formula of the paper's algorithm boxes.

This module follows the notation of Shazeer & Stern (2018), Algorithms 4 and
5, as restated on the Cornell Optimization Wiki. Each function computes one
symbol; :func:`vector_step` and :func:`matrix_step` compose them into one
iteration. Nothing here is optimised: the point is that a reader can hold the
code next to the book and tick off each line.

For a vector parameter :math:`X \in \mathbb{R}^n` one iteration is

.. math::

    \rho_t &= \min(10^{-2}, 1/\sqrt{t}) \\
    \alpha_t &= \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))\,\rho_t \\
    \hat\beta_{2t} &= 1 - t^{-0.8} \\
    \hat V_t &= \hat\beta_{2t}\hat V_{t-1} + (1-\hat\beta_{2t})(G_t^2 + \epsilon_1 1_n) \\
    U_t &= G_t / \sqrt{\hat V_t} \\
    \hat U_t &= U_t / \max(1, \mathrm{RMS}(U_t)/d) \\
    X_t &= X_{t-1} - \alpha_t \hat U_t

and for a matrix :math:`X \in \mathbb{R}^{n\times m}` the second line of the
second moment becomes the factored form

.. math::

    R_t &= \hat\beta_{2t} R_{t-1} + (1-\hat\beta_{2t})(G_t^2 + \epsilon_1 1_n 1_m^\top) 1_m \\
    C_t &= \hat\beta_{2t} C_{t-1} + (1-\hat\beta_{2t}) 1_n^\top (G_t^2 + \epsilon_1 1_n 1_m^\top) \\
    \hat V_t &= R_t C_t / (1_n^\top R_t).

Row and column statistics are *sums*, as in the paper. Means give the same
:math:`\hat V_t` (see :func:`factored_second_moment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from optbook.notation import symbol

__all__ = [
    "AdafactorHyperparameters",
    "AdafactorState",
    "relative_step_size",
    "rms",
    "step_size",
    "second_moment_decay",
    "regularized_squared_gradient",
    "second_moment_vector",
    "row_statistic",
    "column_statistic",
    "factored_second_moment",
    "normalized_update",
    "clipped_update",
    "parameter_update",
    "vector_step",
    "matrix_step",
    "step",
    "run",
]

# Public functions that compose formulas rather than compute one book symbol;
# the notation test exempts them.
__helpers__ = ("vector_step", "matrix_step", "step", "run")


@dataclass(frozen=True)
class AdafactorHyperparameters:
    r"""The paper's recommended hyperparameters (Shazeer & Stern 2018, Sec. 9).

    ``rho_cap`` is the :math:`10^{-2}` in :math:`\rho_t`, ``decay_exponent`` the
    :math:`0.8` in :math:`\hat\beta_{2t}`, ``eps1`` and ``eps2`` the two
    regularisation constants, and ``d`` the clipping threshold;
    ``d=float("inf")`` switches update clipping off (:math:`\hat U_t = U_t`).

    ``decay``, when given, is a schedule ``t -> beta2hat_t`` (for ``t >= 1``)
    used instead of :math:`1 - t^{-c}`; ``decay_exponent`` is then ignored.
    Constant decays and the Adam-style schedule live in
    :mod:`optbook.reference.averaging`. Each value must lie in :math:`[0, 1)`;
    the steps check it when they call the schedule.
    """

    rho_cap: float = 1e-2
    decay_exponent: float = 0.8
    eps1: float = 1e-30
    eps2: float = 1e-3
    d: float = 1.0
    decay: Callable[[int], float] | None = None

    def __post_init__(self) -> None:
        if not self.rho_cap > 0:
            raise ValueError(f"rho_cap must be > 0, got {self.rho_cap}; the paper uses 1e-2.")
        if not 0 < self.decay_exponent <= 1:
            raise ValueError(
                f"decay_exponent must lie in (0, 1] so that beta2hat_t = 1 - t^-c tends to 1, "
                f"got {self.decay_exponent}; the paper uses 0.8."
            )
        if not self.eps1 > 0:
            raise ValueError(f"eps1 must be > 0, got {self.eps1}; the paper uses 1e-30.")
        if not self.eps2 > 0:
            raise ValueError(f"eps2 must be > 0, got {self.eps2}; the paper uses 1e-3.")
        if not self.d > 0:
            raise ValueError(
                f"d (clipping threshold) must be > 0, got {self.d}; the paper uses 1 "
                f"(float('inf') switches clipping off)."
            )
        if self.decay is not None and not callable(self.decay):
            raise ValueError(
                f"decay must be a callable t -> beta2hat_t or None, got {self.decay!r}; "
                f"for a constant beta2 pass optbook.reference.averaging.ConstantDecay(beta2)."
            )

    def beta2hat(self, t: int) -> float:
        """The decay used at step ``t``: ``decay(t)`` if a schedule was given, else :math:`1 - t^{-c}`."""
        if self.decay is None:
            return second_moment_decay(t, self.decay_exponent)
        if t < 1:
            raise ValueError(f"t must be >= 1 (iterations count from 1), got {t}.")
        beta = float(self.decay(t))
        if not (math.isfinite(beta) and 0.0 <= beta < 1.0):
            raise ValueError(f"decay({t}) = {beta} is not in [0, 1); a decay schedule must return values in [0, 1).")
        return beta


@dataclass
class AdafactorState:
    r"""What Adafactor carries between iterations for one parameter.

    A vector keeps the full :math:`\hat V_{t-1}`; a matrix keeps only
    :math:`R_{t-1}` (length n) and :math:`C_{t-1}` (length m).
    """

    t: int = 0
    v: np.ndarray | None = None
    r: np.ndarray | None = None
    c: np.ndarray | None = None
    history: list[dict] = field(default_factory=list)


@symbol(r"\rho_t", "relative step size")
def relative_step_size(t: int, cap: float = 1e-2) -> float:
    r"""Relative step size :math:`\rho_t = \min(\text{cap}, 1/\sqrt{t})`, for :math:`t \ge 1`."""
    if t < 1:
        raise ValueError(f"t must be >= 1 (iterations count from 1), got {t}.")
    return min(cap, 1.0 / np.sqrt(t))


@symbol(r"\mathrm{RMS}(X)", "root mean square of the entries of X")
def rms(x: np.ndarray) -> float:
    r""":math:`\mathrm{RMS}(X) = \sqrt{\operatorname{mean}_{ij} X_{ij}^2}`; 0 for an empty array."""
    x = np.asarray(x)
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x))))


@symbol(r"\alpha_t", "step size: relative step times parameter scale")
def step_size(x_prev: np.ndarray, rho: float, eps2: float = 1e-3) -> float:
    r"""Step size :math:`\alpha_t = \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))\,\rho_t`.

    The floor :math:`\epsilon_2` lets a parameter that starts at zero move.
    """
    return max(eps2, rms(x_prev)) * rho


@symbol(r"\hat\beta_{2t}", "second-moment decay at step t")
def second_moment_decay(t: int, exponent: float = 0.8) -> float:
    r"""Decay :math:`\hat\beta_{2t} = 1 - t^{-c}` with :math:`c` = ``exponent``; :math:`\hat\beta_{21} = 0`."""
    if t < 1:
        raise ValueError(f"t must be >= 1 (iterations count from 1), got {t}.")
    return 1.0 - t ** (-exponent)


@symbol(r"G_t^2 + \epsilon_1", "squared gradient with the epsilon-1 floor")
def regularized_squared_gradient(g: np.ndarray, eps1: float = 1e-30) -> np.ndarray:
    r"""Element-wise :math:`G_t^2 + \epsilon_1`: :math:`\epsilon_1` is added *before* any averaging."""
    return np.square(np.asarray(g, dtype=float)) + eps1


@symbol(r"\hat V_t", "second-moment estimate of a vector parameter")
def second_moment_vector(
    v_prev: np.ndarray | None, g: np.ndarray, beta2hat: float, eps1: float = 1e-30
) -> np.ndarray:
    r""":math:`\hat V_t = \hat\beta_{2t}\hat V_{t-1} + (1-\hat\beta_{2t})(G_t^2 + \epsilon_1 1_n)`.

    ``v_prev=None`` stands for :math:`\hat V_0 = 0`.
    """
    g2 = regularized_squared_gradient(g, eps1)
    v_prev = np.zeros_like(g2) if v_prev is None else v_prev
    return beta2hat * v_prev + (1.0 - beta2hat) * g2


@symbol(r"R_t", "row statistic: EMA of the row sums of G^2 + eps1")
def row_statistic(
    r_prev: np.ndarray | None, g: np.ndarray, beta2hat: float, eps1: float = 1e-30
) -> np.ndarray:
    r""":math:`R_t = \hat\beta_{2t}R_{t-1} + (1-\hat\beta_{2t})(G_t^2 + \epsilon_1 1_n 1_m^\top)1_m`.

    Sums over the last axis (the columns), so a leading batch of matrices
    is handled too. ``r_prev=None`` stands for :math:`R_0 = 0`.
    """
    row_sums = regularized_squared_gradient(g, eps1).sum(axis=-1)
    r_prev = np.zeros_like(row_sums) if r_prev is None else r_prev
    return beta2hat * r_prev + (1.0 - beta2hat) * row_sums


@symbol(r"C_t", "column statistic: EMA of the column sums of G^2 + eps1")
def column_statistic(
    c_prev: np.ndarray | None, g: np.ndarray, beta2hat: float, eps1: float = 1e-30
) -> np.ndarray:
    r""":math:`C_t = \hat\beta_{2t}C_{t-1} + (1-\hat\beta_{2t})1_n^\top(G_t^2 + \epsilon_1 1_n 1_m^\top)`.

    Sums over the second-to-last axis (the rows). ``c_prev=None`` stands for
    :math:`C_0 = 0`.
    """
    col_sums = regularized_squared_gradient(g, eps1).sum(axis=-2)
    c_prev = np.zeros_like(col_sums) if c_prev is None else c_prev
    return beta2hat * c_prev + (1.0 - beta2hat) * col_sums


@symbol(r"\hat V_t = R_t C_t / 1_n^\top R_t", "factored second-moment estimate of a matrix")
def factored_second_moment(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r"""Rank-one estimate :math:`\hat V_t = R_t C_t / (1_n^\top R_t)`.

    ``r`` has shape ``(..., n)`` and ``c`` shape ``(..., m)``; the result has
    shape ``(..., n, m)``. Scaling ``r`` by :math:`a` and ``c`` by :math:`b`
    scales :math:`\hat V_t` by :math:`b` only, so row *means* (a = 1/m) and
    column *means* (b = 1/n) with a normalisation by the mean of R instead of
    its sum give the same estimate. This reference materialises the n-by-m
    matrix for readability; the torch optimizer never does.
    """
    r = np.asarray(r, dtype=float)
    c = np.asarray(c, dtype=float)
    total = r.sum(axis=-1, keepdims=True)[..., None]
    return r[..., :, None] * c[..., None, :] / total


@symbol(r"U_t", "unclipped update G_t / sqrt(V_t)")
def normalized_update(g: np.ndarray, v_hat: np.ndarray) -> np.ndarray:
    r"""Normalised gradient :math:`U_t = G_t / \sqrt{\hat V_t}`, element-wise."""
    return np.asarray(g, dtype=float) / np.sqrt(v_hat)


@symbol(r"\hat U_t", "update after clipping its RMS at d")
def clipped_update(u: np.ndarray, d: float = 1.0) -> np.ndarray:
    r"""Update clipping :math:`\hat U_t = U_t / \max(1, \mathrm{RMS}(U_t)/d)`.

    The whole tensor is rescaled, so the direction of :math:`U_t` is kept and
    :math:`\mathrm{RMS}(\hat U_t) \le d`. ``d=float("inf")`` returns :math:`U_t`
    unchanged (no clipping).
    """
    if not d > 0:
        raise ValueError(f"d (clipping threshold) must be > 0, got {d}.")
    return u / max(1.0, rms(u) / d)


@symbol(r"X_t", "parameters after step t")
def parameter_update(x_prev: np.ndarray, alpha: float, u_hat: np.ndarray) -> np.ndarray:
    r"""Parameter update :math:`X_t = X_{t-1} - \alpha_t \hat U_t`."""
    return x_prev - alpha * u_hat


def _trace(**values) -> dict:
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in values.items()}


def vector_step(
    x_prev: np.ndarray,
    g: np.ndarray,
    state: AdafactorState,
    hp: AdafactorHyperparameters = AdafactorHyperparameters(),
    *,
    record: bool = False,
) -> np.ndarray:
    """One iteration of Adafactor for a vector (Algorithm 4). Updates ``state`` in place."""
    t = state.t + 1
    rho = relative_step_size(t, hp.rho_cap)
    alpha = step_size(x_prev, rho, hp.eps2)
    beta2hat = hp.beta2hat(t)
    v = second_moment_vector(state.v, g, beta2hat, hp.eps1)
    u = normalized_update(g, v)
    u_hat = clipped_update(u, hp.d)
    x = parameter_update(x_prev, alpha, u_hat)
    state.t, state.v = t, v
    if record:
        state.history.append(
            _trace(t=t, rho=rho, alpha=alpha, beta2hat=beta2hat, G=g, V=v, U=u, U_hat=u_hat, X=x)
        )
    return x


def matrix_step(
    x_prev: np.ndarray,
    g: np.ndarray,
    state: AdafactorState,
    hp: AdafactorHyperparameters = AdafactorHyperparameters(),
    *,
    record: bool = False,
    second_moment=None,
) -> np.ndarray:
    """One iteration of Adafactor for a matrix (Algorithm 5). Updates ``state`` in place.

    ``second_moment(r, c)`` replaces :func:`factored_second_moment` when given;
    the book uses this to run the algorithm with a deliberately wrong
    :math:`\\hat V_t` and watch what changes.
    """
    t = state.t + 1
    rho = relative_step_size(t, hp.rho_cap)
    alpha = step_size(x_prev, rho, hp.eps2)
    beta2hat = hp.beta2hat(t)
    r = row_statistic(state.r, g, beta2hat, hp.eps1)
    c = column_statistic(state.c, g, beta2hat, hp.eps1)
    v_hat = (second_moment or factored_second_moment)(r, c)
    u = normalized_update(g, v_hat)
    u_hat = clipped_update(u, hp.d)
    x = parameter_update(x_prev, alpha, u_hat)
    state.t, state.r, state.c = t, r, c
    if record:
        state.history.append(
            _trace(t=t, rho=rho, alpha=alpha, beta2hat=beta2hat, G=g, R=r, C=c, V=v_hat, U=u, U_hat=u_hat, X=x)
        )
    return x


def step(
    x_prev: np.ndarray,
    g: np.ndarray,
    state: AdafactorState,
    hp: AdafactorHyperparameters = AdafactorHyperparameters(),
    *,
    record: bool = False,
    second_moment=None,
) -> np.ndarray:
    """One iteration: :func:`matrix_step` for rank >= 2 (factoring the last two
    axes, as torch does), :func:`vector_step` for vectors and scalars."""
    x_prev = np.asarray(x_prev, dtype=float)
    g = np.asarray(g, dtype=float)
    if x_prev.shape != g.shape:
        raise ValueError(f"g has shape {g.shape} but x_prev has shape {x_prev.shape}; they must match.")
    if x_prev.ndim >= 2:
        return matrix_step(x_prev, g, state, hp, record=record, second_moment=second_moment)
    return vector_step(x_prev, g, state, hp, record=record)


def run(
    x0: np.ndarray,
    grad,
    steps: int,
    hp: AdafactorHyperparameters = AdafactorHyperparameters(),
    *,
    record: bool = False,
    second_moment=None,
) -> tuple[np.ndarray, AdafactorState]:
    """Run ``steps`` iterations from ``x0`` with gradient function ``grad(x)``.

    Returns the final parameters and the state, whose ``history`` holds every
    intermediate quantity when ``record=True``.
    """
    state = AdafactorState()
    x = np.array(x0, dtype=float, copy=True)
    for _ in range(steps):
        x = step(x, grad(x), state, hp, record=record, second_moment=second_moment)
    return x, state
