"""optbook.analysis.relative_growth.multiplicative_growth_steps: steps for the tight RMS bound to grow by a factor."""

import math

import pytest

from optbook.analysis import relative_growth as rg


def test_growth_steps_is_the_log_ratio_of_the_chapter():
    # ln 10 / ln 1.01 and ln 100 / ln 1.01, with log1p for the denominator (a different evaluation)
    assert rg.multiplicative_growth_steps(10) == pytest.approx(math.log(10) / math.log1p(0.01), rel=1e-13)
    assert rg.multiplicative_growth_steps(100) == pytest.approx(2 * math.log(10) / math.log1p(0.01), rel=1e-13)
    assert rg.multiplicative_growth_steps(1) == 0.0
    # with d = 2 the factor per step is 1 + 2 rho
    assert rg.multiplicative_growth_steps(10, d=2.0, rho_cap=0.05) == pytest.approx(math.log(10) / math.log(1.1), rel=1e-13)


@pytest.mark.parametrize("factor", [10.0, 100.0, 7.3])
def test_the_bound_reaches_the_factor_at_the_next_whole_step(factor):
    """Iterate the bound's recursion from b_0 = 1 > eps2 (every step multiplies by 1 + rho d): it first reaches
    `factor` at the whole step just above the formula's real number."""
    k = rg.multiplicative_growth_steps(factor)
    reached = rg.steps_to_reach(factor, 1.0, eps2=1e-3)
    assert reached == math.ceil(k)
    assert rg.tight_scale_bound(reached, 1.0) >= factor > rg.tight_scale_bound(reached - 1, 1.0)


def test_shifting_eps2_shifts_the_zero_start_by_the_formula():
    """From X_0 = 0 the bound needs about 1/rho + ln(r/eps2)/ln(1 + rho) steps to reach r: multiplying eps2 by 10
    takes ln 10/ln 1.01 steps off (to within the one step of rounding at each end)."""
    base = rg.steps_to_reach(0.05, eps2=1e-4)
    up = rg.steps_to_reach(0.05, eps2=1e-3)
    assert abs((base - up) - rg.multiplicative_growth_steps(10)) <= 2


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="factor must be a finite number >= 1"):
        rg.multiplicative_growth_steps(0.5)
    with pytest.raises(ValueError, match="factor"):
        rg.multiplicative_growth_steps(math.inf)
    with pytest.raises(TypeError, match="factor must be a number"):
        rg.multiplicative_growth_steps("10")
    with pytest.raises(TypeError, match="factor must be a number"):
        rg.multiplicative_growth_steps(True)
    with pytest.raises(ValueError, match="rho_cap"):
        rg.multiplicative_growth_steps(10, rho_cap=0.0)
    with pytest.raises(ValueError, match="d must be"):
        rg.multiplicative_growth_steps(10, d=-1.0)
