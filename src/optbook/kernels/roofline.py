r"""The memory-traffic model of an optimizer step: bytes per element and the floor time.

An optimizer step does a handful of flops per element and streams every
parameter, gradient and state tensor through memory, so its speed limit is
memory bandwidth. The model counts the bytes that a schedule *must* move
between HBM and the chip; dividing by a bandwidth gives the time no
implementation of that schedule can beat.

With :math:`b_G` and :math:`b_X` the bytes of one gradient and one
parameter element, the exact fused Adafactor step on a matrix moves

.. math::

    \underbrace{b_G}_{\text{pass 1: }R_t, C_t}
    + \underbrace{b_G}_{\text{pass 2: }\mathrm{RMS}(U_t)}
    + \underbrace{b_G + 2 b_X}_{\text{pass 3: }X_t}
    = 3 b_G + 2 b_X

bytes per element (20 B in float32, 10 B in bfloat16), plus
:math:`b_X` in pass 1 on a step that must re-read :math:`X_{t-1}` for
:math:`\mathrm{RMS}(X_{t-1})`. Fused AdamW reads :math:`G, X, m, v` and
writes :math:`X, m, v`: :math:`b_G + 2b_X + 4b_s` with :math:`b_s` the
bytes of a state element (28 B in float32). The compulsory traffic of any
optimizer that reads each gradient once and rewrites the parameters is
:math:`b_G + 2b_X`.

:func:`fused_adafactor_bytes` also counts what the per-element figure leaves
out (the statistics :math:`R, C, \hat V` and the partial-sum buffers, from
:mod:`optbook.kernels.layout`), so a benchmark can report achieved
bandwidth against the exact byte count of a parameter set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from optbook.kernels.layout import as_matrix, block_config

__all__ = [
    "DTYPE_BYTES",
    "PassTraffic",
    "adafactor_passes",
    "adafactor_bytes_per_element",
    "adamw_bytes_per_element",
    "compulsory_bytes_per_element",
    "StepTraffic",
    "fused_adafactor_bytes",
    "adamw_bytes",
    "floor_seconds",
]

#: Bytes per element of the dtypes the kernels take, by name.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
_STAT = 4  # R, C, V and every partial sum are float32


def _bytes(dtype) -> int:
    name = str(dtype).replace("torch.", "")
    if name not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}.")
    return DTYPE_BYTES[name]


@dataclass(frozen=True)
class PassTraffic:
    """Full-size traffic of one pass, in bytes per element of a matrix."""

    name: str
    needs: str  # why the pass cannot be merged with the one before
    read: int
    written: int

    @property
    def total(self) -> int:
        return self.read + self.written


def adafactor_passes(
    param_dtype="float32", grad_dtype=None, *, reread_x: bool = False, momentum_dtype=None
) -> list[PassTraffic]:
    """The three passes of the fused step over a matrix, with their bytes per element.

    ``reread_x=True`` is a step that reads :math:`X_{t-1}` in pass 1 because
    the carried :math:`\\sum X^2` cannot be trusted (first step, or the
    parameters were written from outside). With ``momentum_dtype`` (``beta1``)
    pass 3 also reads and writes the momentum :math:`M`.
    """
    bx = _bytes(param_dtype)
    bg = _bytes(grad_dtype if grad_dtype is not None else param_dtype)
    bm = 0 if momentum_dtype is None else _bytes(momentum_dtype)
    return [
        PassTraffic(
            "1: row/column sums of G^2", "R_t and C_t need every element of G_t", bg + (bx if reread_x else 0), 0
        ),
        PassTraffic("2: sum of U^2", "U_t needs the final R_t, C_t and 1^T R_t", bg, 0),
        PassTraffic("3: update X, sum X^2", "X_t needs RMS(U_t), a sum over all of U_t", bg + bx + bm, bx + bm),
    ]


def adafactor_bytes_per_element(
    param_dtype="float32", grad_dtype=None, *, reread_x: bool = False, momentum_dtype=None
) -> int:
    """:math:`3b_G + 2b_X`, plus :math:`b_X` with ``reread_x`` and :math:`2b_M`
    with momentum: the exact fused step on a matrix."""
    passes = adafactor_passes(param_dtype, grad_dtype, reread_x=reread_x, momentum_dtype=momentum_dtype)
    return sum(p.total for p in passes)


def adamw_bytes_per_element(param_dtype="float32", grad_dtype=None, state_dtype=None) -> int:
    """:math:`b_G + 2b_X + 4b_s`: one fused AdamW pass reading G, X, m, v and writing X, m, v.

    ``torch.optim.AdamW`` keeps m and v in the parameter's dtype, the default
    for ``state_dtype``.
    """
    bx = _bytes(param_dtype)
    bg = _bytes(grad_dtype if grad_dtype is not None else param_dtype)
    bs = _bytes(state_dtype if state_dtype is not None else param_dtype)
    return bg + 2 * bx + 4 * bs


def compulsory_bytes_per_element(param_dtype="float32", grad_dtype=None) -> int:
    """:math:`b_G + 2b_X`: read the gradient once, read and write the parameter."""
    bx = _bytes(param_dtype)
    bg = _bytes(grad_dtype if grad_dtype is not None else param_dtype)
    return bg + 2 * bx


@dataclass(frozen=True)
class StepTraffic:
    """Bytes one step moves over a parameter set, split by origin."""

    elements: int
    streams: int  # G, X (and V for vectors): the full-size traffic
    statistics: int  # R, C and the partial sums, O(n + m) per matrix
    reread_x: bool

    @property
    def total(self) -> int:
        return self.streams + self.statistics

    @property
    def per_element(self) -> float:
        return self.total / self.elements if self.elements else math.nan


def _shape_list(shapes: Iterable[Sequence[int]]) -> list[tuple[int, ...]]:
    out = []
    for s in shapes:
        if not all(isinstance(d, int) and d >= 0 for d in s):
            raise ValueError(f"shapes must be sequences of non-negative ints, got {tuple(s)!r}.")
        out.append(tuple(s))
    return out


def fused_adafactor_bytes(
    shapes: Iterable[Sequence[int]], param_dtype="float32", grad_dtype=None, *, reread_x: bool = False,
    momentum_dtype=None,
) -> StepTraffic:
    """Every byte the fused step moves over tensors of these shapes.

    Matrices: :func:`adafactor_bytes_per_element` per element, plus
    :math:`R` and :math:`C` read and written, the partial sums of pass 1
    written and read back, and the slices of :math:`R` and :math:`C` that
    each tile of passes 2 and 3 reads. Vectors: pass 1 reads :math:`G` and
    :math:`\\hat V_{t-1}`, pass 3 reads :math:`G, X, \\hat V_{t-1}` and writes
    :math:`X, \\hat V_t`. With momentum, pass 3 also reads and writes
    :math:`M`. The few bytes per tensor of the scalar buffers are left out.
    """
    bx = _bytes(param_dtype)
    bg = _bytes(grad_dtype if grad_dtype is not None else param_dtype)
    per_matrix = adafactor_bytes_per_element(param_dtype, grad_dtype, reread_x=reread_x, momentum_dtype=momentum_dtype)
    bm = 0 if momentum_dtype is None else _bytes(momentum_dtype)
    elements = streams = stats = 0
    for shape in _shape_list(shapes):
        numel = math.prod(shape)
        if numel == 0:
            continue
        elements += numel
        if len(shape) >= 2:
            nb, n, m = as_matrix(shape)
            cfg = block_config(n, m)
            nct, nrt = -(-m // cfg.block_n), -(-n // cfg.tile_m)
            streams += per_matrix * numel
            stats += _STAT * nb * (
                2 * (n + m)  # R and C, read and written in pass 1b
                + 2 * (n * nct + m * nrt)  # partial sums, written in pass 1 and read in pass 1b
                + 2 * (n * nct + m * nrt)  # R and C slices read by each tile of passes 2 and 3
            )
        else:
            streams += numel * (2 * bg + 2 * bx + 3 * _STAT + (bx if reread_x else 0) + 2 * bm)
    return StepTraffic(elements=elements, streams=streams, statistics=stats, reread_x=reread_x)


def adamw_bytes(
    shapes: Iterable[Sequence[int]], param_dtype="float32", grad_dtype=None, state_dtype=None
) -> StepTraffic:
    """The bytes of one fused AdamW step over tensors of these shapes."""
    per = adamw_bytes_per_element(param_dtype, grad_dtype, state_dtype)
    elements = sum(math.prod(s) for s in _shape_list(shapes))
    return StepTraffic(elements=elements, streams=per * elements, statistics=0, reread_x=False)


def floor_seconds(nbytes: float, bandwidth: float) -> float:
    """The time to move ``nbytes`` at ``bandwidth`` bytes per second: no step can be faster."""
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0 bytes per second, got {bandwidth}.")
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}.")
    return nbytes / bandwidth
