"""optbook.notebook.bound: check a rounding-level difference against a bound and print the bound."""

import numpy as np
import pytest

from optbook.notebook import bound


def test_returns_the_limit_as_printed_with_g():
    assert bound(3e-13) == "1e-12"
    assert bound(np.float64(2e-7), 1e-6) == "1e-06"
    assert bound(0.0) == "1e-12"
    assert bound(1e-12) == "1e-12"  # the bound itself passes


def test_a_value_above_the_limit_fails():
    with pytest.raises(AssertionError, match="exceeds"):
        bound(2e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="limit"):
        bound(0.0, limit=0)
    with pytest.raises(TypeError, match="value"):
        bound("1e-13")
