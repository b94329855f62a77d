r"""A fused Adafactor step for CPU tensors, compiled by numba: three passes over G.

The same iteration as :class:`optbook.optim.Adafactor` (its functional
signature is that of ``_foreach_adafactor``), scheduled as the dependencies
require and no more:

* **pass 1** reads :math:`G` (and :math:`X` only when the carried
  :math:`\mathrm{RMS}(X_{t-1})` is stale) and forms the partial row and column
  sums of :math:`G^2`; a tiny reduction turns them into :math:`R_t`, :math:`C_t`
  and the per-tensor finite flag;
* **pass 2** reads :math:`G` and forms :math:`\sum U^2` without forming
  :math:`U`; a tiny reduction gives the step scale
  :math:`\alpha_t / \max(1, \mathrm{RMS}(U_t)/d)`;
* **pass 3** reads :math:`G` and :math:`X` (and the momentum), writes :math:`X`
  (and the momentum), and sums the squares of the values it wrote: the next
  step's :math:`\mathrm{RMS}(X)`.

In float32 that is :math:`3 \cdot 4 + 2 \cdot 4 = 20` bytes per element. A
vector keeps the full :math:`\hat V` and needs only passes 1 and 3.

Schedule
--------
A factored tensor of at most :data:`SMALL_TENSOR` entries (and, with several
threads, at most ``1 / (2 * threads)`` of the bucket's factored entries, so that
no thread is left with most of the work) is stepped whole by one thread: its
three passes and the reductions between them run back to back, so passes 2 and
3 read :math:`G` from cache (L2, or L3 for the larger ones). The threads take
such tensors one at a time. A larger tensor runs pass by pass, each pass over all
the large tensors' tiles, which the threads share out in chunks. The threads
are the calling thread and ``torch.get_num_threads() - 1`` helper threads
(the kernels release the GIL); a thread takes the next chunk when it finishes
one, so a thread that does not get a core (torch's OpenMP workers still
spinning after a torch operation, other processes) delays only its current
chunk. There is no numba thread pool. Within a step a helper polls for the
next pass for about :data:`SPIN_POLLS` polls (a tenth of a millisecond) before
it sleeps, since waking a sleeping thread can cost more than a chunk; between
steps nothing spins. Steps of fewer than
:data:`SERIAL_BELOW` entries, and the vectors of any step unless they are that
large, run on the calling thread alone.

Reproducible everywhere
-----------------------
Every tensor is cut into tiles that depend on its shape only (at most
:data:`COL_BLOCK` columns and about :data:`TILE` entries). Inside a tile a
row is summed in :data:`LANES` fixed accumulators (entry ``q * LANES + l`` of
the row slice goes to lane ``l``), combined in a fixed pairwise tree; the sums
of squares of :math:`U` (pass 2) and of the written :math:`X` (pass 3) keep
their lanes running from row to row and take one tree per tile. The tiles'
partial sums are written to buffers and added in tile order by one thread.
The row and column sums of :math:`G^2`, which become :math:`R_t` and
:math:`C_t`, are float64 (the square of a float32 number is exact in
float64). The sums of squares of :math:`U` and :math:`X`, which only scale
the step, square and add in float32 lanes within a row slice (at most
``COL_BLOCK / LANES`` = 32 terms a lane), added lane by lane into float64
lanes; the update itself is float32 arithmetic in the eager path's order.
No reduction is left to the compiler (no ``fastmath``, so no reassociation
and no fused multiply-add contraction), so the bits of a step do not depend
on the number of threads, on the SIMD width, on which thread ran which tile
or on the schedule above. ``tests/test_kernel_cpu.py`` checks this with
several thread counts and schedules and with ``NUMBA_CPU_NAME=generic``.

**The carried RMS(X).**
The sum of squares that pass 3 wrote is kept per parameter with the
parameter's ``_version`` (which the step bumps through
``torch.autograd.graph.increment_version``, as an in-place op would). A
later step uses it only if the version is unchanged; otherwise pass 1
re-reads :math:`X`. The re-read sums in exactly the order pass 3 did, so a
carried and a recomputed RMS are the same bits: a run resumed from a
``state_dict`` continues bit for bit. A write that bypasses the version counter
(``p.data.copy_(...)``) must be followed by :func:`invalidate_carried_rms`.

**Precision.**
Parameters and gradients in float32, bfloat16 or float16 (the latter two are
handled on their bits; numba has no 16-bit float type on the CPU); statistics
and momentum in float32. A 16-bit parameter is rounded once per step, to
nearest even or, with ``stochastic_rounding``, stochastically: random bits
below the last kept mantissa bit are added and the rest truncated. The bits
come from a counter-based hash of the element's index and a per-tensor seed
drawn from the optimizer's ``generator`` (torch's default CPU generator if
``None``), so a seeded run is reproducible and independent of the thread
count. (float16 values below the smallest normal, 6.1e-5, round to nearest.)

**What a step keeps.** Per bucket (the parameters of one dtype stepped
together) the driver keeps the tile tables, the order of the tensors in them
and the carried sums; a later step with the same tensors of the same shapes
only reads their addresses. The step counters are advanced inside the kernels
(in float32, as ``torch._foreach_add_(steps, 1.0)``).

Compilation is lazy (the first call) and cached on disk (``cache=True``), so
no step after the first pays for it.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["fused_adafactor_cpu", "unsupported_reason", "invalidate_carried_rms", "TILE", "COL_BLOCK", "LANES",
           "SMALL_TENSOR", "SERIAL_BELOW", "SPIN_POLLS"]

#: Entries per tile, roughly; a tile's rows are summed by one thread.
TILE = 1 << 15
#: The most columns of a tile.
COL_BLOCK = 2048
#: Accumulators of a sum (element q * LANES + l goes to lane l); fixed, whatever the SIMD width; a power of
#: two (the lanes are added in a pairwise tree). 64: sixteen AVX2 (or eight AVX-512) registers of float64.
#: The kernels are compiled for it (``_cpu_fused_numba.LANES``).
LANES = 64
#: Steps of fewer entries in all run on the calling thread.
SERIAL_BELOW = 1 << 18
#: A pass is cut into about this many chunks per thread; threads take the next chunk when they finish one.
CHUNKS_PER_THREAD = 4
#: Entries of the smallest chunk worth handing to another thread.
MIN_CHUNK = 1 << 16
#: Polls (a few nanoseconds each) for which a helper thread waits for the next pass before it sleeps.
SPIN_POLLS = 1 << 17
#: Factored tensors of at most this many entries are stepped whole by one thread, pass after pass, while their
#: gradient is in cache; larger ones pass by pass, each pass shared out between the threads.
SMALL_TENSOR = 1 << 22

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The numpy dtype that stands for each parameter dtype inside the kernels.
_MARK = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.float16: np.int16}

_KERNELS = None


def invalidate_carried_rms(params: Sequence[Tensor] | None = None) -> None:
    """Forget the carried sums of squares (of ``params``, or of all)."""
    if params is None:
        for entry in _SETS.values():
            entry.version[:] = -1
        return
    ids = {id(p) for p in params}
    for entry in _SETS.values():
        for q, ref in enumerate(entry.refs):
            if id(ref()) in ids:
                entry.version[q] = -1


def unsupported_reason(params: Sequence[Tensor], grads: Sequence[Tensor], factor_dims: str) -> str | None:
    """Why the CPU kernel cannot take these tensors, or ``None`` if it can."""
    from optbook.optim.adafactor import _factor_pair

    for p, g in zip(params, grads):
        if p.device.type != "cpu":
            return f"a parameter is on {p.device}"
        if p.dtype not in _DTYPES:
            return f"a parameter has dtype {p.dtype} (the kernel takes float32, bfloat16 and float16)"
        if not (p.is_contiguous() and g.is_contiguous()):
            return "a parameter or its gradient is not contiguous"
        pair = _factor_pair(p.shape, factor_dims)
        if pair is not None and pair[1] != p.dim() - 1 and p.numel():
            return f"factor_dims={factor_dims!r} factors a {tuple(p.shape)} tensor over dims {pair}, not ending in the last"
    try:
        _kernels()
    except Exception as exc:  # numba missing or failing to compile
        return f"the numba kernels are unavailable ({type(exc).__name__}: {exc})"
    return None


# ---------------------------------------------------------------------- plans

_PLANS: dict = {}


class _Plan:
    """Tile tables of one list of shapes (cached; they depend on the shapes only)."""

    def __init__(self, shapes, pairs, small: int | None = None):
        small = SMALL_TENSOR if small is None else small
        fac = [k for k, pr in enumerate(pairs) if pr is not None]
        vec = [k for k, pr in enumerate(pairs) if pr is None]
        # Large tensors first (their passes are shared out tile by tile), then the small ones (stepped whole,
        # one tensor per thread at a time, while the tensor is in cache). The bits do not depend on the order.
        large = [k for k in fac if math.prod(shapes[k]) > small]
        fac = large + [k for k in fac if math.prod(shapes[k]) <= small]
        self.n_large = len(large)
        self.fac, self.vec = fac, vec
        # factored: columns nb, M, n, m, cb, ncb, rb, nrb, row0 (offset into row buffers), col0
        meta, tiles, rowoff, coloff, nrows, ncols, tile0 = [], [], 0, 0, 0, 0, []
        for t, k in enumerate(fac):
            s = shapes[k]
            i, j = pairs[k]
            n, m = s[i], s[j]
            M = math.prod(s[i + 1:j])
            nb = math.prod(s[:i]) * M
            cb = min(m, COL_BLOCK)
            ncb = -(-m // cb)
            rb = min(n, max(1, TILE // cb))
            nrb = -(-n // rb)
            meta.append((nb, M, n, m, cb, ncb, rb, nrb, rowoff, coloff, nrows, ncols))
            rowoff += nb * n * ncb
            coloff += nb * nrb * m
            nrows += nb * n
            ncols += nb * m
            tile0.append(len(tiles))
            tiles += [(t, b, ri, ci) for b in range(nb) for ri in range(nrb) for ci in range(ncb)]
        self.meta = np.array(meta, dtype=np.int64).reshape(-1, 12)
        self.tiles = np.array(tiles, dtype=np.int64).reshape(-1, 4)
        self.tile0 = np.array(tile0 + [len(tiles)], dtype=np.int64)
        self.rowpart = np.zeros(rowoff)
        self.colpart = np.zeros(coloff)
        self.rowf = np.zeros(nrows)
        self.colf = np.zeros(ncols)
        self.colf32 = np.zeros(ncols, dtype=np.float32)
        work = [min(rb, mt[2] - ri * rb) * min(cb, mt[3] - ci * cb)
                for (t, b, ri, ci) in tiles for mt in (meta[t],) for cb, rb in ((mt[4], mt[6]),)]
        tensor_work = np.array([mt[0] * mt[2] * mt[3] for mt in meta], dtype=np.int64)
        # Work tables of the shared-out passes: (work of each item, index of the first item).
        self.work = {
            "large_tile": (np.array(work[:self.tile0[self.n_large]], dtype=np.int64), 0),
            "large_tensor": (tensor_work[:self.n_large], 0),
            "small_tensor": (tensor_work[self.n_large:], self.n_large),
        }
        self.part_x = np.zeros(len(tiles))
        self.part_u = np.zeros(len(tiles))
        # vectors: numel, tile0, ntiles
        vmeta, vtiles = [], []
        for t, k in enumerate(vec):
            numel = math.prod(shapes[k])
            nt = -(-numel // TILE)
            vmeta.append((numel, len(vtiles), nt))
            vtiles += [(t, c) for c in range(nt)]
        self.vmeta = np.array(vmeta, dtype=np.int64).reshape(-1, 3)
        self.vnumel = sum(v[0] for v in vmeta)
        self.vtiles = np.array(vtiles, dtype=np.int64).reshape(-1, 2)
        self.vpart_g = np.zeros(len(vtiles))
        self.vpart_u = np.zeros(len(vtiles))
        self.vpart_x = np.zeros(len(vtiles))
        self.work["vtile"] = (np.array([min(TILE, vmeta[t][0] - c * TILE) for t, c in vtiles], dtype=np.int64), 0)
        self.numel = sum(mt[0] * mt[2] * mt[3] for mt in meta) + self.vnumel
        self._bounds: dict = {}

    def bounds(self, name: str, threads: int) -> np.ndarray:
        """Chunk boundaries of the items ``name`` (a key of ``self.work``) for ``threads`` threads:
        about ``CHUNKS_PER_THREAD`` chunks per thread of about equal work (one chunk on one thread). The
        results do not depend on them: every partial sum is written per tile."""
        key = (name, threads)
        b = self._bounds.get(key)
        if b is None:
            work, first = self.work[name]
            b = self._bounds[key] = _chunk_bounds(work, threads) + first
        return b


def _chunk_bounds(work: np.ndarray, threads: int) -> np.ndarray:
    n = len(work)
    if threads <= 1 or n <= 1:
        return np.array([0, n], dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum(work)])
    chunks = int(min(n, threads * CHUNKS_PER_THREAD, max(1, cum[-1] // MIN_CHUNK)))
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, chunks) / chunks, side="left")
    return np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)


def _small_threshold(shapes, pairs, threads: int) -> int:
    """The most entries of a factored tensor stepped whole by one thread (see "Schedule" above)."""
    if threads <= 1:
        return SMALL_TENSOR
    total = sum(math.prod(s) for s, pr in zip(shapes, pairs) if pr is not None)
    return min(SMALL_TENSOR, total // (2 * threads))


def _plan(shapes, pairs, threads: int = 1) -> _Plan:
    small = _small_threshold(shapes, pairs, threads)
    key = (tuple(shapes), tuple(pairs), small)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 64:
            _PLANS.clear()
        plan = _PLANS[key] = _Plan(shapes, pairs, small)
    return plan


class _Set:
    """One bucket of a step (the parameters of one dtype), kept between steps while the same tensors, of the
    same shapes, are stepped together: its plan, the order of its tensors in the kernels' tables, and the
    carried sums of squares of X with the ``_version`` each was written at."""

    def __init__(self, ps, idx, pairs, plan):
        self.refs = [weakref.ref(p) for p in ps]
        self.shapes = [p.shape for p in ps]
        self.plan = plan
        self.order = list(plan.fac) + list(plan.vec)  # bucket position of the q-th table entry
        self.where = [idx[q] for q in self.order]  # index into the step's lists
        self.nf = len(plan.fac)
        self.numel = np.array([ps[q].numel() for q in self.order], dtype=np.float64)
        self.factored = np.array([pairs[q] is not None for q in self.order])
        self.version = np.full(len(ps), -1, dtype=np.int64)  # -1: nothing carried
        self.sumsq = np.zeros(len(ps))

    def same_tensors(self, ps) -> bool:
        return all(ref() is p for ref, p in zip(self.refs, ps))


#: Bucket key (dtype, factor_dims, ids of the parameters, which lack a column statistic) -> _Set (whose shapes
#: and weak references are checked too: an id can be reused, a shape changed through ``.data``).
_SETS: OrderedDict = OrderedDict()
_MAX_SETS = 16


def _set_for(dtype, idx, params, stats_c, factor_dims, _factor_pair, threads: int = 1) -> _Set:
    ps = [params[k] for k in idx]
    key = (dtype, factor_dims, tuple(map(id, ps)), tuple(stats_c[k] is None for k in idx), threads)
    shapes = [p.shape for p in ps]
    entry = _SETS.get(key)
    if entry is not None and entry.shapes == shapes and entry.same_tensors(ps):
        _SETS.move_to_end(key)
        return entry
    shapes = [tuple(s) for s in shapes]
    pairs = [_factor_pair(s, factor_dims) if stats_c[k] is not None else None for s, k in zip(shapes, idx)]
    entry = _SETS[key] = _Set(ps, idx, pairs, _plan(shapes, pairs, threads))
    while len(_SETS) > _MAX_SETS:
        _SETS.popitem(last=False)
    return entry


def _ptrs(tensors) -> np.ndarray:
    return np.array([0 if t is None else t.data_ptr() for t in tensors], dtype=np.int64)


# ---------------------------------------------------------------------- the step


def fused_adafactor_cpu(
    params, grads, stats_r, stats_c, steps, *, exp_avgs, nonfinite_skips, lr, beta2_decay, eps1, eps2, d,
    weight_decay, beta1, relative_step, scale_parameter, factor_dims, maximize, stochastic_rounding, generator,
) -> None:
    """One Adafactor step on CPU tensors (the arguments of ``_foreach_adafactor``).

    The caller has checked the inputs with :func:`unsupported_reason`.
    """
    from optbook.optim.adafactor import _factor_pair

    K = _kernels()
    threads = max(1, torch.get_num_threads())
    if sum(p.numel() for p in params) < SERIAL_BELOW:
        threads = 1
    if threads > 1:
        pool = _pool(threads)
        pool.prime()
        run = pool.run
    else:
        run = _run_here
    by_dtype: dict[torch.dtype, list[int]] = {}
    for k, p in enumerate(params):
        if p.numel():
            by_dtype.setdefault(p.dtype, []).append(k)
        else:
            steps[k].add_(1.0)  # as torch._foreach_add_(steps, 1.0) on the eager path
    for dtype, idx in by_dtype.items():
        _bucket(K, run, threads, dtype, idx, params, grads, stats_r, stats_c, steps, exp_avgs, nonfinite_skips, lr, beta2_decay,
                eps1, eps2, d, weight_decay, beta1, relative_step, scale_parameter, factor_dims, maximize,
                stochastic_rounding, generator, _factor_pair)


def _run_here(fn, bounds, *args):
    fn(int(bounds[0]), int(bounds[-1]), *args)


class _Pool:
    """The calling thread and ``threads - 1`` helper threads share out the chunks of a pass.

    A pass is a serial kernel (GIL released) over a range of its table; the chunk boundaries are given.
    Each thread takes the next chunk when it finishes one, so a thread that the OS does not run (another
    library's spinning workers, other processes) costs only its current chunk: the calling thread runs
    whatever is left. Between the passes of a step a helper polls for the next one for at most
    ``SPIN_POLLS`` polls (woken from sleep, it would start a chunk or more late); after a step it sleeps, so
    nothing spins against torch's threads between steps."""

    def __init__(self, threads: int):
        self.threads = threads
        self.pid = os.getpid()
        self.cv = threading.Condition(threading.Lock())
        self.kernels = _kernels()
        self.flag = np.zeros(1, dtype=np.int64)  # the generation of the current pass (polled without the GIL)
        self.addr = self.flag.ctypes.data
        self.primed = 0
        self.gen = 0
        self.job = None
        self.next = 0
        self.done = 0
        self.error = None
        self.stop = False
        self.running = threading.Lock()  # one pass at a time (steps from two Python threads take turns)
        for _ in range(threads - 1):
            threading.Thread(target=self._helper, daemon=True, name="optbook-cpu-fused").start()

    def _helper(self):
        seen = primed = 0
        spin = self.kernels.spin_while
        while True:
            spin(self.addr, seen, SPIN_POLLS)
            with self.cv:
                while self.gen == seen and self.primed == primed and not self.stop:
                    self.cv.wait()
                if self.stop:
                    return
                if self.gen == seen:  # primed: a step is starting; poll for its first pass
                    primed = self.primed
                    continue
                seen = self.gen
            self._work(seen)

    def prime(self):
        """Wakes the helpers now: the step's first pass comes after its set-up in Python."""
        with self.cv:
            self.primed += 1
            self.cv.notify_all()

    def _work(self, gen):
        while True:
            with self.cv:
                job = self.job
                if gen != self.gen or job is None or self.next >= len(job[1]) - 1:
                    return
                i = self.next
                self.next += 1
            fn, bounds, args = job
            try:
                fn(int(bounds[i]), int(bounds[i + 1]), *args)
            except BaseException as exc:  # handed to the calling thread
                self.error = exc
            with self.cv:
                self.done += 1
                if self.done == len(bounds) - 1:
                    self.cv.notify_all()

    def run(self, fn, bounds, *args):
        n = len(bounds) - 1
        if n <= 1:
            return _run_here(fn, bounds, *args)
        with self.running:
            self._run(fn, bounds, n, args)

    def _run(self, fn, bounds, n, args):
        with self.cv:
            self.job = (fn, bounds, args)
            self.next = self.done = 0
            self.error = None
            self.gen += 1
            gen = self.gen
            self.flag[0] = gen
            self.cv.notify_all()
        self._work(gen)
        with self.cv:
            while self.done < n:
                self.cv.wait()
            self.job = None
        if self.error is not None:
            raise self.error

    def close(self):
        with self.cv:
            self.stop = True
            self.cv.notify_all()


_POOL: _Pool | None = None


def _pool(threads: int) -> _Pool:
    global _POOL
    if _POOL is None or _POOL.threads != threads or _POOL.pid != os.getpid():
        if _POOL is not None and _POOL.pid == os.getpid():
            _POOL.close()
        _POOL = _Pool(threads)
    return _POOL


def _bucket(K, run, threads, dtype, idx, params, grads, stats_r, stats_c, steps, exp_avgs, skips, lr, tau, eps1, eps2, d, wd,
            beta1, relative_step, scale_parameter, factor_dims, maximize, sr, generator, _factor_pair):
    S = _set_for(dtype, idx, params, stats_c, factor_dims, _factor_pair, threads)
    plan, where, nf = S.plan, S.where, S.nf
    mark = np.empty(0, dtype=_MARK[dtype])
    kk = len(where)
    momentum = beta1 is not None
    ps = [params[k] for k in where]  # table order: factored tensors first, then vectors
    gp = _ptrs([grads[k] for k in where])
    xp = _ptrs(ps)
    rp = _ptrs([stats_r[k] for k in where])
    cp = _ptrs([stats_c[k] for k in where])
    mp = _ptrs([exp_avgs[k] for k in where]) if momentum else np.zeros(kk, dtype=np.int64)
    # The step counters, += 1 in float32 as torch._foreach_add_(steps, 1.0) does; t as float64.
    st = [steps[k] for k in where]
    t = np.empty(kk)
    K.bump_steps(_ptrs(st), t)
    torch.autograd.graph.increment_version(st)
    # Schedules, as the eager path computes them: float64, rounded once to float32.
    w64 = t ** tau
    w = w64.astype(np.float32).astype(np.float64)
    b2 = (1.0 - w64).astype(np.float32).astype(np.float64)
    rho = (np.minimum(1.0 / np.sqrt(t), lr) if relative_step else np.full(kk, lr)).astype(np.float32).astype(np.float64)
    # Carried sums of squares of X, valid while the parameter's _version is the one we left.
    if scale_parameter:
        need_x = S.version != np.array([p._version for p in ps], dtype=np.int64)
        xsq = np.where(need_x, np.nan, S.sumsq)
    else:
        need_x = np.zeros(kk, dtype=np.bool_)
        xsq = np.full(kk, np.nan)
    seeds = np.zeros(kk, dtype=np.int64)
    if sr and dtype != torch.float32:
        # One seed per tensor, drawn in the order of the parameters; table entry j takes that of S.order[j].
        drawn = torch.randint(0, 1 << 62, (kk,), dtype=torch.int64, generator=generator).numpy()
        seeds = drawn[np.array(S.order, dtype=np.int64)]
    finite = np.ones(kk, dtype=np.bool_)
    sumsq_u = np.zeros(kk)
    F, V = slice(0, nf), slice(nf, kk)
    nv = kk - nf
    sign = 1.0 if maximize else -1.0
    factor = -sign if momentum else 1.0  # the momentum path subtracts the momentum of -sign U
    decay = float(np.float32(1.0 - lr * wd))
    weight = float(np.float32(1.0 - beta1)) if momentum else 0.0
    sr_on = bool(sr and dtype != torch.float32)
    numel = S.numel
    scale = np.zeros(kk)
    if nf:
        ffin = finite[F]
        xf, uf, sf = xsq[:nf].copy(), np.zeros(nf), np.zeros(nf)
        nl = plan.n_large
        if nl:  # the large tensors: pass by pass, tiles shared out
            tb = plan.bounds("large_tile", threads)
            run(K.pass1, tb, plan.tiles, plan.meta, gp[F], xp[F], need_x[F], plan.rowpart, plan.colpart,
                plan.part_x, LANES, mark)
            run(K.reduce1, plan.bounds("large_tensor", threads), plan.meta, rp[F], cp[F], plan.rowpart,
                plan.colpart, b2[F], w[F], eps1, plan.rowf, plan.colf, plan.colf32, ffin)
            run(K.pass2, tb, plan.tiles, plan.meta, gp[F], ffin, plan.rowf, plan.colf32, plan.part_u, LANES, mark)
            TL = int(plan.tile0[nl])
            fx, fu = np.zeros(nf), np.zeros(nf)
            K.tile_sums(plan.tiles[:TL], plan.part_x[:TL], plan.part_u[:TL], fx, fu)
            L = slice(0, nl)
            xf[L] = np.where(need_x[L], fx[L], xf[L])
            uf[L] = fu[L]
            K.scales(uf[L], xf[L], numel[L], d, rho[L], eps2, scale_parameter, factor, sf[L])
            run(K.pass3, tb, plan.tiles, plan.meta, gp[F], xp[F], mp[F], ffin, plan.rowf, plan.colf32, sf, decay,
                sign, momentum, weight, sr_on, seeds[F], plan.part_x, LANES, mark)
            fx[:] = 0.0
            K.tile_sums(plan.tiles[:TL], plan.part_x[:TL], plan.part_u[:TL], fx, fu)
            xf[L] = np.where(ffin[L], fx[L], xf[L])
        if nl < nf:  # the small ones: whole, one thread each
            run(K.step_tensors, plan.bounds("small_tensor", threads), plan.tile0, plan.tiles, plan.meta, gp[F],
                xp[F], mp[F], rp[F], cp[F], need_x[F], b2[F], w[F], eps1, rho[F], eps2, d, scale_parameter, factor,
                decay, sign, momentum, weight, sr_on, seeds[F], numel[F], plan.rowpart, plan.colpart, plan.part_x,
                plan.part_u, plan.rowf, plan.colf, plan.colf32, ffin, sf, uf, xf, mark)
        sumsq_u[F], xsq[F], scale[F] = uf, xf, sf
    # Vectors (biases, norms) are usually far too small to be worth sharing out.
    vrun = run if plan.vnumel >= SERIAL_BELOW else _run_here
    if nv:
        vfin = finite[V]
        vx, vu = np.zeros(nv), np.zeros(nv)
        vb = plan.bounds("vtile", threads)
        vrun(K.vpass1, vb, plan.vtiles, plan.vmeta, gp[V], xp[V], rp[V], need_x[V], b2[V], w[V], eps1,
             plan.vpart_g, plan.vpart_u, plan.vpart_x, mark)
        K.vsums(plan.vmeta, plan.vpart_g, plan.vpart_u, plan.vpart_x, vfin, vx, vu)
        sumsq_u[V] = vu
        xsq[V] = np.where(need_x[V], vx, xsq[V])
    if nv:
        sv = np.zeros(nv)
        K.scales(sumsq_u[V], xsq[V], numel[V], d, rho[V], eps2, scale_parameter, factor, sv)
        scale[V] = sv
        vx, vu = np.zeros(nv), np.zeros(nv)
        vrun(K.vpass3, vb, plan.vtiles, plan.vmeta, gp[V], xp[V], rp[V], mp[V], vfin, b2[V], w[V], eps1, scale[V],
             decay, sign, momentum, weight, sr_on, seeds[V], plan.vpart_x, mark)
        K.vsums(plan.vmeta, plan.vpart_g, plan.vpart_u, plan.vpart_x, np.empty(0, dtype=np.bool_), vx, vu)
        xsq[V] = np.where(vfin, vx, xsq[V])
    # What the step wrote: bump the versions, as in-place ops would.
    written = [p for p, ok in zip(ps, finite) if ok]
    if momentum:
        written += [exp_avgs[k] for k, ok in zip(where, finite) if ok]
    written += [stats_r[k] for k, ok in zip(where, finite) if ok]
    written += [stats_c[k] for k, ok, fac in zip(where, finite, S.factored) if ok and fac]
    torch.autograd.graph.increment_version(written)
    if not finite.all():
        for k, ok in zip(where, finite):
            if not ok:
                skips[k].add_(1)
    if scale_parameter:
        ok = ~np.isnan(xsq)
        S.version[:] = np.where(ok, np.array([p._version for p in ps], dtype=np.int64), -1)
        S.sumsq[:] = np.where(ok, xsq, 0.0)


# ---------------------------------------------------------------------- kernels


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        from optbook.kernels import _cpu_fused_numba

        assert _cpu_fused_numba.LANES == LANES, "the kernels are compiled for another lane count"
        _KERNELS = _cpu_fused_numba
    _KERNELS.silence_pedantic_ir_warnings()  # a no-op unless a catch_warnings block dropped the filter
    return _KERNELS
