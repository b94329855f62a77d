"""``optbook.Adafactor`` against the installed upstream Adafactors: equal where they agree, different where they differ.

Upstreams, all really executed (nothing re-typed): ``torch.optim.Adafactor``
(torch 2.13), ``transformers.optimization.Adafactor`` (5.x),
``pytorch_optimizer.AdaFactor`` (4.1) and ``optax.adafactor`` (0.2.8, CPU JAX
with x64). Each is configured as ``/work/shared/notes/adafactor-implementations.md``
(the team's survey) says it computes the paper's function, and compared in
float64 over 25 steps of gradients with RMS about 1, where a correct
implementation agrees to about 1e-16 per step (measured); the tolerance is
1e-12, far below the 1e-3 a wrong formula gives.

timm's ``Adafactor`` and ``AdafactorBigVision`` are *not* checked: timm cannot
be installed here, because it requires torchvision, which has no CPU build for
this torch ("operator torchvision::nms does not exist"). Their differences
(dims (0, 1) of convolutions and a strict min size 16; in the BigVision port a
wrong row mean when the largest dim comes first, and an inverted update
clip) stay documented in the survey only; nothing of timm's code is copied here.

Every known divergence is a test that asserts the difference (and fails, to be
updated, when upstream changes): where epsilon1 goes and torch's bfloat16
damping, torch's small-gradient clamp, torch's epsilon1 leaking across dtypes,
which dims are factored for rank > 2, the weight-decay conventions, the lr
semantics, non-finite gradients, complex parameters, and the
pytorch_optimizer 4.1 quirks found by running it (per-group step counter,
maximize negating ``p.grad``, ignored ``lr`` and per-group ``eps1``, capped
and bfloat16 defaults). The bugs the survey lists for pytorch_optimizer's
development head (inverted clipping, column state overwritten by the
foreach path) are absent from 4.1; tests assert the correct behaviour, so they
fail if a release brings them in.

The hypothesis properties at the end hold for any correct Adafactor: scale
invariance in G, RMS of the step at most alpha d, the exact estimate for a
rank-one G^2, and the state size.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import pytorch_optimizer
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from optbook import Adafactor
from optbook.analysis.memory import adafactor_state_numbers, optimizer_state_numbers
from optbook.reference import adafactor as ref
from test_optim_adafactor import (
    F64,
    gradient_sequence,
    initial_point,
    max_rel_diff,
    reference_run,
    run_optimizer,
)

# 1-D; 2-D tall and wide; 3-D; 4-D conv-shaped; 0-D; and the two degenerate matrices.
SHAPES = [(9,), (12, 5), (5, 12), (3, 6, 4), (4, 3, 3, 3), (), (1, 7), (7, 1)]
STEPS = 25


def unit_gradients(shape, steps=STEPS, seed=0, dtype=F64):
    """Gradients with RMS about 1: the regime every implementation computes alike."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, dtype=F64, generator=gen).to(dtype) for _ in range(steps)]


def problem(shapes=SHAPES, steps=STEPS, dtype=F64, seed=0):
    grads = [unit_gradients(s, steps, seed=seed + i, dtype=dtype) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=seed + 100 + i, dtype=dtype) for i, s in enumerate(shapes)]
    return grads, x0s


def assert_close(ours, theirs, rtol, what):
    """Every parameter at every step within rtol of the other's max-abs entry; both must have moved."""
    for i, (first, last) in enumerate(zip(ours[0], ours[-1])):
        assert first.numel() == 0 or not torch.equal(first, ours[-1][i]) or len(ours) == 1
    for k, (a_step, b_step) in enumerate(zip(ours, theirs)):
        for i, (a, b) in enumerate(zip(a_step, b_step)):
            err = max_rel_diff(a, b)
            assert err <= rtol, f"{what}: parameter {i} {tuple(a.shape)} at step {k + 1} differs by {err:.2e}"


# --------------------------------------------------------------------------- torch.optim.Adafactor


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "options", [{}, {"weight_decay": 0.3}, {"maximize": True}], ids=["defaults", "weight-decay", "maximize"]
)
def test_matches_torch_adafactor(foreach, options):
    """torch.optim.Adafactor with its defaults: 25 steps in float64, every shape in one group, rel. error <= 1e-12.

    torch keeps row and column *means* (the same V_hat as sums) and clamps
    V_hat at finfo(float64).eps^2 instead of adding eps1 = 1e-30; at gradient
    RMS ~1 neither acts. Weight decay has the same convention in both,
    X <- (1 - lr lambda) X, alpha_t measured before the decay. A scheduler
    cuts lr to 3e-3 after 10 steps (below 1/sqrt(t)): both re-read it as the cap.
    """
    grads, x0s = problem()

    def schedule(opt):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 if k < 10 else 0.3)

    ours, opt, params = run_optimizer(lambda ps: Adafactor(ps, **options), x0s, grads, scheduler=schedule)
    theirs, topt, tparams = run_optimizer(
        lambda ps: torch.optim.Adafactor(ps, foreach=foreach, **options), x0s, grads, scheduler=schedule
    )
    assert_close(ours, theirs, 1e-12, "torch.optim.Adafactor")
    for p, tp, shape in zip(params, tparams, SHAPES):
        state, tstate = opt.state[p], topt.state[tp]
        assert state["step"].item() == tstate["step"].item() == STEPS
        if len(shape) >= 2:
            n, m = shape[-2:]
            assert max_rel_diff(state["R"], tstate["row_var"].squeeze(-1) * m) <= 1e-12
            assert max_rel_diff(state["C"], tstate["col_var"].squeeze(-2) * n) <= 1e-12
        else:
            assert max_rel_diff(state["V"], tstate["variance"]) <= 1e-12


def test_matches_torch_adafactor_in_float32():
    """float32: the same iteration up to float32 rounding (measured about 1e-6 after 25 steps)."""
    grads, x0s = problem(dtype=torch.float32)
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    theirs, *_ = run_optimizer(lambda ps: torch.optim.Adafactor(ps), x0s, grads)
    assert_close(ours, theirs, 1e-5, "torch.optim.Adafactor float32")


def test_torch_with_the_paper_eps1_gives_nan_on_zero_rows():
    """Divergence (where eps1 goes): torch with eps=(1e-30, ...) in float32 turns a zero gradient row into NaN.

    torch clamps V_hat at eps1^2, and 1e-60 underflows to 0 in float32, so
    0 / sqrt(0) appears. Adding eps1 to G^2 first keeps every denominator
    positive, and a zero row does not move.
    """
    x0 = initial_point((4, 3), dtype=torch.float32)
    g = initial_point((4, 3), seed=2, dtype=torch.float32)
    g[1] = 0.0
    p, q = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(x0.clone())
    theirs, ours = torch.optim.Adafactor([p], eps=(1e-30, 1e-3)), Adafactor([q], eps=(1e-30, 1e-3))
    p.grad, q.grad = g.clone(), g.clone()
    theirs.step()
    ours.step()
    assert torch.isnan(p).any()
    assert torch.isfinite(q).all() and torch.equal(q.detach()[1], x0[1])


def test_torch_damps_small_bfloat16_gradients():
    """Divergence (torch's bf16 damping): default eps1 = finfo(bfloat16).eps = 0.0078 floors sqrt(V_hat).

    With gradients of RMS 1e-3 (G^2 ~ 1e-6 < eps1^2 = 6e-5) torch's first
    bf16 step is about 10x too short (measured: 0.11 of its float32 step).
    optbook computes bf16 parameters in float32 with eps1 = 1e-30 and takes
    the float32 step, rounded to bfloat16.
    """
    x0 = initial_point((64, 32), dtype=torch.bfloat16)
    g = (initial_point((64, 32), seed=9) * 1e-3).to(torch.bfloat16)

    def first_step(make, dtype):
        p = torch.nn.Parameter(x0.to(dtype, copy=True))
        opt = make([p])
        p.grad = g.to(dtype)
        opt.step()
        return (p.detach().float() - x0.float()).norm().item()

    full = first_step(torch.optim.Adafactor, torch.float32)
    assert first_step(Adafactor, torch.float32) == pytest.approx(full, rel=1e-5)
    assert first_step(Adafactor, torch.bfloat16) == pytest.approx(full, rel=0.05)
    assert first_step(torch.optim.Adafactor, torch.bfloat16) < 0.2 * full


def test_torch_eps1_leaks_from_the_first_parameter_of_a_group():
    """Divergence: torch sets eps1 = finfo(dtype).eps from the *first* parameter and keeps it for the group.

    A float32 matrix with small gradients behind a bfloat16 vector is clamped
    at bf16's eps1 and steps differently than alone; optbook's does not.
    """
    gv = unit_gradients((4,), 3, seed=1, dtype=torch.bfloat16)
    gm = [g * 1e-3 for g in unit_gradients((6, 5), 3, seed=2, dtype=torch.float32)]
    xv, xm = initial_point((4,), dtype=torch.bfloat16), initial_point((6, 5), seed=3, dtype=torch.float32)
    for make, differs in ((torch.optim.Adafactor, True), (Adafactor, False)):
        together, *_ = run_optimizer(lambda ps: make(ps), [xv, xm], [gv, gm])
        alone, *_ = run_optimizer(lambda ps: make(ps), [xm], [gm])
        assert (max_rel_diff(together[-1][1], alone[-1][0]) > 1e-3) == differs


def test_torch_small_gradient_clamp_distorts_stacked_slices():
    """Divergence (small gradients, rank > 2): torch clamps mean(R) at eps1 per slice, then clips globally.

    A (2, 6, 5) parameter whose slices have gradient scales 1e-2 and 1e-9
    (float64): U_t is scale-invariant per slice, so optbook's two slices get
    steps of the same size (the reference agrees); torch's clamp inflates the
    tiny slice's U by ~15x and the global clip then shrinks the other slice.
    """
    gen = torch.Generator().manual_seed(4)
    grads = []
    for _ in range(3):
        g = torch.randn(2, 6, 5, dtype=F64, generator=gen)
        g[0] *= 1e-2
        g[1] *= 1e-9
        grads.append(g)
    x0 = initial_point((2, 6, 5), seed=5)

    def slice_ratio(make):
        hist, *_ = run_optimizer(make, [x0], [grads])
        step = hist[0][0] - x0
        return (step[1].norm() / step[0].norm()).item()

    assert slice_ratio(lambda ps: Adafactor(ps)) == pytest.approx(1.0, rel=0.3)
    assert slice_ratio(lambda ps: torch.optim.Adafactor(ps)) > 5.0
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), [x0], [grads])
    expected = reference_run(x0.numpy(), [g.numpy() for g in grads])
    assert max_rel_diff(ours[-1][0], expected[-1]) <= 1e-12


def test_factored_dims_of_a_convolution_kernel():
    """Divergence (rank > 2): torch factors the last two dims (3 x 3) of an (O, I, 3, 3) kernel.

    optbook's default does the same and agrees with torch; factor_dims=
    "two_largest" factors (O, I), as optax does (checked in the optax test),
    keeps far less state and takes different steps.
    """
    shape = (8, 6, 3, 3)
    grads, x0s = problem([shape], 8)
    theirs, topt, _ = run_optimizer(lambda ps: torch.optim.Adafactor(ps), x0s, grads)
    last, lopt, _ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    largest, gopt, _ = run_optimizer(lambda ps: Adafactor(ps, factor_dims="two_largest"), x0s, grads)
    assert_close(last, theirs, 1e-12, "torch conv")
    assert max_rel_diff(largest[-1][0], theirs[-1][0]) > 1e-3
    torch_numbers = sum(v.numel() for s in topt.state.values() for k, v in s.items() if k != "step")
    assert optimizer_state_numbers(lopt) == torch_numbers == 8 * 6 * (3 + 3)
    assert optimizer_state_numbers(gopt) == 8 * 3 * 3 + 6 * 3 * 3 < torch_numbers


def test_lr_semantics_differ_from_torch():
    """Divergence (lr): torch's lr is always the cap of rho_t = min(lr, 1/sqrt t); it has no absolute step size.

    optbook's relative_step=True is torch's meaning; relative_step=False makes
    rho_t = lr, which torch cannot express: with lr = 0.5 the two part at
    t = 5, where 1/sqrt(t) < 0.5.
    """
    grads, x0s = problem([(6, 4)], 8)
    theirs, *_ = run_optimizer(lambda ps: torch.optim.Adafactor(ps, lr=0.5), x0s, grads)
    capped, *_ = run_optimizer(lambda ps: Adafactor(ps, lr=0.5), x0s, grads)
    absolute, *_ = run_optimizer(lambda ps: Adafactor(ps, lr=0.5, relative_step=False), x0s, grads)
    assert_close(capped, theirs, 1e-12, "torch lr cap")
    assert max_rel_diff(absolute[3][0], theirs[3][0]) <= 1e-12 < max_rel_diff(absolute[-1][0], theirs[-1][0])
    expected = reference_run(x0s[0].numpy(), [g.numpy() for g in grads[0]], lr=0.5, relative_step=False)
    assert max_rel_diff(absolute[-1][0], expected[-1]) <= 1e-12


def test_hyperparameter_ranges_differ_from_torch():
    """torch requires d >= 1, accepts any beta2_decay <= 0 and eps1=None; optbook accepts 0 < d < 1 and
    refuses a beta2_decay that never lets beta2hat tend to 1 (0) or freezes the estimate (< -1), and eps1=None."""
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="d should be >= 1"):
        torch.optim.Adafactor([p], d=0.5)
    Adafactor([p], d=0.5)
    for tau in (0.0, -2.0):
        torch.optim.Adafactor([p], beta2_decay=tau)
        with pytest.raises(ValueError, match="beta2_decay"):
            Adafactor([p], beta2_decay=tau)
    torch.optim.Adafactor([p], eps=(None, 1e-3))
    with pytest.raises(ValueError, match="eps"):
        Adafactor([p], eps=(None, 1e-3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_gradients_poison_torch_but_skip_in_optbook(bad):
    """Divergence: one NaN/inf gradient entry makes torch's parameter and statistics NaN for good."""
    grads, x0s = problem([(5, 4)], 4)
    grads[0][1] = grads[0][1].clone()
    grads[0][1][2, 2] = bad
    theirs, topt, (tp,) = run_optimizer(lambda ps: torch.optim.Adafactor(ps), x0s, grads)
    ours, opt, (p,) = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    assert torch.isnan(theirs[-1][0]).any() and torch.isnan(topt.state[tp]["row_var"]).any()
    assert torch.isfinite(ours[-1][0]).all() and opt.state[p]["nonfinite_skips"].item() == 1
    assert torch.equal(ours[1][0], ours[0][0]) and not torch.equal(ours[2][0], ours[1][0])


# --------------------------------------------------------------------------- transformers


def test_matches_transformers_defaults():
    """transformers.Adafactor(lr=None) is the paper's setting: relative step, parameter scale, eps1 added."""
    grads, x0s = problem()
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    theirs, *_ = run_optimizer(lambda ps: transformers.Adafactor(ps, lr=None), x0s, grads)
    assert_close(ours, theirs, 1e-12, "transformers.Adafactor")


@pytest.mark.parametrize(
    "ours_options, hf_options",
    [
        ({"relative_step": False, "lr": 0.03}, {"relative_step": False, "lr": 0.03}),
        ({"relative_step": False, "scale_parameter": False, "lr": 0.03},
         {"relative_step": False, "scale_parameter": False, "lr": 0.03}),
        ({"beta1": 0.9}, {"lr": None, "beta1": 0.9}),
        ({"beta1": 0.9, "maximize": False, "d": 0.5}, {"lr": None, "beta1": 0.9, "clip_threshold": 0.5}),
    ],
    ids=["absolute-lr", "absolute-lr-unscaled", "momentum", "momentum-d"],
)
def test_matches_transformers_options(ours_options, hf_options):
    """An absolute lr (with or without the parameter scale) and momentum: transformers has the same conventions.

    Its momentum is the EMA of the clipped, lr-scaled update (T2T's design,
    the subject of transformers issue #34506), as optbook's is.
    """
    grads, x0s = problem(steps=12)
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps, **ours_options), x0s, grads)
    theirs, *_ = run_optimizer(lambda ps: transformers.Adafactor(ps, warmup_init=False, **hf_options), x0s, grads)
    assert_close(ours, theirs, 1e-12, "transformers.Adafactor options")


def test_transformers_bfloat16_agrees_to_a_bfloat16_ulp():
    """Both compute bf16 parameters in float32 with float32 state and round to nearest once per step.

    The float32 operations come in different orders, so a rounding tie may
    fall either way: within one bf16 ulp, and rarely different at all.
    """
    grads, x0s = problem([(16, 12), (10,)], 5, dtype=torch.bfloat16)
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    theirs, *_ = run_optimizer(lambda ps: transformers.Adafactor(ps, lr=None), x0s, grads)
    for a, b in zip(ours[-1], theirs[-1]):
        a64, b64 = a.double(), b.double()
        ulp = torch.finfo(torch.bfloat16).eps * torch.maximum(a64.abs(), b64.abs())
        assert ((a64 - b64).abs() <= ulp).all()
        assert (a64 != b64).double().mean() < 0.05


def test_transformers_scales_weight_decay_by_alpha_not_lr():
    """Divergence (weight decay): transformers decays X by lambda alpha_t, optbook (like torch) by lambda lr.

    After one step from the same X_0 the difference is exactly
    (lr - alpha_1) lambda X_0, with alpha_1 = max(eps2, RMS(X_0)) rho_1.
    """
    x0, g, lam = initial_point((5, 3)) * 8.0, initial_point((5, 3), seed=3), 0.2
    p, q = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(x0.clone())
    theirs = transformers.Adafactor([p], lr=None, weight_decay=lam)
    ours = Adafactor([q], weight_decay=lam)
    p.grad, q.grad = g.clone(), g.clone()
    theirs.step()
    ours.step()
    alpha = max(1e-3, ref.rms(x0.numpy())) * ref.relative_step_size(1)
    assert alpha > 3e-2  # so the two conventions are far apart here
    torch.testing.assert_close(p.detach() - q.detach(), (1e-2 - alpha) * lam * x0, rtol=1e-10, atol=1e-15)


def test_transformers_refuses_a_cap_and_accepts_complex_parameters():
    """Divergences: transformers' relative_step refuses an lr (optbook reads it as the cap), and it runs
    complex parameters, squaring the complex gradient into complex state; optbook refuses them."""
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="relative_step"):
        transformers.Adafactor([p], lr=1e-2)
    z = torch.nn.Parameter(torch.randn(3, 2, dtype=torch.complex64))
    z.grad = torch.randn(3, 2, dtype=torch.complex64)
    hf = transformers.Adafactor([z], lr=None)
    hf.step()
    assert hf.state[z]["exp_avg_sq_row"].dtype == torch.complex64
    with pytest.raises(TypeError, match="complex"):
        Adafactor([z]).step()


# --------------------------------------------------------------------------- pytorch_optimizer


def _po(ps, **kw):
    # The survey's recipe: momentum off, the beta2hat cap pushed just below 1 so that it never binds.
    return pytorch_optimizer.AdaFactor(ps, **{"betas": (None, 1.0 - 1e-15), **kw})


@pytest.mark.parametrize("foreach", [False, True])
def test_matches_pytorch_optimizer(foreach):
    grads, x0s = problem()
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    theirs, *_ = run_optimizer(lambda ps: _po(ps, foreach=foreach), x0s, grads)
    assert_close(ours, theirs, 1e-12, "pytorch_optimizer.AdaFactor")


def test_pytorch_optimizer_counts_steps_per_group():
    """Divergence (4.1): the step counter is per param group, so a parameter that skips steps jumps ahead.

    optbook (like torch and transformers) keeps a per-parameter t.
    """
    ga, gb = unit_gradients((4, 3), 12, seed=5), unit_gradients((3,), 12, seed=6)
    gb = [None if k in (2, 3, 4, 7) else g for k, g in enumerate(gb)]
    x0s = [initial_point((4, 3), seed=7), initial_point((3,), seed=8)]
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, [ga, gb])
    theirs, *_ = run_optimizer(lambda ps: _po(ps, foreach=False), x0s, [ga, gb])
    assert max_rel_diff(theirs[-1][0], ours[-1][0]) <= 1e-12
    assert max_rel_diff(theirs[-1][1], ours[-1][1]) > 1e-4


def test_pytorch_optimizer_maximize_negates_the_users_gradient():
    """Divergence (4.1): maximize=True negates p.grad in place; optbook and torch leave it as the user set it."""
    g = initial_point((4, 3), seed=1)
    q = torch.nn.Parameter(initial_point((4, 3)))
    q.grad = g.clone()
    _po([q], maximize=True, foreach=False).step()
    assert torch.equal(q.grad, -g)
    p = torch.nn.Parameter(initial_point((4, 3)))
    p.grad = g.clone()
    Adafactor([p], maximize=True).step()
    assert torch.equal(p.grad, g)


def test_pytorch_optimizer_ignores_lr_and_per_group_eps1():
    """Bugs found in 4.1: with relative_step=True (the default) any lr gives the same steps (the cap is
    hard-coded 1e-2), and a param group's eps1 is ignored (the constructor's value is used for all)."""
    grads, x0s = problem([(6, 4)], 5)
    small, *_ = run_optimizer(lambda ps: _po(ps, lr=1e-3), x0s, grads)
    large, *_ = run_optimizer(lambda ps: _po(ps, lr=0.5), x0s, grads)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(small, large))
    capped, *_ = run_optimizer(lambda ps: Adafactor(ps, lr=0.5), x0s, grads)
    assert max_rel_diff(capped[-1][0], large[-1][0]) > 1e-2  # optbook reads lr as the cap

    tiny = [g * 1e-2 for g in grads[0]]
    default_eps, *_ = run_optimizer(lambda ps: _po(ps), x0s, [tiny])
    group_eps, *_ = run_optimizer(lambda ps: _po([{"params": ps, "eps1": 1.0}]), x0s, [tiny])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(default_eps, group_eps))
    ours_default, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, [tiny])
    ours_group, *_ = run_optimizer(lambda ps: Adafactor([{"params": ps, "eps": (1.0, 1e-3)}]), x0s, [tiny])
    assert max_rel_diff(ours_group[-1][0], ours_default[-1][0]) > 1e-2


def test_pytorch_optimizer_defaults_cap_beta2hat_and_keep_bfloat16_momentum():
    """Divergences by design (4.1): betas[1] caps beta2hat_t (the reference with min(cap, 1 - t^-0.8)
    reproduces it), and the default momentum buffer is bfloat16 even for float32/float64 parameters."""
    grads, x0s = problem([(6, 4)], 6)
    capped, *_ = run_optimizer(lambda ps: _po(ps, betas=(None, 0.5), foreach=False), x0s, grads)
    hp = ref.AdafactorHyperparameters(decay=lambda t: min(0.5, 1 - t**-0.8))
    x, state = x0s[0].numpy().copy(), ref.AdafactorState()
    for g in grads[0]:
        x = np.asarray(ref.step(x, g.numpy(), state, hp), dtype=float)
    assert max_rel_diff(capped[-1][0], x) <= 1e-12
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    assert max_rel_diff(capped[-1][0], ours[-1][0]) > 1e-4
    p = torch.nn.Parameter(x0s[0].clone())
    p.grad = grads[0][0].clone()
    default = pytorch_optimizer.AdaFactor([p])
    default.step()
    assert default.state[p]["exp_avg"].dtype == torch.bfloat16


def test_pytorch_optimizer_41_clips_correctly_and_keeps_its_column_state():
    """The survey's bugs of pytorch_optimizer's development head are absent from 4.1: it clips
    RMS(U) at d (not the inverse), an all-zero gradient gives no NaN, and its foreach path leaves the
    column statistic alone. Asserting the correct behaviour: this fails if a release brings them in."""
    shape = (6, 4)
    x0 = initial_point(shape)
    spike = [initial_point(shape, seed=1), initial_point(shape, seed=2) * 1e4, torch.zeros(shape, dtype=F64)]
    for foreach in (False, True):
        hist, opt, (p,) = run_optimizer(lambda ps: _po(ps, foreach=foreach), [x0], [spike])
        alpha = max(1e-3, ref.rms(hist[0][0].numpy())) * ref.relative_step_size(2)
        assert ref.rms((hist[1][0] - hist[0][0]).numpy()) <= alpha * (1 + 1e-12)  # the spike is clipped
        assert torch.isfinite(hist[2][0]).all() and torch.equal(hist[2][0], hist[1][0])
        ours, oopt, (q,) = run_optimizer(lambda ps: Adafactor(ps), [x0], [spike])
        assert max_rel_diff(opt.state[p]["exp_avg_sq_col"] * shape[0], oopt.state[q]["C"]) <= 1e-12


# --------------------------------------------------------------------------- optax (CPU JAX, x64)


@pytest.fixture(scope="module")
def jax_x64():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    with jax.enable_x64(True):
        yield jax


def _run_optax(jax, tx, x0s, grads):
    """All parameters in one pytree, one jitted update for all steps; returns the final parameters."""
    import jax.numpy as jnp
    import optax

    x = {str(i): jnp.asarray(x0.numpy()) for i, x0 in enumerate(x0s)}
    state = tx.init(x)
    update = jax.jit(tx.update)
    for k in range(len(grads[0])):
        g = {str(i): jnp.asarray(seq[k].numpy()) for i, seq in enumerate(grads)}
        updates, state = update(g, state, x)
        x = optax.apply_updates(x, updates)
    assert all(v.dtype == jnp.float64 for v in x.values())
    return [torch.from_numpy(np.array(x[str(i)])) for i in range(len(x0s))]


def _paper_rho(count):
    import jax.numpy as jnp

    # optax hands the schedule the 0-based count, so t = count + 1.
    return jnp.minimum(1e-2, (count + 1.0) ** -0.5)


def _optax_chain(momentum=None, weight_decay=None):
    """optax.adafactor's own chain, rebuilt with beta2hat_t computed in float64 (see test_matches_optax)."""
    import jax.numpy as jnp
    import optax

    def decay_float64(count, exponent):
        return 1.0 - jnp.asarray(count + 1, jnp.float64) ** (-exponent)

    parts = [
        optax.scale_by_factored_rms(
            decay_rate=0.8, min_dim_size_to_factor=1, epsilon=1e-30, decay_rate_fn=decay_float64
        ),
        optax.clip_by_block_rms(1.0),
        optax.scale_by_learning_rate(_paper_rho, flip_sign=False),
        optax.scale_by_param_block_rms(1e-3),
    ]
    if momentum is not None:
        parts.append(optax.ema(momentum, debias=False, accumulator_dtype=jnp.float64))
    if weight_decay is not None:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale(-1.0))
    return optax.chain(*parts)


OPTAX_SHAPES = [(5, 3), (3, 5), (7,), (), (2, 5, 4), (5, 2, 3), (6, 4, 3, 3)]


def test_matches_optax(jax_x64):
    """optax.adafactor with the paper's rho_t as its schedule and factoring from size 1, 20 steps in float64.

    optax factors the two largest dims, so it is factor_dims="two_largest";
    for the 2-D and (2, 5, 4) tensors that is also the last two. The public
    optax.adafactor agrees only to ~3e-10, because it computes
    beta2hat_t = 1 - t^-0.8 in float32 even under x64 (``jnp.array(i + 1,
    jnp.float32)`` in ``factorized._decay_rate_pow``); its own chain rebuilt
    with a float64 schedule agrees to 1e-12.
    """
    import optax

    grads, x0s = problem(OPTAX_SHAPES, 20)
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps, factor_dims="two_largest"), x0s, grads)
    public = _run_optax(jax_x64, optax.adafactor(learning_rate=_paper_rho, min_dim_size_to_factor=1), x0s, grads)
    rebuilt = _run_optax(jax_x64, _optax_chain(), x0s, grads)
    for i in range(len(OPTAX_SHAPES)):
        assert 1e-13 < max_rel_diff(ours[-1][i], public[i]) <= 1e-8 or OPTAX_SHAPES[i] == ()
        assert max_rel_diff(ours[-1][i], rebuilt[i]) <= 1e-12, OPTAX_SHAPES[i]
    # Divergence (which dims): where the two largest are not the last two, the default differs.
    last, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    for i, shape in enumerate(OPTAX_SHAPES):
        differs = max_rel_diff(last[-1][i], rebuilt[i]) > 1e-4
        assert differs == (shape in ((5, 2, 3), (6, 4, 3, 3))), shape


def test_optax_momentum_and_weight_decay_conventions(jax_x64):
    """Momentum: optax's ema(debias=False) after the lr and parameter scale is optbook's beta1.
    Weight decay (divergence): optax adds lambda X unscaled, so optax's lambda is optbook's lambda / lr."""
    shapes = [(5, 3), (7,)]
    grads, x0s = problem(shapes, 12)
    lam, lr = 1e-3, 1e-2
    theirs = _run_optax(jax_x64, _optax_chain(momentum=0.9, weight_decay=lam), x0s, grads)
    ours, *_ = run_optimizer(lambda ps: Adafactor(ps, beta1=0.9, weight_decay=lam / lr), x0s, grads)
    same_lambda, *_ = run_optimizer(lambda ps: Adafactor(ps, beta1=0.9, weight_decay=lam), x0s, grads)
    for i in range(len(shapes)):
        assert max_rel_diff(ours[-1][i], theirs[i]) <= 1e-12
        assert max_rel_diff(same_lambda[-1][i], theirs[i]) > 1e-4


def test_optax_decay_offset_gives_nan_from_the_first_step(jax_x64):
    """optax bug (survey #13, optax PR #1791 open): decay_offset > 0 takes (t - offset)^-0.8 of a negative
    number on a fresh state, so the very first update is NaN. optbook has no offset to get wrong."""
    import jax.numpy as jnp
    import optax

    tx = optax.adafactor(learning_rate=0.01, min_dim_size_to_factor=1, decay_offset=5)
    x = jnp.ones((4, 3))
    updates, _ = tx.update(jnp.ones((4, 3)), tx.init(x), x)
    assert bool(jnp.isnan(updates).all())


# --------------------------------------------------------------------------- properties


@settings(max_examples=15, deadline=None)
@given(
    shape=st.sampled_from([(6,), (4, 5), (2, 3, 4), ()]),
    factor=st.floats(1e-6, 1e6),
    seed=st.integers(0, 2**16),
)
def test_trajectory_is_invariant_to_the_gradient_scale(shape, factor, seed):
    """U_t = G_t / sqrt(V_hat_t) does not change under G -> c G, so neither does the trajectory.

    Only eps1 = 1e-30 breaks the invariance, at relative size eps1 / G^2,
    far below float64 rounding here.
    """
    grads = gradient_sequence(shape, 8, seed=seed)
    x0 = initial_point(shape, seed=seed + 1)
    base, *_ = run_optimizer(lambda ps: Adafactor(ps), [x0], [grads])
    scaled, *_ = run_optimizer(lambda ps: Adafactor(ps), [x0], [[g * factor for g in grads]])
    assert max_rel_diff(scaled[-1][0], base[-1][0]) <= 1e-10


@settings(max_examples=15, deadline=None)
@given(
    shape=st.sampled_from([(), (6,), (4, 5), (2, 3, 4)]),
    d=st.sampled_from([0.25, 1.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_clipped_update_has_rms_at_most_d(shape, d, seed):
    """RMS(U_hat_t) <= d: every step has RMS(X_t - X_{t-1}) <= alpha_t d, with equality when it clips."""
    grads = gradient_sequence(shape, 10, seed=seed)
    p = torch.nn.Parameter(initial_point(shape, seed=seed + 1))
    opt = Adafactor([p], d=d)
    clipped = 0
    for t, g in enumerate(grads, start=1):
        x_prev = p.detach().clone()
        alpha = max(1e-3, ref.rms(x_prev.numpy())) * ref.relative_step_size(t)
        p.grad = g
        opt.step()
        step_rms = ref.rms((p.detach() - x_prev).numpy())
        assert step_rms <= alpha * d * (1 + 1e-12)
        clipped += step_rms > alpha * d * (1 - 1e-12)
    if d <= 1.0:
        # RMS(U_1) = 1 for a vector and the 300x spike lifts it above 1 later,
        # so a threshold of at most 1 binds at least once.
        assert clipped >= 1


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 6),
    batch=st.sampled_from([(), (2,)]),
    scales=st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_factored_estimate_is_exact_for_rank_one_squared_gradients(n, m, batch, scales, seed):
    """If every G_t^2 is c_t a b^T (one rank-one pattern), R_t C_t / 1^T R_t equals the full EMA of G_t^2.

    Checked from the optimizer's own R and C against the unfactored EMA
    computed directly (with eps1 = 1e-30 negligible against these G^2).
    """
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(batch + (n, 1), dtype=F64, generator=gen) + 0.1
    b = torch.rand(batch + (1, m), dtype=F64, generator=gen) + 0.1
    signs = torch.randint(0, 2, batch + (n, m), generator=gen).to(F64) * 2 - 1
    p = torch.nn.Parameter(torch.zeros(batch + (n, m), dtype=F64))
    opt = Adafactor([p])
    v = torch.zeros(batch + (n, m), dtype=F64)
    for t, c in enumerate(scales, start=1):
        g = signs * (c * a * b).sqrt()
        p.grad = g
        opt.step()
        w = t**-0.8
        v = (1 - w) * v + w * g * g
        state = opt.state[p]
        v_hat = state["R"].unsqueeze(-1) * state["C"].unsqueeze(-2) / state["R"].sum(-1, keepdim=True).unsqueeze(-1)
        assert max_rel_diff(v_hat, v) <= 1e-12


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
    beta1=st.sampled_from([None, 0.9]),
    factor_dims=st.sampled_from(["last_two", "two_largest"]),
)
def test_state_size_is_n_plus_m_per_matrix(shape, beta1, factor_dims):
    """The statistics a real step allocates are adafactor_state_numbers(shape): n + m per n x m matrix
    (b (n + m) for a batch of b), the full size for a vector or scalar, plus the full size with beta1."""
    p = torch.nn.Parameter(torch.zeros(shape))
    opt = Adafactor([p], beta1=beta1, factor_dims=factor_dims)
    p.grad = torch.ones(shape)
    opt.step()
    got = sum(v.numel() for k, v in opt.state[p].items() if k not in ("step", "nonfinite_skips"))
    assert got == adafactor_state_numbers(shape, beta1=beta1 is not None, factor_dims=factor_dims)
    if len(shape) == 2:
        n, m = shape
        assert got == n + m + (n * m if beta1 else 0)
    if len(shape) < 2:
        assert got == math.prod(shape) * (2 if beta1 else 1)
