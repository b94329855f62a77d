r"""What an optimizer's state costs: measured on any torch optimizer, counted by hand.

Two views of the same quantity. :func:`optimizer_state_bytes` and
:func:`optimizer_state_numbers` *measure* the tensors an optimizer really
holds in ``optimizer.state``, whatever the optimizer. The rest *count* it from
the parameter shapes alone. For a model whose parameter tensors have shapes
:math:`s^{(1)}, \dots, s^{(L)}` and :math:`N = \sum_\ell \prod_k s^{(\ell)}_k`
entries in all,

.. math::

    \text{SGD}: 0, \qquad
    \text{SGD with momentum, RMSProp, Adam with } \beta_1 = 0 : N, \qquad
    \text{Adam, AdamW} : 2N,

numbers of state, because each keeps :math:`k \in \{0, 1, 2\}` statistics of
the same shape as the parameter (:func:`full_state_numbers`), while Adafactor
keeps, for an :math:`n \times m` matrix (:func:`adafactor_state_numbers`),

.. math::

    S = n + m \qquad\text{(factored, no momentum)}, \qquad S = n + m + nm \qquad\text{(with } \beta_1\text{)}.

A state of :math:`S` numbers stored in a dtype of :math:`b` bytes takes
:math:`bS` bytes (:func:`bytes_per_element`).
"""

from __future__ import annotations

from numbers import Integral
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from optbook.notation import symbol

__all__ = [
    "optimizer_state_bytes",
    "optimizer_state_numbers",
    "adafactor_state_numbers",
    "bytes_per_element",
    "numel",
    "full_state_numbers",
    "total_numbers",
    "state_fraction",
    "static_training_bytes",
]

# Public functions that measure, convert or sum rather than compute a book symbol.
__helpers__ = ("optimizer_state_bytes", "optimizer_state_numbers", "bytes_per_element", "numel", "total_numbers")


_BYTES = {
    "float64": 8,
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "int64": 8,
    "int32": 4,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


def bytes_per_element(dtype) -> int:
    """Bytes of one number of ``dtype``: a name (``"bfloat16"``), a NumPy dtype or a torch dtype."""
    name = str(dtype).removeprefix("torch.")
    if name in _BYTES:
        return _BYTES[name]
    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        raise ValueError(f"unknown dtype {dtype!r}; pass one of {sorted(_BYTES)}.") from None


def _shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of sizes, got {shape!r}.") from None
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ValueError(f"shape must hold non-negative whole numbers, got {shape!r}.")
    return tuple(int(s) for s in shape)


def numel(shape) -> int:
    """Entries of a tensor of ``shape``: the product of its sizes (1 for a scalar)."""
    return int(np.prod(_shape(shape), dtype=np.int64))


@symbol(r"k\,N", "state of an optimizer keeping k full-size statistics per parameter")
def full_state_numbers(shape, copies: int) -> int:
    r""":math:`k \prod_i s_i`: the state of an optimizer that keeps ``copies`` = :math:`k`
    statistics of the parameter's own shape. :math:`k = 0` for SGD, 1 for SGD with momentum,
    RMSProp or Adam with :math:`\beta_1 = 0`, 2 for Adam and AdamW (:math:`m` and :math:`v`).
    """
    if isinstance(copies, bool) or not isinstance(copies, Integral) or copies < 0:
        raise ValueError(f"copies must be a whole number >= 0 (0 SGD, 1 momentum, 2 Adam), got {copies!r}.")
    return int(copies) * numel(shape)


def total_numbers(shapes: Iterable | Mapping, count: Callable[[tuple[int, ...]], int] = numel) -> int:
    """``count(shape)`` summed over the parameter shapes of a model (a list, or a dict name -> shape)."""
    values = shapes.values() if isinstance(shapes, Mapping) else shapes
    return int(sum(int(count(_shape(s))) for s in values))


@symbol(r"S / N", "optimizer state as a fraction of the number of parameters")
def state_fraction(state_numbers: int, parameter_numbers: int) -> float:
    r""":math:`S/N`: numbers of optimizer state per parameter entry (2 for Adam; near 0 for factored Adafactor).

    With state and parameters in the same dtype this is also the ratio of their bytes.
    """
    if parameter_numbers <= 0:
        raise ValueError(f"parameter_numbers must be > 0, got {parameter_numbers}.")
    if state_numbers < 0:
        raise ValueError(f"state_numbers must be >= 0, got {state_numbers}.")
    return state_numbers / parameter_numbers


@symbol(r"(2N + S)\,b", "bytes of weights, gradients and optimizer state")
def static_training_bytes(parameter_numbers: int, state_numbers: int, bytes_per_number: int = 4) -> int:
    r""":math:`(2N + S)\,b`: the memory a training step holds whatever the batch size.

    :math:`N` weights, :math:`N` gradients and :math:`S` numbers of optimizer
    state, all stored in :math:`b` bytes each (4 for float32). Activations, which
    grow with the batch, come on top.
    """
    for value, name in ((parameter_numbers, "parameter_numbers"), (state_numbers, "state_numbers")):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    if bytes_per_number <= 0:
        raise ValueError(f"bytes_per_number must be > 0, got {bytes_per_number}.")
    return int((2 * parameter_numbers + state_numbers) * bytes_per_number)



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
