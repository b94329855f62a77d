"""Tests of optbook.reference.averaging: EMA weights, Adam's bias-corrected weights, the Adam-style schedule.

Expected values are worked out by hand from the definitions, or produced by an
independent computation: running the recursion itself, or torch.optim.Adam.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optbook.reference import averaging as av

decays_st = st.lists(st.floats(0.0, 0.999), min_size=1, max_size=30)


def run_ema(decays, ys, v0=0.0):
    """The recursion V_t = b_t V_{t-1} + (1 - b_t) y_t, run directly."""
    v = v0
    for b, y in zip(decays, ys):
        v = b * v + (1 - b) * y
    return v


def test_ema_weights_by_hand():
    w = av.ema_weights([0.0, 0.5, 0.25])
    # w_{3,1} = 1 * 0.5 * 0.25, w_{3,2} = 0.5 * 0.25, w_{3,3} = 0.75
    assert np.allclose(w, [0.125, 0.125, 0.75], rtol=0, atol=1e-15)
    assert av.initial_weight([0.0, 0.5, 0.25]) == 0.0
    assert av.initial_weight([0.5, 0.5]) == 0.25


@given(decays_st, st.floats(-3, 3))
def test_weights_reproduce_the_recursion(decays, v0):
    ys = np.cos(np.arange(len(decays)) + 1.0) ** 2  # any fixed inputs
    w = av.ema_weights(decays)
    direct = run_ema(decays, ys, v0)
    assert np.isclose(np.dot(w, ys) + av.initial_weight(decays) * v0, direct, rtol=1e-12, atol=1e-12)


@given(st.lists(st.fractions(min_value=0, max_value=Fraction(49, 50), max_denominator=50), min_size=1, max_size=12))
def test_weights_and_initial_weight_sum_to_one_exactly(decays):
    w = av.ema_weights(decays)
    assert sum(w) + av.initial_weight(decays) == 1


def test_power_decay_weights_sum_to_one_at_every_step():
    decays = av.decay_sequence(av.PowerDecay(0.8), 500)
    assert decays[0] == 0.0
    for t in (1, 2, 10, 500):
        assert av.initial_weight(decays[:t]) == 0.0
        assert abs(av.ema_weights(decays[:t]).sum() - 1.0) < 1e-12


def test_constant_decay_leaves_beta_to_the_t_on_v0():
    decays = av.decay_sequence(av.ConstantDecay(0.9), 20)
    assert av.initial_weight(decays) == pytest.approx(0.9**20, rel=1e-12)
    assert av.ema_weights(decays).sum() == pytest.approx(1 - 0.9**20, rel=1e-12)


def test_adam_weights_by_hand():
    # beta2 = 1/2, t = 2: v_2 = (1/4) g1^2 + (1/2) g2^2, divided by 1 - 1/4
    w = av.adam_bias_corrected_weights(2, Fraction(1, 2))
    assert list(w) == [Fraction(1, 3), Fraction(2, 3)]
    assert np.allclose(av.adam_bias_corrected_weights(2, 0.5), [1 / 3, 2 / 3], rtol=1e-15)


def test_adam_weights_match_torch_adam():
    beta2, grads = 0.99, [0.3, -1.2, 0.7, 2.0, -0.1, 0.05]
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3, betas=(0.0, beta2))
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        v_hat = float(opt.state[p]["exp_avg_sq"][0]) / (1 - beta2**t)
        w = av.adam_bias_corrected_weights(t, beta2)
        assert np.dot(w, np.square(grads[:t])) == pytest.approx(v_hat, rel=1e-12)


def test_adam_style_decay_by_hand():
    assert av.adam_style_decay(1, 0.999) == 0.0
    assert av.adam_style_decay(2, Fraction(1, 2)) == Fraction(1, 3)  # (1/2)(1/2)/(3/4)
    assert av.adam_style_decay(10**6, 0.999) == pytest.approx(0.999, rel=1e-12)


@pytest.mark.parametrize("beta2", [Fraction(1, 2), Fraction(9, 10), Fraction(999, 1000)])
def test_adam_style_schedule_reproduces_adam_weights_exactly(beta2):
    for t in (1, 2, 7, 40):
        decays = av.decay_sequence(av.AdamStyleDecay(beta2), t)
        assert list(av.ema_weights(decays)) == list(av.adam_bias_corrected_weights(t, beta2))


def test_effective_window_and_mean_age():
    assert av.effective_window(np.full(7, 1 / 7)) == pytest.approx(7)
    assert av.effective_window([2.0, 2.0]) == pytest.approx(2)  # scale-free
    assert av.mean_age([0.0, 0.0, 1.0]) == 0.0  # only the newest input
    assert av.mean_age([1.0, 1.0, 1.0]) == pytest.approx(1.0)  # ages 2, 1, 0
    # an EMA with constant beta that has run for a long time: (1+b)/(1-b) and b/(1-b)
    w = av.ema_weights(av.decay_sequence(av.ConstantDecay(0.9), 2000))
    assert av.effective_window(w) == pytest.approx(19.0, rel=1e-9)
    assert av.mean_age(w) == pytest.approx(9.0, rel=1e-9)


def test_power_decay_window_grows_like_t_to_the_c():
    decays = av.decay_sequence(av.PowerDecay(0.5), 40_000)
    n1 = av.effective_window(av.ema_weights(decays[:10_000]))
    n2 = av.effective_window(av.ema_weights(decays))
    assert np.log(n2 / n1) / np.log(4) == pytest.approx(0.5, abs=0.03)


def test_validation():
    with pytest.raises(ValueError, match="beta2"):
        av.ConstantDecay(1.0)
    with pytest.raises(ValueError, match="beta2"):
        av.AdamStyleDecay(-0.1)
    with pytest.raises(ValueError, match="exponent"):
        av.PowerDecay(0.0)
    with pytest.raises(ValueError, match="t must"):
        av.adam_style_decay(0)
    with pytest.raises(ValueError, match="decay"):
        av.ema_weights([0.5, 1.0])
    with pytest.raises(ValueError, match="non-empty"):
        av.ema_weights([])
    with pytest.raises(ValueError, match="non-negative"):
        av.effective_window([0.0, 0.0])
