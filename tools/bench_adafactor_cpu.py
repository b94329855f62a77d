#!/usr/bin/env python
"""CPU benchmark: optbook.Adafactor against torch.optim.Adafactor, median step time.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python tools/bench_adafactor_cpu.py            # GPT-2-like, 6 x 384
    OMP_NUM_THREADS=1 .venv/bin/python tools/bench_adafactor_cpu.py --quick    # tiny shapes, a smoke test

The parameter set is shaped like a small GPT-2 (``optbook.tasks.model_shapes.gpt2_like_shapes``:
6 layers, width 384, vocabulary 50257, context 1024 by default), in float32.
All optimizers run in one process with their paper-default settings, each on
its own copy of the same parameters with the same fixed gradients, and take
turns step by step (``optbook.bench.timing``), so that the load other jobs put on
a shared machine hits them alike. The report gives each optimizer's median
step time, its ratio to ``torch.optim.Adafactor``'s default (the for-loop
path) and to its ``foreach=True`` path, both as a ratio of medians and as the
median of per-round ratios, and the bytes of optimizer state. The goal is
optbook.Adafactor <= 0.7 x torch's default.

The report is printed and written as JSON (default
``bench-results/adafactor-cpu.json``, which git ignores).

The full CPU comparison (optbook's fused numba step, its foreach and
per-tensor paths, ``torch.optim.Adafactor``, AdamW foreach and fused, effective
GB/s, byte rates against fused AdamW and a three-stream bandwidth reference)
is ``python -m optbook.bench --device cpu --full --models gpt2-30m --dtypes fp32
--threads 2``; this script keeps the Adafactor-only table with paired ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import warnings

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from optbook import Adafactor  # noqa: E402
from optbook.bench.timing import compare_optimizers, parameter_count  # noqa: E402
from optbook.tasks.model_shapes import gpt2_like_shapes  # noqa: E402

TORCH_DEFAULT = "torch.optim.Adafactor"
TORCH_FOREACH = "torch.optim.Adafactor(foreach=True)"


def factories() -> dict:
    return {
        "optbook.Adafactor": lambda ps: Adafactor(ps),
        "optbook.Adafactor(foreach=True)": lambda ps: Adafactor(ps, foreach=True),
        TORCH_DEFAULT: lambda ps: torch.optim.Adafactor(ps),
        TORCH_FOREACH: lambda ps: torch.optim.Adafactor(ps, foreach=True),
    }


def environment() -> dict:
    cpu = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_at_start": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 layers of width 32, vocabulary 512: a smoke test")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 3, quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 25, quick 3)")
    parser.add_argument(
        "--output", type=pathlib.Path, default=ROOT / "bench-results" / "adafactor-cpu.json", help="JSON report path"
    )
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 25)
    if warmup < 0 or repeats < 2:
        parser.error(f"--warmup must be >= 0 and --repeats >= 2, got {warmup} and {repeats}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)

    layers, width, vocab, ctx = (2, 32, 512, 64) if args.quick else (args.layers, args.width, 50257, 1024)
    shapes = list(gpt2_like_shapes(layers, width, vocab, ctx).values())
    n_params = parameter_count(shapes)
    print(f"GPT-2-like parameter set: {layers} layers, width {width}, vocabulary {vocab}, context {ctx}: "
          f"{n_params:,} parameters in {len(shapes)} tensors, float32")
    print(f"{repeats} interleaved rounds after {warmup} warm-up rounds, {torch.get_num_threads()} thread(s)")
    results = compare_optimizers(factories(), shapes, baseline=TORCH_DEFAULT, warmup=warmup, repeats=repeats)
    by_name = {r.name: r for r in results}
    foreach_median = by_name[TORCH_FOREACH].median_s
    rows = []
    print(f"\n{'optimizer':38s} {'median ms':>10s} {'IQR ms':>17s} {'vs torch default':>17s} "
          f"{'(paired)':>9s} {'vs torch foreach':>17s} {'state MiB':>10s}")
    for r in results:
        row = {**r.as_dict(), "ratio_vs_torch_foreach": r.median_s / foreach_median}
        rows.append(row)
        print(f"{r.name:38s} {r.median_s * 1e3:10.2f} {r.q1_s * 1e3:8.2f}-{r.q3_s * 1e3:<8.2f} "
              f"{r.ratio_of_medians:17.3f} {r.median_paired_ratio:9.3f} {row['ratio_vs_torch_foreach']:17.3f} "
              f"{r.state_bytes / 2**20:10.3f}")
    report = {
        "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv]),
        "parameter_set": {"layers": layers, "width": width, "vocab": vocab, "ctx": ctx, "parameters": n_params,
                          "tensors": len(shapes)},
        "warmup": warmup,
        "repeats": repeats,
        "environment": environment(),
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
