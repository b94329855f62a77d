"""What the fused CPU step keeps between steps (:mod:`optbook.kernels.cpu_fused`): the per-set cache.

The driver keeps, per bucket of parameters, the tile tables, the order of the
tensors in them and the carried sums of squares of X with the ``_version``
each was written at. Oracles: the eager ``foreach`` path (which keeps nothing)
to the 1e-6 relative agreement of tests/test_kernel_cpu.py, and the kernel's
own bits with a cold cache.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("numba")

import optbook  # noqa: E402
from optbook.kernels import cpu_fused  # noqa: E402
from optbook.optim import adafactor as A  # noqa: E402

SHAPES = [(37, 53), (45,), (3, 7, 9), (9, 2049), (6,)]


@pytest.fixture(autouse=True)
def numba_backend(monkeypatch):
    monkeypatch.setattr(A, "CPU_FUSED_BACKEND", "numba")


def _params(seed=5, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_(True) for s in shapes]


def _grads(params, gen):
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def test_the_set_is_built_once_and_reused():
    params = _params()
    opt = optbook.Adafactor(params, fused=True)
    gen = torch.Generator().manual_seed(1)
    cpu_fused._SETS.clear()
    _grads(params, gen)
    opt.step()
    (entry,) = cpu_fused._SETS.values()
    # Factored tensors first, then vectors, each group in the caller's order.
    assert entry.order == [0, 2, 3, 1, 4] and entry.nf == 3
    for _ in range(3):
        _grads(params, gen)
        opt.step()
    assert list(cpu_fused._SETS.values()) == [entry]
    assert (entry.version == [p._version for p in (params[q] for q in entry.order)]).all()


def test_a_cold_cache_gives_the_same_bits_as_a_warm_one():
    """Clearing the cache before every step re-reads X each time (pass 1); the bits do not change."""
    runs = []
    for clear in (False, True):
        params = _params()
        opt = optbook.Adafactor(params, fused=True, beta1=0.9)
        gen = torch.Generator().manual_seed(2)
        for _ in range(4):
            if clear:
                cpu_fused._SETS.clear()
            _grads(params, gen)
            opt.step()
        runs.append([p.detach().clone() for p in params])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_a_parameter_set_that_changes_gets_its_own_entry():
    params = _params()
    opt = optbook.Adafactor(params, fused=True)
    plain = _params()
    ref = optbook.Adafactor(plain, fused=False, foreach=True)
    gen = torch.Generator().manual_seed(3)
    for t in range(6):
        for p, q in zip(params, plain):
            # Every other step the second matrix has no gradient: a different bucket.
            g = None if (t % 2 and p.dim() == 3) else torch.randn(p.shape, generator=gen)
            p.grad = g
            q.grad = None if g is None else g.clone()
        opt.step()
        ref.step()
    for a, b in zip(params, plain):
        assert _rel(a, b) < 1e-6


def test_invalidate_after_a_write_that_bypasses_the_version_counter():
    """p.data.copy_(...) does not bump p._version: the carried RMS(X) is stale until invalidated."""
    results = {}
    for invalidate in (False, True):
        fused, plain = _params(), _params()
        opt_f = optbook.Adafactor(fused, fused=True)
        opt_p = optbook.Adafactor(plain, fused=False, foreach=True)
        gen = torch.Generator().manual_seed(4)
        for t in range(3):
            for a, b in zip(fused, plain):
                a.grad = torch.randn(a.shape, generator=gen)
                b.grad = a.grad.clone()
            opt_f.step()
            opt_p.step()
            fused[0].data.copy_(fused[0].data * 3.0)
            plain[0].data.copy_(plain[0].data * 3.0)
            if invalidate:
                cpu_fused.invalidate_carried_rms([fused[0]])
        results[invalidate] = _rel(fused[0], plain[0])
    assert results[True] < 1e-6
    assert results[False] > 1e-3  # the stale sum scaled the step by the old RMS: the invalidation mattered


def test_invalidate_all():
    params = _params()
    opt = optbook.Adafactor(params, fused=True)
    _grads(params, torch.Generator().manual_seed(6))
    opt.step()
    cpu_fused.invalidate_carried_rms()
    assert all((entry.version == -1).all() for entry in cpu_fused._SETS.values())


def test_step_counters_advance_as_on_the_eager_path():
    """The kernel adds 1 to the float32 step counters itself (zero-size parameters included)."""
    params = _params(shapes=[(4, 6), (0, 3), (5,)])
    opt = optbook.Adafactor(params, fused=True)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        _grads(params, gen)
        opt.step()
    for p in params:
        step = opt.state[p]["step"]
        assert step.dtype == torch.float32 and step.dim() == 0 and float(step) == 3.0
