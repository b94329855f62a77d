"""optbook.analysis.step_sizes.median_step_size, against step sizes worked out by hand."""

import numpy as np
import pytest

from optbook.analysis.step_sizes import median_step_size
from optbook.reference import adagrad_step, rmsprop_step
from optbook.reference.adaptive import AdagradState, RMSPropState


def test_median_by_hand_skips_coordinates_that_never_saw_a_gradient():
    # Coordinate 1 stays zero: it must not enter the median, even though its step 1/sqrt(eps) is huge.
    states = [AdagradState(G=np.array([1.0, 0.0, 4.0])), AdagradState(G=np.array([4.0, 0.0, 16.0]))]
    # lr = 1, eps = 0: steps (1, 1/2) then (1/2, 1/4); the median of two values is their mean.
    np.testing.assert_allclose(median_step_size(states, 1.0, 0.0, "G"), [0.75, 0.375], rtol=1e-15)


def test_scales_with_lr_and_reads_rmsprop_states():
    states = [RMSPropState(Eg2=np.array([[9.0, 1.0], [4.0, 0.25]]))]
    # steps 2/3, 2, 1, 4 -> sorted 2/3, 1, 2, 4 -> median 1.5
    np.testing.assert_allclose(median_step_size(states, 2.0, 0.0, "Eg2"), [1.5], rtol=1e-15)


def test_adagrad_step_size_on_a_constant_gradient_decays_like_one_over_sqrt_t():
    # G_t = t g^2 for a constant gradient g, so eta / sqrt(G_t) = eta / (|g| sqrt(t)).
    x, state, states = np.zeros(3), None, []
    for _ in range(16):
        x, state = adagrad_step(x, np.array([2.0, 2.0, -2.0]), state, lr=0.5, eps=0.0)
        states.append(state)
    expected = 0.5 / (2.0 * np.sqrt(np.arange(1, 17)))
    np.testing.assert_allclose(median_step_size(states, 0.5, 0.0, "G"), expected, rtol=1e-14)


def test_bad_arguments():
    _, state = rmsprop_step(np.zeros(2), np.ones(2), lr=0.1)
    with pytest.raises(ValueError, match="at least one"):
        median_step_size([], 0.1, 1e-8, "Eg2")
    with pytest.raises(ValueError, match="accumulator"):
        median_step_size([state], 0.1, 1e-8, "G")
    with pytest.raises(ValueError, match="zero"):
        median_step_size([AdagradState(G=np.zeros(2))], 0.1, 1e-10, "G")
