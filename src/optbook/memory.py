r"""What an optimizer's state costs: measured on any torch optimizer, counted for Adafactor.

Two views of the same quantity. :func:`optimizer_state_bytes` and
:func:`optimizer_state_numbers` *measure* the tensors an optimizer really
holds in ``optimizer.state``, whatever the optimizer. :func:`adafactor_state_numbers`
*counts* Adafactor's state from a parameter's shape alone: for an
:math:`n \times m` matrix

.. math::

    S = n + m \qquad\text{(factored, no momentum)}, \qquad S = n + m + nm \qquad\text{(with } \beta_1\text{)},

against :math:`2nm` for Adam. The full-size counts of the other optimizers
(:math:`kN` for :math:`k` full-size statistics), bytes per number and totals
over a model live in :mod:`optbook.memory_accounting`; this module does not
repeat them.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from optbook.memory_accounting import numel
from optbook.notation import symbol

__all__ = ["optimizer_state_bytes", "optimizer_state_numbers", "adafactor_state_numbers"]

# Public functions that measure rather than compute a book symbol.
__helpers__ = ("optimizer_state_bytes", "optimizer_state_numbers")


def _state_tensors(optimizer: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}.")
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                yield value


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state``, each storage counted once.

    Works for any ``torch.optim.Optimizer``: it walks ``optimizer.state`` and
    adds the size of each tensor's storage, so two entries that view one
    storage (or the same tensor listed twice) are not counted twice. Scalar
    counters (``"step"``) count too: they are state a checkpoint must hold.
    Python numbers in the state are not tensors and are not counted.
    """
    seen, total = set(), 0
    for value in _state_tensors(optimizer):
        storage = value.untyped_storage()
        key = (value.device, storage.data_ptr(), storage.nbytes())
        if storage.nbytes() == 0 or key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return int(total)


def optimizer_state_numbers(optimizer: torch.optim.Optimizer, *, min_dim: int = 1) -> int:
    """Entries of the state tensors with at least ``min_dim`` dims, summed over ``optimizer.state``.

    The default ``min_dim=1`` leaves out 0-d tensors, which for torch's
    optimizers and :class:`optbook.Adafactor` are per-parameter counters
    (``"step"``, ``"nonfinite_skips"``), so the result is the number of
    statistics. (The full :math:`\\hat V` of a 0-d parameter is 0-d too and is
    then left out as well; pass ``min_dim=0`` to count every entry.)
    """
    if min_dim < 0:
        raise ValueError(f"min_dim must be >= 0, got {min_dim}.")
    return int(sum(v.numel() for v in _state_tensors(optimizer) if v.dim() >= min_dim))


def _factor_pair(shape: tuple[int, ...], factor_dims: str) -> tuple[int, int] | None:
    if factor_dims not in ("last_two", "two_largest"):
        raise ValueError(f"factor_dims must be 'last_two' or 'two_largest', got {factor_dims!r}.")
    if len(shape) < 2:
        return None
    if factor_dims == "last_two":
        return len(shape) - 2, len(shape) - 1
    order = sorted(range(len(shape)), key=lambda k: (shape[k], k))  # ties to the later dim, as optax
    i, j = sorted(order[-2:])
    return i, j


@symbol(r"n + m \;(+\, nm)", "Adafactor's state for an n x m matrix, without (with) momentum")
def adafactor_state_numbers(
    shape: Sequence[int], *, beta1: bool | float | None = False, factored: bool = True, factor_dims: str = "last_two"
) -> int:
    r"""Numbers of Adafactor state for one parameter of ``shape``, step counters excluded.

    A tensor of rank :math:`\ge 2` factored over dims :math:`(i, j)` keeps
    :math:`R` (the shape without dim :math:`j`) and :math:`C` (without dim
    :math:`i`): :math:`n + m` numbers for an :math:`n \times m` matrix,
    :math:`b(n + m)` for a batch of :math:`b`. Vectors, scalars and tensors
    with ``factored=False`` keep the full :math:`\hat V` (one number per
    entry). Momentum (``beta1`` truthy; ``0`` and ``None`` mean none, as in
    :class:`optbook.Adafactor`) adds one full-size buffer. ``factor_dims``
    is ``"last_two"`` or ``"two_largest"`` as in :class:`optbook.Adafactor`.
    """
    shape = tuple(shape)
    total = numel(shape)  # also validates the shape
    pair = _factor_pair(shape, factor_dims) if factored else None
    if factored is not True and factored is not False:
        raise TypeError(f"factored must be True or False, got {factored!r}.")
    if pair is None:
        count = total
    else:
        i, j = pair
        count = numel(shape[:j] + shape[j + 1:]) + numel(shape[:i] + shape[i + 1:])
    if beta1:
        count += total
    return int(count)
