r"""Paths on 2-D test functions: run, pick, measure.

:func:`trace_path` runs any of the book's NumPy rules by name (:data:`PATH_RULES`,
Adafactor's reference vector algorithm included) and :func:`best_path` picks its
learning rate from a grid. Measured on the paths: :func:`overshoot` (how far a path
runs past the minimum along a direction), :func:`heading_error` (the angle between
the first steps and the direction to the minimum; :func:`heading_error_at_fraction` takes it
once a given share of the way is covered), :func:`first_exit`; predicted:
:func:`momentum_oscillation_lr`, the learning rate above which momentum oscillates
along a direction of given curvature.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from optbook.notation import symbol
from optbook.problems.analytic import Problem
from optbook.reference._checks import as_array, check_beta

__all__ = [
    "momentum_oscillation_lr",
    "overshoot",
    "heading_error",
    "first_exit",
    "trace_path",
    "trace_path_to_exit",
    "rule_heading_error",
    "final_losses_over_grid",
    "best_from_grid",
    "best_path",
    "heading_error_at_fraction",
    "PATH_RULES",
    "adagrad_saddle_escape_steps",
    "escape_steps_over_lr",
    "power_law_exponent",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "first_exit",
    "escape_steps_over_lr",
    "power_law_exponent",
    "trace_path",
    "trace_path_to_exit",
    "rule_heading_error",
    "final_losses_over_grid",
    "best_from_grid",
    "best_path",
    "heading_error_at_fraction",
)


@symbol(
    r"\eta h > (1-\sqrt\gamma)^2",
    "momentum oscillates along a direction of curvature h beyond this learning rate",
)
def momentum_oscillation_lr(curvature: float | np.ndarray, momentum: float) -> float | np.ndarray:
    r"""The learning rate :math:`(1-\sqrt\gamma)^2/h` above which momentum oscillates along a direction of curvature :math:`h`.

    On :math:`\frac h2\theta^2`, momentum (:math:`v_t = \gamma v_{t-1} + \eta h\theta_{t-1}`,
    :math:`\theta_t = \theta_{t-1} - v_t`) obeys :math:`\theta_t = (1+\gamma-\eta h)\theta_{t-1} - \gamma\theta_{t-2}`,
    whose characteristic roots :math:`z^2 - (1+\gamma-\eta h)z + \gamma = 0` are complex (the iterate
    spirals and overshoots) exactly when :math:`(1-\sqrt\gamma)^2 < \eta h < (1+\sqrt\gamma)^2`. Below the
    threshold both roots are real and positive: the approach is monotone, like gradient descent's.
    """
    gamma = check_beta(momentum, "momentum")
    lam = np.asarray(curvature, dtype=float)
    if np.any(lam <= 0):
        raise ValueError("curvature must be > 0 (a direction with positive curvature).")
    out = (1.0 - np.sqrt(gamma)) ** 2 / lam
    return float(out) if out.ndim == 0 else out



@symbol(
    r"\max\big(0, \max_t (\theta_t - \theta^\star)^\top d\big),\ d = \frac{\theta^\star-\theta_0}{\lVert\theta^\star-\theta_0\rVert}",
    "overshoot: how far a path runs past the minimum along its approach direction",
)
def overshoot(path: np.ndarray, minimizer: np.ndarray, direction: np.ndarray | None = None) -> float:
    r"""How far past :math:`\theta^\star` the path ever gets along ``direction``.

    ``direction`` defaults to the unit vector from the start ``path[0]`` to the
    minimum. Zero means the path never crossed the plane through :math:`\theta^\star`
    perpendicular to it.
    """
    path, minimizer = as_array(path, "path"), as_array(minimizer, "minimizer")
    d = minimizer - path[0] if direction is None else as_array(direction, "direction")
    d = d / np.linalg.norm(d)
    return float(max(0.0, np.max((path - minimizer) @ d)))


@symbol(
    r"\angle\big(\theta_k - \theta_0,\ \theta^\star - \theta_0\big)",
    "heading error: angle between the first k steps and the direction to the minimum",
)
def heading_error(path: np.ndarray, minimizer: np.ndarray, k: int) -> float:
    r"""Angle in degrees between the displacement after ``k`` steps and the straight line to the minimum."""
    path, minimizer = as_array(path, "path"), as_array(minimizer, "minimizer")
    a, b = path[k] - path[0], minimizer - path[0]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def first_exit(path: np.ndarray, threshold: float, axis: int = 1) -> int | None:
    """First step ``t`` with ``|path[t, axis]| > threshold``, or ``None`` if the path never gets there."""
    path = as_array(path, "path")
    hits = np.nonzero(np.abs(path[:, axis]) > threshold)[0]
    return int(hits[0]) if hits.size else None


@symbol(r"t_{\mathrm{esc}} \approx 1/(8\eta^2)", "Adagrad's steps to leave the saddle x^2 - y^2 (|y| > 1), any small y_0")
def adagrad_saddle_escape_steps(lr: float) -> float:
    r"""Predicted steps for Adagrad to take :math:`|y|` past 1 on :math:`x^2 - y^2`: :math:`1/(8\eta^2)`.

    Along :math:`y` the gradient is :math:`-2y`, so Adagrad's step is
    :math:`\eta\,y_t/\sqrt{\sum_{i\le t} y_i^2}` (:math:`\epsilon` negligible). The
    first step is :math:`\eta\operatorname{sign}(y_0)` whatever :math:`y_0` is; after it,
    the continuous limit :math:`\dot y = \eta y/\sqrt{S}`, :math:`\dot S = y^2` has the
    power-law solution :math:`y = 2\sqrt2\,\eta\sqrt t` (try :math:`y = ct^p`: then
    :math:`y/\sqrt S = \sqrt{2p+1}/\sqrt t`, which forces :math:`p = 1/2` and
    :math:`c = 2\sqrt2\,\eta`). :math:`|y| = 1` is reached at :math:`t = 1/(8\eta^2)`:
    the escape time grows like :math:`\eta^{-2}`, not :math:`\eta^{-1}`.
    """
    lr = float(lr)
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite learning rate, got {lr!r}.")
    return 1.0 / (8.0 * lr * lr)


def escape_steps_over_lr(name: str, problem: Problem, lrs: Sequence[float], steps: int, threshold: float = 1.0) -> np.ndarray:
    """Steps until ``|y| > threshold`` for rule ``name`` at each learning rate in ``lrs`` (``-1`` where it never leaves)."""
    out = []
    for lr in lrs:
        hit = first_exit(trace_path_to_exit(name, problem, float(lr), steps, threshold), threshold)
        out.append(-1 if hit is None else hit)
    return np.asarray(out, dtype=np.int64)


def power_law_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    r"""The least-squares slope :math:`p` of :math:`\log y = p\log x + c`: the exponent of :math:`y \propto x^p`."""
    x, y = as_array(x, "x"), as_array(y, "y")
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got shapes {x.shape} and {y.shape}.")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("x and y must be positive to fit a power law; drop runs that never escaped (-1).")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


#: The rules :func:`trace_path` runs by name.
PATH_RULES = ("GD", "momentum", "NAG", "Adagrad", "RMSProp", "AdaDelta", "Adam", "AdamW", "Lion", "Sophia", "Adafactor")


def trace_path(name: str, problem: Problem, lr: float, steps: int, *, seed: int = 0) -> np.ndarray:
    r"""The iterates ``(steps + 1, *x0.shape)`` of the NumPy reference rule ``name`` on ``problem``, from ``problem.x0``.

    ``name`` is one of :data:`PATH_RULES`. ``lr`` is the learning rate, except for
    AdaDelta, which has none (``lr`` is its :math:`\epsilon`, which sets the size of
    its first steps), and Adafactor, where it is the cap :math:`\rho` of the relative
    step size :math:`\rho_t = \min(\rho, 1/\sqrt t)` (the reference vector algorithm,
    :func:`optbook.reference.adafactor.run`). Momentum and NAG use :math:`\gamma = 0.9`;
    AdamW keeps its default decoupled decay :math:`10^{-2}`; Lion, Sophia and the rest use
    their defaults, with no weight decay for Sophia, whose Hessian diagonal comes from one
    Rademacher Hutchinson probe of finite-difference Hessian-vector products every
    :math:`k = 10` steps (probes drawn from ``seed``).
    """
    return _trace(name, problem, lr, steps, seed=seed)


def trace_path_to_exit(name: str, problem: Problem, lr: float, max_steps: int, threshold: float = 1.0, *,
                       axis: int = 1, min_steps: int = 0, seed: int = 0) -> np.ndarray:
    r"""``trace_path(name, problem, lr, max_steps)`` up to its first exit, without computing the rest.

    The path ends at step :math:`\max(t_{\mathrm{exit}}, m)`, where :math:`t_{\mathrm{exit}}` is
    :func:`first_exit` ``(path, threshold, axis)`` and :math:`m` is ``min_steps``, or at ``max_steps``
    if it never exits. Every returned row equals the same row of the full :func:`trace_path`
    (the rules are deterministic), so :func:`first_exit` of the result is that of the full path,
    at a fraction of the cost when the exit comes early. ``min_steps`` keeps a prefix of known
    length for plotting.
    """
    threshold, max_steps, min_steps = float(threshold), int(max_steps), int(min_steps)
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0 (the |coordinate| that counts as an exit), got {threshold!r}.")
    if max_steps < 0 or min_steps < 0:
        raise ValueError(f"max_steps and min_steps must be >= 0, got {max_steps} and {min_steps}.")
    if not 0 <= axis < np.asarray(problem.x0).shape[-1]:
        raise ValueError(f"axis must index a coordinate of x0 (0 to {np.asarray(problem.x0).shape[-1] - 1}), got {axis!r}.")
    exited = [bool(np.abs(np.asarray(problem.x0, dtype=float)[axis]) > threshold)]  # x0 itself may be out
    if exited[0] and min_steps == 0:
        return np.asarray(problem.x0, dtype=float)[None].copy()
    taken = [0]

    def stop_when(x):
        taken[0] += 1
        exited[0] = exited[0] or bool(np.abs(x[axis]) > threshold)
        return exited[0] and taken[0] >= min_steps

    return _trace(name, problem, lr, max_steps, seed=seed, stop_when=stop_when)


def rule_heading_error(name: str, problem: Problem, lr: float, max_steps: int, fraction: float = 0.25, *,
                       seed: int = 0) -> float:
    r""":func:`heading_error_at_fraction` of ``trace_path(name, problem, lr, max_steps)``, tracing only as far as it needs.

    The angle is taken at the first step where the path has covered the share ``fraction``
    of the straight-line distance from ``problem.x0`` to ``problem.minimizer``, so the run
    stops there: the rows it computes are those of the full path, and the angle is the same.
    NaN if the path does not get that far within ``max_steps``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], the share of the distance to the minimum; got {fraction!r}.")
    if int(max_steps) != max_steps or max_steps < 0:
        raise ValueError(f"max_steps must be a whole number >= 0, got {max_steps!r}.")
    if problem.minimizer is None:
        raise ValueError(f"problem {problem.name!r} has no known minimizer to aim at; give the Problem one.")
    x0, minimizer = np.asarray(problem.x0, dtype=float), np.asarray(problem.minimizer, dtype=float)
    goal = fraction * np.linalg.norm(minimizer - x0)

    def stop_when(x):  # the comparison heading_error_at_fraction makes, row by row
        return bool(np.linalg.norm((np.asarray(x, dtype=float) - x0)[None], axis=1)[0] >= goal)

    path = _trace(name, problem, lr, int(max_steps), seed=seed, stop_when=stop_when)
    return heading_error_at_fraction(path, minimizer, fraction)


def _trace(name: str, problem: Problem, lr: float, steps: int, *, seed: int = 0, stop_when=None) -> np.ndarray:
    """:func:`trace_path`, ended early once ``stop_when(x)`` returns true after a step (``None``: never)."""
    from optbook.reference import adafactor as af
    from optbook.reference import (
        adadelta_step,
        adagrad_step,
        adam_step,
        adamw_step,
        finite_difference_hvp,
        hutchinson_diagonal,
        lion_step,
        momentum_step,
        nesterov_step,
        rmsprop_step,
        run,
        sgd_step,
        sophia_step,
    )

    x0, grad = problem.x0, problem.grad
    simple = {
        "GD": (sgd_step, {}),
        "momentum": (momentum_step, {"momentum": 0.9}),
        "NAG": (nesterov_step, {"momentum": 0.9}),
        "Adagrad": (adagrad_step, {}),
        "RMSProp": (rmsprop_step, {}),
        "Adam": (adam_step, {}),
        "AdamW": (adamw_step, {}),
        "Lion": (lion_step, {}),
    }
    if name in simple:
        step_fn, kw = simple[name]
        return run(step_fn, x0, grad, steps, lr=lr, stop_when=stop_when, **kw).xs
    if name == "AdaDelta":
        return run(adadelta_step, x0, grad, steps, eps=lr, stop_when=stop_when).xs
    if name == "Sophia":
        rng = np.random.default_rng(seed)
        hvp = finite_difference_hvp(grad)
        return run(sophia_step, x0, grad, steps, lr=lr, weight_decay=0.0,
                   h_hat=lambda x: hutchinson_diagonal(hvp, x, rng), stop_when=stop_when).xs
    if name == "Adafactor":
        hp = af.AdafactorHyperparameters(rho_cap=lr)
        if stop_when is None:
            _, state = af.run(x0, grad, steps, hp, record=True)
        else:  # af.run's loop, ended early
            state, x = af.AdafactorState(), np.array(x0, dtype=float, copy=True)
            for _ in range(int(steps)):
                x = af.step(x, grad(x), state, hp, record=True)
                if stop_when(np.asarray(state.history[-1]["X"], dtype=float)):
                    break
        if not state.history:
            return np.asarray(x0, dtype=float)[None].copy()
        return np.concatenate([np.asarray(x0, dtype=float)[None], np.stack([h["X"] for h in state.history])])
    raise ValueError(f"unknown rule {name!r}; choose one of {PATH_RULES}.")


def best_path(name: str, problem: Problem, lrs: Sequence[float], steps: int, *, seed: int = 0):
    """``(lr, path)`` for the learning rate in ``lrs`` whose path ends with the lowest loss.

    A path that overflows or ends with a non-finite loss counts as worse than any finite one.
    """
    best = (np.inf, None, None)
    for lr in lrs:
        with np.errstate(over="ignore", invalid="ignore"):
            xs = trace_path(name, problem, float(lr), steps, seed=seed)
            final = float(problem.loss(xs[-1])) if np.all(np.isfinite(xs)) else np.inf
        if not np.isfinite(final):
            final = np.inf
        if best[1] is None or final < best[0]:
            best = (final, float(lr), xs)
    return best[1], best[2]


def final_losses_over_grid(name: str, problem: Problem, lrs: Sequence[float], steps: int, *, seed: int = 0) -> list[float]:
    """The loss at the end of ``trace_path(name, problem, lr, steps)`` for each ``lr`` in ``lrs``.

    A path that overflows or ends with a non-finite loss gives ``inf``, as in :func:`best_path`;
    :func:`best_from_grid` then picks the same learning rate that :func:`best_path` would.
    """
    finals = []
    for lr in lrs:
        with np.errstate(over="ignore", invalid="ignore"):
            xs = trace_path(name, problem, float(lr), steps, seed=seed)
            final = float(problem.loss(xs[-1])) if np.all(np.isfinite(xs)) else np.inf
        finals.append(final if np.isfinite(final) else np.inf)
    return finals


def best_from_grid(lrs: Sequence[float], final_losses: Sequence[float | str]) -> tuple[float, float]:
    """``(lr, loss)``: the ``lr`` of ``lrs`` with the lowest final loss (the first of equals), as :func:`best_path` picks it.

    ``final_losses`` come from :func:`final_losses_over_grid`, possibly through a stored
    JSON file, where an infinite loss is the string ``"inf"``.
    """
    finals = np.array([float(v) for v in final_losses], dtype=float)
    lrs = as_array(lrs, "lrs")
    if lrs.ndim != 1 or finals.shape != lrs.shape or lrs.size == 0:
        raise ValueError(f"lrs and final_losses must be 1-D of the same non-zero length, got {lrs.shape} and {finals.shape}.")
    finals = np.where(np.isfinite(finals), finals, np.inf)
    best = int(np.argmin(finals))
    return float(lrs[best]), float(finals[best])


def heading_error_at_fraction(path: np.ndarray, minimizer: np.ndarray, fraction: float = 0.25) -> float:
    r""":func:`heading_error` at the first step :math:`k` with :math:`\lVert\theta_k-\theta_0\rVert \ge f\,\lVert\theta^\star-\theta_0\rVert`.

    Measuring the angle once the path has covered the share ``fraction`` (:math:`f`)
    of the straight-line distance to the minimum compares optimizers at the same
    progress rather than after the same number of steps. NaN if the path never
    gets that far (or has diverged).
    """
    path, minimizer = as_array(path, "path"), as_array(minimizer, "minimizer")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], the share of the distance to the minimum; got {fraction!r}.")
    travelled = np.linalg.norm(path - path[0], axis=1)
    reached = np.nonzero(travelled >= fraction * np.linalg.norm(minimizer - path[0]))[0]
    return heading_error(path, minimizer, int(reached[0])) if reached.size else np.nan
