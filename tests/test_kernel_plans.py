"""Launch plans of the fused Triton Adafactor: in-place semantics, rebinding, caching, capture.

Run in Triton's interpreter on CPU tensors (``tests/conftest.py`` sets
``TRITON_INTERPRET=1``). Oracles: torch's own in-place semantics (an SGD step
makes autograd refuse a tensor saved before it; the fused step must too),
the non-fused ``optbook.Adafactor`` for the numbers, and counts of what runs
(plans built, per-tensor checks, the ``VEC`` each launch gets) for the
structural properties. Timing is not tested here: ``python -m
optbook.bench.host_overhead`` measures it.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

triton = pytest.importorskip("triton")
import optbook  # noqa: E402
from optbook.bench import host_overhead  # noqa: E402
from optbook.kernels import adafactor_fused as F  # noqa: E402
from optbook.optim import adafactor as A  # noqa: E402

pytestmark = pytest.mark.interpreter


def _params(shapes=((8, 16), (16,)), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _grads(params, seed):
    gen = torch.Generator().manual_seed(100 + seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


@pytest.fixture
def runs(monkeypatch):
    """Record, for every bucket launch, the VEC and read_x it ran with."""
    seen = []
    original = F._Bucket.run

    def spy(self, **kw):
        seen.append({"vec": self.vec, "read_x": kw["read_x"]})
        return original(self, **kw)

    monkeypatch.setattr(F._Bucket, "run", spy)
    return seen


# --------------------------------------------------------------------------- in-place semantics


@pytest.mark.parametrize("make", ["sgd", "fused"])
def test_a_tensor_saved_before_the_step_is_refused_by_autograd(make):
    """(p * p).sum() saves p for backward; an in-place update of p must make
    backward raise, as torch's own optimizers do (the 'sgd' case is the oracle)."""
    (p,) = _params(((4, 16),))
    opt = torch.optim.SGD([p], lr=0.1) if make == "sgd" else optbook.Adafactor([p], fused=True)
    loss = (p * p).sum()
    p.grad = torch.ones_like(p)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_every_written_tensor_is_bumped_and_the_carried_rms_survives_the_bump(runs):
    params = _params()
    opt = optbook.Adafactor(params, fused=True, beta1=0.9)
    reads = []
    for t in range(4):
        _grads(params, t)
        if t == 2:
            with torch.no_grad():
                params[0].mul_(2.0)  # an outside write: the next step must re-read X
        before = {id(x): x._version for p in params for x in [p, *opt.state[p].values()]} if t else {}
        opt.step()
        reads.append(runs[-1]["read_x"])
        for p in params:
            for x in [p, *opt.state[p].values()]:
                assert x._version > before.get(id(x), -1), "a tensor written by the step kept its version"
    # First step and the step after the outside write read X; the others use the carried sum.
    assert reads == [True, False, True, False]


def test_a_step_of_another_plan_invalidates_the_carried_rms(runs):
    """Steps where a gradient is None run another plan over the same
    parameters; its writes bump the versions, so the full plan re-reads X."""
    params = _params()
    opt = optbook.Adafactor(params, fused=True)
    _grads(params, 0)
    opt.step()
    _grads(params, 1)
    params[1].grad = None
    opt.step()  # the one-tensor plan writes params[0]
    _grads(params, 2)
    opt.step()
    _grads(params, 3)
    opt.step()
    assert [r["read_x"] for r in runs] == [True, True, True, False]


# --------------------------------------------------------------------------- rebinding and alignment


def _twin(shapes=((8, 16), (16,))):
    plain, fused = _params(shapes), _params(shapes)
    return plain, fused, optbook.Adafactor(plain), optbook.Adafactor(fused, fused=True)


def _misaligned_copy(t):
    """A copy of ``t`` that starts 4 bytes after a 16-byte boundary."""
    buf = torch.empty(t.numel() + 5, dtype=t.dtype)
    start = next(k for k in range(1, 5) if (buf.data_ptr() + 4 * k) % 16 == 4)
    out = buf[start:start + t.numel()].view(t.shape)
    out.copy_(t.detach())
    assert out.data_ptr() % 16 == 4
    return out


def test_a_rebind_to_misaligned_memory_drops_the_alignment_hint(runs):
    plain, fused, opt_plain, opt_fused = _twin()
    for t in range(5):
        for params in (plain, fused):
            _grads(params, t)
        if t == 1:  # p.data = ... (FSDP resharding, a manual copy): same tensor, new address
            fused[0].data = _misaligned_copy(fused[0])
        if t == 2:  # back to aligned memory: the hint comes back
            fused[0].data = fused[0].detach().clone()
        if t == 3:  # a misaligned gradient only: the cheap path that rewrites the gradient column
            fused[0].grad = _misaligned_copy(fused[0].grad)
        opt_plain.step()
        opt_fused.step()
        for a, b in zip(plain, fused):
            torch.testing.assert_close(b.detach(), a.detach(), rtol=2e-6, atol=1e-7)
    assert [r["vec"] for r in runs] == [4, 1, 4, 1, 4]


def test_load_state_dict_rebinds_the_state(runs):
    plain, fused, opt_plain, opt_fused = _twin()
    for params in (plain, fused):
        _grads(params, 0)
    opt_plain.step()
    opt_fused.step()
    opt_fused.load_state_dict(opt_fused.state_dict())  # new state tensors at new addresses
    for t in (1, 2):
        for params in (plain, fused):
            _grads(params, t)
        opt_plain.step()
        opt_fused.step()
    for a, b in zip(plain, fused):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=2e-6, atol=1e-7)
    assert opt_fused._fused_plans[0].last.state[0] is opt_fused.state[fused[0]]["R"]


# --------------------------------------------------------------------------- host cost and cache


def test_a_repeated_step_runs_no_per_tensor_check(monkeypatch):
    """After the first step, steps with new gradient tensors (moved or not)
    run no check of a tensor and build no plan; a rebound parameter does."""
    calls = {"check_inputs": 0, "check_parameter": 0, "plan": 0}

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(F, "_check_inputs", count("check_inputs", F._check_inputs))
    monkeypatch.setattr(A.Adafactor, "_check_parameter", count("check_parameter", A.Adafactor._check_parameter))
    monkeypatch.setattr(F._Plan, "__init__", count("plan", F._Plan.__init__))
    params = host_overhead.stand_in_parameters(max_dim=4)[:30]
    opt = optbook.Adafactor(params, fused=True)
    with host_overhead.stubbed_launches() as launches:
        _grads(params, 0)
        opt.step()
        assert calls == {"check_inputs": 1, "check_parameter": 30, "plan": 1}
        for t in range(1, 4):
            _grads(params, t)  # new tensors, usually at new addresses
            opt.step()
        assert calls == {"check_inputs": 1, "check_parameter": 30, "plan": 1}
        params[3].data = params[3].detach().clone()
        _grads(params, 9)
        opt.step()
        # The rebound parameter sends the step down the full path: the optimizer's per-parameter
        # checks (recorded before the state existed, so run again) and the kernels' input check;
        # the plan is rebound, not rebuilt. The next step is cheap again.
        assert calls == {"check_inputs": 2, "check_parameter": 60, "plan": 1}
        _grads(params, 10)
        opt.step()
        assert calls == {"check_inputs": 2, "check_parameter": 60, "plan": 1}
    assert launches["_update_kernel"] == 6


def test_frozen_parameters_keep_the_step_cheap(monkeypatch):
    """A group holding parameters that never get a gradient (frozen layers):
    after the first steps the others step without any per-tensor check; a
    frozen parameter that gets a gradient again is checked and planned."""
    calls = []
    monkeypatch.setattr(F, "_check_inputs", lambda *a, _f=F._check_inputs: calls.append(1) or _f(*a))
    params = _params(((8, 16), (16,), (4, 16)))
    opt = optbook.Adafactor(params, fused=True)
    with host_overhead.stubbed_launches() as launches:
        for t in range(4):
            _grads(params, t)
            params[1].grad = None  # frozen
            opt.step()
        assert len(calls) == 1 and launches["_update_kernel"] == 4
        _grads(params, 9)  # all three: another subset, so another plan
        opt.step()
        assert len(calls) == 2
    assert len(opt._fused_plans[0].plans) == 2  # one per set of parameters with gradients


def test_plans_are_kept_per_group_without_eviction(monkeypatch):
    """Twelve groups of distinct shapes (the old global cache held 8): the
    second round of steps builds nothing, and the plans die with the optimizer."""
    built = []
    original = F._Plan.__init__

    def spy(self, *a, **k):
        built.append(self)
        original(self, *a, **k)

    monkeypatch.setattr(F._Plan, "__init__", spy)
    groups = [{"params": _params(((3 + g, 16),), seed=g)} for g in range(12)]
    opt = optbook.Adafactor(groups, fused=True)
    with host_overhead.stubbed_launches():
        for t in range(2):
            for group in groups:
                _grads(group["params"], t)
            opt.step()
    assert len(built) == 12
    assert all(len(cache.plans) == 1 for cache in opt._fused_plans.values())
    assert F.cached_plan_bytes() > 0
    cache = weakref.ref(opt._fused_plans[0])
    del opt, built
    gc.collect()
    assert cache() is None


def test_host_overhead_measurement_runs():
    res = host_overhead.fused_host_overhead(steps=3, repeats=1, max_dim=2)
    assert res["tensors"] == 148 and res["steps_timed"] == 3
    assert res["launches_per_step"] == 6
    with pytest.raises(ValueError, match="grads must be"):
        host_overhead.fused_host_overhead(grads="sometimes")


# --------------------------------------------------------------------------- CUDA graphs


def test_capturable_is_accepted_and_checked():
    (p,) = _params(((4, 16),))
    opt = optbook.Adafactor([p], fused=True, capturable=True)
    assert opt.param_groups[0]["capturable"] is True
    with pytest.raises(TypeError, match="capturable must be True or False"):
        optbook.Adafactor([p], capturable=1)


@pytest.mark.skipif(not torch.cuda.is_available() or F.INTERPRET, reason="needs a CUDA GPU and compiled kernels")
def test_cuda_graph_capture_replays_like_eager_steps():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in ((64, 256), (256,), (3, 32, 128))]
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = optbook.Adafactor(params, fused=True, capturable=True)
    ref = optbook.Adafactor(twin, fused=True)
    grads = [torch.randn_like(p) for p in params]
    for p, q, g in zip(params, twin, grads):
        p.grad, q.grad = g, g.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        opt.step()  # builds the plan outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    ref.step()
    for _ in range(3):
        graph.replay()
        ref.step()
    torch.cuda.synchronize()
    for p, q in zip(params, twin):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert float(opt.state[params[0]]["step"]) == 4.0


# --------------------------------------------------------------------------- launch counts


def _launched(params, grads, *, stochastic_rounding=False):
    """Launches of one functional fused step, counted as they happen: the stubbed Triton
    kernels, plus the torch ops of the step (the flag fills and the seed draw)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    torch_ops = []

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] in ("zero_", "randint"):
                torch_ops.append(func.__name__)
            return func(*args, **(kwargs or {}))

    stats_r = [torch.zeros(p.shape[:-1] if p.dim() >= 2 else p.shape) for p in params]
    stats_c = [torch.zeros(p.shape[:-2] + p.shape[-1:]) if p.dim() >= 2 else None for p in params]
    steps = [torch.ones(()) for _ in params]
    F.fused_adafactor_step(params, grads, stats_r, stats_c, steps, lr=1e-2, relative_step=False,
                           stochastic_rounding=stochastic_rounding)  # builds the plan (not counted)
    with host_overhead.stubbed_launches() as counts, Ops():
        F.fused_adafactor_step(params, grads, stats_r, stats_c, steps, lr=1e-2, relative_step=False,
                               stochastic_rounding=stochastic_rounding)
    return sum(counts.values()) + len(torch_ops)


def test_launches_per_step_counts_a_bucket_per_gradient_dtype():
    """Two float32 matrices, one with a float32 and one with a bfloat16 gradient, are two
    buckets: 2 x (fill + 5 kernels) = 12, as the stubbed step launches."""
    params = [torch.randn(64, 64), torch.randn(64, 64), torch.randn(64)]
    grads = [torch.randn(64, 64), torch.randn(64, 64).to(torch.bfloat16), torch.randn(64)]
    assert _launched(params, grads) == 12
    assert F.launches_per_step(params, grads) == 12
    assert F.launches_per_step(params, [g.dtype for g in grads]) == 12
    assert F.launches_per_step(params) == 6  # all gradients of the parameter's dtype: one bucket


def test_launches_per_step_counts_the_seed_and_vector_only_buckets():
    bf16 = [torch.randn(32, 64).to(torch.bfloat16), torch.randn(16).to(torch.float32)]
    grads = [torch.randn(32, 64).to(torch.bfloat16), torch.randn(16)]
    # a bfloat16 matrix bucket (6), a float32 vector-only bucket (fill, pass 1, 2b, 3: 4), the seed (1)
    assert _launched(bf16, grads, stochastic_rounding=True) == 11
    assert F.launches_per_step(bf16, grads, stochastic_rounding=True) == 11
    assert F.launches_per_step(bf16, grads) == 10
    assert F.launches_per_step([torch.empty(0, 4)]) == 0


def test_launches_per_step_rejects_bad_input():
    with pytest.raises(ValueError, match="2 parameters but 1 gradients"):
        F.launches_per_step([torch.empty(4, 4), torch.empty(4)], [torch.float32])
    with pytest.raises(ValueError, match="supports float32, bfloat16 and float16"):
        F.launches_per_step([torch.empty(4, 4, dtype=torch.float64)])
