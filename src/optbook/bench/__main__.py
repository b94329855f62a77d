"""``python -m optbook.bench``: time optimizer steps side by side, print a table, write JSON.

Examples::

    python -m optbook.bench                      # CUDA if present, else a labelled CPU run
    python -m optbook.bench --device cpu --models gpt2-small --dtypes fp32
    python -m optbook.bench --device cpu --full --models gpt2-30m gpt2-small --dtypes fp32 --threads 2
    python -m optbook.bench --record             # on an H100/H200: write book/data/bench-<gpu>-<date>.json
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from optbook.bench import METHODS, BenchSettings, format_table, record_path, run_benchmark, write_record
from optbook.bench.shapes import ALL_MODELS, MODELS


def build_parser() -> argparse.ArgumentParser:
    description = textwrap.fill(
        "Median optimizer step time of optbook.Adafactor (fused and not), torch.optim.Adafactor "
        "(default and foreach), transformers' Adafactor and torch.optim.AdamW, side by side in one "
        "process, on parameter sets shaped like GPT-2 small and a ~1B LLaMA-style model. Reports "
        "effective bandwidth against the bytes-per-element floor, optimizer-state bytes and (CUDA) "
        "peak training memory. On a CPU it runs the CPU-applicable rows on small model variants.",
        width=78,
    )
    epilog = "\n".join(
        ["models:"]
        + [f"  {key:<24} {text}" for key, (text, _, _) in ALL_MODELS.items()]
        + ["methods:"]
        + [f"  {key:<24} {m.label}{' (CUDA only)' if m.cuda_only else ''}" for key, m in METHODS.items()]
    )
    parser = argparse.ArgumentParser(
        prog="python -m optbook.bench",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL", help="parameter sets to step")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], metavar="DTYPE", help="fp32 and/or bf16")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="rows to run (default: all that apply to the device)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps; the median is reported (default 20)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--small", dest="small", action="store_true", default=None,
                      help="small model variants (the default on CPU)")
    size.add_argument("--full", dest="small", action="store_false", help="full-size models (the default on CUDA)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory experiment")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parameters and gradients")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--output", type=Path, default=None,
                     help="JSON file to write (default: bench-results/bench-<device>-<date>.json)")
    out.add_argument("--record", action="store_true",
                     help="CUDA only: write the record for the book to book/data/bench-<gpu>-<date>.json")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (torch.set_num_threads; the fused CPU kernel uses as many)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("threads: must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    settings = BenchSettings(
        device=args.device, models=tuple(args.models), dtypes=tuple(args.dtypes),
        methods=tuple(args.methods) if args.methods else None, warmup=args.warmup, repeats=args.repeats,
        small=args.small, memory=args.memory, seed=args.seed,
    )
    try:
        settings.validate()
        device = settings.resolved_device()
        if args.record and device.type != "cuda":
            raise ValueError("record: --record writes a GPU result for the book and needs a CUDA device; "
                             "use --output for a CPU run.")
        log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        command = " ".join(["python", "-m", "optbook.bench", *(sys.argv[1:] if argv is None else argv)])
        record = run_benchmark(settings, log=log, command=command)
    except ValueError as exc:
        parser.error(str(exc))
    print(format_table(record))
    if args.record:
        path = record_path(record)
    elif args.output is not None:
        path = args.output
    else:
        kind = record["kind"]
        path = Path("bench-results") / f"bench-{kind}-{record['provenance']['date_utc'][:10]}.json"
    write_record(record, path)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
