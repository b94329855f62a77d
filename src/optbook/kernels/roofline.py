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

Two more things turn bytes into the figures the GPU chapter derives:
:data:`PUBLISHED_DEVICES` holds the peak memory bandwidth and L2 capacity that
NVIDIA publishes for the H100 (SXM and PCIe) and the H200, so that
:func:`floor_seconds` gives a *derived* floor for a named device; and
:func:`l2_stream_bytes` counts the HBM bytes of the :math:`G` and :math:`X`
streams when an L2 cache of a given capacity serves the re-reads of
:math:`G`, for the kernel's schedule (each pass over a whole bucket) and for
schedules that run the passes of one tensor back to back.
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
    "DeviceSpec",
    "PUBLISHED_DEVICES",
    "published_device",
    "SCHEDULES",
    "StreamTraffic",
    "l2_stream_bytes",
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
    each tile of passes 2 and 3 reads, all as HBM traffic. Left out: the
    :math:`\\lceil n/\\mathrm{seg} \\rceil` segment sums of :math:`1_n^\\top R` that each
    tile of passes 2 and 3 re-reads to form the total (a few hundredths of a byte per
    element for a Transformer's matrices; like the slices of :math:`R` and :math:`C`,
    they probably hit the L2 cache). Vectors: pass 1 reads :math:`G` and
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


# --------------------------------------------------------------------------- published device figures


@dataclass(frozen=True)
class DeviceSpec:
    """A device's published peak memory bandwidth and L2 capacity (vendor data sheets)."""

    name: str
    bandwidth: float  # bytes per second, the vendor's peak figure (not a measurement)
    l2_bytes: int
    source: str  # the cite key of the data sheet in book/references.bib
    #: True where the vendor states only a lower bound on the bandwidth ("greater than"),
    #: so a floor derived from it is an upper bound on the floor.
    bandwidth_is_lower_bound: bool = False
    #: The cite key for the L2 capacity (NVIDIA's "50 MB" taken as 50 MiB).
    l2_source: str = "nvidia2022h100whitepaper"


#: Peak HBM bandwidth and L2 capacity as NVIDIA publishes them. These are the vendor's
#: figures: a floor computed from them is *derived*, and no kernel reaches a peak figure.
PUBLISHED_DEVICES: dict[str, DeviceSpec] = {
    "H100 SXM": DeviceSpec("H100 SXM", 3.35e12, 50 * 2**20, "nvidia2023h100datasheet"),
    "H100 PCIe": DeviceSpec("H100 PCIe", 2.0e12, 50 * 2**20, "nvidia2022h100pcie", bandwidth_is_lower_bound=True),
    # The H200 datasheet gives no L2 size: the GH100 die's is assumed, without a source.
    "H200": DeviceSpec("H200 SXM", 4.8e12, 50 * 2**20, "nvidia2024h200datasheet", l2_source=""),
}


def published_device(device_name: str) -> DeviceSpec | None:
    """The :data:`PUBLISHED_DEVICES` entry for a CUDA device name, or ``None`` if it is not one of them.

    ``torch.cuda.get_device_name`` reports an H100 SXM as ``"NVIDIA H100 80GB HBM3"``,
    the PCIe card as ``"NVIDIA H100 PCIe"`` and an H200 as ``"NVIDIA H200"``. Other
    variants (H100 NVL, GH200) have other figures and give ``None``.
    """
    if not isinstance(device_name, str):
        raise TypeError(f"device_name must be a str (torch.cuda.get_device_name()), got {type(device_name).__name__}.")
    name = device_name.lower()
    if "gh200" in name or "nvl" in name:
        return None
    if "h200" in name:
        return PUBLISHED_DEVICES["H200"]
    if "h100" in name and "pcie" in name:
        return PUBLISHED_DEVICES["H100 PCIe"]
    if "h100" in name and ("sxm" in name or "hbm3" in name):
        return PUBLISHED_DEVICES["H100 SXM"]
    return None


# --------------------------------------------------------------------------- L2 reuse between passes

#: The schedules :func:`l2_stream_bytes` models.
SCHEDULES = ("three-pass", "grouped-2-3", "grouped")


@dataclass(frozen=True)
class StreamTraffic:
    """HBM bytes of the full-size streams (G, X) of one step under an L2 cache model."""

    schedule: str
    alternate: bool
    l2_bytes: int
    elements: int
    g_bytes: tuple[float, float, float]  # G read from HBM in passes 1, 2, 3
    x_bytes: float  # X read and written (pass 3; never re-read)
    vector_bytes: float  # the 1-d tensors' streams, which skip pass 2 and are not modelled for reuse
    per_tensor: tuple[float, ...]  # bytes per element of each input tensor, in input order

    @property
    def total(self) -> float:
        return sum(self.g_bytes) + self.x_bytes + self.vector_bytes

    @property
    def per_element(self) -> float:
        return self.total / self.elements if self.elements else math.nan


def _hits(count_tiles: float, tiles: int, tile: int, n: int) -> int:
    """Elements covered by ``count_tiles`` whole tiles (clamped to ``[0, tiles]``), at most ``n``."""
    k = max(0, min(tiles, math.floor(count_tiles)))
    return min(n, k * tile)


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def l2_stream_bytes(
    shapes: Iterable[Sequence[int]], param_dtype="float32", grad_dtype=None, *, l2_bytes: float,
    schedule: str = "three-pass", alternate: bool = False, tile_elements: int | None = None,
) -> StreamTraffic:
    r"""HBM bytes of the G and X streams of one fused step when an L2 cache of ``l2_bytes`` serves re-reads.

    The cache is modelled as fully associative LRU with write-back, empty at the start of
    the step. A *unit* is a run of matrices whose passes run back to back; each pass walks
    the unit's tiles of ``tile_elements`` elements in order (pass 2 in reverse with
    ``alternate``). With :math:`N` elements in a unit, :math:`t` per tile, :math:`b_G` and
    :math:`b_X` bytes per element and capacity :math:`C`, a re-read of tile :math:`k`
    (0-based) hits when the bytes touched since its last use fit in :math:`C`:

    .. math::

        \text{pass 2: } N b_G \le C
        \quad(\text{alternate: } (N - k t) b_G \le C \text{, counted from the end}),\qquad
        \text{pass 3: } N b_G + (k+1) t\, b_X \le C
        \quad(\text{alternate: } (k+1) t (b_G + b_X) \le C).

    Pass 1 reads all of :math:`G` from HBM and pass 3 reads and writes :math:`X`
    (:math:`2 b_X` per element) in every schedule, so a unit moves between
    :math:`b_G + 2 b_X` (every re-read hits) and :math:`3 b_G + 2 b_X` (none does).

    Schedules: ``"three-pass"`` (the kernel's: each pass is one launch over the whole
    bucket, so the unit is every matrix of ``shapes``); ``"grouped-2-3"`` (pass 1 over the
    bucket, then passes 2 and 3 tensor by tensor: pass 3 re-reads G from L2, pass 2 only
    if the bucket's G and X fit, a sufficient condition); ``"grouped"`` (all three passes
    tensor by tensor: each matrix is a unit). A unit is at least a whole tensor, because
    pass 2 needs :math:`1_n^\top R_t` and pass 3 needs :math:`\mathrm{RMS}(U_t)` of the
    whole tensor. Vectors keep the no-reuse count of :func:`fused_adafactor_bytes`
    (:math:`2b_G + 2b_X + 12` bytes per element). The :math:`O(n + m)` statistics are left
    out: they are the same in every schedule.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if not (isinstance(l2_bytes, (int, float)) and l2_bytes >= 0 and math.isfinite(l2_bytes)):
        raise ValueError(f"l2_bytes must be a finite number >= 0 (bytes of L2), got {l2_bytes!r}.")
    if tile_elements is not None and not (isinstance(tile_elements, int) and tile_elements >= 1):
        raise ValueError(f"tile_elements must be an int >= 1 or None (the kernel's tile), got {tile_elements!r}.")
    bx = _bytes(param_dtype)
    bg = _bytes(grad_dtype if grad_dtype is not None else param_dtype)
    shape_list = _shape_list(shapes)
    C = float(l2_bytes)

    def tile_of(shape) -> int:
        if tile_elements is not None:
            return tile_elements
        _, n, m = as_matrix(shape)
        cfg = block_config(n, m)
        return cfg.tile_m * cfg.block_n

    matrices = [(i, math.prod(s), tile_of(s)) for i, s in enumerate(shape_list) if len(s) >= 2 and math.prod(s)]
    per_g = {i: [0.0, 0.0, 0.0] for i, _, _ in matrices}

    def walk(unit, pass2_allowed: bool) -> None:
        """Charge the G reads of one unit (a list of (index, numel, tile)) to its tensors."""
        n = sum(numel for _, numel, _ in unit)
        t = max(tile for _, _, tile in unit)
        tiles = -(-n // t)
        if alternate:
            hit2 = _hits(C / (t * bg), tiles, t, n)  # the last hit2 elements
            r2 = (n - hit2, n)
            hit3 = _hits(C / (t * (bg + bx)), tiles, t, n)  # the first hit3 elements
        else:
            r2 = (0, n) if n * bg <= C else (0, 0)
            hit3 = _hits((C - n * bg) / (t * bx), tiles, t, n)
        if not pass2_allowed:
            r2 = (0, 0)
        start = 0
        for i, numel, _ in unit:
            end = start + numel
            per_g[i][0] += numel * bg
            per_g[i][1] += (numel - _overlap(start, end, *r2)) * bg
            per_g[i][2] += (numel - _overlap(start, end, 0, hit3)) * bg
            start = end

    if matrices:
        if schedule == "three-pass":
            walk(matrices, True)
        elif schedule == "grouped":
            for unit in matrices:
                walk([unit], True)
        else:  # grouped-2-3: pass 2 hits only if the whole bucket's G and X fit in L2
            bucket = sum(numel for _, numel, _ in matrices) * (bg + bx)
            for unit in matrices:
                walk([unit], bucket <= C)
    elements = vector_bytes = 0
    per_tensor = []
    for i, s in enumerate(shape_list):
        numel = math.prod(s)
        elements += numel
        if i in per_g:
            per_tensor.append((sum(per_g[i]) + 2 * bx * numel) / numel)
        elif numel:
            vec = 2 * bg + 2 * bx + 3 * _STAT
            vector_bytes += vec * numel
            per_tensor.append(float(vec))
        else:
            per_tensor.append(math.nan)
    g = tuple(float(sum(v[p] for v in per_g.values())) for p in range(3))
    x = float(2 * bx * sum(numel for _, numel, _ in matrices))
    return StreamTraffic(schedule, bool(alternate), int(l2_bytes), elements, g, x, float(vector_bytes),
                         tuple(per_tensor))
