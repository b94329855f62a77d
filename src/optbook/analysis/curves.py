"""Loss curves of an iterative method on a problem with a starting point, a loss and a gradient."""

from __future__ import annotations

from numbers import Integral
from typing import Callable

import numpy as np

__all__ = ["loss_curve"]

# Public functions that run a method rather than compute a book symbol.
__helpers__ = ("loss_curve",)


def loss_curve(problem, update: Callable[[np.ndarray, np.ndarray], np.ndarray], steps: int) -> np.ndarray:
    """Losses :math:`f(X_0), f(X_1), \\dots, f(X_T)` of :math:`X_t = \\text{update}(X_{t-1}, \\nabla f(X_{t-1}))`.

    ``problem`` has ``x0``, ``loss(x)`` and ``grad(x)`` (e.g. a least-squares problem of
    :mod:`optbook.tasks.least_squares`); ``update(x, g)`` returns the next iterate and may
    keep its own state (an optimizer state bound with :func:`functools.partial`). The
    result has ``steps + 1`` entries; ``x0`` is copied, never changed.
    """
    for name in ("x0", "loss", "grad"):
        if not hasattr(problem, name):
            raise TypeError(f"problem must have x0, loss(x) and grad(x); it has no {name!r}.")
    if not callable(update):
        raise TypeError("update must be a function update(x, g) returning the next iterate.")
    if not isinstance(steps, Integral) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}.")
    x = np.array(problem.x0, copy=True)
    losses = [problem.loss(x)]
    for _ in range(steps):
        x = update(x, problem.grad(x))
        losses.append(problem.loss(x))
    return np.array(losses)
