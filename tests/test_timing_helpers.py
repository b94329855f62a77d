"""optbook.bench.timing: median_step_times and peak_traced_bytes."""

import numpy as np
import pytest
import torch

from optbook.bench.timing import median_step_times, peak_traced_bytes


def test_peak_of_one_new_array_is_its_size():
    n = 1_000_000
    result, peak = peak_traced_bytes(lambda: np.ones(n))
    assert result.shape == (n,)
    assert 8 * n <= peak < 8 * n + 10_000  # the array, plus a little bookkeeping


def test_peak_counts_a_temporary_that_is_freed_before_the_end():
    def two_then_one():
        tmp = np.ones(500_000)
        out = tmp * 2.0  # two arrays alive at once
        del tmp
        return out

    _, peak = peak_traced_bytes(two_then_one)
    assert peak >= 2 * 8 * 500_000


def test_peak_rejects_a_non_callable():
    with pytest.raises(TypeError, match="compute"):
        peak_traced_bytes(np.ones(3))


def test_median_step_times_times_each_variant_on_the_same_problem():
    made = {}

    def make(name):
        def factory(params):
            made[name] = params
            return torch.optim.SGD(params, lr=0.1)
        return factory

    med = median_step_times({"a": make("a"), "b": make("b")}, [(3, 2), (4,)], warmup=1, repeats=3)
    assert set(med) == {"a", "b"} and all(t > 0 for t in med.values())
    # both variants started from copies of the same parameters and gradients, RMS about 0.02 and 0.01
    for pa, pb in zip(made["a"], made["b"]):
        assert pa is not pb and torch.equal(pa.grad, pb.grad)
    gen = torch.Generator().manual_seed(0)  # the documented draws: all parameters first, then all gradients
    [torch.randn(s, generator=gen) for s in [(3, 2), (4,)]]
    grads = [torch.randn(s, generator=gen) * 0.01 for s in [(3, 2), (4,)]]
    for p, g in zip(made["a"], grads):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


def test_median_step_times_needs_a_variant():
    with pytest.raises(ValueError, match="variants"):
        median_step_times({}, [(2,)])


def test_smoke_mode_runs_every_variant_on_small_tensors(monkeypatch):
    import torch

    from optbook.bench import timing

    seen = []

    def make(params):
        seen.append([tuple(p.shape) for p in params])
        return torch.optim.SGD(params, lr=0.1)

    monkeypatch.setenv("OPTBOOK_TIMING_SMOKE", "1")
    out = median_step_times({"sgd": make}, [(1000, 3), (70,)], warmup=3, repeats=9)
    assert seen == [[(timing.SMOKE_MAX_DIM, 3), (timing.SMOKE_MAX_DIM,)]] and list(out) == ["sgd"]
    monkeypatch.delenv("OPTBOOK_TIMING_SMOKE")
    seen.clear()
    median_step_times({"sgd": make}, [(1000, 3)], warmup=0, repeats=1)
    assert seen == [[(1000, 3)]]
