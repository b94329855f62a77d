"""The numba kernels of :mod:`optbook.kernels.cpu_fused` (imported lazily: compiling needs numba).

Tensors reach the kernels as int64 addresses (one table per list), turned into
arrays with :func:`numba.carray`: one loop per pass covers a range of the
tiles of every tensor of a dtype (:func:`step_tensors`: all passes of a range
of tensors). The parameter dtype is a compile-time choice,
carried by the dtype of an empty ``mark`` array: float32, uint16 (the bits of
bfloat16) or int16 (the bits of float16). No ``fastmath``: every sum is
evaluated in the order written (see the module docstring of ``cpu_fused``).

Every kernel is serial and runs the tiles (or tensors) ``lo:hi`` of its table
with the GIL released: :mod:`optbook.kernels.cpu_fused` shares the tiles out
between the calling thread and its helper threads (no numba thread pool).
"""

from __future__ import annotations

import warnings

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

# Compiling these kernels for some targets (numba's generic CPU, bfloat16 with stochastic rounding)
# trips one of numba's internal "pedantic" checks, which prints a NumbaIRAssumptionWarning asking for
# a bug report to numba; the compiled code is the same and the exactness tests pass under every
# target. Silence that category for this file's kernels only, so that a first (cold) compilation
# prints nothing into a user's notebook.
PEDANTIC_WARNING_MODULE = r".*_cpu_fused_numba"


def silence_pedantic_ir_warnings() -> None:
    """Ignore ``NumbaIRAssumptionWarning`` raised while compiling this file's kernels, and nothing else.

    Installed on import, and again by ``cpu_fused`` before a step if the filter has gone: a
    ``warnings.catch_warnings()`` block around the first step (the import) restores the filters
    when it exits, and a kernel compiled later for a new signature would then print the warning.
    The check is cheap and the filter list is changed only when the filter is missing, so other
    warnings' "once" bookkeeping is not reset at every step.
    """
    for action, _, category, module, _ in warnings.filters:
        if action == "ignore" and category is NumbaIRAssumptionWarning and module is not None \
                and module.pattern == PEDANTIC_WARNING_MODULE:
            return
    warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning, module=PEDANTIC_WARNING_MODULE)


silence_pedantic_ir_warnings()

_OPTS = dict(cache=True, nogil=True, error_model="numpy")
#: The accumulators of a sum (``cpu_fused.LANES``), a compile-time constant: LLVM unrolls the loop over them
#: and keeps them in vector registers (each lane still sums its own entries in order, at any SIMD width).
LANES = 64
# The largest finite float32. The eager path sums G^2 in the statistics dtype (float32) and skips a
# tensor whose total is not finite; the kernel sums in float64, where 1e20^2 is still finite, so it
# compares the total with this bound instead: a tensor is skipped exactly when a float32 total would
# have overflowed (up to the rounding of the last addition at the boundary).
F32_MAX = 3.4028234663852886e38


def _serial(func):
    """``njit`` with the options above (cached on disk, GIL released)."""
    return njit(**_OPTS)(func)


@intrinsic
def _ptr(typingctx, addr, mark):
    ptrty = types.CPointer(mark.dtype)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(ptrty))

    return ptrty(types.int64, mark), codegen


@intrinsic
def _f32ptr(typingctx, addr):
    ptrty = types.CPointer(types.float32)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(ptrty))

    return ptrty(types.int64), codegen


@intrinsic
def _f32_bits(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, b):
    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(types.int64), codegen


def ld(a, k):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def st(a, k, v, sr, seed, koff):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@njit(inline="always", cache=True)
def _rand16(seed, k):
    """16 random bits for element k: a murmur3 finaliser of (k // 2, seed), half of it."""
    m32 = np.uint64(0xFFFFFFFF)
    h = (np.uint64(k >> 1) * np.uint64(0x9E3779B1) + (np.uint64(seed) & m32)) & m32
    h ^= np.uint64(seed >> 32) & m32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & m32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & m32
    h ^= h >> np.uint64(16)
    return np.int64((h >> np.uint64((k & 1) * 16)) & np.uint64(0xFFFF))


@njit(cache=True)  # not inlined at numba IR level: LLVM inlines it (and numba warns about the phis)
def _half_to_f64(h):
    """float16 bits -> float64 (exact): normal, inf and NaN through float32 bits, subnormal by a product."""
    h = np.int64(h) & 0xFFFF
    e = (h >> 10) & 31
    mn = h & 1023
    e32 = np.int64(255) if e == 31 else e + 112
    v = np.float64(_bits_f32((e32 << 23) | (mn << 13)))
    sub = mn * 5.9604644775390625e-08  # 2**-24
    mag = sub if e == 0 else v
    return -mag if h >= 0x8000 else mag


@njit(inline="always", cache=True)
def _f32_to_half(x, sr, r):
    """float32 -> float16 bits: to nearest even, or stochastically (r: 13 random bits) in the normal range."""
    b = _f32_bits(x)
    s = (b >> 16) & 0x8000
    b &= 0x7FFFFFFF
    if b >= 0x47800000:  # >= 65536, inf or NaN
        h = 0x7E00 if b > 0x7F800000 else 0x7C00
    elif b < 0x38800000:  # below the smallest normal float16: to nearest even
        h = np.int64(np.rint(np.float64(_bits_f32(b)) * 16777216.0))
    else:
        if sr:
            b += r & 0x1FFF
            h = (b - 0x38000000) >> 13
        else:
            h = (b - 0x38000000) >> 13
            rem = b & 0x1FFF
            if rem > 0x1000 or (rem == 0x1000 and (h & 1)):
                h += 1
        if h > 0x7C00:
            h = 0x7C00
    return s | h


@overload(ld, inline="always")
def _ld(a, k):
    if a.dtype == types.float32:
        return lambda a, k: a[k]
    if a.dtype == types.uint16:
        return lambda a, k: _bits_f32(np.int64(a[k]) << 16)
    if a.dtype == types.int16:
        return lambda a, k: np.float32(_half_to_f64(a[k]))


@overload(st, inline="always")
def _st(a, k, v, sr, seed, koff):
    if a.dtype == types.float32:
        def impl(a, k, v, sr, seed, koff):
            a[k] = v
            return v
        return impl
    if a.dtype == types.uint16:
        def impl(a, k, v, sr, seed, koff):
            b = _f32_bits(v)
            if sr:
                b += _rand16(seed, koff + k)
            else:
                b += 0x7FFF + ((b >> 16) & 1)
            h = (b >> 16) & 0xFFFF
            a[k] = np.uint16(h)
            return _bits_f32(h << 16)
        return impl
    if a.dtype == types.int16:
        def impl(a, k, v, sr, seed, koff):
            h = _f32_to_half(v, sr, _rand16(seed, koff + k) if sr else 0)
            a[k] = np.int16(h - 65536 if h >= 32768 else h)
            return np.float32(_half_to_f64(h))
        return impl


# ---------------------------------------------------------------------- factored tensors

@njit(inline="always", cache=True)
def _lanes_total(buf, at):
    """buf[0] + ... + buf[W-1] in a fixed pairwise tree (W a power of two), then + at.

    Level by level, buf[l] += buf[l + h] for h = W/2, W/4, ..., 1: every level is a loop over
    independent lanes (vectorised at any width, never reassociated), log2(W) adds deep."""
    h = buf.shape[0] >> 1
    while h >= 1:
        for l in range(h):
            buf[l] += buf[l + h]
        h >>= 1
    return buf[0] + at


# A sum runs in LANES accumulators buf[l] (element q * LANES + l of a row slice goes to lane l): LLVM
# vectorises the loop over l in whatever width the CPU has, lane by lane, without reassociating any sum.
# A row's last (L mod lanes) entries go to one scalar tail sum, in order.
#
# Row sums of G^2 (pass 1) are per row, in float64 lanes (the square of a float32 number is exact in
# float64). The sums of squares of X (pass 1 re-read, pass 3) and of U (pass 2), which only scale the step,
# square and add in float32 lanes within a row slice (at most COL_BLOCK / LANES = 32 terms a lane), which
# are then added lane by lane into float64 lanes that run on from row to row of the tile (one tree per
# tile); the rows' tail squares are added in float64, in row order. Pass 1's re-read of X and pass 3 use the
# same order, so a carried and a recomputed sum of squares of X are the same bits.


@njit(inline="always", cache=True)
def _flush(b32, buf):
    """buf[l] += b32[l] (float32 lanes into float64 lanes); b32 <- 0."""
    for l in range(LANES):
        buf[l] += np.float64(b32[l])
        b32[l] = 0.0

@njit(inline="always", cache=True)
def _sq_acc(X, buf, b32):
    """Adds the squares of the row slice X into the lanes buf (through the float32 lanes b32, zero on entry
    and on exit); returns the sum of squares of its tail."""
    W = LANES
    L = X.shape[0]
    for q in range(L // W):
        Xq = X[q * W:q * W + W]
        for l in range(W):
            v = ld(Xq, l)
            b32[l] += v * v
    _flush(b32, buf)
    at = 0.0
    for k in range((L // W) * W, L):
        v = ld(X, k)
        at += np.float64(v * v)
    return at


@njit(inline="always", cache=True)
def _sq_row_col(G, cq, buf):
    """The sum of squares of the row slice G; adds each square into cq."""
    W = LANES
    L = G.shape[0]
    for l in range(W):
        buf[l] = 0.0
    for q in range(L // W):
        Gq = G[q * W:q * W + W]
        cqq = cq[q * W:q * W + W]
        for l in range(W):
            v = np.float64(ld(Gq, l))
            v *= v
            buf[l] += v
            cqq[l] += v
    at = 0.0
    for k in range((L // W) * W, L):
        v = np.float64(ld(G, k))
        v *= v
        at += v
        cq[k] += v
    return _lanes_total(buf, at)


@njit(inline="always", cache=True)
def _usq_acc(G, cf, f, buf, b32):
    """Adds U_j^2 = ((G_j f) cf_j)^2 over the row slice into the lanes buf as :func:`_sq_acc` adds X^2 (all in
    float32, f a float32 row factor); returns the sum over its tail."""
    W = LANES
    L = G.shape[0]
    for q in range(L // W):
        Gq = G[q * W:q * W + W]
        cfq = cf[q * W:q * W + W]
        for l in range(W):
            v = (ld(Gq, l) * f) * cfq[l]
            b32[l] += v * v
    _flush(b32, buf)
    at = 0.0
    for k in range((L // W) * W, L):
        v = (ld(G, k) * f) * cf[k]
        at += np.float64(v * v)
    return at


@_serial
def pass1(lo, hi, tiles, meta, gp, xp, need_x, rowpart, colpart, part_x, lanes, mark):
    """Partial row sums (per tile column block) and column sums (per tile row block) of G^2."""
    for it in range(lo, hi):
        t, b, ri, ci = tiles[it, 0], tiles[it, 1], tiles[it, 2], tiles[it, 3]
        nb, M, n, m, cb, ncb, rb, nrb, row0, col0 = meta[t, 0], meta[t, 1], meta[t, 2], meta[t, 3], meta[t, 4], \
            meta[t, 5], meta[t, 6], meta[t, 7], meta[t, 8], meta[t, 9]
        G = carray(_ptr(gp[t], mark), (nb * n * m,))
        X = carray(_ptr(xp[t], mark), (nb * n * m,))
        r0 = ri * rb
        r1 = min(n, r0 + rb)
        c0 = ci * cb
        c1 = min(m, c0 + cb)
        a = b // M
        mid = b - a * M
        cbase = col0 + (b * nrb + ri) * m
        cq = colpart[cbase + c0:cbase + c1]
        cq[:] = 0.0
        buf = np.empty(LANES)
        b32 = np.zeros(LANES, dtype=np.float32)
        # One row at a time: two rows sharing one pass over cq (the same sums, in the same order) ran slower
        # here, 2.7x in a microbenchmark (five arrays in the loop instead of three).
        for r in range(r0, r1):
            row = (a * n + r) * M + mid
            base = row * m
            rowpart[row0 + row * ncb + ci] = _sq_row_col(G[base + c0:base + c1], cq, buf)
        xs = 0.0
        if need_x[t]:
            for l in range(LANES):
                buf[l] = 0.0
            for r in range(r0, r1):
                base = ((a * n + r) * M + mid) * m
                xs += _sq_acc(X[base + c0:base + c1], buf, b32)
            xs = _lanes_total(buf, xs)
        part_x[it] = xs


@_serial
def reduce1(lo, hi, meta, rp, cp, rowpart, colpart, b2, w, eps1, rowf, colf, colf32, fin):
    """R_t, C_t and the finite flag from the partial sums; then the factors of 1/sqrt(V).

    Leaves in rowf the factor sqrt(1^T R) / sqrt(R_i) and in colf32 1 / sqrt(C_j) (float32; colf is
    scratch).
    """
    for t in range(lo, hi):
        nb, M, n, m, ncb, nrb, row0, col0, rf0, cf0 = meta[t, 0], meta[t, 1], meta[t, 2], meta[t, 3], \
            meta[t, 5], meta[t, 7], meta[t, 8], meta[t, 9], meta[t, 10], meta[t, 11]
        R = carray(_f32ptr(rp[t]), (nb * n,))
        C = carray(_f32ptr(cp[t]), (nb * m,))
        total = 0.0
        for row in range(nb * n):
            s = 0.0
            for ci in range(ncb):
                s += rowpart[row0 + row * ncb + ci]
            rowf[rf0 + row] = s
            total += s
        for c in range(nb * m):
            colf[cf0 + c] = 0.0
        for b in range(nb):
            for ri in range(nrb):
                o = col0 + (b * nrb + ri) * m
                for j in range(m):
                    colf[cf0 + b * m + j] += colpart[o + j]
        ok = total <= F32_MAX  # also False for inf and NaN
        fin[t] = ok
        if ok:
            for row in range(nb * n):
                R[row] = np.float32(b2[t] * R[row] + w[t] * (rowf[rf0 + row] + m * eps1))
            for c in range(nb * m):
                C[c] = np.float32(b2[t] * C[c] + w[t] * (colf[cf0 + c] + n * eps1))
        for b in range(nb):
            a = b // M
            mid = b - a * M
            sr = 0.0
            for r in range(n):
                sr += np.float64(R[(a * n + r) * M + mid])
            sq = np.sqrt(sr)
            for r in range(n):
                row = (a * n + r) * M + mid
                rowf[rf0 + row] = sq / np.sqrt(np.float64(R[row]))
            for j in range(m):
                colf32[cf0 + b * m + j] = np.float32(1.0 / np.sqrt(np.float64(C[b * m + j])))


@_serial
def pass2(lo, hi, tiles, meta, gp, fin, rowf, colf, part_u, lanes, mark):
    """Partial sums of U^2 = (G_ij rowf_i colf_j)^2 per tile."""
    for it in range(lo, hi):
        t, b, ri, ci = tiles[it, 0], tiles[it, 1], tiles[it, 2], tiles[it, 3]
        if not fin[t]:
            part_u[it] = 0.0
            continue
        nb, M, n, m, cb, rb, rf0, cf0 = meta[t, 0], meta[t, 1], meta[t, 2], meta[t, 3], meta[t, 4], meta[t, 6], \
            meta[t, 10], meta[t, 11]
        G = carray(_ptr(gp[t], mark), (nb * n * m,))
        r0 = ri * rb
        r1 = min(n, r0 + rb)
        c0 = ci * cb
        c1 = min(m, c0 + cb)
        a = b // M
        mid = b - a * M
        cf = colf[cf0 + b * m + c0:cf0 + b * m + c1]
        buf = np.empty(LANES)
        b32 = np.zeros(LANES, dtype=np.float32)
        for l in range(LANES):
            buf[l] = 0.0
        us = 0.0
        for r in range(r0, r1):
            row = (a * n + r) * M + mid
            base = row * m
            us += _usq_acc(G[base + c0:base + c1], cf, np.float32(rowf[rf0 + row]), buf, b32)
        part_u[it] = _lanes_total(buf, us)


@njit(inline="always", cache=True)
def _update(X, G, Mo, k, rs, cf, decay, sign, momentum, weight, sr, seed, koff):
    """X[k] <- decay X[k] + sign U (or - the momentum of U), U = (G[k] rs) cf, in float32 in the eager
    path's order (``addcmul_``, ``lerp_``); rounded into X's dtype. Returns the stored value (float32)."""
    u = (ld(G, k) * rs) * cf
    if momentum:
        mo = Mo[k]
        if weight < 0.5:
            mo = mo + weight * (u - mo)
        else:
            mo = u - (u - mo) * (np.float32(1.0) - weight)
        Mo[k] = mo
        x = ld(X, k) * decay - mo
    else:
        x = ld(X, k) * decay + sign * u
    return st(X, k, x, sr, seed, koff)


@njit(inline="always", cache=True)
def _row3(X, G, Mo, cf, rs, decay, sign, momentum, weight, sr, seed, koff, buf, b32):
    """Pass 3 on one row slice; adds the squares of what it stored into the lanes buf (as _sq_acc adds them)
    and returns the sum of squares of its tail."""
    W = LANES
    L = G.shape[0]
    for q in range(L // W):
        o = q * W
        Xq, Gq, cfq = X[o:o + W], G[o:o + W], cf[o:o + W]
        Mq = Mo[o:o + W] if momentum else Mo
        for l in range(W):
            v = _update(Xq, Gq, Mq, l, rs, cfq[l], decay, sign, momentum, weight, sr, seed, koff + o)
            b32[l] += v * v
    _flush(b32, buf)
    at = 0.0
    for k in range((L // W) * W, L):
        v = _update(X, G, Mo, k, rs, cf[k], decay, sign, momentum, weight, sr, seed, koff)
        at += np.float64(v * v)
    return at


@_serial
def pass3(lo, hi, tiles, meta, gp, xp, mp, fin, rowf, colf, scale, decay, sign, momentum, weight, sr, seeds, part_x, lanes,
          mark):
    """The update of X (and the momentum), and the partial sums of squares of the written X."""
    for it in range(lo, hi):
        t, b, ri, ci = tiles[it, 0], tiles[it, 1], tiles[it, 2], tiles[it, 3]
        if not fin[t]:
            part_x[it] = 0.0
            continue
        nb, M, n, m, cb, rb, rf0, cf0 = meta[t, 0], meta[t, 1], meta[t, 2], meta[t, 3], meta[t, 4], meta[t, 6], \
            meta[t, 10], meta[t, 11]
        size = nb * n * m
        G = carray(_ptr(gp[t], mark), (size,))
        X = carray(_ptr(xp[t], mark), (size,))
        Mo = carray(_f32ptr(mp[t]), (size if momentum else 0,))
        seed = seeds[t]
        s = scale[t]
        decay32, sign32, weight32 = np.float32(decay), np.float32(sign), np.float32(weight)
        r0 = ri * rb
        r1 = min(n, r0 + rb)
        c0 = ci * cb
        c1 = min(m, c0 + cb)
        a = b // M
        mid = b - a * M
        cf = colf[cf0 + b * m + c0:cf0 + b * m + c1]
        buf = np.empty(LANES)
        b32 = np.zeros(LANES, dtype=np.float32)
        for l in range(LANES):
            buf[l] = 0.0
        xs = 0.0
        for r in range(r0, r1):
            row = (a * n + r) * M + mid
            base = row * m
            rs = np.float32(rowf[rf0 + row] * s)
            Xr, Gr = X[base + c0:base + c1], G[base + c0:base + c1]
            k0 = base + c0
            # One loop per option set, so that no branch is left inside the loop.
            if momentum:
                Mr = Mo[base + c0:base + c1]
                if sr:
                    xs += _row3(Xr, Gr, Mr, cf, rs, decay32, sign32, True, weight32, True, seed, k0, buf, b32)
                else:
                    xs += _row3(Xr, Gr, Mr, cf, rs, decay32, sign32, True, weight32, False, seed, k0, buf, b32)
            elif sr:
                xs += _row3(Xr, Gr, Mo, cf, rs, decay32, sign32, False, weight32, True, seed, k0, buf, b32)
            else:
                xs += _row3(Xr, Gr, Mo, cf, rs, decay32, sign32, False, weight32, False, seed, k0, buf, b32)
        part_x[it] = _lanes_total(buf, xs)


@njit(**_OPTS)
def bump_steps(ptrs, t):
    """step += 1 in float32 for each 0-d float32 step counter at ptrs (as torch._foreach_add_(steps, 1.0));
    t gets the new values."""
    for i in range(ptrs.shape[0]):
        s = carray(_f32ptr(ptrs[i]), (1,))
        v = np.float32(s[0] + np.float32(1.0))
        s[0] = v
        t[i] = v


@njit(**_OPTS)
def tile_sums(tiles, part_x, part_u, fx, fu):
    """Per-tensor totals of the tiles' partial sums, in tile order."""
    for it in range(tiles.shape[0]):
        t = tiles[it, 0]
        fx[t] += part_x[it]
        fu[t] += part_u[it]


# ---------------------------------------------------------------------- vectors (full V)

@_serial
def vpass1(lo, hi, vtiles, vmeta, gp, xp, vp, need_x, b2, w, eps1, part_g, part_u, part_x, mark):
    """Per tile: the sum of G^2 (for the finite flag), of U^2 with the new V (not yet stored), of X^2 if
    needed."""
    for it in range(lo, hi):
        t, c = vtiles[it, 0], vtiles[it, 1]
        numel = vmeta[t, 0]
        G = carray(_ptr(gp[t], mark), (numel,))
        V = carray(_f32ptr(vp[t]), (numel,))
        k0 = c * 32768
        k1 = min(numel, k0 + 32768)
        gs = us = xs = 0.0
        for k in range(k0, k1):
            g = np.float64(ld(G, k))
            g2 = g * g
            gs += g2
            v = np.float64(np.float32(b2[t] * V[k] + w[t] * (g2 + eps1)))
            us += g2 / v
        if need_x[t]:
            X = carray(_ptr(xp[t], mark), (numel,))
            for k in range(k0, k1):
                x = np.float64(ld(X, k))
                xs += x * x
        part_g[it], part_u[it], part_x[it] = gs, us, xs


@njit(**_OPTS)
def vsums(vmeta, part_g, part_u, part_x, fin, vx, vu):
    """Per-vector totals of the tiles' partial sums, in tile order (and the finite flag, if fin is not
    empty)."""
    for t in range(vmeta.shape[0]):
        gs = 0.0
        vx[t] = 0.0
        vu[t] = 0.0
        for it in range(vmeta[t, 1], vmeta[t, 1] + vmeta[t, 2]):
            gs += part_g[it]
            vu[t] += part_u[it]
            vx[t] += part_x[it]
        if fin.shape[0]:
            fin[t] = gs <= F32_MAX  # also False for inf and NaN


@_serial
def vpass3(lo, hi, vtiles, vmeta, gp, xp, vp, mp, fin, b2, w, eps1, scale, decay, sign, momentum, weight, sr, seeds,
           part_x, mark):
    """Store V and update X (and the momentum): U = G / sqrt(V) in float32, X as pass 3 updates it. Partial
    sums of squares of the written X."""
    decay32, sign32, weight32 = np.float32(decay), np.float32(sign), np.float32(weight)
    for it in range(lo, hi):
        t, c = vtiles[it, 0], vtiles[it, 1]
        if not fin[t]:
            part_x[it] = 0.0
            continue
        numel = vmeta[t, 0]
        G = carray(_ptr(gp[t], mark), (numel,))
        X = carray(_ptr(xp[t], mark), (numel,))
        V = carray(_f32ptr(vp[t]), (numel,))
        Mo = carray(_f32ptr(mp[t]), (numel if momentum else 0,))
        s32 = np.float32(scale[t])
        k0 = c * 32768
        k1 = min(numel, k0 + 32768)
        xs = 0.0
        for k in range(k0, k1):
            g = np.float64(ld(G, k))
            v32 = np.float32(b2[t] * V[k] + w[t] * (g * g + eps1))
            V[k] = v32
            r32 = np.float32(1.0 / np.sqrt(np.float64(v32)))
            x = np.float64(_update(X, G, Mo, k, r32, s32, decay32, sign32, momentum, weight32, sr, seeds[t], 0))
            xs += x * x
        part_x[it] = xs


# ---------------------------------------------------------------------- the step scale; whole tensors

@njit(inline="always", cache=True)
def _scale_one(usq, xsq, numel, d, rho, eps2, scale_parameter):
    """alpha_t / max(1, RMS(U_t) / d) from the sums of squares, rounded to float32 as the eager path rounds
    it: alpha_t = max(eps2, RMS(X_{t-1})) rho_t if scale_parameter, else rho_t."""
    c = np.sqrt(usq / numel) / d
    clip = np.float32(c if c > 1.0 else 1.0)
    if scale_parameter:
        rms = np.float32(np.sqrt(np.float64(np.float32(xsq))) / np.sqrt(numel))
        e = np.float32(eps2)
        alpha = (rms if rms > e else e) * np.float32(rho)
    else:
        alpha = np.float32(rho)
    return np.float64(alpha / clip)


@njit(**_OPTS)
def scales(usq, xsq, numel, d, rho, eps2, scale_parameter, factor, out):
    """out[t] = factor * _scale_one(...) for every tensor t."""
    for t in range(out.shape[0]):
        out[t] = _scale_one(usq[t], xsq[t], numel[t], d, rho[t], eps2, scale_parameter) * factor


@njit(**_OPTS)
def step_tensors(lo, hi, tile0, tiles, meta, gp, xp, mp, rp, cp, need_x, b2, w, eps1, rho, eps2, d,
                 scale_parameter, factor, decay, sign, momentum, weight, sr, seeds, numel, rowpart, colpart,
                 part_x, part_u, rowf, colf, colf32, fin, scale, usq, xsq, mark):
    """The whole step of the factored tensors lo:hi, one after the other: pass 1, R and C, pass 2, the
    scale, pass 3, with the same tiles and in the same order as the passes over all tensors (the same bits),
    while a tensor's G is still in cache. xsq[t] holds the carried sum of squares of X (used unless
    need_x[t]) and receives the new one; usq[t] receives the sum of squares of U."""
    for t in range(lo, hi):
        a, b = tile0[t], tile0[t + 1]
        pass1(a, b, tiles, meta, gp, xp, need_x, rowpart, colpart, part_x, LANES, mark)
        if need_x[t]:
            s = 0.0
            for it in range(a, b):
                s += part_x[it]
            xsq[t] = s
        reduce1(t, t + 1, meta, rp, cp, rowpart, colpart, b2, w, eps1, rowf, colf, colf32, fin)
        pass2(a, b, tiles, meta, gp, fin, rowf, colf32, part_u, LANES, mark)
        s = 0.0
        for it in range(a, b):
            s += part_u[it]
        usq[t] = s
        scale[t] = _scale_one(usq[t], xsq[t], numel[t], d, rho[t], eps2, scale_parameter) * factor
        pass3(a, b, tiles, meta, gp, xp, mp, fin, rowf, colf32, scale, decay, sign, momentum, weight, sr, seeds,
              part_x, LANES, mark)
        if fin[t]:
            s = 0.0
            for it in range(a, b):
                s += part_x[it]
            xsq[t] = s


# ---------------------------------------------------------------------- the pool's short spin

@intrinsic
def _load_acquire(typingctx, addr):
    def codegen(context, builder, sig, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(types.int64), codegen


@njit(**_OPTS)
def spin_while(addr, value, polls):
    """Polls the int64 at addr (GIL released) while it equals value, at most ``polls`` times; True if it
    changed. A helper thread of the pool waits so between the passes of a step: waking a sleeping thread
    (on a virtual machine, an idle virtual CPU) takes far longer than a pass's chunk."""
    for _ in range(polls):
        if _load_acquire(addr) != value:
            return True
    return False
