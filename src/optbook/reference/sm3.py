r"""SM3 (Anil et al. 2019), in NumPy: AdaGrad with one accumulator per *cover set*.

AdaGrad keeps, for every entry of the parameters, the sum of its squared
gradients, :math:`\gamma_t(i) = \sum_{s\le t} g_s(i)^2`. SM3 covers the entries
by sets :math:`S_1, \dots, S_k` (every entry in at least one set) and keeps one
number :math:`\mu_t(r)` per set. For an :math:`n\times m` matrix the cover is
its rows and its columns, so the state is :math:`n + m` numbers, as for
Adafactor's :math:`R_t` and :math:`C_t`. Each step (SM3-II, the paper's
Algorithm 2, with :math:`\beta = 0`)

.. math::

    \nu_t(i,j) &= \min\bigl(\mu_{t-1}(\text{row } i), \mu_{t-1}(\text{col } j)\bigr) + G_t(i,j)^2 \\
    \mu_t(\text{row } i) &= \max_j \nu_t(i,j), \qquad \mu_t(\text{col } j) = \max_i \nu_t(i,j) \\
    X_t &= X_{t-1} - \eta\, G_t / \sqrt{\nu_t + \epsilon}

A tensor of rank :math:`k` is covered by its :math:`k` families of axis slices
(one accumulator of shape ``shape[a]`` per axis :math:`a`); a vector's only
cover is its entries, which is AdaGrad itself. With :math:`\beta > 0` the sum
becomes a moving average, :math:`\nu_t = \beta\min(\cdot) + (1-\beta)G_t^2`,
and the accumulators keep the running maximum, as ``pytorch_optimizer.SM3``
does. Momentum (``momentum`` :math:`=\mu_m > 0`) averages the *update*:
:math:`M_t = \mu_m M_{t-1} + (1-\mu_m)\,G_t/\sqrt{\nu_t+\epsilon}`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_beta, check_lr, check_nonnegative, params_and_grad

__all__ = ["SM3State", "init_sm3_state", "sm3_nu", "sm3_cover_maxima", "sm3_step"]
__helpers__ = ("init_sm3_state", "sm3_step")


@dataclass(frozen=True)
class SM3State:
    """One accumulator per axis (shape ``[1, .., n_a, .., 1]``), an optional momentum, the step count."""

    accumulators: tuple
    momentum: np.ndarray | None = None
    t: int = 0


def init_sm3_state(x, *, momentum: float = 0.0) -> SM3State:
    """Zero accumulators, one per axis of ``x`` (a scalar keeps one number); momentum only if ``momentum > 0``."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    k = x.ndim
    if k == 0:
        accs = (np.zeros((), dtype=dtype),)
    else:
        accs = tuple(np.zeros([1] * a + [x.shape[a]] + [1] * (k - 1 - a), dtype=dtype) for a in range(k))
    return SM3State(accumulators=accs, momentum=np.zeros(x.shape, dtype=dtype) if momentum > 0 else None)


@symbol(r"\nu_t(i,j) = \beta\min_r \mu_{t-1}(r) + (1-\beta) G_t(i,j)^2",
        "SM3's per-entry second moment: the smallest accumulator covering the entry, plus G^2")
def sm3_nu(accumulators, g, beta: float = 0.0) -> np.ndarray:
    r""":math:`\nu_t = \beta\,\min_{r \ni (i,j)} \mu_{t-1}(r) + (1-\beta)G_t^2` (``beta=0``: the plain sum of SM3-II)."""
    g = np.asarray(g, dtype=float)
    beta = check_beta(beta, "beta")
    low = accumulators[0]
    for acc in accumulators[1:]:
        low = np.minimum(low, acc)
    low = np.broadcast_to(low, g.shape)
    return (beta * low if beta > 0 else low) + (1.0 - beta) * g * g


@symbol(r"\mu_t(r) = \max_{(i,j) \in S_r} \nu_t(i,j)", "SM3's accumulator of a cover set: the largest nu in the set")
def sm3_cover_maxima(nu, accumulators=None, beta: float = 0.0) -> tuple:
    r""":math:`\mu_t(r) = \max_{(i,j)\in S_r}\nu_t(i,j)` for every axis slice; with ``beta > 0``
    the running maximum :math:`\max(\mu_{t-1}(r), \cdot)`.
    """
    nu = np.asarray(nu, dtype=float)
    if nu.ndim == 0:
        out = (nu.copy(),)
    else:
        out = tuple(nu.max(axis=tuple(b for b in range(nu.ndim) if b != a), keepdims=True) for a in range(nu.ndim))
    if beta > 0 and accumulators is not None:
        out = tuple(np.maximum(a, o) for a, o in zip(accumulators, out))
    return out


def sm3_step(x, g, state: SM3State | None = None, *, lr: float = 0.1, beta: float = 0.0,
             eps: float = 1e-30, momentum: float = 0.0) -> tuple[np.ndarray, SM3State]:
    r"""One SM3 step: :math:`\nu_t`, the new cover maxima, :math:`X_t = X_{t-1} - \eta\,G_t/\sqrt{\nu_t+\epsilon}`.

    Defaults are ``pytorch_optimizer.SM3``'s (``lr=0.1``, ``beta=0``, ``eps=1e-30``, no momentum).
    """
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    eps = check_nonnegative(eps, "eps", "pass a tiny number such as 1e-30.")
    momentum = check_beta(momentum, "momentum")
    state = init_sm3_state(x, momentum=momentum) if state is None else state
    if len(state.accumulators) != max(x.ndim, 1):
        raise ValueError(f"state has {len(state.accumulators)} accumulators but x has {x.ndim} axes; "
                         f"build the state with init_sm3_state(x).")
    nu = sm3_nu(state.accumulators, g, beta)
    accs = sm3_cover_maxima(nu, state.accumulators, beta)
    u = g / np.sqrt(nu + eps)
    m = None
    if momentum > 0:
        m_prev = np.zeros_like(x) if state.momentum is None else state.momentum
        m = momentum * m_prev + (1.0 - momentum) * u
        u = m
    return x - lr * u, SM3State(accumulators=accs, momentum=m, t=state.t + 1)


sm3_step.init_state = init_sm3_state
