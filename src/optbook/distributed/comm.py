"""The optimizer's collectives: one process group per device mesh, one flat buffer per group and pass,
and a counter of the collectives a block of code issues (for the tests and the chapter)."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

import torch
import torch.distributed as dist

__helpers__ = ("mesh_group", "all_reduce_buffers", "count_collectives")

_GROUPS: dict = {}


def mesh_group(mesh):
    """One process group containing every rank of ``mesh`` (the default group when the mesh spans the world)."""
    key = (id(mesh), mesh)
    hit = _GROUPS.get(key)
    if hit is not None:
        return hit
    ranks = sorted(int(r) for r in mesh.mesh.flatten().tolist())
    if mesh.ndim == 1:
        group = mesh.get_group(0)
    elif ranks == list(range(dist.get_world_size())):
        group = dist.group.WORLD
    else:
        group = mesh._flatten().get_group()  # every rank of the mesh calls this at the same step
    _GROUPS[key] = group
    return group


def all_reduce_buffers(buffers: dict) -> None:
    """Sum each flat buffer over its process group in place: one ``all_reduce`` per group."""
    for group, buf in buffers.items():
        if buf.numel():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)


# Collectives of torch.distributed that a block might issue; counted by name.
_COLLECTIVES = (
    "all_reduce", "all_reduce_coalesced", "all_gather", "all_gather_into_tensor", "all_gather_object",
    "reduce_scatter", "reduce_scatter_tensor", "broadcast", "reduce", "all_to_all", "all_to_all_single",
    "gather", "scatter", "barrier",
)


@contextlib.contextmanager
def count_collectives() -> Iterator[Counter]:
    """Count the collectives issued inside the block: a ``Counter`` of names (and ``"<name> floats"``,
    the number of elements they carried).

    Calls through ``torch.distributed`` (``dist.all_reduce`` ...) are counted by
    wrapping those functions; collectives that DTensor issues itself (functional
    collectives of a ``redistribute``, the ``all()`` of a sharded tensor) are
    counted by DTensor's ``CommDebugMode`` under the key ``"dtensor"``.
    """
    from torch.distributed.tensor.debug import CommDebugMode

    counts: Counter = Counter()
    saved = {}
    for name in _COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is None:
            continue
        saved[name] = fn

        def wrapper(*args, __fn=fn, __name=name, **kwargs):
            counts[__name] += 1
            if args and isinstance(args[0], torch.Tensor):
                counts[__name + " floats"] += args[0].numel()  # the payload of this call
            return __fn(*args, **kwargs)

        setattr(dist, name, wrapper)
    mode = CommDebugMode()
    try:
        with mode:
            yield counts
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)
    # CommDebugMode sees the c10d op under every dist.* call too; the rest is DTensor's own.
    inside = mode.get_total_counts() - sum(v for k, v in counts.items() if not k.endswith(" floats"))
    if inside > 0:
        counts["dtensor"] += inside
