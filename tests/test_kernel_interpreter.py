"""The fused Triton Adafactor kernels, run in Triton's interpreter on CPU tensors.

CI has no GPU. ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before triton
is imported, so the very kernels that run on an H100 execute here as NumPy
code, one program at a time. That checks the arithmetic, the tile tables,
the masks of ragged edges and the reductions; it says nothing about speed,
coalescing or races. The compile test at the end runs the real compiler for
``sm_90`` in a subprocess, which catches what the interpreter accepts but the
GPU compiler rejects, and checks registers, spills and 128-bit loads.

Oracles: the NumPy reference :mod:`optbook.reference.adafactor` in float64
(independent code, one function per formula), ``torch.optim.Adafactor``
(upstream), and the non-fused torch path of ``optbook.Adafactor`` (for the
optimizer-level behaviour: option handling, missing gradients, state_dict).
The kernels compute in float32, so tolerances are float32 ones: a relative
error of a few 1e-7 per step (measured: at most about 1.2e-7 of max|X| after
five steps), checked at 2e-6; a wrong formula is off by 1e-3 or more.

Writing these tests found that Triton 3.9's interpreter converts float32 to
bfloat16 by truncation, while the GPU rounds to nearest; the kernels spell the
rounding out on the bits (``_to_param_dtype``) so that the bfloat16 tests
check what the GPU does.

Most tests force a tiny block shape so that shapes of a few dozen rows are
cut into many ragged tiles, several row sub-blocks per tile and several
segments of R and C: the code paths that full-size tensors take on a GPU.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from optbook.reference import adafactor as ref

triton = pytest.importorskip("triton")
from optbook.kernels import adafactor_fused as F  # noqa: E402
from optbook.kernels.layout import BlockConfig, use_block_config  # noqa: E402

pytestmark = pytest.mark.interpreter
ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY = BlockConfig(tile_m=16, sub_m=4, block_n=16, seg=8)
# A vector, a scalar, ragged matrices in both orientations, a single row and
# column, a batch of matrices (rank 3): every tile kind and edge.
SHAPES = [(37, 53), (53, 20), (45,), (), (1, 40), (40, 1), (3, 7, 9)]


def test_interpreter_is_on():
    assert F.INTERPRET, "tests/conftest.py must set TRITON_INTERPRET=1 before triton is imported"


def _state(shapes, dtype=torch.float32):
    params, r, c, steps = [], [], [], []
    gen = torch.Generator().manual_seed(1)
    for s in shapes:
        params.append(torch.randn(s, generator=gen).to(dtype))
        if len(s) >= 2:
            r.append(torch.zeros(s[:-1]))
            c.append(torch.zeros(s[:-2] + s[-1:]))
        else:
            r.append(torch.zeros(s))
            c.append(None)
        steps.append(torch.zeros(()))
    return params, r, c, steps


def _grads(shapes, seed, dtype=torch.float32, zero_lines=True):
    gen = torch.Generator().manual_seed(100 + seed)
    grads = [torch.randn(s, generator=gen) for s in shapes]
    if zero_lines:
        # A zero row and a zero column: R_i and C_j fall to n*eps1, the
        # estimate V_ij to ~eps1, and U must still be exactly 0 there.
        for g in grads:
            if g.dim() >= 2 and g.shape[-2] > 3 and g.shape[-1] > 5:
                g[..., 3, :] = 0
                g[..., :, 5] = 0
    return [g.to(dtype) for g in grads]


def _fused_step(params, grads, r, c, steps, **kw):
    if not kw.get("increment_steps"):
        torch._foreach_add_(steps, 1.0)
    F.fused_adafactor_step(params, grads, r, c, steps, lr=kw.pop("lr", 1e-2), **kw)


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.abs(b).max(initial=0.0), 1e-30)
    return float(np.abs(a - b).max(initial=0.0) / scale)


@pytest.mark.parametrize(
    "config, increment", [(TINY, True), (None, False)], ids=["tiny-tiles-kernel-counts-t", "default-tiles"]
)
def test_float32_matches_numpy_reference(config, increment):
    """increment_steps=True: the kernels advance t themselves (pass 2b stores
    it), instead of the caller before the step."""
    params, r, c, steps = _state(SHAPES)
    xs = [p.double().numpy().copy() for p in params]
    states = [ref.AdafactorState() for _ in SHAPES]
    with use_block_config(config):
        for t in range(4):
            grads = _grads(SHAPES, t)
            _fused_step(params, grads, r, c, steps, increment_steps=increment)
            assert all(float(s) == t + 1 for s in steps)
            for i, g in enumerate(grads):
                xs[i] = ref.step(xs[i], g.double().numpy(), states[i])
    for p, x, st, rr, cc in zip(params, xs, states, r, c):
        assert _max_rel(p.double().numpy(), x) < 2e-6, p.shape
        if p.dim() >= 2:
            assert _max_rel(rr.double().numpy(), st.r) < 2e-6
            assert _max_rel(cc.double().numpy(), st.c) < 2e-6
        else:
            assert _max_rel(rr.double().numpy(), st.v) < 2e-6
        assert np.isfinite(p.numpy()).all()


def test_float32_matches_torch_adafactor_with_weight_decay_and_maximize():
    """torch keeps row/column *means* and clamps V by eps1 instead of adding
    it; for gradients of RMS ~1 that is the same function (the clamp never
    binds, and a zero row gives U = 0 both ways). Weight decay is
    X <- (1 - lr*lambda) X in both, with alpha_t taken before the decay."""
    shapes = [(37, 53), (45,), (3, 7, 9), (1, 40)]
    params, r, c, steps = _state(shapes)
    mirror = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adafactor(mirror, lr=1e-2, weight_decay=0.5, maximize=True)
    with use_block_config(TINY):
        for t in range(3):
            grads = _grads(shapes, t)
            for m, g in zip(mirror, grads):
                m.grad = g.clone()
            opt.step()
            _fused_step(params, grads, r, c, steps, weight_decay=0.5, maximize=True)
    for p, m in zip(params, mirror):
        assert _max_rel(p.double().numpy(), m.detach().double().numpy()) < 2e-6, p.shape


def test_bfloat16_parameters_round_once_per_step_from_float32_math():
    """bf16 X and G, float32 statistics: each step must equal the float64
    reference step taken from the same bf16 inputs, rounded to bf16 once. A
    rounding tie decided differently by float32 and float64 arithmetic may
    move an element by one bf16 ulp; nothing may move by more."""
    shapes = [(37, 53), (45,), (3, 7, 9)]
    params, r, c, steps = _state(shapes, torch.bfloat16)
    states = [ref.AdafactorState() for _ in shapes]
    with use_block_config(TINY):
        for t in range(3):
            grads = _grads(shapes, t, torch.bfloat16)
            before = [p.double().numpy().copy() for p in params]
            _fused_step(params, grads, r, c, steps)
            for i, g in enumerate(grads):
                expect = ref.step(before[i], g.double().numpy(), states[i])
                expect_bf16 = torch.from_numpy(np.asarray(expect)).to(torch.bfloat16).double()
                got = params[i].double()
                ulp = torch.finfo(torch.bfloat16).eps * expect_bf16.abs().clamp(min=1e-30)
                assert ((got - expect_bf16).abs() <= ulp).all(), shapes[i]
                assert (got != expect_bf16).double().mean() < 0.01  # ties are rare
                if len(shapes[i]) >= 2:
                    assert _max_rel(r[i].double().numpy(), states[i].r) < 2e-6


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NumPy meets the NaN
def test_nonfinite_gradient_leaves_that_tensor_and_its_statistics_untouched():
    shapes = [(37, 53), (45,), (20, 30)]
    params, r, c, steps = _state(shapes)
    with use_block_config(TINY):
        _fused_step(params, _grads(shapes, 0), r, c, steps)
        before = [t.clone() if t is not None else None for t in params + r + c]
        grads = _grads(shapes, 1)
        grads[0][10, 7] = float("nan")
        grads[1][3] = float("inf")
        _fused_step(params, grads, r, c, steps)
    after = params + r + c
    for i in (0, 1):  # params, then their R (or V), then C
        assert torch.equal(after[i], before[i])
        assert torch.equal(after[3 + i], before[3 + i])
    assert torch.equal(after[6], before[6])
    assert not torch.equal(after[2], before[2])  # the finite tensor moved
    assert all(torch.isfinite(t).all() for t in after if t is not None)


def test_all_zero_gradient_and_zero_size_tensors():
    """G = 0 gives U = 0 (not 0/0): X only decays. Zero-size tensors are skipped."""
    shapes = [(0, 5), (6, 0), (0,), (12, 9), (9,)]
    params, r, c, steps = _state(shapes)
    before = [p.clone() for p in params]
    grads = [torch.zeros(s) for s in shapes]
    with use_block_config(TINY):
        _fused_step(params, grads, r, c, steps, weight_decay=0.1, increment_steps=True)
    assert all(float(s) == 1 for s in steps)  # zero-size tensors count their step too
    for p, b in zip(params, before):
        torch.testing.assert_close(p, b * (1 - 1e-2 * 0.1), rtol=1e-7, atol=0)


def test_parameter_at_zero_moves_by_the_eps2_floor():
    """alpha_1 = max(eps2, RMS(0)) * rho_1 = 1e-3 * 1e-2: a zero matrix moves."""
    params, r, c, steps = _state([(20, 30)])
    params[0].zero_()
    with use_block_config(TINY):
        _fused_step(params, _grads([(20, 30)], 0, zero_lines=False), r, c, steps)
    rms = params[0].square().mean().sqrt().item()
    assert rms == pytest.approx(1e-5, rel=1e-5)  # RMS(U_1) = 1 exactly at t = 1, no clipping


def test_steps_are_deterministic_and_the_plan_is_reused():
    def run():
        params, r, c, steps = _state(SHAPES[:3])
        with use_block_config(TINY):
            for t in range(2):
                # New gradient tensors each step, as zero_grad(set_to_none=True) gives.
                _fused_step(params, _grads(SHAPES[:3], t), r, c, steps)
        assert len(F._FUNCTIONAL[params[0]].plans) == 1  # the second step reused the first one's plan
        return params + r

    F.clear_plans()
    first = run()
    second = run()
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_carried_rms_is_refreshed_when_a_parameter_is_written_outside():
    """alpha_t uses RMS(X_{t-1}). The fused step carries sum X^2 from the
    previous update; an in-place write (version counter) or an explicit
    invalidate_carried_rms() must make it re-read X."""
    shapes = [(20, 30), (45,)]
    params, r, c, steps = _state(shapes)
    xs = [p.double().numpy().copy() for p in params]
    states = [ref.AdafactorState() for _ in shapes]
    with use_block_config(TINY):
        for t in range(3):
            if t == 1:
                with torch.no_grad():
                    params[0].mul_(3.0)  # bumps params[0]._version
            if t == 2:
                params[1].data.mul_(0.5)  # invisible to the version counter...
                F.invalidate_carried_rms([params[1]])  # ...so the caller says so
            for i, p in enumerate(params):
                xs[i] = p.double().numpy().copy()
            grads = _grads(shapes, t)
            _fused_step(params, grads, r, c, steps)
            for i, g in enumerate(grads):
                xs[i] = ref.step(xs[i], g.double().numpy(), states[i])
            for p, x in zip(params, xs):
                assert _max_rel(p.double().numpy(), x) < 2e-6


def test_bad_inputs_name_the_argument():
    params, r, c, steps = _state([(4, 5)])
    grads = [torch.zeros(4, 5)]
    with pytest.raises(ValueError, match="fused: beta1 is set, so exp_avgs"):
        F.fused_adafactor_step(params, grads, r, c, steps, lr=1e-2, beta1=0.9)
    with pytest.raises(ValueError, match="fused: beta1 must be"):
        F.fused_adafactor_step(params, grads, r, c, steps, lr=1e-2, beta1=1.0, exp_avgs=[torch.zeros(4, 5)])
    with pytest.raises(ValueError, match="fused.*momentum.*float32"):
        F.fused_adafactor_step(params, grads, r, c, steps, lr=1e-2, beta1=0.9, exp_avgs=[torch.zeros(5, 4)])
    with pytest.raises(ValueError, match="fused.*skip counter.*int64"):
        F.fused_adafactor_step(params, grads, r, c, steps, lr=1e-2, nonfinite_skips=[torch.zeros(())])
    with pytest.raises(ValueError, match="fused.*float64"):
        F.fused_adafactor_step([params[0].double()], [torch.zeros(4, 5, dtype=torch.float64)], r, c, steps, lr=1e-2)
    with pytest.raises(ValueError, match="fused.*not contiguous"):
        F.fused_adafactor_step([torch.zeros(5, 4).t()], [torch.zeros(4, 5)], r, c, steps, lr=1e-2)
    with pytest.raises(ValueError, match="equal length"):
        F.fused_adafactor_step(params, [], r, c, steps, lr=1e-2)
    with pytest.raises(ValueError, match="fused.*row statistic.*shape \\(4,\\)"):
        F.fused_adafactor_step(params, [torch.zeros(4, 5)], [torch.zeros(5)], c, steps, lr=1e-2)
    with pytest.raises(ValueError, match="BlockConfig.tile_m"):
        BlockConfig(tile_m=12, sub_m=4, block_n=16)


def test_launch_count_does_not_grow_with_the_number_of_tensors():
    shapes = [(768, 768)] * 40 + [(768,)] * 40
    assert F.launches_per_step([torch.empty(s) for s in shapes[:2]]) == 6
    assert F.launches_per_step([torch.empty(s) for s in shapes]) == 6
    bf16 = [torch.empty(s, dtype=torch.bfloat16) for s in shapes]
    assert F.launches_per_step(bf16, stochastic_rounding=True) == 7  # one more: the step's random seed
    assert F.launches_per_step([torch.empty(s) for s in shapes], stochastic_rounding=True) == 6


# --------------------------------------------------------------------------- optbook.Adafactor(fused=True)

# The optimizer-level tests use the default block shapes (one tile per small
# tensor): the multi-tile paths are covered above, and the interpreter's cost
# is per program.
OPT_SHAPES = [(37, 53), (45,), (3, 7, 9), (), (1, 40)]


def _twin_optimizers(dtype=torch.float32, **options):
    import optbook

    gen = torch.Generator().manual_seed(5)
    plain = [torch.randn(s, generator=gen).to(dtype).requires_grad_(True) for s in OPT_SHAPES]
    fused = [p.detach().clone().requires_grad_(True) for p in plain]
    return plain, fused, optbook.Adafactor(plain, **options), optbook.Adafactor(fused, fused=True, **options)


def _set_grads(plain, fused, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(200 + seed)
    for a, b in zip(plain, fused):
        g = torch.randn(a.shape, generator=gen).to(dtype)
        a.grad, b.grad = g.clone(), g.clone()


@pytest.mark.parametrize(
    "options",
    [{}, {"weight_decay": 0.2, "maximize": True}, {"relative_step": False, "scale_parameter": False, "lr": 3e-3}],
    ids=["defaults", "decay-maximize", "absolute-lr"],
)
def test_fused_optimizer_matches_the_torch_path(options):
    plain, fused, opt_plain, opt_fused = _twin_optimizers(**options)
    for t in range(3):
        _set_grads(plain, fused, t)
        opt_plain.step()
        opt_fused.step()
    for a, b in zip(plain, fused):
        assert _max_rel(b.detach().double().numpy(), a.detach().double().numpy()) < 2e-6, a.shape
        sa, sb = opt_plain.state[a], opt_fused.state[b]
        assert float(sa["step"]) == float(sb["step"]) == 3.0
        for name in sa:
            if name != "step":
                assert _max_rel(sb[name].double().numpy(), sa[name].double().numpy()) < 2e-6, (a.shape, name)


def test_fused_optimizer_bfloat16_matches_the_torch_path_to_one_ulp():
    plain, fused, opt_plain, opt_fused = _twin_optimizers(torch.bfloat16)
    for t in range(3):
        _set_grads(plain, fused, t, torch.bfloat16)
        opt_plain.step()
        opt_fused.step()
        for a, b in zip(plain, fused):
            a64, b64 = a.detach().double(), b.detach().double()
            ulp = torch.finfo(torch.bfloat16).eps * a64.abs().clamp(min=1e-30)
            assert ((a64 - b64).abs() <= ulp).all(), a.shape
            assert (a64 != b64).double().mean() < 0.02


def test_fused_optimizer_skips_missing_gradients_and_resumes_bit_for_bit():
    """A parameter without a gradient keeps its t; a fused optimizer rebuilt
    from a state_dict continues exactly as the uninterrupted one."""
    import optbook

    plain, fused, opt_plain, opt_fused = _twin_optimizers()
    for t in range(2):
        _set_grads(plain, fused, t)
        if t == 1:
            plain[1].grad = fused[1].grad = None
        opt_plain.step()
        opt_fused.step()
    assert float(opt_fused.state[fused[1]]["step"]) == 1.0
    saved = copy.deepcopy(opt_fused.state_dict())
    resumed_params = [p.detach().clone().requires_grad_(True) for p in fused]
    resumed = optbook.Adafactor(resumed_params, fused=True)
    resumed.load_state_dict(saved)
    _set_grads(plain, fused, 7)
    for p, q in zip(resumed_params, fused):
        p.grad = q.grad.clone()
    opt_fused.step()
    resumed.step()
    for p, q in zip(resumed_params, fused):
        assert torch.equal(p, q), p.shape


def _fused_lists(params, momentum):
    """Fresh state in the optimizer's layout (optbook.optim.adafactor's module docstring)."""
    rows = [torch.zeros(p.shape[:-1] if p.dim() >= 2 else p.shape) for p in params]
    cols = [torch.zeros(p.shape[:-2] + p.shape[-1:]) if p.dim() >= 2 else None for p in params]
    steps = [torch.zeros(()) for _ in params]
    moms = [torch.zeros(p.shape) for p in params] if momentum else None
    skips = [torch.zeros((), dtype=torch.int64) for _ in params]
    return rows, cols, steps, moms, skips


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NumPy meets the NaN
@pytest.mark.parametrize("beta1", [None, 0.9], ids=["no-momentum", "momentum"])
def test_kernels_follow_the_torch_path_with_momentum_and_count_skips(beta1):
    """beta1 momentum (M_t = lerp(M_{t-1}, alpha_t U_hat_t, 1 - beta1), X_t =
    (1 - lr lambda) X_{t-1} - M_t), weight decay and maximize as the non-fused
    optbook.Adafactor computes them, and a NaN gradient skipped and counted
    in nonfinite_skips the same way. The kernels are called directly:
    test_optimizer_fused_momentum_and_skip_counts checks the optimizer-level dispatch."""
    import optbook

    options = {"weight_decay": 0.2, "maximize": True}
    gen = torch.Generator().manual_seed(9)
    plain = [torch.randn(s, generator=gen).requires_grad_(True) for s in OPT_SHAPES]
    fused = [p.detach().clone() for p in plain]
    opt = optbook.Adafactor(plain, beta1=beta1, **options)
    rows, cols, steps, moms, skips = _fused_lists(fused, beta1 is not None)
    for t in range(3):
        grads = [torch.randn(s, generator=gen) for s in OPT_SHAPES]
        if t == 1:
            grads[0][2, 3] = float("nan")
        for p, g in zip(plain, grads):
            p.grad = g.clone()
        opt.step()
        F.fused_adafactor_step(
            fused, grads, rows, cols, steps, lr=1e-2, increment_steps=True, beta1=beta1, exp_avgs=moms,
            nonfinite_skips=skips, **options,
        )
    for i, (a, b) in enumerate(zip(plain, fused)):
        state = opt.state[a]
        assert _max_rel(b.double().numpy(), a.detach().double().numpy()) < 2e-6, a.shape
        assert float(steps[i]) == float(state["step"]) == 3.0
        assert int(skips[i]) == int(state["nonfinite_skips"]) == (1 if i == 0 else 0)
        if beta1 is not None:
            assert _max_rel(moms[i].double().numpy(), state["exp_avg"].double().numpy()) < 2e-6


def test_kernels_compile_for_sm90_without_spilling():
    """The real compiler, for an H100 (no GPU needed: ptxas ships with triton),
    on every constexpr branch. The hot passes must keep everything in
    registers, and on Transformer-shaped tiles use 128-bit loads."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    # The child must import this checkout's optbook, wherever the venv's
    # editable install points.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    code = (
        "import json; from dataclasses import asdict; from optbook.kernels.aot import compile_all; "
        "print(json.dumps([asdict(i) for i in compile_all(90, variants=('main', 'momentum', 'other'))]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    infos = json.loads(out.stdout.strip().splitlines()[-1])
    kernels = {"_stats_kernel", "_stats_finalize_kernel", "_clip_kernel", "_scale_kernel", "_update_kernel"}
    assert {(i["kernel"], i["param_dtype"], i["variant"]) for i in infos} == {
        (k, d, v) for k in kernels for d in ("float32", "bfloat16") for v in ("main", "momentum", "other")
    }
    for info in infos:
        assert info["spills"] == 0, info
        assert 0 < info["registers"] <= 128, info
        if info["variant"] != "other" and info["kernel"] in ("_stats_kernel", "_clip_kernel", "_update_kernel"):
            assert info["wide_loads"] > 0, info


def test_optimizer_fused_momentum_and_skip_counts():
    """optbook.Adafactor(fused=True, beta1=...) passes momentum and the skip
    counters to the kernels: it follows the eager optimizer, and a NaN
    gradient is skipped and counted on both paths."""
    plain, fused, opt_plain, opt_fused = _twin_optimizers(beta1=0.9, weight_decay=0.1)
    gen = torch.Generator().manual_seed(11)
    for t in range(3):
        grads = [torch.randn(s, generator=gen) for s in OPT_SHAPES]
        if t == 1:
            grads[0][0, 0] = float("nan")
        for params, opt in ((plain, opt_plain), (fused, opt_fused)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(plain, fused):
        assert torch.allclose(a, b, rtol=2e-6, atol=1e-7)
        sa, sb = opt_plain.state[a], opt_fused.state[b]
        assert torch.allclose(sa["exp_avg"], sb["exp_avg"], rtol=2e-6, atol=1e-8)
        assert int(sa["nonfinite_skips"]) == int(sb["nonfinite_skips"])
    assert int(opt_fused.state[fused[0]]["nonfinite_skips"]) == 1
