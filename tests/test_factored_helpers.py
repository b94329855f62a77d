"""optbook.reference.factored: random_test_matrix and factoring_error_report."""

import numpy as np
import pytest

from optbook.reference import adafactor as af
from optbook.reference import factored as fa


@pytest.mark.parametrize("kind", fa.TEST_MATRIX_KINDS)
def test_every_kind_is_a_non_negative_matrix_of_the_shape(kind):
    v = fa.random_test_matrix(kind, (5, 7), np.random.default_rng(1))
    assert v.shape == (5, 7) and np.all(v >= 0)


def test_draws_follow_the_documented_formulas():
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(fa.random_test_matrix("squared Gaussian", (3, 4), a), b.standard_normal((3, 4)) ** 2)
    row, z, col = b.gamma(2.0, size=(3, 1)), b.standard_normal((3, 4)), b.gamma(2.0, size=(1, 4))
    np.testing.assert_array_equal(fa.random_test_matrix("row/column scaled", (3, 4), a), (row * z * col) ** 2)


def test_the_rank_one_kind_has_rank_one():
    v = fa.random_test_matrix("rank one", (6, 4), np.random.default_rng(0))
    s = np.linalg.svd(v, compute_uv=False)
    assert s[1] < 1e-12 * s[0]


def test_bad_kind_or_shape():
    with pytest.raises(ValueError, match="kind"):
        fa.random_test_matrix("uniform", (2, 2), np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        fa.random_test_matrix("rank one", (2, 0), np.random.default_rng(0))


def test_report_of_an_exactly_rank_one_average_has_zero_factoring_error():
    # V = a b^T with every gradient of the form s a^(1/2) b^(1/2): the factored estimate is exact
    a, b = np.array([1.0, 4.0, 9.0]), np.array([1.0, 0.25])
    g = np.sqrt(np.outer(a, b))
    v = np.outer(a, b)
    report = fa.factoring_error_report(g, v, v.sum(axis=1), v.sum(axis=0), eps1=0.0)
    assert list(report) == ["D(V || V_hat)", "D(G2 || V_hat)", "D(G2 || V)", "F(V, V_hat)", "F(V, SVD)",
                            "F(G2, V_hat)", "F(G2, V)", "update error", "mass ratio"]
    for key in ("D(V || V_hat)", "D(G2 || V_hat)", "D(G2 || V)", "F(V, V_hat)", "F(V, SVD)", "update error"):
        assert abs(report[key]) < 1e-12, key
    assert report["mass ratio"] == pytest.approx(1.0, rel=1e-15)


def test_report_against_a_hand_computed_case():
    g = np.ones((2, 2))
    v = np.array([[2.0, 1.0], [1.0, 2.0]])  # row and column sums 3, total 6: V_hat = 9/6 = 1.5 everywhere
    report = fa.factoring_error_report(g, v, v.sum(axis=1), v.sum(axis=0), eps1=0.0)
    assert report["F(V, V_hat)"] == pytest.approx(1 / np.sqrt(10), rel=1e-14)  # ||V - 1.5|| = 1, ||V|| = sqrt(10)
    assert report["F(G2, V_hat)"] == pytest.approx(0.5, rel=1e-14)
    assert report["mass ratio"] == pytest.approx(1.5, rel=1e-15)
    exact, factored = 1 / np.sqrt(v), np.full((2, 2), 1 / np.sqrt(1.5))
    assert report["update error"] == pytest.approx(np.linalg.norm(exact - factored) / np.linalg.norm(exact), rel=1e-14)
    # I-divergence of V from the constant 1.5: sum v log(v / 1.5) - v + 1.5, over sum v
    d = sum(x * np.log(x / 1.5) - x + 1.5 for x in (2.0, 1.0, 1.0, 2.0)) / 6
    assert report["D(V || V_hat)"] == pytest.approx(d, rel=1e-12)


def test_report_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        fa.factoring_error_report(np.ones((2, 3)), np.ones((2, 3)), np.ones(3), np.ones(3))
