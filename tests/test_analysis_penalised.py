"""optbook.analysis.penalised: the L2-penalised minimiser against the closed form of ridge regression."""

import numpy as np
import pytest

from optbook.analysis.penalised import l2_penalised_minimiser


def _least_squares(a, b):
    return (lambda x: 0.5 * float(np.sum((a @ x - b) ** 2)), lambda x: a.T @ (a @ x - b))


@pytest.mark.parametrize("lam", [0.0, 0.1, 2.0])
def test_matches_ridge_closed_form(lam):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 5)), rng.standard_normal(20)
    loss, grad = _least_squares(a, b)
    # ridge regression: (A^T A + lam I) x = A^T b
    expected = np.linalg.solve(a.T @ a + lam * np.eye(5), a.T @ b)
    got = l2_penalised_minimiser(loss, grad, np.zeros(5), lam)
    assert np.abs(got - expected).max() < 1e-6


def test_keeps_the_shape_of_a_matrix_start():
    # J(W) = 1/2 |W - C|^2: the penalised minimiser is C / (1 + lam), entry by entry
    c = np.arange(6.0).reshape(3, 2)
    got = l2_penalised_minimiser(lambda w: 0.5 * float(np.sum((w - c) ** 2)), lambda w: w - c, np.zeros((3, 2)), 0.5)
    assert got.shape == (3, 2)
    assert np.abs(got - c / 1.5).max() < 1e-7


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="lam"):
        l2_penalised_minimiser(lambda x: 0.0, lambda x: x, np.zeros(2), -1.0)
    with pytest.raises(TypeError, match="callables"):
        l2_penalised_minimiser(1.0, lambda x: x, np.zeros(2), 0.1)
