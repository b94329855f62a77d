r"""Comparing an estimate with the exact value.

:func:`relative_error` compares one estimate; :func:`running_mean_errors` follows the
error of the average of the first :math:`S` of a stack of random estimates, and
:func:`mean_running_mean_errors` averages that curve over independent repetitions.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_same_shape

__all__ = [
    "relative_error",
    "running_mean_errors",
    "mean_running_mean_errors",
    "running_mean_error_curves",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "running_mean_errors",
    "mean_running_mean_errors",
    "running_mean_error_curves",
)


@symbol(r"\lVert \hat h - h\rVert / \lVert h\rVert", "relative error of an estimate")
def relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    r""":math:`\lVert\hat h - h\rVert_2/\lVert h\rVert_2` over all entries."""
    estimate, exact = as_array(estimate, "estimate"), as_array(exact, "exact")
    check_same_shape(exact, estimate, "estimate", "exact")
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


def _check_counts(counts, n_samples: int) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise TypeError("counts must be a 1-D sequence of whole numbers of samples, such as 2 ** np.arange(9).")
    if counts.min() < 1 or counts.max() > n_samples:
        raise ValueError(f"counts must lie between 1 and the number of samples, {n_samples}; got {counts.min()} to {counts.max()}.")
    return counts


def running_mean_errors(samples: np.ndarray, exact: np.ndarray, counts: Sequence[int]) -> list[float]:
    r""":math:`\lVert\bar h_S - h\rVert/\lVert h\rVert` for each :math:`S` in ``counts``, with :math:`\bar h_S = \frac1S\sum_{s\le S}\hat h_s`.

    ``samples`` stacks the estimates :math:`\hat h_1, \hat h_2, \dots` along its first
    axis, each of the shape of ``exact``. The running means come from one cumulative
    sum, so the curve costs one pass over the samples.
    """
    samples, exact = as_array(samples, "samples"), as_array(exact, "exact")
    if samples.shape[1:] != exact.shape:
        raise ValueError(f"samples must have shape (S, *exact.shape) = (S, *{exact.shape}), got {samples.shape}.")
    counts = _check_counts(counts, len(samples))
    divisors = np.arange(1, len(samples) + 1).reshape((-1,) + (1,) * exact.ndim)
    running = np.cumsum(samples, axis=0) / divisors
    return [relative_error(running[s - 1], exact) for s in counts]


def mean_running_mean_errors(
    draw: Callable[[np.random.Generator], np.ndarray],
    exact: np.ndarray,
    counts: Sequence[int],
    *,
    n_samples: int,
    repetitions: int,
    seed: int,
) -> np.ndarray:
    r"""The :func:`running_mean_errors` curve averaged over ``repetitions`` independent runs.

    Run ``r`` (``r = 0, 1, ...``) draws ``n_samples`` estimates with ``draw(rng)`` from
    ``rng = np.random.default_rng(seed + r)`` and measures the relative error of their
    running mean at each :math:`S` in ``counts``. Returns the mean over runs, one value per count.
    """
    return np.mean(running_mean_error_curves(draw, exact, counts, n_samples=n_samples, repetitions=repetitions,
                                             seed=seed), axis=0)


def running_mean_error_curves(
    draw: Callable[[np.random.Generator], np.ndarray],
    exact: np.ndarray,
    counts: Sequence[int],
    *,
    n_samples: int,
    repetitions: int,
    seed: int,
) -> np.ndarray:
    r"""The :func:`running_mean_errors` curve of each of the ``repetitions`` runs, shape ``(repetitions, len(counts))``.

    Run ``r`` draws ``n_samples`` estimates with ``draw(rng)`` from
    ``rng = np.random.default_rng(seed + r)``, so the first :math:`S` draws of a run, and
    its curve up to :math:`S`, do not depend on ``n_samples``. :func:`mean_running_mean_errors`
    is the mean of these rows.
    """
    if not callable(draw):
        raise TypeError("draw must be a callable rng -> one estimate (an array of the shape of exact).")
    if int(repetitions) != repetitions or repetitions < 1:
        raise ValueError(f"repetitions must be a whole number >= 1, got {repetitions!r}.")
    curves = []
    for rep in range(int(repetitions)):
        rng = np.random.default_rng(seed + rep)
        samples = np.stack([draw(rng) for _ in range(n_samples)])
        curves.append(running_mean_errors(samples, exact, counts))
    return np.array(curves, dtype=float)
