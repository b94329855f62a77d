"""Byte counts and kernel timing of the numba CPU step (optbook.kernels.cpu_traffic).

The expected byte counts are counted by hand for tiny shapes, and the buffer sizes are compared with the
buffers the kernel's own plan allocates (a different route to the same numbers).
"""

from __future__ import annotations

import math

import pytest
import torch

import optbook
from optbook.kernels import cpu_fused, roofline
from optbook.kernels.cpu_traffic import cpu_fused_bytes, cpu_tile_geometry, kernel_seconds
from optbook.optim import adafactor as A


@pytest.fixture
def numba_backend(monkeypatch):
    """fused=True on CPU tensors runs the numba kernel (conftest's TRITON_INTERPRET=1 would pick the interpreter)."""
    monkeypatch.setattr(A, "CPU_FUSED_BACKEND", "numba")
    monkeypatch.setenv("OPTBOOK_TIMING_SMOKE", "1")


def test_tile_geometry_of_a_small_matrix_by_hand(monkeypatch):
    monkeypatch.setattr(cpu_fused, "COL_BLOCK", 4)
    monkeypatch.setattr(cpu_fused, "TILE", 8)
    # 5 x 6: tiles of 4 columns (2 column blocks), 8 // 4 = 2 rows (3 row blocks)
    assert cpu_tile_geometry(5, 6) == (4, 2, 2, 3)
    # 3 x 2: 2 columns (1 block), min(3, 8 // 2 = 4) = 3 rows (1 block)
    assert cpu_tile_geometry(3, 2) == (2, 1, 3, 1)


def test_bytes_of_one_matrix_and_one_vector_by_hand(monkeypatch):
    monkeypatch.setattr(cpu_fused, "COL_BLOCK", 4)
    monkeypatch.setattr(cpu_fused, "TILE", 8)
    t = cpu_fused_bytes([(5, 6), (7,)])
    # matrix: 30 elements x 20 B; vector: 7 x (2*4 G + 2*4 X + 3*4 V) = 7 x 28
    assert t.elements == 37
    assert t.streams == 30 * 20 + 7 * 28
    n, m, kc, kr = 5, 6, 2, 3
    rc = 2 * 4 * (n + m)                       # R, C read and written: 88
    partial = 2 * 8 * (n * kc + m * kr)        # 16 * (10 + 18) = 448
    factors = 8 * n + 2 * 8 * m + 4 * m        # 40 + 96 + 24 = 160
    tiles = 2 * (8 * n * kc + 4 * m * kr)      # 2 * (80 + 72) = 304
    assert t.statistics == rc + partial + factors + tiles == 1000
    assert t.total == t.streams + t.statistics


def test_momentum_reread_and_batches(monkeypatch):
    monkeypatch.setattr(cpu_fused, "COL_BLOCK", 4)
    monkeypatch.setattr(cpu_fused, "TILE", 8)
    base = cpu_fused_bytes([(5, 6)])
    # momentum: + 2 * 4 B per element; re-read of X: + 4 B per element
    assert cpu_fused_bytes([(5, 6)], momentum_dtype="float32").streams == base.streams + 30 * 8
    assert cpu_fused_bytes([(5, 6)], reread_x=True).streams == base.streams + 30 * 4
    # a batch of three matrices costs three times one
    three = cpu_fused_bytes([(3, 5, 6)])
    assert (three.streams, three.statistics) == (3 * base.streams, 3 * base.statistics)
    # bfloat16 streams: 3 * 2 + 2 * 2 = 10 B per element; statistics stay float32/float64
    bf = cpu_fused_bytes([(5, 6)], "bfloat16")
    assert bf.streams == 30 * 10 and bf.statistics == base.statistics


def test_streams_agree_with_the_gpu_count_and_only_statistics_differ():
    shapes = [(512, 1536), (1536,), (16384, 256)]
    cpu, gpu = cpu_fused_bytes(shapes), roofline.fused_adafactor_bytes(shapes)
    assert cpu.streams == gpu.streams and cpu.elements == gpu.elements
    assert 0 < cpu.statistics < 0.05 * cpu.streams


def test_buffer_sizes_match_the_kernels_plan():
    from optbook.optim.adafactor import _factor_pair

    shapes = [(300, 5000), (2, 7, 3000), (64, 64)]
    plan = cpu_fused._Plan(shapes, [_factor_pair(s, "last_two") for s in shapes])
    partial = rowf = colf = 0
    for s in shapes:
        b, n, m = math.prod(s[:-2]), s[-2], s[-1]
        _, kc, _, kr = cpu_tile_geometry(n, m)
        partial += b * (n * kc + m * kr)
        rowf += b * n
        colf += b * m
    assert plan.rowpart.size + plan.colpart.size == partial
    assert plan.rowf.size == rowf and plan.colf.size == colf
    assert plan.rowpart.itemsize == plan.colpart.itemsize == plan.rowf.itemsize == 8


def test_bad_shapes_and_dtypes_are_refused():
    with pytest.raises(ValueError, match="shapes"):
        cpu_fused_bytes([(3, -1)])
    with pytest.raises(ValueError, match="dtype"):
        cpu_fused_bytes([(3, 4)], "int8")
    with pytest.raises(ValueError, match="n and m"):
        cpu_tile_geometry(0, 4)


def test_kernel_seconds_splits_a_step_into_kernels_and_the_rest(numba_backend):
    threads = torch.get_num_threads()
    kernels = cpu_fused._kernels()
    out = kernel_seconds(lambda ps: optbook.Adafactor(ps, fused=True), [(64, 96), (96,)])
    assert torch.get_num_threads() == threads and cpu_fused._KERNELS is kernels  # restored
    parts = {k: v for k, v in out.items() if k not in ("step", "outside the kernels")}
    assert parts and all(v >= 0 for v in parts.values())
    assert out["step"] == pytest.approx(sum(parts.values()) + out["outside the kernels"])
    assert out["step"] > 0


def test_kernel_seconds_refuses_bad_input_and_a_step_without_kernels(numba_backend):
    with pytest.raises(ValueError, match="repeats"):
        kernel_seconds(lambda ps: optbook.Adafactor(ps, fused=True), [(4, 4)], repeats=0)
    with pytest.raises(TypeError, match="make"):
        kernel_seconds("adafactor", [(4, 4)])
    with pytest.raises(ValueError, match="no numba kernel"):
        kernel_seconds(lambda ps: optbook.Adafactor(ps, fused=False), [(4, 4)])
