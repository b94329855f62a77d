"""A small training harness shared by the chapters.

:func:`minimize` runs any ``torch.optim.Optimizer`` on a :class:`~optbook.problems.Problem`
(a NumPy loss with an exact gradient) in float64 and records every iterate, so
a torch optimizer and a NumPy reference can be traced side by side on the
same problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from optbook.problems import Problem


@dataclass
class Trace:
    """Iterates ``x[k]`` (``x[0]`` is the start) and losses ``loss[k] = f(x[k])``."""

    name: str
    x: np.ndarray
    loss: np.ndarray


def minimize(
    problem: Problem,
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    steps: int,
    name: str = "",
) -> Trace:
    """Run ``steps`` iterations of the optimizer built by ``make_optimizer([x])``.

    The gradient comes from ``problem.grad`` (exact, in float64), so the only
    thing under test is the optimizer's update rule.
    """
    xs_arr, optimizer = _iterates(problem, make_optimizer, steps)
    losses = np.array([problem.loss(xk) for xk in xs_arr], dtype=float)
    return Trace(name or type(optimizer).__name__, xs_arr, losses)


def minimize_iterates(
    problem: Problem,
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    steps: int,
) -> np.ndarray:
    """The iterates ``(steps + 1, *x0.shape)`` of :func:`minimize`, without evaluating the loss at each of them.

    ``minimize(...).x`` is the same array; use this when only the path is compared.
    """
    return _iterates(problem, make_optimizer, steps)[0]


def _iterates(problem: Problem, make_optimizer, steps: int):
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    x = torch.tensor(problem.x0, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([x])
    xs = [problem.x0.astype(float).copy()]
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=False)
        x.grad = torch.as_tensor(problem.grad(x.detach().numpy()), dtype=torch.float64).clone()
        optimizer.step()
        xs.append(x.detach().numpy().copy())
    return np.stack(xs), optimizer


def trace_reference(problem: Problem, step: Callable, steps: int, name: str, **kwargs) -> Trace:
    """Trace a NumPy reference ``step(x, g, state, ...) -> x`` that mutates ``state`` in place.

    ``kwargs`` must contain ``state``; the rest is passed to ``step``.
    """
    state = kwargs.pop("state")
    x = problem.x0.astype(float).copy()
    xs = [x.copy()]
    for _ in range(steps):
        x = step(x, problem.grad(x), state, **kwargs)
        xs.append(np.array(x, copy=True))
    xs_arr = np.stack(xs)
    return Trace(name, xs_arr, np.array([problem.loss(xk) for xk in xs_arr]))
