"""Run any reference update rule for a number of steps and keep the path it takes.

Every ``*_step`` function of :mod:`optbook.reference` has the signature
``step(x, g, state, **hyperparameters) -> (x_new, state_new)`` and carries
``step.init_state(x0)``, the state before the first step. Nesterov's rule also
carries ``step.gradient_at(x, state, **hyperparameters)``, the point where
the gradient must be taken. :func:`run` uses both, so one call traces any
rule on a test function::

    from optbook.reference import run, adam_step
    path = run(adam_step, x0, grad, 200, loss_fn=loss, lr=0.1)
    path.xs        # (201, *x0.shape): x0 and every iterate
    path.losses    # (201,): the loss at each of them
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from optbook.reference._checks import as_array

__all__ = ["Trajectory", "run"]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("run",)


@dataclass(frozen=True)
class Trajectory:
    """What :func:`run` returns.

    Attributes:
        xs: the start point and every iterate, shape ``(steps + 1, *x0.shape)``.
        losses: ``loss_fn`` at each row of ``xs``, shape ``(steps + 1,)``, or
            ``None`` without a ``loss_fn``.
        state: the rule's state after the last step (pass it back to
            :func:`run` to continue).
        states: with ``keep_states=True``, the state after each step (a list
            of ``steps`` states, e.g. to plot Adagrad's :math:`G_t`); else ``None``.
    """

    xs: np.ndarray
    losses: np.ndarray | None
    state: Any
    states: list | None = None


def run(
    step_fn: Callable[..., tuple[np.ndarray, Any]],
    x0: np.ndarray,
    grad_fn: Callable[[np.ndarray], np.ndarray],
    steps: int,
    *,
    loss_fn: Callable[[np.ndarray], float] | None = None,
    state: Any = None,
    keep_states: bool = False,
    stop_when: Callable[[np.ndarray], bool] | None = None,
    **hyperparameters,
) -> Trajectory:
    """Apply ``step_fn`` ``steps`` times from ``x0`` with gradients from ``grad_fn(x)``.

    ``state`` defaults to ``step_fn.init_state(x0)``; pass one to continue a
    previous run. ``hyperparameters`` go to every call of ``step_fn``
    (``lr=0.1``, ``betas=(0.9, 0.99)``, ...). The gradient is taken at
    ``step_fn.gradient_at(x, state, **hyperparameters)`` when the rule defines
    it (Nesterov's look-ahead), else at ``x``. A stochastic ``grad_fn`` such as
    :func:`optbook.reference.gd.minibatch_grad_fn` gives a stochastic path.
    ``keep_states=True`` also returns the state after every step. ``stop_when(x)``,
    if given, is asked after every step and ends the run early when it returns
    true (the trajectory then has fewer than ``steps + 1`` points).
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}.")
    if not callable(step_fn) or not callable(grad_fn):
        raise TypeError("step_fn and grad_fn must be callables: step_fn(x, g, state, **hp), grad_fn(x).")
    if stop_when is not None and not callable(stop_when):
        raise TypeError(f"stop_when must be a function of the iterate returning a bool, or None; got {type(stop_when).__name__}.")
    x = np.array(as_array(x0, "x0"), copy=True)
    if state is None and hasattr(step_fn, "init_state"):
        state = step_fn.init_state(x)
    gradient_at = getattr(step_fn, "gradient_at", None)
    xs = [x]
    states = [] if keep_states else None
    for _ in range(int(steps)):
        point = x if gradient_at is None else gradient_at(x, state, **hyperparameters)
        x, state = step_fn(x, grad_fn(point), state, **hyperparameters)
        xs.append(np.asarray(x, dtype=np.float64))
        if keep_states:
            states.append(state)
        if stop_when is not None and stop_when(xs[-1]):
            break
    xs_arr = np.stack(xs)
    losses = None if loss_fn is None else np.array([float(loss_fn(xi)) for xi in xs_arr])
    return Trajectory(xs=xs_arr, losses=losses, state=state, states=states)
