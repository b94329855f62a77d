"""optbook.analysis.paths.heading_error_at_fraction on paths whose angles are known by construction."""

import numpy as np
import pytest

from optbook.analysis.paths import heading_error_at_fraction


def test_straight_path_has_no_heading_error():
    path = np.linspace([0.0, 0.0], [3.0, 4.0], 11)
    assert heading_error_at_fraction(path, np.array([3.0, 4.0])) == pytest.approx(0.0, abs=1e-6)


def test_angle_is_taken_at_the_first_step_past_the_fraction():
    # minimum at (1, 0); the path first goes straight up: 0.1, then 0.3 >= 0.25 of the distance 1
    path = np.array([[0.0, 0.0], [0.0, 0.1], [0.0, 0.3], [1.0, 0.0]])
    assert heading_error_at_fraction(path, np.array([1.0, 0.0]), 0.25) == pytest.approx(90.0)
    # with half the distance required, the first step that gets there is the last one, on the minimum
    assert heading_error_at_fraction(path, np.array([1.0, 0.0]), 0.5) == pytest.approx(0.0, abs=1e-6)
    # a 45-degree first step
    diagonal = np.array([[0.0, 0.0], [0.5, 0.5]])
    assert heading_error_at_fraction(diagonal, np.array([2.0, 0.0]), 0.25) == pytest.approx(45.0)


def test_nan_when_the_path_never_gets_that_far():
    path = np.array([[0.0, 0.0], [0.1, 0.0]])
    assert np.isnan(heading_error_at_fraction(path, np.array([1.0, 0.0]), 0.25))


def test_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        heading_error_at_fraction(np.zeros((2, 2)), np.ones(2), 0.0)


def test_adagrad_escape_time_scales_like_one_over_eight_eta_squared():
    from optbook.analysis.paths import adagrad_saddle_escape_steps, escape_steps_over_lr, power_law_exponent
    from optbook.problems import saddle_problem

    lrs = np.array([0.005, 0.01, 0.02])
    steps = escape_steps_over_lr("Adagrad", saddle_problem((1.0, 1e-8)), lrs, 8000)
    # The measured escape times are within 5% of 1/(8 eta^2) at small eta, and the exponent is -2, not -1.
    assert np.allclose(steps, [adagrad_saddle_escape_steps(lr) for lr in lrs], rtol=0.05)
    assert abs(power_law_exponent(lrs, steps) + 2) < 0.05
    # and the same whatever y0 is: the first step is eta * sign(y0)
    assert abs(escape_steps_over_lr("Adagrad", saddle_problem((1.0, 1e-2)), [0.01], 3000)[0] - steps[1]) <= 2


def test_power_law_exponent_and_its_errors():
    from optbook.analysis.paths import adagrad_saddle_escape_steps, power_law_exponent

    assert power_law_exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        power_law_exponent([1, 2], [1, -1])
    with pytest.raises(ValueError, match="same length"):
        power_law_exponent([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="lr"):
        adagrad_saddle_escape_steps(0.0)
