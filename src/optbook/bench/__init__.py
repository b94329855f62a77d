"""Benchmarks of the optimizer step: ``python -m optbook.bench`` and the functions behind it.

:mod:`optbook.bench.harness`
    the benchmark run by ``python -m optbook.bench`` (CUDA events on a GPU,
    interleaved timing on a CPU, copy bandwidth, state bytes, peak memory,
    JSON records with their provenance);
:mod:`optbook.bench.timing`
    the CPU timing harness: optimizers stepped side by side in one process;
:mod:`optbook.bench.shapes`
    the parameter-shape sets the benchmark runs on.
"""

from optbook.bench import harness, shapes, timing
from optbook.bench.harness import *  # noqa: F401,F403
from optbook.bench.harness import __all__ as _harness_all
from optbook.bench.timing import compare_optimizers, interleaved_step_times

__all__ = ["harness", "shapes", "timing", *_harness_all, "compare_optimizers", "interleaved_step_times"]
