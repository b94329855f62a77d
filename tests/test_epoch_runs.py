"""optbook.tasks.epoch_runs: epochs of (mini-)batch training, checked against hand-written loops."""

import numpy as np
import pytest

from optbook.problems.analytic import FiniteSum
from optbook.reference import sgd_step
from optbook.tasks.epoch_runs import run_epochs, steps_per_epoch


def scalar_means(targets):
    """J_i(x) = (x - a_i)^2 / 2 for scalar targets a_i: gradients x - a_i, minimum at mean(a)."""
    a = np.asarray(targets, dtype=float)
    return FiniteSum(
        name="means",
        n=len(a),
        loss=lambda x: float(np.mean((x[0] - a) ** 2) / 2),
        grad=lambda x: np.array([x[0] - a.mean()]),
        example_grads=lambda x, idx: (x[0] - a[idx])[:, None],
        x0=np.array([0.0]),
    )


@pytest.mark.parametrize("n, b, expected", [(10, 3, 4), (10, 10, 1), (10, 1, 10), (1797, 32, 57)])
def test_steps_per_epoch_counts_the_short_last_batch(n, b, expected):
    assert steps_per_epoch(n, b) == expected


@pytest.mark.parametrize("n, b", [(10, 0), (10, 11), (0, 1), (10, 2.5), (True, 1)])
def test_steps_per_epoch_rejects_bad_sizes(n, b):
    with pytest.raises(ValueError):
        steps_per_epoch(n, b)


def test_full_batch_is_gradient_descent_in_closed_form():
    # With the exact gradient, x_t - mean(a) = (1 - lr)^t (x_0 - mean(a)).
    task = scalar_means([1.0, 2.0, 6.0])
    r = run_epochs(sgd_step, task, 3, 5, log_fn=lambda x: float(x[0]), lr=0.25)
    t = np.arange(6)
    np.testing.assert_allclose(r.values, 3.0 - 3.0 * 0.75**t, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(r.t, t)


def test_minibatches_follow_a_fresh_permutation_each_epoch():
    a = np.array([0.5, -1.0, 3.0, 2.0, 7.0])
    task = scalar_means(a)
    lr, b, epochs, seed = 0.3, 2, 3, 4
    r = run_epochs(sgd_step, task, b, epochs, seed=seed, log_fn=lambda x: float(x[0]), lr=lr)
    # Hand loop: every epoch permutes the indices and cuts them into batches of 2, 2 and 1.
    rng, x, expected = np.random.default_rng(seed), 0.0, [0.0]
    for _ in range(epochs):
        order = rng.permutation(len(a))
        for start in range(0, len(a), b):
            x -= lr * np.mean(x - a[order[start:start + b]])
        expected.append(x)
    np.testing.assert_allclose(r.values, expected, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(r.t, [0, 3, 6, 9])


def test_identical_examples_make_every_batch_size_agree():
    # If every example is the same, a batch of any size has the full gradient.
    task = scalar_means([2.0] * 6)
    for b in (1, 4, 6):
        r = run_epochs(sgd_step, task, b, 2, log_fn=lambda x: float(x[0]), lr=0.1)
        steps = r.t[-1]
        assert steps == 2 * int(np.ceil(6 / b))
        assert abs(r.values[-1] - (2.0 - 2.0 * 0.9**steps)) < 1e-14


def test_log_every_epochs_and_schedule():
    task = scalar_means([1.0, 3.0])
    r = run_epochs(sgd_step, task, 1, 4, log_fn=task.loss, log_every_epochs=2, lr_schedule=lambda t: 0.1 / (1 + t))
    np.testing.assert_array_equal(r.t, [0, 4, 8])
    np.testing.assert_allclose(r.lrs, [0.1 / (1 + t) for t in range(8)], rtol=0, atol=0)


def test_bad_arguments_are_named():
    task = scalar_means([1.0, 3.0])
    with pytest.raises(TypeError, match="example_grads"):
        run_epochs(sgd_step, object(), 1, 1, log_fn=float)
    with pytest.raises(ValueError, match="batch_size"):
        run_epochs(sgd_step, task, 3, 1, log_fn=task.loss, lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        run_epochs(sgd_step, task, 1, -1, log_fn=task.loss, lr=0.1)
    with pytest.raises(ValueError, match="log_every_epochs"):
        run_epochs(sgd_step, task, 1, 2, log_fn=task.loss, log_every_epochs=0, lr=0.1)
