"""``python -m optbook.bench.gpu_check``: the GPU check of the fused kernel, in one command.

``make gpu-check`` runs it. On a machine with an H100 or H200 it takes a few minutes
(at most :data:`BUDGET_S` seconds is the aim) and does three things:

1. **the kernels, natively**: ``optbook.Adafactor(fused=True)`` (the Triton kernels of
   :mod:`optbook.kernels.adafactor_fused`, compiled for the GPU) against the same
   optimizer's eager path on the same device, for a few shapes, both dtypes and two
   option sets (:func:`kernel_check`); then the GPU-only tests of the test suite
   (those whose name contains ``cuda``: :data:`GPU_TESTS`), run by pytest without
   ``TRITON_INTERPRET`` (:func:`run_gpu_tests`). The interpreter tests themselves
   (``tests/test_kernel_interpreter.py``) assert that they run in the interpreter, so
   the native run is the comparison with the eager path instead;
2. **the benchmark**: :func:`optbook.bench.run_benchmark` with its defaults for CUDA
   (both models, both dtypes, every GPU row, peak memory);
3. **the record**: the benchmark's record, with this check's results under
   ``"gpu_check"`` (including the published bandwidth of the device, when it is one of
   :data:`optbook.kernels.roofline.PUBLISHED_DEVICES`, and the floor derived from it),
   written by :func:`optbook.bench.write_record` to :func:`optbook.bench.record_path`:
   ``book/data/bench-<gpu>-<date>.json``, which the GPU chapter loads.

``--dry-run`` runs the same steps on the CPU: the Triton kernels in Triton's
interpreter (``TRITON_INTERPRET=1``, set before triton is imported: the script
re-runs itself in a subprocess when it must), tiny shapes, the CPU rows of a
small benchmark, and the record written to a temporary folder (or ``--output``), never
into ``book/data``. CI runs it (``tests/test_gpu_check.py``), so the script itself is
tested on every run; the GPU-only tests are skipped there, as pytest says.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = [
    "BUDGET_S",
    "GPU_TESTS",
    "GPU_CHECK_SHAPES",
    "DRY_RUN_SHAPES",
    "interpreter_on",
    "kernel_check",
    "run_gpu_tests",
    "published_floor",
    "dry_run_path",
    "run_check",
    "main",
]

#: The aim for a whole run on an H100, in seconds (eight minutes).
BUDGET_S = 480
_ROOT = Path(__file__).resolve().parents[3]
#: Test files searched for GPU-only tests, and the pytest ``-k`` expression that picks them.
GPU_TESTS = (
    ("tests/test_optim_adafactor.py", "tests/test_kernel_*.py", "tests/test_adafactor_*.py", "tests/test_gpu_check.py"),
    "cuda",
)
#: The shapes of the native kernel check (ragged matrices, a vector, a batch of matrices, a wide one).
GPU_CHECK_SHAPES = ((2048, 768), (768,), (1000, 3001), (3, 64, 96), (257, 4100), ())
#: The shapes of the dry run (a ragged matrix, a vector, a batch of matrices; the interpreter runs one
#: program at a time, so two steps of these take seconds, and the multi-tile paths are the interpreter
#: tests' job).
DRY_RUN_SHAPES = ((37, 53), (45,), (3, 7, 9))
_OPTIONS = ({}, {"beta1": 0.9, "weight_decay": 0.01})
#: bfloat16 only: stochastic rounding. The two paths draw different random bits, so they agree only
#: to one bfloat16 step per step, the same bound as rounding to nearest (a coarse check: it catches a
#: wrong formula or a broken rounding, not a bias).
_BF16_OPTIONS = ({"stochastic_rounding": True},)
# A float32 step agrees with the eager path to rounding (a few 1e-7 of max|X| per step); a
# wrong formula is off by 1e-3 or more. A bfloat16 parameter is rounded to nearest once per
# step on both paths, so it may land one bfloat16 step (2^-7 relative at most) away per step.
_TOL = {"float32": 2e-6, "bfloat16": 2.0**-7}


def interpreter_on() -> bool:
    """True if the Triton kernels run (or will run, once imported) in Triton's interpreter."""
    if "optbook.kernels.adafactor_fused" in sys.modules:
        return bool(sys.modules["optbook.kernels.adafactor_fused"].INTERPRET)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def kernel_check(
    device, shapes: Sequence[Sequence[int]], *, dtypes: Sequence[str] = ("float32", "bfloat16"), steps: int = 3,
    tiles: Sequence[int] | None = None, seed: int = 0,
) -> list[dict[str, Any]]:
    """``optbook.Adafactor(fused=True)`` against its eager path, for every dtype and option set
    (defaults; momentum with weight decay; for bfloat16 also stochastic rounding).

    Both optimizers start from the same parameters and see the same gradients for
    ``steps`` steps. Each row reports the largest difference relative to
    :math:`\\max|X|`, whether it is within the tolerance of its dtype (float32: 2e-6;
    bfloat16: :math:`2^{-7}` per step, one rounding step), and whether the Triton
    kernels ran (a cached launch plan exists afterwards). ``tiles`` forces a block
    shape ``(tile_m, sub_m, block_n, seg)``.
    """
    import torch

    import optbook
    from optbook.kernels import adafactor_fused
    from optbook.kernels.layout import BlockConfig, use_block_config

    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    device = torch.device(device)
    if device.type == "cpu" and not adafactor_fused.INTERPRET:
        raise ValueError("device: the Triton kernels run on CPU tensors only in the interpreter; set "
                         "TRITON_INTERPRET=1 before triton is imported (python -m optbook.bench.gpu_check --dry-run).")
    rows = []
    for dtype_name in dtypes:
        if dtype_name not in _TOL:
            raise ValueError(f"dtypes: each must be one of {sorted(_TOL)}, got {dtype_name!r}.")
        dtype = getattr(torch, dtype_name)
        for options in _OPTIONS + (_BF16_OPTIONS if dtype_name == "bfloat16" else ()):
            gen = torch.Generator().manual_seed(seed)
            start = [torch.randn(tuple(s), generator=gen) for s in shapes]
            grads = [[torch.randn(tuple(s), generator=gen) * 1e-2 for s in shapes] for _ in range(steps)]
            finals = {}
            adafactor_fused.clear_plans()
            for fused in (True, False):
                params = [x.to(device=device, dtype=dtype, copy=True).requires_grad_(True) for x in start]
                opt = optbook.Adafactor(params, fused=fused, **options)
                context = use_block_config(BlockConfig(*tiles)) if (fused and tiles) else contextlib.nullcontext()
                with context:
                    for step_grads in grads:
                        for p, g in zip(params, step_grads):
                            p.grad = g.to(device=device, dtype=dtype, copy=True)
                        opt.step()
                finals[fused] = [p.detach().float().cpu().clone() for p in params]
                if fused:
                    # The Triton kernels ran if the optimizer holds a launch plan now.
                    triton_ran = adafactor_fused.cached_plan_bytes() > 0
                del opt
            scale = max(float(x.abs().max()) for x in finals[False] if x.numel())
            err = max(float((a - b).abs().max()) for a, b in zip(finals[True], finals[False]) if a.numel()) / scale
            tol = _TOL[dtype_name] * (steps if dtype_name == "bfloat16" else 1)
            rows.append({
                "dtype": dtype_name, "options": dict(options), "shapes": [list(s) for s in shapes], "steps": steps,
                "max_rel_diff": err, "tolerance": tol, "passed": bool(err <= tol and triton_ran),
                "triton_kernels_ran": bool(triton_ran),
            })
    adafactor_fused.clear_plans()
    return rows


def run_gpu_tests(*, interpret: bool, timeout: float = 300.0) -> dict[str, Any]:
    """Run the GPU-only tests (:data:`GPU_TESTS`) in a pytest subprocess and summarise the result.

    ``interpret=False`` sets ``TRITON_INTERPRET=0`` (which ``tests/conftest.py`` keeps) so that the
    kernels compile for the GPU; without CUDA those tests skip, which pytest reports and this
    function records.
    """
    patterns, expression = GPU_TESTS
    files = sorted({f for pattern in patterns for f in glob.glob(str(_ROOT / pattern))})
    # OPTBOOK_GPU_CHECK_NESTED tells tests/test_gpu_check.py not to start another dry run inside this one.
    env = dict(os.environ, TRITON_INTERPRET="1" if interpret else "0", OPTBOOK_GPU_CHECK_NESTED="1")
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", expression, *files]
    start = time.perf_counter()
    try:
        out = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired:
        rc, text = -1, f"timed out after {timeout:.0f} s"
    summary = next((line.strip("= ") for line in reversed(text.splitlines()) if " in " in line and "s" in line), "")
    return {
        "command": " ".join(["pytest", "-k", expression, *(str(Path(f).relative_to(_ROOT)) for f in files)]),
        "returncode": rc,
        "passed": rc == 0,
        "summary": summary,
        "wall_s": time.perf_counter() - start,
    }


def published_floor(record: dict) -> dict[str, Any] | None:
    """For a GPU record of a device in :data:`~optbook.kernels.roofline.PUBLISHED_DEVICES`: its
    published bandwidth, and each fused row's derived floor (bytes / published bandwidth) over
    its measured median time. ``None`` for any other device."""
    from optbook.kernels import roofline

    spec = roofline.published_device(record["provenance"].get("device_name", ""))
    if spec is None:
        return None
    rows = []
    for case in record["results"]:
        for row in case["rows"]:
            if "error" in row:
                continue
            floor = roofline.floor_seconds(case["floor_bytes"][row["family"]], spec.bandwidth)
            rows.append({"model": case["model"], "dtype": case["dtype"], "method": row["method"],
                         "derived_floor_s": floor, "fraction_of_floor": floor / row["median_s"]})
    return {"device": spec.name, "published_bandwidth": spec.bandwidth, "source": spec.source,
            "l2_bytes_published": spec.l2_bytes, "rows": rows}


def dry_run_path(output: Path | str | None, date_utc: str) -> Path:
    """Where a dry run writes its record: ``output`` (a file or folder), or a fresh temporary
    folder; never under ``book/data``."""
    if output is None:
        path = Path(tempfile.mkdtemp(prefix="optbook-gpu-check-")) / f"gpu-check-dry-run-{date_utc[:10]}.json"
    else:
        path = Path(output)
        if path.suffix != ".json":
            path = path / f"gpu-check-dry-run-{date_utc[:10]}.json"
    data = (_ROOT / "book" / "data").resolve()
    if path.resolve() == data or data in path.resolve().parents:
        raise ValueError(f"output: a dry run is not a GPU record and must not be written under {data}; "
                         "pass another folder (or none: a temporary one is used).")
    return path


def run_check(dry_run: bool, output: Path | str | None = None,
              log: Callable[[str], None] | None = None) -> tuple[dict, Path]:
    """The whole check (kernels, GPU tests, benchmark, record); returns the record and where it was written."""
    import torch

    from optbook import bench
    from optbook.bench.shapes import MODELS

    log = log or (lambda msg: None)
    start = time.perf_counter()
    if not dry_run and output is not None:
        raise ValueError("output: a GPU run writes its record to book/data/ (bench.record_path); --output is "
                         "for --dry-run only.")
    if dry_run:
        dry_run_path(output, _dt.datetime.now(_dt.timezone.utc).isoformat())  # refuse book/data before any work
        if not interpreter_on():
            raise RuntimeError("a dry run needs TRITON_INTERPRET=1 before triton is imported; run it through "
                               "main(['--dry-run']) or python -m optbook.bench.gpu_check --dry-run.")
        device = torch.device("cpu")
        settings = bench.BenchSettings(device="cpu", models=("gpt2-small",), dtypes=("fp32",),
                                       methods=("optbook", "adamw-foreach"), warmup=1, repeats=3, small=True,
                                       memory=False)
        shapes, steps = DRY_RUN_SHAPES, 2
    else:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device: the GPU check needs an H100/H200 (or any CUDA GPU); "
                               "on a CPU run `python -m optbook.bench.gpu_check --dry-run`.")
        if interpreter_on():
            raise RuntimeError("TRITON_INTERPRET is set: the kernels would run in the interpreter, not on the GPU.")
        device = torch.device("cuda")
        settings = bench.BenchSettings(device="cuda", models=tuple(MODELS), dtypes=("fp32", "bf16"))
        shapes, steps = GPU_CHECK_SHAPES, 3
    log(f"1/3 kernels on {device}{' (Triton interpreter)' if dry_run else ''}: fused against eager ...")
    checks = kernel_check(device, shapes, steps=steps)
    log("    GPU-only tests (pytest -k cuda) ...")
    tests = run_gpu_tests(interpret=dry_run)
    log(f"    {tests['summary'] or tests['returncode']}")
    log("2/3 benchmark ...")
    command = "python -m optbook.bench.gpu_check" + (" --dry-run" if dry_run else "")
    record = bench.run_benchmark(settings, log=lambda msg: log("    " + msg), command=command)
    record["gpu_check"] = {
        "dry_run": dry_run,
        "interpreter": interpreter_on(),
        "kernel_check": checks,
        "kernel_check_passed": all(row["passed"] for row in checks),
        "gpu_tests": tests,
        "published": published_floor(record) if record["kind"] == "gpu" else None,
        "wall_s": time.perf_counter() - start,
        "budget_s": BUDGET_S,
    }
    path = dry_run_path(output, record["provenance"]["date_utc"]) if dry_run else bench.record_path(record)
    log(f"3/3 record -> {path}")
    bench.write_record(record, path)
    return record, path


def _reexec(argv: Sequence[str], interpret: bool) -> int:
    env = dict(os.environ, TRITON_INTERPRET="1" if interpret else "0")
    return subprocess.call([sys.executable, "-m", "optbook.bench.gpu_check", *argv], env=env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optbook.bench.gpu_check",
        description="The fused kernel on a GPU: native correctness against the eager path, the GPU-only tests, "
                    "the benchmark, and its JSON record in book/data/ (make gpu-check).",
    )
    parser.add_argument("--dry-run", action="store_true",
                        help="run the same steps on the CPU with the Triton interpreter, tiny shapes, and the "
                             "record in a temporary folder (never book/data)")
    parser.add_argument("--output", type=Path, default=None, help="with --dry-run: the record's file or folder")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(list(argv) if argv is not None else None)
    argv = list(argv) if argv is not None else sys.argv[1:]
    if args.output is not None and not args.dry_run:
        parser.error("output: a GPU run writes its record to book/data/; --output is for --dry-run only")
    if interpreter_on() != args.dry_run:
        # TRITON_INTERPRET is read when triton and the kernels are first imported: start afresh.
        return _reexec(argv, interpret=args.dry_run)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        record, path = run_check(args.dry_run, args.output, log)
    except (RuntimeError, ValueError) as exc:
        parser.error(str(exc))
    from optbook.bench import format_table

    print(format_table(record))
    check = record["gpu_check"]
    print(f"\nkernel check (fused vs eager, {len(check['kernel_check'])} cases): "
          f"{'passed' if check['kernel_check_passed'] else 'FAILED'}")
    print(f"GPU-only tests: {check['gpu_tests']['summary'] or check['gpu_tests']['returncode']}")
    if check["published"]:
        pub = check["published"]
        print(f"derived floor at the published {pub['published_bandwidth'] / 1e12:.2f} TB/s of the {pub['device']}:")
        for row in pub["rows"]:
            print(f"  {row['model']} {row['dtype']} {row['method']:<24} {100 * row['fraction_of_floor']:.1f}% of it")
    print(f"took {check['wall_s']:.0f} s (aim: under {BUDGET_S} s); wrote {path}")
    ok = check["kernel_check_passed"] and check["gpu_tests"]["passed"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
