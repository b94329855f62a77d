r"""Transient memory of one optimizer step on the CPU, measured with ``torch.profiler``.

The optimizer *state* is what an optimizer keeps between steps
(:mod:`optbook.analysis.memory`). A step also allocates temporaries and frees
them before it returns. :func:`peak_allocated_bytes` records every CPU
allocation and free that ATen makes while a function runs (``torch.profiler``
with ``profile_memory=True``), orders them in time and returns the largest
running total above the starting point: the transient peak.
:func:`optimizer_step_memory` applies it to one step of an optimizer on one
parameter, e.g. to see whether :math:`\hat V_t = R_tC_t/1_n^\top R_t` is formed as an
:math:`n\times m` array.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["peak_allocated_bytes", "optimizer_step_memory"]
__helpers__ = ("peak_allocated_bytes", "optimizer_step_memory")


@contextlib.contextmanager
def _quiet_stderr_fd():
    """Send file descriptor 2 to /dev/null: the profiler's C++ backend logs its start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_allocated_bytes(compute: Callable[[], object]) -> dict[str, object]:
    r"""Run ``compute()`` under the profiler and return what it allocated on the CPU.

    Returns ``{"result", "peak_bytes", "largest_bytes", "largest_op"}``: the result, the largest
    running total of allocations minus frees (in time order) above the level at the start, the
    largest single allocation, and the ATen operator that made it. Only allocations made by ATen
    are seen (tensors, not Python objects).
    """
    if not callable(compute):
        raise TypeError("compute must be a function of no arguments, e.g. lambda: opt.step().")
    with _quiet_stderr_fd(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = compute()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for e in events:
        running += e.nbytes()
        peak = max(peak, running)
    ops = [(e.self_cpu_memory_usage, e.name) for e in prof.events() if e.self_cpu_memory_usage > 0]
    largest, op = max(ops) if ops else (0, "")
    return {"result": result, "peak_bytes": int(peak), "largest_bytes": int(largest), "largest_op": op}


def optimizer_step_memory(make_optimizer: Callable, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float64,
                          seed: int = 0) -> dict[str, object]:
    r"""Transient CPU memory of the *second* step of ``make_optimizer([p])`` on one parameter of ``shape``.

    The first step creates the state (and is not measured), so what is measured is what every
    later step allocates and frees. Returns :func:`peak_allocated_bytes`' dict (without
    ``"result"``) plus ``"array_bytes"``, the bytes of one array of ``shape`` and ``dtype``, to
    divide by.
    """
    if not callable(make_optimizer):
        raise TypeError("make_optimizer must be a function of a parameter list, e.g. torch.optim.Adafactor.")
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive sizes, got {shape!r}.")
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
    opt = make_optimizer([p])
    p.grad = torch.randn(shape, generator=gen, dtype=dtype)
    opt.step()
    out = peak_allocated_bytes(opt.step)
    del out["result"]
    out["array_bytes"] = p.numel() * p.element_size()
    return out
