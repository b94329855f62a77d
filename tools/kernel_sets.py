"""Run a command, or compare chapters, under other CPU kernel sets.

NumPy's OpenBLAS, NumPy's own SIMD loops, PyTorch's ATen and numba all pick
machine code for the CPU they run on, so the last bits of a result can differ
from one machine to the next. A stored notebook output must not depend on
them. Each *kernel set* below forces one choice through environment variables,
so one machine can stand in for several:

    python tools/kernel_sets.py list                  # the sets, and which this CPU can run
    python tools/kernel_sets.py run baseline -- CMD   # run CMD under one set
    python tools/kernel_sets.py diff NB.ipynb [...] --sets native,baseline
                                                      # execute chapters under each set and
                                                      # report every cell whose text differs

``make test`` runs the notebooks under ``native`` and ``baseline``;
``make test-kernels`` runs them under every set this CPU can execute and says
which it skipped (forcing AVX-512 kernels on a CPU without AVX-512 would stop
with an illegal instruction).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class KernelSet:
    name: str
    env: dict[str, str]
    needs: tuple[str, ...] = ()  # /proc/cpuinfo flags the forced kernels execute
    about: str = ""
    unset: tuple[str, ...] = field(default=())


# ``native`` leaves every library to choose for itself; the others force a choice.
# NPY_DISABLE_CPU_FEATURES makes NumPy's own loops (exp, log, sum, ...) take their
# baseline code path; NUMBA_CPU_NAME=generic compiles numba code for no particular CPU.
KERNEL_SETS: dict[str, KernelSet] = {
    s.name: s
    for s in [
        KernelSet("native", {}, (), "whatever this CPU picks"),
        KernelSet(
            "baseline",
            {
                "OPENBLAS_CORETYPE": "Prescott",
                "ATEN_CPU_CAPABILITY": "default",
                "NUMBA_CPU_NAME": "generic",
            },
            (),
            "SSE3-era OpenBLAS, scalar ATen, generic numba: runs on any x86-64",
        ),
        KernelSet(
            "haswell",
            {"OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2"},
            ("avx2", "fma"),
            "AVX2 OpenBLAS and ATen",
        ),
        KernelSet(
            "sandybridge-npbase",
            {
                "OPENBLAS_CORETYPE": "Sandybridge",
                "ATEN_CPU_CAPABILITY": "default",
                "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR",
                "NUMBA_CPU_NAME": "generic",
            },
            ("avx",),
            "AVX OpenBLAS, scalar ATen, NumPy's baseline loops",
        ),
        KernelSet(
            "zen",
            {"OPENBLAS_CORETYPE": "Zen", "ATEN_CPU_CAPABILITY": "avx2"},
            ("avx2", "fma"),
            "AMD Zen OpenBLAS, AVX2 ATen",
        ),
        KernelSet(
            "skylakex",
            {"OPENBLAS_CORETYPE": "SkylakeX", "ATEN_CPU_CAPABILITY": "avx512"},
            ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
            "AVX-512 OpenBLAS and ATen",
        ),
    ]
}

ALL = list(KERNEL_SETS)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: assume nothing beyond the baseline
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def runnable(ks: KernelSet, flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return all(f in flags for f in ks.needs)


def environ(ks: KernelSet) -> dict[str, str]:
    env = dict(os.environ)
    # The machine may set OPENBLAS_CORETYPE itself; a set that forces nothing
    # still inherits it, a set that forces a value replaces it.
    env.update(ks.env)
    return env


def cmd_list(_: argparse.Namespace) -> int:
    flags = cpu_flags()
    for ks in KERNEL_SETS.values():
        mark = "runs here" if runnable(ks, flags) else "SKIPPED on this CPU (needs " + ", ".join(ks.needs) + ")"
        forced = " ".join(f"{k}={v}" for k, v in ks.env.items()) or "(nothing forced)"
        print(f"{ks.name:20s} {mark:40s} {forced}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    ks = KERNEL_SETS[args.set]
    if not runnable(ks):
        print(f"kernel set {ks.name}: skipped, this CPU lacks {', '.join(f for f in ks.needs if f not in cpu_flags())}")
        return 0
    print(f"=== kernel set {ks.name}: {' '.join(f'{k}={v}' for k, v in ks.env.items()) or 'native'} ===", flush=True)
    return subprocess.call(args.command, env=environ(ks))


def _texts(nb_path: Path) -> list[tuple[int, str]]:
    """The compared text of every code cell, as nbval sees it (images left out)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    out = []
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                parts.append(f"[{o.name}] {o.text}")
            elif o.output_type == "error":
                parts.append(f"[error] {o.ename}: {o.evalue}")
            else:
                for k, v in sorted(o.get("data", {}).items()):
                    if not k.startswith("image/"):
                        parts.append(f"[{k}] {v if isinstance(v, str) else json.dumps(v)}")
        out.append((n, "\n".join(parts)))
        n += 1
    return out


def _execute(nb_path: Path, ks: KernelSet, dest: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(nb_path, as_version=4)
    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environ(ks))
        client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(nb_path.parent)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    nbformat.write(nb, dest)
    return dest


def cmd_diff(args: argparse.Namespace) -> int:
    sets = [KERNEL_SETS[s] for s in args.sets.split(",")]
    sets = [s for s in sets if runnable(s)]
    tmp = Path(tempfile.mkdtemp(prefix="kernel-diff-"))
    jobs = [(Path(nb).resolve(), ks) for nb in args.notebooks for ks in sets]
    # Kernels start one at a time (environment swap), then run concurrently.
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = list(pool.map(lambda j: (j, _execute(j[0], j[1], tmp / f"{j[0].stem}.{j[1].name}.ipynb")), jobs))
    bad = 0
    for nb in args.notebooks:
        nb = Path(nb).resolve()
        stored = _texts(nb)
        runs = {ks.name: _texts(path) for (p, ks), path in results if p == nb}
        for i, ref in stored:
            diffs = {name: texts[i][1] for name, texts in runs.items() if texts[i][1] != ref}
            if diffs:
                bad += 1
                print(f"--- {nb.relative_to(ROOT)} cell {i}: differs under {', '.join(diffs)}")
                for name, got in diffs.items():
                    d = list(difflib.unified_diff(ref.splitlines(), got.splitlines(), "stored", name, n=0, lineterm=""))
                    print("\n".join(d[2:][: args.lines]))
    print(f"{bad} cell(s) differ")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list").set_defaults(func=cmd_list)
    r = sub.add_parser("run")
    r.add_argument("set", choices=ALL)
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("diff")
    d.add_argument("notebooks", nargs="+")
    d.add_argument("--sets", default="native,baseline")
    d.add_argument("--lines", type=int, default=12)
    d.set_defaults(func=cmd_diff)
    args = ap.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
