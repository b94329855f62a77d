r"""Muon (Jordan et al. 2024), in NumPy: momentum, then an approximate orthogonalisation.

Muon keeps one buffer, the momentum :math:`M_t = \mu M_{t-1} + (1-\mu)G_t`
(``pytorch_optimizer``'s form), and steps along an approximation of the
*polar factor* :math:`\operatorname{polar}(A) = UV^\top` of :math:`A = UΣV^\top`,
with Nesterov's look-ahead :math:`A_t = (1-\mu)G_t + \mu M_t`:

.. math::

    X_t = X_{t-1}(1 - \eta\lambda) - \eta \sqrt{\max(1, n/m)}\; \mathrm{NS}_5(A_t).

:math:`\mathrm{NS}_5` normalises :math:`Y_0 = A/\lVert A\rVert_F` and iterates
:math:`Y_{k+1} = aY_k + (bB_k + cB_k^2)Y_k` with :math:`B_k = Y_kY_k^\top`
five times. Each iteration maps every singular value :math:`\sigma` of
:math:`Y_k` to :math:`p(\sigma) = a\sigma + b\sigma^3 + c\sigma^5` and keeps
the singular vectors. With :math:`(a,b,c) = (3.4445, -4.7750, 2.0315)`,
chosen for a steep slope at 0 rather than convergence, the singular values
end up spread around 1 instead of equal to 1 (:func:`polar_factor` gives the
exact :math:`UV^\top` to compare). The state is :math:`nm` numbers: the
momentum, as SGD with momentum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_beta, check_interval, check_lr, check_nonnegative, params_and_grad

__all__ = ["MuonState", "init_muon_state", "MUON_COEFFICIENTS", "newton_schulz", "polar_factor",
           "muon_lr_scale", "muon_step"]
__helpers__ = ("init_muon_state", "muon_step")

#: Keller Jordan's quintic coefficients (a, b, c).
MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


@dataclass(frozen=True)
class MuonState:
    """The momentum :math:`M_t`."""

    m: np.ndarray
    t: int = 0


def init_muon_state(x) -> MuonState:
    """:math:`M_0 = 0`."""
    x = np.asarray(x)
    return MuonState(m=np.zeros(x.shape, x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64))


@symbol(r"\mathrm{NS}_5(A)", "Muon's quintic Newton-Schulz approximation of the polar factor")
def newton_schulz(a, steps: int = 5, coefficients=MUON_COEFFICIENTS, eps: float = 1e-7) -> np.ndarray:
    r"""``steps`` iterations :math:`Y \leftarrow aY + (bB + cB^2)Y`, :math:`B = YY^\top`, from
    :math:`Y_0 = A/\max(\lVert A\rVert_F, \epsilon)`; a tall matrix is iterated transposed."""
    a_mat = np.asarray(a, dtype=float)
    if a_mat.ndim != 2:
        raise ValueError(f"a must be a matrix, got shape {a_mat.shape}; reshape a tensor to (out, in) first.")
    steps = check_interval(steps, "steps")
    ca, cb, cc = coefficients
    tall = a_mat.shape[0] > a_mat.shape[1]
    y = a_mat.T if tall else a_mat
    y = y / max(np.linalg.norm(y), eps)
    for _ in range(steps):
        b = y @ y.T
        y = ca * y + (cb * b + cc * b @ b) @ y
    return y.T if tall else y


@symbol(r"\operatorname{polar}(A) = UV^\top", "polar factor of A = U Sigma V^T (what NS_5 approximates)")
def polar_factor(a) -> np.ndarray:
    r""":math:`UV^\top` from the thin SVD :math:`A = U\Sigma V^\top`."""
    u, _, vh = np.linalg.svd(np.asarray(a, dtype=float), full_matrices=False)
    return u @ vh


@symbol(r"\sqrt{\max(1, n/m)}", "Muon's learning-rate scale for an n x m (out x in) matrix")
def muon_lr_scale(shape) -> float:
    r""":math:`\sqrt{\max(1, n/m)}` with :math:`n` the first axis and :math:`m` the product of the others."""
    n, m = shape[0], int(np.prod(shape[1:]))
    return math.sqrt(max(1.0, n / m))


def muon_step(x, g, state: MuonState | None = None, *, lr: float = 2e-2, momentum: float = 0.95,
              nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 5, coefficients=MUON_COEFFICIENTS):
    """One Muon step on a tensor of rank >= 2, viewed as ``(shape[0], rest)`` (``pytorch_optimizer.Muon`` defaults)."""
    x, g = params_and_grad(x, g)
    if x.ndim < 2:
        raise ValueError(f"Muon updates matrices; x has shape {x.shape}. Train vectors with AdamW instead.")
    lr = check_lr(lr)
    mu = check_beta(momentum, "momentum")
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    state = init_muon_state(x) if state is None else state
    x = x * (1 - lr * lam)
    m = mu * state.m + (1 - mu) * g
    a = (1 - mu) * g + mu * m if nesterov else m
    o = newton_schulz(a.reshape(x.shape[0], -1), ns_steps, coefficients).reshape(x.shape)
    return x - lr * muon_lr_scale(x.shape) * o, MuonState(m=m, t=state.t + 1)


muon_step.init_state = init_muon_state
