r"""Statistics over seeds, and the rule for claiming that one configuration beats another.

A run of a stochastic experiment (random initial weights, random mini-batches) is one draw.
Repeating it with :math:`S \ge 3` seeds gives values :math:`v_1, \dots, v_S` of a final loss,
summarised by the mean and the sample standard deviation

.. math::

    \bar v = \frac1S \sum_{s=1}^{S} v_s, \qquad
    s_v = \sqrt{\frac{1}{S-1} \sum_{s=1}^{S} (v_s - \bar v)^2}.

The book claims that configuration :math:`a` is lower (better, for a loss) than :math:`b` only when
the gap between the means exceeds the sum of the two spreads,

.. math::

    \bar v_b - \bar v_a > s_a + s_b,

a simple screening rule, not a significance test. For two configurations whose values are draws of the
same normal distribution it reports a difference in about 8 % of comparisons with :math:`S = 3` seeds and
about 1.6 % with :math:`S = 5` (a two-sample *t*-test at the 5 % level needs a gap above :math:`2.27\,s`
for :math:`S = 3`, against :math:`2s` here). Otherwise the two are reported as *within the spread*, which
is not evidence that they are equal: with three seeds, the 95 % interval for the true standard deviation
runs from about :math:`0.52\,s` to :math:`6.3\,s`.
A run that diverged has the value :math:`+\infty`; its mean is :math:`+\infty` and its spread is
:math:`+\infty` when some seeds diverged and others did not, so it never counts as a separated result
except against a configuration that is finite for every seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["SeedSummary", "summarize", "compare", "compare_means", "summarize_runs", "summarize_curves", "MIN_SEEDS"]
__helpers__ = ("SeedSummary", "summarize", "compare", "compare_means", "summarize_runs", "summarize_curves", "MIN_SEEDS")

#: The fewest seeds a comparison between optimizers may rest on.
MIN_SEEDS = 3


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation, minimum and maximum of one quantity over seeds."""

    mean: float
    std: float
    min: float
    max: float
    n: int

    def __str__(self) -> str:
        return self.format()

    def format(self, digits: int = 3) -> str:
        """``"mean ± std"`` with ``digits`` significant digits in the mean (the std to the same decimal place)."""
        if not math.isfinite(self.mean):
            return "diverged" if self.min == math.inf else f"inf ({self.n} seeds, some diverged)"
        if not math.isfinite(self.std):
            return f"{self.mean:.{digits}g} ± inf"
        decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(self.mean))))) if self.mean != 0 else digits
        return f"{self.mean:.{decimals}f} ± {self.std:.{decimals}f}"


def summarize(values: Iterable[float], *, min_seeds: int = MIN_SEEDS) -> SeedSummary:
    r"""Mean :math:`\bar v`, sample standard deviation :math:`s_v`, min and max of ``values`` (one per seed).

    Non-finite values (a diverged run, NaN included) count as :math:`+\infty`. Raises ``ValueError`` for
    fewer than ``min_seeds`` values (the book's comparisons rest on at least three seeds).
    """
    try:
        v = np.array([float(x) for x in values], dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"values must be numbers, one per seed ({exc}).") from None
    if v.ndim != 1 or v.size < min_seeds:
        raise ValueError(f"values holds {v.size} seeds; a seed statistic needs at least {min_seeds} "
                         "(run more seeds, or pass min_seeds= for a deliberately smaller sample).")
    v[~np.isfinite(v)] = math.inf
    if np.all(np.isfinite(v)):
        mean, std = float(v.mean()), float(v.std(ddof=1))
    else:
        mean = math.inf
        std = 0.0 if np.all(v == math.inf) else math.inf
    return SeedSummary(mean=mean, std=std, min=float(v.min()), max=float(v.max()), n=int(v.size))


def compare(a: SeedSummary, b: SeedSummary) -> str:
    r"""``"lower"`` if :math:`\bar v_b - \bar v_a > s_a + s_b`, ``"higher"`` if :math:`\bar v_a - \bar v_b > s_a + s_b`,
    else ``"within spread"``: the book's rule for claiming a difference (lower is better for a loss).

    The rule itself is :func:`compare_means`, applied to the two summaries' means and spreads."""
    if not isinstance(a, SeedSummary) or not isinstance(b, SeedSummary):
        raise TypeError("compare takes two SeedSummary objects; make them with summarize(values).")
    return compare_means(a.mean, a.std, b.mean, b.std)


def compare_means(mean_a: float, std_a: float, mean_b: float, std_b: float) -> str:
    r""":func:`compare` for means :math:`\bar v_a, \bar v_b` and sample standard deviations :math:`s_a, s_b`
    given as numbers (for statistics kept in tables rather than as :class:`SeedSummary` objects).

    ``"lower"`` if :math:`\bar v_b - \bar v_a > s_a + s_b`, ``"higher"`` if :math:`\bar v_a - \bar v_b > s_a + s_b`,
    else ``"within spread"``. Two equal means (two runs that diverged for every seed included) and an
    infinite spread (some seeds diverged) are ``"within spread"``; a NaN mean compares as within the spread.
    Raises ``TypeError`` for a value that is not a number and ``ValueError`` for a negative or NaN spread.
    """
    values = (mean_a, std_a, mean_b, std_b)
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) for v in values):
        raise TypeError("mean_a, std_a, mean_b and std_b must be numbers (means and sample standard deviations "
                        f"over seeds), got {values!r}.")
    if not (std_a >= 0 and std_b >= 0):  # also refuses NaN
        raise ValueError(f"std_a and std_b must be >= 0 (sample standard deviations), got {std_a!r} and {std_b!r}.")
    if mean_a == mean_b:  # also two runs that diverged for every seed
        return "within spread"
    spread = std_a + std_b
    if math.isinf(spread):
        return "within spread"
    gap = mean_b - mean_a
    if gap > spread:
        return "lower"
    if -gap > spread:
        return "higher"
    return "within spread"


def summarize_runs(by_seed: Mapping[object, Sequence[float]] | Mapping[object, Mapping[int, float]],
                   *, min_seeds: int = MIN_SEEDS) -> dict[object, SeedSummary]:
    """:func:`summarize` for each configuration of ``by_seed`` (configuration -> values over seeds, as a
    sequence or as a mapping seed -> value)."""
    out = {}
    for key, vals in by_seed.items():
        out[key] = summarize(vals.values() if isinstance(vals, Mapping) else vals, min_seeds=min_seeds)
    return out


def summarize_curves(curves: Sequence[Sequence[float]], *, min_seeds: int = MIN_SEEDS) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean :math:`\bar v` and sample standard deviation :math:`s_v` over seeds at every point of a curve.

    ``curves`` holds one curve per seed (rows), all of the same length; column :math:`j` is summarised
    with :func:`summarize` (so a non-finite value makes that point's mean :math:`+\infty`). Returns two
    arrays of the curves' length, for a seed band :math:`\bar v \pm s_v` in a figure.
    """
    try:
        rows = [np.array([float(x) for x in row], dtype=float) for row in curves]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"curves must be a sequence of sequences of numbers, one curve per seed ({exc}).") from None
    if not rows or len({r.size for r in rows}) != 1 or rows[0].size == 0:
        raise ValueError("curves must hold at least one non-empty curve per seed, all of the same length "
                         f"(got lengths {[r.size for r in rows]}); evaluate every seed at the same steps.")
    stats = [summarize(column, min_seeds=min_seeds) for column in np.stack(rows).T]
    return np.array([s.mean for s in stats]), np.array([s.std for s in stats])
