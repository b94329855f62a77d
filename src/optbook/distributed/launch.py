"""Start ``world_size`` gloo ranks on this machine and collect what each returns.

Ranks are started with ``torch.multiprocessing.spawn`` and meet through a file
in a fresh temporary directory (``init_method="file://..."``), so several
launches at once (parallel pytest workers, two notebooks) never compete for a
TCP port. Each rank runs with one intra-op thread.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import torch

__helpers__ = ("run_ranks",)


def _entry(rank: int, fn: Callable, world_size: int, rendezvous: str, outdir: str, args: tuple) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], world_size: int, *args: Any) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo ranks; return the ranks' results in rank order.

    ``fn`` must be importable by name (a module-level function), since each
    rank is a fresh Python process. A rank that raises makes this raise.
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="optbook-ranks-") as tmp:
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # read by each rank when it imports torch
        try:
            mp.spawn(_entry, args=(fn, world_size, os.path.join(tmp, "rendezvous"), tmp, args),
                     nprocs=world_size, join=True)
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(world_size)]
