"""The library behind Part I, chapters 1 to 4: problems, schedules, rates and noise predictions.

Each closed-form prediction is checked against a run of the reference rules
(or against an exhaustive enumeration), and each gradient against autograd or
finite differences, so a chapter that holds a measurement against one of
these formulas compares two independent computations.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from optbook import analysis, problems, reference, schedules as lr_schedules, tasks
from optbook.problems import saddle_problem
from optbook.reference import (
    adagrad_step,
    minibatch_grad_fn,
    momentum_step,
    nesterov_step,
    run,
    sgd_step,
)
from optbook.tasks import Dataset, softmax_cross_entropy, softmax_cross_entropy_grad


def small_dataset(n=30, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.integers(0, k, n)
    return Dataset("toy", x, y, x[:5], y[:5], n_classes=k)


# --- finite sums ----------------------------------------------------------------------


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_softmax_example_grads_average_to_the_full_gradient(l2):
    data = small_dataset()
    w = np.random.default_rng(1).standard_normal((5, 3))
    per_example = tasks.softmax_example_grads(w, data.x_train, data.y_train, l2)
    assert per_example.shape == (30, 5, 3)
    np.testing.assert_allclose(
        per_example.mean(axis=0), softmax_cross_entropy_grad(w, data.x_train, data.y_train, l2), atol=1e-14
    )


def test_softmax_example_grads_match_autograd_example_by_example():
    data = small_dataset(n=6)
    w = np.random.default_rng(2).standard_normal((5, 3))
    ours = tasks.softmax_example_grads(w, data.x_train, data.y_train, 0.1)
    for i in range(6):
        wt = torch.tensor(w, requires_grad=True)
        xi = torch.tensor(data.x_train[i : i + 1])
        logits = xi @ wt[:-1] + wt[-1]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(data.y_train[i : i + 1])) + 0.05 * (
            wt[:-1] ** 2
        ).sum()
        loss.backward()
        np.testing.assert_allclose(ours[i], wt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_softmax_task_is_the_tasks_loss_with_per_example_gradients():
    data = small_dataset()
    task = tasks.softmax_task(data, l2=0.01)
    w = np.random.default_rng(3).standard_normal(task.x0.shape)
    assert task.n == 30 and task.x0.shape == (5, 3) and not task.x0.any()
    assert task.loss(w) == softmax_cross_entropy(w, data.x_train, data.y_train, 0.01)
    idx = np.array([3, 7, 11])
    np.testing.assert_allclose(
        task.example_grads(w, idx).mean(axis=0),
        softmax_cross_entropy_grad(w, data.x_train[idx], data.y_train[idx], 0.01),
        atol=1e-14,
    )
    with pytest.raises(ValueError, match="regression"):
        tasks.softmax_task(Dataset("reg", data.x_train, data.x_train[:, 0], data.x_test, data.x_test[:, 0]))


def test_softmax_example_grads_reject_bad_shapes():
    data = small_dataset()
    with pytest.raises(ValueError, match="bias"):
        tasks.softmax_example_grads(np.zeros((4, 3)), data.x_train, data.y_train)
    with pytest.raises(ValueError, match="one label per row"):
        tasks.softmax_example_grads(np.zeros((5, 3)), data.x_train, data.y_train[:-1])


def test_double_well_derivative_minima_and_finite_sum():
    x = np.linspace(-2, 2, 9)
    h = 1e-6
    fd = (problems.tilted_double_well(x + h) - problems.tilted_double_well(x - h)) / (2 * h)
    np.testing.assert_allclose(problems.tilted_double_well_grad(x), fd, atol=1e-8)
    roots = np.sort(np.roots([1.0, 0.0, -1.0, 0.25]).real)
    assert problems.tilted_double_well(roots[0]) < problems.tilted_double_well(roots[2])  # the left minimum is deeper
    task = problems.double_well_task(n=50, seed=3)
    x0 = np.array([0.3])
    np.testing.assert_allclose(task.example_grads(x0, np.arange(50)).mean(axis=0), task.grad(x0), atol=1e-13)
    assert task.example_grads(x0, np.array([1, 2])).shape == (2, 1)
    with pytest.raises(ValueError, match="n must"):
        problems.double_well_task(n=1)


# --- quadratics -----------------------------------------------------------------------


def test_quadratic_gradient_batches_and_rotation():
    prob = problems.quadratic_problem([1.0, 9.0], [1.0, -2.0], center=[0.5, 0.5], angle=0.3)
    x = np.array([0.2, 0.7])
    h = 1e-6
    fd = [(prob.loss(x + h * e) - prob.loss(x - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(prob.grad(x), fd, atol=1e-8)
    a = problems.numerical_hessian(prob.grad, x)
    np.testing.assert_allclose(np.linalg.eigvalsh(a), [1.0, 9.0], atol=1e-8)
    grid = np.zeros((3, 4, 2))
    assert problems.quadratic(grid, a, [0.5, 0.5]).shape == (3, 4)
    assert prob.loss(prob.minimizer) == 0.0
    with pytest.raises(ValueError, match="symmetric"):
        problems.quadratic(x, [[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="curvatures"):
        problems.quadratic_problem([-1.0, 1.0], [0.0, 0.0])


def test_gd_multiplies_each_error_by_its_factor_and_oscillates_at_two_over_l():
    lam = np.array([4.0, 0.25])
    prob = problems.quadratic_problem(lam, [1.0, 1.0])
    for lr in (0.1, 0.3, 0.5):
        xs = run(sgd_step, prob.x0, prob.grad, 20, lr=lr).xs
        np.testing.assert_allclose(xs[1:] / xs[:-1], np.broadcast_to(analysis.gd_error_factor(lr, lam), (20, 2)), rtol=1e-12)
    xs = run(sgd_step, prob.x0, prob.grad, 50, lr=analysis.critical_lr(4.0)).xs
    assert np.array_equal(np.abs(xs[:, 0]), np.ones(51))  # exactly -1 every step: neither converges nor diverges
    assert abs(run(sgd_step, prob.x0, prob.grad, 50, lr=0.51).xs[-1, 0]) > 1.0


@pytest.mark.parametrize("lr", [0.05, 0.2, 0.45])
def test_steps_to_shrink_matches_a_run(lr):
    prob = problems.quadratic_problem([4.0, 0.25], [1.0, 1.0])
    xs = run(sgd_step, prob.x0, prob.grad, 2000, lr=lr).xs
    for j, lam in enumerate([4.0, 0.25]):
        predicted = analysis.gd_steps_to_shrink(lr, lam, 1e-3)
        measured = int(np.argmax(np.abs(xs[:, j]) <= 1e-3))
        assert measured == predicted
    assert analysis.gd_steps_to_shrink(0.6, 4.0, 1e-3) == math.inf
    with pytest.raises(ValueError, match="ratio"):
        analysis.gd_steps_to_shrink(0.1, 1.0, 2.0)


def test_optimal_gd_lr_balances_the_extreme_factors():
    lr = analysis.optimal_gd_lr(10.0, 1.0)
    assert abs(analysis.gd_error_factor(lr, 10.0)) == pytest.approx(abs(analysis.gd_error_factor(lr, 1.0)))
    assert abs(analysis.gd_error_factor(lr, 1.0)) == pytest.approx(9 / 11)
    with pytest.raises(ValueError, match="top_curvature"):
        analysis.critical_lr(0.0)


# --- momentum -------------------------------------------------------------------------


@pytest.mark.parametrize("rule, matrix", [(momentum_step, analysis.momentum_iteration_matrix), (nesterov_step, analysis.nesterov_iteration_matrix)])
def test_iteration_matrices_reproduce_the_reference_rules(rule, matrix):
    lam, lr, gamma = 3.0, 0.2, 0.8
    prob = problems.quadratic_problem([lam], [1.0])
    xs = run(rule, prob.x0, prob.grad, 30, lr=lr, momentum=gamma).xs[:, 0]
    m = matrix(lr, gamma, lam)
    state = np.array([xs[1], xs[0]])
    for t in range(1, 30):
        state = m @ state
        assert state[0] == pytest.approx(xs[t + 1], rel=1e-10, abs=1e-14)


def test_heavy_ball_parameters_give_the_accelerated_rate_everywhere():
    big, small = 100.0, 1.0
    lr, gamma = analysis.heavy_ball_parameters(big, small)
    rate = (10 - 1) / (10 + 1)
    assert math.sqrt(gamma) == pytest.approx(rate)
    radii = [analysis.spectral_radius(analysis.momentum_iteration_matrix(lr, gamma, lam)) for lam in np.linspace(small, big, 50)]
    assert max(radii) == pytest.approx(rate, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9])
def test_stability_bounds_of_momentum_and_nesterov(gamma):
    big = 10.0
    for bound, matrix in ((analysis.momentum_max_lr(big, gamma), analysis.momentum_iteration_matrix),
                          (analysis.nesterov_max_lr(big, gamma), analysis.nesterov_iteration_matrix)):
        assert analysis.spectral_radius(matrix(0.999 * bound, gamma, big)) < 1.0
        assert analysis.spectral_radius(matrix(1.001 * bound, gamma, big)) > 1.0
    assert analysis.momentum_max_lr(big, gamma) / analysis.nesterov_max_lr(big, gamma) == pytest.approx(1 + 2 * gamma)
    assert analysis.momentum_effective_lr(0.1, gamma) == pytest.approx(0.1 / (1 - gamma))


# --- schedules ------------------------------------------------------------------------


def test_schedules():
    assert lr_schedules.inverse_time_lr(0, 0.5, 0.1) == 0.5
    assert lr_schedules.inverse_time_lr(10, 0.5, 0.1) == pytest.approx(0.25)
    assert [lr_schedules.step_decay_lr(t, 1.0, 0.5, 3) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    with pytest.raises(ValueError, match="factor"):
        lr_schedules.step_decay_lr(1, 1.0, 1.5, 3)
    with pytest.raises(ValueError, match="every"):
        lr_schedules.step_decay_lr(1, 1.0, 0.5, 0)
    with pytest.raises(ValueError, match="t must"):
        lr_schedules.inverse_time_lr(-1, 1.0, 0.1)
    with pytest.raises(ValueError, match="lr0"):
        lr_schedules.inverse_time_lr(1, -1.0, 0.1)


# --- mini-batch noise -------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 2, 3, 5, 6])
def test_minibatch_variance_is_exact_over_all_subsets(b):
    rng = np.random.default_rng(4)
    grads = rng.standard_normal((6, 2, 2))
    full = grads.mean(axis=0)
    subsets = list(itertools.combinations(range(6), b))
    exact = np.mean([np.sum((grads[list(s)].mean(axis=0) - full) ** 2) for s in subsets])
    assert analysis.minibatch_variance(analysis.per_example_variance(grads), b, 6) == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_sampled_minibatch_variance_estimates_the_formula():
    task = tasks.softmax_task(small_dataset(n=40))
    w = np.random.default_rng(5).standard_normal(task.x0.shape)
    sigma2 = analysis.per_example_variance(task.example_grads(w, np.arange(40)))
    for b in (1, 8):
        est = analysis.sampled_minibatch_variance(task, w, b, np.random.default_rng(6), 4000)
        assert est == pytest.approx(analysis.minibatch_variance(sigma2, b, 40), rel=0.08)
    with pytest.raises(ValueError, match="batch_size"):
        analysis.minibatch_variance(1.0, 0, 10)


# --- saddle ---------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [1e-2, 1e-6, 1e-10])
def test_saddle_escape_time_matches_gradient_descent(delta):
    prob = saddle_problem((1.0, delta))
    xs = run(sgd_step, prob.x0, prob.grad, 400, lr=0.1).xs
    measured = int(np.argmax(np.abs(xs[:, 1]) >= 0.5))
    assert measured == math.ceil(problems.saddle_escape_steps(delta, 0.1, 0.5))
    assert problems.steps_within(xs, 0.5) <= measured
    assert problems.steps_within(np.zeros((3, 2)), 0.1) == 3


# --- features and runner --------------------------------------------------------------------


def test_feature_design_scales_and_frequencies():
    a = problems.feature_design(20000, [1.0, 10.0, 1.0], [1.0, 1.0, 0.05], np.random.default_rng(0))
    assert np.mean(a[:, 2] != 0) == pytest.approx(0.05, abs=0.01)
    np.testing.assert_allclose(np.mean(a**2, axis=0), [1.0, 100.0, 0.05], rtol=0.1)
    with pytest.raises(ValueError, match="frequencies"):
        problems.feature_design(10, [1.0], [0.0], np.random.default_rng(0))


def test_run_logged_agrees_with_run_and_uses_the_schedule():
    prob = problems.quadratic_problem([1.0, 5.0], [1.0, 1.0])
    full = run(nesterov_step, prob.x0, prob.grad, 25, loss_fn=prob.loss, lr=0.1, momentum=0.9)
    logged = reference.run_logged(nesterov_step, prob.x0, prob.grad, 25, log_fn=prob.loss, log_every=10, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(logged.x, full.xs[-1])
    np.testing.assert_array_equal(logged.t, [0, 10, 20, 25])
    np.testing.assert_allclose(logged.values, full.losses[[0, 10, 20, 25]])
    assert logged.seconds.shape == (4,) and np.all(np.diff(logged.seconds) >= 0)

    sched = reference.run_logged(sgd_step, prob.x0, prob.grad, 6, log_fn=prob.loss, lr_schedule=lambda t: 0.1 / (t + 1))
    np.testing.assert_allclose(sched.lrs, [0.1 / (t + 1) for t in range(6)])
    x = prob.x0.copy()
    for t in range(6):
        x, _ = sgd_step(x, prob.grad(x), lr=0.1 / (t + 1))
    np.testing.assert_array_equal(sched.x, x)

    kept = reference.run_logged(adagrad_step, prob.x0, prob.grad, 4, log_fn=prob.loss, keep_states=True, lr=0.1)
    assert [s.t for s in kept.states] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="either lr or lr_schedule"):
        reference.run_logged(sgd_step, prob.x0, prob.grad, 3, log_fn=prob.loss, lr=0.1, lr_schedule=lambda t: 0.1)


def test_run_logged_walks_minibatches_like_run():
    task = tasks.softmax_task(small_dataset())
    a = run(sgd_step, task.x0, minibatch_grad_fn(task.example_grads, task.n, 4, np.random.default_rng(0)), 20, lr=0.1)
    b = reference.run_logged(
        sgd_step, task.x0, minibatch_grad_fn(task.example_grads, task.n, 4, np.random.default_rng(0)), 20,
        log_fn=task.loss, log_every=5, lr=0.1,
    )
    np.testing.assert_array_equal(a.xs[-1], b.x)


def test_first_order_decrease_is_the_limit_of_the_actual_decrease():
    prob = problems.quadratic_problem([1.0, 3.0], [1.0, -1.0])
    g = prob.grad(prob.x0)
    for lr in (1e-3, 1e-5):
        actual = prob.loss(prob.x0) - prob.loss(prob.x0 - lr * g)
        assert actual / analysis.first_order_decrease(g, lr) == pytest.approx(1.0, abs=3 * lr)


def test_sgd_stationary_variance_matches_the_exact_recursion():
    lr, lam, s2 = 0.1, 2.0, 0.5
    m = 0.0
    for _ in range(2000):
        m = (1 - lr * lam) ** 2 * m + lr**2 * s2
    assert analysis.sgd_stationary_variance(lr, lam, s2) == pytest.approx(m, rel=1e-12)
    with pytest.raises(ValueError, match="lr \\* curvature"):
        analysis.sgd_stationary_variance(1.0, 2.0, 1.0)


def test_eps_placement_ratio_matches_torch_adagrad():
    for g in (1.0, 1e-3, 1e-5, 1e-8):
        x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adagrad([x], lr=0.1, eps=1e-10)
        x.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        ours, _ = adagrad_step(np.zeros(1), np.array([g]), lr=0.1, eps=1e-10)
        ratio = float(x.detach()[0]) / ours[0]
        assert ratio == pytest.approx(float(analysis.eps_placement_ratio(g * g, 1e-10)), rel=1e-10)
    assert analysis.eps_placement_ratio(np.array([4.0]), 0.0)[0] == 1.0
    with pytest.raises(ValueError, match="accumulator"):
        analysis.eps_placement_ratio(np.array([-1.0]), 1e-8)
