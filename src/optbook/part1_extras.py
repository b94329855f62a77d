r"""Formulas, problems and experiment helpers for Part I, chapters 5 to 8 (Adam to "which optimizer").

The update rules themselves live in :mod:`optbook.reference` (NumPy) and
:mod:`optbook.optim` / ``torch.optim`` (torch). This module adds what those
chapters need beside them.

Adam's relatives
    :func:`adamax_step` (Kingma & Ba's infinity-norm variant, in torch's
    convention :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`) and
    :func:`nadam_step` (Dozat's Nesterov-Adam with torch's momentum schedule
    :func:`nadam_momentum`); :func:`lecture_adam_step`, the lecture's slide
    with :math:`\epsilon` *inside* the root, :math:`\alpha_t m_t/\sqrt{v_t+\epsilon}`;
    :func:`momentum_decoupled_step`, momentum with decoupled weight decay
    (Loshchilov & Hutter's SGDW), the partner of momentum on an L2-penalised
    gradient.

Second-order pieces
    :func:`newton_step`, :math:`\theta - \eta H^{-1} g`; the exact Hessian-vector
    product and Hessian diagonal of multinomial logistic regression
    (:func:`softmax_hvp`, :func:`softmax_hessian_diagonal`), against which the
    Hutchinson and Gauss-Newton-Bartlett estimators are checked; and
    :func:`gauss_newton_diagonal`, the diagonal of
    :math:`\frac1B\sum_b J_b^\top(\operatorname{diag}p_b - p_bp_b^\top)J_b` for any
    classifier whose logit Jacobians are known.

A toy with one sharp and one flat direction
    :func:`sharp_flat_loss`,
    :math:`L(\theta) = 8(\theta_1-1)^2(1.3\theta_1^2+2\theta_1+1) + \tfrac12(\theta_2-4)^2`,
    the shape of the motivating example of the Sophia paper (Liu et al.,
    Figure 2): curvature about 69 along :math:`\theta_1` at the minimum
    :math:`(1, 4)` against 1 along :math:`\theta_2`, and a non-convex
    :math:`\theta_1` with a local maximum at :math:`\theta_1 = 0`, so that
    :math:`(0, 4)` is a saddle point.

Paths on 2-D test functions
    :func:`trace_path` runs any of the book's NumPy rules by name
    (:data:`PATH_RULES`, Adafactor's reference vector algorithm included) and
    :func:`best_path` picks its learning rate from a grid. Measured on the
    paths: :func:`overshoot` (how far a path runs past the minimum along a
    direction), :func:`heading_error` (the angle between the first steps and
    the direction to the minimum), :func:`first_exit`; predicted:
    :func:`momentum_oscillation_lr`, the learning rate above which momentum
    oscillates along a direction of given curvature.

Learning rates
    :func:`linear_scaling_lr`, :func:`sqrt_scaling_lr` (the two batch-size
    rules) and :func:`log_parabola_argmin` (the best learning rate of a grid,
    refined by a parabola in :math:`\log\eta`).

Torch experiments
    :func:`make_optimizer` builds every optimizer of the book by name, and
    :func:`train_run` trains a seeded MLP with it (feeding Sophia its Hessian
    estimates). The bytes of state an optimizer really holds are measured by
    :mod:`optbook.memory`. :func:`logits_function` makes a torch model a function
    of one flat parameter vector, for exact Hessians and Jacobians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from optbook.notation import symbol
from optbook.problems import Problem
from optbook.reference._checks import (
    as_array,
    check_beta,
    check_betas,
    check_lr,
    check_nonnegative,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adam import (
    AdamState,
    bias_correction,
    combined_step_size,
    first_moment,
    init_adam_state,
    second_moment,
)
from optbook.reference.gd import decoupled_weight_decay
from optbook.reference.momentum import MomentumState, init_momentum_state, momentum_update, velocity

__all__ = [
    # Adam's relatives
    "AdamaxState",
    "init_adamax_state",
    "infinity_norm_moment",
    "adamax_update",
    "adamax_step",
    "NadamState",
    "init_nadam_state",
    "nadam_momentum",
    "nadam_update",
    "nadam_step",
    "eps_inside_update",
    "lecture_adam_step",
    "momentum_decoupled_step",
    # second order
    "NewtonState",
    "init_newton_state",
    "newton_direction",
    "newton_step",
    "softmax_hvp",
    "softmax_hessian_diagonal",
    "gauss_newton_diagonal",
    "relative_error",
    # the sharp/flat toy
    "sharp_flat_loss",
    "sharp_flat_grad",
    "sharp_flat_hessian_diagonal",
    "sharp_flat_problem",
    # paths
    "momentum_oscillation_lr",
    "overshoot",
    "heading_error",
    "first_exit",
    "PATH_RULES",
    "trace_path",
    "best_path",
    # learning rates
    "linear_scaling_lr",
    "sqrt_scaling_lr",
    "log_parabola_argmin",
    # torch experiments
    "OPTIMIZER_NAMES",
    "make_optimizer",
    "train_run",
    "logits_function",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "init_adamax_state",
    "adamax_step",
    "init_nadam_state",
    "nadam_step",
    "lecture_adam_step",
    "momentum_decoupled_step",
    "newton_step",
    "init_newton_state",
    "sharp_flat_problem",
    "first_exit",
    "trace_path",
    "best_path",
    "make_optimizer",
    "train_run",
    "logits_function",
)

_EPS_HINT = "pass a small positive number such as 1e-8."


def _check_t(t) -> int:
    if isinstance(t, bool) or int(t) != t or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    return int(t)


# --- AdaMax ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdamaxState:
    r"""First moment :math:`m_t`, exponentially weighted infinity norm :math:`u_t`, step count ``t``."""

    m: np.ndarray
    u: np.ndarray
    t: int = 0


def init_adamax_state(x: np.ndarray) -> AdamaxState:
    """:math:`m_0 = u_0 = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return AdamaxState(m=zeros, u=zeros.copy())


@symbol(r"u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)", "AdaMax's exponentially weighted infinity norm")
def infinity_norm_moment(u_prev: np.ndarray, g: np.ndarray, beta2: float, eps: float) -> np.ndarray:
    r""":math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`.

    Kingma & Ba obtain it as the limit :math:`p \to \infty` of an Adam whose second
    moment is a :math:`p`-th moment: :math:`\big((1-\beta_2^p)\sum_i \beta_2^{p(t-i)}|g_i|^p\big)^{1/p}
    \to \max_i \beta_2^{t-i}|g_i|`. The paper has no :math:`\epsilon`; torch adds it
    inside the max, which keeps :math:`u_t > 0`. It needs no bias correction.
    """
    u_prev, g = as_array(u_prev, "u_prev"), as_array(g, "g")
    check_same_shape(u_prev, g, "g", "u_prev")
    eps = check_nonnegative(eps, "eps", _EPS_HINT)
    return np.maximum(check_beta(beta2, "beta2") * u_prev, np.abs(g) + eps)


@symbol(r"\theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\, m_t / u_t", "AdaMax's step")
def adamax_update(x: np.ndarray, m: np.ndarray, u: np.ndarray, lr: float, beta1: float, t: int) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \eta\, \hat m_t / u_t` with :math:`\hat m_t = m_t/(1-\beta_1^t)`."""
    x, m, u = as_array(x, "x"), as_array(m, "m"), as_array(u, "u")
    check_same_shape(x, m, "m")
    check_same_shape(x, u, "u")
    return x - check_lr(lr) * bias_correction(m, beta1, _check_t(t)) / u


def adamax_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamaxState | None = None,
    *,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[np.ndarray, AdamaxState]:
    r"""One AdaMax step (``torch.optim.Adamax``'s defaults and :math:`\epsilon` convention)."""
    x, g = params_and_grad(x, g)
    state = init_adamax_state(x) if state is None else state
    check_state_arrays(x, m=state.m, u=state.u)
    b1, b2 = check_betas(betas)
    m = first_moment(state.m, g, b1)
    u = infinity_norm_moment(state.u, g, b2, eps)
    t = state.t + 1
    return adamax_update(x, m, u, lr, b1, t), AdamaxState(m=m, u=u, t=t)


adamax_step.init_state = init_adamax_state


# --- Nadam -----------------------------------------------------------------------------


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
    return b1 * (1.0 - 0.5 * 0.96 ** (_check_t(t) * psi))


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
    denom = np.sqrt(v_hat) + check_nonnegative(eps, "eps", _EPS_HINT)
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


# --- Adam as the lecture's slide writes it ----------------------------------------------


@symbol(r"\theta_t = \theta_{t-1} - \alpha_t m_t / \sqrt{v_t + \epsilon}", "Adam's step with epsilon inside the root (the lecture's slide)")
def eps_inside_update(x: np.ndarray, m: np.ndarray, v: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \alpha_t\, m_t / \sqrt{v_t + \epsilon}` on the uncorrected moments."""
    x, m, v = as_array(x, "x"), as_array(m, "m"), as_array(v, "v")
    check_same_shape(x, m, "m")
    check_same_shape(x, v, "v")
    return x - alpha * m / np.sqrt(v + check_nonnegative(eps, "eps", _EPS_HINT))


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


# --- Newton's method -------------------------------------------------------------------


@dataclass(frozen=True)
class NewtonState:
    """Newton's method keeps nothing between steps but the step count ``t``."""

    t: int = 0


@symbol(r"H^{-1} g", "Newton direction: the gradient divided by the curvature")
def newton_direction(hessian: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`H^{-1}g`. ``hessian`` is the full matrix (shape ``(n, n)`` for ``g`` of size
    :math:`n`) or, for a separable loss, its diagonal (the shape of ``g``)."""
    H, g = as_array(hessian, "hessian"), as_array(g, "g")
    if H.shape == g.shape:
        return g / H
    n = g.size
    if H.shape != (n, n):
        raise ValueError(f"hessian must have shape {(n, n)} or the shape of g {g.shape}, got {H.shape}.")
    return np.linalg.solve(H, g.ravel()).reshape(g.shape)


def newton_step(
    x: np.ndarray, g: np.ndarray, state: NewtonState | None = None, *, hessian_fn: Callable, lr: float = 1.0
) -> tuple[np.ndarray, NewtonState]:
    r"""One (damped) Newton step :math:`\theta_t = \theta_{t-1} - \eta H(\theta_{t-1})^{-1} g_t`.

    ``hessian_fn(x)`` returns the Hessian at ``x`` (matrix or, if separable, diagonal).
    Newton's method looks for a zero of the gradient: it is attracted by maxima and
    saddle points as much as by minima.
    """
    x, g = params_and_grad(x, g)
    state = NewtonState() if state is None else state
    return x - check_lr(lr) * newton_direction(hessian_fn(x), g), NewtonState(t=state.t + 1)


def init_newton_state(x: np.ndarray) -> NewtonState:
    """Newton's method starts with ``t = 0`` and nothing else."""
    return NewtonState()


newton_step.init_state = init_newton_state


# --- exact curvature of multinomial logistic regression ---------------------------------


def _softmax_rows(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w[:-1] + w[-1]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@symbol(r"\nabla^2\ell(W)\,V", "exact Hessian-vector product of the multinomial logistic loss")
def softmax_hvp(w: np.ndarray, x: np.ndarray, v: np.ndarray, l2: float = 0.0) -> np.ndarray:
    r"""Exact :math:`\nabla^2\ell(W)\,V` for :func:`optbook.tasks.softmax_cross_entropy` (``w``, ``v`` of shape ``(d+1, k)``).

    With logits :math:`Z = \tilde XW` (:math:`\tilde X` the inputs with a column of
    ones for the bias row), probabilities :math:`P` and the directional change of
    the logits :math:`\dot Z = \tilde XV`, the probabilities change by
    :math:`\dot P = P\odot\dot Z - P\odot\big((P\odot\dot Z)1\big)`, and
    :math:`\nabla^2\ell\,V = \tilde X^\top\dot P/N + \lambda V` (no penalty on the bias row).
    """
    w, x, v = as_array(w, "w"), as_array(x, "x"), as_array(v, "v")
    check_same_shape(w, v, "v", "w")
    p = _softmax_rows(w, x)
    dz = x @ v[:-1] + v[-1]
    pdz = p * dz
    dp = pdz - p * pdz.sum(axis=1, keepdims=True)
    out = np.empty_like(w)
    out[:-1] = x.T @ dp / len(x) + l2 * v[:-1]
    out[-1] = dp.sum(axis=0) / len(x)
    return out


@symbol(
    r"\operatorname{diag}\nabla^2\ell(W)_{jc} = \tfrac1N\sum_i \tilde x_{ij}^2\, p_{ic}(1-p_{ic})",
    "exact Hessian diagonal of the multinomial logistic loss",
)
def softmax_hessian_diagonal(w: np.ndarray, x: np.ndarray, l2: float = 0.0) -> np.ndarray:
    r"""Exact diagonal of the Hessian of :func:`optbook.tasks.softmax_cross_entropy`, shape ``(d+1, k)``.

    The Hessian is :math:`\frac1N\sum_i (\tilde x_i\tilde x_i^\top)\otimes(\operatorname{diag}p_i - p_ip_i^\top)`;
    its diagonal entry for feature :math:`j` and class :math:`c` is
    :math:`\frac1N\sum_i\tilde x_{ij}^2\,p_{ic}(1-p_{ic})` (plus :math:`\lambda` off the bias row).
    The model is linear in :math:`W`, so this is also the Gauss-Newton diagonal.
    """
    w, x = as_array(w, "w"), as_array(x, "x")
    p = _softmax_rows(w, x)
    q = p * (1.0 - p)
    out = np.empty_like(w)
    out[:-1] = (x * x).T @ q / len(x) + l2
    out[-1] = q.sum(axis=0) / len(x)
    return out


@symbol(
    r"\operatorname{diag}\Big(\tfrac1B\sum_b J_b^\top(\operatorname{diag}p_b - p_bp_b^\top)J_b\Big)",
    "Gauss-Newton diagonal of the cross-entropy of a classifier",
)
def gauss_newton_diagonal(jacobian: np.ndarray, probs: np.ndarray) -> np.ndarray:
    r"""Diagonal of the Gauss-Newton matrix from the logit Jacobians ``(B, C, P)`` and probabilities ``(B, C)``.

    Entry :math:`i` is :math:`\frac1B\sum_b\big(\sum_c p_{bc}J_{bci}^2 - (\sum_c p_{bc}J_{bci})^2\big)`,
    a variance of :math:`J_{b\cdot i}` under :math:`p_b`, hence never negative. It is what the
    Gauss-Newton-Bartlett estimator estimates without bias; it equals the Hessian
    diagonal only when the logits are linear in the parameters.
    """
    J, p = as_array(jacobian, "jacobian"), as_array(probs, "probs")
    if J.ndim != 3 or p.shape != J.shape[:2]:
        raise ValueError(f"need jacobian of shape (B, C, P) and probs of shape (B, C), got {J.shape} and {p.shape}.")
    mean = np.einsum("bc,bci->bi", p, J)
    second = np.einsum("bc,bci->bi", p, J * J)
    return (second - mean * mean).mean(axis=0)


@symbol(r"\lVert \hat h - h\rVert / \lVert h\rVert", "relative error of an estimate")
def relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    r""":math:`\lVert\hat h - h\rVert_2/\lVert h\rVert_2` over all entries."""
    estimate, exact = as_array(estimate, "estimate"), as_array(exact, "exact")
    check_same_shape(exact, estimate, "estimate", "exact")
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


# --- one sharp and one flat direction -----------------------------------------------------

SHARP_FLAT_MINIMIZER = np.array([1.0, 4.0])
SHARP_FLAT_SADDLE = np.array([0.0, 4.0])


def _theta(theta):
    t = np.asarray(theta, dtype=float)
    return t[..., 0], t[..., 1]


@symbol(
    r"L(\theta) = 8(\theta_1-1)^2(1.3\theta_1^2+2\theta_1+1) + \tfrac12(\theta_2-4)^2",
    "toy loss with a sharp direction theta_1 and a flat direction theta_2",
)
def sharp_flat_loss(theta: np.ndarray) -> np.ndarray:
    r""":math:`L(\theta) = 8(\theta_1-1)^2(1.3\theta_1^2+2\theta_1+1) + \tfrac12(\theta_2-4)^2`; accepts shape ``(..., 2)``.

    Global minimum :math:`0` at :math:`(1, 4)`; along :math:`\theta_1` also a local
    minimum near :math:`-0.654` and a local maximum at :math:`0`, so :math:`(0, 4)` is a saddle.
    """
    a, b = _theta(theta)
    return 8.0 * (a - 1.0) ** 2 * (1.3 * a**2 + 2.0 * a + 1.0) + 0.5 * (b - 4.0) ** 2


@symbol(r"\nabla L(\theta) = \big(8\theta_1(\theta_1-1)(5.2\theta_1+3.4),\ \theta_2-4\big)", "gradient of the sharp/flat toy")
def sharp_flat_grad(theta: np.ndarray) -> np.ndarray:
    r""":math:`\partial_1 L = 8\theta_1(\theta_1-1)(5.2\theta_1+3.4)`, :math:`\partial_2 L = \theta_2 - 4`."""
    a, b = _theta(theta)
    return np.stack([8.0 * a * (a - 1.0) * (5.2 * a + 3.4), b - 4.0], axis=-1)


@symbol(r"\operatorname{diag}\nabla^2 L(\theta) = \big(8(15.6\theta_1^2 - 3.6\theta_1 - 3.4),\ 1\big)", "Hessian of the sharp/flat toy (diagonal: the loss is separable)")
def sharp_flat_hessian_diagonal(theta: np.ndarray) -> np.ndarray:
    r"""The Hessian is diagonal: :math:`\partial_1^2 L = 8(15.6\theta_1^2 - 3.6\theta_1 - 3.4)`, :math:`\partial_2^2 L = 1`.

    :math:`\partial_1^2 L` is :math:`68.8` at the minimum and negative for
    :math:`\theta_1 \in (-0.365, 0.596)`.
    """
    a, b = _theta(theta)
    return np.stack([8.0 * (15.6 * a**2 - 3.6 * a - 3.4), np.ones_like(b)], axis=-1)


def sharp_flat_problem(x0=(-0.2, 0.5)) -> Problem:
    """The toy as a :class:`optbook.problems.Problem`, minimiser :math:`(1, 4)`."""
    return Problem("sharp/flat toy", sharp_flat_loss, sharp_flat_grad, np.array(x0, dtype=float), SHARP_FLAT_MINIMIZER.copy())


# --- measuring paths ---------------------------------------------------------------------


@symbol(
    r"\eta\lambda > (1-\sqrt\gamma)^2",
    "momentum oscillates along a direction of curvature lambda beyond this learning rate",
)
def momentum_oscillation_lr(curvature: float | np.ndarray, momentum: float) -> float | np.ndarray:
    r"""The learning rate :math:`(1-\sqrt\gamma)^2/\lambda` above which momentum oscillates along a direction of curvature :math:`\lambda`.

    On :math:`\frac\lambda2\theta^2`, momentum (:math:`v_t = \gamma v_{t-1} + \eta\lambda\theta_{t-1}`,
    :math:`\theta_t = \theta_{t-1} - v_t`) obeys :math:`\theta_t = (1+\gamma-\eta\lambda)\theta_{t-1} - \gamma\theta_{t-2}`,
    whose characteristic roots :math:`z^2 - (1+\gamma-\eta\lambda)z + \gamma = 0` are complex (the iterate
    spirals and overshoots) exactly when :math:`(1-\sqrt\gamma)^2 < \eta\lambda < (1+\sqrt\gamma)^2`. Below the
    threshold both roots are real and positive: the approach is monotone, like gradient descent's.
    """
    gamma = check_beta(momentum, "momentum")
    lam = np.asarray(curvature, dtype=float)
    if np.any(lam <= 0):
        raise ValueError("curvature must be > 0 (a direction with positive curvature).")
    out = (1.0 - np.sqrt(gamma)) ** 2 / lam
    return float(out) if out.ndim == 0 else out



@symbol(
    r"\max\big(0, \max_t (\theta_t - \theta^\star)^\top d\big),\ d = \frac{\theta^\star-\theta_0}{\lVert\theta^\star-\theta_0\rVert}",
    "overshoot: how far a path runs past the minimum along its approach direction",
)
def overshoot(path: np.ndarray, minimizer: np.ndarray, direction: np.ndarray | None = None) -> float:
    r"""How far past :math:`\theta^\star` the path ever gets along ``direction``.

    ``direction`` defaults to the unit vector from the start ``path[0]`` to the
    minimum. Zero means the path never crossed the plane through :math:`\theta^\star`
    perpendicular to it.
    """
    path, minimizer = as_array(path, "path"), as_array(minimizer, "minimizer")
    d = minimizer - path[0] if direction is None else as_array(direction, "direction")
    d = d / np.linalg.norm(d)
    return float(max(0.0, np.max((path - minimizer) @ d)))


@symbol(
    r"\angle\big(\theta_k - \theta_0,\ \theta^\star - \theta_0\big)",
    "heading error: angle between the first k steps and the direction to the minimum",
)
def heading_error(path: np.ndarray, minimizer: np.ndarray, k: int) -> float:
    r"""Angle in degrees between the displacement after ``k`` steps and the straight line to the minimum."""
    path, minimizer = as_array(path, "path"), as_array(minimizer, "minimizer")
    a, b = path[k] - path[0], minimizer - path[0]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def first_exit(path: np.ndarray, threshold: float, axis: int = 1) -> int | None:
    """First step ``t`` with ``|path[t, axis]| > threshold``, or ``None`` if the path never gets there."""
    path = as_array(path, "path")
    hits = np.nonzero(np.abs(path[:, axis]) > threshold)[0]
    return int(hits[0]) if hits.size else None


PATH_RULES = ("GD", "momentum", "NAG", "Adagrad", "RMSProp", "AdaDelta", "Adam", "AdamW", "Lion", "Sophia", "Adafactor")


def trace_path(name: str, problem: Problem, lr: float, steps: int, *, seed: int = 0) -> np.ndarray:
    r"""The iterates ``(steps + 1, *x0.shape)`` of the NumPy reference rule ``name`` on ``problem``, from ``problem.x0``.

    ``name`` is one of :data:`PATH_RULES`. ``lr`` is the learning rate, except for
    AdaDelta, which has none (``lr`` is its :math:`\epsilon`, which sets the size of
    its first steps), and Adafactor, where it is the cap :math:`\rho` of the relative
    step size :math:`\rho_t = \min(\rho, 1/\sqrt t)` (the reference vector algorithm,
    :func:`optbook.reference.adafactor.run`). Momentum and NAG use :math:`\gamma = 0.9`;
    AdamW keeps its default decoupled decay :math:`10^{-2}`; Lion, Sophia and the rest use
    their defaults, with no weight decay for Sophia, whose Hessian diagonal comes from one
    Rademacher Hutchinson probe of finite-difference Hessian-vector products every
    :math:`k = 10` steps (probes drawn from ``seed``).
    """
    from optbook.reference import adafactor as af
    from optbook.reference import (
        adadelta_step,
        adagrad_step,
        adam_step,
        adamw_step,
        finite_difference_hvp,
        hutchinson_diagonal,
        lion_step,
        momentum_step,
        nesterov_step,
        rmsprop_step,
        run,
        sgd_step,
        sophia_step,
    )

    x0, grad = problem.x0, problem.grad
    simple = {
        "GD": (sgd_step, {}),
        "momentum": (momentum_step, {"momentum": 0.9}),
        "NAG": (nesterov_step, {"momentum": 0.9}),
        "Adagrad": (adagrad_step, {}),
        "RMSProp": (rmsprop_step, {}),
        "Adam": (adam_step, {}),
        "AdamW": (adamw_step, {}),
        "Lion": (lion_step, {}),
    }
    if name in simple:
        step_fn, kw = simple[name]
        return run(step_fn, x0, grad, steps, lr=lr, **kw).xs
    if name == "AdaDelta":
        return run(adadelta_step, x0, grad, steps, eps=lr).xs
    if name == "Sophia":
        rng = np.random.default_rng(seed)
        hvp = finite_difference_hvp(grad)
        return run(sophia_step, x0, grad, steps, lr=lr, weight_decay=0.0,
                   h_hat=lambda x: hutchinson_diagonal(hvp, x, rng)).xs
    if name == "Adafactor":
        _, state = af.run(x0, grad, steps, af.AdafactorHyperparameters(rho_cap=lr), record=True)
        return np.concatenate([np.asarray(x0, dtype=float)[None], np.stack([h["X"] for h in state.history])])
    raise ValueError(f"unknown rule {name!r}; choose one of {PATH_RULES}.")


def best_path(name: str, problem: Problem, lrs: Sequence[float], steps: int, *, seed: int = 0):
    """``(lr, path)`` for the learning rate in ``lrs`` whose path ends with the lowest loss.

    A path that overflows or ends with a non-finite loss counts as worse than any finite one.
    """
    best = (np.inf, None, None)
    for lr in lrs:
        with np.errstate(over="ignore", invalid="ignore"):
            xs = trace_path(name, problem, float(lr), steps, seed=seed)
            final = float(problem.loss(xs[-1])) if np.all(np.isfinite(xs)) else np.inf
        if not np.isfinite(final):
            final = np.inf
        if best[1] is None or final < best[0]:
            best = (final, float(lr), xs)
    return best[1], best[2]


# --- learning rate and batch size ----------------------------------------------------------


@symbol(r"\eta(b) = \eta_0\, b / b_0", "linear scaling rule (Goyal et al.)")
def linear_scaling_lr(lr0: float, b0: int, b: int | np.ndarray) -> float | np.ndarray:
    r""":math:`\eta(b) = \eta_0\,b/b_0`: keep the step per example seen fixed."""
    return check_lr(lr0, "lr0") * np.asarray(b, dtype=float) / float(b0)


@symbol(r"\eta(b) = \eta_0 \sqrt{b / b_0}", "square-root scaling rule (Hoffer et al.)")
def sqrt_scaling_lr(lr0: float, b0: int, b: int | np.ndarray) -> float | np.ndarray:
    r""":math:`\eta(b) = \eta_0\sqrt{b/b_0}`: keep the variance of the update per example seen fixed."""
    return check_lr(lr0, "lr0") * np.sqrt(np.asarray(b, dtype=float) / float(b0))


@symbol(
    r"\eta^\star = \exp\big(\operatorname{argmin}\ \text{parabola through } (\log\eta_i, L_i)\big)",
    "best learning rate of a grid, refined by a parabola in log eta",
)
def log_parabola_argmin(lrs: Sequence[float], losses: Sequence[float]) -> float:
    r"""The grid's best learning rate, refined by the vertex of the parabola through it and its neighbours.

    With the best grid point at an end of the grid, or a parabola that is not
    convex, the grid point itself is returned. Non-finite losses (divergence)
    count as worse than any finite one. The vertex is kept within the two neighbours.
    """
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if lrs.shape != losses.shape or lrs.ndim != 1 or len(lrs) < 1:
        raise ValueError("lrs and losses must be 1-D sequences of the same length.")
    order = np.argsort(lrs)
    lrs, losses = lrs[order], np.where(np.isfinite(losses[order]), losses[order], np.inf)
    i = int(np.argmin(losses))
    if i == 0 or i == len(lrs) - 1 or not np.all(np.isfinite(losses[i - 1 : i + 2])):
        return float(lrs[i])
    xs = np.log(lrs[i - 1 : i + 2])
    a, b, _ = np.polyfit(xs, losses[i - 1 : i + 2], 2)
    if a <= 0:
        return float(lrs[i])
    return float(np.exp(np.clip(-b / (2 * a), xs[0], xs[2])))


# --- torch experiments ----------------------------------------------------------------------

OPTIMIZER_NAMES = (
    "SGD",
    "momentum",
    "Nesterov",
    "Adagrad",
    "RMSProp",
    "AdaDelta",
    "Adam",
    "AdamW",
    "Lion",
    "Sophia",
    "Adafactor",
)


def make_optimizer(name: str, params, lr: float, **overrides) -> torch.optim.Optimizer:
    """Build the book's optimizer ``name`` (one of :data:`OPTIMIZER_NAMES`) with learning rate ``lr``.

    Conventions: "momentum" and "Nesterov" are ``torch.optim.SGD`` with momentum 0.9;
    RMSProp uses the lecture's :math:`\\gamma = 0.9` (torch's ``alpha``); AdamW keeps
    torch's default weight decay 0.01; Lion and Sophia are :class:`optbook.optim.Lion`
    and :class:`optbook.optim.Sophia` without weight decay (Sophia with ``rho=0.04``,
    ``k=10``; its Hessian estimates come from :func:`train_run`); Adafactor is
    :class:`optbook.Adafactor`, whose ``lr`` caps the relative step size.
    ``overrides`` replace any of these keyword arguments.
    """
    from optbook.optim import Adafactor, Lion, Sophia

    params = list(params)
    table = {
        "SGD": (torch.optim.SGD, {}),
        "momentum": (torch.optim.SGD, {"momentum": 0.9}),
        "Nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        "Adagrad": (torch.optim.Adagrad, {}),
        "RMSProp": (torch.optim.RMSprop, {"alpha": 0.9}),
        "AdaDelta": (torch.optim.Adadelta, {}),
        "Adam": (torch.optim.Adam, {}),
        "AdamW": (torch.optim.AdamW, {"weight_decay": 1e-2}),
        "Lion": (Lion, {"weight_decay": 0.0}),
        "Sophia": (Sophia, {"weight_decay": 0.0, "rho": 0.04, "k": 10}),
        "Adafactor": (Adafactor, {}),
    }
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZER_NAMES}.")
    cls, kwargs = table[name]
    return cls(params, lr=lr, **{**kwargs, **overrides})


def train_run(
    name: str,
    lr: float,
    data,
    *,
    hidden: int = 64,
    depth: int = 1,
    epochs: int = 10,
    batch_size: int = 32,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    **overrides,
):
    """Train a seeded :func:`optbook.tasks.mlp` on ``data`` with optimizer ``name``; return its history.

    The model and the shuffling are seeded by ``seed``, so two optimizers see the
    same initial weights and the same batches. For Sophia the Hessian estimate is
    refreshed every ``k`` steps on a fresh batch of ``batch_size`` training examples:
    Gauss-Newton-Bartlett for classification, Hutchinson for regression.
    A run that diverges (parameters or gradients stop being finite) is stopped;
    its history then holds a single ``inf`` train and test loss. Returns :class:`optbook.tasks.TrainingHistory`.

    ``dtype`` (default float32) is the dtype of the weights and the data. The
    initial weights are drawn in float32 and converted, so a float64 run starts
    from the same point. Chapters that print results of a run use float64: there
    the rounding differences between CPU kernels start near 1e-16 instead of 1e-7.
    """
    from optbook import tasks
    from optbook.optim.sophia import gauss_newton_bartlett, hutchinson

    n_out = data.n_classes or 1
    model = tasks.mlp(data.x_train.shape[1], hidden, n_out, depth=depth, seed=seed)
    if dtype is not None:
        model = model.to(dtype)
    params = list(model.parameters())
    optimizer = make_optimizer(name, params, lr, **overrides)
    if name == "Sophia":
        xtr, ytr, _, _ = data.torch(dtype or torch.float32)
        if not data.n_classes:
            ytr = ytr.reshape(-1, 1)
        gen = torch.Generator().manual_seed(seed + 1)

        def estimator():
            idx = torch.randperm(len(xtr), generator=gen)[:batch_size]
            if data.n_classes:
                return gauss_newton_bartlett(model(xtr[idx]), params, generator=gen)
            loss = torch.nn.functional.mse_loss(model(xtr[idx]), ytr[idx])
            return hutchinson(loss, params, generator=gen)

        optimizer.hessian_estimator = estimator

    class _Diverged(Exception):
        pass

    def watch(step):
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise _Diverged

    try:
        return tasks.train_classifier(
            model, optimizer, data, epochs=epochs, batch_size=batch_size, seed=seed, on_step=watch
        )
    except (_Diverged, ValueError) as err:
        # optbook's optimizers refuse a non-finite gradient with a ValueError that says "NaN or inf".
        if isinstance(err, ValueError) and "NaN or inf" not in str(err):
            raise
        history = tasks.TrainingHistory()
        history.train_loss.append(float("inf"))
        history.test_loss.append(float("inf"))
        history.test_accuracy.append(float("nan"))
        return history


def logits_function(model: torch.nn.Module, x) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(theta0, f)``: the model's parameters as one flat tensor, and ``f(theta)``, the logits on ``x``.

    ``f`` evaluates the model with its parameters replaced by the flat vector
    ``theta`` (``torch.func.functional_call``), so ``torch.autograd.functional.hessian``
    and ``jacobian`` can differentiate the loss or the logits with respect to all
    parameters at once. ``theta0`` has the dtype of the model's parameters.
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x = torch.as_tensor(x, dtype=theta0.dtype)

    def f(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, sizes)
        return torch.func.functional_call(model, {n: v.reshape(s) for n, v, s in zip(names, pieces, shapes)}, (x,))

    return theta0, f
