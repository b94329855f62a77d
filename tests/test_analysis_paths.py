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
