"""Tests of optbook.tasks.least_squares against hand values, finite differences and scikit-learn."""

import math

import numpy as np
import pytest

from optbook.tasks import least_squares as ls


def small():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([1.0, 2.0, 0.0])
    return a, y


def test_loss_and_grad_hand_values():
    a, y = small()
    w = np.array([1.0, 1.0])
    # residuals A w - y = (0, 0, 2): loss = 0.5 * 4 / 3, grad = A^T r / 3 = (2, 2) / 3
    assert ls.loss(w, a, y) == pytest.approx(2.0 / 3.0)
    np.testing.assert_allclose(ls.grad(w, a, y), [2.0 / 3.0, 2.0 / 3.0])


def test_grad_matches_central_differences_on_real_data():
    train, _ = ls.diabetes_problem()
    rng = np.random.default_rng(0)
    w = rng.standard_normal(train.x0.shape)
    h = 1e-6
    fd = np.array([(train.loss(w + h * e) - train.loss(w - h * e)) / (2 * h) for e in np.eye(len(w))])
    np.testing.assert_allclose(train.grad(w), fd, rtol=1e-6, atol=1e-8)


def test_solution_matches_scikit_learn_and_zeroes_the_gradient():
    from sklearn.linear_model import LinearRegression

    train, _ = ls.diabetes_problem()
    a, y = train.loss.keywords["a"], train.loss.keywords["y"]
    w_star = ls.solution(a, y)
    np.testing.assert_allclose(w_star, LinearRegression(fit_intercept=False).fit(a, y).coef_, rtol=1e-8, atol=1e-10)
    assert np.abs(ls.grad(w_star, a, y)).max() < 1e-12
    np.testing.assert_array_equal(train.minimizer, w_star)


def test_standardised_data_need_no_intercept():
    from sklearn.linear_model import LinearRegression

    train, _ = ls.diabetes_problem()
    a, y = train.loss.keywords["a"], train.loss.keywords["y"]
    assert abs(LinearRegression(fit_intercept=True).fit(a, y).intercept_) < 1e-12


def test_hessian_and_smoothness_constant():
    a, _ = small()
    np.testing.assert_allclose(ls.hessian(a), [[2.0 / 3.0, 1.0 / 3.0], [1.0 / 3.0, 5.0 / 3.0]])
    # eigenvalues of [[2, 1], [1, 5]] / 3 are (7 +- sqrt(13)) / 6
    assert ls.smoothness_constant(a) == pytest.approx((7 + np.sqrt(13)) / 6)


def test_gradient_step_of_length_one_over_L_never_increases_the_loss():
    train, _ = ls.diabetes_problem()
    a = train.loss.keywords["a"]
    lr = 1.0 / ls.smoothness_constant(a)
    w = train.x0
    losses = [train.loss(w)]
    for _ in range(200):
        w = w - lr * train.grad(w)
        losses.append(train.loss(w))
    assert np.all(np.diff(losses) <= 1e-15)
    # and a step of 2.5/L makes it diverge along the top eigenvector
    w = train.x0
    for _ in range(200):
        w = w - 2.5 * lr * train.grad(w)
    assert train.loss(w) > 1e3


def test_rescaled_problem_changes_units_only():
    train, _ = ls.diabetes_problem(x0=np.linspace(-1, 1, 10))
    rng = np.random.default_rng(1)
    w = rng.standard_normal(10)
    for c in (0.125, 3.0, 1024.0):
        p = ls.rescaled(train, c)
        assert p.loss(c * w) == pytest.approx(train.loss(w), rel=1e-12)
        np.testing.assert_allclose(p.grad(c * w), train.grad(w) / c, rtol=1e-12)
        np.testing.assert_allclose(p.x0, c * train.x0)
        np.testing.assert_allclose(p.minimizer, c * train.minimizer)
    with pytest.raises(ValueError, match="positive"):
        ls.rescaled(train, 0.0)


def test_diabetes_problem_shapes_and_input_checks():
    train, test = ls.diabetes_problem()
    assert train.x0.shape == (10,) and np.all(train.x0 == 0)
    assert test.loss.keywords["a"].shape[1] == 10
    assert train.loss(train.x0) == pytest.approx(0.5)  # standardised target: mean y^2 = 1
    with pytest.raises(ValueError, match="design matrix"):
        ls.loss(np.zeros(2), np.ones((3, 2)), np.ones(4))
    with pytest.raises(ValueError, match="x0 must have shape"):
        ls.problem(np.ones((3, 2)), np.ones(3), x0=np.zeros(3))


def test_fixed_order_gives_the_same_values_and_is_the_default_off():
    a, y = small()
    w = np.array([1.0, 1.0])
    assert ls.loss(w, a, y, fixed_order=True) == pytest.approx(2.0 / 3.0)
    np.testing.assert_allclose(ls.grad(w, a, y, fixed_order=True), [2.0 / 3.0, 2.0 / 3.0])
    train, test = ls.diabetes_problem(fixed_order=True)
    plain, _ = ls.diabetes_problem()
    a, y = train.loss.keywords["a"], train.loss.keywords["y"]
    assert train.grad.keywords["fixed_order"] and test.loss.keywords["fixed_order"]
    assert not plain.grad.keywords["fixed_order"]
    rng = np.random.default_rng(1)
    for _ in range(5):
        w = rng.standard_normal(a.shape[1])
        np.testing.assert_allclose(train.grad(w), plain.grad(w), rtol=1e-12, atol=1e-14)
        assert train.loss(w) == pytest.approx(plain.loss(w), rel=1e-13)
        # the same sums as an exactly rounded reference, to rounding
        r = np.array([math.fsum(a[i] * w) for i in range(len(y))]) - y
        g = np.array([math.fsum(a[:, j] * r) for j in range(a.shape[1])]) / len(y)
        np.testing.assert_allclose(train.grad(w), g, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(train.minimizer, plain.minimizer)


def test_fixed_order_checks_the_shape_of_w():
    a, y = small()
    with pytest.raises(ValueError, match="shape"):
        ls.grad(np.zeros(3), a, y, fixed_order=True)
