"""A CPU timing harness: optimizers stepped side by side in one process, median step times.

Only the optimizer step is timed. Every optimizer gets its own copy of the
same starting parameters and the same fixed gradients (set once; ``step()``
reads ``p.grad`` and leaves it alone), so there is no forward or backward pass
to time. The optimizers take turns, one step each per round, so background
load on a shared machine falls on all of them alike instead of on whichever
ran during a busy moment; the medians and the per-round (paired) ratios are
then robust to it. ``python -m optbook.bench --device cpu`` times its CPU rows
with it and reports each row's per-round ratio to fused AdamW and to
``torch.optim.Adafactor`` (:func:`optbook.bench.harness.paired_ratio`).

With ``OPTBOOK_TIMING_SMOKE=1`` in the environment every timing runs one round
and no warm-up, and :func:`median_step_times` runs on tensors cut to ``SMOKE_MAX_DIM``
per dimension: the code is exercised, the numbers mean nothing. ``make test``
sets it for the chapters, whose timing cells are marked ``# NBVAL_IGNORE_OUTPUT``
(their stored outputs come from a full run on a quiet machine and are never
compared), so the test suite does not spend minutes on timings it throws away.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import torch

from optbook.analysis.memory import optimizer_state_bytes

__all__ = [
    "StepTimes", "make_problem", "interleaved_step_times", "compare_optimizers", "parameter_count",
    "smoke_mode", "SMOKE_ENV", "median_step_times", "peak_traced_bytes",
]

# Public functions that time or set up rather than compute a book symbol.
__helpers__ = tuple(n for n in __all__ if n != "SMOKE_ENV")

SMOKE_ENV = "OPTBOOK_TIMING_SMOKE"
#: In smoke mode, :func:`median_step_times` cuts every dimension to this size.
SMOKE_MAX_DIM = 64


def smoke_mode() -> bool:
    """True when ``$OPTBOOK_TIMING_SMOKE`` asks timings to run one round only (see the module docstring)."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


@dataclass(frozen=True)
class StepTimes:
    """Step-time summary of one optimizer (seconds), relative to the baseline of the comparison."""

    name: str
    median_s: float
    q1_s: float
    q3_s: float
    samples: int
    state_bytes: int
    ratio_of_medians: float
    median_paired_ratio: float

    def as_dict(self) -> dict:
        return asdict(self)


def make_problem(
    shapes: Sequence[Sequence[int]], *, dtype: torch.dtype = torch.float32, seed: int = 0, grad_rms: float = 1.0
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Starting parameters (standard normal) and fixed gradients (RMS ``grad_rms``) of the given shapes."""
    if not grad_rms > 0:
        raise ValueError(f"grad_rms must be > 0, got {grad_rms}.")
    gen = torch.Generator().manual_seed(seed)
    x0 = [torch.randn(tuple(s), generator=gen).to(dtype) for s in shapes]
    grads = [(torch.randn(tuple(s), generator=gen) * grad_rms).to(dtype) for s in shapes]
    return x0, grads


def interleaved_step_times(
    optimizers: Mapping[str, torch.optim.Optimizer], *, warmup: int = 3, repeats: int = 20
) -> dict[str, list[float]]:
    """Seconds per ``step()`` of each optimizer, ``repeats`` rounds of one step each, after ``warmup`` rounds."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}.")
    if smoke_mode():
        warmup, repeats = 0, 1
    for _ in range(warmup):
        for opt in optimizers.values():
            opt.step()
    gc.collect()
    samples: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(repeats):
        for name, opt in optimizers.items():
            start = time.perf_counter_ns()
            opt.step()
            samples[name].append((time.perf_counter_ns() - start) / 1e9)
    return samples


def compare_optimizers(
    factories: Mapping[str, Factory],
    shapes: Sequence[Sequence[int]],
    *,
    baseline: str,
    warmup: int = 3,
    repeats: int = 20,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> list[StepTimes]:
    """Time every optimizer of ``factories`` on one parameter set, interleaved, against ``baseline``.

    ``ratio_of_medians`` is median step time over the baseline's;
    ``median_paired_ratio`` the median over rounds of the two times of the same
    round, which cancels load that changes between rounds.
    """
    if baseline not in factories:
        raise ValueError(f"baseline must be one of {sorted(factories)}, got {baseline!r}.")
    x0, grads = make_problem(shapes, dtype=dtype, seed=seed)
    optimizers = {}
    for name, make in factories.items():
        params = [torch.nn.Parameter(x.clone()) for x in x0]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizers[name] = make(params)
    samples = interleaved_step_times(optimizers, warmup=warmup, repeats=repeats)
    base = samples[baseline]
    results = []
    for name, times in samples.items():
        if len(times) >= 2:
            q1, med, q3 = statistics.quantiles(times, n=4, method="inclusive")
        else:
            q1 = med = q3 = times[0]
        results.append(
            StepTimes(
                name=name,
                median_s=med,
                q1_s=q1,
                q3_s=q3,
                samples=len(times),
                state_bytes=optimizer_state_bytes(optimizers[name]),
                ratio_of_medians=med / statistics.median(base),
                median_paired_ratio=statistics.median(a / b for a, b in zip(times, base)),
            )
        )
    return results


def parameter_count(shapes: Sequence[Sequence[int]]) -> int:
    """Entries in a list of shapes."""
    return sum(math.prod(s) for s in shapes)



def median_step_times(
    variants: Mapping[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]],
    shapes: Sequence[Sequence[int]],
    *,
    warmup: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Median seconds per ``step()`` of each optimizer ``variants[name](params)``, timed interleaved.

    Every variant gets its own copy of the same parameters (normal, RMS 0.02) and the
    same fixed gradients (normal, RMS 0.01) of the given ``shapes``, drawn from a torch
    generator seeded with ``seed``; the rounds go through :func:`interleaved_step_times`.
    In smoke mode (``$OPTBOOK_TIMING_SMOKE``) every dimension is cut to ``SMOKE_MAX_DIM``.
    """
    if not variants:
        raise ValueError("variants must name at least one optimizer factory.")
    if smoke_mode():  # the numbers are thrown away: run every variant's code on small tensors
        shapes = [tuple(min(int(n), SMOKE_MAX_DIM) for n in s) for s in shapes]
    gen = torch.Generator().manual_seed(seed)
    x0 = [torch.randn(s, generator=gen).mul_(0.02) for s in shapes]
    g0 = [torch.randn(s, generator=gen).mul_(0.01) for s in shapes]
    optimizers = {}
    for name, make in variants.items():
        params = [x.clone().requires_grad_(True) for x in x0]
        for p, g in zip(params, g0):
            p.grad = g.clone()
        optimizers[name] = make(params)
    samples = interleaved_step_times(optimizers, warmup=warmup, repeats=repeats)
    return {name: sorted(t)[len(t) // 2] for name, t in samples.items()}


def peak_traced_bytes(compute: Callable[[], object]) -> tuple[object, int]:
    """``(compute(), bytes)``: the result, and the peak bytes Python allocated while it ran.

    Measured with :mod:`tracemalloc` (which NumPy reports its arrays to) as the traced peak
    during ``compute()`` minus what was already allocated when it started. Tracing must not
    be running already.
    """
    import tracemalloc

    if not callable(compute):
        raise TypeError("compute must be a function of no arguments, e.g. lambda: f(x).")
    if tracemalloc.is_tracing():
        raise ValueError("tracemalloc is already tracing; stop it before measuring a peak.")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = compute()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return result, peak
