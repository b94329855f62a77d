"""Tests of optbook.reference.adafactor: each formula on its own, then properties.

Expected values are derived by hand from the formulas (not copied from the code
under test), or come from an independent implementation (torch.optim.Adafactor).
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optbook.reference import adafactor as af

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


def matrices(min_side=1, max_side=6):
    shape = st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side))
    return shape.flatmap(lambda s: arrays(np.float64, s, elements=finite))


# --- one test per formula ---------------------------------------------------------------


def test_relative_step_size_caps_then_decays():
    assert af.relative_step_size(1) == 1e-2
    assert af.relative_step_size(10_000) == 1e-2  # 1/sqrt(10^4) = 10^-2: the two branches meet
    assert af.relative_step_size(40_000) == pytest.approx(0.005)
    with pytest.raises(ValueError, match="t must be >= 1"):
        af.relative_step_size(0)


def test_rms_matches_definition():
    assert af.rms(np.array([3.0, 4.0])) == pytest.approx(np.sqrt(12.5))
    assert af.rms(np.zeros((0, 3))) == 0.0
    assert af.rms(-np.ones((2, 2))) == 1.0


def test_step_size_uses_eps2_floor_for_zero_parameters():
    assert af.step_size(np.zeros(5), 0.01, eps2=1e-3) == pytest.approx(1e-5)
    assert af.step_size(np.full(4, 2.0), 0.01, eps2=1e-3) == pytest.approx(0.02)


def test_second_moment_decay_is_zero_at_first_step_and_tends_to_one():
    assert af.second_moment_decay(1) == 0.0
    assert af.second_moment_decay(2) == pytest.approx(1 - 2**-0.8)
    assert 0.999 < af.second_moment_decay(10**5) < 1.0


def test_eps1_is_added_before_averaging():
    g = np.array([[0.0, 2.0]])
    assert np.array_equal(af.regularized_squared_gradient(g, eps1=0.5), np.array([[0.5, 4.5]]))


def test_vector_second_moment_is_ema_of_squares():
    v1 = af.second_moment_vector(None, np.array([1.0, 2.0]), beta2hat=0.0, eps1=0.0)
    assert np.array_equal(v1, [1.0, 4.0])
    v2 = af.second_moment_vector(v1, np.array([3.0, 0.0]), beta2hat=0.25, eps1=0.0)
    assert np.allclose(v2, [0.25 * 1 + 0.75 * 9, 0.25 * 4 + 0.75 * 0])


def test_row_and_column_statistics_are_sums():
    g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    r = af.row_statistic(None, g, 0.0, eps1=0.0)
    c = af.column_statistic(None, g, 0.0, eps1=0.0)
    assert np.array_equal(r, [1 + 4 + 9, 16 + 25 + 36])
    assert np.array_equal(c, [1 + 16, 4 + 25, 9 + 36])
    r2 = af.row_statistic(r, np.zeros_like(g), 0.5, eps1=0.0)
    assert np.array_equal(r2, 0.5 * r)


def test_factored_second_moment_formula():
    r, c = np.array([1.0, 3.0]), np.array([2.0, 2.0])
    expected = np.array([[1 * 2, 1 * 2], [3 * 2, 3 * 2]]) / 4.0
    assert np.allclose(af.factored_second_moment(r, c), expected)


def test_normalized_and_clipped_update():
    u = af.normalized_update(np.array([2.0, -3.0]), np.array([4.0, 9.0]))
    assert np.array_equal(u, [1.0, -1.0])
    big = np.array([3.0, -3.0, 3.0, -3.0])  # RMS 3
    assert np.allclose(af.clipped_update(big, d=1.0), big / 3.0)
    small = np.array([0.5, -0.5])
    assert np.array_equal(af.clipped_update(small, d=1.0), small)
    with pytest.raises(ValueError, match="d"):
        af.clipped_update(big, d=0.0)


def test_parameter_update():
    assert np.array_equal(af.parameter_update(np.array([1.0]), 0.5, np.array([2.0])), [0.0])


def test_hyperparameters_reject_bad_values():
    for kwargs, word in [({"eps1": 0.0}, "eps1"), ({"eps2": -1.0}, "eps2"), ({"d": 0.0}, "d"),
                         ({"decay_exponent": 1.5}, "decay_exponent"), ({"rho_cap": 0.0}, "rho_cap")]:
        with pytest.raises(ValueError, match=word):
            af.AdafactorHyperparameters(**kwargs)


def test_step_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="g has shape"):
        af.step(np.zeros((2, 2)), np.zeros(4), af.AdafactorState())


def test_zero_initialised_parameter_moves():
    x, _ = af.run(np.zeros((3, 2)), lambda x: x - 1.0, steps=3)
    assert np.all(x > 0)


# --- agreement with an independent implementation -----------------------------------------


@pytest.mark.parametrize("shape", [(7,), (5, 3), (2, 4, 6)])
def test_matches_torch_adafactor_float64(shape):
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=shape)
    grads = [rng.normal(size=shape) for _ in range(12)]
    x_ref, state = x0.copy(), af.AdafactorState()
    p = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.Adafactor([p])
    for g in grads:
        x_ref = af.step(x_ref, g, state)
        p.grad = torch.tensor(g)
        opt.step()
    rel = np.abs(p.detach().numpy() - x_ref).max() / np.abs(x_ref).max()
    assert rel <= 1e-12


# --- properties -------------------------------------------------------------------------------


@given(st.tuples(arrays(np.float64, st.integers(1, 5), elements=st.floats(0.01, 10)),
                 arrays(np.float64, st.integers(1, 5), elements=st.floats(0.01, 10))))
def test_vhat_is_exact_for_rank_one_squares(ab):
    a, b = ab
    g2 = np.outer(a, b)  # a rank-one, non-negative G^2
    g = np.sqrt(g2)
    r = af.row_statistic(None, g, 0.0, eps1=0.0)
    c = af.column_statistic(None, g, 0.0, eps1=0.0)
    assert np.allclose(af.factored_second_moment(r, c), g2, rtol=1e-12, atol=0)


@given(matrices(), st.floats(0.1, 10))
def test_clipped_update_rms_is_at_most_d(g, d):
    r = af.row_statistic(None, g, 0.0)
    c = af.column_statistic(None, g, 0.0)
    u_hat = af.clipped_update(af.normalized_update(g, af.factored_second_moment(r, c)), d)
    assert af.rms(u_hat) <= d * (1 + 1e-12)


@given(matrices(), st.floats(1e-3, 1e3))
def test_clipped_update_is_invariant_to_gradient_scale(g, scale):
    # Keep the gradient well above the eps1 floor, where invariance is exact up to rounding.
    g = g + np.sign(g) * 1e-3 + (g == 0) * 1e-3

    def u_hat(grad):
        r = af.row_statistic(None, grad, 0.0)
        c = af.column_statistic(None, grad, 0.0)
        return af.clipped_update(af.normalized_update(grad, af.factored_second_moment(r, c)))

    assert np.allclose(u_hat(scale * g), u_hat(g), rtol=1e-9, atol=1e-12)


@given(matrices(2, 5), st.floats(0.1, 10), st.floats(0.1, 10))
def test_sums_and_means_give_the_same_vhat(g, a, b):
    r = af.row_statistic(None, g, 0.0)
    c = af.column_statistic(None, g, 0.0)
    n, m = g.shape
    r_mean, c_mean = r / m, c / n
    from_means = np.outer(r_mean, c_mean) / r_mean.mean()
    assert np.allclose(from_means, af.factored_second_moment(r, c), rtol=1e-12)
    # Any scaling of R drops out; a scaling of C carries through once.
    assert np.allclose(af.factored_second_moment(a * r, b * c), b * af.factored_second_moment(r, c), rtol=1e-12)
