"""``optbook.Adafactor``: the algorithm against the NumPy reference, its options, state, precision and bad input.

The oracle is :mod:`optbook.reference.adafactor` (independent NumPy code, one
function per formula), extended below by :func:`reference_run` with the
options the paper does not have (momentum, weight decay, an absolute step
size, maximize), written from the class docstring's equations with the
reference's own functions. Comparisons run in float64, so anything above
rounding (about 1e-16 per step) is a difference in the algorithm; the
tolerance 1e-12 is far below the 1e-3 that a wrong formula produces.
Cross-checks against upstream implementations are in
``tests/test_adafactor_crosscheck.py``; memory, model shapes and the
benchmark in ``tests/test_adafactor_memory.py``.
"""

from __future__ import annotations

import copy
import inspect
import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optbook
from optbook import Adafactor
from optbook.optim import adafactor as A
from optbook.reference import adafactor as ref

F64 = torch.float64
# Vectors, a scalar, both orientations of a matrix, batches of matrices (3-D
# and a conv-shaped 4-D) and the two degenerate matrices whose factorisation is exact.
SHAPES = [(7,), (), (5, 3), (3, 5), (2, 4, 3), (4, 2, 3, 3), (1, 6), (6, 1)]
STEPS = 20


# --------------------------------------------------------------------------- helpers


def gradient_sequence(shape, steps=STEPS, seed=0, dtype=F64):
    """Gradients whose scale wanders over three decades, with a 300x spike.

    The spike makes RMS(U_t) exceed d, so update clipping is exercised; the
    wandering scale keeps R_t and C_t from settling.
    """
    gen = torch.Generator().manual_seed(seed)
    grads = []
    for k in range(steps):
        scale = 10.0 ** float(torch.empty((), dtype=F64).uniform_(-2, 1, generator=gen))
        if k == steps // 2:
            scale *= 300.0
        grads.append((torch.randn(shape, dtype=F64, generator=gen) * scale).to(dtype))
    return grads


def initial_point(shape, seed=1, dtype=F64):
    return torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(seed)).to(dtype)


def run_optimizer(make, x0s, grad_seqs, *, scheduler=None, between=None):
    """Step an optimizer over fixed gradient sequences; return per-step snapshots of every parameter."""
    params = [torch.nn.Parameter(x0.clone()) for x0 in x0s]
    opt = make(params)
    sched = scheduler(opt) if scheduler else None
    history = []
    for k in range(len(grad_seqs[0])):
        for p, seq in zip(params, grad_seqs):
            p.grad = None if seq[k] is None else seq[k].clone()
        opt.step()
        if sched:
            sched.step()
        if between:
            between(k, opt, params)
        history.append([p.detach().clone() for p in params])
    return history, opt, params


def max_rel_diff(a, b):
    a, b = torch.as_tensor(np.asarray(a), dtype=F64), torch.as_tensor(np.asarray(b), dtype=F64)
    if b.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-300)).item()


def snapshot(opt, params):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict())


def assert_unchanged(before, opt, params):
    old_params, old_state = before
    for p, old in zip(params, old_params):
        assert torch.equal(p.detach(), old), "a refused call changed a parameter"
    assert_equal_nested(opt.state_dict(), old_state)


def assert_equal_nested(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_equal_nested(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_nested(x, y)
    elif torch.is_tensor(a):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and torch.equal(a, b)
    else:
        assert a == b or (a != a and b != b)


def reference_run(x0, grads, *, lr=1e-2, beta2_decay=-0.8, eps=(1e-30, 1e-3), d=1.0, weight_decay=0.0,
                  beta1=None, relative_step=True, scale_parameter=True, maximize=False, lrs=None, states=None):
    """The class docstring's iteration in NumPy, from the reference's functions; returns every X_t.

    ``grads[k] = None`` skips the parameter at step k (its t does not advance);
    ``lrs[k]`` overrides lr at step k (a scheduler).
    """
    x = np.array(x0, dtype=float, copy=True)
    state = ref.AdafactorState()
    m = np.zeros_like(x)
    eps1, eps2 = eps
    out = []
    for k, g in enumerate(grads):
        if g is None:
            out.append(x.copy())
            continue
        g = np.asarray(g, dtype=float)
        g = -g if maximize else g
        gamma = lr if lrs is None else lrs[k]
        t = state.t + 1
        rho = ref.relative_step_size(t, gamma) if relative_step else gamma
        alpha = ref.step_size(x, rho, eps2) if scale_parameter else rho
        beta2hat = ref.second_moment_decay(t, -beta2_decay)
        if x.ndim >= 2:
            state.r = ref.row_statistic(state.r, g, beta2hat, eps1)
            state.c = ref.column_statistic(state.c, g, beta2hat, eps1)
            v = ref.factored_second_moment(state.r, state.c)
        else:
            state.v = v = ref.second_moment_vector(state.v, g, beta2hat, eps1)
        u_hat = ref.clipped_update(ref.normalized_update(g, v), d)
        step = alpha * u_hat
        if beta1:
            m = beta1 * m + (1 - beta1) * step
            step = m
        x = (1 - gamma * weight_decay) * x - step
        state.t = t
        out.append(x.copy())
    if states is not None:
        states.append(state)
    return out


def assert_matches_reference(history, x0s, grad_seqs, rtol=1e-12, **options):
    for i, (x0, seq) in enumerate(zip(x0s, grad_seqs)):
        expected = reference_run(x0.double().numpy(), [None if g is None else g.double().numpy() for g in seq],
                                 **options)
        assert not torch.equal(history[-1][i], x0) or x0.numel() == 0, f"parameter {i} never moved"
        for k, x in enumerate(expected):
            err = max_rel_diff(history[k][i], x)
            assert err <= rtol, f"parameter {i} {tuple(x0.shape)} at step {k + 1}: {err:.2e} (options {options})"


@pytest.fixture(params=["one-slab", "many-slabs"])
def slabs(request, monkeypatch):
    """Run a test with the CPU slab size as shipped, and with slabs of 8 entries (several per small matrix)."""
    if request.param == "many-slabs":
        monkeypatch.setattr(A, "_CPU_CHUNK", 8)
    return request.param


# --------------------------------------------------------------------------- API


def test_public_api_and_signature():
    assert optbook.Adafactor is optbook.optim.Adafactor is Adafactor
    assert issubclass(Adafactor, torch.optim.Optimizer)
    sig = inspect.signature(Adafactor.__init__)
    P = inspect.Parameter
    expected = [
        ("lr", 1e-2, P.POSITIONAL_OR_KEYWORD), ("beta2_decay", -0.8, P.POSITIONAL_OR_KEYWORD),
        ("eps", (1e-30, 1e-3), P.POSITIONAL_OR_KEYWORD), ("d", 1.0, P.POSITIONAL_OR_KEYWORD),
        ("weight_decay", 0.0, P.POSITIONAL_OR_KEYWORD), ("beta1", None, P.KEYWORD_ONLY),
        ("relative_step", True, P.KEYWORD_ONLY), ("scale_parameter", True, P.KEYWORD_ONLY),
        ("factor_dims", "last_two", P.KEYWORD_ONLY), ("foreach", None, P.KEYWORD_ONLY),
        ("maximize", False, P.KEYWORD_ONLY), ("stochastic_rounding", False, P.KEYWORD_ONLY),
        ("fused", None, P.KEYWORD_ONLY), ("capturable", False, P.KEYWORD_ONLY),
    ]
    got = [(p.name, p.default, p.kind) for p in list(sig.parameters.values())[2:]]
    assert got == expected


def test_torch_calls_carry_over_by_changing_the_import():
    """Every argument of torch.optim.Adafactor exists here, with the same name, position and kind."""
    theirs = list(inspect.signature(torch.optim.Adafactor.__init__).parameters.values())
    ours = inspect.signature(Adafactor.__init__).parameters
    ours_list = list(ours.values())
    for i, p in enumerate(theirs):
        assert p.name in ours, p.name
        assert ours[p.name].kind == p.kind, p.name
        if p.kind == p.POSITIONAL_OR_KEYWORD:
            assert ours_list[i].name == p.name
    p, q = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(3, 2))
    ours_opt = Adafactor([p], 1e-2, -0.8, (1e-30, 1e-3), 1.0, 0.0, foreach=False, maximize=False)
    theirs_opt = torch.optim.Adafactor([q], 1e-2, -0.8, (1e-30, 1e-3), 1.0, 0.0, foreach=False, maximize=False)
    p.grad, q.grad = torch.full((3, 2), 0.5), torch.full((3, 2), 0.5)
    ours_opt.step()
    theirs_opt.step()
    assert torch.allclose(p, q, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------- the paper's algorithm


@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
def test_matches_numpy_reference_trajectory_and_state(foreach, slabs):
    """Same X_t, R_t, C_t (the paper's sums) and V_t as optbook.reference.adafactor at every step.

    Two of each shape, so the batched path stacks them; the reference
    history shows clipping active on some steps and not on others.
    """
    shapes = SHAPES + SHAPES
    grads = [gradient_sequence(s, seed=i) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=40 + i) for i, s in enumerate(shapes)]
    params = [torch.nn.Parameter(x.clone()) for x in x0s]
    opt = Adafactor(params, foreach=foreach)
    states = [ref.AdafactorState() for _ in shapes]
    xs = [x.numpy().copy() for x in x0s]
    clipped = []
    for k in range(STEPS):
        for i, p in enumerate(params):
            p.grad = grads[i][k].clone()
            xs[i] = np.asarray(ref.step(xs[i], grads[i][k].numpy(), states[i], record=True), dtype=float)
        opt.step()
        clipped.append(ref.rms(states[0].history[-1]["U"]) > 1)
        for i, p in enumerate(params):
            state, record = opt.state[p], states[i].history[-1]
            assert max_rel_diff(p.detach(), xs[i]) <= 1e-12, (shapes[i], k)
            assert state["step"].item() == record["t"]
            if len(shapes[i]) >= 2:
                assert max_rel_diff(state["R"], record["R"]) <= 1e-12
                assert max_rel_diff(state["C"], record["C"]) <= 1e-12
            else:
                assert max_rel_diff(state["V"], record["V"]) <= 1e-12
    assert any(clipped) and not all(clipped)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    log_grad_scale=st.floats(-6, 4),
    x0_scale=st.sampled_from([0.0, 1e-4, 1.0, 50.0]),
    lr=st.sampled_from([1e-2, 3e-3, 0.5]),
    beta2_decay=st.floats(-1.0, -0.1),
    eps2=st.sampled_from([1e-3, 1e-6, 0.5]),
    d=st.sampled_from([0.3, 1.0, 2.0, float("inf")]),
    seed=st.integers(0, 2**16),
)
def test_matches_numpy_reference_for_any_hyperparameters(
    shape, log_grad_scale, x0_scale, lr, beta2_decay, eps2, d, seed
):
    """Any shape, gradient scale, starting point (including all zeros) and hyperparameters."""
    hp = ref.AdafactorHyperparameters(rho_cap=lr, decay_exponent=-beta2_decay, eps2=eps2, d=d)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, dtype=F64, generator=gen) * x0_scale
    p = torch.nn.Parameter(x0.clone())
    opt = Adafactor([p], lr=lr, beta2_decay=beta2_decay, eps=(1e-30, eps2), d=d)
    ref_state, x = ref.AdafactorState(), x0.numpy().copy()
    for _ in range(6):
        g = torch.randn(shape, dtype=F64, generator=gen) * 10.0**log_grad_scale
        p.grad = g
        opt.step()
        x = np.asarray(ref.step(x, g.numpy(), ref_state, hp), dtype=float)
    # Relative to the larger of the result and the total displacement, so
    # that a zero start (where X_t is tiny) is judged by how far it moved.
    scale = max(np.abs(x).max(initial=0.0), np.abs(x - x0.numpy()).max(initial=0.0))
    assert np.abs(p.detach().numpy() - x).max(initial=0.0) <= 1e-11 * scale


OPTIONS = [
    {"beta1": 0.9},
    {"weight_decay": 0.3},
    {"relative_step": False, "lr": 3e-3},
    {"relative_step": False, "scale_parameter": False, "lr": 3e-3},
    {"scale_parameter": False},
    {"maximize": True},
    {"beta1": 0.5, "maximize": True, "weight_decay": 0.1, "d": 0.5},
    {"beta2_decay": -1.0, "eps": (1e-20, 1e-2)},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
def test_options_match_the_extended_reference(options, foreach, slabs):
    """Momentum, weight decay, absolute step sizes, maximize: each is the docstring's equation."""
    shapes = [(5, 3), (5, 3), (4,), (2, 3, 4), ()]
    grads = [gradient_sequence(s, 12, seed=60 + i) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=70 + i) for i, s in enumerate(shapes)]
    history, *_ = run_optimizer(lambda ps: Adafactor(ps, foreach=foreach, **options), x0s, grads)
    assert_matches_reference(history, x0s, grads, **options)


@pytest.mark.parametrize(
    "shape, dims",
    [((5, 2, 3), (0, 2)), ((6, 4, 3, 3), (0, 1)), ((3, 4, 4), (1, 2)), ((2, 7, 1, 5), (1, 3)), ((4, 6), (0, 1))],
    ids=str,
)
def test_two_largest_factors_the_two_largest_dims(shape, dims):
    """factor_dims="two_largest" is the reference run with those two dims moved last (ties: the later dim).

    R is the shape without the second factored dim, C without the first.
    """
    grads = gradient_sequence(shape, 10, seed=3)
    x0 = initial_point(shape, seed=4)
    history, opt, (p,) = run_optimizer(lambda ps: Adafactor(ps, factor_dims="two_largest"), [x0], [grads])
    i, j = dims
    rest = [k for k in range(len(shape)) if k not in dims]

    def moved(t):
        return np.moveaxis(t.numpy(), [i, j], [-2, -1]).reshape([shape[k] for k in rest] + [shape[i], shape[j]])

    states = []
    expected = reference_run(moved(x0), [moved(g) for g in grads], states=states)
    for k, x in enumerate(expected):
        assert max_rel_diff(moved(history[k][0]), x) <= 1e-12
    state = opt.state[p]
    assert tuple(state["R"].shape) == shape[:j] + shape[j + 1:]
    assert tuple(state["C"].shape) == shape[:i] + shape[i + 1:]
    assert max_rel_diff(np.moveaxis(state["R"].numpy(), i, -1), states[0].r) <= 1e-12
    if len(shape) == 2:
        last_two, *_ = run_optimizer(lambda ps: Adafactor(ps), [x0], [grads])
        assert all(torch.equal(a[0], b[0]) for a, b in zip(history, last_two))


def test_beta1_none_or_zero_keeps_no_momentum_buffer():
    shapes = [(4, 3), (5,)]
    grads = [gradient_sequence(s, 6, seed=i) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=9 + i) for i, s in enumerate(shapes)]
    none, opt_none, ps = run_optimizer(lambda ps: Adafactor(ps), x0s, grads)
    zero, opt_zero, qs = run_optimizer(lambda ps: Adafactor(ps, beta1=0.0), x0s, grads)
    assert all(torch.equal(a, b) for a, b in zip(none[-1], zero[-1]))
    assert all("exp_avg" not in opt_zero.state[q] for q in qs)
    _, opt_m, ms = run_optimizer(lambda ps: Adafactor(ps, beta1=0.9), x0s, grads)
    for m in ms:
        buf = opt_m.state[m]["exp_avg"]
        assert buf.shape == m.shape and buf.dtype == m.dtype


@pytest.mark.parametrize("beta1", [None, 0.9])
def test_maximize_is_descent_on_the_negated_gradient_and_leaves_grad_alone(beta1):
    shape = (4, 3)
    grads, x0 = gradient_sequence(shape, 8), initial_point(shape)
    up, _, (p,) = run_optimizer(lambda ps: Adafactor(ps, maximize=True, beta1=beta1), [x0], [grads])
    down, *_ = run_optimizer(lambda ps: Adafactor(ps, beta1=beta1), [x0], [[-g for g in grads]])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(up, down))
    assert torch.equal(p.grad, grads[-1])


def test_param_groups_use_their_own_options():
    """Two groups with different options step exactly like two separate optimizers."""
    shapes = [(4, 3), (2, 3, 4)]
    grads = [gradient_sequence(s, 6, seed=i) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=20 + i) for i, s in enumerate(shapes)]
    second = {"lr": 3e-3, "beta1": 0.8, "factor_dims": "two_largest", "weight_decay": 0.2, "relative_step": False}

    def make(ps):
        return Adafactor([{"params": [ps[0]]}, {"params": [ps[1]], **second}], d=2.0)

    together, *_ = run_optimizer(make, x0s, grads)
    first, *_ = run_optimizer(lambda ps: Adafactor(ps, d=2.0), x0s[:1], grads[:1])
    alone, *_ = run_optimizer(lambda ps: Adafactor(ps, d=2.0, **second), x0s[1:], grads[1:])
    assert torch.equal(together[-1][0], first[-1][0]) and torch.equal(together[-1][1], alone[-1][0])


def test_closure_is_called_and_training_converges():
    """The closure's loss is returned, and a noisy least-squares problem is solved to its noise floor."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=gen)
    w_true = torch.randn(8, 1, generator=gen)
    y = a @ w_true + 0.01 * torch.randn(64, 1, generator=gen)
    w = torch.nn.Parameter(torch.zeros(8, 1))
    # Adafactor's steps have RMS about lr whatever the gradient, so reaching
    # the noise floor needs a decaying lr; a scheduler provides it.
    opt = Adafactor([w], lr=0.1, relative_step=False, scale_parameter=False)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.98)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = ((a @ w - y) ** 2).mean()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(300):
        sched.step()
        last = opt.step(closure).item()
    noise_floor = ((a @ torch.linalg.lstsq(a, y).solution - y) ** 2).mean().item()
    assert len(calls) == 301 and first > 1.0 and last < 2 * noise_floor


@pytest.mark.parametrize("relative_step", [True, False])
def test_scheduler_changes_lr_and_the_optimizer_never_writes_it(relative_step):
    """A LambdaLR schedule is read at every step (as the cap of rho_t, or as rho_t itself) and never overwritten."""
    shapes = [(4, 3), (5,)]
    grads = [gradient_sequence(s, 12, seed=i) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=30 + i) for i, s in enumerate(shapes)]
    factors = [1.0 if k < 4 else 0.3 / (1 + k) for k in range(12)]
    seen = []

    def record(k, opt, params):
        seen.append(opt.param_groups[0]["lr"])

    history, *_ = run_optimizer(
        lambda ps: Adafactor(ps, lr=0.05, relative_step=relative_step),
        x0s, grads,
        scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda k: factors[k] if k < 12 else 1.0),
        between=record,
    )
    lrs = [0.05 * f for f in factors]
    assert seen == pytest.approx(lrs[1:] + [0.05], rel=1e-15)
    assert_matches_reference(history, x0s, grads, lr=0.05, lrs=lrs, relative_step=relative_step)


def test_parameters_without_gradient_keep_their_own_clock():
    """A parameter whose grad is None is skipped and its t does not advance: the same as running it alone."""
    ga, gb = gradient_sequence((4, 3), 12, seed=5), gradient_sequence((3,), 12, seed=6)
    gb = [None if k in (2, 3, 4, 7) else g for k, g in enumerate(gb)]
    x0s = [initial_point((4, 3), seed=7), initial_point((3,), seed=8)]
    for foreach in (False, True):
        ours, opt, params = run_optimizer(lambda ps: Adafactor(ps, foreach=foreach), x0s, [ga, gb])
        alone, *_ = run_optimizer(lambda ps: Adafactor(ps), x0s[1:], [[g for g in gb if g is not None]])
        assert opt.state[params[1]]["step"].item() == 8 and opt.state[params[0]]["step"].item() == 12
        assert torch.equal(ours[-1][1], alone[-1][0])
        assert_matches_reference(ours, x0s, [ga, gb])


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_parameters_follow_float32_rounded_once_per_step(dtype, slabs):
    """A bf16/fp16 parameter is updated in float32 with float32 state and rounded to its dtype after each step.

    So it must match, bit for bit, a float32 parameter that is rounded to
    ``dtype`` and back after every step. Its state stays float32.
    """
    shapes = [(6, 5), (7,), (2, 3, 4)]
    grads = [gradient_sequence(s, 10, seed=i, dtype=dtype) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=3 + i, dtype=dtype) for i, s in enumerate(shapes)]
    for options in ({}, {"beta1": 0.9, "weight_decay": 0.1}):
        low = [torch.nn.Parameter(x.clone()) for x in x0s]
        sim = [torch.nn.Parameter(x.float()) for x in x0s]
        opt_low, opt_sim = Adafactor(low, **options), Adafactor(sim, **options)
        for k in range(10):
            for a, b, seq in zip(low, sim, grads):
                a.grad, b.grad = seq[k].clone(), seq[k].float()
            opt_low.step()
            opt_sim.step()
            with torch.no_grad():
                for b in sim:
                    b.copy_(b.to(dtype).float())
            for a, b in zip(low, sim):
                assert a.dtype == dtype and torch.equal(a.detach().float(), b.detach())
        assert all(not torch.equal(a.detach(), x) for a, x in zip(low, x0s))
        assert all(
            t.dtype == torch.float32 for p in low for n, t in opt_low.state[p].items() if n != "nonfinite_skips"
        )


def test_mixed_dtypes_in_one_group_match_separate_optimizers():
    """Each parameter uses its own dtype; nothing (such as torch's eps1 default) leaks from the first one."""
    shapes_dtypes = [((5,), torch.bfloat16), ((4, 3), torch.float32), ((4, 3), F64), ((4, 3), torch.float16)]
    grads = [gradient_sequence(s, 8, seed=i, dtype=dt) for i, (s, dt) in enumerate(shapes_dtypes)]
    x0s = [initial_point(s, seed=20 + i, dtype=dt) for i, (s, dt) in enumerate(shapes_dtypes)]
    for foreach in (False, True):
        together, *_ = run_optimizer(lambda ps: Adafactor(ps, foreach=foreach), x0s, grads)
        for i in range(len(x0s)):
            alone, *_ = run_optimizer(lambda ps: Adafactor(ps, foreach=foreach), [x0s[i]], [grads[i]])
            assert torch.equal(together[-1][i], alone[-1][0])
            assert not torch.equal(together[-1][i], x0s[i])


# --------------------------------------------------------------------------- stochastic rounding


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 0.5, 0.9])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_stochastic_rounding_is_unbiased(fraction, sign):
    """E[round(x)] = x: x lies `fraction` of an ulp above a bfloat16 number; the mean of 200k draws.

    Each draw is the lower or upper neighbour; the mean's standard error is
    ulp * sqrt(f (1 - f) / N), and the test allows 5 of them. A value already
    in bfloat16 (fraction 0) never moves.
    """
    base = torch.tensor(1.3125 * sign)  # exactly representable in bfloat16
    ulp = 2.0**-7
    x = torch.full((200_000,), float(base) + sign * fraction * ulp, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    rounded = A._stochastic_round_to_bfloat16(x, gen)
    assert torch.equal(rounded.to(torch.bfloat16).float(), rounded)  # representable
    values = set(rounded.unique().tolist())
    assert values <= {float(base), float(base) + sign * ulp}
    if fraction == 0.0:
        assert values == {float(base)}
        return
    err = abs(rounded.double().mean().item() - x[0].double().item())
    assert err <= 5 * ulp * (fraction * (1 - fraction) / x.numel()) ** 0.5


def test_stochastic_rounding_keeps_small_updates_on_average():
    """Steps of 1e-4 on bfloat16 ones, far below half an ulp (2^-9): rounding to nearest loses every one.

    With a constant gradient U_t = 1 exactly, so with an absolute step size
    each step subtracts lr. After 20 steps the mean over 4096 entries must be
    1 - 20 lr; its standard error is below 5e-5 (each step's rounding error
    has variance below ulp^2 f with f = lr/ulp), and the test allows 3e-4,
    while the steps move it by 2e-3.
    """
    lr, steps = 1e-4, 20

    def run(stochastic):
        p = torch.nn.Parameter(torch.ones(64, 64, dtype=torch.bfloat16))
        opt = Adafactor([p], lr=lr, relative_step=False, scale_parameter=False, stochastic_rounding=stochastic)
        opt.generator = torch.Generator().manual_seed(1)
        for _ in range(steps):
            p.grad = torch.full_like(p, 0.25)
            opt.step()
        return p.detach().double()

    assert torch.equal(run(False), torch.ones(64, 64, dtype=F64))
    sr = run(True)
    assert abs(sr.mean().item() - (1 - steps * lr)) < 3e-4
    assert sr.min() < 1 and sr.max() == 1  # entries moved by whole ulps, in the right direction


def test_stochastic_rounding_draws_from_the_optimizer_generator_or_torch_default():
    shape = (32, 16)
    grads = gradient_sequence(shape, 4, seed=2, dtype=torch.bfloat16)
    x0 = initial_point(shape, dtype=torch.bfloat16)

    def run(seed=None, default_seed=None):
        if default_seed is not None:
            torch.manual_seed(default_seed)

        def make(ps):
            opt = Adafactor(ps, stochastic_rounding=True)
            if seed is not None:
                opt.generator = torch.Generator().manual_seed(seed)
            return opt

        return run_optimizer(make, [x0], [grads])[0][-1][0]

    assert torch.equal(run(seed=3), run(seed=3))
    assert not torch.equal(run(seed=3), run(seed=4))
    assert torch.equal(run(default_seed=5), run(default_seed=5))
    # Stochastic and nearest rounding differ, but only by whole bf16 ulps of the float32 result.
    nearest = run_optimizer(lambda ps: Adafactor(ps), [x0], [grads])[0][-1][0]
    assert not torch.equal(run(seed=3), nearest)


# --------------------------------------------------------------------------- state


def _checkpoint_case(dtype, foreach, stochastic):
    shapes = [(4, 3), (5,), (2, 3, 4), ()]
    grads = [gradient_sequence(s, 10, seed=i, dtype=dtype) for i, s in enumerate(shapes)]
    grads[1] = [None if k in (3, 6) else g for k, g in enumerate(grads[1])]  # a parameter that skips steps
    x0s = [initial_point(s, seed=30 + i, dtype=dtype) for i, s in enumerate(shapes)]

    def make(ps):
        opt = Adafactor(
            [{"params": ps[:2], "beta1": 0.9}, {"params": ps[2:], "factor_dims": "two_largest", "lr": 3e-3}],
            weight_decay=0.1, foreach=foreach, stochastic_rounding=stochastic,
        )
        opt.generator = torch.Generator().manual_seed(7)
        return opt

    return shapes, grads, x0s, make


@pytest.mark.parametrize(
    "dtype, foreach, stochastic",
    [(F64, False, False), (F64, True, False), (torch.float32, False, False), (torch.bfloat16, False, False),
     (torch.bfloat16, True, True)],
)
def test_resumed_training_follows_the_uninterrupted_trajectory_bit_for_bit(dtype, foreach, stochastic):
    """Save after 5 steps (through torch.save, as a checkpoint), rebuild model and optimizer, load, 5 more steps.

    Identical to 10 uninterrupted steps. For bfloat16 this also checks that
    loading keeps the float32 statistics (torch's loader alone would cast
    them to bfloat16). Stochastic rounding also needs the generator's state,
    which a checkpoint saves next to the optimizer's.
    """
    shapes, grads, x0s, make = _checkpoint_case(dtype, foreach, stochastic)
    straight, *_ = run_optimizer(make, x0s, grads)
    first, opt, params = run_optimizer(make, x0s, [g[:5] for g in grads])
    buffer = io.BytesIO()
    torch.save({"model": [p.detach() for p in params], "optim": opt.state_dict(),
                "generator": opt.generator.get_state()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = [torch.nn.Parameter(torch.zeros_like(x)) for x in x0s]
    with torch.no_grad():
        for p, x in zip(resumed, saved["model"]):
            p.copy_(x)
    opt2 = make(resumed)
    opt2.load_state_dict(saved["optim"])
    opt2.generator.set_state(saved["generator"])
    assert_equal_nested(opt2.state_dict(), opt.state_dict())
    for k in range(5, 10):
        for p, seq in zip(resumed, grads):
            p.grad = None if seq[k] is None else seq[k].clone()
        opt2.step()
    for p, expected in zip(resumed, straight[-1]):
        assert torch.equal(p.detach(), expected)
    stats = F64 if dtype == F64 else torch.float32
    for p in resumed:
        assert all(v.dtype == stats for n, v in opt2.state[p].items() if n not in ("step", "nonfinite_skips"))


def test_state_layout_is_documented():
    """Keys, shapes, dtypes and devices of the state, as the module docstring lists them."""
    params = [torch.nn.Parameter(torch.zeros(s, dtype=dt)) for s, dt in
              [((6, 4), F64), ((3, 6, 4), torch.bfloat16), ((5,), torch.float32), ((), torch.float16)]]
    opt = Adafactor(params, beta1=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    expected = {
        0: {"R": (6,), "C": (4,)}, 1: {"R": (3, 6), "C": (3, 4)}, 2: {"V": (5,)}, 3: {"V": ()},
    }
    for i, p in enumerate(params):
        state = opt.state[p]
        assert list(state) == ["step", *expected[i], "exp_avg", "nonfinite_skips"]
        stats = torch.float32 if p.dtype in (torch.bfloat16, torch.float16) else p.dtype
        for name, shape in expected[i].items():
            assert tuple(state[name].shape) == shape and state[name].dtype == stats
        assert state["exp_avg"].shape == p.shape and state["exp_avg"].dtype == stats
        assert state["step"].dtype == torch.float32 and state["step"].shape == () and state["step"].item() == 1
        assert state["nonfinite_skips"].dtype == torch.int64 and state["nonfinite_skips"].item() == 0


# --------------------------------------------------------------------------- non-finite gradients, zeros


@pytest.mark.parametrize(
    "dtype, options",
    [(F64, {}), (torch.float32, {"foreach": True}), (torch.float32, {"beta1": 0.9, "weight_decay": 0.1}),
     (torch.bfloat16, {"stochastic_rounding": True, "foreach": True})],
    ids=["f64", "f32-foreach", "f32-momentum-decay", "bf16-stochastic"],
)
def test_nonfinite_gradient_skips_that_tensor_and_never_poisons_the_statistics(dtype, options):
    """NaN, inf, and squares that overflow: that tensor is skipped on the device, the others step.

    The skipped tensors keep their values and every statistic bit for bit,
    their t advances and nonfinite_skips counts the skip. Later finite steps
    continue from clean statistics: the reference with that step's update
    left out (t advanced) agrees, and nothing is NaN.
    """
    shapes = [(5, 4), (6,), (3, 4), (2, 3)]
    big = 1e200 if dtype == F64 else 1e20  # finite, but its square overflows the statistics dtype
    grads = [gradient_sequence(s, 6, seed=80 + i, dtype=dtype) for i, s in enumerate(shapes)]
    grads[0][2] = grads[0][2].clone()
    grads[0][2][1, 2] = float("nan")
    grads[1][2] = grads[1][2].clone()
    grads[1][2][3] = float("-inf")
    grads[2][2] = grads[2][2].clone()
    grads[2][2][0, 0] = big
    x0s = [initial_point(s, seed=90 + i, dtype=dtype) for i, s in enumerate(shapes)]
    snapshots = []

    def keep(k, opt, params):
        snapshots.append([copy.deepcopy(opt.state[p]) for p in params])

    history, opt, params = run_optimizer(lambda ps: Adafactor(ps, **options), x0s, grads, between=keep)
    for i in range(3):  # the poisoned ones
        assert torch.equal(history[2][i], history[1][i])
        before, after = snapshots[1][i], snapshots[2][i]
        for name in before:
            if name == "step":
                assert after[name].item() == before[name].item() + 1
            elif name == "nonfinite_skips":
                assert after[name].item() == 1
            else:
                assert torch.equal(after[name], before[name]), name
    assert not torch.equal(history[2][3], history[1][3])  # the clean one moved
    assert opt.state[params[3]]["nonfinite_skips"].item() == 0
    for p in params:
        assert torch.isfinite(p).all()
        assert all(torch.isfinite(v).all() for v in opt.state[p].values())
    if dtype == F64:
        # Reference: the skipped step advances t but leaves X and the statistics alone.
        for i, (x0, seq) in enumerate(zip(x0s, grads)):
            opts = {k: v for k, v in options.items() if k != "foreach"}
            first = reference_run(x0.numpy(), [g.numpy() for g in seq[:2]], **opts)
            state = []
            reference_run(x0.numpy(), [g.numpy() for g in seq[:2]], states=state, **opts)
            if i < 3:
                st_ = state[0]
                st_.t += 1  # the skipped step
                x = first[-1]
                for k in range(3, 6):
                    x = np.asarray(ref.step(x, seq[k].numpy(), st_), dtype=float)
                assert max_rel_diff(history[-1][i], x) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16, torch.float16])
def test_zero_gradients_stay_finite_and_do_not_move(dtype):
    """All-zero gradients, and zero rows and columns, give finite state and no movement where G = 0.

    eps1 is added to G^2 before any average, so every denominator is at least
    eps1; float16 and bfloat16 parameters are computed in float32, where 1e-30
    is representable (it underflows to 0 in float16).
    """
    x0 = initial_point((5, 4), dtype=dtype)
    p, v = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(initial_point((6,), dtype=dtype))
    v0 = v.detach().clone()
    opt = Adafactor([p, v])
    p.grad, v.grad = torch.zeros_like(p), torch.zeros_like(v)
    opt.step()
    assert torch.equal(p.detach(), x0) and torch.equal(v.detach(), v0)
    g = initial_point((5, 4), seed=4, dtype=dtype)
    g[2] = 0
    g[:, 1] = 0
    p.grad = g
    opt.step()
    assert torch.isfinite(p).all()
    assert all(torch.isfinite(t).all() for t in opt.state[p].values())
    assert torch.equal(p.detach()[2], x0[2]) and torch.equal(p.detach()[:, 1], x0[:, 1])
    assert (p.detach()[[0, 1, 3, 4]][:, [0, 2, 3]] != x0[[0, 1, 3, 4]][:, [0, 2, 3]]).any()


@pytest.mark.parametrize("shape", [(8,), (6, 5)])
def test_parameter_at_zero_moves_thanks_to_eps2(shape):
    """alpha_1 = max(eps2, RMS(0)) rho_1 = 1e-3 * 1e-2 and RMS(U_1) = 1: X_1 has RMS 1e-5 exactly.

    The naive scale-by-RMS(X) rule, alpha = RMS(X) rho, would never move a
    zero parameter.
    """
    p = torch.nn.Parameter(torch.zeros(shape, dtype=F64))
    opt = Adafactor([p])
    p.grad = initial_point(shape, seed=5)
    opt.step()
    assert ref.rms(p.detach().numpy()) == pytest.approx(1e-5, rel=1e-12)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4)], ids=str)
def test_empty_parameters_are_harmless(shape):
    """Empty tensors take a step (their t advances) next to a normal parameter that still moves."""
    e = torch.nn.Parameter(torch.zeros(shape))
    w = torch.nn.Parameter(torch.ones(3))
    for foreach in (False, True):
        opt = Adafactor([e, w], foreach=foreach)
        e.grad, w.grad = torch.zeros(shape), torch.ones(3)
        before = w.detach().clone()
        opt.step()
        assert not torch.equal(w.detach(), before)
        assert opt.state[e]["step"].item() == 1
        assert all(torch.isfinite(t).all() for t in opt.state[e].values())


# --------------------------------------------------------------------------- the two paths, no host sync


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "options", [{}, {"beta1": 0.9, "weight_decay": 0.2, "maximize": True}, {"factor_dims": "two_largest", "d": 0.7}],
    ids=["defaults", "momentum-decay-maximize", "two-largest"],
)
def test_foreach_matches_single_tensor_bit_for_bit(dtype, options, slabs):
    """The batched path stacks like-shaped tensors; on a CPU it must give the very same bits.

    Shapes repeat (groups of several tensors), a parameter skips a step, and
    one gradient is poisoned so that a group holds a skipped tensor.
    """
    shapes = [(5, 3), (5, 3), (5, 3), (4,), (4,), (), (2, 3, 4), (2, 3, 4), (3, 5)]
    grads = [gradient_sequence(s, 6, seed=i, dtype=dtype) for i, s in enumerate(shapes)]
    grads[1][2] = None
    grads[2][3] = grads[2][3].clone()
    grads[2][3][0, 0] = float("nan")
    x0s = [initial_point(s, seed=50 + i, dtype=dtype) for i, s in enumerate(shapes)]
    single, opt_s, ps = run_optimizer(lambda p: Adafactor(p, foreach=False, **options), x0s, grads)
    batched, opt_b, qs = run_optimizer(lambda p: Adafactor(p, foreach=True, **options), x0s, grads)
    for a_step, b_step in zip(single, batched):
        for a, b in zip(a_step, b_step):
            assert torch.equal(a, b)
    for p, q in zip(ps, qs):
        assert_equal_nested(opt_s.state[p], opt_b.state[q])


def test_foreach_schedules_round_like_the_single_tensor_path_at_every_t():
    """t^tau is taken per tensor in the batched path too: a vectorised pow rounds differently.

    A group of 33 like-shaped tensors (a vector loop handles 8 or 16 doubles
    at a time, with AVX2 or AVX-512) at a step t where torch's vectorised
    float64 pow and its scalar pow disagree (searched for here), so that
    computing beta2hat_t for the stacked group in one pow would change bits.
    """
    tau = -0.8
    ts = torch.arange(2.0, 20000.0, dtype=F64)
    vector = ts.repeat_interleave(32).view(-1, 32).pow(tau)[:, 0]
    scalar = torch.stack([t.reshape(1).pow(tau)[0] for t in ts[:3000]])
    differ = (vector[:3000] != scalar).nonzero()
    if len(differ) == 0:
        pytest.skip("this CPU's vectorised and scalar pow agree on t < 3000; nothing to tell apart")
    t0 = float(ts[differ[0, 0]])

    def run(foreach):
        params = [torch.nn.Parameter(initial_point((4,), seed=i)) for i in range(33)]
        opt = Adafactor(params, foreach=foreach)
        for k in range(2):
            for i, p in enumerate(params):
                p.grad = initial_point((4,), seed=100 + 10 * k + i)
            opt.step()
            if k == 0:
                for p in params:
                    opt.state[p]["step"].fill_(t0 - 1)
        return [p.detach().clone() for p in params], [opt.state[p]["V"].clone() for p in params]

    (xs, vs), (ys, ws) = run(False), run(True)
    assert all(torch.equal(a, b) for a, b in zip(xs + vs, ys + ws))


def test_foreach_defaults_to_the_batched_path_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(A, "_single_tensor_adafactor", lambda *a, **k: calls.append("single"))
    monkeypatch.setattr(A, "_foreach_adafactor", lambda *a, **k: calls.append("foreach"))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    # With the CPU kernel off by default, the default eager path on CPU is the for-loop one.
    monkeypatch.setattr(A, "CPU_FUSED_DEFAULT", False)
    Adafactor([p]).step()
    Adafactor([p], foreach=True).step()
    Adafactor([p], foreach=False).step()
    assert calls == ["single", "foreach", "single"]
    # With it on (the library's default), fused=None runs the kernel, and a named foreach still wins.
    monkeypatch.setattr(A, "CPU_FUSED_DEFAULT", True)
    calls.clear()
    Adafactor([p]).step()
    Adafactor([p], foreach=True).step()
    Adafactor([p], foreach=False).step()
    assert calls == ["foreach", "single"]


@pytest.mark.parametrize("foreach", [False, True])
def test_step_never_reads_tensor_values_on_the_host(foreach, monkeypatch):
    """No .item(), no bool(tensor), no float(tensor) inside step(): on a GPU each would be a sync.

    Every way torch offers to bring a tensor's value to Python raises while
    the steps run, with every option on and a poisoned gradient.
    """
    shapes = [(6, 5), (6, 5), (4,), (), (0, 3), (2, 3, 4)]
    params = [torch.nn.Parameter(initial_point(s, seed=i)) for i, s in enumerate(shapes)]
    params.append(torch.nn.Parameter(initial_point((3, 4), dtype=torch.bfloat16)))
    opt = Adafactor(
        [{"params": params[:4], "beta1": 0.9, "weight_decay": 0.1},
         {"params": params[4:], "factor_dims": "two_largest", "maximize": True, "stochastic_rounding": True}],
        foreach=foreach,
    )
    grads = [[g.to(p.dtype) for g in gradient_sequence(p.shape, 3, seed=i)] for i, p in enumerate(params)]
    grads[0][1][0, 0] = float("nan")

    def refuse(*args, **kwargs):
        raise AssertionError("step() read a tensor value on the host")

    for k in range(3):
        for p, seq in zip(params, grads):
            p.grad = seq[k].clone()
        with monkeypatch.context() as m:
            for name in ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "__array__"):
                m.setattr(torch.Tensor, name, refuse)
            opt.step()
    assert opt.state[params[0]]["nonfinite_skips"].item() == 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"lr": -1e-2}, ValueError, "lr must be finite and >= 0"),
        ({"lr": float("nan")}, ValueError, "lr must be finite"),
        ({"lr": float("inf")}, ValueError, "lr must be finite"),
        ({"lr": "1e-2"}, TypeError, "lr must be a real number"),
        ({"lr": True}, TypeError, "lr must be a real number"),
        ({"lr": torch.tensor([1e-2, 1e-2])}, ValueError, "Tensor lr must be 1-element"),
        ({"beta2_decay": 0.8}, ValueError, r"beta2_decay must lie in \[-1, 0\).*beta2_decay=-c"),
        ({"beta2_decay": 0.0}, ValueError, r"beta2_decay must lie in \[-1, 0\)"),
        ({"beta2_decay": -1.5}, ValueError, r"beta2_decay must lie in \[-1, 0\).*freezing"),
        ({"eps": (None, 1e-3)}, ValueError, r"eps\[0\] \(eps1\) is None.*eps=\(1e-30, 1e-3\)"),
        ({"eps": (0.0, 1e-3)}, ValueError, r"eps\[0\] \(eps1\) must be finite and >= 1.18e-38"),
        ({"eps": (1e-40, 1e-3)}, ValueError, r"eps\[0\] \(eps1\)"),
        ({"eps": (float("nan"), 1e-3)}, ValueError, r"eps\[0\] \(eps1\)"),
        ({"eps": (1e-30, 0.0)}, ValueError, r"eps\[1\] \(eps2\) must be finite and > 0"),
        ({"eps": (1e-30, -1e-3)}, ValueError, r"eps\[1\] \(eps2\)"),
        ({"eps": 1e-30}, TypeError, r"eps must be a pair \(eps1, eps2\)"),
        ({"eps": (1e-30, 1e-3, 1.0)}, TypeError, "eps must be a pair"),
        ({"d": 0.0}, ValueError, r"d \(clipping threshold\) must be > 0"),
        ({"d": -1.0}, ValueError, r"d \(clipping threshold\) must be > 0"),
        ({"d": float("nan")}, ValueError, r"d \(clipping threshold\) must be > 0"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be finite and >= 0"),
        ({"lr": 0.5, "weight_decay": 2.0}, ValueError, r"lr \* weight_decay must be < 1"),
        ({"beta1": 1.0}, ValueError, r"beta1 must lie in \[0, 1\)"),
        ({"beta1": -0.1}, ValueError, r"beta1 must lie in \[0, 1\)"),
        ({"beta1": "0.9"}, TypeError, "beta1 must be a real number"),
        ({"maximize": "yes"}, TypeError, "maximize must be True or False"),
        ({"relative_step": 1}, TypeError, "relative_step must be True or False"),
        ({"scale_parameter": None}, TypeError, "scale_parameter must be True or False"),
        ({"stochastic_rounding": 1}, TypeError, "stochastic_rounding must be True or False"),
        ({"foreach": "auto"}, TypeError, "foreach must be True, False or None"),
        ({"fused": "auto"}, TypeError, "fused must be True, False or None"),
        ({"factor_dims": "largest"}, ValueError, "factor_dims must be 'last_two'.*'two_largest'"),
        ({"fused": True, "factor_dims": "two_largest"}, ValueError, "fused=True does not support factor_dims"),
        ({"fused": True, "foreach": True}, ValueError, "fused=True does not support foreach=True"),
    ],
)
def test_constructor_rejects_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        Adafactor([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_old_keywords_fail_loudly():
    """The first draft's keywords are not silently accepted: Python names the unknown argument."""
    for name, value in (("decay_exponent", 0.8), ("eps1", 1e-30), ("eps2", 1e-3)):
        with pytest.raises(TypeError, match=name):
            Adafactor([torch.nn.Parameter(torch.zeros(2))], **{name: value})


def test_accepts_edge_hyperparameters():
    """The valid boundaries: lr = 0 (a scheduler's warm-up start), beta2_decay = -1, no clipping, beta1 = 0."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = Adafactor([p], lr=0.0, beta2_decay=-1.0, d=float("inf"), beta1=0.0, eps=[1.2e-38, 1e-3])
    assert opt.defaults["eps"] == (1.2e-38, 1e-3)
    p.grad = torch.ones(3)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(3))


@pytest.mark.parametrize(
    "override, match",
    [
        ({"d": 0.0}, r"param group 1: d \(clipping threshold\)"),
        ({"lr": -1.0}, "param group 1: lr"),
        ({"decay_exponent": 0.8}, "'decay_exponent'.*beta2_decay=-0.8"),
        ({"eps1": 1e-30}, "'eps1'.*eps=\\(eps1, eps2\\)"),
        ({"decay_rate": -0.8}, "'decay_rate'.*beta2_decay"),
        ({"clip_threshold": 1.0}, "'clip_threshold'.*use d"),
        ({"betas": (0.9, 0.999)}, "'betas'.*beta1"),
        ({"beta1": 2.0}, r"param group 1: beta1 must lie in \[0, 1\)"),
        ({"factor_dims": "first_two"}, "param group 1: factor_dims"),
    ],
)
def test_add_param_group_rejects_bad_overrides(override, match):
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = Adafactor([p])
    with pytest.raises(ValueError, match=match):
        opt.add_param_group({"params": [q], **override})
    assert len(opt.param_groups) == 1


def test_constructor_checks_every_group():
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"param group 1: eps\[1\] \(eps2\)"):
        Adafactor([{"params": [p]}, {"params": [q], "eps": (1e-30, 0.0)}])


def _stepped_optimizer(steps=3):
    """Two params with state from a few steps, and fresh finite gradients set."""
    params = [torch.nn.Parameter(initial_point((4, 3))), torch.nn.Parameter(initial_point((5,), 2))]
    opt = Adafactor(params)
    for k in range(steps + 1):
        for i, p in enumerate(params):
            p.grad = initial_point(p.shape, seed=100 + 10 * k + i)
        if k < steps:
            opt.step()
    return opt, params


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (lambda opt, ps: opt.param_groups[0].__setitem__("d", 0.0), ValueError, r"param group 0: d"),
        (lambda opt, ps: opt.param_groups[0].__setitem__("lr", -1e-3), ValueError, "param group 0: lr"),
        (lambda opt, ps: opt.param_groups[0].__setitem__("maximize", 1), TypeError, "maximize"),
        (lambda opt, ps: opt.param_groups[0].__setitem__("eps", (None, 1e-3)), ValueError, r"eps\[0\]"),
        (lambda opt, ps: opt.param_groups[0].__setitem__("eps1", 1e-30), ValueError, "'eps1'"),
        (
            lambda opt, ps: setattr(ps[1], "grad", ps[1].grad.to_sparse()),
            ValueError,
            "parameter 1 of param group 0 has a sparse gradient",
        ),
        (
            lambda opt, ps: opt.state[ps[1]].__setitem__("V", torch.zeros(6, dtype=F64)),
            ValueError,
            r"the state of parameter 1 of param group 0.*V=\(\(6,\), torch.float64\).*shape \(5,\)",
        ),
        (lambda opt, ps: opt.state[ps[1]].__setitem__("step", 3), ValueError, "step=3; it must be a one-element"),
        (
            lambda opt, ps: opt.state[ps[0]].__setitem__("R", opt.state[ps[0]]["R"].float()),
            ValueError,
            "has R as torch.float32 on cpu; it must be torch.float64",
        ),
        (lambda opt, ps: opt.state[ps[0]].__setitem__("exp_avg_sq", torch.zeros(3)), ValueError, "'exp_avg_sq'"),
    ],
    ids=["d", "lr", "maximize", "eps1-none", "foreign-key", "sparse-grad", "state-shape", "state-step-int",
         "state-dtype", "state-foreign-entry"],
)
def test_refused_step_changes_nothing(edit, error, match):
    """Every refused step names the culprit and leaves all parameters and all state as they were.

    The bad item is always on the *second* parameter or in the group, so a
    step that updated parameters one by one before checking would be caught.
    """
    opt, params = _stepped_optimizer()
    edit(opt, params)
    before = [p.detach().clone() for p in params], {p: copy.deepcopy(dict(opt.state[p])) for p in params}
    with pytest.raises(error, match=match):
        opt.step()
    for p, old in zip(params, before[0]):
        assert torch.equal(p.detach(), old)
    for p in params:
        assert_equal_nested(dict(opt.state[p]), before[1][p])


def test_switching_factor_dims_after_state_exists_is_refused():
    """A (5, 2, 3) tensor keeps C of shape (5, 3) with the last two dims, (2, 3) with the two largest."""
    p = torch.nn.Parameter(initial_point((5, 2, 3)))
    opt = Adafactor([p])
    p.grad = initial_point((5, 2, 3), seed=2)
    opt.step()
    opt.param_groups[0]["factor_dims"] = "two_largest"
    before = snapshot(opt, [p])
    with pytest.raises(ValueError, match=r"C=\(\(5, 3\).*shape \(2, 3\).*factor_dims"):
        opt.step()
    assert_unchanged(before, opt, [p])


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_parameters_are_refused(dtype):
    z = torch.nn.Parameter(torch.randn(3, 2, dtype=dtype))
    w = torch.nn.Parameter(torch.randn(3))
    opt = Adafactor([w, z])
    z.grad, w.grad = torch.randn(3, 2, dtype=dtype), torch.randn(3)
    before = snapshot(opt, [w, z])
    with pytest.raises(TypeError, match="parameter 1 of param group 0 is complex.*view_as_real"):
        opt.step()
    assert_unchanged(before, opt, [w, z])


def test_integer_parameters_are_refused():
    n = torch.zeros(3, dtype=torch.int64)
    opt = Adafactor([torch.nn.Parameter(torch.ones(2))])
    opt.param_groups[0]["params"].append(n)
    n.grad = torch.ones(3, dtype=torch.int64)
    with pytest.raises(TypeError, match="parameter 1 of param group 0 has dtype torch.int64"):
        opt.step()


def _trained(shape, **options):
    p = torch.nn.Parameter(torch.zeros(shape))
    opt = Adafactor([p], **options)
    p.grad = torch.ones(shape)
    opt.step()
    return opt, p


def _adam_state():
    q = torch.nn.Parameter(torch.zeros(3, 4))
    adam = torch.optim.Adam([q])
    q.grad = torch.ones_like(q)
    adam.step()
    return adam, q


@pytest.mark.parametrize(
    "source, target_shape, options, match",
    [
        (lambda: _trained((3, 4)), (4, 3), {}, r"state_dict: parameter 0 of param group 0.*R=\(\(3,\)"),
        (lambda: _trained((6,)), (3, 2), {}, r"state_dict: parameter 0.*'V'"),
        (lambda: _trained((2, 3, 4), beta1=0.9), (2, 3, 5), {"beta1": 0.9}, r"state_dict.*C=\(\(2, 4\)"),
        (lambda: _trained((3, 4), beta1=0.9), (3, 4), {}, None),
        (_adam_state, (3, 4), {}, "'betas'"),
    ],
    ids=["transposed", "vector-vs-matrix", "momentum", "same-shape-other-options-loads", "adam"],
)
def test_load_state_dict_refuses_a_state_of_another_model_and_changes_nothing(source, target_shape, options, match):
    src, _ = source()
    opt, dst = _trained(target_shape, **options)
    before = snapshot(opt, [dst])
    if match is None:
        # The saved group's options come with the state: beta1 and its buffer load here.
        opt.load_state_dict(src.state_dict())
        assert opt.param_groups[0]["beta1"] == 0.9 and "exp_avg" in opt.state[dst]
        return
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(src.state_dict())
    assert_unchanged(before, opt, [dst])


def test_load_state_dict_refuses_other_groupings_and_old_drafts():
    opt, _ = _trained((3, 4))
    saved = opt.state_dict()
    other = Adafactor([{"params": [torch.nn.Parameter(torch.zeros(3, 4))]},
                       {"params": [torch.nn.Parameter(torch.zeros(2))]}])
    with pytest.raises(ValueError, match="state_dict has 1 param groups but this optimizer has 2"):
        other.load_state_dict(saved)
    draft = copy.deepcopy(saved)
    draft["param_groups"][0]["decay_exponent"] = 0.8
    with pytest.raises(ValueError, match="state_dict: param group 0 sets 'decay_exponent'"):
        _trained((3, 4))[0].load_state_dict(draft)
    with pytest.raises(ValueError, match="state_dict must be a dict"):
        _trained((3, 4))[0].load_state_dict({"state": {}})


def test_fused_refuses_unsupported_groups_before_changing_anything():
    """float64 (the kernels take float32/bf16/fp16) is refused by the step, not half-way through it."""
    good, bad = torch.nn.Parameter(torch.ones(4, 3)), torch.nn.Parameter(torch.ones(3, dtype=F64))
    opt = Adafactor([{"params": [good]}, {"params": [bad], "fused": True}])
    good.grad, bad.grad = torch.ones(4, 3), torch.ones(3, dtype=F64)
    before = snapshot(opt, [good, bad])
    with pytest.raises(ValueError, match="param group 1 has fused=True.*float64.*fused=False"):
        opt.step()
    assert_unchanged(before, opt, [good, bad])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_paths_match_the_cpu_results():
    """On a GPU: the batched path is the default, both paths agree with the CPU to float64 rounding
    (the GPU's foreach kernels may round differently), and a CPU generator is refused for CUDA bf16."""
    shapes = [(6, 5), (6, 5), (7,), (), (2, 3, 4)]
    grads = [gradient_sequence(s, 6, seed=i) for i, s in enumerate(shapes)]
    x0s = [initial_point(s, seed=10 + i) for i, s in enumerate(shapes)]
    cpu, *_ = run_optimizer(lambda ps: Adafactor(ps, beta1=0.9, weight_decay=0.1), x0s, grads)
    for foreach in (None, False):
        cuda, opt, params = run_optimizer(
            lambda ps: Adafactor(ps, beta1=0.9, weight_decay=0.1, foreach=foreach),
            [x.cuda() for x in x0s], [[g.cuda() for g in seq] for seq in grads],
        )
        for a, b in zip(cuda[-1], cpu[-1]):
            assert max_rel_diff(a.cpu(), b) <= 1e-12
        assert all(opt.state[p]["step"].device == p.device for p in params)
    p = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.bfloat16, device="cuda"))
    opt = Adafactor([p], stochastic_rounding=True)
    opt.generator = torch.Generator()
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="generator"):
        opt.step()
