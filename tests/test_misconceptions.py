"""Tests of optbook.analysis.misconceptions: the seed documents' formulas and code behaviours.

Expected values are worked out by hand from the printed formulas, or come from
an independent implementation (optbook.reference.adam, torch.optim.Adafactor,
torch.nn.utils.clip_grad_norm_), never from the function under test.
"""

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optbook.analysis import misconceptions as mc
from optbook.reference import adafactor as af
from optbook.reference import adam

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


def test_every_public_function_has_a_symbol_or_is_a_helper():
    for name in mc.__all__:
        obj = getattr(mc, name)
        if inspect.isfunction(obj) and name not in mc.__helpers__:
            assert hasattr(obj, "__book_symbol__"), name


# --- the article's printed formulas -------------------------------------------------------


def test_article_step_size_by_hand():
    # alpha / sqrt(1 - beta2^t): t=1, beta2=0.99 -> 1e-3 / sqrt(0.01) = 1e-2.
    assert mc.article_step_size(1e-3, 0.99, 1) == pytest.approx(1e-2, rel=1e-12)
    # t=2: 1 - 0.99^2 = 0.0199.
    assert mc.article_step_size(1e-3, 0.99, 2) == pytest.approx(1e-3 / math.sqrt(0.0199), rel=1e-12)
    assert mc.article_step_size(1e-3, 0.99, 10_000) == pytest.approx(1e-3, rel=1e-12)
    assert mc.article_step_size(0.5, 0.0, 3) == 0.5


def test_article_step_size_is_adams_with_beta1_set_to_beta2():
    for t in (1, 2, 7, 100, 5000):
        for b2 in (0.9, 0.99, 0.999):
            assert mc.article_step_size(1e-3, b2, t) == pytest.approx(adam.combined_step_size(1e-3, b2, b2, t), rel=1e-12)
    # ... and not Adam's with its usual beta1 = 0.9, beta2 = 0.999: at t = 1 they differ by a factor 100.
    ratio = mc.article_step_size(1e-3, 0.999, 1) / adam.combined_step_size(1e-3, 0.9, 0.999, 1)
    assert ratio == pytest.approx(0.1 / 0.001, rel=1e-9)


def test_article_step_size_is_one_scalar():
    assert isinstance(mc.article_step_size(1e-3, 0.99, 5), float)


@pytest.mark.parametrize("bad", [dict(beta2=1.0), dict(beta2=-0.1), dict(t=0), dict(t=1.5), dict(alpha=float("nan"))])
def test_article_step_size_rejects_bad_input(bad):
    kwargs = dict(alpha=1e-3, beta2=0.99, t=1) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        mc.article_step_size(**kwargs)


def test_article_gradient_clip_by_hand():
    g = np.array([-5.0, -0.5, 0.0, 0.5, 5.0])
    np.testing.assert_array_equal(mc.article_gradient_clip(g, 1.0), [-5.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(mc.article_gradient_clip(g, 10.0), [-0.5, -0.05, 0.0, 0.05, 0.5])
    with pytest.raises(ValueError, match="clip_ratio"):
        mc.article_gradient_clip(g, 0.0)


@given(arrays(np.float64, st.integers(1, 8), elements=finite))
def test_article_gradient_clip_is_not_odd(g):
    # A clip that treated signs alike would satisfy clip(-g) = -clip(g); this one fails whenever some |g_i| > 1.
    odd = np.array_equal(mc.article_gradient_clip(-g, 1.0), -mc.article_gradient_clip(g, 1.0))
    assert odd == bool(np.all(np.abs(g) <= 1.0))


def test_global_norm_clip_matches_torch():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 3)) * 3
    t = torch.tensor(g)
    t.grad = t.clone()
    torch.nn.utils.clip_grad_norm_([t], max_norm=1.0)
    np.testing.assert_allclose(mc.global_norm_clip(g, 1.0), t.grad.numpy(), rtol=1e-6)  # torch adds 1e-6 to the norm
    small = g / 100
    np.testing.assert_array_equal(mc.global_norm_clip(small, 1.0), small)
    np.testing.assert_array_equal(mc.global_norm_clip(np.zeros(3), 1.0), np.zeros(3))


def test_cosine_similarity_by_hand():
    assert mc.cosine_similarity([1, 0], [0, 2]) == 0.0
    assert mc.cosine_similarity([1, 1], [2, 2]) == pytest.approx(1.0)
    assert mc.cosine_similarity([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="zero"):
        mc.cosine_similarity([0, 0], [1, 1])
    with pytest.raises(ValueError, match="match"):
        mc.cosine_similarity([1, 0], [1, 1, 1])


# --- the article's code, as a rule -----------------------------------------------------


def test_unfloored_step_size_is_zero_at_zero_and_lr_times_rms_otherwise():
    assert mc.unfloored_step_size(np.zeros((3, 3)), 1e-2) == 0.0
    assert mc.unfloored_step_size(np.array([3.0, 4.0]), 0.1) == pytest.approx(0.1 * math.sqrt(12.5))
    # the paper's step size at the same point and t = 1 is floored at eps2
    assert af.step_size(np.zeros((3, 3)), 1e-2, 1e-3) == pytest.approx(1e-5)


def test_epsilon_shifted_update_by_hand():
    np.testing.assert_allclose(mc.epsilon_shifted_update([2.0, -3.0], [4.0, 9.0], 1.0), [2 / 3, -3 / 4])
    with pytest.raises(ValueError, match="eps"):
        mc.epsilon_shifted_update([1.0], [1.0], -1.0)


def test_article_code_state_numbers():
    assert mc.article_code_state_numbers((4096, 1024)) == 5120
    assert mc.article_code_state_numbers((768,)) == 768
    assert mc.article_code_state_numbers((256, 256, 3, 3)) == 256 * 256 * 9  # not factored at rank 4
    assert mc.article_code_state_numbers(()) == 1


def test_effective_step_sizes_of_a_factored_estimate_are_rank_one():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(6, 5))
    v_factored = af.factored_second_moment(af.row_statistic(None, g, 0.0), af.column_statistic(None, g, 0.0))
    assert np.linalg.matrix_rank(mc.effective_step_sizes(1e-2, v_factored)) == 1
    assert np.linalg.matrix_rank(mc.effective_step_sizes(1e-2, g**2)) == 5
    np.testing.assert_allclose(mc.effective_step_sizes(2.0, np.array([4.0, 1.0])), [1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        mc.effective_step_sizes(1.0, np.array([-1.0]))


def _article_by_hand_two_steps(x0, g1, g2, lr, beta2, d):
    """The article's code written out for two steps on a 2 x 2 matrix with the row/column MEANS it uses."""
    x = x0.copy()
    row, col = np.zeros(2), np.zeros(2)
    for g in (g1, g2):
        g2_ = g * g
        row = beta2 * row + (1 - beta2) * g2_.mean(axis=1)
        col = beta2 * col + (1 - beta2) * g2_.mean(axis=0)
        v = np.outer(row, col) / row.mean()
        u = g / np.sqrt(v)
        u = u / max(1.0, np.sqrt(np.mean(u**2)) / d)
        x = x - lr * np.sqrt(np.mean(x**2)) * u
    return x


def test_fixed_decay_step_matches_the_rule_written_out():
    x0 = np.array([[1.0, -2.0], [0.5, 3.0]])
    g1 = np.array([[0.1, -0.4], [0.3, 0.2]])
    g2 = np.array([[-0.2, 0.1], [0.5, -0.3]])
    expected = _article_by_hand_two_steps(x0, g1, g2, lr=1e-2, beta2=0.999, d=1.0)
    state = mc.FixedDecayState()
    x = mc.fixed_decay_adafactor_step(x0, g1, state, eps=0.0)
    x = mc.fixed_decay_adafactor_step(x, g2, state, eps=0.0)
    np.testing.assert_allclose(x, expected, rtol=1e-13)
    assert state.t == 2 and state.numbers() == 4


def test_fixed_decay_zero_init_never_moves_but_the_paper_does():
    grad = lambda x: x - 1.0  # noqa: E731
    x_article, _ = mc.fixed_decay_adafactor_run(np.zeros((3, 4)), grad, 20)
    assert np.all(x_article == 0.0)
    x_paper, _ = af.run(np.zeros((3, 4)), grad, 20)
    assert np.all(x_paper > 0)
    # the first paper step is exactly eps2 * rho_1 = 1e-5 per entry (G = -1 is rank one: U = -1)
    x1, _ = af.run(np.zeros((3, 4)), grad, 1)
    np.testing.assert_allclose(x1, 1e-5, rtol=1e-12)
    # torch.optim.Adafactor (which has the floor) agrees
    p = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adafactor([p])
    p.grad = torch.full((3, 4), -1.0, dtype=torch.float64)
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), 1e-5, rtol=1e-12)


def test_fixed_decay_first_unclipped_update_is_inflated_by_one_over_sqrt_one_minus_beta2():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(5,))
    state = mc.FixedDecayState()
    x = mc.fixed_decay_adafactor_step(np.ones(5), g, state, lr=1.0, beta2=0.999, eps=0.0, d=np.inf)
    # RMS(U_1) = 1/sqrt(1 - beta2) for a vector; step = lr * RMS(X0) = 1
    assert af.rms(np.ones(5) - x) == pytest.approx(1 / math.sqrt(1 - 0.999), rel=1e-12)
    # and the paper's beta2hat_1 = 0 gives RMS(U_1) = 1 exactly
    v1 = af.second_moment_vector(None, g, af.second_moment_decay(1), eps1=0.0)
    assert af.rms(af.normalized_update(g, v1)) == pytest.approx(1.0, rel=1e-12)


def test_fixed_decay_rank3_keeps_full_state():
    state = mc.FixedDecayState()
    mc.fixed_decay_adafactor_step(np.ones((2, 3, 4)), np.ones((2, 3, 4)), state)
    assert state.numbers() == 24 == mc.article_code_state_numbers((2, 3, 4))
    with pytest.raises(ValueError, match="shape"):
        mc.fixed_decay_adafactor_step(np.ones((2, 3)), np.ones((3, 2)), state)
    with pytest.raises(ValueError, match="beta2"):
        mc.fixed_decay_adafactor_step(np.ones(3), np.ones(3), mc.FixedDecayState(), beta2=1.0)


# --- the lecture's slide ----------------------------------------------------------------


@given(
    st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
        lambda s: st.lists(arrays(np.float64, s, elements=finite), min_size=1, max_size=4)
    )
)
def test_lecture_normalisation_equals_the_papers_on_statistics_from_gradients(grads):
    r = c = None
    for t, g in enumerate(grads, start=1):
        b = af.second_moment_decay(t)
        r, c = af.row_statistic(r, g, b), af.column_statistic(c, g, b)
    np.testing.assert_allclose(mc.lecture_factored_second_moment(r, c), af.factored_second_moment(r, c), rtol=1e-12)


def test_lecture_normalisation_differs_for_unrelated_statistics_by_the_ratio_of_sums():
    r = np.array([1.0, 2.0, 3.0])
    c = np.array([4.0, 5.0])
    lecture = mc.lecture_factored_second_moment(r, c)
    paper = af.factored_second_moment(r, c)
    np.testing.assert_allclose(lecture, np.outer(r, c) / 9.0)
    np.testing.assert_allclose(lecture / paper, 6.0 / 9.0)


def test_lecture_update_with_alpha_rho_is_the_papers_step():
    rng = np.random.default_rng(4)
    theta = rng.normal(size=(4, 3)) * 0.05
    u = rng.normal(size=(4, 3)) * 2
    rho = 1e-2
    paper = af.parameter_update(theta, af.step_size(theta, rho), af.clipped_update(u))
    np.testing.assert_allclose(mc.lecture_update(theta, u, rho), paper, rtol=1e-14)
    # with the paper's alpha_t the parameter scale enters twice
    double = mc.lecture_update(theta, u, af.step_size(theta, rho))
    ratio = af.rms(double - theta) / af.rms(paper - theta)
    assert ratio == pytest.approx(af.rms(theta), rel=1e-12)


def test_value_clip_matches_torch_and_is_odd():
    g = np.array([-5.0, -0.5, 0.0, 0.5, 5.0])
    t = torch.tensor(g)
    t.grad = t.clone()
    torch.nn.utils.clip_grad_value_([t], clip_value=1.0)
    np.testing.assert_array_equal(mc.value_clip(g, 1.0), t.grad.numpy())
    np.testing.assert_array_equal(mc.value_clip(-g, 1.0), -mc.value_clip(g, 1.0))
    with pytest.raises(ValueError, match="clip_value"):
        mc.value_clip(g, -1.0)
