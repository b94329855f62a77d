"""optbook.analysis.errors: running-mean error curves against means taken one by one."""

import numpy as np
import pytest

from optbook.analysis.errors import mean_running_mean_errors, running_mean_errors


def test_two_samples_by_hand():
    exact = np.array([[1.0, 2.0], [3.0, 4.0]])
    samples = np.stack([2 * exact, 0 * exact])  # mean of the first: 2h (error 1); of both: h (error 0)
    assert running_mean_errors(samples, exact, [1, 2]) == pytest.approx([1.0, 0.0], abs=1e-15)


def test_agrees_with_direct_means():
    rng = np.random.default_rng(3)
    exact = rng.standard_normal(7) + 3.0
    samples = exact + rng.standard_normal((50, 7))
    counts = [1, 5, 17, 50]
    direct = [np.linalg.norm(samples[:s].mean(axis=0) - exact) / np.linalg.norm(exact) for s in counts]
    assert np.allclose(running_mean_errors(samples, exact, np.array(counts)), direct, rtol=1e-12)


def test_mean_over_repetitions_uses_seeds_in_turn():
    exact = np.ones(4)
    draw = lambda r: exact + r.standard_normal(4)  # noqa: E731
    counts = np.array([1, 8])
    by_hand = []
    for seed in (10, 11, 12):
        r = np.random.default_rng(seed)
        samples = np.stack([draw(r) for _ in range(8)])
        by_hand.append([np.linalg.norm(samples[:s].mean(axis=0) - exact) / 2.0 for s in counts])
    got = mean_running_mean_errors(draw, exact, counts, n_samples=8, repetitions=3, seed=10)
    assert np.allclose(got, np.mean(by_hand, axis=0), rtol=1e-12)


def test_an_exact_estimator_has_no_error():
    exact = np.array([0.5, -2.0])
    got = mean_running_mean_errors(lambda r: exact.copy(), exact, [1, 2, 4], n_samples=4, repetitions=2, seed=0)
    assert np.all(got == 0.0)


def test_rejects_bad_input():
    exact = np.ones(3)
    with pytest.raises(ValueError, match="counts"):
        running_mean_errors(np.ones((4, 3)), exact, [1, 5])
    with pytest.raises(TypeError, match="counts"):
        running_mean_errors(np.ones((4, 3)), exact, [1.5])
    with pytest.raises(ValueError, match="samples must have shape"):
        running_mean_errors(np.ones((4, 2)), exact, [1])
    with pytest.raises(ValueError, match="repetitions"):
        mean_running_mean_errors(lambda r: exact, exact, [1], n_samples=2, repetitions=0, seed=0)
    with pytest.raises(TypeError, match="draw"):
        mean_running_mean_errors(None, exact, [1], n_samples=2, repetitions=1, seed=0)
