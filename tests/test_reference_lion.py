"""Lion in NumPy against lion_pytorch.Lion (an independent implementation) in float64.

lion_pytorch shrinks the parameter by 1 - lr*wd and then subtracts lr*sign(c);
the paper (and the reference) write theta - lr*(sign(c) + wd*theta). Same
number up to rounding. Its ``decoupled_weight_decay=True`` divides wd by the
initial lr: asserted below as the reference with wd / lr0.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lion_pytorch import Lion as UpstreamLion

from optbook.reference import LionState, lion_interpolation, lion_step, run, sign_update


def quadratic(seed: int, n: int = 7):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + 0.1 * np.eye(n)
    b = rng.standard_normal(n)
    return a, b, (lambda x: a @ x - b)


def upstream_path(a, b, x0, steps, lrs, **kwargs):
    x = torch.tensor(x0, requires_grad=True)
    at, bt = torch.tensor(a), torch.tensor(b)
    opt = UpstreamLion([x], lr=lrs[0], **kwargs)
    path = [x.detach().clone()]
    for t in range(steps):
        opt.param_groups[0]["lr"] = lrs[t]
        opt.zero_grad()
        (0.5 * x @ at @ x - bt @ x).backward()
        opt.step()
        path.append(x.detach().clone())
    return torch.stack(path).numpy()


def reference_path(grad, x0, lrs, **hp):
    x, state, path = x0, None, [x0]
    for lr in lrs:
        x, state = lion_step(x, grad(x), state, lr=lr, **hp)
        path.append(x)
    return np.array(path)


@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
def test_lion_matches_lion_pytorch(weight_decay):
    a, b, grad = quadratic(0)
    x0 = np.random.default_rng(1).standard_normal(7)
    lrs = [0.01] * 25
    ours = reference_path(grad, x0, lrs, betas=(0.9, 0.99), weight_decay=weight_decay)
    theirs = upstream_path(a, b, x0, 25, lrs, betas=(0.9, 0.99), weight_decay=weight_decay)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(run(lion_step, x0, grad, 25, lr=0.01, weight_decay=weight_decay).xs, ours)


def test_lion_pytorch_decoupled_flag_divides_decay_by_initial_lr():
    a, b, grad = quadratic(2)
    x0 = np.random.default_rng(3).standard_normal(7)
    lrs = [0.02] * 10 + [0.005] * 10  # a schedule: the decay follows lr_t / lr_0
    theirs = upstream_path(a, b, x0, 20, lrs, weight_decay=0.01, decoupled_weight_decay=True)
    ours = reference_path(grad, x0, lrs, weight_decay=0.01 / 0.02)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-14)
    assert not np.allclose(reference_path(grad, x0, lrs, weight_decay=0.01), theirs, rtol=1e-6)


vectors = st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=6)


@given(x=vectors, seed=st.integers(0, 2**16), lr=st.floats(1e-4, 1.0), steps=st.integers(1, 5))
def test_every_coordinate_moves_by_lr_or_not_at_all(x, seed, lr, steps):
    x = np.array(x)
    rng = np.random.default_rng(seed)
    state = None
    for _ in range(steps):
        g = rng.standard_normal(x.shape) * rng.choice([0.0, 1.0], size=x.shape)
        c = lion_interpolation(np.zeros_like(x) if state is None else state.m, g, 0.9)
        new, state = lion_step(x, g, state, lr=lr)
        moved = x - new
        # x - (x - lr) is lr only up to the rounding of x - lr
        assert np.all(np.abs(np.abs(moved) - np.where(c == 0, 0.0, lr)) <= 1e-12 * (1 + np.abs(x)))
        np.testing.assert_array_equal(np.sign(moved), np.sign(c))
        x = new


@given(x=vectors, lam=st.floats(0, 1), lr=st.floats(1e-4, 0.5))
def test_weight_decay_term_is_lr_lambda_theta(x, lam, lr):
    """With a zero gradient and zero momentum, sign(c) = 0 and only the decay acts."""
    x = np.array(x)
    new, _ = lion_step(x, np.zeros_like(x), None, lr=lr, weight_decay=lam)
    np.testing.assert_allclose(new, x - lr * lam * x, rtol=1e-14, atol=1e-300)


@given(
    # Entries are 0 or of magnitude > 1e-200: then every product with 2^k and the
    # betas stays a normal float. Subnormal inputs (found by hypothesis: 5e-324)
    # underflow to 0 inside (1 - beta) g, where the sign is genuinely lost.
    grads=st.lists(
        st.lists(st.floats(-1e3, 1e3).filter(lambda v: v == 0 or abs(v) > 1e-200), min_size=3, max_size=3),
        min_size=1,
        max_size=6,
    ),
    k=st.integers(-30, 30),
)
def test_lion_ignores_the_gradient_scale(grads, k):
    """sign(c * x) = sign(x) for c > 0; c = 2^k keeps every product of normal floats exact."""
    c = 2.0**k
    x1 = x2 = np.ones(3)
    s1 = s2 = None
    for g in grads:
        x1, s1 = lion_step(x1, np.array(g), s1, lr=0.01)
        x2, s2 = lion_step(x2, c * np.array(g), s2, lr=0.01)
    np.testing.assert_array_equal(x1, x2)


def test_momentum_is_updated_after_the_step_with_beta2():
    g1, g2 = np.array([1.0, -1.0]), np.array([-3.0, 0.5])
    _, s = lion_step(np.zeros(2), g1, None, betas=(0.5, 0.9))
    np.testing.assert_allclose(s.m, 0.1 * g1)
    _, s = lion_step(np.zeros(2), g2, s, betas=(0.5, 0.9))
    np.testing.assert_allclose(s.m, 0.9 * 0.1 * g1 + 0.1 * g2)
    np.testing.assert_array_equal(sign_update(np.array([-2.0, 0.0, 3.0])), [-1.0, 0.0, 1.0])


def test_bad_inputs_raise_clear_errors():
    x = np.ones(2)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\)"):
        lion_step(x, x, None, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr must be >= 0"):
        lion_step(x, x, None, lr=-1e-4)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        lion_step(x, x, None, weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"state.m has shape \(1,\)"):
        lion_step(x, x, LionState(m=np.zeros(1)))
