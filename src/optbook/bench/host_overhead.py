r"""Host overhead of one fused Adafactor step: the Python work around the kernel launches.

A fused step is a handful of kernel launches; what the host does around them
(finding the plan, checking that nothing moved, bumping version counters) is
paid on every step whatever the device, and on a small model it can exceed
the device time. This module measures it on any machine: the five Triton
kernels of :mod:`optbook.kernels.adafactor_fused` are replaced by no-ops
(:func:`stubbed_launches`), so a step runs everything *except* the kernels,
on CPU tensors (which needs ``TRITON_INTERPRET=1``, set before triton is
imported; the interpreter itself never runs). The memset of the non-finite
flags, a real torch op, stays in. The parameter set has the count and ranks
of a model of :mod:`optbook.bench.shapes` with every dimension cut to
``max_dim``: the host work depends on the number of tensors, not their size.

Run ``python -m optbook.bench.host_overhead`` (``--help`` for the options).
Times are thread CPU time per ``opt.step()`` (torch's ``Optimizer.step``
wrapper with its profiler hook included), so a busy machine inflates them
less than wall-clock time would; report the median and the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["KERNELS", "stubbed_launches", "stand_in_parameters", "fused_host_overhead", "main"]

#: The kernels one fused step launches (the sixth launch is a memset, a torch op).
KERNELS = ("_stats_kernel", "_stats_finalize_kernel", "_clip_kernel", "_scale_kernel", "_update_kernel")


class _NoLaunch:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](...)`` counts the launch and does nothing."""

    def __init__(self, name: str, counts: dict[str, int]) -> None:
        self.name, self.counts = name, counts

    def __getitem__(self, grid):
        def launch(*args, **kwargs) -> None:
            self.counts[self.name] += 1

        return launch


def _fused_module():
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0", "false", "False") and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"  # CPU tensors reach the (stubbed) launches only in interpreter mode
    from optbook.kernels import adafactor_fused

    if not adafactor_fused.INTERPRET:
        raise ValueError(
            "fused_host_overhead steps CPU tensors, which the fused path accepts only with TRITON_INTERPRET=1 "
            "set before triton is imported; set it in the environment (or run python -m "
            "optbook.bench.host_overhead in a fresh process)."
        )
    return adafactor_fused


@contextmanager
def stubbed_launches() -> Iterator[dict[str, int]]:
    """Replace the Triton kernels of :mod:`optbook.kernels.adafactor_fused` by no-ops inside the block.

    Yields a dict that counts the launches of each kernel. The kernels are
    restored on exit, also after an exception.
    """
    module = _fused_module()
    counts = {name: 0 for name in KERNELS}
    saved = {name: getattr(module, name) for name in KERNELS}
    try:
        for name in KERNELS:
            setattr(module, name, _NoLaunch(name, counts))
        yield counts
    finally:
        for name, kernel in saved.items():
            setattr(module, name, kernel)


def stand_in_parameters(model: str = "gpt2-small", *, max_dim: int = 16, seed: int = 0) -> list[torch.nn.Parameter]:
    """float32 CPU parameters with the count and ranks of ``model``'s set, every dimension cut to ``max_dim``."""
    from optbook.bench.shapes import parameter_shapes

    if not (isinstance(max_dim, int) and max_dim >= 1):
        raise ValueError(f"max_dim must be an int >= 1, got {max_dim!r}.")
    gen = torch.Generator().manual_seed(seed)
    shapes = [tuple(min(d, max_dim) for d in shape) for _, shape in parameter_shapes(model)]
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in shapes]


def fused_host_overhead(
    model: str = "gpt2-small", *, steps: int = 500, repeats: int = 7, grads: str = "moving", max_dim: int = 16,
) -> dict:
    """Thread CPU time of one ``optbook.Adafactor(fused=True).step()`` with the kernel launches stubbed.

    ``grads="moving"`` gives every step gradients at new addresses (two sets
    used in turn, as ``zero_grad(set_to_none=True)`` and a fresh backward
    may), so the step rewrites the gradient column of its pointer table;
    ``"fixed"`` keeps the same gradient tensors (``set_to_none=False``).
    Three warm-up steps build the plan first. Returns the median, quartiles
    and minimum over ``repeats`` x ``steps`` steps in microseconds, the
    number of tensors, the launches per step (stubbed kernels plus the
    memset), and the median time of torch's ``Optimizer.step`` wrapper
    around an empty step on the same parameters (``torch_wrapper_median_us``,
    part of every torch optimizer's step).
    """
    fused = _fused_module()  # first: the Adafactor constructor may import triton
    from optbook import Adafactor
    from optbook.optim import adafactor as optim_adafactor

    if grads not in ("moving", "fixed"):
        raise ValueError(f"grads must be 'moving' or 'fixed', got {grads!r}.")
    for name, value in (("steps", steps), ("repeats", repeats)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    params = stand_in_parameters(model, max_dim=max_dim)
    sets = [[torch.randn_like(p) for p in params] for _ in range(2 if grads == "moving" else 1)]
    opt = Adafactor(params, fused=True)
    times: list[float] = []
    backend = optim_adafactor.CPU_FUSED_BACKEND
    optim_adafactor.CPU_FUSED_BACKEND = "triton-interpreter"  # CPU tensors: the Triton path, not numba
    try:
        with stubbed_launches() as counts:
            times, kernel_launches = _time_steps(opt, params, sets, steps, repeats, counts)
    finally:
        optim_adafactor.CPU_FUSED_BACKEND = backend
    assert fused.INTERPRET
    plan = opt._fused_plans[0].last
    q1, median, q3 = statistics.quantiles(times, n=4)
    # torch's Optimizer.step wrapper (hooks, profiler record) around an empty step, over the same
    # parameters: what every torch optimizer pays before its own step runs.
    empty = _EmptyStep(params, {})
    wrapper = []
    for _ in range(min(len(times), 2000)):
        t0 = time.thread_time_ns()
        empty.step()
        wrapper.append((time.thread_time_ns() - t0) / 1e3)
    return {
        "model": model,
        "tensors": len(params),
        "grads": grads,
        "steps_timed": len(times),
        "median_us": median,
        "q1_us": q1,
        "q3_us": q3,
        "min_us": min(times),
        "launches_per_step": kernel_launches + len(plan.buckets),  # one memset per bucket
        "torch_wrapper_median_us": statistics.median(wrapper),
    }


class _EmptyStep(torch.optim.Optimizer):
    """An optimizer whose step does nothing: times torch's ``Optimizer.step`` wrapper alone."""

    @torch.no_grad()
    def step(self, closure=None):
        return None


def _time_steps(opt, params, sets, steps: int, repeats: int, counts: dict[str, int]) -> tuple[list[float], float]:
    for k in range(3):
        for p, g in zip(params, sets[k % len(sets)]):
            p.grad = g
        opt.step()
    before = sum(counts.values())
    clock = time.thread_time_ns
    times = []
    for r in range(repeats * steps):
        if len(sets) > 1:
            for p, g in zip(params, sets[r % 2]):
                p.grad = g
        t0 = clock()
        opt.step()
        times.append((clock() - t0) / 1e3)
    return times, (sum(counts.values()) - before) / (repeats * steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optbook.bench.host_overhead",
        description="Host overhead of one optbook.Adafactor(fused=True) step, kernel launches stubbed (CPU).",
    )
    parser.add_argument("--model", default="gpt2-small")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-dim", type=int, default=16)
    args = parser.parse_args(argv)
    for grads in ("fixed", "moving"):
        res = fused_host_overhead(args.model, steps=args.steps, repeats=args.repeats, grads=grads,
                                  max_dim=args.max_dim)
        print(
            f"{res['model']}: {res['tensors']} tensors, gradients {grads}: median {res['median_us']:.1f} us per step "
            f"(quartiles {res['q1_us']:.1f}-{res['q3_us']:.1f}, min {res['min_us']:.1f}; thread CPU time, "
            f"{res['steps_timed']} steps), {res['launches_per_step']:.0f} launches per step; "
            f"torch's Optimizer.step wrapper around an empty step: {res['torch_wrapper_median_us']:.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
