"""Compile the fused Adafactor kernels for a GPU that is not there.

Triton's interpreter (what CI runs) executes the kernels as NumPy code, so it
accepts programs that the real compiler rejects and says nothing about the
machine code. This module runs the real compiler ahead of time, for a chosen
architecture (``sm_90``: H100/H200), which needs ``ptxas`` from the triton
wheel but no GPU and no driver. It reports what can be read off the
compiled kernel: registers, spills, shared memory, and whether the global
loads are 128-bit wide.

It must run in a process where ``TRITON_INTERPRET`` is unset: in interpreter
mode ``@triton.jit`` builds interpreter objects, not compilable ones. The
command line ``python -m optbook.kernels.aot`` prints one line per kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass

__all__ = ["CompiledKernelInfo", "compile_all", "main"]


@dataclass(frozen=True)
class CompiledKernelInfo:
    """What the compiler says about one kernel specialisation."""

    kernel: str
    param_dtype: str
    variant: str  # "main": a Transformer weight's block shape; "other": the remaining branches
    arch: int
    registers: int
    spills: int  # bytes of local memory per thread (register spills)
    shared_bytes: int
    wide_loads: int  # ld.global.v2/v4 instructions in the PTX
    scalar_loads: int  # ld.global.b32/b16 instructions in the PTX


def _signatures(dtype_name: str, config, vec: int, variant: str = "main"):
    import triton.language as tl

    from optbook.kernels import adafactor_fused as F

    xdt = {"float32": tl.float32, "bfloat16": tl.bfloat16, "float16": tl.float16}[dtype_name]
    blocks = {"TILE_M": config.tile_m, "SUB_M": config.sub_m, "BLOCK_N": config.block_n, "VEC": vec}
    # "other" flips every constexpr branch the main variant does not take;
    # "momentum" is the main variant with beta1 and a re-read of X.
    other = variant == "other"
    read_x, relative, scaled, increment = (True, False, False, False) if other else (False, True, True, True)
    momentum = variant in ("other", "momentum")
    read_x = read_x or variant == "momentum"
    return [
        (
            F._stats_kernel,
            {"tiles_ptr": "*i32", "meta_ptr": "*i64", "ptr_ptr": "*i64", "rowpart_ptr": "*fp32",
             "colpart_ptr": "*fp32", "usq_ptr": "*fp32", "xsq_ptr": "*fp32", "bad_ptr": "*i32",
             "eps1": "fp32", "neg_c": "fp32", "t_offset": "fp32"},
            {"XDT": xdt, "GDT": xdt, "TDT": tl.float32, "READ_X": read_x, **blocks},
        ),
        (
            F._stats_finalize_kernel,
            {"segs_ptr": "*i32", "meta_ptr": "*i64", "ptr_ptr": "*i64", "rowpart_ptr": "*fp32",
             "colpart_ptr": "*fp32", "rsum_ptr": "*fp32", "bad_ptr": "*i32", "neg_c": "fp32", "t_offset": "fp32"},
            {"TDT": tl.float32, "SEG": config.seg},
        ),
        (
            F._clip_kernel,
            {"tiles_ptr": "*i32", "meta_ptr": "*i64", "ptr_ptr": "*i64", "rsum_ptr": "*fp32", "usq_ptr": "*fp32"},
            {"GDT": xdt, "SEG_BLOCK": 128, **blocks},
        ),
        (
            F._scale_kernel,
            {"meta_ptr": "*i64", "ptr_ptr": "*i64", "usq_ptr": "*fp32", "xsq_ptr": "*fp32", "scale_ptr": "*fp32",
             "bad_ptr": "*i32", "lr": "fp32", "eps2": "fp32", "d": "fp32", "t_offset": "fp32"},
            {"TDT": tl.float32, "RELATIVE_STEP": relative, "SCALE_PARAMETER": scaled, "BLOCK": 1024,
             "INCREMENT": increment, "COUNT_SKIPS": increment},
        ),
        (
            F._update_kernel,
            {"tiles_ptr": "*i32", "meta_ptr": "*i64", "ptr_ptr": "*i64", "rsum_ptr": "*fp32", "scale_ptr": "*fp32",
             "xsq_ptr": "*fp32", "bad_ptr": "*i32", "seed_ptr": "*i64", "salt": "i32", "eps1": "fp32", "neg_c": "fp32",
             "decay": "fp32", "sign": "fp32", "one_minus_beta1": "fp32"},
            {"XDT": xdt, "GDT": xdt, "TDT": tl.float32, "SEG_BLOCK": 128, "MOMENTUM": momentum,
             "SR": other and xdt == tl.bfloat16, **blocks},
        ),
    ]


def compile_all(
    arch: int = 90, dtypes=("float32", "bfloat16"), kernels=None, variants=("main",)
) -> list[CompiledKernelInfo]:
    """Compile the kernels for ``sm_<arch>`` and return what the compiler reports.

    Variant ``"main"`` is the specialisation a Transformer weight gets (128 x
    128 tiles, 128-bit loads, carried RMS(X), relative step); ``"momentum"``
    the same with ``beta1`` and a re-read of X. Variant
    ``"other"`` takes every other constexpr branch: narrow tiles without the
    alignment promise, re-read X, absolute step, no parameter scale, caller
    counts t and skips, momentum, stochastic rounding (bfloat16). ``kernels``
    names a subset (for example ``["_update_kernel"]``).
    """
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError(
            "TRITON_INTERPRET is set: the kernels were built for the interpreter. "
            "Run `python -m optbook.kernels.aot` in a process without it."
        )
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from optbook.kernels import adafactor_fused as F

    out = []
    for variant in variants:
        if variant not in ("main", "momentum", "other"):
            raise ValueError(f"variants must be among 'main', 'momentum' and 'other', got {variant!r}.")
        config = F.block_config(3, 3) if variant == "other" else F.block_config(4096, 4096)
        for dtype_name in dtypes:
            vec = 1 if variant == "other" else (4 if dtype_name == "float32" else 8)
            for fn, signature, constexprs in _signatures(dtype_name, config, vec, variant):
                if kernels is not None and fn.__name__ not in kernels:
                    continue
                sig = dict(signature)
                sig.update({name: "constexpr" for name in constexprs})
                src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
                compiled = triton.compile(
                    src, target=GPUTarget("cuda", arch, 32), options={"num_warps": config.num_warps}
                )
                ptx = compiled.asm["ptx"]
                usage = _resource_usage(compiled.asm["cubin"])
                out.append(
                    CompiledKernelInfo(
                        kernel=fn.__name__,
                        param_dtype=dtype_name,
                        variant=variant,
                        arch=arch,
                        registers=usage.get("REG", -1),
                        spills=usage.get("LOCAL", -1),
                        shared_bytes=int(compiled.metadata.shared),
                        wide_loads=len(re.findall(r"ld\.global(?:\.\w+)*\.v[24]\.", ptx)),
                        scalar_loads=len(re.findall(r"ld\.global(?:\.\w+)*\.b(?:32|16)\b", ptx)),
                    )
                )
    return out


def _resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers and local memory per thread as ptxas fixed them, read from the
    cubin with the triton wheel's ``cuobjdump`` (loading it would need a driver)."""
    import subprocess
    import tempfile

    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optbook.kernels.aot",
        description="Compile the fused Adafactor kernels for a GPU architecture without a GPU.",
    )
    parser.add_argument("--arch", type=int, default=90, help="compute capability times ten (90: H100/H200)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--all-variants", action="store_true", help="also compile the 'other' constexpr branches")
    args = parser.parse_args(argv)
    infos = compile_all(args.arch, dtypes=("float32", "bfloat16", "float16"),
                        variants=("main", "momentum", "other") if args.all_variants else ("main",))
    if args.json:
        json.dump([asdict(i) for i in infos], sys.stdout, indent=1)
        print()
    else:
        print(f"{'kernel':<24} {'dtype':<9} {'variant':<8} {'regs':>5} {'spills':>6} {'smem':>6} "
              f"{'wide ld':>8} {'narrow ld':>9}")
        for i in infos:
            print(f"{i.kernel:<24} {i.param_dtype:<9} {i.variant:<8} {i.registers:>5} {i.spills:>6} "
                  f"{i.shared_bytes:>6} {i.wide_loads:>8} {i.scalar_loads:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
