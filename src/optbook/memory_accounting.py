r"""Counting optimizer state by hand: full-size statistics, bytes per number, totals over a model.

:mod:`optbook.memory` measures the state a torch optimizer really holds and
counts Adafactor's analytically. This module adds the counts the book needs to
put Adafactor beside the others. For a model whose parameter tensors have
shapes :math:`s^{(1)}, \dots, s^{(L)}` and :math:`N = \sum_\ell \prod_k s^{(\ell)}_k`
entries in all,

.. math::

    \text{SGD} &: 0, \qquad
    \text{SGD with momentum, RMSProp, Adam with } \beta_1 = 0 : N, \qquad
    \text{Adam, AdamW} : 2N,

numbers of state, because each keeps :math:`k \in \{0, 1, 2\}` statistics of
the same shape as the parameter (the momentum :math:`m` and/or the second
moment :math:`v`). A state of :math:`S` numbers stored in a dtype of :math:`b`
bytes takes :math:`bS` bytes.
"""

from __future__ import annotations

from numbers import Integral
from typing import Callable, Iterable, Mapping

import numpy as np

from optbook.notation import symbol

__all__ = [
    "bytes_per_element",
    "numel",
    "full_state_numbers",
    "total_numbers",
    "state_fraction",
    "static_training_bytes",
]

# Public functions that convert or sum rather than compute a book symbol.
__helpers__ = ("bytes_per_element", "numel", "total_numbers")

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
