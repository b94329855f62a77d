r"""GaLore (Zhao et al. 2024), in NumPy: Adam on a low-rank projection of the gradient.

For an :math:`n\times m` gradient with :math:`n \ge m`, GaLore takes the top
:math:`r` right singular vectors :math:`P_t \in \mathbb{R}^{r\times m}` of the
gradient every :math:`T` steps (``update_proj_gap``) and runs Adam on the
projected :math:`n\times r` gradient :math:`\tilde G_t = G_t P_t^\top`:

.. math::

    \tilde M_t &= \beta_1 \tilde M_{t-1} + (1-\beta_1)\tilde G_t, \qquad
    \tilde V_t = \beta_2 \tilde V_{t-1} + (1-\beta_2)\tilde G_t^2 \\
    X_t &= X_{t-1} - \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\;\alpha\,\frac{\tilde M_t}{\sqrt{\tilde V_t} + \epsilon}\,P_t

(for :math:`n < m` the left singular vectors, :math:`\tilde G_t = P_t^\top G_t`
with :math:`P_t \in \mathbb{R}^{n\times r}`). The state is :math:`2nr + rm`
numbers instead of :math:`2nm`. Here :math:`\epsilon` is added to
:math:`\sqrt{\tilde V_t}` *before* the bias correction, as in
``pytorch_optimizer.GaLore``; decoupled weight decay :math:`1-\eta\lambda` is
applied *after* the step. Tensors that are not matrices get plain Adam (with
the same conventions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_betas, check_interval, check_lr, check_nonnegative, params_and_grad

__all__ = ["GaLoreState", "init_galore_state", "galore_projector", "galore_project", "galore_step"]
__helpers__ = ("init_galore_state", "galore_step")


@dataclass(frozen=True)
class GaLoreState:
    """Low-rank moments ``m``, ``v`` and the projector ``p`` (``None`` for a tensor that is not projected)."""

    m: np.ndarray
    v: np.ndarray
    p: np.ndarray | None = None
    t: int = 0


def _low_rank_shape(shape, rank):
    n, m = shape
    r = min(rank, n, m)
    return ((n, r), (r, m)) if n >= m else ((r, m), (n, r))  # (moment shape, projector shape)


def init_galore_state(x, rank: int = 128) -> GaLoreState:
    """Zero moments of the projected shape (``n x r`` or ``r x m``) and a zero projector; full-size for non-matrices."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    if x.ndim != 2:
        return GaLoreState(m=np.zeros(x.shape, dtype), v=np.zeros(x.shape, dtype))
    ms, ps = _low_rank_shape(x.shape, check_interval(rank, "rank"))
    return GaLoreState(m=np.zeros(ms, dtype), v=np.zeros(ms, dtype), p=np.zeros(ps, dtype))


@symbol(r"P_t", "GaLore's projector: top-r singular vectors of G_t (right if n >= m, else left)")
def galore_projector(g, rank: int) -> np.ndarray:
    r"""Top-:math:`r` right singular vectors (:math:`r\times m`) if :math:`n\ge m`, else left (:math:`n\times r`)."""
    g = np.asarray(g, dtype=float)
    u, _, vh = np.linalg.svd(g, full_matrices=False)
    return vh[:rank] if g.shape[0] >= g.shape[1] else u[:, :rank]


@symbol(r"\tilde G_t = G_t P_t^\top \;(\text{or } P_t^\top G_t)", "GaLore's projected gradient")
def galore_project(g, p) -> np.ndarray:
    r""":math:`G_tP_t^\top` for a projector of right vectors (:math:`r\times m`), :math:`P_t^\top G_t` for left ones."""
    g, p = np.asarray(g, dtype=float), np.asarray(p, dtype=float)
    return g @ p.T if g.shape[0] >= g.shape[1] else p.T @ g


def galore_step(x, g, state: GaLoreState | None = None, *, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6,
                rank: int = 128, update_proj_gap: int = 50, scale: float = 1.0, weight_decay: float = 0.0):
    """One GaLore step; the projector is recomputed at steps 1 and every multiple of ``update_proj_gap``."""
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    b1, b2 = check_betas(betas)
    rank, gap = check_interval(rank, "rank"), check_interval(update_proj_gap, "update_proj_gap")
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    state = init_galore_state(x, rank) if state is None else state
    t = state.t + 1
    p = state.p
    if x.ndim == 2:
        if t == 1 or t % gap == 0:
            p = galore_projector(g, rank)
        g_low = galore_project(g, p)
    else:
        g_low = g
    if state.m.shape != g_low.shape:
        raise ValueError(f"state moments have shape {state.m.shape}, expected {g_low.shape}; "
                         f"use init_galore_state(x, rank).")
    m = b1 * state.m + (1 - b1) * g_low
    v = b2 * state.v + (1 - b2) * g_low * g_low
    n_low = m / (np.sqrt(v) + eps)
    if x.ndim == 2:
        n_low = scale * (n_low @ p if g.shape[0] >= g.shape[1] else p @ n_low)
    step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
    x = (x - step_size * n_low) * (1 - lr * lam)
    return x, GaLoreState(m=m, v=v, p=p, t=t)


galore_step.init_state = init_galore_state
