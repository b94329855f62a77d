"""Momentum and Nesterov in the lecture's form, against torch.optim.SGD(momentum, nesterov) in float64.

The lecture's velocity carries the learning rate, v <- gamma v + eta g; torch's
buffer does not, b <- gamma b + g, and torch steps by eta b. The tests show
exactly what that changes: nothing for a constant eta (v = eta b), a
different path as soon as eta changes, and, for Nesterov, torch reporting
the look-ahead point theta - gamma v instead of theta.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optbook.reference import (
    MomentumState,
    gradient_step,
    momentum_step,
    nesterov_lookahead,
    nesterov_step,
    run,
    velocity,
)


def quadratic(seed: int, n: int = 5):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + 0.1 * np.eye(n)
    b = rng.standard_normal(n)
    return a, b, (lambda x: a @ x - b)


def torch_sgd_path(a, b, x0, steps, **kwargs):
    x = torch.tensor(x0, requires_grad=True)
    at, bt = torch.tensor(a), torch.tensor(b)
    opt = torch.optim.SGD([x], **kwargs)
    path, buffers = [x.detach().clone()], []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * x @ at @ x - bt @ x).backward()
        opt.step()
        path.append(x.detach().clone())
        buffers.append(opt.state[x]["momentum_buffer"].clone())
    return torch.stack(path).numpy(), torch.stack(buffers).numpy()


def test_momentum_matches_torch_for_constant_lr():
    a, b, grad = quadratic(0)
    x0 = np.random.default_rng(1).standard_normal(5)
    eta, gamma = 0.1, 0.9
    ours = run(momentum_step, x0, grad, 25, lr=eta, momentum=gamma)
    theirs, buffers = torch_sgd_path(a, b, x0, 25, lr=eta, momentum=gamma)
    np.testing.assert_allclose(ours.xs, theirs, rtol=1e-12, atol=1e-13)
    # v = eta * b: the two velocities differ only by the constant learning rate
    np.testing.assert_allclose(ours.state.v, eta * buffers[-1], rtol=1e-12, atol=1e-14)


def test_momentum_differs_from_torch_when_lr_changes():
    """With eta_1 then eta_2, torch's step is eta_t * (sum of gamma^(t-s) g_s): a new
    learning rate rescales the whole past at once. The lecture's v applies each
    eta_s to its own gradient. Fed the same gradients, the steps agree until the
    switch and differ afterwards; torch's step is exactly eta_t times the
    lecture's velocity computed with eta = 1."""
    rng = np.random.default_rng(2)
    grads = rng.standard_normal((8, 3))
    lrs = [0.1] * 4 + [0.01] * 4
    gamma = 0.8

    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lrs[0], momentum=gamma)
    x = np.zeros(3)
    state = None
    v_unit = np.zeros(3)
    for t, (g, eta) in enumerate(zip(grads, lrs)):
        opt.param_groups[0]["lr"] = eta
        before = p.detach().clone().numpy()
        p.grad = torch.tensor(g)
        opt.step()
        torch_step = p.detach().numpy() - before
        x_new, state = momentum_step(x, g, state, lr=eta, momentum=gamma)
        our_step, x = x_new - x, x_new
        v_unit = velocity(v_unit, g, 1.0, gamma)
        np.testing.assert_allclose(torch_step, -eta * v_unit, rtol=1e-13)
        if t < 4:
            np.testing.assert_allclose(our_step, torch_step, rtol=1e-13)
        else:
            assert not np.allclose(our_step, torch_step, rtol=1e-3)
    assert not np.allclose(x, p.detach().numpy(), rtol=1e-3)


def test_nesterov_torch_iterates_are_the_lookahead_points():
    """torch's Nesterov SGD takes the gradient at its own iterate p and steps
    p - eta (g + gamma b). Writing p_t = theta_t - gamma v_t turns the lecture's
    NAG into exactly that recursion, so torch's iterates are the lecture's
    look-ahead points (and the gradients, taken at those points, agree)."""
    a, b, grad = quadratic(3)
    x0 = np.random.default_rng(4).standard_normal(5)
    eta, gamma = 0.05, 0.9
    theirs, _ = torch_sgd_path(a, b, x0, 30, lr=eta, momentum=gamma, nesterov=True)
    x, state = x0, None
    lookaheads = [x0]
    for _ in range(30):
        g = grad(nesterov_lookahead(x, np.zeros(5) if state is None else state.v, gamma))
        x, state = nesterov_step(x, g, state, lr=eta, momentum=gamma)
        lookaheads.append(nesterov_lookahead(x, state.v, gamma))
    np.testing.assert_allclose(np.array(lookaheads), theirs, rtol=1e-11, atol=1e-12)
    # run() takes the gradient at the look-ahead point by itself
    np.testing.assert_allclose(run(nesterov_step, x0, grad, 30, lr=eta, momentum=gamma).xs[-1], x, rtol=1e-14)
    # and NAG is not plain momentum here
    assert not np.allclose(run(momentum_step, x0, grad, 30, lr=eta, momentum=gamma).xs[-1], x, rtol=1e-3)


@given(
    g=st.lists(st.floats(-100, 100), min_size=1, max_size=4),
    lr=st.floats(1e-3, 1.0),
    gamma=st.floats(0.0, 0.99),
    n=st.integers(1, 30),
)
def test_constant_gradient_velocity_is_a_geometric_sum(g, lr, gamma, n):
    """With a constant gradient, v_n = eta g (1 - gamma^n) / (1 - gamma) -> terminal velocity eta g / (1 - gamma)."""
    g = np.array(g)
    x, state = np.zeros_like(g), None
    for _ in range(n):
        x, state = momentum_step(x, g, state, lr=lr, momentum=gamma)
    np.testing.assert_allclose(state.v, lr * g * (1 - gamma**n) / (1 - gamma), rtol=1e-10, atol=1e-300)


@given(x=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=4), lr=st.floats(0, 1))
def test_zero_momentum_is_gradient_descent(x, lr):
    x = np.array(x)
    g = np.cos(x)
    new, state = momentum_step(x, g, None, lr=lr, momentum=0.0)
    np.testing.assert_array_equal(new, gradient_step(x, g, lr))


def test_bad_inputs_raise_clear_errors():
    x = np.zeros(2)
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\)"):
        momentum_step(x, x, None, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        nesterov_step(x, x, None, lr=-1.0)
    with pytest.raises(ValueError, match=r"state.v has shape \(3,\) but x has shape \(2,\)"):
        momentum_step(x, x, MomentumState(v=np.zeros(3)), lr=0.1)


def test_nesterov_schedule_starts_at_zero_and_approaches_one_minus_three_over_k():
    from optbook.reference.momentum import nesterov_momentum_schedule

    g = nesterov_momentum_schedule(10000)
    assert g[0] == 0.0
    # a_2 = (1 + sqrt 5)/2, so gamma_2 = (a_2 - 1)/a_3 by hand
    a2 = (1 + 5 ** 0.5) / 2
    a3 = (1 + (1 + 4 * a2 * a2) ** 0.5) / 2
    assert g[1] == pytest.approx((a2 - 1) / a3)
    assert np.all(np.diff(g) > 0) and g[-1] < 1
    k = np.arange(1, 10001)
    # gamma_k = 1 - 3/k + O(1/k^2)
    assert np.all(np.abs(g - (1 - 3 / k))[999:] <= 20 / k[999:] ** 2)
    with pytest.raises(ValueError, match="steps"):
        nesterov_momentum_schedule(0)
