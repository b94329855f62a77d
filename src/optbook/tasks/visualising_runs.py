r"""The grid of momentum runs of the chapter on visualising optimizers, as plain numbers.

:func:`path_shape` measures one path on a 2-D test function: how far it runs past the
minimum along a direction (:func:`optbook.analysis.overshoot`), how often it crosses the
line :math:`x = x^\star` and, on Rosenbrock's function, the valley floor :math:`y = x^2`, and
the first step within 0.01 of the minimum. :func:`path_shapes` does so for gradient descent,
momentum and NAG over a grid of learning rates on each landscape, for
:func:`optbook.tasks.stored_results.stored_results`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["path_shape", "path_shapes", "SHAPE_COLUMNS"]
__helpers__ = ("path_shape", "path_shapes")

#: The columns of a row of :func:`path_shapes`, in the order the chapter prints them.
SHAPE_COLUMNS = ("landscape", "lr", "optimizer", "overshoot along the valley", "crossings of x = x*",
                 "crossings of y = x^2", "first step within 0.01")


def path_shape(landscape: str, problem, lr: float, name: str, xs: np.ndarray, direction: np.ndarray) -> dict:
    """One row of :data:`SHAPE_COLUMNS` for the path ``xs`` of rule ``name`` at ``lr`` on ``problem``.

    ``"crossings of y = x^2"`` (the floor of Rosenbrock's valley) is NaN unless ``landscape`` is ``"Rosenbrock"``.
    """
    from optbook import analysis

    xs = np.asarray(xs, dtype=float)
    if xs.ndim != 2 or xs.shape[1] != 2:
        raise ValueError(f"xs must be a path of shape (steps + 1, 2), got {xs.shape}.")
    near = np.nonzero(np.linalg.norm(xs - problem.minimizer, axis=1) < 0.01)[0]
    return {
        "landscape": landscape, "lr": float(lr), "optimizer": name,
        "overshoot along the valley": analysis.overshoot(xs, problem.minimizer, direction),
        "crossings of x = x*": int(np.sum(np.diff(np.sign(xs[:, 0] - problem.minimizer[0])) != 0)),
        "crossings of y = x^2": (int(np.sum(np.diff(np.sign(xs[:, 1] - xs[:, 0] ** 2)) != 0))
                                 if landscape == "Rosenbrock" else float("nan")),
        "first step within 0.01": int(near[0]) if near.size else -1,
    }


def path_shapes(settings: Mapping[str, tuple], names: Sequence[str] = ("GD", "momentum", "NAG")) -> list[dict]:
    """:func:`path_shape` of ``analysis.trace_path(name, problem, lr, steps)`` for every landscape, rate and rule.

    ``settings[landscape] = (problem, steps, lrs, direction)``.
    """
    from optbook import analysis

    rows = []
    for land, (problem, steps, lrs, direction) in settings.items():
        for lr in lrs:
            for name in names:
                with np.errstate(over="ignore", invalid="ignore"):
                    xs = analysis.trace_path(name, problem, lr, steps)
                rows.append(path_shape(land, problem, lr, name, xs, direction))
    return rows
