"""optbook.analysis.adam_bounds: Adam's direction is not bounded by 1; its true bound, checked on sequences."""

import math

import numpy as np
import pytest

from optbook.analysis.adam_bounds import adam_directions, adam_spike_ratio, adam_update_sup, adam_worst_case_gradients


def test_defaults_by_hand():
    assert adam_spike_ratio(0.9, 0.999) == pytest.approx(0.1 / math.sqrt(0.001))  # 3.162...
    assert adam_update_sup(0.9, 0.999) == pytest.approx(0.1 / math.sqrt(0.001 * (1 - 0.81 / 0.999)))  # 7.27...


def test_a_spike_after_zero_gradients_reaches_the_spike_ratio():
    g = np.r_[np.zeros(12000), 1.0]
    u = adam_directions(g)
    # bias corrections at t = 12001 are 1 to 1e-5; eps is negligible against sqrt(v) = 0.0316
    assert u[-1] == pytest.approx(adam_spike_ratio(0.9, 0.999), rel=1e-5)
    assert u[-1] > 3


def test_no_sequence_beats_the_sup_and_the_worst_case_approaches_it():
    rng = np.random.default_rng(0)
    sup = adam_update_sup(0.9, 0.999)
    for _ in range(5):
        g = rng.standard_normal(1500) * np.exp(rng.uniform(-3, 3, 1500))
        assert np.abs(adam_directions(g, eps=0.0)).max() <= sup * (1 + 1e-12)
    # eps = 1e-30 only keeps 0/0 away from the first steps, whose gradients underflow to 0
    u = adam_directions(adam_worst_case_gradients(12000, 0.9, 0.999), eps=1e-30)
    assert u[-1] == pytest.approx(sup, rel=1e-5)  # the bias correction's deficit is ~beta2**12000/2


def test_first_step_is_sign_of_the_gradient():
    assert adam_directions([-3.0], eps=0.0)[0] == pytest.approx(-1.0)


def test_errors():
    with pytest.raises(ValueError, match="beta1\\*\\*2 must be < beta2"):
        adam_update_sup(0.99, 0.9)
    with pytest.raises(ValueError, match="beta2"):
        adam_spike_ratio(0.9, 1.0)
    with pytest.raises(ValueError, match="steps"):
        adam_worst_case_gradients(0, 0.9, 0.999)
    with pytest.raises(ValueError, match="1-D"):
        adam_directions(np.ones((2, 2)))
