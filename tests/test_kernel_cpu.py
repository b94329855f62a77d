"""The fused CPU Adafactor step (:mod:`optbook.kernels.cpu_fused`, numba).

Oracles: the eager paths of ``optbook.Adafactor`` (batched ``foreach=True``
and per-tensor ``foreach=False``), which agree with the NumPy reference to
rounding (tests/test_optim_adafactor.py). The kernel sums in float64 in a
different order, so it agrees to rounding, checked at 1e-6 relative
(max |a - b| / max |b| per tensor) after 20 steps; a wrong formula is off by
1e-3 or more. Its own results are bit-exact across thread counts, SIMD widths
(``NUMBA_CPU_NAME=generic``) and a state_dict round trip.

The first test in a fresh checkout compiles the kernels (about a minute on two
cores); numba caches them on disk for every later run.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pathlib
import subprocess
import sys
import warnings

import pytest
import torch

pytest.importorskip("numba")

import optbook  # noqa: E402
from optbook.kernels import cpu_fused  # noqa: E402
from optbook.optim import adafactor as A  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# 1 x n, n x 1, odd sizes, a vector, a scalar, rank 3 and 4, zero-size, and a
# matrix of more than one tile (2049 columns: two column blocks and a ragged tail).
# (2, 9, 3, 7) with factor_dims="two_largest" factors dims 1 and 3 (a batch dim between them).
SHAPES = [(1, 40), (40, 1), (37, 53), (45,), (), (3, 7, 9), (2, 3, 5, 7), (2, 9, 3, 7), (0, 5), (5, 0), (0,),
          (9, 2049)]
OPTIONS = {
    "defaults": {},
    "momentum-decay-maximize": {"beta1": 0.9, "weight_decay": 0.1, "maximize": True},
    "absolute-lr": {"relative_step": False, "scale_parameter": False, "lr": 3e-3},
    "relative-unscaled": {"scale_parameter": False},
    "no-clip-momentum-0.3": {"d": float("inf"), "beta1": 0.3},
    "two-largest": {"factor_dims": "two_largest"},
}


@pytest.fixture(autouse=True)
def numba_backend(monkeypatch):
    """fused=True on CPU tensors runs the numba kernel (conftest's TRITON_INTERPRET=1 would pick the interpreter),
    and so does fused=None (which also takes the options fused=True refuses: factor_dims, stochastic_rounding)."""
    monkeypatch.setattr(A, "CPU_FUSED_BACKEND", "numba")
    monkeypatch.setattr(A, "CPU_FUSED_DEFAULT", True)


def _params(shapes, dtype=torch.float32, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_(True) for s in shapes]


def _run(fused, options, *, shapes=SHAPES, steps=20, dtype=torch.float32, foreach=None, seed=5, nan_at=None):
    params = _params(shapes, dtype, seed)
    kw = dict(options)
    if foreach is not None:
        kw["foreach"] = foreach
    opt = optbook.Adafactor(params, fused=None if fused else False, **kw)
    gen = torch.Generator().manual_seed(100 + seed)
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dtype)
        if nan_at is not None and t == nan_at:
            params[2].grad[3, 4] = float("nan")
        opt.step()
    return params, opt


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _digest(params) -> str:
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", list(OPTIONS))
def test_fused_matches_foreach_and_per_tensor(name):
    options = OPTIONS[name]
    fused, opt_f = _run(True, options)
    for foreach in (True, False):
        plain, opt_p = _run(False, options, foreach=foreach)
        for a, b in zip(fused, plain):
            assert _rel(a, b) < 1e-6, (name, foreach, tuple(a.shape), _rel(a, b))
            sa, sb = opt_f.state[a], opt_p.state[b]
            assert set(sa) == set(sb)
            assert float(sa["step"]) == float(sb["step"]) == 20.0
            for key in sa:
                if key != "step":
                    assert sa[key].dtype == sb[key].dtype and sa[key].shape == sb[key].shape
                    assert _rel(sa[key], sb[key]) < 1e-6, (name, key, tuple(a.shape))


def test_nonfinite_gradient_is_skipped_and_counted_as_on_the_eager_path():
    fused, opt_f = _run(True, {"beta1": 0.9}, steps=4, nan_at=1)
    plain, opt_p = _run(False, {"beta1": 0.9}, steps=4, nan_at=1)
    for a, b in zip(fused, plain):
        assert _rel(a, b) < 1e-6
        assert int(opt_f.state[a]["nonfinite_skips"]) == int(opt_p.state[b]["nonfinite_skips"])
    assert int(opt_f.state[fused[2]]["nonfinite_skips"]) == 1


@pytest.mark.parametrize("shape", [(5, 4), (6,), (70000,)], ids=["matrix", "vector", "vector-many-tiles"])
def test_a_gradient_whose_squares_overflow_float32_is_skipped_as_on_the_eager_path(shape):
    """1e20 is a finite float32 whose square is not: the eager path's float32 sum of squares overflows
    and it skips the tensor. The kernel sums in float64, where 1e40 is finite, and must skip it too
    rather than write an infinite statistic (and then NaN) into the tensor."""
    runs = {}
    for fused in (True, False):
        p = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(3)))
        opt = optbook.Adafactor([p], fused=None if fused else False, beta1=0.9, weight_decay=0.1)
        gen = torch.Generator().manual_seed(4)
        history = []
        for t in range(3):
            p.grad = torch.randn(shape, generator=gen)
            if t == 1:
                p.grad.view(-1)[1] = 1e20
            opt.step()
            history.append(p.detach().clone())
        runs[fused] = (history, opt.state[p])
    (fh, fs), (eh, es) = runs[True], runs[False]
    assert int(fs["nonfinite_skips"]) == int(es["nonfinite_skips"]) == 1
    assert torch.equal(fh[1], fh[0])  # the overflowing step left the parameter as it was
    for a, b in zip(fh, eh):
        assert torch.isfinite(a).all() and _rel(a, b) < 1e-6
    for key in fs:
        if key != "step":
            assert torch.isfinite(fs[key].float()).all() and _rel(fs[key], es[key]) < 1e-6, key


def test_bit_exact_for_any_thread_count(monkeypatch):
    """The serial twin, the parallel kernel on one thread and on two give the same bits."""
    digests = set()
    threads = torch.get_num_threads()
    try:
        for n_threads, serial_below in ((1, 1 << 62), (1, 0), (2, 0)):
            monkeypatch.setattr(cpu_fused, "SERIAL_BELOW", serial_below)
            torch.set_num_threads(n_threads)
            params, _ = _run(True, {"beta1": 0.9, "weight_decay": 0.1}, steps=3)
            digests.add(_digest(params))
    finally:
        torch.set_num_threads(threads)
    assert len(digests) == 1


def test_bit_exact_for_any_schedule(monkeypatch):
    """Every tensor stepped whole by one thread, or every tensor pass by pass with its tiles shared out in
    chunks of one tile between two threads: the same bits."""
    digests = set()
    threads = torch.get_num_threads()
    try:
        for small, min_chunk, n_threads in ((1 << 62, 1 << 16, 1), (0, 1 << 16, 1), (0, 1, 2), (1 << 62, 1, 2)):
            monkeypatch.setattr(cpu_fused, "SMALL_TENSOR", small)
            monkeypatch.setattr(cpu_fused, "MIN_CHUNK", min_chunk)
            monkeypatch.setattr(cpu_fused, "SERIAL_BELOW", 0)
            cpu_fused._PLANS.clear()  # plans are cut for the schedule
            cpu_fused._SETS.clear()
            torch.set_num_threads(n_threads)
            params, _ = _run(True, {"beta1": 0.9, "weight_decay": 0.1}, steps=3)
            digests.add(_digest(params))
    finally:
        torch.set_num_threads(threads)
        cpu_fused._PLANS.clear()
        cpu_fused._SETS.clear()
    assert len(digests) == 1


_CHILD = """
import hashlib, sys, torch
sys.path.insert(0, {tests!r})
import test_kernel_cpu as T
from optbook.optim import adafactor as A
A.CPU_FUSED_BACKEND = "numba"
A.CPU_FUSED_DEFAULT = True
params, _ = T._run(True, {{"beta1": 0.9, "weight_decay": 0.1}}, steps=3)
print("DIGEST", T._digest(params))
"""


@pytest.mark.slow
def test_bit_exact_on_a_generic_cpu(tmp_path):
    """NUMBA_CPU_NAME=generic (no AVX: SSE2-wide vectors) gives the same bits as this CPU."""
    params, _ = _run(True, {"beta1": 0.9, "weight_decay": 0.1}, steps=3)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    code = _CHILD.format(tests=str(ROOT / "tests"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"DIGEST {_digest(params)}" in out.stdout


@pytest.mark.parametrize("options", [{}, {"beta1": 0.9}], ids=["defaults", "momentum"])
def test_resume_from_state_dict_is_bit_exact(options):
    """The resumed optimizer re-reads RMS(X); the running one carries it: the same bits."""
    params, opt = _run(True, options, steps=5)
    saved = copy.deepcopy(opt.state_dict())
    clones = [p.detach().clone().requires_grad_(True) for p in params]
    resumed = optbook.Adafactor(clones, fused=True, **options)
    resumed.load_state_dict(saved)
    gen = torch.Generator().manual_seed(77)
    for _ in range(5):
        for p, q in zip(params, clones):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt.step()
        resumed.step()
    for p, q in zip(params, clones):
        assert torch.equal(p, q), p.shape


def test_a_write_from_outside_refreshes_the_carried_rms():
    fused, plain = _params([(6, 8)]), _params([(6, 8)])
    opt_f, opt_p = optbook.Adafactor(fused, fused=True), optbook.Adafactor(plain)
    for t in range(3):
        for a, b in zip(fused, plain):
            a.grad = torch.full(a.shape, 0.1 * (t + 1))
            b.grad = a.grad.clone()
        opt_f.step()
        opt_p.step()
        with torch.no_grad():
            fused[0].mul_(3.0)
            plain[0].mul_(3.0)
    assert _rel(fused[0], plain[0]) < 1e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_round_to_nearest_matches_the_eager_path(dtype):
    fused, _ = _run(True, {}, steps=5, dtype=dtype, shapes=[(37, 53), (45,), (3, 7, 9)])
    plain, _ = _run(False, {}, steps=5, dtype=dtype, shapes=[(37, 53), (45,), (3, 7, 9)])
    eps = torch.finfo(dtype).eps
    for a, b in zip(fused, plain):
        a64, b64 = a.detach().double(), b.detach().double()
        assert ((a64 - b64).abs() <= eps * b64.abs() + 1e-30).all()
        assert (a64 != b64).double().mean() < 0.02


@pytest.mark.parametrize("dtype, lr", [(torch.bfloat16, 1e-3), (torch.float16, 2e-4)], ids=["bf16", "fp16"])
def test_stochastic_rounding_tracks_float32_where_round_to_nearest_stalls(dtype, lr):
    """Steps of lr are below half an ulp at 1.0: rounded to nearest, the parameter never moves;
    rounded stochastically it follows float32 on average. Seeded: the same generator seed, the same bits."""
    options = {"relative_step": False, "scale_parameter": False, "lr": lr}

    def train(dt, stochastic, seed=0):
        p = torch.ones(64, 64, dtype=dt, requires_grad=True)
        opt = optbook.Adafactor([p], **options, **({"stochastic_rounding": True} if stochastic else {}))
        if stochastic:
            opt.generator = torch.Generator().manual_seed(seed)
        for _ in range(200):
            p.grad = torch.ones_like(p)
            opt.step()
        return p.detach().float()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the kernel ran
        ref = train(torch.float32, False)
        nearest = train(dtype, False)
        sr = train(dtype, True)
    assert abs(float(ref.mean()) - (1 - 200 * lr)) < 1e-4
    assert torch.equal(nearest, torch.ones_like(nearest)), "round to nearest should stall at 1.0"
    assert abs(float(sr.mean()) - float(ref.mean())) < 0.1 * 200 * lr
    assert torch.equal(sr, train(dtype, True, seed=0))
    assert not torch.equal(sr, train(dtype, True, seed=1))


def test_unsupported_inputs_fall_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(A, "_CPU_FUSED_WARNED", set())
    base = torch.randn(5, 4)
    fused = torch.nn.Parameter(base.clone().t())  # non-contiguous
    plain = torch.nn.Parameter(base.clone().t())
    opt_f, opt_p = optbook.Adafactor([fused], fused=True), optbook.Adafactor([plain])
    with pytest.warns(RuntimeWarning, match="not contiguous"):
        fused.grad = torch.ones(4, 5)
        opt_f.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused.grad = torch.ones(4, 5)
        opt_f.step()  # warned once only
    for _ in range(2):
        plain.grad = torch.ones(4, 5)
        opt_p.step()
    assert torch.equal(fused, plain)


def test_default_choice_is_one_named_constant(monkeypatch):
    """fused=None on CPU runs the kernel exactly when CPU_FUSED_DEFAULT is True."""
    calls = []
    real = cpu_fused.fused_adafactor_cpu
    monkeypatch.setattr(cpu_fused, "fused_adafactor_cpu", lambda *a, **k: calls.append(1) or real(*a, **k))
    for default in (False, True):
        monkeypatch.setattr(A, "CPU_FUSED_DEFAULT", default)
        p = torch.nn.Parameter(torch.randn(4, 6))
        p.grad = torch.randn(4, 6)
        optbook.Adafactor([p]).step()
        q = torch.nn.Parameter(torch.randn(4, 6, dtype=torch.float64))  # float64: always the eager path
        q.grad = torch.randn(4, 6, dtype=torch.float64)
        optbook.Adafactor([q]).step()
    assert calls == [1]
    assert isinstance(A.CPU_FUSED_DEFAULT, bool)


def test_fused_true_on_a_cpu_without_the_interpreter_runs_the_cpu_kernel():
    """Without TRITON_INTERPRET the device decides: fused=True on CPU tensors is the numba kernel."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    code = (
        "import torch, optbook, warnings\n"
        "from optbook.optim import adafactor as A\n"
        "assert A.CPU_FUSED_BACKEND == 'numba'\n"
        "warnings.simplefilter('error')\n"
        "p = torch.ones(3, 4, requires_grad=True); p.grad = torch.ones(3, 4)\n"
        "q = torch.ones(3, 4, requires_grad=True); q.grad = torch.ones(3, 4)\n"
        "optbook.Adafactor([p], fused=True).step(); optbook.Adafactor([q], fused=False).step()\n"
        "print('diff', float((p - q).detach().abs().max()), 'moved', float((p.detach() - 1).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    diff, moved = (float(x) for x in out.stdout.split()[1::2])
    assert diff < 1e-6 * 1.0 and moved > 1e-3


def test_numbas_pedantic_ir_warning_is_silenced_for_these_kernels_only():
    """A cold compile for numba's generic CPU printed NumbaIRAssumptionWarning (an internal check of
    numba's, asking for a bug report) into notebooks; the kernel module installs, when imported, a
    filter for that category and its own file only. (pytest restores the filters after each test,
    so the test installs it again inside its own context.)"""
    import warnings

    from numba.core.errors import NumbaIRAssumptionWarning

    from optbook.kernels import _cpu_fused_numba as K

    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        K.silence_pedantic_ir_warnings()
        for where in ("/any/checkout/src/optbook/kernels/_cpu_fused_numba.py", "/some/user/module.py"):
            warnings.warn_explicit("pedantic", NumbaIRAssumptionWarning, where, 1)
        warnings.warn_explicit("another category", RuntimeWarning, "/x/_cpu_fused_numba.py", 1)
    assert [(str(w.message).split("\n")[0], w.filename) for w in seen] == [
        ("pedantic", "/some/user/module.py"), ("another category", "/x/_cpu_fused_numba.py")]


def test_the_filter_comes_back_after_a_catch_warnings_block_dropped_it():
    """The first step inside `with warnings.catch_warnings():` imports the kernels (and installs the
    filter) and the block's exit removes it; the next step puts it back before any kernel can compile."""
    import warnings

    from numba.core.errors import NumbaIRAssumptionWarning

    from optbook.kernels import _cpu_fused_numba as K
    from optbook.kernels import cpu_fused

    def installed():
        return any(f[0] == "ignore" and f[2] is NumbaIRAssumptionWarning and f[3] is not None
                   and f[3].pattern == K.PEDANTIC_WARNING_MODULE for f in warnings.filters)

    with warnings.catch_warnings():
        warnings.resetwarnings()
        assert not installed()
        cpu_fused._kernels()
        assert installed()
        before = list(warnings.filters)
        cpu_fused._kernels()
        assert warnings.filters == before  # present: the list is left alone
