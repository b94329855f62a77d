r"""Mini-batch noise: :func:`per_example_variance` and :func:`minibatch_variance`, the
exact variance of a mini-batch gradient drawn without replacement, which
:func:`sampled_minibatch_variance` measures by sampling.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.problems.analytic import FiniteSum
from optbook.reference._checks import as_array

__all__ = [
    "per_example_variance",
    "minibatch_variance",
    "sampled_minibatch_variance",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "sampled_minibatch_variance",
)


@symbol(r"\sigma^2 = \tfrac1N\sum_i\lVert\nabla J_i - \nabla J\rVert^2", "spread of the per-example gradients")
def per_example_variance(example_grads: np.ndarray) -> float:
    r""":math:`\sigma^2 = \frac1N\sum_{i=1}^N\lVert\nabla J_i(\theta) - \nabla J(\theta)\rVert^2` from the stacked ``(N, ...)`` gradients."""
    g = as_array(example_grads, "example_grads")
    if g.ndim < 1 or g.shape[0] < 1:
        raise ValueError("example_grads must stack at least one gradient along its first axis.")
    dev = g - g.mean(axis=0)
    return float(np.sum(dev * dev) / g.shape[0])


@symbol(
    r"\mathbb E\lVert g_B - \nabla J\rVert^2 = \frac{\sigma^2}{b}\,\frac{N-b}{N-1}",
    "variance of a mini-batch gradient of b examples drawn without replacement",
)
def minibatch_variance(sigma2: float, batch_size: int, n: int) -> float:
    r""":math:`\frac{\sigma^2}{b}\frac{N-b}{N-1}`: :math:`\sigma^2` for :math:`b=1`, zero for :math:`b=N`."""
    if int(n) != n or n < 2:
        raise ValueError(f"n must be a whole number >= 2, got {n!r}.")
    if int(batch_size) != batch_size or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be a whole number in [1, n={n}], got {batch_size!r}.")
    if float(sigma2) < 0:
        raise ValueError(f"sigma2 must be >= 0, got {sigma2}.")
    return float(sigma2) / batch_size * (n - batch_size) / (n - 1)


def sampled_minibatch_variance(
    task: FiniteSum, x: np.ndarray, batch_size: int, rng: np.random.Generator, draws: int
) -> float:
    r"""Monte-Carlo estimate of :math:`\mathbb E\lVert g_B - \nabla J(x)\rVert^2` over ``draws`` mini-batches.

    Each batch is the first batch of a fresh epoch of
    :func:`optbook.reference.minibatch_indices` (a uniformly random subset of
    ``batch_size`` examples), and :math:`g_B` is
    :func:`optbook.reference.minibatch_gradient` on it.
    """
    from optbook.reference import minibatch_gradient, minibatch_indices

    if int(draws) != draws or draws < 1:
        raise ValueError(f"draws must be a whole number >= 1, got {draws!r}.")
    full = minibatch_gradient(task.example_grads, x, np.arange(task.n))
    total = 0.0
    for _ in range(int(draws)):
        idx = next(minibatch_indices(task.n, batch_size, rng))
        dev = minibatch_gradient(task.example_grads, x, idx) - full
        total += float(np.sum(dev * dev))
    return total / draws
