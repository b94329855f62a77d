r"""Communication per training step, derived from parameter shapes: Adafactor's own all-reduces and FSDP's traffic.

These are *derived* figures (counts of numbers, and the bytes a ring
all-reduce / all-gather / reduce-scatter sends per rank), not measurements;
``tests/test_distributed.py`` checks the per-step element count of
:func:`adafactor_allreduce_floats` against what the sharded step actually
all-reduces at 2, 3 and 4 ranks.

* The sharded Adafactor (:mod:`optbook.distributed.adafactor`) all-reduces,
  per step and device mesh, one buffer of :math:`n + m + 1` numbers per
  :math:`n \times m` matrix (row sums, column sums, :math:`\sum X^2`) and 2 per
  vector, then one of 2 per matrix (:math:`1^\top R`, :math:`T`) and 1 per
  vector (:math:`\sum U^2`): two collectives, whatever the number of
  parameters. A tensor of rank > 2 is a batch of matrices, each with its own
  :math:`n + m`.
* AdamW's step is element-wise: under ZeRO/FSDP each rank updates its shard
  with no communication at all.
* Both pay FSDP's traffic for the parameters: an all-gather of the parameters
  in the forward pass and again in the backward pass, and a reduce-scatter of
  the gradients; a ring collective on :math:`P` ranks sends :math:`(P-1)/P`
  of the full tensor per rank (all-gather, reduce-scatter) or twice that
  (all-reduce).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

__helpers__ = ("adafactor_allreduce_floats", "ring_bytes_per_rank", "fsdp_bytes_per_rank", "step_communication")


def adafactor_allreduce_floats(shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]],
                               factor_dims: str = "last_two") -> tuple[int, int]:
    """Numbers in the two all-reduce buffers of one sharded Adafactor step, for parameters of these shapes."""
    from optbook.optim.adafactor import _factor_pair

    shapes = list(shapes.values()) if isinstance(shapes, Mapping) else list(shapes)
    first = second = 0
    for shape in shapes:
        shape = tuple(shape)
        pair = _factor_pair(shape, factor_dims)
        if pair is None:
            first, second = first + 2, second + 1
            continue
        i, j = pair
        rows = math.prod(s for k, s in enumerate(shape) if k != j)  # R: the shape without dim j
        cols = math.prod(s for k, s in enumerate(shape) if k != i)  # C: the shape without dim i
        batch = math.prod(s for k, s in enumerate(shape) if k not in pair)
        first += rows + cols + 1
        second += 2 * batch
    return first, second


def ring_bytes_per_rank(payload_bytes: float, world: int, kind: str) -> float:
    """Bytes one rank sends in a ring ``"all_reduce"`` (2(P-1)/P of the payload) or
    ``"all_gather"``/``"reduce_scatter"`` ((P-1)/P of the full tensor)."""
    share = (world - 1) / world
    return {"all_reduce": 2 * share, "all_gather": share, "reduce_scatter": share}[kind] * payload_bytes


def fsdp_bytes_per_rank(n_params: int, world: int, param_bytes: int = 2, grad_bytes: int = 4) -> float:
    """FSDP's per-step traffic per rank: all-gather of the parameters twice (forward, backward), reduce-scatter
    of the gradients once (bfloat16 parameters and float32 gradient reduction by default)."""
    return (2 * ring_bytes_per_rank(n_params * param_bytes, world, "all_gather")
            + ring_bytes_per_rank(n_params * grad_bytes, world, "reduce_scatter"))


def step_communication(shapes: Mapping[str, Sequence[int]], world: int, stat_bytes: int = 4) -> dict[str, float]:
    """The optimizer's own communication per step on ``world`` ranks: collectives and bytes per rank,
    for the sharded Adafactor and for AdamW, next to FSDP's traffic (the same for both)."""
    first, second = adafactor_allreduce_floats(shapes)
    n_params = sum(math.prod(s) for s in shapes.values())
    adafactor_bytes = ring_bytes_per_rank((first + second) * stat_bytes, world, "all_reduce")
    return {
        "world": world,
        "adafactor_collectives": 2,
        "adafactor_floats": first + second,
        "adafactor_bytes_per_rank": adafactor_bytes,
        "adamw_collectives": 0,
        "adamw_bytes_per_rank": 0.0,
        "fsdp_bytes_per_rank": fsdp_bytes_per_rank(n_params, world),
    }
