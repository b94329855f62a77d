"""How the fused Adafactor kernels cut tensors into tiles (no triton needed).

The block shape decides two things the roofline needs: how many partial sums
pass 1 writes (one row partial per row per column tile, one column partial
per column per row tile) and how many tiles a tensor costs. Keeping it here,
free of triton, lets :mod:`optbook.kernels.roofline` and the book count bytes
on any machine.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

__all__ = ["BlockConfig", "as_matrix", "block_config", "use_block_config", "tile_count", "lane_utilization"]


@dataclass(frozen=True)
class BlockConfig:
    """Block shape of one bucket of tensors.

    A matrix tile is ``tile_m`` rows by ``block_n`` columns, walked
    ``sub_m`` rows at a time; a vector tile is ``tile_m * block_n``
    contiguous elements. ``seg`` is the number of entries of :math:`R` or
    :math:`C` that one program of pass 1b finalises. All are powers of two.
    """

    tile_m: int
    sub_m: int
    block_n: int
    seg: int = 256
    num_warps: int = 4

    def __post_init__(self) -> None:
        for name in ("tile_m", "sub_m", "block_n", "seg"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1 and value & (value - 1) == 0):
                raise ValueError(f"BlockConfig.{name} must be a power of two >= 1, got {value!r}.")
        if self.tile_m % self.sub_m:
            raise ValueError(f"BlockConfig.tile_m={self.tile_m} must be a multiple of sub_m={self.sub_m}.")
        if not (isinstance(self.num_warps, int) and self.num_warps in (1, 2, 4, 8, 16)):
            raise ValueError(f"BlockConfig.num_warps must be 1, 2, 4, 8 or 16, got {self.num_warps!r}.")


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


_FORCED_CONFIG: BlockConfig | None = None


def block_config(n: int, m: int) -> BlockConfig:
    """The block shape for an ``n x m`` matrix (or a batch of them).

    Wide matrices (every weight of a Transformer) get tiles of 128 columns by
    128 rows: a warp reads 512 contiguous bytes of a float32 row, and the
    partial sums cost 2/128 of a float per element. Narrower matrices get
    narrower, taller tiles so that most lanes still hold data. A sub-block
    holds 1024 elements per array, 8 per thread with 4 warps: twice that
    doubles the update kernel's registers (87 to 194 on sm_90, see
    ``python -m optbook.kernels.aot``) and cuts the blocks resident per SM.
    :func:`use_block_config` overrides the choice (the interpreter tests use
    it to get many tiles out of tiny shapes).
    """
    if _FORCED_CONFIG is not None:
        return _FORCED_CONFIG
    if n < 0 or m < 0:
        raise ValueError(f"n and m must be >= 0, got n={n}, m={m}.")
    block_n = min(128, max(16, _pow2_at_least(m)))
    sub_m = 1024 // block_n
    tile_m = max(sub_m, min(16384 // block_n, _pow2_at_least(max(n, 1))))
    return BlockConfig(tile_m=tile_m, sub_m=sub_m, block_n=block_n)


@contextmanager
def use_block_config(config: BlockConfig | None) -> Iterator[None]:
    """Use ``config`` for every tensor inside the ``with`` block (``None``: the default)."""
    global _FORCED_CONFIG
    if config is not None and not isinstance(config, BlockConfig):
        raise TypeError(f"config must be a BlockConfig or None, got {type(config).__name__}.")
    previous, _FORCED_CONFIG = _FORCED_CONFIG, config
    try:
        yield
    finally:
        _FORCED_CONFIG = previous


def as_matrix(shape: Sequence[int]) -> tuple[int, int, int]:
    """``(batch, n, m)`` of a rank >= 2 shape, factored over its last two axes
    as ``torch.optim.Adafactor`` and :class:`optbook.optim.Adafactor` do."""
    if len(shape) < 2:
        raise ValueError(f"shape must have rank >= 2 to be factored, got {tuple(shape)}.")
    return math.prod(shape[:-2]), int(shape[-2]), int(shape[-1])


def tile_count(shape: Sequence[int], config: BlockConfig | None = None) -> int:
    """Programs one full-size pass launches for a tensor of this shape."""
    numel = math.prod(shape)
    if numel == 0:
        return 0
    if len(shape) < 2:
        cfg = config or block_config(1, numel)
        return -(-numel // (cfg.tile_m * cfg.block_n))
    nb, n, m = as_matrix(shape)
    cfg = config or block_config(n, m)
    return nb * -(-n // cfg.tile_m) * -(-m // cfg.block_n)


def lane_utilization(shape: Sequence[int], config: BlockConfig | None = None) -> float:
    """Fraction of the lanes a full-size pass issues that hold an element.

    A program walks its tile in sub-blocks of ``sub_m x block_n`` lanes and
    masks off what lies outside the tensor; a batch of 3 x 3 matrices (a
    convolution kernel factored over its last two axes) wastes almost all of
    them, a Transformer weight almost none.
    """
    numel = math.prod(shape)
    if numel == 0:
        return math.nan
    if len(shape) < 2:
        cfg = config or block_config(1, numel)
        lanes_per_sub = cfg.sub_m * cfg.block_n
        span = cfg.tile_m * cfg.block_n
        issued = sum(-(-min(span, numel - e0) // lanes_per_sub) for e0 in range(0, numel, span)) * lanes_per_sub
        return numel / issued
    nb, n, m = as_matrix(shape)
    cfg = config or block_config(n, m)
    sub_blocks = sum(-(-min(cfg.tile_m, n - r0) // cfg.sub_m) for r0 in range(0, n, cfg.tile_m))
    issued = nb * sub_blocks * cfg.sub_m * -(-m // cfg.block_n) * cfg.block_n
    return numel / issued
