"""Adam, its combined form, AdamW and Adam + L2, against torch.optim in float64.

Differences asserted here:

* The combined form alpha_t m_t / (sqrt(v_t) + eps_hat) equals the textbook
  eta m_hat / (sqrt(v_hat) + eps) exactly iff eps_hat = eps sqrt(1 - beta2^t);
  a constant eps_hat is the textbook rule with eps_t = eps_hat / sqrt(1 - beta2^t).
* torch.optim.Adam(weight_decay) is the L2 form, torch.optim.AdamW the
  decoupled form, with the decay multiplied by lr; the two differ for Adam
  (they coincide for SGD: see test_reference_gd.py).
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optbook.reference import (
    AdamState,
    adam_combined_step,
    adam_step,
    adamw_step,
    bias_correction,
    combined_step_size,
    equivalent_eps_hat,
    run,
)


def quadratic(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + 0.1 * np.eye(n)
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


@pytest.mark.parametrize("weight_decay", [0.0, 0.2])
def test_adam_matches_torch_adam(weight_decay):
    """torch's Adam(weight_decay) adds lambda*theta to the gradient: the L2 form of adam_step."""
    a, b, grad = quadratic(0)
    x0 = np.random.default_rng(1).standard_normal(6)
    hp = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay)
    ours = run(adam_step, x0, grad, 30, **hp).xs
    theirs = torch_path(lambda p: torch.optim.Adam(p, **hp), a, b, x0, 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-13)


def test_adamw_matches_torch_adamw():
    a, b, grad = quadratic(2)
    x0 = np.random.default_rng(3).standard_normal(6)
    hp = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.3)
    ours = run(adamw_step, x0, grad, 30, **hp).xs
    theirs = torch_path(lambda p: torch.optim.AdamW(p, **hp), a, b, x0, 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-13)


def test_l2_and_decoupled_decay_differ_for_adam():
    a, b, grad = quadratic(4)
    x0 = 3 * np.random.default_rng(5).standard_normal(6)
    hp = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.3)
    l2 = run(adam_step, x0, grad, 30, **hp).xs
    decoupled = run(adamw_step, x0, grad, 30, **hp).xs
    assert np.max(np.abs(l2 - decoupled)) > 1e-2
    # The reason, on the first step from m = v = 0 with eps = 0: Adam+L2 moves by
    # eta * sign(g + lambda theta), AdamW by eta * (sign(g) + lambda theta).
    g, x = grad(x0), x0
    first_l2, _ = adam_step(x, g, None, lr=0.1, eps=0.0, weight_decay=0.3)
    first_w, _ = adamw_step(x, g, None, lr=0.1, eps=0.0, weight_decay=0.3)
    np.testing.assert_allclose(x - first_l2, 0.1 * np.sign(g + 0.3 * x), rtol=1e-12)
    np.testing.assert_allclose(x - first_w, 0.1 * (np.sign(g) + 0.3 * x), rtol=1e-12)


def test_combined_form_equals_adam_with_the_equivalent_eps_hat():
    rng = np.random.default_rng(6)
    grads = rng.standard_normal((40, 5)) * 1e-3  # small gradients: eps matters
    eps, betas = 1e-3, (0.9, 0.999)
    x1 = x2 = x3 = np.zeros(5)
    s1 = s2 = s3 = None
    for t, g in enumerate(grads, start=1):
        x1, s1 = adam_step(x1, g, s1, lr=0.01, betas=betas, eps=eps)
        x2, s2 = adam_combined_step(x2, g, s2, lr=0.01, betas=betas, eps_hat=equivalent_eps_hat(eps, betas[1], t))
        # a constant eps_hat is Adam with eps_t = eps_hat / sqrt(1 - beta2^t)
        x3, s3 = adam_combined_step(x3, g, s3, lr=0.01, betas=betas, eps_hat=eps)
        if t == 1:
            x4, s4 = adam_step(np.zeros(5), g, None, lr=0.01, betas=betas, eps=eps / np.sqrt(1 - betas[1]))
            np.testing.assert_allclose(x3, x4, rtol=1e-13)
        np.testing.assert_allclose(x2, x1, rtol=1e-12, atol=1e-16)
    assert not np.allclose(x3, x1, rtol=1e-2)


def test_combined_form_matches_torch_adam_through_eps_hat():
    a, b, grad = quadratic(7)
    x0 = np.random.default_rng(8).standard_normal(6)
    theirs = torch_path(lambda p: torch.optim.Adam(p, lr=0.05, eps=1e-4), a, b, x0, 20)
    x, state = x0, None
    for t in range(1, 21):
        x, state = adam_combined_step(x, grad(x), state, lr=0.05, eps_hat=equivalent_eps_hat(1e-4, 0.999, t))
        np.testing.assert_allclose(x, theirs[t], rtol=1e-11, atol=1e-13)


def test_combined_step_size_is_both_corrections():
    """alpha_t * m / sqrt(v) = eta * m_hat / sqrt(v_hat), checked on numbers, not on the formula."""
    m, v = np.array([0.3, -0.2]), np.array([0.04, 0.01])
    for t in (1, 2, 10, 1000):
        lhs = combined_step_size(0.1, 0.9, 0.999, t) * m / np.sqrt(v)
        rhs = 0.1 * bias_correction(m, 0.9, t) / np.sqrt(bias_correction(v, 0.999, t))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-13)
    assert combined_step_size(0.1, 0.9, 0.999, 1) == pytest.approx(0.1 * np.sqrt(0.001) / 0.1)
    assert combined_step_size(0.1, 0.9, 0.999, 100_000) == pytest.approx(0.1, rel=1e-12)


gradient_lists = st.lists(
    st.lists(st.floats(-1e3, 1e3).filter(lambda v: abs(v) > 1e-6), min_size=3, max_size=3), min_size=1, max_size=6
)


@given(grads=gradient_lists, k=st.integers(-20, 20))
def test_adam_without_eps_ignores_the_gradient_scale(grads, k):
    c = 2.0**k
    x1 = x2 = np.zeros(3)
    s1 = s2 = None
    for g in grads:
        x1, s1 = adam_step(x1, np.array(g), s1, lr=0.1, eps=0.0)
        x2, s2 = adam_step(x2, c * np.array(g), s2, lr=0.1, eps=0.0)
    np.testing.assert_array_equal(x1, x2)


@given(g=st.lists(st.floats(-1e6, 1e6).filter(lambda v: abs(v) > 1e-6), min_size=1, max_size=5), lr=st.floats(1e-4, 1))
def test_adam_first_step_moves_every_coordinate_by_lr(g, lr):
    """m_hat_1 = g and v_hat_1 = g^2, so with eps = 0 the first step is lr * sign(g)."""
    g = np.array(g)
    x, _ = adam_step(np.zeros_like(g), g, None, lr=lr, eps=0.0)
    np.testing.assert_allclose(-x, lr * np.sign(g), rtol=1e-12)


def test_zero_gradient_does_not_move():
    x = np.array([1.0, 2.0])
    new, state = adam_step(x, np.zeros(2), None)
    np.testing.assert_array_equal(new, x)
    assert state.t == 1


def test_bad_inputs_raise_clear_errors():
    x = np.ones(2)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\)"):
        adam_step(x, x, None, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"betas\[0\] must lie in \[0, 1\)"):
        adamw_step(x, x, None, betas=(-0.1, 0.9))
    with pytest.raises(ValueError, match="betas must be a pair"):
        adam_step(x, x, None, betas=0.9)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        adam_combined_step(x, x, None, lr=-1e-3)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        adam_step(x, x, None, eps=-1.0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        adamw_step(x, x, None, weight_decay=-0.1)
    with pytest.raises(ValueError, match="t must be a whole number >= 1"):
        bias_correction(x, 0.9, 0)
    with pytest.raises(ValueError, match=r"state.m has shape \(3,\)"):
        adam_step(x, x, AdamState(m=np.zeros(3), v=np.zeros(2)))
