r"""Block-wise 8-bit optimizer states (Dettmers et al. 2022), in NumPy.

An 8-bit state stores each number as one byte: an index into a *codebook*
:math:`\mathcal{Q} = \{q_0 < \dots < q_{255}\} \subset [-1, 1]` (or
:math:`[0, 1]` for a non-negative state), after dividing by the largest
magnitude of its *block* of :math:`B` consecutive entries (:math:`B = 2048`):

.. math::

    a_b = \max_{i\in b}|s_i|, \qquad k_i = \arg\min_k |s_i/a_b - q_k|, \qquad \tilde s_i = a_b\, q_{k_i}.

A block costs :math:`B` bytes plus one float32 :math:`a_b`: 8 bits and
:math:`32/B` more per number, against 32 bits for a float32 state. Rounding to
the nearest code errs by at most half the widest gap between neighbouring
codes, so for every entry

.. math:: |s_i - \tilde s_i| \le \tfrac12\, a_b \max_k (q_{k+1} - q_k)

(:func:`quantisation_error_bound`). Two codebooks are provided: the *linear*
one (:math:`2^8` equally spaced codes) and a *dynamic* one in the spirit of
Dettmers' dynamic tree quantisation (:func:`dynamic_codebook`): after the sign
bit, the number of leading zero bits :math:`e` selects the decade
:math:`10^{-e}`, and the bits after the first one bit place the value linearly
inside :math:`[0.1, 1]\cdot 10^{-e}`, so small numbers keep a *relative*
precision that the linear code loses. :func:`adam8bit_step` is Adam whose
:math:`m` (signed codebook) and :math:`v` (unsigned codebook) live in this
form between steps: dequantise, update in float64, quantise again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import check_betas, check_interval, check_lr, check_nonnegative, params_and_grad

__all__ = ["linear_codebook", "dynamic_codebook", "QuantisedTensor", "quantise", "dequantise",
           "quantisation_error_bound", "Adam8bitState", "init_adam8bit_state", "adam8bit_step"]
__helpers__ = ("linear_codebook", "dynamic_codebook", "quantise", "dequantise", "init_adam8bit_state", "adam8bit_step")

BLOCK = 2048


def linear_codebook(signed: bool = True, bits: int = 8) -> np.ndarray:
    """Equally spaced codes: ``2**bits - 1`` on [-1, 1] (signed, so that 0 is a code) or ``2**bits`` on [0, 1]."""
    return np.linspace(-1.0, 1.0, 2**bits - 1) if signed else np.linspace(0.0, 1.0, 2**bits)


def dynamic_codebook(signed: bool = True) -> np.ndarray:
    """256 codes: 0, 1 and, per decade :math:`10^{-e}`, :math:`2^{f}` midpoints of a linear grid on
    :math:`[0.1, 1]\\cdot10^{-e}` (``f`` the fraction bits left after the sign, ``e`` zeros and the indicator bit)."""
    free = 7 if signed else 8  # bits after the sign bit
    values = []
    for e in range(free - 1):  # the last possible decade is dropped to make room for 0 and 1
        f = free - 1 - e
        edges = np.linspace(0.1, 1.0, 2**f + 1)
        values.append(10.0**-e * (edges[:-1] + edges[1:]) / 2)
    pos = np.concatenate(values)
    codes = np.concatenate([-pos, [0.0], pos, [1.0]]) if signed else np.concatenate([[0.0], pos, [1.0]])
    if signed:
        codes = np.concatenate([codes, [-1.0]])
    codes = np.unique(codes)
    return codes[:256]


@dataclass(frozen=True)
class QuantisedTensor:
    """Codes (uint8, one per entry), block scales :math:`a_b` (float32), the shape and the codebook used."""

    codes: np.ndarray
    absmax: np.ndarray
    shape: tuple
    codebook: np.ndarray


def quantise(s, codebook: np.ndarray, block: int = BLOCK) -> QuantisedTensor:
    """Nearest-code quantisation of ``s`` in blocks of ``block`` consecutive entries (row-major)."""
    s = np.asarray(s, dtype=float)
    block = check_interval(block, "block")
    if len(codebook) > 256:
        raise ValueError(f"codebook has {len(codebook)} codes; one byte holds at most 256.")
    flat = s.ravel()
    nb = max(1, math.ceil(flat.size / block))
    padded = np.zeros(nb * block)
    padded[:flat.size] = flat
    blocks = padded.reshape(nb, block)
    absmax = np.abs(blocks).max(axis=1).astype(np.float32)
    scale = np.where(absmax > 0, absmax, 1.0).astype(float)
    x = blocks / scale[:, None]
    idx = np.clip(np.searchsorted(codebook, x), 1, len(codebook) - 1)
    lower_closer = (x - codebook[idx - 1]) <= (codebook[idx] - x)
    codes = np.where(lower_closer, idx - 1, idx).astype(np.uint8)
    return QuantisedTensor(codes=codes.ravel()[:flat.size].reshape(s.shape), absmax=absmax, shape=s.shape,
                           codebook=codebook)


def dequantise(q: QuantisedTensor, block: int = BLOCK) -> np.ndarray:
    r""":math:`\tilde s_i = a_b\,q_{k_i}`."""
    flat = q.codebook[q.codes.ravel().astype(np.int64)]
    scales = np.repeat(q.absmax.astype(float), block)[:flat.size]
    return (flat * scales).reshape(q.shape)


@symbol(r"\tfrac12 a_b \max_k (q_{k+1} - q_k)", "worst-case error of block-wise nearest-code quantisation")
def quantisation_error_bound(absmax, codebook) -> np.ndarray:
    r"""Per block: :math:`\tfrac12 a_b \max_k(q_{k+1}-q_k)` (valid when the codebook spans the normalised range)."""
    return 0.5 * np.asarray(absmax, dtype=float) * float(np.max(np.diff(np.sort(codebook))))


@dataclass(frozen=True)
class Adam8bitState:
    """Adam's ``m`` and ``v``, each a :class:`QuantisedTensor`."""

    m: QuantisedTensor
    v: QuantisedTensor
    t: int = 0


def init_adam8bit_state(x, block: int = BLOCK, codebook: str = "dynamic") -> Adam8bitState:
    """Zero codes and zero scales (``numel`` bytes per state plus 4 bytes per block); ``codebook`` is
    ``"dynamic"`` or ``"linear"``."""
    x = np.asarray(x)
    if codebook not in ("dynamic", "linear"):
        raise ValueError(f"codebook must be 'dynamic' or 'linear', got {codebook!r}.")
    make = dynamic_codebook if codebook == "dynamic" else linear_codebook
    nb = max(1, math.ceil(x.size / block))
    zero = lambda cb: QuantisedTensor(np.zeros(x.shape, np.uint8), np.zeros(nb, np.float32), x.shape, cb)  # noqa: E731
    signed, unsigned = make(True), make(False)
    return Adam8bitState(m=zero(signed), v=zero(unsigned))


def adam8bit_step(x, g, state: Adam8bitState | None = None, *, lr: float = 1e-3, betas=(0.9, 0.999),
                  eps: float = 1e-8, weight_decay: float = 0.0, block: int = BLOCK, codebook: str = "dynamic"):
    """One AdamW step with block-wise 8-bit ``m`` and ``v`` (dequantise, update, quantise)."""
    x, g = params_and_grad(x, g)
    lr = check_lr(lr)
    b1, b2 = check_betas(betas)
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    state = init_adam8bit_state(x, block, codebook) if state is None else state
    if state.m.shape != x.shape:
        raise ValueError(f"state built for shape {state.m.shape}, x has {x.shape}; use init_adam8bit_state(x).")
    t = state.t + 1
    m = b1 * dequantise(state.m, block) + (1 - b1) * g
    v = b2 * dequantise(state.v, block) + (1 - b2) * g * g
    step = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    x = x * (1 - lr * lam) - lr * step
    return x, Adam8bitState(m=quantise(m, state.m.codebook, block), v=quantise(v, state.v.codebook, block), t=t)


adam8bit_step.init_state = init_adam8bit_state
