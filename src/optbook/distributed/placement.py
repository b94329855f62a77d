r"""Where a DTensor's local shard sits in the global tensor, and how its statistics are placed.

A DTensor on a device mesh with placements :math:`(P_0, \dots, P_{k-1})` holds,
on each rank, a block of the global tensor: along every tensor dim :math:`d`
the mesh dims that shard :math:`d` (``Shard(d)`` or the ``_StridedShard(d, sf)``
of FSDP2 on top of tensor parallelism) pick a set of indices, and the local
shard is the outer product of these index sets (possibly empty: a dim smaller
than the number of shards leaves some ranks with nothing). :func:`layout_of`
computes those index sets once per (mesh, placements, shape) by splitting a
1-D ``arange`` with DTensor's own rules, without communication, so uneven and
strided shards come out exactly as DTensor lays them out.

Only ``Shard``, ``_StridedShard`` and ``Replicate`` parameters are supported;
anything else (a ``Partial`` parameter, a custom placement) raises
:class:`UnsupportedPlacementError` naming the placement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__helpers__ = ("layout_of", "drop_dim_placements", "stat_dtensor", "check_placements")


class UnsupportedPlacementError(ValueError):
    """A DTensor placement the sharded optimizers cannot compute exactly with (named in the message)."""


def _placement_types():
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    return Shard, _StridedShard, Replicate


def check_placements(placements: Sequence, where: str) -> None:
    """Raise :class:`UnsupportedPlacementError` for a placement other than Shard, _StridedShard or Replicate."""
    Shard, Strided, Replicate = _placement_types()
    for mesh_dim, pl in enumerate(placements):
        if isinstance(pl, (Shard, Strided, Replicate)):
            continue
        kind = "a Partial (pending-reduction) placement" if pl.is_partial() else "a placement"
        raise UnsupportedPlacementError(
            f"{where} is a DTensor with {kind} {pl!r} on mesh dim {mesh_dim} (placements {tuple(placements)}); "
            "optbook's sharded optimizers support Shard, _StridedShard and Replicate parameters only. "
            "Redistribute the parameter (e.g. p.redistribute(placements=[Replicate()])) before optimising it."
        )


@dataclass(frozen=True)
class Layout:
    """The local block of one DTensor layout: index sets per tensor dim, and whether this rank owns it."""

    shape: tuple[int, ...]  # global shape
    index: tuple[Tensor, ...]  # per tensor dim: the global indices held locally (int64, ascending or strided)
    owner: bool  # coordinate 0 on every mesh dim that replicates it: the one copy counted in sums
    placements: tuple

    @property
    def local_shape(self) -> tuple[int, ...]:
        return tuple(len(ix) for ix in self.index)

    def positions(self, dims: Sequence[int]) -> Tensor:
        """Flat positions, in the global sub-tensor over ``dims``, of the local entries (row-major, local order)."""
        dims = list(dims)
        gshape = [self.shape[d] for d in dims]
        pos = torch.arange(math.prod(gshape), dtype=torch.int64).view(gshape)  # () for no dims: one position
        for axis, d in enumerate(dims):
            pos = pos.index_select(axis, self.index[d])
        return pos.reshape(-1)


_LAYOUTS: dict = {}


def layout_of(mesh, placements: Sequence, shape: Sequence[int]) -> Layout:
    """The :class:`Layout` of a DTensor of global ``shape`` on ``mesh`` with ``placements`` (cached)."""
    placements = tuple(placements)
    shape = tuple(int(s) for s in shape)
    key = (id(mesh), mesh, placements, shape)
    hit = _LAYOUTS.get(key)
    if hit is not None:
        return hit
    from torch.distributed.tensor import distribute_tensor

    Shard, Strided, Replicate = _placement_types()
    check_placements(placements, "a tensor")
    index = []
    for d, size in enumerate(shape):
        per_dim = []
        for pl in placements:
            if isinstance(pl, Strided) and pl.dim == d:
                per_dim.append(Strided(0, split_factor=pl.split_factor))
            elif isinstance(pl, Shard) and pl.dim == d:
                per_dim.append(Shard(0))
            else:
                per_dim.append(Replicate())
        if all(isinstance(pl, Replicate) for pl in per_dim):
            index.append(torch.arange(size, dtype=torch.int64))
            continue
        ix = distribute_tensor(torch.arange(size, dtype=torch.int64), mesh, per_dim, src_data_rank=None)
        index.append(ix.to_local().clone())
    coord = mesh.get_coordinate()
    owner = coord is not None and all(
        c == 0 for c, pl in zip(coord, placements) if isinstance(pl, Replicate)
    )
    out = Layout(shape, tuple(index), owner, placements)
    _LAYOUTS[key] = out
    return out


def drop_dim_placements(placements: Sequence, dim: int) -> tuple:
    """Placements of a statistic that sums a tensor over ``dim``: sharding of ``dim`` becomes Replicate
    (every shard holds the full sum after the reduction), later dims shift down by one."""
    Shard, Strided, Replicate = _placement_types()
    out = []
    for pl in placements:
        if isinstance(pl, (Shard, Strided)) and pl.dim == dim:
            out.append(Replicate())
        elif isinstance(pl, Strided):
            out.append(Strided(pl.dim - (pl.dim > dim), split_factor=pl.split_factor))
        elif isinstance(pl, Shard):
            out.append(Shard(pl.dim - (pl.dim > dim)))
        else:
            out.append(pl)
    return tuple(out)


def stat_dtensor(local: Tensor, mesh, placements: Sequence, shape: Sequence[int]):
    """Wrap a local statistic as a DTensor of global ``shape`` (contiguous strides), without communication."""
    from torch.distributed.tensor import DTensor

    shape = tuple(shape)
    stride = tuple(math.prod(shape[k + 1:]) for k in range(len(shape)))
    return DTensor.from_local(local, mesh, tuple(placements), run_check=False, shape=torch.Size(shape), stride=stride)
