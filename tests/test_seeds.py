"""optbook.analysis.seeds: mean and spread over seeds, and the rule for claiming a difference."""

import math
import statistics

import pytest

from optbook.analysis import seeds


def test_summary_is_the_sample_mean_and_sample_standard_deviation():
    values = [2.0, 4.0, 9.0]
    s = seeds.summarize(values)
    assert s.mean == pytest.approx(statistics.mean(values))
    assert s.std == pytest.approx(statistics.stdev(values))  # ddof = 1, computed by the standard library
    assert (s.min, s.max, s.n) == (2.0, 9.0, 3)


def test_fewer_than_three_seeds_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="at least 3"):
        seeds.summarize([1.0, 2.0])
    assert seeds.summarize([1.0, 2.0], min_seeds=2).n == 2
    with pytest.raises(TypeError, match="numbers"):
        seeds.summarize(["a", 1.0, 2.0])


def test_diverged_runs_are_infinite_and_never_separated_unless_all_finite_on_the_other_side():
    all_diverged = seeds.summarize([math.nan, math.inf, math.inf])
    assert all_diverged.mean == math.inf and all_diverged.std == 0.0
    assert all_diverged.format() == "diverged"
    some = seeds.summarize([1.0, math.inf, 1.2])
    assert some.mean == math.inf and some.std == math.inf
    fine = seeds.summarize([1.0, 1.1, 0.9])
    assert seeds.compare(fine, all_diverged) == "lower"
    assert seeds.compare(fine, some) == "within spread"
    assert seeds.compare(all_diverged, all_diverged) == "within spread"


def test_a_difference_is_claimed_only_beyond_the_sum_of_the_spreads():
    a = seeds.summarize([1.0, 1.1, 1.2])  # mean 1.1, std 0.1
    b_close = seeds.summarize([1.15, 1.2, 1.25])  # gap 0.1 < 0.1 + 0.05
    b_far = seeds.summarize([1.45, 1.5, 1.55])  # gap 0.4 > 0.15
    assert seeds.compare(a, b_close) == "within spread"
    assert seeds.compare(a, b_far) == "lower"
    assert seeds.compare(b_far, a) == "higher"
    with pytest.raises(TypeError, match="SeedSummary"):
        seeds.compare(a, (1.0, 0.1))


def test_format_and_summarize_runs():
    s = seeds.summarize([1.234, 1.244, 1.254])
    assert s.format() == "1.24 ± 0.01"
    out = seeds.summarize_runs({"x": [1.0, 2.0, 3.0], "y": {0: 4.0, 1: 5.0, 2: 6.0}})
    assert out["x"].mean == 2.0 and out["y"].mean == 5.0


def test_summarize_curves_is_summarize_at_every_point():
    curves = [[1.0, 2.0, 5.0], [3.0, 2.0, 7.0], [2.0, 2.0, 9.0]]
    mean, std = seeds.summarize_curves(curves)
    assert list(mean) == pytest.approx([2.0, 2.0, 7.0])  # column means by hand
    assert list(std) == pytest.approx([1.0, 0.0, 2.0])  # sample standard deviations by hand
    mean, std = seeds.summarize_curves([[1.0, math.nan], [2.0, 1.0], [3.0, 1.0]])
    assert mean[1] == math.inf and std[1] == math.inf
    with pytest.raises(ValueError, match="at least 3"):
        seeds.summarize_curves([[1.0], [2.0]])
    with pytest.raises(ValueError, match="same length"):
        seeds.summarize_curves([[1.0, 2.0], [2.0], [3.0, 1.0]])
    with pytest.raises(TypeError, match="numbers"):
        seeds.summarize_curves([[1.0, "x"], [2.0, 1.0], [3.0, 1.0]])


def test_the_documented_false_positive_rates_of_the_rule():
    """The module docstring's figures: about 8 % of identical-distribution pairs flagged with 3 seeds, 1.6 % with 5."""
    import numpy as np

    rng = np.random.default_rng(0)
    for n, expected in ((3, 0.082), (5, 0.016)):
        a, b = rng.standard_normal((2, 40_000, n))
        gap = np.abs(a.mean(1) - b.mean(1))
        flagged = np.mean(gap > a.std(1, ddof=1) + b.std(1, ddof=1))
        assert abs(flagged - expected) < 0.006, (n, flagged)


def test_compare_means_is_compare_on_numbers():
    a, b = seeds.summarize([1.0, 1.1, 1.2]), seeds.summarize([1.45, 1.5, 1.55])
    assert seeds.compare_means(a.mean, a.std, b.mean, b.std) == seeds.compare(a, b) == "lower"
    assert seeds.compare_means(1.5, 0.05, 1.1, 0.1) == "higher"  # 0.4 > 0.15, by hand
    assert seeds.compare_means(1.1, 0.1, 1.3, 0.1) == "within spread"  # 0.2 is not above 0.2
    assert seeds.compare_means(1.0, 0.1, math.inf, 0.0) == "lower"  # every seed of b diverged
    assert seeds.compare_means(1.0, 0.1, math.inf, math.inf) == "within spread"  # some seeds of b diverged
    assert seeds.compare_means(math.inf, 0.0, math.inf, 0.0) == "within spread"
    with pytest.raises(ValueError, match="std_a and std_b must be >= 0"):
        seeds.compare_means(1.0, -0.1, 2.0, 0.1)
    with pytest.raises(ValueError, match="std_a and std_b must be >= 0"):
        seeds.compare_means(1.0, 0.1, 2.0, math.nan)
    with pytest.raises(TypeError, match="must be numbers"):
        seeds.compare_means("1", 0.1, 2.0, 0.1)
