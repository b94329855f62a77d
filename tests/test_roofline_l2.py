"""The L2 traffic model of :mod:`optbook.kernels.roofline` and the published device figures.

Expected values are counted by hand from the cache model (LRU, capacity C, tiles walked
in order), or from the shapes of GPT-2 small by which tensors fit in C.
"""

from __future__ import annotations

import math

import pytest

from optbook.bench.shapes import parameter_shapes
from optbook.kernels import roofline as R

MIB = 2**20


@pytest.mark.parametrize("schedule", R.SCHEDULES)
def test_limits_no_cache_and_a_cache_that_holds_everything(schedule):
    shapes = [(300, 200), (64, 64)]
    none = R.l2_stream_bytes(shapes, l2_bytes=0, schedule=schedule)
    assert none.per_element == pytest.approx(20.0)  # 3 reads of G, X read and written: 3*4 + 2*4
    everything = R.l2_stream_bytes(shapes, l2_bytes=1e12, schedule=schedule)
    assert everything.per_element == pytest.approx(12.0)  # G once: 4 + 2*4
    bf16 = R.l2_stream_bytes(shapes, "bfloat16", l2_bytes=1e12, schedule=schedule)
    assert bf16.per_element == pytest.approx(6.0)
    mixed = R.l2_stream_bytes(shapes, "float32", "bfloat16", l2_bytes=0, schedule=schedule)
    assert mixed.per_element == pytest.approx(3 * 2 + 2 * 4)


def test_partial_reuse_counted_by_hand():
    # 100 float32 elements, one-element tiles, C = 520 B. Pass 2: 400 B of G fit, all hit.
    # Pass 3: tile k hits iff 400 + 4 (k + 1) <= 520, i.e. k < 30: 70 misses of 4 B.
    t = R.l2_stream_bytes([(10, 10)], l2_bytes=520, tile_elements=1)
    assert t.g_bytes == (400, 0, 280) and t.x_bytes == 800
    assert t.per_element == pytest.approx(14.8)
    # Alternating (pass 2 backwards), C = 200 B: pass 2 hits the last 50 elements,
    # pass 3 the first 200 / 8 = 25.
    a = R.l2_stream_bytes([(10, 10)], l2_bytes=200, tile_elements=1, alternate=True)
    assert a.g_bytes == (400, 200, 300)
    assert a.per_element == pytest.approx(17.0)
    # Tiles count whole: with 8-element tiles the 30 hits of pass 3 round down to 3 tiles.
    tiled = R.l2_stream_bytes([(10, 10)], l2_bytes=400 + 4 * 8 * 3 + 4 * 7, tile_elements=8)
    assert tiled.g_bytes[2] == (100 - 24) * 4


def test_three_pass_bucket_larger_than_l2_gets_no_reuse():
    # Two matrices that each fit, but not together: the kernel's bucket-wide passes re-read
    # from HBM, the grouped schedule from L2.
    shapes = [(1024, 1024), (1024, 1024)]  # 4 MiB of G each in float32
    c = 6 * MIB
    assert R.l2_stream_bytes(shapes, l2_bytes=c).per_element == pytest.approx(20.0)
    grouped = R.l2_stream_bytes(shapes, l2_bytes=c, schedule="grouped")
    # G (4 MiB) fits for pass 2; pass 3 hits while 4 MiB + (k+1) tiles of X fit in 6 MiB: the
    # first half. Per element: 4 (pass 1) + 0 (pass 2) + 2 (half of pass 3) + 8 (X) = 14 B.
    assert grouped.g_bytes[1] == 0
    assert grouped.g_bytes[2] == 2 * 2 * MIB
    assert grouped.per_tensor == pytest.approx((14.0, 14.0))


def _gpt2_expected(per_fit: float, per_big: float, c: float, gx: float) -> float:
    """Average bytes per element: matrices whose G and X (gx bytes per element) fit in c move
    per_fit, the others per_big; vectors 2*4 + 2*4 + 12."""
    total = count = 0
    for _, shape in parameter_shapes("gpt2-small"):
        n = math.prod(shape)
        count += n
        if len(shape) < 2:
            total += 28 * n
        else:
            total += (per_fit if n * gx <= c else per_big) * n
    return total / count


def test_gpt2_small_fp32_grouped_schedules_against_the_count_by_tensor():
    shapes = [s for _, s in parameter_shapes("gpt2-small")]
    c = 50 * MIB
    # Only the embedding (154 MB of G) does not fit; every other matrix's G and X do.
    grouped = R.l2_stream_bytes(shapes, l2_bytes=c, schedule="grouped").per_element
    assert grouped == pytest.approx(_gpt2_expected(12, 20, c, 8), rel=1e-12)
    assert 14.4 < grouped < 14.6
    g23 = R.l2_stream_bytes(shapes, l2_bytes=c, schedule="grouped-2-3").per_element
    assert g23 == pytest.approx(_gpt2_expected(16, 20, c, 8), rel=1e-12)
    three = R.l2_stream_bytes(shapes, l2_bytes=c).per_element
    assert three == pytest.approx(R.fused_adafactor_bytes(shapes).streams / sum(math.prod(s) for s in shapes))


def test_per_tensor_figures_add_up():
    shapes = [(50257, 768), (768, 3072), (768,), (0, 5)]
    t = R.l2_stream_bytes(shapes, l2_bytes=50 * MIB, schedule="grouped")
    assert t.per_tensor[:3] == pytest.approx((20.0, 12.0, 28.0))
    assert math.isnan(t.per_tensor[3])
    numel = [math.prod(s) for s in shapes[:3]]
    assert t.total == pytest.approx(sum(b * n for b, n in zip(t.per_tensor, numel)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="schedule"):
        R.l2_stream_bytes([(4, 4)], l2_bytes=1, schedule="fused")
    with pytest.raises(ValueError, match="l2_bytes"):
        R.l2_stream_bytes([(4, 4)], l2_bytes=-1)
    with pytest.raises(ValueError, match="l2_bytes"):
        R.l2_stream_bytes([(4, 4)], l2_bytes=float("inf"))
    with pytest.raises(ValueError, match="tile_elements"):
        R.l2_stream_bytes([(4, 4)], l2_bytes=1, tile_elements=0)
    with pytest.raises(ValueError, match="dtype"):
        R.l2_stream_bytes([(4, 4)], "int8", l2_bytes=1)
    with pytest.raises(ValueError, match="shapes"):
        R.l2_stream_bytes([(4, -1)], l2_bytes=1)


def test_published_devices():
    assert R.published_device("NVIDIA H100 80GB HBM3").bandwidth == 3.35e12
    assert R.published_device("NVIDIA H100 PCIe").bandwidth == 2.0e12
    assert R.published_device("NVIDIA H200").bandwidth == 4.8e12
    for other in ("NVIDIA H100 NVL", "NVIDIA GH200 480GB", "NVIDIA A100-SXM4-80GB", "AMD EPYC"):
        assert R.published_device(other) is None
    with pytest.raises(TypeError, match="device_name"):
        R.published_device(None)
    # The derived floor of a 1 GB step at 3.35 TB/s.
    spec = R.PUBLISHED_DEVICES["H100 SXM"]
    assert R.floor_seconds(1e9, spec.bandwidth) == pytest.approx(1 / 3350)
