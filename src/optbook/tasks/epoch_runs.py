"""Training a finite-sum task epoch by epoch, with one log entry per epoch (or per few epochs).

Part I compares optimizers by what they reach after a number of *epochs* (passes over the
``N`` training examples), so that a batch of ``N``, a mini-batch of ``b`` and a single
example are charged the same amount of data. :func:`run_epochs` turns that comparison into
one call: it draws shuffled mini-batches, counts ``ceil(N / b)`` steps per epoch and logs a
chosen quantity, e.g. the excess loss ``J(W) - J*``, at the end of every epoch.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from optbook.reference.gd import minibatch_grad_fn
from optbook.reference.logged_run import LoggedRun, run_logged

__all__ = ["steps_per_epoch", "run_epochs"]

# Both compose the library's formulas into an experiment; neither computes a symbol of the book.
__helpers__ = ("steps_per_epoch", "run_epochs")


def _whole_number(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return int(value)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Updates in one pass over ``n_examples`` with batches of ``batch_size``: ``ceil(N / b)``.

    The last batch of an epoch is smaller when ``b`` does not divide ``N``; it still counts as a step.
    """
    n = _whole_number(n_examples, "n_examples", 1)
    b = _whole_number(batch_size, "batch_size", 1)
    if b > n:
        raise ValueError(f"batch_size must be at most n_examples = {n}, got {b}; use batch_size={n} for full batches.")
    return math.ceil(n / b)


def run_epochs(
    step_fn: Callable,
    task,
    batch_size: int,
    epochs: int,
    *,
    log_fn: Callable[[np.ndarray], float],
    seed: int = 0,
    log_every_epochs: int = 1,
    **hyperparameters,
) -> LoggedRun:
    """``epochs`` passes of ``step_fn`` over ``task``'s examples from ``task.x0``, logging ``log_fn`` per epoch.

    ``task`` is a finite sum with ``n`` examples, a full gradient ``grad(x)`` and per-example
    gradients ``example_grads(x, idx)`` (e.g. :func:`optbook.tasks.softmax_task`). Each epoch takes
    ``ceil(N / b)`` steps. With ``batch_size < N`` every step uses the mean gradient of the next
    batch of a fresh shuffle drawn from ``np.random.default_rng(seed)``
    (:func:`optbook.reference.minibatch_grad_fn`); with ``batch_size == N`` every step uses
    ``task.grad``, the exact full gradient, so the run is batch gradient descent and ``seed`` is
    unused. ``log_fn(x)`` is recorded at the start and after every ``log_every_epochs`` epochs;
    ``hyperparameters`` (``lr``, ``lr_schedule``, ``momentum``, ...) go to
    :func:`optbook.reference.run_logged`, whose :class:`LoggedRun` is returned.
    """
    missing = [a for a in ("n", "x0", "grad", "example_grads") if not hasattr(task, a)]
    if missing:
        raise TypeError(f"task must be a finite-sum task with .n, .x0, .grad and .example_grads (e.g. "
                        f"tasks.softmax_task(...)); {type(task).__name__} lacks {', '.join(missing)}.")
    epochs = _whole_number(epochs, "epochs", 0)
    log_every_epochs = _whole_number(log_every_epochs, "log_every_epochs", 1)
    per_epoch = steps_per_epoch(task.n, batch_size)
    if batch_size == task.n:
        grad_fn = task.grad
    else:
        grad_fn = minibatch_grad_fn(task.example_grads, task.n, batch_size, np.random.default_rng(seed))
    return run_logged(step_fn, task.x0, grad_fn, epochs * per_epoch, log_fn=log_fn,
                      log_every=log_every_epochs * per_epoch, **hyperparameters)
