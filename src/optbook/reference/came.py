r"""CAME (Luo et al. 2023), in NumPy: Adafactor with a *confidence-guided* momentum.

CAME starts from Adafactor with momentum. With row and column means
:math:`\bar R_t, \bar C_t` of :math:`G_t^2 + \epsilon_1` (the book's
:math:`R_t/m`, :math:`C_t/n`, :func:`optbook.reference.factored.factored_second_moment_from_means`)

.. math::

    U_t &= G_t / \sqrt{\hat V_t}, \quad \hat U_t = U_t / \max(1, \mathrm{RMS}(U_t)/d) \\
    M_t &= \beta_1 M_{t-1} + (1-\beta_1)\hat U_t

and then, instead of stepping along :math:`M_t`, it measures how far the new
update is from the momentum, the *instability* :math:`(\hat U_t - M_t)^2 + \epsilon_2`,
and keeps its moving average in the same factored form:

.. math::

    \bar R^{S}_t &= \beta_3 \bar R^{S}_{t-1} + (1-\beta_3)\,\mathrm{rowmean}\bigl((\hat U_t - M_t)^2 + \epsilon_2\bigr), \\
    \bar C^{S}_t &= \beta_3 \bar C^{S}_{t-1} + (1-\beta_3)\,\mathrm{colmean}\bigl((\hat U_t - M_t)^2 + \epsilon_2\bigr), \\
    \hat S_t &= \bar R^{S}_t \bar C^{S}_t / \operatorname{mean}(\bar R^{S}_t), \\
    X_t &= X_{t-1} - \eta\, M_t / \sqrt{\hat S_t}.

:math:`\hat S_t` is the *confidence* matrix: where the updates have agreed with
their average, :math:`\hat S_t` is small and the step is large. The decays
:math:`\beta_2` (of :math:`\hat V_t`) and :math:`\beta_3` are constants, there is
no bias correction and no relative step, as in the paper's Algorithm 1 and
``pytorch_optimizer.CAME``. A vector keeps the full :math:`\hat V_t` and steps
along :math:`M_t` (no confidence), as that implementation does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference import adafactor as af
from optbook.reference._checks import check_beta, check_lr, check_nonnegative, params_and_grad
from optbook.reference.factored import factored_second_moment_from_means

__all__ = ["CAMEState", "init_came_state", "came_instability", "came_confidence", "came_step"]
__helpers__ = ("init_came_state", "came_step")


@dataclass(frozen=True)
class CAMEState:
    """Momentum :math:`M`; for a matrix the means of :math:`\\hat V` (``r``, ``c``) and of the instability
    (``rs``, ``cs``); for a vector the full ``v``."""

    m: np.ndarray
    r: np.ndarray | None = None
    c: np.ndarray | None = None
    rs: np.ndarray | None = None
    cs: np.ndarray | None = None
    v: np.ndarray | None = None
    t: int = 0


def init_came_state(x) -> CAMEState:
    """Zeros: a full momentum, and four vectors (``n, m, n, m``) for a matrix or a full ``v`` for a vector."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    z = lambda shape: np.zeros(shape, dtype=dtype)  # noqa: E731
    if x.ndim >= 2:
        rows, cols = x.shape[:-1], x.shape[:-2] + x.shape[-1:]
        return CAMEState(m=z(x.shape), r=z(rows), c=z(cols), rs=z(rows), cs=z(cols))
    return CAMEState(m=z(x.shape), v=z(x.shape))


@symbol(r"(\hat U_t - M_t)^2 + \epsilon_2", "CAME's instability: squared distance of the update from its momentum")
def came_instability(u_hat, m, eps2: float = 1e-16) -> np.ndarray:
    r""":math:`(\hat U_t - M_t)^2 + \epsilon_2`, entry by entry."""
    return np.square(np.asarray(u_hat, dtype=float) - np.asarray(m, dtype=float)) + eps2


@symbol(r"\hat S_t", "CAME's factored confidence matrix (rank-one EMA of the instability)")
def came_confidence(rs_prev, cs_prev, instability, beta3: float):
    r"""New means :math:`\bar R^S_t, \bar C^S_t` of the instability and
    :math:`\hat S_t = \bar R^S_t\bar C^S_t/\operatorname{mean}(\bar R^S_t)`; returns ``(rs, cs, S_hat)``."""
    beta3 = check_beta(beta3, "beta3")
    rs = beta3 * rs_prev + (1 - beta3) * instability.mean(axis=-1)
    cs = beta3 * cs_prev + (1 - beta3) * instability.mean(axis=-2)
    return rs, cs, factored_second_moment_from_means(rs, cs)


def came_step(x, g, state: CAMEState | None = None, *, lr: float = 2e-4,
              betas: tuple[float, float, float] = (0.9, 0.999, 0.9999), d: float = 1.0,
              eps1: float = 1e-30, eps2: float = 1e-16, weight_decay: float = 0.0) -> tuple[np.ndarray, CAMEState]:
    r"""One CAME step (defaults: the paper's and ``pytorch_optimizer.CAME``'s).

    Decoupled weight decay multiplies :math:`X_{t-1}` by :math:`1 - \eta\lambda` first.
    """
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    try:
        b1, b2, b3 = (check_beta(b, f"betas[{k}]") for k, b in enumerate(betas))
    except (TypeError, ValueError) as err:
        if isinstance(err, ValueError) and "betas[" in str(err):
            raise
        raise ValueError(f"betas must be a triple (beta1, beta2, beta3), got {betas!r}.") from None
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    state = init_came_state(x) if state is None else state
    if state.m.shape != x.shape:
        raise ValueError(f"state.m has shape {state.m.shape} but x has shape {x.shape}; use init_came_state(x).")
    x = x * (1.0 - lr * lam)
    g2 = af.regularized_squared_gradient(g, eps1)
    if x.ndim >= 2:
        r = b2 * state.r + (1 - b2) * g2.mean(axis=-1)
        c = b2 * state.c + (1 - b2) * g2.mean(axis=-2)
        v_hat, v = factored_second_moment_from_means(r, c), None
    else:
        v = b2 * state.v + (1 - b2) * g2
        v_hat, r, c = v, None, None
    u_hat = af.clipped_update(af.normalized_update(g, v_hat), d)
    m = b1 * state.m + (1 - b1) * u_hat
    if x.ndim < 2:
        return x - lr * m, CAMEState(m=m, v=v, t=state.t + 1)
    rs, cs, s_hat = came_confidence(state.rs, state.cs, came_instability(u_hat, m, eps2), b3)
    return x - lr * m / np.sqrt(s_hat), CAMEState(m=m, r=r, c=c, rs=rs, cs=cs, t=state.t + 1)


came_step.init_state = init_came_state
