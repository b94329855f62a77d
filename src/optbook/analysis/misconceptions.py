r"""What two popular descriptions of Adafactor actually compute, written out so they can be tested.

The chapter "Misconceptions, tested" holds two sources against the paper
(Shazeer & Stern 2018):

* a general web article on Adafactor (seed 003 of the book's sources), which
  prints four formulas and a short NumPy class, and
* a lecture's Adafactor slide (seed 004), which writes the factored
  second moment with explicit sums.

Each function below computes one formula or one code behaviour *as the source
describes it*, named after what it computes, so the chapter can run it beside
:mod:`optbook.reference.adafactor` and show where the two agree and where they
do not. None of this is recommended practice; it is the evidence.

The article's formulas
----------------------

.. math::

    \eta_t &= \alpha\,\sqrt{1-\beta_2^t}\,/\,(1-\beta_2^t)
        &&\text{its "parameter-wise learning rate" (one scalar per step)} \\
    \tilde g &= \min(g/\kappa, 1)
        &&\text{its "gradient clipping", element-wise, } \kappa = \text{clipratio}

The article's code, as a rule
-----------------------------

For a parameter :math:`X` with gradient :math:`G`, a fixed decay
:math:`\beta_2` and a constant learning rate :math:`\eta`, the article's class
keeps row and column means of :math:`G^2 + \epsilon` when :math:`X` has
*exactly* two axes, and a full :math:`V` otherwise, and steps

.. math::

    \hat V_t &= \text{factored (rank 2) or full EMA of } G^2+\epsilon
        \text{ with the constant } \beta_2 \\
    U_t &= G_t / (\sqrt{\hat V_t} + \epsilon) \\
    \hat U_t &= U_t / \max(1, \mathrm{RMS}(U_t)/d) \\
    X_t &= X_{t-1} - \eta\,\mathrm{RMS}(X_{t-1})\,\hat U_t .

Compared with the paper it has no :math:`\epsilon_2` floor in the step size
(so :math:`X_0 = 0` never moves), no :math:`\hat\beta_{2t} = 1 - t^{-0.8}`
schedule and no bias correction (so :math:`\hat V_t` is too small by the
factor :math:`1-\beta_2^t` early on), and no :math:`1/\sqrt t` decay of the
relative step. :func:`fixed_decay_adafactor_step` is our own implementation
of that rule (not the article's code), built from the reference formulas.

The lecture's slide
-------------------

.. math::

    v^{(r)}_{i,t} &= \hat\beta_{2t} v^{(r)}_{i,t-1} + (1-\hat\beta_{2t})\textstyle\sum_j (g_{ij,t}^2 + \epsilon_1) \\
    v^{(c)}_{j,t} &= \hat\beta_{2t} v^{(c)}_{j,t-1} + (1-\hat\beta_{2t})\textstyle\sum_i (g_{ij,t}^2 + \epsilon_1) \\
    \hat v_{ij,t} &= v^{(r)}_{i,t}\, v^{(c)}_{j,t} \,/\, \textstyle\sum_j v^{(c)}_{j,t} \\
    \hat u_t &= \frac{u_t}{\max(1, \mathrm{RMS}(u_t)/d)} \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1})),
    \qquad \theta_t = \theta_{t-1} - \alpha_t \hat u_t

The paper divides by :math:`\sum_i v^{(r)}_i` instead. The two sums are the
same number whenever both statistics come from the same gradients, because
each is the same moving average of the grand total
:math:`\sum_{ij}(g_{ij}^2+\epsilon_1)` (see :func:`lecture_factored_second_moment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from optbook.notation import symbol
from optbook.reference import adafactor as af

__all__ = [
    "article_step_size",
    "article_gradient_clip",
    "global_norm_clip",
    "value_clip",
    "cosine_similarity",
    "unfloored_step_size",
    "epsilon_shifted_update",
    "article_code_state_numbers",
    "effective_step_sizes",
    "lecture_factored_second_moment",
    "lecture_update",
    "FixedDecayState",
    "fixed_decay_adafactor_step",
    "fixed_decay_adafactor_run",
]

# Public functions that compose formulas rather than compute one book symbol.
__helpers__ = ("fixed_decay_adafactor_step", "fixed_decay_adafactor_run")


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN.")
    return value


def _step_index(t) -> int:
    if isinstance(t, bool) or not isinstance(t, Integral) or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    return int(t)


def _beta(beta, name: str) -> float:
    beta = _real(beta, name)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {beta}; the article's values are 0.99 and 0.999.")
    return beta


# --- the article's printed formulas -------------------------------------------------------


@symbol(r"\eta_t = \alpha\sqrt{1-\beta_2^t}/(1-\beta_2^t)", "seed 003's 'parameter-wise learning rate'")
def article_step_size(alpha: float, beta2: float, t: int) -> float:
    r""":math:`\eta_t = \alpha\sqrt{1-\beta_2^t}/(1-\beta_2^t) = \alpha/\sqrt{1-\beta_2^t}`.

    The formula has no parameter index: it returns one number per step, the
    same for every weight. It is Adam's combined step size
    :math:`\alpha\sqrt{1-\beta_2^t}/(1-\beta_1^t)` with :math:`\beta_1`
    replaced by :math:`\beta_2`; it starts at :math:`\alpha/\sqrt{1-\beta_2}`
    and falls to :math:`\alpha`.
    """
    alpha = _real(alpha, "alpha")
    beta2 = _beta(beta2, "beta2")
    t = _step_index(t)
    if beta2 == 0.0:
        return alpha
    total_weight = 1.0 - beta2**t
    return alpha * math.sqrt(total_weight) / total_weight


@symbol(r"\min(g/\kappa, 1)", "seed 003's printed 'gradient clipping', element-wise")
def article_gradient_clip(g: np.ndarray, clip_ratio: float) -> np.ndarray:
    r""":math:`\tilde g = \min(g/\kappa, 1)` element-wise, :math:`\kappa` = ``clip_ratio`` > 0.

    Positive entries are capped at 1 whatever the scale of the gradient,
    negative entries are never bounded, and every entry is divided by
    :math:`\kappa` even when nothing needs clipping.
    """
    kappa = _real(clip_ratio, "clip_ratio")
    if not kappa > 0:
        raise ValueError(f"clip_ratio must be > 0, got {kappa}; it divides the gradient.")
    return np.minimum(np.asarray(g, dtype=float) / kappa, 1.0)


@symbol(r"g\,\min(1, c/\lVert g\rVert_2)", "gradient clipping by norm")
def global_norm_clip(g: np.ndarray, max_norm: float) -> np.ndarray:
    r"""Clipping by norm: :math:`g \min(1, c/\lVert g\rVert_2)`, :math:`c` = ``max_norm`` > 0.

    The usual meaning of "gradient clipping" (Pascanu et al. 2013; what
    ``torch.nn.utils.clip_grad_norm_`` does): the whole gradient is rescaled,
    only if its norm exceeds :math:`c`, so its direction never changes. A zero
    gradient is returned unchanged.
    """
    c = _real(max_norm, "max_norm")
    if not c > 0:
        raise ValueError(f"max_norm must be > 0, got {c}.")
    g = np.asarray(g, dtype=float)
    norm = float(np.sqrt(np.sum(np.square(g))))
    return g if norm <= c else g * (c / norm)


@symbol(r"\max(-c, \min(g, c))", "gradient clipping by value, element-wise")
def value_clip(g: np.ndarray, clip_value: float) -> np.ndarray:
    r"""Clipping by value: every entry is clamped to :math:`[-c, c]`, :math:`c` = ``clip_value`` > 0.

    What ``torch.nn.utils.clip_grad_value_`` does. It is odd (treats signs
    alike) and leaves entries with :math:`|g_i| \le c` unchanged, but like any
    element-wise clip it can change the direction of :math:`g`.
    """
    c = _real(clip_value, "clip_value")
    if not c > 0:
        raise ValueError(f"clip_value must be > 0, got {c}.")
    return np.clip(np.asarray(g, dtype=float), -c, c)


@symbol(r"\cos\angle(a, b)", "cosine of the angle between two arrays")
def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    r""":math:`\langle a, b\rangle / (\lVert a\rVert_2 \lVert b\rVert_2)`, entries flattened; 1 means same direction."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a has {a.size} entries but b has {b.size}; they must match.")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("cosine_similarity is undefined for a zero array.")
    return float(a @ b / (na * nb))


# --- the article's code, as a rule -----------------------------------------------------


@symbol(r"\eta\,\mathrm{RMS}(X_{t-1})", "step size of seed 003's code: no epsilon-2 floor, no decay")
def unfloored_step_size(x_prev: np.ndarray, lr: float) -> float:
    r""":math:`\eta\,\mathrm{RMS}(X_{t-1})`: the paper's :math:`\alpha_t` without :math:`\max(\epsilon_2,\cdot)`
    and with a constant :math:`\eta` in place of :math:`\rho_t`. It is exactly 0 when :math:`X_{t-1} = 0`.
    """
    return _real(lr, "lr") * af.rms(x_prev)


@symbol(r"G_t / (\sqrt{\hat V_t} + \epsilon)", "normalised update with epsilon outside the root")
def epsilon_shifted_update(g: np.ndarray, v_hat: np.ndarray, eps: float) -> np.ndarray:
    r""":math:`U_t = G_t/(\sqrt{\hat V_t} + \epsilon)` element-wise (the article's code adds :math:`\epsilon`
    both to :math:`G^2` and here)."""
    eps = _real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}.")
    g = np.asarray(g, dtype=float)
    v_hat = np.asarray(v_hat, dtype=float)
    if np.broadcast_shapes(g.shape, v_hat.shape) != g.shape:
        raise ValueError(f"v_hat has shape {v_hat.shape}, which does not broadcast to g's shape {g.shape}.")
    return g / (np.sqrt(v_hat) + eps)


@symbol(r"|S^{(003)}|", "numbers of second-moment state seed 003's code keeps for one tensor")
def article_code_state_numbers(shape: tuple[int, ...]) -> int:
    r"""Row plus column statistics, :math:`n + m`, for a tensor with exactly two axes; the full
    :math:`\prod_k s_k` for any other rank (the article's code does not factor rank :math:`\ge 3`).
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}.")
    if len(shape) == 2:
        return shape[0] + shape[1]
    return int(np.prod(shape, dtype=np.int64))


@symbol(r"\alpha_t/\sqrt{\hat V_t}", "effective per-entry step size of an adaptive method")
def effective_step_sizes(alpha: float, v_hat: np.ndarray, eps: float = 0.0) -> np.ndarray:
    r"""The multiplier of each gradient entry, :math:`\alpha_t/(\sqrt{\hat V_t}+\epsilon)`.

    This, not the scalar :math:`\alpha_t`, is where an adaptive method's
    per-parameter learning rates live. For Adafactor's factored :math:`\hat V_t`
    it is an outer product (rank one): :math:`nm` rates from :math:`n+m` numbers.
    """
    v_hat = np.asarray(v_hat, dtype=float)
    if np.any(v_hat < 0):
        raise ValueError("v_hat must be non-negative: it estimates a mean of squares.")
    return _real(alpha, "alpha") / (np.sqrt(v_hat) + _real(eps, "eps"))


# --- the lecture's slide ----------------------------------------------------------------


@symbol(
    r"\hat v_{ij} = v^{(r)}_i v^{(c)}_j / \textstyle\sum_j v^{(c)}_j",
    "the lecture slide's factored estimate, normalised by the column statistics",
)
def lecture_factored_second_moment(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r""":math:`\hat v_{ij} = v^{(r)}_i v^{(c)}_j / \sum_j v^{(c)}_j`, over the last axis of each input.

    The paper's :func:`~optbook.reference.adafactor.factored_second_moment`
    divides by :math:`\sum_i v^{(r)}_i`. The ratio of the two estimates is
    :math:`\sum_i v^{(r)}_i / \sum_j v^{(c)}_j`, which is exactly 1 when the
    statistics come from the same gradients: with
    :math:`S_t = \sum_{ij}(g_{ij,t}^2+\epsilon_1)`, both sums obey
    :math:`s_t = \hat\beta_{2t}s_{t-1} + (1-\hat\beta_{2t})S_t` from
    :math:`s_0 = 0`. For unrelated vectors it is not 1.
    """
    r = np.asarray(r, dtype=float)
    c = np.asarray(c, dtype=float)
    total = c.sum(axis=-1, keepdims=True)[..., None]
    return r[..., :, None] * c[..., None, :] / total


@symbol(
    r"\theta_{t-1} - \alpha_t \frac{u_t}{\max(1,\mathrm{RMS}(u_t)/d)}\max(\epsilon_2,\mathrm{RMS}(\theta_{t-1}))",
    "the lecture slide's parameter update",
)
def lecture_update(theta_prev: np.ndarray, u: np.ndarray, alpha: float, eps2: float = 1e-3, d: float = 1.0) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \alpha_t \hat u_t` with
    :math:`\hat u_t = u_t/\max(1, \mathrm{RMS}(u_t)/d)\cdot\max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))`.

    The slide folds the parameter scale into :math:`\hat u_t` and leaves
    :math:`\alpha_t` undefined. With :math:`\alpha_t = \rho_t` it is the paper's
    step; with the paper's :math:`\alpha_t = \max(\epsilon_2,\mathrm{RMS}(\theta_{t-1}))\rho_t`
    the parameter scale would be applied twice.
    """
    theta_prev = np.asarray(theta_prev, dtype=float)
    scale = max(_real(eps2, "eps2"), af.rms(theta_prev))
    return theta_prev - _real(alpha, "alpha") * af.clipped_update(np.asarray(u, dtype=float), d) * scale


# --- our implementation of the rule the article's code describes --------------------------


@dataclass
class FixedDecayState:
    """Step count and statistics of :func:`fixed_decay_adafactor_step` (row/column *sums*, or a full ``v``)."""

    t: int = 0
    r: np.ndarray | None = None
    c: np.ndarray | None = None
    v: np.ndarray | None = None

    def numbers(self) -> int:
        """How many numbers of second-moment state are held."""
        return sum(int(a.size) for a in (self.r, self.c, self.v) if a is not None)


def fixed_decay_adafactor_step(
    x_prev: np.ndarray,
    g: np.ndarray,
    state: FixedDecayState,
    *,
    lr: float = 1e-2,
    beta2: float = 0.999,
    eps: float = 1e-30,
    d: float = 1.0,
    scale_parameter: bool = True,
) -> np.ndarray:
    r"""One step of the rule the article's code describes; updates ``state`` in place.

    Factored statistics only when ``x_prev`` has exactly two axes; the
    constant ``beta2`` in place of :math:`\hat\beta_{2t}`; no bias correction;
    :math:`U_t = G_t/(\sqrt{\hat V_t}+\epsilon)`; update clipping at ``d``;
    step :math:`\eta\,\mathrm{RMS}(X_{t-1})` (or :math:`\eta` if not
    ``scale_parameter``) with no :math:`\epsilon_2` floor. The statistics are
    kept as sums (the reference's functions); the article keeps means, which
    give the same :math:`\hat V_t`. Returns a new array.
    """
    x_prev = np.asarray(x_prev, dtype=float)
    g = np.asarray(g, dtype=float)
    if x_prev.shape != g.shape:
        raise ValueError(f"g has shape {g.shape} but x_prev has shape {x_prev.shape}; they must match.")
    beta2 = _beta(beta2, "beta2")
    if x_prev.ndim == 2:
        state.r = af.row_statistic(state.r, g, beta2, eps)
        state.c = af.column_statistic(state.c, g, beta2, eps)
        v_hat = af.factored_second_moment(state.r, state.c)
    else:
        state.v = af.second_moment_vector(state.v, g, beta2, eps)
        v_hat = state.v
    state.t += 1
    u_hat = af.clipped_update(epsilon_shifted_update(g, v_hat, eps), d)
    step = unfloored_step_size(x_prev, lr) if scale_parameter else _real(lr, "lr")
    return x_prev - step * u_hat


def fixed_decay_adafactor_run(x0: np.ndarray, grad, steps: int, **hyperparameters) -> tuple[np.ndarray, FixedDecayState]:
    """Run :func:`fixed_decay_adafactor_step` ``steps`` times from ``x0`` with gradient function ``grad(x)``."""
    state = FixedDecayState()
    x = np.array(x0, dtype=float, copy=True)
    for _ in range(int(steps)):
        x = fixed_decay_adafactor_step(x, grad(x), state, **hyperparameters)
    return x, state
