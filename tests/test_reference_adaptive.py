"""Adagrad, RMSProp and AdaDelta in the lecture's form, against torch.optim in float64.

Differences found and asserted here:

* torch's Adagrad and RMSprop divide by sqrt(G) + eps, the lecture by
  sqrt(G + eps). With eps = 0 both are the same rule; otherwise, from the same
  accumulator G, torch's step is the lecture's times sqrt(G + eps) / (sqrt(G) + eps).
  (torch calls RMSProp's beta ``alpha``.)
* torch's Adadelta has an ``lr`` that multiplies the step but not the
  average of squared steps. lr = 1 is the lecture's rule; for a fixed
  sequence of gradients every displacement theta_t - theta_0 is scaled by lr.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optbook.reference import (
    AdaDeltaState,
    adadelta_delta,
    adadelta_step,
    adagrad_step,
    adaptive_step_size,
    ema,
    init_adadelta_state,
    rmsprop_step,
    run,
)

finite_grads = st.lists(
    st.lists(st.floats(-1e3, 1e3).filter(lambda v: abs(v) > 1e-3), min_size=3, max_size=3), min_size=1, max_size=8
)


def quadratic(seed: int, n: int = 4):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + np.eye(n)
    b = rng.standard_normal(n)
    return a, b, (lambda x: a @ x - b)


def torch_path(opt_factory, a, b, x0, steps):
    x = torch.tensor(x0, requires_grad=True)
    at, bt = torch.tensor(a), torch.tensor(b)
    opt = opt_factory([x])
    path = [x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * x @ at @ x - bt @ x).backward()
        opt.step()
        path.append(x.detach().clone())
    return torch.stack(path).numpy()


def fixed_gradient_steps(step_fn, torch_opt, grads, **hp):
    """Feed the same gradients to both; return per-step displacements and the reference states."""
    p = torch_opt.param_groups[0]["params"][0]
    x, state = p.detach().numpy().copy(), None
    ours, theirs, states = [], [], []
    for g in grads:
        before = p.detach().clone().numpy()
        p.grad = torch.tensor(g)
        torch_opt.step()
        theirs.append(p.detach().numpy() - before)
        x_new, state = step_fn(x, g, state, **hp)
        ours.append(x_new - x)
        x = x_new
        states.append(state)
    return np.array(ours), np.array(theirs), states


def test_adagrad_matches_torch_with_eps_zero():
    a, b, grad = quadratic(0)
    x0 = np.random.default_rng(1).standard_normal(4)
    ours = run(adagrad_step, x0, grad, 20, lr=0.3, eps=0.0).xs
    theirs = torch_path(lambda p: torch.optim.Adagrad(p, lr=0.3, eps=0.0), a, b, x0, 20)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-14)


def test_adagrad_eps_inside_versus_outside_the_root():
    rng = np.random.default_rng(2)
    grads = rng.standard_normal((6, 5)) * 0.3
    eps = 0.05  # large, so the difference is far above rounding
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    ours, theirs, states = fixed_gradient_steps(
        adagrad_step, torch.optim.Adagrad([p], lr=0.1, eps=eps), grads, lr=0.1, eps=eps
    )
    G = np.array([s.G for s in states])
    np.testing.assert_allclose(theirs / ours, np.sqrt(G + eps) / (np.sqrt(G) + eps), rtol=1e-12)
    assert not np.allclose(theirs, ours, rtol=1e-3)


def test_rmsprop_matches_torch_with_eps_zero():
    a, b, grad = quadratic(3)
    x0 = np.random.default_rng(4).standard_normal(4)
    ours = run(rmsprop_step, x0, grad, 20, lr=0.01, beta=0.9, eps=0.0).xs
    theirs = torch_path(lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0), a, b, x0, 20)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-14)


def test_rmsprop_eps_inside_versus_outside_the_root():
    rng = np.random.default_rng(5)
    grads = rng.standard_normal((6, 5)) * 0.1
    eps = 0.01
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    ours, theirs, states = fixed_gradient_steps(
        rmsprop_step, torch.optim.RMSprop([p], lr=0.01, alpha=0.95, eps=eps), grads, lr=0.01, beta=0.95, eps=eps
    )
    E = np.array([s.Eg2 for s in states])
    np.testing.assert_allclose(theirs / ours, np.sqrt(E + eps) / (np.sqrt(E) + eps), rtol=1e-12)
    assert not np.allclose(theirs, ours, rtol=1e-3)


def test_adadelta_matches_torch_with_lr_one():
    a, b, grad = quadratic(6)
    x0 = np.random.default_rng(7).standard_normal(4)
    ours = run(adadelta_step, x0, grad, 30, beta=0.9, eps=1e-6).xs
    theirs = torch_path(lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6), a, b, x0, 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_torch_adadelta_lr_scales_the_displacement():
    rng = np.random.default_rng(8)
    grads = rng.standard_normal((10, 4))
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    ours, theirs, _ = fixed_gradient_steps(
        adadelta_step, torch.optim.Adadelta([p], lr=0.3, rho=0.9, eps=1e-4), grads, beta=0.9, eps=1e-4
    )
    np.testing.assert_allclose(np.cumsum(theirs, axis=0), 0.3 * np.cumsum(ours, axis=0), rtol=1e-12)


@given(grads=finite_grads, lr=st.floats(1e-3, 1.0), eps=st.floats(0.0, 1.0))
def test_adagrad_step_sizes_never_increase(grads, lr, eps):
    x, state = np.zeros(3), None
    previous = np.full(3, np.inf)
    for g in grads:
        x, state = adagrad_step(x, np.array(g), state, lr=lr, eps=eps)
        sizes = adaptive_step_size(state.G, lr, eps)
        assert np.all(sizes <= previous)
        previous = sizes


@given(grads=finite_grads, k=st.integers(-20, 20))
def test_adagrad_and_rmsprop_without_eps_ignore_the_gradient_scale(grads, k):
    """With eps = 0, c*g / sqrt(sum c^2 g^2) = g / sqrt(sum g^2): multiplying the loss by c > 0
    changes nothing. c = 2^k keeps it bit-exact (scaling by a power of two is exact)."""
    c = 2.0**k
    for step, hp in ((adagrad_step, {"lr": 0.1, "eps": 0.0}), (rmsprop_step, {"lr": 0.1, "beta": 0.9, "eps": 0.0})):
        x1 = x2 = np.zeros(3)
        s1 = s2 = None
        for g in grads:
            x1, s1 = step(x1, np.array(g), s1, **hp)
            x2, s2 = step(x2, c * np.array(g), s2, **hp)
        np.testing.assert_array_equal(x1, x2)


@given(grads=finite_grads, k=st.integers(-10, 10), eps=st.floats(1e-8, 1e-2))
def test_adadelta_scaling_law(grads, k, eps):
    """What is exactly true of AdaDelta's units: multiplying every gradient by c and eps by c^2
    multiplies every step by c (both roots scale by c; the numerator's sqrt(eps) sets the scale).
    So AdaDelta is *not* invariant to the loss scale with eps fixed."""
    c = 2.0**k
    s1, s2 = None, None
    x1 = x2 = np.zeros(3)
    for g in grads:
        n1, s1 = adadelta_step(x1, np.array(g), s1, beta=0.9, eps=eps)
        n2, s2 = adadelta_step(x2, c * np.array(g), s2, beta=0.9, eps=c * c * eps)
        np.testing.assert_allclose(n2 - x2, c * (n1 - x1), rtol=1e-12)
        x1, x2 = n1, n2


@given(g=st.floats(1e-6, 1e12), eps=st.floats(1e-10, 1e-2), gamma=st.floats(0.0, 0.99))
def test_adadelta_first_step_is_set_by_eps_not_by_the_gradient(g, eps, gamma):
    """|Delta theta_1| = sqrt(eps) |g| / sqrt((1-gamma) g^2 + eps) < sqrt(eps / (1-gamma)) for every g:
    however large the gradient, the first step is of the size sqrt(eps)."""
    step = adadelta_delta(np.array([g]), (1 - gamma) * np.array([g * g]), np.zeros(1), eps)
    assert abs(step[0]) <= np.sqrt(eps / (1 - gamma)) * (1 + 1e-12)
    dx, _ = adadelta_step(np.zeros(1), np.array([g]), init_adadelta_state(np.zeros(1)), beta=gamma, eps=eps)
    np.testing.assert_allclose(dx, step, rtol=1e-14)


def test_zero_gradients_do_not_move_or_poison_the_state():
    x = np.array([1.0, -2.0])
    zero = np.zeros(2)
    for step, hp in ((adagrad_step, {}), (rmsprop_step, {}), (adadelta_step, {})):
        new, state = step(x, zero, None, **hp)
        np.testing.assert_array_equal(new, x)
        assert all(np.all(np.isfinite(getattr(state, f))) for f in state.__dataclass_fields__ if f != "t")


def test_ema_is_the_textbook_average():
    np.testing.assert_allclose(ema(np.array([1.0, 2.0]), np.array([3.0, -2.0]), 0.75), [1.5, 1.0])


def test_bad_inputs_raise_clear_errors():
    x = np.ones(2)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        rmsprop_step(x, x, None, beta=1.0)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        adadelta_step(x, x, None, beta=-0.1)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        adagrad_step(x, x, None, eps=-1e-8)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        adagrad_step(x, x, None, lr=-0.1)
    with pytest.raises(ValueError, match=r"g has shape \(3,\) but x has shape \(2,\)"):
        rmsprop_step(x, np.ones(3), None)
    with pytest.raises(ValueError, match="state.Edx2"):
        adadelta_step(x, x, AdaDeltaState(Eg2=np.ones(2), Edx2=np.ones(3)))
