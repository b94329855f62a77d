r"""Sophia (Liu et al. 2023, Algorithm 3) and its two Hessian-diagonal estimators, in NumPy.

Sophia divides a momentum by an estimate of the Hessian's diagonal, like a
diagonal Newton step, and clips the ratio so no coordinate moves by more
than :math:`\eta`:

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
    h_t &= \begin{cases} \beta_2 h_{t-k} + (1-\beta_2)\, \hat h_t & \text{if } t \bmod k = 1 \\
                         h_{t-1} & \text{otherwise} \end{cases} \\
    \theta_t &\leftarrow \theta_t - \eta\lambda\theta_t \\
    \theta_{t+1} &= \theta_t - \eta\, \mathrm{clip}\big(m_t / \max(\zeta h_t, \epsilon),\ 1\big)

with :math:`\mathrm{clip}(z, \rho) = \max(\min(z, \rho), -\rho)` per
coordinate and :math:`h_{1-k} = 0`. The estimate :math:`\hat h_t` of
:math:`\operatorname{diag}\nabla^2 L(\theta_t)` is computed only every
:math:`k` steps (:func:`hessian_update_due`; "t mod k = 1" is read as
:math:`(t-1) \bmod k = 0`, so ``k = 1`` means every step). Two estimators:

* Hutchinson: :math:`\hat h = u \odot (\nabla^2 L\, u)` with :math:`u` Rademacher
  or standard normal; unbiased, :func:`hutchinson_diagonal`.
* Gauss-Newton-Bartlett (for a softmax cross-entropy model): sample labels
  :math:`\hat y_b \sim \mathrm{softmax}(f(\theta, x_b))` from the model itself,
  take the gradient :math:`\hat g` of the mean loss on them and return
  :math:`B\,\hat g \odot \hat g`; its expectation is the diagonal of the
  Gauss-Newton matrix, :func:`gnb_diagonal`.

The torch versions of both estimators, which use autograd Hessian-vector
products, are :func:`optbook.optim.sophia.hutchinson` and
:func:`optbook.optim.sophia.gauss_newton_bartlett`.

In the code :math:`\zeta` is ``rho`` (the name of the official code and of
:class:`optbook.optim.Sophia`). The paper's first version wrote the step as
:math:`\eta\,\mathrm{clip}(m/\max(h, \epsilon), \rho)` with a clipping
threshold :math:`\rho`; since
:math:`\mathrm{clip}(z, \rho) = \rho\,\mathrm{clip}(z/\rho, 1)`, that equals this
form with :math:`\zeta = \rho`, learning rate :math:`\eta\rho` and
:math:`\epsilon\rho` in place of :math:`\eta` and :math:`\epsilon`
(:func:`sophia_update` takes the threshold to show it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    as_array,
    check_beta,
    check_betas,
    check_interval,
    check_lr,
    check_nonnegative,
    check_positive,
    check_rho,
    check_same_shape,
    check_state_arrays,
    params_and_grad,
)
from optbook.reference.adaptive import ema
from optbook.reference.gd import decoupled_weight_decay

__all__ = [
    "SophiaState",
    "init_sophia_state",
    "hessian_update_due",
    "hessian_ema",
    "clip",
    "sophia_update",
    "finite_difference_hvp",
    "probe_vector",
    "hutchinson_sample",
    "hutchinson_diagonal",
    "hutchinson_variance",
    "softmax",
    "sample_labels",
    "gnb_estimate",
    "gnb_diagonal",
    "sophia_step",
]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("init_sophia_state", "probe_vector", "sample_labels", "sophia_step")

_DISTRIBUTIONS = ("rademacher", "gaussian")


@dataclass(frozen=True)
class SophiaState:
    """Momentum :math:`m_t`, Hessian-diagonal average :math:`h_t` and step count ``t``."""

    m: np.ndarray
    h: np.ndarray
    t: int = 0


def init_sophia_state(x: np.ndarray) -> SophiaState:
    """:math:`m_0 = 0`, :math:`h_{1-k} = 0`."""
    zeros = np.zeros_like(as_array(x, "x"))
    return SophiaState(m=zeros, h=zeros.copy())


@symbol(r"t \bmod k = 1", "Sophia re-estimates the Hessian diagonal on this step")
def hessian_update_due(t: int, k: int) -> bool:
    r"""Whether step :math:`t` (counted from 1) refreshes :math:`h`: :math:`(t-1) \bmod k = 0`."""
    if int(t) != t or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    return (int(t) - 1) % check_interval(k) == 0


@symbol(r"h_t = \beta_2 h_{t-k} + (1-\beta_2)\hat h_t", "moving average of Hessian-diagonal estimates")
def hessian_ema(h_prev: np.ndarray, h_hat: np.ndarray, beta2: float) -> np.ndarray:
    r""":math:`h_t = \beta_2 h_{t-k} + (1-\beta_2)\hat h_t`; no bias correction, as in the paper."""
    return ema(h_prev, h_hat, check_beta(beta2, "beta2"))


@symbol(r"\mathrm{clip}(z, \rho) = \max(\min(z, \rho), -\rho)", "coordinate-wise clipping to [-rho, rho]")
def clip(z: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    r""":math:`\mathrm{clip}(z, \rho) = \max(\min(z, \rho), -\rho)`, coordinate by coordinate."""
    threshold = check_positive(threshold, "threshold", "the step is clipped to [-threshold, threshold]; use 1.")
    return np.clip(as_array(z, "z"), -threshold, threshold)


@symbol(r"\mathrm{clip}(m_t / \max(\zeta h_t, \epsilon), 1)", "Sophia's clipped pre-conditioned update")
def sophia_update(
    m: np.ndarray, h: np.ndarray, rho: float, eps: float, threshold: float = 1.0
) -> np.ndarray:
    r""":math:`\mathrm{clip}(m_t / \max(\zeta h_t, \epsilon), 1)` with :math:`\zeta` = ``rho``.

    Where :math:`h_t` is negative or tiny (a negative Hutchinson estimate, or
    :math:`h = 0` before the first estimate) the denominator is :math:`\epsilon`,
    the ratio is huge and the clip turns the step into :math:`\pm 1`, a sign step.
    ``threshold`` replaces the 1 (the paper's first version).
    """
    m, h = as_array(m, "m"), as_array(h, "h")
    check_same_shape(m, h, "h", "m")
    rho = check_rho(rho)
    eps = check_positive(eps, "eps", "it keeps max(rho * h, eps) positive; the official code uses 1e-15.")
    return clip(m / np.maximum(rho * h, eps), threshold)


@symbol(
    r"\nabla^2 L\, u \approx \frac{\nabla L(x + \delta u) - \nabla L(x - \delta u)}{2\delta}",
    "Hessian-vector product by central differences of the gradient",
)
def finite_difference_hvp(
    grad_fn: Callable[[np.ndarray], np.ndarray], delta: float = 1e-5
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    r"""A function ``hvp(x, u)`` :math:`\approx \nabla^2 L(x)\,u` from the gradient alone.

    Central differences, :math:`(\nabla L(x + \delta u) - \nabla L(x - \delta u)) / 2\delta`:
    exact (up to rounding) for a quadratic, with an :math:`O(\delta^2)` error otherwise.
    It lets :func:`hutchinson_diagonal` run on any test function that has a
    gradient, e.g. ``h_hat=lambda x: hutchinson_diagonal(finite_difference_hvp(grad), x, rng)``.
    """
    delta = check_positive(delta, "delta", "it is the finite-difference step; 1e-5 suits float64.")

    def hvp(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        x, u = as_array(x, "x"), as_array(u, "u")
        check_same_shape(x, u, "u")
        return (as_array(grad_fn(x + delta * u), "grad") - as_array(grad_fn(x - delta * u), "grad")) / (2 * delta)

    return hvp


def probe_vector(shape: tuple[int, ...], rng: np.random.Generator, distribution: str = "rademacher") -> np.ndarray:
    """A random probe :math:`u` with :math:`E[u u^\\top] = I`: Rademacher (+-1) or standard normal entries."""
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), got {type(rng).__name__}.")
    if distribution == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=shape)
    return rng.standard_normal(shape)


@symbol(r"u \odot (\nabla^2 L\, u)", "one Hutchinson sample of the Hessian diagonal")
def hutchinson_sample(u: np.ndarray, hvp_u: np.ndarray) -> np.ndarray:
    r""":math:`u \odot (\nabla^2 L\,u)`; since :math:`E[u u^\top] = I`, its mean is :math:`\operatorname{diag}\nabla^2 L`."""
    u, hvp_u = as_array(u, "u"), as_array(hvp_u, "hvp_u")
    check_same_shape(u, hvp_u, "hvp_u", "u")
    return u * hvp_u


@symbol(r"\hat h = \frac{1}{S}\sum_{s=1}^S u_s \odot (\nabla^2 L\, u_s)", "Hutchinson estimate of the Hessian diagonal")
def hutchinson_diagonal(
    hvp: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    distribution: str = "rademacher",
    samples: int = 1,
) -> np.ndarray:
    r"""Average of ``samples`` Hutchinson samples at ``x``; ``hvp(x, u)`` returns :math:`\nabla^2 L(x)\,u`.

    Unbiased for :math:`\operatorname{diag}\nabla^2 L(x)`; the variance of one
    sample is :func:`hutchinson_variance`. Sophia's paper uses one sample.
    """
    x = as_array(x, "x")
    samples = check_interval(samples, "samples")
    total = np.zeros_like(x)
    for _ in range(samples):
        u = probe_vector(x.shape, rng, distribution)
        hu = as_array(hvp(x, u), "hvp(x, u)")
        check_same_shape(x, hu, "hvp(x, u)")
        total += hutchinson_sample(u, hu)
    return total / samples


@symbol(r"\operatorname{Var}[u_i (H u)_i]", "variance of one Hutchinson sample, per coordinate")
def hutchinson_variance(hessian: np.ndarray, distribution: str = "rademacher") -> np.ndarray:
    r"""Per-coordinate variance of :math:`u_i (Hu)_i` for a symmetric :math:`H`.

    Rademacher: :math:`\sum_{j\ne i} H_{ij}^2` (the diagonal term :math:`H_{ii}u_i^2`
    is exact because :math:`u_i^2 = 1`). Gaussian: :math:`2H_{ii}^2 + \sum_{j\ne i} H_{ij}^2`.
    A diagonal Hessian is therefore estimated exactly by one Rademacher probe.
    """
    H = as_array(hessian, "hessian")
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"hessian must be a square matrix, got shape {H.shape}.")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    diag_sq = np.diag(H) ** 2
    off = (H**2).sum(axis=1) - diag_sq
    return off if distribution == "rademacher" else off + 2.0 * diag_sq


@symbol(r"\mathrm{softmax}(z)_c = e^{z_c} / \sum_{c'} e^{z_{c'}}", "softmax over the last axis")
def softmax(logits: np.ndarray) -> np.ndarray:
    r""":math:`\mathrm{softmax}(z)_c = e^{z_c}/\sum_{c'} e^{z_{c'}}` along the last axis."""
    z = as_array(logits, "logits")
    # Subtracting the row maximum changes nothing mathematically and avoids overflow.
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample_labels(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One label per row of ``logits`` (shape ``(B, C)``), drawn from :math:`\mathrm{softmax}` of that row."""
    p = softmax(logits)
    if p.ndim != 2:
        raise ValueError(f"logits must have shape (B, C), got {p.shape}.")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), got {type(rng).__name__}.")
    # Inverse-CDF sampling: one uniform per row, so a seeded rng fixes every label.
    u = rng.random((p.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)


@symbol(r"B\, \hat g \odot \hat g", "Gauss-Newton-Bartlett estimate from the gradient on sampled labels")
def gnb_estimate(g_hat: np.ndarray, batch_size: int) -> np.ndarray:
    r""":math:`B\,\hat g \odot \hat g`, where :math:`\hat g` is the gradient of the *mean* loss over
    :math:`B` examples with labels sampled from the model."""
    batch_size = check_interval(batch_size, "batch_size")
    g_hat = as_array(g_hat, "g_hat")
    return batch_size * g_hat * g_hat


@symbol(r"\hat h_{\mathrm{GNB}}", "Gauss-Newton-Bartlett estimate of the Hessian diagonal")
def gnb_diagonal(
    grad_at_labels: Callable[[np.ndarray], np.ndarray], logits: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    r"""Draw :math:`\hat y_b \sim \mathrm{softmax}(f(\theta, x_b))` and return :math:`B\,\hat g\odot\hat g`.

    ``logits`` are the model's outputs :math:`f(\theta, x_b)` on the batch
    (shape ``(B, C)``) and ``grad_at_labels(y)`` returns the gradient with
    respect to :math:`\theta` of the mean cross-entropy on labels ``y``.
    In expectation over :math:`\hat y` this is the diagonal of the
    Gauss-Newton matrix :math:`\frac1B\sum_b J_b^\top(\operatorname{diag}p_b - p_b p_b^\top)J_b`
    (:math:`J_b` the Jacobian of the logits), which for a linear model is the Hessian.
    """
    logits = as_array(logits, "logits")
    y = sample_labels(logits, rng)
    return gnb_estimate(grad_at_labels(y), logits.shape[0])


def sophia_step(
    x: np.ndarray,
    g: np.ndarray,
    state: SophiaState | None = None,
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.965, 0.99),
    rho: float = 0.04,
    eps: float = 1e-15,
    weight_decay: float = 1e-1,
    k: int = 10,
    h_hat: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, SophiaState]:
    r"""One Sophia step (Algorithm 3), :math:`\theta_{t+1} = (1-\eta\lambda)\theta_t - \eta\,\mathrm{clip}(m_t/\max(\zeta h_t,\epsilon), 1)`.

    On steps with :math:`(t-1) \bmod k = 0` the Hessian average is refreshed
    with ``h_hat``: an array, or a function ``x -> estimate`` that is called
    only on those steps (for instance
    ``lambda x: hutchinson_diagonal(hvp, x, rng)``). On other steps ``h_hat``
    is ignored. Defaults follow the official ``SophiaG``.
    """
    x, g = params_and_grad(x, g)
    state = init_sophia_state(x) if state is None else state
    check_state_arrays(x, m=state.m, h=state.h)
    b1, b2 = check_betas(betas)
    check_rho(rho)
    check_positive(eps, "eps", "it keeps max(rho * h, eps) positive; the official code uses 1e-15.")
    check_lr(lr)
    check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    t = state.t + 1
    h = state.h
    if hessian_update_due(t, k):
        if h_hat is None:
            raise ValueError(
                f"step t={t} refreshes the Hessian estimate ((t - 1) mod k = 0 with k={k}); pass h_hat, "
                f"an estimate of diag(Hessian) at x or a function x -> estimate."
            )
        estimate = as_array(h_hat(x) if callable(h_hat) else h_hat, "h_hat")
        check_same_shape(x, estimate, "h_hat")
        h = hessian_ema(h, estimate, b2)
    m = ema(state.m, g, b1)
    x_new = decoupled_weight_decay(x, lr, weight_decay) - lr * sophia_update(m, h, rho, eps)
    return x_new, SophiaState(m=m, h=h, t=t)


sophia_step.init_state = init_sophia_state
