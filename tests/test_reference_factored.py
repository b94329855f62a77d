"""Tests of optbook.reference.factored: the I-divergence, its rank-one minimiser, and the factored update.

Expected values are worked out by hand, or come from an independent route
(scipy's numerical minimiser, eigenvalues of V V^T for Eckart-Young, the
materialised V-hat of optbook.reference.adafactor, torch.optim.Adafactor's
stored row and column means).
"""

import math
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optbook.reference import adafactor as af
from optbook.reference import factored as fa

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


def positive_matrices(min_side=1, max_side=6):
    shape = st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side))
    return shape.flatmap(lambda s: arrays(np.float64, s, elements=positive))


# --- the divergence and the error measures ------------------------------------------------


def test_idivergence_hand_computed_value():
    # V = [1, 2], W = [2, 1]: (1 log 1/2 - 1 + 2) + (2 log 2 - 2 + 1) = log 2
    assert fa.idivergence(np.array([[1.0, 2.0]]), np.array([[2.0, 1.0]])) == pytest.approx(math.log(2.0))


def test_idivergence_zero_conventions():
    # V_ij = 0 contributes W_ij; V_ij > 0 with W_ij = 0 is infinite.
    assert fa.idivergence(np.array([[0.0, 1.0]]), np.array([[3.0, 1.0]])) == pytest.approx(3.0)
    assert fa.idivergence(np.array([[1.0, 1.0]]), np.array([[0.0, 1.0]])) == math.inf
    with pytest.raises(ValueError, match="non-negative"):
        fa.idivergence(np.array([[-1.0]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="same shape"):
        fa.idivergence(np.ones((2, 2)), np.ones((2, 3)))


@given(positive_matrices(), positive_matrices())
def test_idivergence_is_nonnegative_and_zero_only_on_the_diagonal(v, w):
    if v.shape != w.shape:
        w = np.resize(w, v.shape)
    assert fa.idivergence(v, v) == pytest.approx(0.0, abs=1e-9 * v.sum())
    d = fa.idivergence(v, w)
    assert d >= -1e-9 * (v.sum() + w.sum())
    if not np.allclose(v, w, rtol=1e-3):
        assert d > 0


def test_relative_errors_are_scale_free_and_match_hand_values():
    v = np.array([[3.0, 0.0], [0.0, 4.0]])
    w = np.zeros((2, 2))
    assert fa.frobenius_error(v, w) == pytest.approx(5.0)
    assert fa.relative_frobenius_error(v, w) == pytest.approx(1.0)
    w2 = np.array([[1.0, 1.0], [1.0, 1.0]])
    for k in (1e-6, 1.0, 1e6):
        assert fa.relative_frobenius_error(k * v, k * w2) == pytest.approx(fa.relative_frobenius_error(v, w2))
        assert fa.relative_idivergence(k * v, k * w2) == pytest.approx(fa.relative_idivergence(v, w2))
    with pytest.raises(ValueError, match="zero"):
        fa.relative_frobenius_error(np.zeros((2, 2)), w2)


# --- the rank-one I-divergence minimiser ----------------------------------------------------


def test_rank_one_fit_recovers_a_rank_one_matrix_exactly():
    a, b = np.array([1.0, 2.0, 0.5]), np.array([4.0, 0.25])
    v = np.outer(a, b)
    np.testing.assert_allclose(fa.rank_one_idivergence_fit(v), v, rtol=1e-14)
    assert fa.rank_one_idivergence_minimum(v) == pytest.approx(0.0, abs=1e-12)


def test_rank_one_fit_hand_example():
    # row sums (1, 3), column sums (2, 2), total 4  ->  W = [[0.5, 0.5], [1.5, 1.5]]
    v = np.array([[1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(fa.rank_one_idivergence_fit(v), [[0.5, 0.5], [1.5, 1.5]])


@given(positive_matrices(2, 6))
def test_rank_one_fit_keeps_marginals_and_equals_adafactor_vhat(v):
    w = fa.rank_one_idivergence_fit(v)
    np.testing.assert_allclose(w.sum(axis=1), v.sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(w.sum(axis=0), v.sum(axis=0), rtol=1e-10)
    vhat = af.factored_second_moment(v.sum(axis=1), v.sum(axis=0))
    np.testing.assert_allclose(w, vhat, rtol=1e-12)


@given(positive_matrices(2, 5), st.integers(0, 2**31 - 1))
def test_no_perturbed_rank_one_matrix_does_better(v, seed):
    rng = np.random.default_rng(seed)
    best = fa.idivergence(v, fa.rank_one_idivergence_fit(v))
    a, b = v.sum(axis=1), v.sum(axis=0) / v.sum()
    for scale in (1e-3, 1e-1, 1.0):
        a2 = a * np.exp(scale * rng.standard_normal(a.shape))
        b2 = b * np.exp(scale * rng.standard_normal(b.shape))
        assert fa.idivergence(v, np.outer(a2, b2)) >= best - 1e-9 * v.sum()


def test_rank_one_fit_matches_numerical_minimisation():
    rng = np.random.default_rng(1)
    for shape in [(3, 4), (7, 5), (10, 8)]:
        v = rng.standard_normal(shape) ** 2 + 1e-3
        w_closed = fa.rank_one_idivergence_fit(v)
        w_num = fa.fit_rank_one_numerically(v)
        d_closed, d_num = fa.idivergence(v, w_closed), fa.idivergence(v, w_num)
        assert d_num >= d_closed - 1e-9  # the closed form is never beaten
        assert d_num - d_closed < 1e-6
        np.testing.assert_allclose(w_num, w_closed, rtol=1e-4)


@given(positive_matrices(1, 6))
def test_minimum_value_formula_matches_divergence_at_the_fit(v):
    assert fa.rank_one_idivergence_minimum(v) == pytest.approx(
        fa.idivergence(v, fa.rank_one_idivergence_fit(v)), rel=1e-7, abs=1e-9 * v.sum()
    )


def test_minimum_value_is_total_times_mutual_information():
    # P = V/S = [[0.5, 0], [0, 0.5]]: row and column index are equal, I(P) = log 2.
    v = np.array([[3.0, 0.0], [0.0, 3.0]])
    assert fa.rank_one_idivergence_minimum(v) == pytest.approx(6.0 * math.log(2.0))


def test_rank_one_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        fa.rank_one_idivergence_fit(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="zero total"):
        fa.rank_one_idivergence_fit(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="matrix"):
        fa.rank_one_idivergence_fit(np.ones(3))


def test_batched_fit_equals_per_matrix_fit():
    rng = np.random.default_rng(2)
    v = rng.random((3, 4, 5))
    w = fa.rank_one_idivergence_fit(v)
    for k in range(3):
        np.testing.assert_allclose(w[k], fa.rank_one_idivergence_fit(v[k]))


# --- the Frobenius competitor ---------------------------------------------------------------


@given(positive_matrices(1, 6))
def test_frobenius_fit_achieves_the_eckart_young_error(v):
    w = fa.rank_one_frobenius_fit(v)
    assert np.all(w >= 0)
    assert np.linalg.matrix_rank(w, tol=1e-9 * max(1.0, np.abs(w).max())) <= 1
    # Independent route: sigma_1^2 is the top eigenvalue of V V^T.
    eig = np.linalg.eigvalsh(v @ v.T)
    expected_sq = max(float(np.sum(v**2) - eig[-1]), 0.0)
    assert fa.frobenius_error(v, w) ** 2 == pytest.approx(expected_sq, abs=1e-8 * np.sum(v**2))


def test_frobenius_fit_is_no_worse_than_idivergence_fit_in_frobenius_and_vice_versa():
    rng = np.random.default_rng(3)
    for _ in range(5):
        v = rng.standard_normal((6, 4)) ** 2
        wf, wk = fa.rank_one_frobenius_fit(v), fa.rank_one_idivergence_fit(v)
        assert fa.frobenius_error(v, wf) <= fa.frobenius_error(v, wk) + 1e-12
        assert fa.idivergence(v, wk) <= fa.idivergence(v, wf) + 1e-12


# --- sums versus means, and the update without V-hat -------------------------------------------


@given(positive_matrices(1, 6))
def test_means_with_mean_normaliser_equal_sums(v):
    n, m = v.shape
    r, c = v.sum(axis=1), v.sum(axis=0)
    np.testing.assert_allclose(
        fa.factored_second_moment_from_means(r / m, c / n), af.factored_second_moment(r, c), rtol=1e-12
    )


def test_means_formula_reads_torch_adafactor_state():
    # torch.optim.Adafactor stores row and column *means* of G^2 (after one step, beta2hat_1 = 0).
    rng = np.random.default_rng(4)
    g = rng.standard_normal((5, 3))
    p = torch.nn.Parameter(torch.zeros(5, 3, dtype=torch.float64))
    opt = torch.optim.Adafactor([p])
    p.grad = torch.tensor(g)
    opt.step()
    row_var = opt.state[p]["row_var"].numpy().ravel()
    col_var = opt.state[p]["col_var"].numpy().ravel()
    r = af.row_statistic(None, g, 0.0)
    c = af.column_statistic(None, g, 0.0)
    np.testing.assert_allclose(fa.factored_second_moment_from_means(row_var, col_var), af.factored_second_moment(r, c), rtol=1e-12)


@given(
    st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
        lambda s: arrays(np.float64, s, elements=st.floats(-1e2, 1e2, allow_nan=False))
    )
)
def test_factored_update_equals_materialised_update(g):
    r = af.row_statistic(None, g, 0.0, eps1=1e-12)
    c = af.column_statistic(None, g, 0.0, eps1=1e-12)
    expected = af.normalized_update(g, af.factored_second_moment(r, c))
    np.testing.assert_allclose(fa.factored_update(g, r, c), expected, rtol=1e-10, atol=1e-12)


def test_factored_update_on_a_batch_and_shape_errors():
    rng = np.random.default_rng(5)
    g = rng.standard_normal((2, 4, 3))
    r, c = af.row_statistic(None, g, 0.0), af.column_statistic(None, g, 0.0)
    np.testing.assert_allclose(fa.factored_update(g, r, c), af.normalized_update(g, af.factored_second_moment(r, c)))
    with pytest.raises(ValueError, match="need R of shape"):
        fa.factored_update(g, c, r)


def test_factored_update_allocates_no_second_n_by_m_array():
    rng = np.random.default_rng(6)
    n, m = 400, 500
    g = rng.standard_normal((n, m))
    r, c = af.row_statistic(None, g, 0.0), af.column_statistic(None, g, 0.0)
    matrix_bytes = n * m * 8
    tracemalloc.start()
    tracemalloc.reset_peak()
    u = fa.factored_update(g, r, c)
    _, peak_factored = tracemalloc.get_traced_memory()
    del u
    tracemalloc.reset_peak()
    u = af.normalized_update(g, af.factored_second_moment(r, c))
    _, peak_materialised = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_factored < 1.2 * matrix_bytes  # the result, plus O(n + m)
    assert peak_materialised > 1.9 * matrix_bytes  # V-hat (and its square root) on top of the result


def test_second_moment_numel():
    assert fa.second_moment_numel((768, 3072)) == 768 + 3072
    assert fa.second_moment_numel((768, 3072), factored=False) == 768 * 3072
    assert fa.second_moment_numel((10,)) == 10
    assert fa.second_moment_numel((4, 5, 6)) == 4 * (5 + 6)
    with pytest.raises(ValueError):
        fa.second_moment_numel((-1, 3))
