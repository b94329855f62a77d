"""Sharded optimizers: :class:`optbook.optim.Adafactor` on DTensor parameters (FSDP2, tensor parallelism).

* :mod:`optbook.distributed.placement` -- where a DTensor's shard sits in the
  global tensor, the placements of the statistics, and the error for
  placements that are not supported;
* :mod:`optbook.distributed.adafactor` -- the sharded step: two coalesced
  all-reduces per step and device mesh, :math:`O(n+m)` numbers per matrix;
* :mod:`optbook.distributed.comm` -- the process group of a mesh, the
  coalesced all-reduce and a counter of collectives;
* :mod:`optbook.distributed.launch` -- spawn gloo ranks on a CPU with a
  file rendezvous (for tests and the chapter).

``optbook.optim.Adafactor.step`` sends DTensor parameters here by itself;
nothing needs to be called directly.
"""

from optbook.distributed.placement import UnsupportedPlacementError

__all__ = ["UnsupportedPlacementError"]
