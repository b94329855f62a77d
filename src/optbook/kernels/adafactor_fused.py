r"""A fused, multi-tensor Adafactor step in Triton: three streaming passes over G.

This is the same iteration as :class:`optbook.optim.Adafactor` (and
:mod:`optbook.reference.adafactor`), scheduled so that each full-size pass
moves the fewest bytes the algorithm allows. For a matrix :math:`X` with
gradient :math:`G_t` (a tensor of rank :math:`\ge 2` is a batch of matrices
over its last two axes) one step is

.. math::

    \begin{aligned}
    \text{pass 1:}\quad & R_t = \hat\beta_{2t} R_{t-1} + (1-\hat\beta_{2t})\,(G_t^2 + \epsilon_1) 1_m,\quad
                          C_t = \hat\beta_{2t} C_{t-1} + (1-\hat\beta_{2t})\,1_n^\top (G_t^2 + \epsilon_1) \\
    \text{pass 2:}\quad & \textstyle\sum_{ij} U_{ij}^2,\quad
                          U_t = G_t \oslash \sqrt{\hat V_t},\ \hat V_t = R_t C_t / (1_n^\top R_t) \\
    \text{pass 3:}\quad & X_t = (1-\gamma\lambda) X_{t-1} - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)}\, U_t,
                          \quad \alpha_t = \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))\,\rho_t,
                          \quad\text{and } \textstyle\sum_{ij} (X_t)_{ij}^2
    \end{aligned}

Why three passes: pass 2 needs :math:`1_n^\top R_t`, a sum over the whole
matrix, so it cannot start before pass 1 has seen every element; pass 3
needs :math:`\mathrm{RMS}(U_t)`, a sum over the whole matrix of quantities
that only exist after pass 1, so the write of :math:`X_t` cannot share a pass
with it. Pass 1 reads :math:`G`, pass 2 reads :math:`G`, pass 3 reads
:math:`G` and :math:`X` and writes :math:`X`: :math:`3b_G + 2b_X` bytes per
element, 20 B in float32 and 10 B in bfloat16. :math:`\mathrm{RMS}(X_{t-1})`
costs no extra read because pass 3 of the previous step already summed the
squares of the values it wrote (see "The carried RMS(X)" below).

A vector (or a 0-d tensor) keeps the full :math:`\hat V_t`, which is
element-wise, so its :math:`\sum U^2` is taken in pass 1 and it skips pass 2.

Between the passes run two tiny launches: one reduces the per-tile partial
row and column sums into :math:`R_t` and :math:`C_t` (pass 1b), one reduces
the per-tile partial :math:`\sum U^2` and :math:`\sum X^2` into the step
scale :math:`\alpha_t / \max(1, \mathrm{RMS}(U_t)/d)` of each tensor
(pass 2b). All reductions write partial sums to buffers and add them in a
fixed order, so a step is deterministic: no floating-point atomics. The only
atomic is an integer ``max`` that flags a tensor with a non-finite gradient.

Many tensors, few launches
--------------------------
Tensors are grouped into *buckets* of equal parameter dtype, gradient dtype
and block shape. A bucket is driven by a table of tiles built once and cached
(``_Plan``): every launch covers all tensors of the bucket, reading each
tensor's addresses from an int64 pointer table. A GPT-2-sized model is one
bucket, so one step is 6 launches (a memset and 5 kernels) whatever the
number of tensors. There is no host synchronisation: the per-tensor step
:math:`t` is read on the device, so the step can be captured in a CUDA graph
(with the usual rule that the first call, which builds the plan, happens
before capture).

Precision
---------
Parameters and gradients may be float32, bfloat16 or float16; the statistics
:math:`R, C, \hat V`, every partial sum and all arithmetic are float32. A
low-precision parameter is rounded to nearest (even) once per step; for
bfloat16 the rounding is written out on the bits, because Triton 3.9's
interpreter truncates float32 to bfloat16 where the GPU rounds, and the tests
must see what the GPU does.

Gradients that are not finite
-----------------------------
A tensor whose gradient holds a NaN or an infinity is left exactly as it
was, statistics included: pass 1 raises a per-tensor flag, and passes 1b and
3 store nothing for a flagged tensor. The others are updated. This is decided
on the device, so it costs no synchronisation.

Step counters
-------------
Each tensor's :math:`t` is a float32 one-element tensor on its device (as in
``torch.optim``'s capturable optimizers), read by the kernels. The caller
either advances it before the step, or passes ``increment_steps=True`` and
pass 2b stores :math:`t` after the last launch that needs :math:`t - 1`.

The carried RMS(X)
------------------
:math:`\mathrm{RMS}(X_{t-1})` is the RMS of the values the previous step
wrote, which pass 3 summed for free. It is stale if anything else wrote the
parameter since. A plan therefore records ``param._version`` and which step
last wrote each parameter (another plan's step, for instance, when some
gradients were ``None``), and re-reads :math:`X` in pass 1 (24 B instead of
20 B per float32 element) on its first step and whenever either changed
(``module.load_state_dict``, ``p.mul_()`` under ``no_grad``, ...). A write
that bypasses the version counter, such as ``p.data.copy_(...)``, must be
followed by :func:`invalidate_carried_rms`.

Testing without a GPU
---------------------
Set ``TRITON_INTERPRET=1`` before triton is imported and pass CPU tensors:
the same kernels then run in Triton's interpreter
(``tests/test_kernel_interpreter.py``), one program at a time; small blocks
(:func:`use_block_config`) exercise the multi-tile paths on small shapes.
:mod:`optbook.kernels.aot` compiles the kernels for ``sm_90`` without a GPU.
"""

from __future__ import annotations

import math
import os
import weakref
from collections import OrderedDict
from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from optbook.kernels.layout import BlockConfig, as_matrix, block_config, use_block_config

__all__ = [
    "BlockConfig",
    "block_config",
    "use_block_config",
    "fused_adafactor_step",
    "fused_adafactor",
    "invalidate_carried_rms",
    "cached_plan_bytes",
    "clear_plans",
    "launches_per_step",
    "INTERPRET",
]

#: True when the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``
#: was set before triton was imported).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")

_SUPPORTED = (torch.float32, torch.bfloat16, torch.float16)
_TL_DTYPE = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}

class _Meta:
    """Columns of the per-tensor metadata table (int64, one row per tensor).

    kind (matrix or vector); n, m (rows and columns; a vector has n = numel);
    b (batch); numel; nct, nrt (column and row tiles per matrix); rp_off,
    cp_off, rs_off (offsets into the row-partial, column-partial and
    row-segment-sum buffers); nrs (row segments per matrix); tile0, ntiles
    (the tensor's range in the tile table).
    """

    KIND, N, M, B, NUMEL, NCT, NRT, RP_OFF, CP_OFF, RS_OFF, NRS, TILE0, NTILES = range(13)
    SIZE = 13
    IS_MATRIX, IS_VECTOR = 0, 1


# The pointer table has one row of int64 addresses per tensor: X, G, R (or
# V), C, the step counter, the momentum M and the skip counter (0 if absent).
_NPTR_HOST = 7
# The kernels read the same columns as constexprs: triton lets a kernel see a
# module global only if it is a constexpr.
_KIND, _N, _M, _B, _NUMEL, _NCT, _NRT, _RP_OFF, _CP_OFF, _RS_OFF, _NRS, _TILE0, _NTILES = (
    tl.constexpr(i) for i in range(_Meta.SIZE)
)
_NMETA = tl.constexpr(_Meta.SIZE)
_PX, _PG, _PR, _PC, _PSTEP, _PM, _PSKIP = (tl.constexpr(i) for i in range(_NPTR_HOST))
_NPTR = tl.constexpr(_NPTR_HOST)
_MATRIX = tl.constexpr(_Meta.IS_MATRIX)
# Largest finite float32: |g| <= it is False exactly for inf and NaN.
_FLT_MAX = tl.constexpr(3.4028234663852886e38)


# --------------------------------------------------------------------------- kernels


@triton.jit
def _lerp(start, end, w):
    # torch.lerp's two-sided form, so the fused and the eager paths round alike.
    return tl.where(w < 0.5, start + w * (end - start), end - (end - start) * (1.0 - w))


@triton.jit
def _to_param_dtype(x, XDT: tl.constexpr):
    # Round to nearest even, written out for bfloat16: the GPU's cvt.rn does
    # this, but Triton 3.9's interpreter truncates float32 -> bfloat16, and
    # the tests must see the rounding the GPU does.
    if XDT == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + (0x7FFF + ((bits >> 16) & 1))
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(XDT)


@triton.jit
def _apply(x, u, m_ptrs, store_mask, decay, scale, one_minus_beta1, MOMENTUM: tl.constexpr):
    # The new parameter in float32: decay X - scale U, or through the momentum
    # M_t = lerp(M_{t-1}, scale U, 1 - beta1), the order of the torch path.
    if MOMENTUM:
        m_new = _lerp(tl.load(m_ptrs, mask=store_mask, other=0.0), u * scale, one_minus_beta1)
        tl.store(m_ptrs, m_new, mask=store_mask)
        return x * decay - m_new
    else:
        return x * decay - u * scale


@triton.jit
def _load_step(ptr_ptr, k, TDT: tl.constexpr):
    step_ptr = tl.load(ptr_ptr + k * _NPTR + _PSTEP).to(tl.pointer_type(TDT))
    return tl.load(step_ptr).to(tl.float32)


# 1/sqrt(V_ij) = rsqrt(R_i) * sqrt(1^T R) * rsqrt(C_j). Dividing R_i by 1^T R
# first, as the eager path does, can give a subnormal quotient for a row of
# zeros next to large rows; the GPU's rsqrt flushes it to 0 and 0 * inf = NaN.
# R_i itself is at least m * eps1, a normal float32.
@triton.jit
def _row_total(rsum_ptr, rs_off, b, nrs, SEG_BLOCK: tl.constexpr):
    # 1_n^T R_t of batch matrix b from the per-segment partials of pass 1b,
    # always summed in the same order so passes 2 and 3 see the same value.
    acc = tl.zeros([SEG_BLOCK], tl.float32)
    base = rsum_ptr + rs_off + b * nrs
    for s in range(0, nrs, SEG_BLOCK):
        idx = s + tl.arange(0, SEG_BLOCK)
        acc += tl.load(base + idx, mask=idx < nrs, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def _stats_kernel(
    tiles_ptr, meta_ptr, ptr_ptr, rowpart_ptr, colpart_ptr, usq_ptr, xsq_ptr, bad_ptr,
    eps1, neg_c, t_offset,
    XDT: tl.constexpr, GDT: tl.constexpr, TDT: tl.constexpr,
    TILE_M: tl.constexpr, SUB_M: tl.constexpr, BLOCK_N: tl.constexpr,
    VEC: tl.constexpr, READ_X: tl.constexpr,
):
    """Pass 1. Matrix tiles: partial row and column sums of G^2 + eps1.
    Vector tiles: partial sum of U^2 with the new V_t (not stored yet).
    Both: a non-finite flag, and the partial sum of X^2 when READ_X."""
    pid = tl.program_id(0)
    k = tl.load(tiles_ptr + 4 * pid)
    b = tl.load(tiles_ptr + 4 * pid + 1).to(tl.int64)
    r0 = tl.load(tiles_ptr + 4 * pid + 2).to(tl.int64)
    c0 = tl.multiple_of(tl.load(tiles_ptr + 4 * pid + 3).to(tl.int64), BLOCK_N)
    meta = meta_ptr + k * _NMETA
    kind = tl.load(meta + _KIND)
    n = tl.load(meta + _N)
    m = tl.load(meta + _M)
    x_ptr = tl.load(ptr_ptr + k * _NPTR + _PX).to(tl.pointer_type(XDT))
    g_ptr = tl.load(ptr_ptr + k * _NPTR + _PG).to(tl.pointer_type(GDT))
    s_ptr = tl.load(ptr_ptr + k * _NPTR + _PR).to(tl.pointer_type(tl.float32))
    if VEC > 1:
        m = tl.multiple_of(m, VEC)
        x_ptr = tl.multiple_of(x_ptr, 16)
        g_ptr = tl.multiple_of(g_ptr, 16)
    sub = tl.arange(0, SUB_M)
    lane = tl.arange(0, BLOCK_N)
    sq_acc = tl.zeros([SUB_M, BLOCK_N], tl.float32)  # column sums (matrix) or U^2 (vector)
    x_acc = tl.zeros([SUB_M, BLOCK_N], tl.float32)
    n_bad = tl.zeros([SUB_M, BLOCK_N], tl.int32)
    if kind == _MATRIX:
        nct = tl.load(meta + _NCT)
        nrt = tl.load(meta + _NRT)
        rp = rowpart_ptr + tl.load(meta + _RP_OFF) + (b * nct + c0 // BLOCK_N) * n
        cols = c0 + lane
        cmask = cols < m
        base = b * n * m
        for i in range(0, tl.minimum(TILE_M, n - r0), SUB_M):
            rows = r0 + i + sub
            mask = (rows < n)[:, None] & cmask[None, :]
            offs = base + rows[:, None] * m + cols[None, :]
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            g2 = tl.where(mask, g * g + eps1, 0.0)
            row_sum = tl.sum(g2, axis=1)
            tl.store(rp + rows, row_sum, mask=rows < n)
            sq_acc += g2
            # A NaN or inf in G, or a square or row sum that overflows, as the torch path flags.
            n_bad += (mask & ~(g2 <= _FLT_MAX)).to(tl.int32)
            n_bad += (~(row_sum <= _FLT_MAX)).to(tl.int32)[:, None] * (lane[None, :] == 0).to(tl.int32)
            if READ_X:
                x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                x_acc += x * x
        cp = colpart_ptr + tl.load(meta + _CP_OFF) + (b * nrt + r0 // TILE_M) * m
        col_sum = tl.sum(sq_acc, axis=0)
        tl.store(cp + cols, col_sum, mask=cmask)
        n_bad += (~(col_sum <= _FLT_MAX)).to(tl.int32)[None, :] * (sub[:, None] == 0).to(tl.int32)
    else:
        # A vector of length n, walked in contiguous runs of SUB_M * BLOCK_N.
        w = tl.exp2(neg_c * tl.log2(_load_step(ptr_ptr, k, TDT) + t_offset))
        flat = sub[:, None] * BLOCK_N + lane[None, :]
        for i in range(0, tl.minimum(TILE_M * BLOCK_N, n - c0), SUB_M * BLOCK_N):
            offs = c0 + i + flat
            mask = offs < n
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            v = tl.load(s_ptr + offs, mask=mask, other=0.0)
            v_new = _lerp(v, g * g + eps1, w)
            u = tl.where(mask, g * tl.rsqrt(v_new), 0.0)
            sq_acc += u * u
            n_bad += (mask & ~(g * g <= _FLT_MAX)).to(tl.int32)
            if READ_X:
                x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                x_acc += x * x
        tl.store(usq_ptr + pid, tl.sum(tl.sum(sq_acc, axis=1), axis=0))
    if READ_X:
        tl.store(xsq_ptr + pid, tl.sum(tl.sum(x_acc, axis=1), axis=0))
    if tl.sum(tl.sum(n_bad, axis=1), axis=0) > 0:
        tl.atomic_max(bad_ptr + k, 1)


@triton.jit
def _stats_finalize_kernel(
    segs_ptr, meta_ptr, ptr_ptr, rowpart_ptr, colpart_ptr, rsum_ptr, bad_ptr,
    neg_c, t_offset,
    TDT: tl.constexpr, SEG: tl.constexpr,
):
    """Pass 1b. One program per segment of SEG entries of R_t or C_t: add the
    partial sums of pass 1 in tile order, apply the EMA, store the statistic
    (unless the tensor's gradient is not finite) and the segment's share of
    1_n^T R_t."""
    pid = tl.program_id(0)
    k = tl.load(segs_ptr + 4 * pid)
    which = tl.load(segs_ptr + 4 * pid + 1)
    b = tl.load(segs_ptr + 4 * pid + 2).to(tl.int64)
    s0 = tl.load(segs_ptr + 4 * pid + 3).to(tl.int64)
    meta = meta_ptr + k * _NMETA
    n = tl.load(meta + _N)
    m = tl.load(meta + _M)
    nct = tl.load(meta + _NCT)
    nrt = tl.load(meta + _NRT)
    # Broadcast explicitly: a scalar mask operand is not accepted everywhere.
    keep = (tl.load(bad_ptr + k) + tl.zeros([SEG], tl.int32)) == 0
    w = tl.exp2(neg_c * tl.log2(_load_step(ptr_ptr, k, TDT) + t_offset))
    idx = s0 + tl.arange(0, SEG)
    acc = tl.zeros([SEG], tl.float32)
    if which == 0:
        r_ptr = tl.load(ptr_ptr + k * _NPTR + _PR).to(tl.pointer_type(tl.float32))
        mask = idx < n
        part = rowpart_ptr + tl.load(meta + _RP_OFF) + b * nct * n
        for ct in range(0, nct):
            acc += tl.load(part + ct * n + idx, mask=mask, other=0.0)
        r_new = _lerp(tl.load(r_ptr + b * n + idx, mask=mask, other=0.0), acc, w)
        tl.store(r_ptr + b * n + idx, r_new, mask=mask & keep)
        nrs = tl.load(meta + _NRS)
        tl.store(rsum_ptr + tl.load(meta + _RS_OFF) + b * nrs + s0 // SEG, tl.sum(tl.where(mask, r_new, 0.0), axis=0))
    else:
        c_ptr = tl.load(ptr_ptr + k * _NPTR + _PC).to(tl.pointer_type(tl.float32))
        mask = idx < m
        part = colpart_ptr + tl.load(meta + _CP_OFF) + b * nrt * m
        for rt in range(0, nrt):
            acc += tl.load(part + rt * m + idx, mask=mask, other=0.0)
        c_new = _lerp(tl.load(c_ptr + b * m + idx, mask=mask, other=0.0), acc, w)
        tl.store(c_ptr + b * m + idx, c_new, mask=mask & keep)


@triton.jit
def _clip_kernel(
    tiles_ptr, meta_ptr, ptr_ptr, rsum_ptr, usq_ptr,
    GDT: tl.constexpr, TILE_M: tl.constexpr, SUB_M: tl.constexpr, BLOCK_N: tl.constexpr,
    VEC: tl.constexpr, SEG_BLOCK: tl.constexpr,
):
    """Pass 2 (matrix tiles only): partial sum of U_t^2, with
    U_ij = G_ij * rsqrt(R_i / 1^T R) * rsqrt(C_j)."""
    pid = tl.program_id(0)
    k = tl.load(tiles_ptr + 4 * pid)
    b = tl.load(tiles_ptr + 4 * pid + 1).to(tl.int64)
    r0 = tl.load(tiles_ptr + 4 * pid + 2).to(tl.int64)
    c0 = tl.multiple_of(tl.load(tiles_ptr + 4 * pid + 3).to(tl.int64), BLOCK_N)
    meta = meta_ptr + k * _NMETA
    n = tl.load(meta + _N)
    m = tl.load(meta + _M)
    g_ptr = tl.load(ptr_ptr + k * _NPTR + _PG).to(tl.pointer_type(GDT))
    r_ptr = tl.load(ptr_ptr + k * _NPTR + _PR).to(tl.pointer_type(tl.float32))
    c_ptr = tl.load(ptr_ptr + k * _NPTR + _PC).to(tl.pointer_type(tl.float32))
    if VEC > 1:
        m = tl.multiple_of(m, VEC)
        g_ptr = tl.multiple_of(g_ptr, 16)
    root_total = tl.sqrt(_row_total(rsum_ptr, tl.load(meta + _RS_OFF), b, tl.load(meta + _NRS), SEG_BLOCK))
    cols = c0 + tl.arange(0, BLOCK_N)
    cmask = cols < m
    col_f = tl.rsqrt(tl.load(c_ptr + b * m + cols, mask=cmask, other=1.0))
    acc = tl.zeros([SUB_M, BLOCK_N], tl.float32)
    base = b * n * m
    for i in range(0, tl.minimum(TILE_M, n - r0), SUB_M):
        rows = r0 + i + tl.arange(0, SUB_M)
        rmask = rows < n
        mask = rmask[:, None] & cmask[None, :]
        g = tl.load(g_ptr + base + rows[:, None] * m + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        row_f = tl.rsqrt(tl.load(r_ptr + b * n + rows, mask=rmask, other=1.0)) * root_total
        u = (g * row_f[:, None]) * col_f[None, :]
        acc += u * u
    tl.store(usq_ptr + pid, tl.sum(tl.sum(acc, axis=1), axis=0))


@triton.jit
def _scale_kernel(
    meta_ptr, ptr_ptr, usq_ptr, xsq_ptr, scale_ptr, bad_ptr,
    lr, eps2, d, t_offset,
    TDT: tl.constexpr, RELATIVE_STEP: tl.constexpr, SCALE_PARAMETER: tl.constexpr, BLOCK: tl.constexpr,
    INCREMENT: tl.constexpr, COUNT_SKIPS: tl.constexpr,
):
    """Pass 2b, one program per tensor: alpha_t / max(1, RMS(U_t)/d). With
    INCREMENT it also stores t into the step counter: it is the last launch
    that reads t - 1 there (pass 3 reads the stored t). With COUNT_SKIPS it
    adds 1 to the tensor's skip counter if its gradient was not finite."""
    k = tl.program_id(0)
    meta = meta_ptr + k * _NMETA
    numel = tl.load(meta + _NUMEL).to(tl.float32)
    tile0 = tl.load(meta + _TILE0)
    ntiles = tl.load(meta + _NTILES)
    u_acc = tl.zeros([BLOCK], tl.float32)
    x_acc = tl.zeros([BLOCK], tl.float32)
    for s in range(0, ntiles, BLOCK):
        idx = tile0 + s + tl.arange(0, BLOCK)
        mask = idx < tile0 + ntiles
        u_acc += tl.load(usq_ptr + idx, mask=mask, other=0.0)
        x_acc += tl.load(xsq_ptr + idx, mask=mask, other=0.0)
    rms_u = tl.sqrt(tl.sum(u_acc, axis=0) / numel)
    clip = tl.maximum(rms_u / d, 1.0)
    t = _load_step(ptr_ptr, k, TDT) + t_offset
    if RELATIVE_STEP:
        rho = tl.minimum(lr, 1.0 / tl.sqrt(t))
    else:
        rho = lr
    if SCALE_PARAMETER:
        alpha = tl.maximum(tl.sqrt(tl.sum(x_acc, axis=0) / numel), eps2) * rho
    else:
        alpha = rho
    tl.store(scale_ptr + k, alpha / clip)
    if INCREMENT:
        tl.store(tl.load(ptr_ptr + k * _NPTR + _PSTEP).to(tl.pointer_type(TDT)), t.to(TDT))
    if COUNT_SKIPS:
        # One program per tensor owns its counter: a plain read-modify-write.
        skip_ptr = tl.load(ptr_ptr + k * _NPTR + _PSKIP).to(tl.pointer_type(tl.int64))
        tl.store(skip_ptr, tl.load(skip_ptr) + (tl.load(bad_ptr + k) != 0).to(tl.int64))


@triton.jit
def _update_kernel(
    tiles_ptr, meta_ptr, ptr_ptr, rsum_ptr, scale_ptr, xsq_ptr, bad_ptr,
    eps1, neg_c, decay, sign, one_minus_beta1,
    XDT: tl.constexpr, GDT: tl.constexpr, TDT: tl.constexpr,
    TILE_M: tl.constexpr, SUB_M: tl.constexpr, BLOCK_N: tl.constexpr,
    VEC: tl.constexpr, SEG_BLOCK: tl.constexpr, MOMENTUM: tl.constexpr,
):
    """Pass 3: X_t = decay * X_{t-1} - scale * U_t (and V_t for vectors), and
    the partial sum of X_t^2 that the next step's alpha_{t+1} needs. With
    MOMENTUM, M_t = lerp(M_{t-1}, scale * U_t, 1 - beta1) and
    X_t = decay * X_{t-1} - M_t. A tensor flagged in pass 1 is left as it was."""
    pid = tl.program_id(0)
    k = tl.load(tiles_ptr + 4 * pid)
    b = tl.load(tiles_ptr + 4 * pid + 1).to(tl.int64)
    r0 = tl.load(tiles_ptr + 4 * pid + 2).to(tl.int64)
    c0 = tl.multiple_of(tl.load(tiles_ptr + 4 * pid + 3).to(tl.int64), BLOCK_N)
    meta = meta_ptr + k * _NMETA
    kind = tl.load(meta + _KIND)
    n = tl.load(meta + _N)
    m = tl.load(meta + _M)
    x_ptr = tl.load(ptr_ptr + k * _NPTR + _PX).to(tl.pointer_type(XDT))
    g_ptr = tl.load(ptr_ptr + k * _NPTR + _PG).to(tl.pointer_type(GDT))
    s_ptr = tl.load(ptr_ptr + k * _NPTR + _PR).to(tl.pointer_type(tl.float32))
    m_ptr = tl.load(ptr_ptr + k * _NPTR + _PM).to(tl.pointer_type(tl.float32))
    if VEC > 1:
        m = tl.multiple_of(m, VEC)
        x_ptr = tl.multiple_of(x_ptr, 16)
        g_ptr = tl.multiple_of(g_ptr, 16)
        m_ptr = tl.multiple_of(m_ptr, 16)
    keep = (tl.load(bad_ptr + k) + tl.zeros([SUB_M, BLOCK_N], tl.int32)) == 0
    scale = tl.load(scale_ptr + k)
    sub = tl.arange(0, SUB_M)
    lane = tl.arange(0, BLOCK_N)
    x_acc = tl.zeros([SUB_M, BLOCK_N], tl.float32)
    if kind == _MATRIX:
        c_ptr = tl.load(ptr_ptr + k * _NPTR + _PC).to(tl.pointer_type(tl.float32))
        root_total = tl.sqrt(_row_total(rsum_ptr, tl.load(meta + _RS_OFF), b, tl.load(meta + _NRS), SEG_BLOCK))
        cols = c0 + lane
        cmask = cols < m
        col_f = tl.rsqrt(tl.load(c_ptr + b * m + cols, mask=cmask, other=1.0))
        base = b * n * m
        for i in range(0, tl.minimum(TILE_M, n - r0), SUB_M):
            rows = r0 + i + sub
            rmask = rows < n
            mask = rmask[:, None] & cmask[None, :]
            offs = base + rows[:, None] * m + cols[None, :]
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32) * sign
            x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            row_f = tl.rsqrt(tl.load(s_ptr + b * n + rows, mask=rmask, other=1.0)) * root_total
            u = (g * row_f[:, None]) * col_f[None, :]
            x_new = _apply(x, u, m_ptr + offs, mask & keep, decay, scale, one_minus_beta1, MOMENTUM)
            x_new = _to_param_dtype(x_new, XDT)
            tl.store(x_ptr + offs, x_new, mask=mask & keep)
            x_kept = tl.where(keep, x_new.to(tl.float32), x)
            x_acc += x_kept * x_kept
    else:
        w = tl.exp2(neg_c * tl.log2(_load_step(ptr_ptr, k, TDT)))
        flat = sub[:, None] * BLOCK_N + lane[None, :]
        for i in range(0, tl.minimum(TILE_M * BLOCK_N, n - c0), SUB_M * BLOCK_N):
            offs = c0 + i + flat
            mask = offs < n
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            v_new = _lerp(tl.load(s_ptr + offs, mask=mask, other=0.0), g * g + eps1, w)
            tl.store(s_ptr + offs, v_new, mask=mask & keep)
            u = (g * sign) * tl.rsqrt(v_new)
            x_new = _apply(x, u, m_ptr + offs, mask & keep, decay, scale, one_minus_beta1, MOMENTUM)
            x_new = _to_param_dtype(x_new, XDT)
            tl.store(x_ptr + offs, x_new, mask=mask & keep)
            x_kept = tl.where(mask, tl.where(keep, x_new.to(tl.float32), x), 0.0)
            x_acc += x_kept * x_kept
    tl.store(xsq_ptr + pid, tl.sum(tl.sum(x_acc, axis=1), axis=0))


# --------------------------------------------------------------------------- plan


class _Bucket:
    """Tensors that share dtypes and a block shape: every kernel covers all of
    them in one launch, driven by the tile table built here once."""

    def __init__(
        self, members: list[int], params, grads, stats_r, stats_c, steps, moms, skips, config: BlockConfig, vec: int
    ):
        self.members = members
        self.config = config
        self.vec = vec
        p0 = params[members[0]]
        self.device = p0.device
        self.xdt = _TL_DTYPE[p0.dtype]
        self.gdt = _TL_DTYPE[grads[members[0]].dtype]
        self.tdt = _TL_DTYPE[steps[members[0]].dtype] if steps[members[0]].dtype in _TL_DTYPE else tl.float32
        cfg = config
        meta, mat_tiles, vec_tiles, segs = [], [], [], []
        rp = cp = rs = 0
        for local, i in enumerate(members):
            shape = params[i].shape
            row = [0] * _Meta.SIZE
            if len(shape) >= 2:
                nb, n, m = as_matrix(shape)
                nct, nrt = -(-m // cfg.block_n), -(-n // cfg.tile_m)
                nrs = -(-n // cfg.seg)
                row[_Meta.KIND], row[_Meta.N], row[_Meta.M], row[_Meta.B] = _Meta.IS_MATRIX, n, m, nb
                row[_Meta.NCT], row[_Meta.NRT], row[_Meta.NRS] = nct, nrt, nrs
                row[_Meta.RP_OFF], row[_Meta.CP_OFF], row[_Meta.RS_OFF] = rp, cp, rs
                rp, cp, rs = rp + nb * nct * n, cp + nb * nrt * m, rs + nb * nrs
                row[_Meta.TILE0] = len(mat_tiles)  # fixed up below once vector tiles are placed
                for b in range(nb):
                    for r0 in range(0, n, cfg.tile_m):
                        for c0 in range(0, m, cfg.block_n):
                            mat_tiles.append((local, b, r0, c0))
                    for s0 in range(0, n, cfg.seg):
                        segs.append((local, 0, b, s0))
                    for s0 in range(0, m, cfg.seg):
                        segs.append((local, 1, b, s0))
                row[_Meta.NTILES] = len(mat_tiles) - row[_Meta.TILE0]
            else:
                numel = max(1, math.prod(shape))
                row[_Meta.KIND], row[_Meta.N], row[_Meta.M], row[_Meta.B] = _Meta.IS_VECTOR, numel, 1, 1
                row[_Meta.TILE0] = -1 - len(vec_tiles)
                span = cfg.tile_m * cfg.block_n
                for e0 in range(0, numel, span):
                    vec_tiles.append((local, 0, 0, e0))
                row[_Meta.NTILES] = -(-numel // span)
            row[_Meta.NUMEL] = params[i].numel()
            meta.append(row)
        self.n_matrix_tiles = len(mat_tiles)
        for row in meta:
            if row[_Meta.TILE0] < 0:
                row[_Meta.TILE0] = self.n_matrix_tiles + (-1 - row[_Meta.TILE0])
        tiles = mat_tiles + vec_tiles
        dev = self.device
        self.n_tiles = len(tiles)
        self.n_segs = len(segs)
        self.tiles = _to_device(torch.tensor(tiles, dtype=torch.int32).reshape(-1, 4), dev)
        self.segs = _to_device(torch.tensor(segs, dtype=torch.int32).reshape(-1, 4), dev)
        self.meta = _to_device(torch.tensor(meta, dtype=torch.int64).reshape(-1, _Meta.SIZE), dev)
        f32 = {"dtype": torch.float32, "device": dev}
        self.rowpart = torch.zeros(max(rp, 1), **f32)
        self.colpart = torch.zeros(max(cp, 1), **f32)
        self.rsum = torch.zeros(max(rs, 1), **f32)
        self.usq = torch.zeros(max(self.n_tiles, 1), **f32)
        self.xsq = torch.zeros(max(self.n_tiles, 1), **f32)
        self.scale = torch.zeros(len(members), **f32)
        self.bad = torch.zeros(len(members), dtype=torch.int32, device=dev)
        self.ptr_key: tuple | None = None
        self.ptrs: Tensor | None = None
        self.momentum = moms[members[0]] is not None
        self.count_skips = skips[members[0]] is not None
        self.set_pointers(params, grads, stats_r, stats_c, steps, moms, skips)

    def scratch_bytes(self) -> int:
        """Device bytes of the tables and partial-sum buffers this bucket keeps."""
        tensors = (self.tiles, self.segs, self.meta, self.rowpart, self.colpart, self.rsum, self.usq,
                   self.xsq, self.scale, self.bad, self.ptrs)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def set_pointers(self, params, grads, stats_r, stats_c, steps, moms, skips) -> None:
        rows, key = [], []
        for i in self.members:
            c, mom, skip = stats_c[i], moms[i], skips[i]
            row = (
                params[i].data_ptr(),
                grads[i].data_ptr(),
                stats_r[i].data_ptr(),
                c.data_ptr() if c is not None else 0,
                steps[i].data_ptr(),
                mom.data_ptr() if mom is not None else 0,
                skip.data_ptr() if skip is not None else 0,
            )
            rows.append(row)
            key.extend(row)
        key = tuple(key)
        if key != self.ptr_key:
            self.ptrs = _to_device(torch.tensor(rows, dtype=torch.int64).reshape(-1, _NPTR_HOST), self.device)
            self.ptr_key = key

    def run(
        self, *, lr, eps1, eps2, d, neg_c, decay, sign, relative_step, scale_parameter, read_x, increment, beta1
    ) -> None:
        # With increment the counters hold t - 1 until pass 2b stores t.
        t_offset = 1.0 if increment else 0.0
        cfg = self.config
        self.bad.zero_()
        common = {"TILE_M": cfg.tile_m, "SUB_M": cfg.sub_m, "BLOCK_N": cfg.block_n, "VEC": self.vec}
        warps = {} if INTERPRET else {"num_warps": cfg.num_warps}
        _stats_kernel[(self.n_tiles,)](
            self.tiles, self.meta, self.ptrs, self.rowpart, self.colpart, self.usq, self.xsq, self.bad,
            eps1, neg_c, t_offset, XDT=self.xdt, GDT=self.gdt, TDT=self.tdt, READ_X=read_x, **common, **warps,
        )
        if self.n_segs:
            _stats_finalize_kernel[(self.n_segs,)](
                self.segs, self.meta, self.ptrs, self.rowpart, self.colpart, self.rsum, self.bad,
                neg_c, t_offset, TDT=self.tdt, SEG=cfg.seg, **({} if INTERPRET else {"num_warps": 4}),
            )
        if self.n_matrix_tiles:
            _clip_kernel[(self.n_matrix_tiles,)](
                self.tiles, self.meta, self.ptrs, self.rsum, self.usq,
                GDT=self.gdt, SEG_BLOCK=128, **common, **warps,
            )
        _scale_kernel[(len(self.members),)](
            self.meta, self.ptrs, self.usq, self.xsq, self.scale, self.bad, lr, eps2, d, t_offset,
            TDT=self.tdt, RELATIVE_STEP=relative_step, SCALE_PARAMETER=scale_parameter, BLOCK=1024,
            INCREMENT=bool(increment), COUNT_SKIPS=self.count_skips,
            **({} if INTERPRET else {"num_warps": 4}),
        )
        _update_kernel[(self.n_tiles,)](
            self.tiles, self.meta, self.ptrs, self.rsum, self.scale, self.xsq, self.bad,
            eps1, neg_c, decay, sign, 1.0 - beta1,
            XDT=self.xdt, GDT=self.gdt, TDT=self.tdt, SEG_BLOCK=128, MOMENTUM=self.momentum, **common, **warps,
        )


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    # A pinned staging copy lets the upload run asynchronously: no host sync.
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


class _Plan:
    """The cached launch plan for one list of parameters: buckets, tile tables
    and scratch buffers, plus what is needed to trust the carried sum of X^2."""

    def __init__(self, params, grads, stats_r, stats_c, steps, moms, skips) -> None:
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            if p.numel() == 0:
                continue  # nothing to update; its statistics stay as they are
            if p.dim() >= 2:
                _, n, m = as_matrix(p.shape)
            else:
                n, m = 1, max(1, p.numel())
            config = block_config(n, m)
            groups.setdefault((p.dtype, grads[i].dtype, config if p.dim() >= 2 else None), []).append(i)
        # Vectors join the bucket of their dtypes that holds the most elements,
        # so a model costs one set of launches per dtype pair and block shape.
        buckets: dict[tuple, list[int]] = {}
        for (pdt, gdt, config), members in groups.items():
            if config is None:
                continue
            buckets.setdefault((pdt, gdt, config), []).extend(members)
        for (pdt, gdt, config), members in groups.items():
            if config is not None:
                continue
            same = [key for key in buckets if key[:2] == (pdt, gdt)]
            if same:
                host = max(same, key=lambda key: sum(params[i].numel() for i in buckets[key]))
            else:
                host = (pdt, gdt, block_config(1, max(params[i].numel() for i in members)))
            buckets.setdefault(host, []).extend(members)
        self.buckets = []
        for (pdt, gdt, config), members in buckets.items():
            members.sort()
            vec = _vector_width(members, params, grads, pdt, gdt)
            self.buckets.append(_Bucket(members, params, grads, stats_r, stats_c, steps, moms, skips, config, vec))
        self.versions: list[int] | None = None  # param._version after the last step
        self.grad_key = tuple((g.data_ptr(), g.dtype) for g in grads)
        # Weak references: the plan must not keep a model alive, and a new
        # tensor at an old address must not inherit the carried sum of X^2.
        self.refs = [weakref.ref(p) for p in params]
        self.token: object | None = None  # identifies this plan's latest step

    def holds(self, params) -> bool:
        """True if these are the very tensors the plan was built for."""
        return len(params) == len(self.refs) and all(ref() is p for ref, p in zip(self.refs, params))

    def set_pointers(self, params, grads, stats_r, stats_c, steps, moms, skips) -> None:
        for bucket in self.buckets:
            bucket.set_pointers(params, grads, stats_r, stats_c, steps, moms, skips)


def _vector_width(members, params, grads, pdt, gdt) -> int:
    """Elements per 16-byte access if every row start of every tensor in the
    bucket is 16-byte aligned (the compiler then issues 128-bit loads), else 1."""
    width = 16 // max(torch.empty((), dtype=pdt).element_size(), torch.empty((), dtype=gdt).element_size())
    for i in members:
        p, g = params[i], grads[i]
        inner = p.shape[-1] if p.dim() >= 1 else 1
        if p.dim() >= 2 and inner % width:
            return 1
        if p.data_ptr() % 16 or g.data_ptr() % 16:
            return 1
    return width


_PLANS: OrderedDict[tuple, _Plan] = OrderedDict()
# Parameter address -> token of the fused step that last wrote it.
_LAST_WRITE: dict[int, object] = {}
_MAX_PLANS = 8


def _plan_key(params, stats_r, stats_c, steps, moms, skips) -> tuple:
    def ptr(t):
        return 0 if t is None else t.data_ptr()

    return tuple(
        (p.data_ptr(), p.shape, p.dtype, r.data_ptr(), ptr(c), s.data_ptr(), ptr(m), ptr(k))
        for p, r, c, s, m, k in zip(params, stats_r, stats_c, steps, moms, skips)
    )


def clear_plans() -> None:
    """Drop every cached plan (and its device buffers); the next step rebuilds."""
    _PLANS.clear()
    _LAST_WRITE.clear()


def cached_plan_bytes() -> int:
    r"""Device bytes held by every cached plan: tile tables and partial sums.

    This memory is not optimizer *state* (nothing in it survives a
    checkpoint) but it is resident between steps: about
    :math:`2 \cdot 4/128` bytes per element with 128 x 128 tiles.
    """
    return sum(bucket.scratch_bytes() for plan in _PLANS.values() for bucket in plan.buckets)


def invalidate_carried_rms(params: Sequence[Tensor] | None = None) -> None:
    """Forget the carried :math:`\\sum X^2` so the next step re-reads the parameters.

    Needed only after writing a parameter in a way its version counter does
    not see (``p.data.copy_(...)``); ``None`` forgets it for every plan.
    """
    ptrs = None if params is None else {p.data_ptr() for p in params}
    for key, plan in _PLANS.items():
        if ptrs is None or any(entry[0] in ptrs for entry in key):
            plan.versions = None


def launches_per_step(params: Sequence[Tensor]) -> int:
    """Kernel launches (memsets included) of one fused step over ``params``,
    from the plan's buckets: 6 per bucket with a matrix, 4 for vectors only."""
    counts = {}
    for p in params:
        if p.numel() == 0:
            continue
        key = (p.dtype,) + ((block_config(*as_matrix(p.shape)[1:]),) if p.dim() >= 2 else ())
        counts[key] = counts.get(key, 0) + 1
    matrix_buckets = sum(1 for key in counts if len(key) == 2)
    vector_only = {key[0] for key in counts if len(key) == 1} - {key[0] for key in counts if len(key) == 2}
    return 6 * matrix_buckets + 4 * len(vector_only)


# --------------------------------------------------------------------------- entry points


def _check_inputs(params, grads, stats_r, stats_c, steps, moms, skips) -> None:
    lengths = {len(params), len(grads), len(stats_r), len(stats_c), len(steps)}
    if len(lengths) != 1:
        raise ValueError(
            "params, grads, row/variance statistics, column statistics and steps must be lists of "
            f"equal length, got lengths {len(params)}, {len(grads)}, {len(stats_r)}, {len(stats_c)}, {len(steps)}."
        )
    if not params:
        return
    device = params[0].device
    for i, (p, g, r, c, s, mom, skip) in enumerate(zip(params, grads, stats_r, stats_c, steps, moms, skips)):
        where = f"params[{i}] (shape {tuple(p.shape)}, {p.dtype})"
        if p.dtype not in _SUPPORTED:
            raise ValueError(
                f"fused: {where} has dtype {p.dtype}; the fused kernel supports float32, bfloat16 and "
                "float16 parameters. Use fused=False for this parameter group."
            )
        if g is None or g.shape != p.shape or g.dtype not in _SUPPORTED:
            got = None if g is None else (tuple(g.shape), g.dtype)
            raise ValueError(f"fused: the gradient of {where} is {got}; it must be a dense tensor of the same shape.")
        if g.is_sparse or p.is_sparse:
            raise ValueError(f"fused: {where} has a sparse gradient; the fused kernel needs dense tensors.")
        for name, t in (("parameter", p), ("gradient", g), ("row statistic", r), ("column statistic", c),
                        ("step", s), ("momentum", mom), ("skip counter", skip)):
            if t is None:
                continue
            if t.device != device:
                raise ValueError(
                    f"fused: the {name} of {where} is on {t.device} but params[0] is on {device}; "
                    "the fused step needs every tensor on one device."
                )
            if not t.is_contiguous():
                raise ValueError(
                    f"fused: the {name} of {where} is not contiguous; the fused kernel addresses rows "
                    "directly. Call .contiguous() on it or use fused=False."
                )
        if device.type == "cuda" and INTERPRET:
            raise ValueError(
                f"fused: {where} is a CUDA tensor but TRITON_INTERPRET=1 is set; the interpreter copies "
                "only kernel arguments to the host, not the tensors the kernels reach through their "
                "pointer tables. Unset TRITON_INTERPRET to run the compiled kernels."
            )
        if device.type != "cuda" and not INTERPRET:
            raise ValueError(
                f"fused: {where} is on {device}; the fused kernel runs on CUDA tensors (or on CPU tensors "
                "under TRITON_INTERPRET=1). Use fused=False on this device."
            )
        for name, t, shape in (
            ("row statistic", r, tuple(p.shape[:-1]) if p.dim() >= 2 else tuple(p.shape)),
            ("column statistic", c, tuple(p.shape[:-2]) + (p.shape[-1],) if p.dim() >= 2 else None),
        ):
            if shape is None:
                if t is not None:
                    raise ValueError(f"fused: {where} is not factored, so its column statistic must be None.")
                continue
            if t is None or tuple(t.shape) != shape or t.dtype != torch.float32:
                got = None if t is None else (tuple(t.shape), t.dtype)
                raise ValueError(
                    f"fused: the {name} of {where} is {got}; the fused kernel needs a float32 tensor of shape {shape}."
                )
        if s.numel() != 1 or s.dtype not in (torch.float32,):
            raise ValueError(
                f"fused: the step of {where} must be a float32 tensor with one element, "
                f"got {s.dtype} {tuple(s.shape)}."
            )
        if mom is not None and (mom.shape != p.shape or mom.dtype != torch.float32):
            raise ValueError(
                f"fused: the momentum of {where} is {tuple(mom.shape)} {mom.dtype}; it must be float32 "
                "with the parameter's shape."
            )
        if skip is not None and (skip.numel() != 1 or skip.dtype != torch.int64):
            raise ValueError(
                f"fused: the skip counter of {where} must be an int64 tensor with one element, "
                f"got {skip.dtype} {tuple(skip.shape)}."
            )


@torch.no_grad()
def fused_adafactor_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    stats_r: Sequence[Tensor],
    stats_c: Sequence[Tensor | None],
    steps: Sequence[Tensor],
    *,
    lr: float,
    decay_exponent: float = 0.8,
    eps1: float = 1e-30,
    eps2: float = 1e-3,
    d: float = 1.0,
    weight_decay: float = 0.0,
    relative_step: bool = True,
    scale_parameter: bool = True,
    maximize: bool = False,
    increment_steps: bool = False,
    beta1: float | None = None,
    exp_avgs: Sequence[Tensor | None] | None = None,
    nonfinite_skips: Sequence[Tensor] | None = None,
) -> None:
    r"""One Adafactor step over many tensors with the fused kernels, in place.

    ``params[i]`` (float32, bfloat16 or float16) and ``grads[i]`` are updated
    and read as in :class:`optbook.optim.Adafactor`. For a tensor of rank
    :math:`\ge 2`, ``stats_r[i]`` is :math:`R` (shape ``X.shape[:-1]``) and
    ``stats_c[i]`` is :math:`C` (shape ``X.shape[:-2] + X.shape[-1:]``), the
    paper's row and column *sums*; for a vector or scalar ``stats_r[i]`` is
    :math:`\hat V` and ``stats_c[i]`` is ``None``. Statistics are float32.
    ``steps[i]`` is a float32 one-element tensor on the parameters' device
    holding this step's :math:`t` (already incremented), read on the device;
    with ``increment_steps=True`` it holds :math:`t - 1` and the kernels
    store :math:`t` into it, which saves the caller one launch per tensor
    (or one ``torch._foreach_add_``).

    With ``beta1`` (in :math:`[0, 1)`), ``exp_avgs[i]`` is the float32
    momentum :math:`M` of ``params[i]`` (its shape), and pass 3 computes
    :math:`M_t = M_{t-1} + (1-\beta_1)(\alpha_t \hat U_t - M_{t-1})` and
    :math:`X_t = (1-\gamma\lambda) X_{t-1} - M_t`, as the torch path does
    (8 more bytes per element).

    A tensor whose gradient holds a NaN or an infinity (or whose squares
    overflow) is left untouched, statistics and momentum included; the others
    are updated. ``nonfinite_skips[i]``, an int64 one-element tensor, counts
    the steps skipped so, on the device.
    """
    params, grads, stats_r, stats_c, steps = map(list, (params, grads, stats_r, stats_c, steps))
    if len({len(params), len(grads), len(stats_r), len(stats_c), len(steps)}) != 1:
        _check_inputs(params, grads, stats_r, stats_c, steps, [None] * len(params), [None] * len(params))
    if not params:
        return
    if beta1 is None:
        if exp_avgs is not None and any(m is not None for m in exp_avgs):
            raise ValueError("fused: exp_avgs were given but beta1 is None; pass beta1 to use the momentum.")
        moms = [None] * len(params)
    else:
        if isinstance(beta1, bool) or not isinstance(beta1, (int, float)) or not 0 <= beta1 < 1:
            raise ValueError(f"fused: beta1 must be a float in [0, 1) or None, got {beta1!r}.")
        if exp_avgs is None or len(exp_avgs) != len(params) or any(m is None for m in exp_avgs):
            raise ValueError("fused: beta1 is set, so exp_avgs must hold one momentum tensor per parameter.")
        moms = list(exp_avgs)
    if nonfinite_skips is None:
        skips = [None] * len(params)
    else:
        skips = list(nonfinite_skips)
        if len(skips) != len(params) or any(k is None for k in skips):
            raise ValueError("fused: nonfinite_skips must hold one counter per parameter, or be None.")
    for name, value in (("lr", lr), ("eps1", eps1), ("eps2", eps2), ("d", d), ("weight_decay", weight_decay),
                        ("decay_exponent", decay_exponent)):
        if isinstance(value, Tensor) or not isinstance(value, (int, float)):
            raise TypeError(f"fused: {name} must be a Python float, got {type(value).__name__}.")
    key = _plan_key(params, stats_r, stats_c, steps, moms, skips)
    plan = _PLANS.get(key)
    if plan is not None and not plan.holds(params):
        # Other tensors now live at the recorded addresses: nothing cached is about them.
        del _PLANS[key]
        plan = None
    if plan is None:
        _check_inputs(params, grads, stats_r, stats_c, steps, moms, skips)
        plan = _Plan(params, grads, stats_r, stats_c, steps, moms, skips)
        _PLANS[key] = plan
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
        # Gradients are often new tensors every step (zero_grad(set_to_none=True)):
        # check them, and re-upload their addresses, only when they moved.
        grad_key = tuple((g.data_ptr(), g.dtype) if g is not None else None for g in grads)
        if grad_key != plan.grad_key:
            _check_inputs(params, grads, stats_r, stats_c, steps, moms, skips)
            plan.set_pointers(params, grads, stats_r, stats_c, steps, moms, skips)
            plan.grad_key = grad_key
    versions = [p._version for p in params]
    # The carried sum of X^2 is this plan's own, from its last step: stale if
    # anything wrote a parameter since, be it a version-counted in-place op or
    # another plan (a step where some gradients were None has other lists).
    carried = plan.versions == versions and all(_LAST_WRITE.get(p.data_ptr()) is plan.token for p in params)
    read_x = bool(scale_parameter) and not carried
    for bucket in plan.buckets:
        bucket.run(
            lr=float(lr), eps1=float(eps1), eps2=float(eps2), d=float(d), neg_c=-float(decay_exponent),
            decay=1.0 - float(lr) * float(weight_decay), sign=-1.0 if maximize else 1.0,
            relative_step=bool(relative_step), scale_parameter=bool(scale_parameter), read_x=read_x,
            increment=bool(increment_steps), beta1=0.0 if beta1 is None else float(beta1),
        )
    if increment_steps:
        # Zero-size tensors are in no plan; their counters still advance.
        empty = [s for p, s in zip(params, steps) if p.numel() == 0]
        if empty:
            torch._foreach_add_(empty, 1.0)
    # The kernels write through raw pointers, which version counters do not see.
    plan.versions = versions
    plan.token = object()
    for p in params:
        _LAST_WRITE[p.data_ptr()] = plan.token


#: The functional entry point of ``optbook.Adafactor(..., fused=True)``: the
#: same lists of parameters, gradients, statistics and step counters as its
#: non-fused path, and the group's hyperparameters as keywords.
fused_adafactor = fused_adafactor_step
