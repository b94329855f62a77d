"""Gradient descent, mini-batches and the trajectory helper, against torch.optim.SGD in float64.

The torch side computes its gradients with autograd from the loss; the
reference side is given the hand-written gradient, so the two paths share
nothing but the problem.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optbook.reference import (
    Trajectory,
    decoupled_weight_decay,
    gradient_step,
    l2_regularized_gradient,
    minibatch_grad_fn,
    minibatch_gradient,
    minibatch_indices,
    run,
    sgd_step,
    sgdw_step,
)

def quadratic(seed: int, n: int = 4):
    """f(x) = 1/2 x^T A x - b^T x with A symmetric positive definite."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + np.eye(n)
    b = rng.standard_normal(n)
    return a, b, (lambda x: 0.5 * x @ a @ x - b @ x), (lambda x: a @ x - b)


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


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_sgd_matches_torch(weight_decay):
    a, b, _, grad = quadratic(0)
    x0 = np.random.default_rng(1).standard_normal(4)
    ours = run(sgd_step, x0, grad, 15, lr=0.1, weight_decay=weight_decay).xs
    theirs = torch_path(lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=weight_decay), a, b, x0, 15)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-14)


def test_l2_penalty_and_decoupled_decay_coincide_for_sgd():
    """theta - eta (g + lambda theta) and (theta - eta lambda theta) - eta g are the same number
    up to the order of the floating-point operations."""
    a, b, _, grad = quadratic(2)
    x0 = np.random.default_rng(3).standard_normal(4)
    l2 = run(sgd_step, x0, grad, 20, lr=0.05, weight_decay=0.5).xs
    decoupled = run(sgdw_step, x0, grad, 20, lr=0.05, weight_decay=0.5).xs
    np.testing.assert_allclose(l2, decoupled, rtol=1e-13, atol=1e-15)
    # and both differ from no decay at all, so the test is not vacuous
    assert not np.allclose(l2, run(sgd_step, x0, grad, 20, lr=0.05).xs)


def test_weight_decay_helpers():
    x = np.array([1.0, -2.0, 4.0])
    g = np.array([0.5, 0.5, -1.0])
    np.testing.assert_array_equal(l2_regularized_gradient(g, x, 0.25), [0.75, 0.0, 0.0])
    np.testing.assert_array_equal(decoupled_weight_decay(x, 0.5, 0.25), [0.875, -1.75, 3.5])
    np.testing.assert_array_equal(gradient_step(x, g, 2.0), [0.0, -3.0, 6.0])


def linear_regression(seed: int, n: int = 12, d: int = 3):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, d))
    targets = rng.standard_normal(n)

    def example_grads(x, idx):
        # gradient of J_i(x) = 1/2 (a_i . x - y_i)^2, one row per example
        residual = features[idx] @ x - targets[idx]
        return residual[:, None] * features[idx]

    return features, targets, example_grads


def test_minibatch_gradient_matches_autograd_on_the_batch():
    features, targets, example_grads = linear_regression(4)
    x = np.array([0.3, -1.0, 2.0])
    idx = np.array([7, 0, 3, 3, 11])
    xt = torch.tensor(x, requires_grad=True)
    f, y = torch.tensor(features[idx]), torch.tensor(targets[idx])
    (0.5 * (f @ xt - y) ** 2).mean().backward()
    np.testing.assert_allclose(minibatch_gradient(example_grads, x, idx), xt.grad.numpy(), rtol=1e-13)


def test_minibatch_indices_cover_one_epoch():
    batches = list(minibatch_indices(10, 4, np.random.default_rng(5)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    dropped = list(minibatch_indices(10, 4, np.random.default_rng(5), drop_last=True))
    assert [len(b) for b in dropped] == [4, 4]
    # the same seed gives the same epoch; the order is not the identity
    again = list(minibatch_indices(10, 4, np.random.default_rng(5)))
    assert all(np.array_equal(u, v) for u, v in zip(batches, again))
    assert not np.array_equal(np.concatenate(batches), np.arange(10))


def test_equal_minibatches_average_to_the_full_gradient():
    """Over one epoch of equal batches, the mean of the batch gradients is the full gradient."""
    features, targets, example_grads = linear_regression(6)
    x = np.array([1.0, 0.5, -0.25])
    full = minibatch_gradient(example_grads, x, np.arange(12))
    grads = [minibatch_gradient(example_grads, x, idx) for idx in minibatch_indices(12, 3, np.random.default_rng(0))]
    np.testing.assert_allclose(np.mean(grads, axis=0), full, rtol=1e-12)
    # the normal-equation gradient, computed independently
    np.testing.assert_allclose(full, features.T @ (features @ x - targets) / 12, rtol=1e-12)


def test_minibatch_sgd_matches_torch_on_the_same_batches():
    features, targets, example_grads = linear_regression(7)
    x0 = np.zeros(3)
    ours = run(sgd_step, x0, minibatch_grad_fn(example_grads, 12, 5, np.random.default_rng(9)), 8, lr=0.2).xs

    # torch replays the same shuffled batches, epoch after epoch
    rng = np.random.default_rng(9)
    batches = [b for _ in range(4) for b in minibatch_indices(12, 5, rng)][:8]
    xt = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([xt], lr=0.2)
    path = [xt.detach().clone()]
    for idx in batches:
        opt.zero_grad()
        f, y = torch.tensor(features[idx]), torch.tensor(targets[idx])
        (0.5 * (f @ xt - y) ** 2).mean().backward()
        opt.step()
        path.append(xt.detach().clone())
    np.testing.assert_allclose(ours, torch.stack(path).numpy(), rtol=1e-12, atol=1e-14)


def test_run_records_path_losses_and_continues():
    _, _, loss, grad = quadratic(8)
    x0 = np.ones(4)
    path = run(sgd_step, x0, grad, 6, loss_fn=loss, lr=0.1)
    assert isinstance(path, Trajectory)
    assert path.xs.shape == (7, 4) and path.losses.shape == (7,)
    np.testing.assert_array_equal(path.xs[0], x0)
    np.testing.assert_allclose(path.losses, [loss(x) for x in path.xs])
    assert path.losses[-1] < path.losses[0]
    first = run(sgd_step, x0, grad, 3, lr=0.1)
    rest = run(sgd_step, first.xs[-1], grad, 3, lr=0.1, state=first.state)
    np.testing.assert_array_equal(rest.xs[-1], path.xs[-1])
    assert rest.state.t == 6
    assert run(sgd_step, x0, grad, 0, lr=0.1).xs.shape == (1, 4)
    assert path.states is None
    kept = run(sgd_step, x0, grad, 4, lr=0.1, keep_states=True).states
    assert [s.t for s in kept] == [1, 2, 3, 4]


@given(
    x=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=5),
    lr=st.floats(0, 10),
)
def test_zero_gradient_does_not_move(x, lr):
    x = np.array(x)
    new, state = sgd_step(x, np.zeros_like(x), None, lr=lr)
    np.testing.assert_array_equal(new, x)
    assert state.t == 1


def test_bad_inputs_raise_clear_errors():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        sgd_step(x, x, None, lr=-0.1)
    with pytest.raises(ValueError, match="lr must be finite"):
        sgd_step(x, x, None, lr=float("nan"))
    with pytest.raises(TypeError, match="lr must be a real number"):
        sgd_step(x, x, None, lr="0.1")
    with pytest.raises(ValueError, match=r"g has shape \(2,\) but x has shape \(3,\)"):
        sgd_step(x, np.zeros(2), None, lr=0.1)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        sgdw_step(x, x, None, lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        next(minibatch_indices(5, 6, np.random.default_rng(0)))
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        next(minibatch_indices(5, 2, 0))
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_grad_fn(lambda x, i: x, 5, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="example_grads"):
        minibatch_gradient(lambda x, i: np.zeros((len(i), 2)), x, np.array([0, 1]))
    with pytest.raises(ValueError, match="steps must be a whole number"):
        run(sgd_step, x, lambda x: x, -1, lr=0.1)


def test_run_stops_when_asked_and_matches_the_full_run_up_to_there():
    from optbook.reference import run, sgd_step

    grad = lambda x: x  # noqa: E731 - J = |x|^2 / 2, GD multiplies x by (1 - lr)
    full = run(sgd_step, np.array([1.0, -2.0]), grad, 100, lr=0.5)
    early = run(sgd_step, np.array([1.0, -2.0]), grad, 100, lr=0.5, stop_when=lambda x: np.max(np.abs(x)) <= 1e-3)
    # (1/2)^t * 2 <= 1e-3 first at t = 11
    assert len(early.xs) == 12 and np.array_equal(early.xs, full.xs[:12])
    with pytest.raises(TypeError, match="stop_when"):
        run(sgd_step, np.zeros(2), grad, 3, lr=0.1, stop_when=1)
