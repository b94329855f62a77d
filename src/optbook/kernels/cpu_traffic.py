r"""The bytes the numba CPU step moves, and the time it spends in each of its kernels.

:func:`cpu_fused_bytes` counts the traffic of :mod:`optbook.kernels.cpu_fused` over a
parameter set with that kernel's own tiles (read from ``cpu_fused.TILE`` and
``cpu_fused.COL_BLOCK`` when it is called) and its own buffers: float32
:math:`R` and :math:`C`, float64 partial sums and row factors, float32 column
factors. For an :math:`n \times m` matrix (a batch of :math:`b` of them) with
tiles of :math:`c = \min(m, \texttt{COL\_BLOCK})` columns and
:math:`r = \min(n, \max(1, \lfloor \texttt{TILE} / c \rfloor))` rows,
:math:`k_c = \lceil m / c \rceil` column blocks and :math:`k_r = \lceil n / r \rceil`
row blocks, the statistics cost

.. math::

    b\,\big[\underbrace{2 \cdot 4 (n + m)}_{R,\ C\ \text{read, written}}
    + \underbrace{2 \cdot 8 (n k_c + m k_r)}_{\text{partial sums written, read}}
    + \underbrace{8 n + 2 \cdot 8 m + 4 m}_{\text{row factors, column sums and factors}}
    + \underbrace{2 (8 n k_c + 4 m k_r)}_{\text{factors read by each tile of passes 2, 3}}\big]

bytes, on top of the streams :math:`3 b_G + 2 b_X` per element
(:func:`optbook.kernels.roofline.adafactor_bytes_per_element`). Vectors stream
:math:`G` twice, :math:`X` once each way and :math:`\hat V` read twice and
written once. :func:`optbook.kernels.roofline.fused_adafactor_bytes` counts the
same streams with the GPU kernel's tiles and float32 partial sums.

:func:`kernel_seconds` runs steps of an optimizer on one thread with every
kernel of the numba module timed, so that a step splits into the time of each
kernel and the rest (the Python driver: tile tables, schedules, version
counters).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Callable, Iterable, Sequence

import torch

from optbook.kernels.roofline import StepTraffic, _bytes, _shape_list, adafactor_bytes_per_element

__all__ = ["cpu_tile_geometry", "cpu_fused_bytes", "kernel_seconds"]

# Functions that count or time a schedule rather than compute a symbol of the book.
__helpers__ = ("cpu_tile_geometry", "cpu_fused_bytes", "kernel_seconds")

_R = 4  # R, C and the column factors the passes read: float32
_F = 8  # partial sums, row factors, column sums: float64


def cpu_tile_geometry(n: int, m: int) -> tuple[int, int, int, int]:
    """``(c, k_c, r, k_r)``: columns and rows of a tile of the CPU kernel on an ``n x m`` matrix, and the
    numbers of column and row blocks, with ``cpu_fused.COL_BLOCK`` and ``cpu_fused.TILE`` as they are now."""
    from optbook.kernels import cpu_fused

    if not (isinstance(n, int) and isinstance(m, int)) or n < 1 or m < 1:
        raise ValueError(f"n and m must be positive ints (the matrix's rows and columns), got n={n!r}, m={m!r}.")
    c = min(m, cpu_fused.COL_BLOCK)
    r = min(n, max(1, cpu_fused.TILE // c))
    return c, -(-m // c), r, -(-n // r)


def cpu_fused_bytes(
    shapes: Iterable[Sequence[int]], param_dtype="float32", grad_dtype=None, *, reread_x: bool = False,
    momentum_dtype=None,
) -> StepTraffic:
    """Every byte one step of the numba CPU kernel moves over tensors of these shapes (module docstring).

    Tensors of rank >= 2 are factored over their last two dims. ``reread_x``: pass 1
    also reads :math:`X` (first step, or the carried :math:`\\sum X^2` is stale);
    ``momentum_dtype``: pass 3 reads and writes the momentum.
    """
    bx = _bytes(param_dtype)
    bg = _bytes(grad_dtype if grad_dtype is not None else param_dtype)
    bm = 0 if momentum_dtype is None else _bytes(momentum_dtype)
    per_matrix = adafactor_bytes_per_element(param_dtype, grad_dtype, reread_x=reread_x, momentum_dtype=momentum_dtype)
    elements = streams = stats = 0
    for shape in _shape_list(shapes):
        numel = math.prod(shape)
        if numel == 0:
            continue
        elements += numel
        if len(shape) >= 2:
            b, n, m = math.prod(shape[:-2]), shape[-2], shape[-1]
            _, kc, _, kr = cpu_tile_geometry(n, m)
            streams += per_matrix * numel
            stats += b * (
                2 * _R * (n + m)
                + 2 * _F * (n * kc + m * kr)
                + _F * n + 2 * _F * m + _R * m
                + 2 * (_F * n * kc + _R * m * kr)
            )
        else:
            streams += numel * (2 * bg + 2 * bx + 3 * _R + (bx if reread_x else 0) + 2 * bm)
    return StepTraffic(elements=elements, streams=streams, statistics=stats, reread_x=reread_x)


class _TimedKernels:
    """Stands for the numba kernel module: every kernel call adds its wall time to ``seconds[name]``."""

    def __init__(self, module):
        self._module = module
        self.seconds: dict[str, float] = defaultdict(float)

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if name.startswith("_") or not hasattr(attr, "py_func"):  # not a numba kernel
            return attr

        def timed(*args):
            start = time.perf_counter_ns()
            try:
                return attr(*args)
            finally:
                self.seconds[name] += (time.perf_counter_ns() - start) / 1e9

        return timed


def kernel_seconds(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    shapes: Sequence[Sequence[int]],
    *,
    warmup: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Median seconds per step spent in each numba kernel of :mod:`optbook.kernels.cpu_fused`, on one thread.

    ``make(params)`` builds the optimizer (e.g. ``lambda ps: optbook.Adafactor(ps, fused=True)``) over
    parameters of ``shapes`` (normal, RMS 0.02; fixed gradients, RMS 0.01). Returns ``{kernel: seconds}``
    for every kernel called, plus ``"step"`` (the whole ``step()``) and ``"outside the kernels"`` (the
    step minus its kernels: the Python driver), all from the step of median time among ``repeats`` steps
    after ``warmup`` (so the parts add up to the step); with ``$OPTBOOK_TIMING_SMOKE`` set, one step on
    shapes cut to 64 per dimension.
    """
    from optbook.bench.timing import SMOKE_MAX_DIM, smoke_mode
    from optbook.kernels import cpu_fused

    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}.")
    if not callable(make):
        raise TypeError("make must build an optimizer from a list of tensors, e.g. lambda ps: optbook.Adafactor(ps, fused=True).")
    if smoke_mode():
        warmup, repeats = 0, 1
        shapes = [tuple(min(int(d), SMOKE_MAX_DIM) for d in s) for s in shapes]
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(tuple(s), generator=gen).mul_(0.02).requires_grad_(True) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).mul_(0.01)
    opt = make(params)
    real = cpu_fused._kernels()
    saved_threads = torch.get_num_threads()
    timed = _TimedKernels(real)
    rounds: list[dict[str, float]] = []
    try:
        torch.set_num_threads(1)
        cpu_fused._KERNELS = timed
        for _ in range(warmup):
            opt.step()
        for _ in range(repeats):
            timed.seconds.clear()
            start = time.perf_counter_ns()
            opt.step()
            total = (time.perf_counter_ns() - start) / 1e9
            rounds.append({**timed.seconds, "step": total, "outside the kernels": total - sum(timed.seconds.values())})
    finally:
        cpu_fused._KERNELS = real
        torch.set_num_threads(saved_threads)
    if len(rounds[0]) <= 2:
        raise ValueError("make built an optimizer whose step called no numba kernel; use fused=True on CPU tensors.")
    # The round of median step time (the lower middle one for an even count), whole, so that its parts add up.
    middle = sorted(range(len(rounds)), key=lambda i: rounds[i]["step"])[(len(rounds) - 1) // 2]
    return rounds[middle]
