r"""Shampoo (Gupta et al. 2018) and SOAP (Vyas et al. 2024), in NumPy.

**Shampoo** keeps, for an :math:`n\times m` matrix, the two Kronecker factors of
a full-matrix AdaGrad preconditioner,

.. math::

    L_t = \epsilon I_n + \sum_{s\le t} G_s G_s^\top, \qquad
    R_t = \epsilon I_m + \sum_{s\le t} G_s^\top G_s, \qquad
    X_t = X_{t-1} - \eta\, L_t^{-1/4} G_t R_t^{-1/4},

:math:`n^2 + m^2` numbers (``pytorch_optimizer.Shampoo`` also stores the two
inverse roots, another :math:`n^2+m^2`). For a tensor of rank :math:`k` every
axis gets a factor and the exponent is :math:`-1/(2k)`. Adafactor's
:math:`R_t` and :math:`C_t` are exactly the *diagonals* of the two factors:
:math:`\operatorname{diag}(G G^\top)_i = \sum_j G_{ij}^2` is a row sum of
:math:`G^2` and :math:`\operatorname{diag}(G^\top G)_j` a column sum.

**SOAP** runs Adam in the eigenbasis of Shampoo's (moving-average) factors:
with :math:`L_t = \beta_s L_{t-1} + (1-\beta_s)G_tG_t^\top`, the same for
:math:`R_t`, and orthogonal :math:`Q_L, Q_R` of their eigenvectors (refreshed
every ``precondition_frequency`` steps by one power iteration and a QR
decomposition),

.. math::

    G'_t = Q_L^\top G_t Q_R,\quad V'_t = \beta_2 V'_{t-1} + (1-\beta_2)G'^2_t,\quad
    X_t = X_{t-1} - \eta_t\, Q_L\frac{Q_L^\top M_t Q_R}{\sqrt{V'_t} + \epsilon}Q_R^\top,

with Adam's momentum :math:`M_t` kept in the original basis. The conventions
follow ``pytorch_optimizer.SOAP``: the first call only builds :math:`L, R` and
:math:`Q`; later steps count from 1 in the bias corrections; decoupled weight
decay after the step; then the factors are updated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_beta, check_betas, check_interval, check_lr, check_nonnegative, params_and_grad

__all__ = ["ShampooState", "init_shampoo_state", "kronecker_factors", "inverse_root", "shampoo_step",
           "SOAPState", "init_soap_state", "eigenbasis", "rotate", "soap_step"]
__helpers__ = ("init_shampoo_state", "shampoo_step", "init_soap_state", "soap_step", "rotate")


@dataclass(frozen=True)
class ShampooState:
    """One statistic per axis (``factors``) and, as upstream stores them, their inverse roots."""

    factors: tuple
    inverse_roots: tuple
    t: int = 0


def init_shampoo_state(x, eps: float = 1e-6) -> ShampooState:
    r""":math:`\epsilon I` for each axis, and zero inverse roots (computed at the first step)."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    factors, roots = [], []
    for n in x.shape:
        f = np.zeros((n, n), dtype)
        f[np.diag_indices(n)] = eps
        factors.append(f)
        roots.append(np.zeros((n, n), dtype))
    return ShampooState(factors=tuple(factors), inverse_roots=tuple(roots))


def _unfold(g, axis):
    return np.moveaxis(g, axis, 0).reshape(g.shape[axis], -1)


@symbol(r"L_t = L_{t-1} + G_t G_t^\top,\; R_t = R_{t-1} + G_t^\top G_t", "Shampoo's Kronecker factors (one per axis)")
def kronecker_factors(factors, g, beta: float | None = None) -> tuple:
    r"""Add :math:`G_{(a)}G_{(a)}^\top` (the axis-:math:`a` unfolding) to every factor; with ``beta`` a moving average."""
    g = np.asarray(g, dtype=float)
    out = []
    for a, f in enumerate(factors):
        if f is None:
            out.append(None)
            continue
        u = _unfold(g, a)
        out.append(f + u @ u.T if beta is None else beta * f + (1 - beta) * (u @ u.T))
    return tuple(out)


@symbol(r"A^{-1/p}", "inverse p-th root of a symmetric positive definite matrix")
def inverse_root(a, p: float) -> np.ndarray:
    r""":math:`A^{-1/p} = U\,\mathrm{diag}(s^{-1/p})\,V^\top` from the SVD (as upstream; equal to the eigen-form for SPD :math:`A`)."""
    u, s, vh = np.linalg.svd(np.asarray(a, dtype=float), full_matrices=False)
    return (u * s ** (-1.0 / p)) @ vh


def shampoo_step(x, g, state: ShampooState | None = None, *, lr: float = 1e-3, eps: float = 1e-6):
    r"""One Shampoo step: :math:`X_t = X_{t-1} - \eta\, L_t^{-1/(2k)} \cdots G_t \cdots R_t^{-1/(2k)}` (``k`` = rank)."""
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    state = init_shampoo_state(x, check_nonnegative(eps, "eps", "pass a small number such as 1e-6.")) \
        if state is None else state
    if len(state.factors) != x.ndim:
        raise ValueError(f"state has {len(state.factors)} factors, x has {x.ndim} axes; use init_shampoo_state(x).")
    factors = kronecker_factors(state.factors, g)
    roots = tuple(inverse_root(f, 2 * x.ndim) for f in factors)
    u = g
    for a, r in enumerate(roots):  # contract axis a with its inverse root
        u = np.moveaxis(np.tensordot(r, u, axes=([1], [a])), 0, a)
    return x - lr * u, ShampooState(factors=factors, inverse_roots=roots, t=state.t + 1)


# ------------------------------------------------------------------------------------------------------- SOAP

@dataclass(frozen=True)
class SOAPState:
    """Adam's ``m`` (original basis) and ``v`` (rotated basis), the factors ``gg`` and their eigenbases ``q``."""

    m: np.ndarray
    v: np.ndarray
    gg: tuple
    q: tuple
    ready: bool = False
    t: int = 0


def init_soap_state(x, max_precondition_dim: int = 10000) -> SOAPState:
    """Zero moments, and per axis of size <= ``max_precondition_dim`` a zero factor and a zero basis
    (filled by the first call); vectors and larger axes get ``None`` (no rotation), as upstream."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    sizes = [None] if x.ndim == 1 else [n if n <= max_precondition_dim else None for n in x.shape]
    gg = tuple(None if n is None else np.zeros((n, n), dtype) for n in sizes)
    q = tuple(None if n is None else np.zeros((n, n), dtype) for n in sizes)
    return SOAPState(m=np.zeros(x.shape, dtype), v=np.zeros(x.shape, dtype), gg=gg, q=q)


@symbol(r"Q", "eigenvectors of a Kronecker factor, largest eigenvalue first")
def eigenbasis(a) -> np.ndarray:
    """Orthonormal eigenvectors of the symmetric matrix ``a``, in decreasing order of eigenvalue."""
    a = np.asarray(a, dtype=float)
    _, q = np.linalg.eigh(a + 1e-30 * np.eye(a.shape[0]))
    return q[:, ::-1]


def rotate(g, qs, backward: bool = False) -> np.ndarray:
    r""":math:`Q_L^\top G Q_R` (``backward=False``) or :math:`Q_L G Q_R^\top` (``backward=True``), axis by axis."""
    out = np.asarray(g, dtype=float)
    for q in qs:  # tensordot over the leading axis, which then moves to the back (None: identity)
        out = np.moveaxis(out, 0, -1) if q is None else np.tensordot(out, q, axes=([0], [1 if backward else 0]))
    return out


def _refresh_basis(gg, qs, v):
    new_q = []
    for axis, (f, q) in enumerate(zip(gg, qs)):
        if f is None:
            new_q.append(None)
            continue
        power = f @ q
        order = np.argsort(-np.sum(q * power, axis=0), kind="stable")
        v = np.take(v, order, axis=axis)
        new_q.append(np.linalg.qr(power[:, order])[0])
    return tuple(new_q), v


def soap_step(x, g, state: SOAPState | None = None, *, lr: float = 3e-3, betas=(0.95, 0.95),
              shampoo_beta: float | None = None, eps: float = 1e-8, weight_decay: float = 1e-2,
              precondition_frequency: int = 10, max_precondition_dim: int = 10000):
    """One SOAP step (``pytorch_optimizer.SOAP`` defaults); the first call only initialises the factors and basis."""
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    b1, b2 = check_betas(betas)
    bs = b2 if shampoo_beta is None else check_beta(shampoo_beta, "shampoo_beta")
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    freq = check_interval(precondition_frequency, "precondition_frequency")
    if state is None:
        state = init_soap_state(x, max_precondition_dim)
    if state.m.shape != x.shape:
        raise ValueError(f"state.m has shape {state.m.shape}, x has {x.shape}; use init_soap_state(x).")
    if not state.ready:  # the first call: statistics and eigenbasis only
        gg = kronecker_factors(state.gg, g, bs)
        q = tuple(None if f is None else eigenbasis(f) for f in gg)
        return x, SOAPState(m=state.m, v=state.v, gg=gg, q=q, ready=True, t=0)
    t = state.t + 1
    g_rot = rotate(g, state.q)
    m = b1 * state.m + (1 - b1) * g
    v = b2 * state.v + (1 - b2) * g_rot * g_rot
    n = rotate(rotate(m, state.q) / (np.sqrt(v) + eps), state.q, backward=True)
    step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
    x = (x - step * n) * (1 - lr * lam)
    gg = kronecker_factors(state.gg, g, bs)
    q = state.q
    if t % freq == 0:
        q, v = _refresh_basis(gg, q, v)
    return x, SOAPState(m=m, v=v, gg=gg, q=q, ready=True, t=t)


shampoo_step.init_state = init_shampoo_state
soap_step.init_state = init_soap_state
