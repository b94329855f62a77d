r"""A runner that keeps a log instead of every iterate (:func:`run_logged`), for long runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from optbook.reference._checks import as_array

__all__ = [
    "LoggedRun",
    "run_logged",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "run_logged",
)


@dataclass(frozen=True)
class LoggedRun:
    """What :func:`run_logged` returns.

    ``x`` and ``state`` after the last step; ``t`` the step counts at which
    ``log_fn`` was evaluated (0 is the start) and ``values`` its values there;
    ``seconds`` the wall time elapsed at each logged step (not deterministic:
    plot it, never print it); ``lrs`` the learning rate used at every step;
    ``states`` the rule's state at each logged step after the start (with
    ``keep_states=True``, else ``None``).
    """

    x: np.ndarray
    state: Any
    t: np.ndarray
    values: np.ndarray
    seconds: np.ndarray
    lrs: np.ndarray
    states: list | None = None


def run_logged(
    step_fn: Callable,
    x0: np.ndarray,
    grad_fn: Callable[[np.ndarray], np.ndarray],
    steps: int,
    *,
    log_fn: Callable[[np.ndarray], Any],
    log_every: int = 1,
    lr_schedule: Callable[[int], float] | None = None,
    state: Any = None,
    keep_states: bool = False,
    **hyperparameters,
) -> LoggedRun:
    """Like :func:`optbook.reference.run`, but records ``log_fn(x)`` every ``log_every`` steps only.

    Long stochastic runs then need no memory for every iterate. With
    ``lr_schedule``, step ``t`` (counted from 0) uses ``lr=lr_schedule(t)``;
    otherwise ``lr`` (if any) comes from ``hyperparameters``. Nesterov's
    ``gradient_at`` is honoured as in :func:`optbook.reference.run`. The time
    spent in ``log_fn`` is excluded from ``seconds``. ``keep_states=True``
    also keeps the state at every logged step (e.g. Adagrad's :math:`G_t`).
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}.")
    if int(log_every) != log_every or log_every < 1:
        raise ValueError(f"log_every must be a whole number >= 1, got {log_every!r}.")
    if lr_schedule is not None and "lr" in hyperparameters:
        raise ValueError("pass either lr or lr_schedule, not both.")
    x = np.array(as_array(x0, "x0"), copy=True)
    if state is None and hasattr(step_fn, "init_state"):
        state = step_fn.init_state(x)
    gradient_at = getattr(step_fn, "gradient_at", None)
    ts, values, seconds, lrs = [0], [log_fn(x)], [0.0], []
    states = [] if keep_states else None
    elapsed, start = 0.0, time.perf_counter()
    for t in range(int(steps)):
        hp = dict(hyperparameters)
        if lr_schedule is not None:
            hp["lr"] = float(lr_schedule(t))
        if "lr" in hp:
            lrs.append(hp["lr"])
        point = x if gradient_at is None else gradient_at(x, state, **hp)
        x, state = step_fn(x, grad_fn(point), state, **hp)
        if (t + 1) % log_every == 0 or t + 1 == steps:
            elapsed += time.perf_counter() - start
            ts.append(t + 1)
            values.append(log_fn(x))
            seconds.append(elapsed)
            if keep_states:
                states.append(state)
            start = time.perf_counter()
    return LoggedRun(
        x=x, state=state, t=np.array(ts), values=np.array(values), seconds=np.array(seconds), lrs=np.array(lrs),
        states=states,
    )
