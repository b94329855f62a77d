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
and block shape. A bucket is driven by a table of tiles built once
(``_Plan``): every launch covers all tensors of the bucket, reading each
tensor's addresses from an int64 pointer table. A GPT-2-sized model is one
bucket, so one step is 6 launches (a memset and 5 kernels) whatever the
number of tensors, plus one (the random seed) with stochastic rounding.
There is no host synchronisation: the per-tensor step :math:`t` is read on
the device, so the step can be captured in a CUDA graph (with the usual
rule that the first call, which builds the plan, happens before capture).

Host cost per step
------------------
Plans live in a :class:`PlanCache` per parameter group (an optimizer keeps
one per param group; the functional call one per first parameter), keyed on
what a plan depends on (the tensors, their shapes and dtypes, which optional
state exists, the block shape) and never evicted: a plan and its buffers
live as long as the group, so a captured graph never points at freed
memory. Everything is validated when a plan is built. A repeated step
compares only the addresses of the parameters and gradients and the
parameters' version counters, each list in one C-level ``map``
(:meth:`PlanCache.prepare`, :func:`run_plan`); a moved gradient rewrites
its column of the pointer table in place. Re-binding (``load_state_dict``,
``p.data = ...``, FSDP resharding) re-checks the tensors and re-decides the
16-byte alignment promise (``VEC``) from the new addresses: a misaligned
pointer runs the kernels without it, never with it. ``python -m
optbook.bench.host_overhead`` measures this host cost with the launches
stubbed.

Precision
---------
Parameters and gradients may be float32, bfloat16 or float16; the statistics
:math:`R, C, \hat V`, every partial sum and all arithmetic are float32. A
low-precision parameter is rounded to nearest (even) once per step; for
bfloat16 the rounding is written out on the bits, because Triton 3.9's
interpreter truncates float32 to bfloat16 where the GPU rounds, and the tests
must see what the GPU does. With ``stochastic_rounding=True`` a bfloat16
parameter is rounded as the eager path rounds it: 16 uniform random bits
(Philox, ``tl.randint``) added below the last kept bit, then truncation, so
it rounds away from zero with probability equal to the dropped fraction of
an ulp. The seed is drawn once per step from a ``torch.Generator`` into a
device tensor (no host synchronisation); the Philox counter of an element is
its offset plus :math:`2^{40}` times its tensor's index plus :math:`2^{56}`
times its bucket's, so a seeded run is reproducible.

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
parameter since. The kernels write through raw pointers, so after the
launches every tensor they wrote (parameters, statistics, counters,
momentum) gets its version counter bumped, as a torch in-place op would
(autograd then refuses a tensor saved before the step), and the plan
records the parameters' versions *after* its own bump. Any other write
since, version-counted (``module.load_state_dict``, ``p.mul_()`` under
``no_grad``, another plan's step when some gradients were ``None``), makes
the next step re-read :math:`X` in pass 1 (24 B instead of 20 B per float32
element), as does the first step. A write that bypasses the version counter,
such as ``p.data.copy_(...)``, must be followed by
:func:`invalidate_carried_rms`.

torch.compile
-------------
``fused_adafactor_op`` is the step registered as the custom op
``optbook::fused_adafactor_step`` with its mutated lists declared, so a
compiled ``optimizer.step()`` (``fullgraph=True``) records it as one call.

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
import operator
from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from optbook.kernels.layout import BlockConfig, as_matrix, block_config, use_block_config

__all__ = [
    "BlockConfig",
    "block_config",
    "use_block_config",
    "fused_adafactor_step",
    "fused_adafactor",
    "PlanCache",
    "run_plan",
    "fused_adafactor_op",
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
_PX_HOST, _PG_HOST, _PM_HOST = 0, 1, 5
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
def _to_param_dtype(x, XDT: tl.constexpr, SR: tl.constexpr, seed, offs):
    # Round to nearest even, written out for bfloat16: the GPU's cvt.rn does
    # this, but Triton 3.9's interpreter truncates float32 -> bfloat16, and
    # the tests must see the rounding the GPU does. With SR, bfloat16 rounds
    # stochastically as the eager path does: 16 uniform random bits added
    # below the last kept bit, then truncation, so x rounds away from zero
    # with probability equal to the dropped fraction of an ulp (unbiased).
    # The bits are Philox's for (seed, offs): one seed per step and bucket,
    # offs unique per element of the bucket, so a seeded run is reproducible.
    if XDT == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        if SR:
            bits = bits + (tl.randint(seed, offs) & 0xFFFF)
        else:
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
    tiles_ptr, meta_ptr, ptr_ptr, rsum_ptr, scale_ptr, xsq_ptr, bad_ptr, seed_ptr, salt,
    eps1, neg_c, decay, sign, one_minus_beta1,
    XDT: tl.constexpr, GDT: tl.constexpr, TDT: tl.constexpr,
    TILE_M: tl.constexpr, SUB_M: tl.constexpr, BLOCK_N: tl.constexpr,
    VEC: tl.constexpr, SEG_BLOCK: tl.constexpr, MOMENTUM: tl.constexpr, SR: tl.constexpr = False,
):
    """Pass 3: X_t = decay * X_{t-1} - scale * U_t (and V_t for vectors), and
    the partial sum of X_t^2 that the next step's alpha_{t+1} needs. With
    MOMENTUM, M_t = lerp(M_{t-1}, scale * U_t, 1 - beta1) and
    X_t = decay * X_{t-1} - M_t. A tensor flagged in pass 1 is left as it was.
    With SR a bfloat16 X_t is rounded stochastically (seed at seed_ptr, salted by the bucket)."""
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
    if SR:
        seed = tl.load(seed_ptr)
        # Philox counters: element offset + 2^40 * tensor + 2^56 * bucket (the salt).
        rand_base = (k.to(tl.int64) << 40) + (salt.to(tl.int64) << 56)
    else:
        seed = 0
        rand_base = 0
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
            x_new = _to_param_dtype(x_new, XDT, SR, seed, rand_base + offs)
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
            x_new = _to_param_dtype(x_new, XDT, SR, seed, rand_base + offs.to(tl.int64))
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
        self.all_members = members == list(range(len(params)))
        self.pick = operator.itemgetter(*members) if len(members) > 1 else (lambda seq, i=members[0]: (seq[i],))
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
        self.momentum = moms[members[0]] is not None
        self.count_skips = skips[members[0]] is not None
        # The widest 16-byte access the shapes allow; set_pointers lowers it to
        # 1 whenever a pointer of the bucket is not 16-byte aligned.
        self.vec_shape = vec
        self.vec = 1
        self.host_ptrs = torch.zeros((len(members), _NPTR_HOST), dtype=torch.int64)
        self.host_np = self.host_ptrs.numpy()  # the same memory, written without torch's dispatch
        # Allocated once: pointer updates are written into it in place, so a
        # CUDA graph that captured a step keeps reading the current table.
        self.ptrs = self.host_ptrs if dev.type == "cpu" else torch.zeros_like(self.host_ptrs, device=dev)
        self.set_pointers(params, grads, stats_r, stats_c, steps, moms, skips)

    def scratch_bytes(self) -> int:
        """Device bytes of the tables and partial-sum buffers this bucket keeps."""
        tensors = (self.tiles, self.segs, self.meta, self.rowpart, self.colpart, self.rsum, self.usq,
                   self.xsq, self.scale, self.bad, self.ptrs)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def set_pointers(self, params, grads, stats_r, stats_c, steps, moms, skips) -> None:
        """Write every address of the bucket's tensors into its pointer table,
        and re-decide the 16-byte alignment hint from them."""
        rows = []
        for i in self.members:
            c, mom, skip = stats_c[i], moms[i], skips[i]
            rows.append((
                params[i].data_ptr(),
                grads[i].data_ptr(),
                stats_r[i].data_ptr(),
                c.data_ptr() if c is not None else 0,
                steps[i].data_ptr(),
                mom.data_ptr() if mom is not None else 0,
                skip.data_ptr() if skip is not None else 0,
            ))
        self.host_np[:] = rows
        # The kernels tell the compiler, with VEC > 1, that X, G and M start
        # on a 16-byte boundary: never launch them so on a misaligned pointer.
        self.xm_aligned = not any(map(_MISALIGNED, (r[c] for r in rows for c in (_PX_HOST, _PM_HOST))))
        self.g_aligned = not any(map(_MISALIGNED, (r[_PG_HOST] for r in rows)))
        self.vec = self.vec_shape if self.xm_aligned and self.g_aligned else 1
        self._upload()

    def set_grad_pointers(self, grad_ptrs: tuple[int, ...]) -> None:
        """Only the gradients moved (``zero_grad(set_to_none=True)``): rewrite their column
        and re-decide the alignment hint, with no Python loop over the tensors."""
        picked = grad_ptrs if self.all_members else self.pick(grad_ptrs)
        self.host_np[:, _PG_HOST] = picked
        self.g_aligned = not any(map(_MISALIGNED, picked))
        self.vec = self.vec_shape if self.xm_aligned and self.g_aligned else 1
        self._upload()

    def _upload(self) -> None:
        if self.ptrs is not self.host_ptrs:
            if _capturing(self.device):
                raise RuntimeError(
                    "fused: a parameter, gradient or state tensor moved to a new address while a CUDA graph is "
                    "being captured; the pointer table cannot be uploaded inside a capture. Keep the tensors "
                    "static while capturing (the usual rule for CUDA graphs) and run one step before capture."
                )
            self.ptrs.copy_(self.host_ptrs.pin_memory(), non_blocking=True)

    def run(
        self, *, lr, eps1, eps2, d, neg_c, decay, sign, relative_step, scale_parameter, read_x, increment, beta1,
        seed: Tensor | None = None, salt: int = 0,
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
        sr = seed is not None and self.xdt == tl.bfloat16
        _update_kernel[(self.n_tiles,)](
            self.tiles, self.meta, self.ptrs, self.rsum, self.scale, self.xsq, self.bad,
            seed if sr else self.bad, salt, eps1, neg_c, decay, sign, 1.0 - beta1,
            XDT=self.xdt, GDT=self.gdt, TDT=self.tdt, SEG_BLOCK=128, MOMENTUM=self.momentum, SR=sr,
            **common, **warps,
        )


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    # A pinned staging copy lets the upload run asynchronously: no host sync.
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _capturing(device: torch.device) -> bool:
    """True while the current CUDA stream of ``device`` is being captured into a graph."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


# C-level accessors: a per-step check maps them over the tensor lists, with no
# Python bytecode per tensor.
_DATA_PTR = Tensor.data_ptr
_VERSION = operator.attrgetter("_version")
_SHAPE = operator.attrgetter("shape")
_NBYTES = operator.attrgetter("nbytes")
_IS_CONTIGUOUS = Tensor.is_contiguous
_DEREF = weakref.ref.__call__
_MISALIGNED = (15).__and__  # nonzero for an address that is not a multiple of 16
_PLUS_ONE = (1).__add__
_bump = torch._C._increment_version  # one C++ loop over a list (torch.autograd.graph.increment_version)


class _Plan:
    """The launch plan for one list of parameters: buckets, tile tables and
    scratch buffers, the addresses they were bound to, and the parameters'
    versions after the plan's last write (to trust the carried sum of X^2)."""

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
            vec = _vector_width(members, params, pdt, gdt)
            self.buckets.append(_Bucket(members, params, grads, stats_r, stats_c, steps, moms, skips, config, vec))
        self.device = params[0].device
        self.has_bf16 = any(bucket.xdt == tl.bfloat16 for bucket in self.buckets)
        # Weak references: the plan must not keep a model alive, and a new
        # tensor at an old address must not inherit the carried sum of X^2.
        self.refs = tuple(map(weakref.ref, params))
        self.shapes = tuple(map(_SHAPE, params))
        self.grad_nbytes = tuple(map(_NBYTES, grads))
        self.versions: tuple[int, ...] | None = None  # param._version after the plan's last write
        self._bind_state(stats_r, stats_c, steps, moms, skips)
        self.param_ptrs = tuple(map(_DATA_PTR, params))
        self.grad_ptrs = tuple(map(_DATA_PTR, grads))
        # Does one bump raise every parameter's version by exactly 1? Not if
        # some share a counter (views of one buffer) or appear twice; then
        # run_plan reads the versions back instead of predicting them.
        before = tuple(map(_VERSION, params))
        _bump(params)
        self.unit_bump = tuple(map(_VERSION, params)) == tuple(map(_PLUS_ONE, before))

    def _bind_state(self, stats_r, stats_c, steps, moms, skips) -> None:
        # The state the kernels write, bumped after each step. The plan holds
        # the tensors and their storages, so the memory its tables point at
        # outlives every launch, and every captured graph, of this plan.
        self.state = [t for t in (*stats_r, *stats_c, *steps, *moms, *skips) if t is not None]
        self.storages = [t.untyped_storage() for t in self.state]
        self.state_key = _state_key(stats_r, stats_c, steps, moms, skips)
        self.empty_steps = [s for s, shape in zip(steps, self.shapes) if math.prod(shape) == 0]

    def holds(self, params) -> bool:
        """True if these are the very tensors the plan was built for (one map, no Python per tensor)."""
        return len(params) == len(self.refs) and all(map(operator.is_, map(_DEREF, self.refs), params))

    def rebind(self, params, grads, stats_r, stats_c, steps, moms, skips) -> None:
        """New addresses for the same tensors (``load_state_dict``, ``p.data = ...``, FSDP
        resharding): rewrite the pointer tables and re-decide the alignment hint."""
        for bucket in self.buckets:
            bucket.set_pointers(params, grads, stats_r, stats_c, steps, moms, skips)
        self._bind_state(stats_r, stats_c, steps, moms, skips)
        self.param_ptrs = tuple(map(_DATA_PTR, params))
        self.grad_ptrs = tuple(map(_DATA_PTR, grads))
        self.versions = None  # a rebound parameter holds other values: re-read X

    def scratch_bytes(self) -> int:
        return sum(bucket.scratch_bytes() for bucket in self.buckets)


def _state_key(stats_r, stats_c, steps, moms, skips) -> tuple:
    """Identity and address of every state tensor: a change means re-check and rebind."""
    return tuple((id(t), t.data_ptr()) if t is not None else None for t in (*stats_r, *stats_c, *steps, *moms, *skips))


def _vector_width(members, params, pdt, gdt) -> int:
    """Elements per 16-byte access if every row of every tensor in the bucket
    starts a multiple of 16 bytes after its tensor's start, else 1. The
    pointers themselves are checked whenever they are bound
    (``_Bucket.set_pointers``): the compiler then issues 128-bit loads."""
    width = 16 // max(torch.empty((), dtype=pdt).element_size(), torch.empty((), dtype=gdt).element_size())
    for i in members:
        p = params[i]
        if p.dim() >= 2 and p.shape[-1] % width:
            return 1
    return width


class PlanCache:
    """The launch plans of one parameter group, for as long as the group exists.

    ``optbook.Adafactor`` keeps one per param group; the functional
    :func:`fused_adafactor_step` without ``plans=`` keeps one per first
    parameter (a weak reference: it dies with the model). Plans are keyed on
    what they depend on (which tensors, their shapes and dtypes, which
    optional state exists, the block shape) and never evicted, so the
    buffers a captured CUDA graph points at stay alive. A repeated step with
    the same tensors compares only the addresses of the parameters and
    gradients and the parameters' version counters (:meth:`prepare`);
    everything else was validated when the plan was built or last rebound.
    """

    def __init__(self) -> None:
        self.plans: dict[tuple, _Plan] = {}
        self.last: _Plan | None = None
        #: Set by the owner when the state tensors are known to be those the
        #: last plan was bound to (``optbook.Adafactor`` clears it whenever it
        #: replaces state: ``load_state_dict``, ``add_param_group``, unpickling).
        self.trust_state = False
        _CACHES.add(self)

    def clear(self) -> None:
        """Drop every plan (and its device buffers). Never while a captured graph may still use them."""
        self.plans.clear()
        self.last = None
        self.trust_state = False

    def scratch_bytes(self) -> int:
        return sum(plan.scratch_bytes() for plan in self.plans.values())

    def lookup(self, params, grads, stats_r, stats_c, steps, moms, skips) -> _Plan:
        """The plan for these lists, built (after every check) or rebound if needed."""
        key = _plan_key(params, grads, stats_c, moms, skips)
        plan = self.plans.get(key)
        if plan is not None and not plan.holds(params):
            plan = None  # other tensors with the ids of dead ones: nothing cached is about them
        if plan is None:
            _check_inputs(params, grads, stats_r, stats_c, steps, moms, skips)
            if _capturing(params[0].device):
                raise RuntimeError(
                    "fused: the first step of a parameter list (which builds its launch plan) cannot run "
                    "inside a CUDA graph capture; run one step before capturing, as for torch's optimizers."
                )
            plan = self.plans[key] = _Plan(params, grads, stats_r, stats_c, steps, moms, skips)
        elif (
            plan.state_key != _state_key(stats_r, stats_c, steps, moms, skips)
            or tuple(map(_DATA_PTR, params)) != plan.param_ptrs
            or tuple(map(_DATA_PTR, grads)) != plan.grad_ptrs
        ):
            _check_inputs(params, grads, stats_r, stats_c, steps, moms, skips)
            plan.rebind(params, grads, stats_r, stats_c, steps, moms, skips)
        self.last = plan
        return plan

    def prepare(self, params, grads, plan: _Plan | None = None) -> _Plan | None:
        """The last plan, ready for ``params`` and ``grads``, if nothing but the
        gradients' addresses changed since it was bound; else None (the caller
        then takes the full path, :func:`fused_adafactor_step`).

        ``grads`` must be the ``.grad`` of ``params``: torch's setter of
        ``.grad`` already refuses another shape, dtype or device. A gradient
        that moved is checked here for its size in bytes (so that not even a
        ``grad.data = ...`` swap, which bypasses the setter, makes a kernel
        read out of bounds), layout (a sparse tensor has no data pointer) and
        contiguity, all with C-level maps, and its address is re-checked for
        16-byte alignment. A caller that
        already knows ``plan`` was built for these very ``params`` passes it.
        """
        if plan is None:
            plan = self.last
            if plan is None or not plan.holds(params):
                return None
        if not self.trust_state:
            return None
        if tuple(map(_DATA_PTR, params)) != plan.param_ptrs:
            return None  # a parameter was rebound: re-check it on the full path
        try:
            grad_ptrs = tuple(map(_DATA_PTR, grads))
        except (RuntimeError, TypeError):
            return None  # no storage (a sparse gradient) or None: the full path refuses or re-plans
        if grad_ptrs != plan.grad_ptrs:
            if not (tuple(map(_NBYTES, grads)) == plan.grad_nbytes and all(map(_IS_CONTIGUOUS, grads))):
                return None
            for bucket in plan.buckets:
                bucket.set_grad_pointers(grad_ptrs)
            plan.grad_ptrs = grad_ptrs
        return plan


_CACHES: "weakref.WeakSet[PlanCache]" = weakref.WeakSet()
# The caches of the functional entry point, one per first parameter.
_FUNCTIONAL: "WeakIdKeyDictionary" = WeakIdKeyDictionary()


def _plan_key(params, grads, stats_c, moms, skips) -> tuple:
    """What a plan depends on: the tensors (by identity), their shapes and dtypes, which optional
    state they have, and the forced block shape. Addresses are not in it: they are rebound."""
    from optbook.kernels import layout

    return (layout._FORCED_CONFIG,) + tuple(
        (id(p), p.shape, p.dtype, None if g is None else g.dtype, c is None, m is None, k is None)
        for p, g, c, m, k in zip(params, grads, stats_c, moms, skips)
    )


def clear_plans() -> None:
    """Drop every cached plan (and its device buffers) of every cache; the next step rebuilds.

    Never call it while a captured CUDA graph that uses a plan may still be replayed.
    """
    for cache in list(_CACHES):
        cache.clear()
    _FUNCTIONAL.clear()


def cached_plan_bytes() -> int:
    r"""Device bytes held by every cached plan: tile tables and partial sums.

    This memory is not optimizer *state* (nothing in it survives a
    checkpoint) but it is resident between steps: about
    :math:`2 \cdot 4/128` bytes per element with 128 x 128 tiles.
    """
    return sum(cache.scratch_bytes() for cache in list(_CACHES))


def invalidate_carried_rms(params: Sequence[Tensor] | None = None) -> None:
    """Forget the carried :math:`\\sum X^2` so the next step re-reads the parameters.

    Needed only after writing a parameter in a way its version counter does
    not see (``p.data.copy_(...)``); ``None`` forgets it for every plan.
    """
    ids = None if params is None else {id(p) for p in params}
    for cache in list(_CACHES):
        for plan in cache.plans.values():
            if ids is None or any(id(ref()) in ids for ref in plan.refs):
                plan.versions = None


def launches_per_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor | torch.dtype] | None = None,
    *,
    stochastic_rounding: bool = False,
) -> int:
    """Kernel launches of one fused step over ``params``, counted on the plan
    the step would build (the same buckets, formed by ``_Plan``).

    A bucket holds the tensors of one (parameter dtype, gradient dtype, block
    shape); vectors join a matrix bucket of their dtypes. Each bucket launches
    a fill that zeroes its flags (torch ``zero_``), pass 1, pass 1b if it holds
    a matrix, pass 2 if it holds a matrix, pass 2b and pass 3: 6 launches, or 4
    for a bucket of vectors only. With ``stochastic_rounding`` and a bfloat16
    parameter the step adds one launch, the draw of its random seed.

    ``grads`` are the gradients or their dtypes (default: each parameter's
    dtype). Only shapes and dtypes are read, so meta tensors will do. Not
    counted: the host-to-device copy of a pointer table after a gradient
    moved, and the counter update of zero-size tensors with ``increment_steps``.
    """
    if grads is None:
        grads = [p.dtype for p in params]
    if len(grads) != len(params):
        raise ValueError(
            f"launches_per_step: got {len(params)} parameters but {len(grads)} gradients; "
            "pass one gradient (or gradient dtype) per parameter, or none."
        )
    gdts = [g if isinstance(g, torch.dtype) else g.dtype for g in grads]
    for i, (p, gdt) in enumerate(zip(params, gdts)):
        if p.dtype not in _SUPPORTED or gdt not in _SUPPORTED:
            raise ValueError(
                f"launches_per_step: params[{i}] has dtype {p.dtype} and gradient dtype {gdt}; the fused kernel "
                "supports float32, bfloat16 and float16 only."
            )
    if not any(p.numel() for p in params):
        return 0
    # Stand-ins with the shapes and dtypes but one element of storage each:
    # the plan reads only shapes, dtypes and addresses.
    xs = [torch.empty((), dtype=p.dtype).expand(p.shape) for p in params]
    gs = [torch.empty((), dtype=gdt).expand(p.shape) for p, gdt in zip(params, gdts)]
    state = [torch.zeros(1) for _ in params]
    nones = [None] * len(params)
    plan = _Plan(xs, gs, state, nones, state, nones, nones)
    per_bucket = [3 + bool(b.n_segs) + bool(b.n_matrix_tiles) + 1 for b in plan.buckets]
    return sum(per_bucket) + int(bool(stochastic_rounding) and plan.has_bf16)

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
    stochastic_rounding: bool = False,
    generator: torch.Generator | None = None,
    seed: Tensor | None = None,
    plans: PlanCache | None = None,
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

    With ``stochastic_rounding=True`` bfloat16 parameters are rounded
    stochastically (the eager path's distribution: 16 uniform random bits
    added below the last kept bit, then truncation), with Philox bits from
    a seed drawn once per step from ``generator`` (a ``torch.Generator`` on
    the parameters' device; ``None``: torch's default one), so a seeded run
    is reproducible (or from ``seed``, a one-element int64 tensor on the
    device, if given). float32 and float16 parameters are not affected.

    ``plans`` is the :class:`PlanCache` to keep the launch plan in (an
    optimizer passes one per param group); ``None`` uses a cache tied to
    ``params[0]``. Every tensor written (parameters, statistics, counters,
    momentum) has its version counter bumped after the launches.
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
    if not isinstance(stochastic_rounding, bool):
        raise TypeError(f"fused: stochastic_rounding must be True or False, got {stochastic_rounding!r}.")
    if generator is not None and (
        not isinstance(generator, torch.Generator) or generator.device.type != params[0].device.type
    ):
        raise ValueError(
            f"fused: generator must be a torch.Generator on {params[0].device.type} (the parameters' device) or "
            f"None, got {generator!r}."
        )
    if plans is not None and not isinstance(plans, PlanCache):
        raise TypeError(f"fused: plans must be a PlanCache or None, got {type(plans).__name__}.")
    if plans is None:
        plans = _FUNCTIONAL.get(params[0])
        if plans is None:
            plans = _FUNCTIONAL[params[0]] = PlanCache()
    plan = plans.lookup(params, grads, stats_r, stats_c, steps, moms, skips)
    run_plan(
        plan, params, lr=lr, decay_exponent=decay_exponent, eps1=eps1, eps2=eps2, d=d, weight_decay=weight_decay,
        relative_step=relative_step, scale_parameter=scale_parameter, maximize=maximize,
        increment_steps=increment_steps, beta1=beta1, stochastic_rounding=stochastic_rounding, generator=generator,
        seed=seed,
    )


def run_plan(
    plan: _Plan, params: Sequence[Tensor], *, lr: float, decay_exponent: float, eps1: float, eps2: float, d: float,
    weight_decay: float, relative_step: bool, scale_parameter: bool, maximize: bool, increment_steps: bool,
    beta1: float | None, stochastic_rounding: bool = False, generator: torch.Generator | None = None,
    seed: Tensor | None = None,
) -> None:
    """Launch a plan that :meth:`PlanCache.lookup` or :meth:`PlanCache.prepare` returned for ``params``.

    The carried :math:`\\sum X^2` is trusted when every parameter's version
    counter is what this plan's own last step left; then the version of
    every tensor written (parameters and state) is bumped, as an in-place
    torch op would, so autograd refuses a tensor saved before the step.
    """
    versions = tuple(map(_VERSION, params))
    read_x = bool(scale_parameter) and versions != plan.versions
    if not (stochastic_rounding and plan.has_bf16):
        seed = None
    elif seed is None:
        # One draw per step, kept on the device (no host sync); buckets salt it with their index.
        seed = torch.randint(0, 1 << 62, (1,), dtype=torch.int64, device=plan.device, generator=generator)
    for b, bucket in enumerate(plan.buckets):
        bucket.run(
            seed=seed, salt=b,
            lr=float(lr), eps1=float(eps1), eps2=float(eps2), d=float(d), neg_c=-float(decay_exponent),
            decay=1.0 - float(lr) * float(weight_decay), sign=-1.0 if maximize else 1.0,
            relative_step=bool(relative_step), scale_parameter=bool(scale_parameter), read_x=read_x,
            increment=bool(increment_steps), beta1=0.0 if beta1 is None else float(beta1),
        )
    if increment_steps and plan.empty_steps:
        # Zero-size tensors are in no bucket; their counters still advance.
        torch._foreach_add_(plan.empty_steps, 1.0)
    # The kernels wrote through raw pointers, which version counters do not see.
    _bump(params)
    _bump(plan.state)
    plan.versions = tuple(map(_PLUS_ONE, versions)) if plan.unit_bump else tuple(map(_VERSION, params))


@torch.library.custom_op(
    "optbook::fused_adafactor_step",
    mutates_args=("params", "stats_r", "stats_c", "steps", "exp_avgs", "nonfinite_skips"),
)
def fused_adafactor_op(
    params: list[Tensor],
    grads: list[Tensor],
    stats_r: list[Tensor],
    stats_c: list[Tensor],
    steps: list[Tensor],
    exp_avgs: list[Tensor],
    nonfinite_skips: list[Tensor],
    c_index: list[int],
    lr: float,
    decay_exponent: float,
    eps1: float,
    eps2: float,
    d: float,
    weight_decay: float,
    relative_step: bool,
    scale_parameter: bool,
    maximize: bool,
    increment_steps: bool,
    beta1: float | None,
    stochastic_rounding: bool = False,
    seed: Tensor | None = None,
) -> None:
    """:func:`fused_adafactor_step` as a torch custom op, which ``torch.compile`` records as one
    call that mutates its list arguments (no graph break).

    A custom op's schema has no list of optional tensors, so ``stats_c``
    holds only the column statistics of the factored tensors and
    ``c_index[i]`` says which one belongs to ``params[i]`` (``-1``: none);
    ``exp_avgs`` and ``nonfinite_skips`` are empty lists for "absent".
    A schema cannot hold a ``torch.Generator``: with ``stochastic_rounding``
    the caller passes ``seed``, a one-element int64 tensor on the device
    (``None``: drawn from torch's default generator).
    Under ``torch.compile`` the functionalised graph may call it on copies
    of the mutated tensors and copy them back: correct, but each such call
    plans afresh, as the addresses are new (inductor's re-inplacing avoids
    the copies).
    """
    cols = [stats_c[i] if i >= 0 else None for i in c_index]
    fused_adafactor_step(
        params, grads, stats_r, cols, steps, lr=lr, decay_exponent=decay_exponent, eps1=eps1, eps2=eps2, d=d,
        weight_decay=weight_decay, relative_step=relative_step, scale_parameter=scale_parameter, maximize=maximize,
        increment_steps=increment_steps, beta1=beta1, exp_avgs=list(exp_avgs) if exp_avgs else None,
        nonfinite_skips=list(nonfinite_skips) if nonfinite_skips else None,
        stochastic_rounding=stochastic_rounding, seed=seed,
    )


@fused_adafactor_op.register_fake
def _fused_adafactor_op_fake(params, grads, stats_r, stats_c, steps, exp_avgs, nonfinite_skips, c_index, lr,
                             decay_exponent, eps1, eps2, d, weight_decay, relative_step, scale_parameter, maximize,
                             increment_steps, beta1, stochastic_rounding=False, seed=None) -> None:
    return None  # everything happens in place; no new tensor


#: The functional entry point of ``optbook.Adafactor(..., fused=True)``: the
#: same lists of parameters, gradients, statistics and step counters as its
#: non-fused path, and the group's hyperparameters as keywords.
fused_adafactor = fused_adafactor_step
