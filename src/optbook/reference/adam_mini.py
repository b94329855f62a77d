r"""Adam-mini (Zhang et al. 2024), in NumPy: Adam with one second moment per *block*.

Adam-mini splits a parameter tensor into :math:`B` blocks of equal size
:math:`k` and replaces Adam's per-entry :math:`v_t` by one number per block,
the moving average of the block's *mean* squared gradient:

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
    v_{t,b} &= \beta_2 v_{t-1,b} + (1-\beta_2)\,\tfrac1k \textstyle\sum_{i\in b} g_{t,i}^2 \\
    x_{t,i} &= x_{t-1,i} - \eta\,\frac{m_{t,i}/(1-\beta_1^t)}{\sqrt{v_{t,b(i)}}/\sqrt{1-\beta_2^t} + \epsilon}

so the state is :math:`N + B` numbers instead of Adam's :math:`2N`. Where
Adafactor compresses :math:`v` to a rank-one *matrix* (:math:`n + m` numbers),
Adam-mini compresses it to a *piecewise constant* one; it keeps the full
momentum that Adafactor drops. Decoupled weight decay multiplies by
:math:`1 - \eta\lambda` first. The partition follows
``pytorch_optimizer.AdamMini`` (:func:`blocks_for`): embeddings and the output
layer keep one :math:`v` per entry (Adam), query and key projections one per
head, every other tensor one for the whole tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_betas, check_lr, check_nonnegative, params_and_grad

__all__ = ["AdamMiniState", "init_adam_mini_state", "blocks_for", "block_second_moment", "adam_mini_step"]
__helpers__ = ("init_adam_mini_state", "blocks_for", "adam_mini_step")

EMBED_NAMES = ("embed", "embd", "wte", "wpe", "shared", "lm_head", "output.weight")
QK_NAMES = ("q_proj", "k_proj", "wq.", "wk.", ".q.", ".k.", "query", "key")


@dataclass(frozen=True)
class AdamMiniState:
    """Full momentum ``m`` and one second moment per block ``v`` (length ``B``)."""

    m: np.ndarray
    v: np.ndarray
    t: int = 0


def blocks_for(name: str, shape, heads: int) -> int:
    """Number of blocks :math:`B` for a tensor: its size for embeddings and the output layer, ``heads`` for
    query/key projections (``3 * heads`` for a fused QKV ``c_attn``), otherwise 1."""
    size = int(np.prod(shape, dtype=np.int64))
    if any(k in name for k in EMBED_NAMES):
        return size
    if "c_attn" in name and len(shape) == 2:
        return 3 * heads
    if any(k in name for k in QK_NAMES) and len(shape) == 2:
        return heads
    return 1


def init_adam_mini_state(x, blocks: int = 1) -> AdamMiniState:
    """:math:`m_0 = 0` (full size) and :math:`v_0 = 0` (``blocks`` numbers)."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    if blocks < 1 or x.size % blocks:
        raise ValueError(f"blocks must be >= 1 and divide the tensor's {x.size} entries, got {blocks}.")
    return AdamMiniState(m=np.zeros(x.shape, dtype=dtype), v=np.zeros(blocks, dtype=dtype))


@symbol(r"v_{t,b} = \beta_2 v_{t-1,b} + (1-\beta_2)\,\mathrm{mean}_{i\in b}\, g_{t,i}^2",
        "Adam-mini's second moment of block b")
def block_second_moment(v_prev, g, beta2: float) -> np.ndarray:
    r"""One number per block: the EMA of the block's mean squared gradient (``g`` is split into ``len(v_prev)`` blocks)."""
    g = np.asarray(g, dtype=float).reshape(len(v_prev), -1)
    return beta2 * np.asarray(v_prev, dtype=float) + (1 - beta2) * np.mean(g * g, axis=1)


def adam_mini_step(x, g, state: AdamMiniState | None = None, *, blocks: int = 1, lr: float = 1e-3,
                   betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
    """One Adam-mini step on a tensor split into ``blocks`` equal consecutive blocks (row-major order)."""
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    b1, b2 = check_betas(betas)
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    state = init_adam_mini_state(x, blocks) if state is None else state
    if state.m.shape != x.shape or len(state.v) != blocks:
        raise ValueError(f"state built for shape {state.m.shape} with {len(state.v)} blocks, got x of shape {x.shape} "
                         f"and blocks={blocks}; use init_adam_mini_state(x, blocks).")
    t = state.t + 1
    x = x * (1 - lr * lam)
    m = b1 * state.m + (1 - b1) * g
    v = block_second_moment(state.v, g, b2)
    denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
    step = (m.reshape(blocks, -1) / (denom[:, None] * (1 - b1**t))).reshape(x.shape)
    return x - lr * step, AdamMiniState(m=m, v=v, t=t)


adam_mini_step.init_state = init_adam_mini_state
