r"""Linear least squares as an optimisation problem, on real data.

The chapter on Adafactor for vectors fits a linear model :math:`\hat y = A w`
to the diabetes data set bundled with scikit-learn (ten standardised
features, a standardised target; see :func:`optbook.tasks.diabetes`) by
minimising the half mean squared error

.. math::

    f(w) = \frac{1}{2N}\lVert A w - y\rVert_2^2,
    \qquad
    \nabla f(w) = \frac{1}{N} A^\top (A w - y),
    \qquad
    \nabla^2 f = H = \frac{1}{N} A^\top A .

Because :math:`f` is a convex quadratic, its minimiser :math:`w^\star` solves
the normal equations :math:`A^\top A w = A^\top y` and is available in closed
form (:func:`solution`, via ``numpy.linalg.lstsq``), so any iterative method
can be measured by its exact loss gap :math:`f(w_t) - f(w^\star)`. Gradient
descent with step :math:`1/L`, where :math:`L = h_{\max}(H)`
(:func:`smoothness_constant`), decreases :math:`f` at every step.

:func:`rescaled` changes the units of the parameters, :math:`f_c(w) = f(w/c)`,
which the chapter uses to show that Adafactor's step size is relative to the
parameter scale.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from optbook.notation import symbol
from optbook.problems import Problem

__all__ = [
    "loss",
    "grad",
    "hessian",
    "smoothness_constant",
    "solution",
    "problem",
    "diabetes_problem",
    "rescaled",
]

# Problem constructors: they compose the formulas above, they are not book symbols.
__helpers__ = ("problem", "diabetes_problem", "rescaled")


def _check(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=float)
    y = np.asarray(y, dtype=float)
    if a.ndim != 2 or y.ndim != 1 or a.shape[0] != y.shape[0]:
        raise ValueError(
            f"need a design matrix A of shape (N, d) and targets y of shape (N,), got {a.shape} and {y.shape}."
        )
    if a.shape[0] == 0:
        raise ValueError("the design matrix has no rows; least squares needs at least one example.")
    return a, y


@symbol(r"f(w) = \tfrac{1}{2N}\lVert Aw - y\rVert_2^2", "least-squares loss (half mean squared error)")
def loss(w: np.ndarray, a: np.ndarray, y: np.ndarray, *, fixed_order: bool = False) -> float:
    r""":math:`f(w) = \frac{1}{2N}\sum_{i=1}^N (a_i^\top w - y_i)^2` for the rows :math:`a_i` of :math:`A`.

    ``fixed_order=True`` sums in an order that does not depend on the CPU
    (see :func:`grad`), so the value is the same to the last bit everywhere.
    """
    a, y = _check(a, y)
    if fixed_order:
        residual = _residual(np.asarray(w, dtype=float), np.ascontiguousarray(a.T), y)
        return 0.5 * float(np.add.reduce(residual * residual)) / len(y)
    residual = a @ np.asarray(w, dtype=float) - y
    return 0.5 * float(residual @ residual) / len(y)


@symbol(r"\nabla f(w) = \tfrac1N A^\top(Aw - y)", "gradient of the least-squares loss")
def grad(w: np.ndarray, a: np.ndarray, y: np.ndarray, *, fixed_order: bool = False) -> np.ndarray:
    r""":math:`\nabla f(w) = \frac{1}{N} A^\top (A w - y)`.

    By default the two products go to BLAS, whose kernels (chosen at run time
    for the CPU) sum in different orders, so the last bits of the result
    differ between machines. A long run of a method that amplifies such
    differences (Adafactor's sign-like steps near the optimum) then ends
    somewhere else on each machine. ``fixed_order=True`` forms the same sums
    with element-wise products and NumPy reductions in a fixed order, which
    gives the same bits on every CPU, at some cost in speed for large ``A``.
    """
    a, y = _check(a, y)
    if not fixed_order:
        return a.T @ (a @ np.asarray(w, dtype=float) - y) / len(y)
    a_t = np.ascontiguousarray(a.T)
    residual = _residual(np.asarray(w, dtype=float), a_t, y)
    # each row of A^T times the residual, summed by NumPy's pairwise sum: an order fixed by its C code
    return np.add.reduce(a_t * residual, axis=1) / len(y)


def _residual(w: np.ndarray, a_t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:math:`Aw - y` from the contiguous transpose ``a_t`` of :math:`A`, summed in a fixed order.

    Element-wise products and sums are exactly rounded on every CPU; the
    reduction over the leading axis adds the columns of :math:`A`, scaled by
    the entries of :math:`w`, one after another.
    """
    if w.shape != (a_t.shape[0],):
        raise ValueError(f"w must have shape ({a_t.shape[0]},) to match the {a_t.shape[0]} columns of A, got {w.shape}.")
    return np.add.reduce(a_t * w[:, None], axis=0) - y


@symbol(r"H = \tfrac1N A^\top A", "Hessian of the least-squares loss")
def hessian(a: np.ndarray) -> np.ndarray:
    r""":math:`H = \nabla^2 f = \frac{1}{N} A^\top A`, the same at every :math:`w`."""
    a = np.asarray(a, dtype=float)
    return a.T @ a / a.shape[0]


@symbol(r"L = h_{\max}(H)", "smoothness constant of the least-squares loss: the largest curvature (eigenvalue of the Hessian)")
def smoothness_constant(a: np.ndarray) -> float:
    r""":math:`L = h_{\max}(A^\top A / N)`: :math:`\nabla f` is :math:`L`-Lipschitz, and a
    gradient step of length :math:`1/L` never increases :math:`f`."""
    return float(np.linalg.eigvalsh(hessian(a))[-1])


@symbol(r"w^\star = \arg\min_w f(w)", "closed-form least-squares solution")
def solution(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""The minimiser :math:`w^\star` of :math:`f`, the solution of :math:`A^\top A w = A^\top y`.

    Computed by ``numpy.linalg.lstsq`` (an SVD), which returns the
    minimum-norm minimiser when :math:`A` is rank deficient.
    """
    a, y = _check(a, y)
    return np.linalg.lstsq(a, y, rcond=None)[0]


def problem(
    a: np.ndarray,
    y: np.ndarray,
    *,
    name: str = "least squares",
    x0: np.ndarray | None = None,
    fixed_order: bool = False,
) -> Problem:
    """The least-squares :class:`~optbook.problems.Problem` for data ``(a, y)``.

    Starts at ``x0`` (zeros by default); ``minimizer`` is :func:`solution`.
    ``fixed_order=True`` makes ``loss`` and ``grad`` the same to the last bit
    on every CPU (see :func:`grad`).
    """
    a, y = _check(a, y)
    x0 = np.zeros(a.shape[1]) if x0 is None else np.array(x0, dtype=float, copy=True)
    if x0.shape != (a.shape[1],):
        raise ValueError(f"x0 must have shape ({a.shape[1]},) to match the {a.shape[1]} columns of A, got {x0.shape}.")
    return Problem(
        name=name,
        loss=partial(loss, a=a, y=y, fixed_order=fixed_order),
        grad=partial(grad, a=a, y=y, fixed_order=fixed_order),
        x0=x0,
        minimizer=solution(a, y),
    )


def diabetes_problem(
    *, test_fraction: float = 0.25, seed: int = 0, x0: np.ndarray | None = None, fixed_order: bool = False
) -> tuple[Problem, Problem]:
    """Least squares on scikit-learn's bundled diabetes data: ``(train, test)`` problems.

    Features and target are standardised on the training split
    (:func:`optbook.tasks.diabetes`), so no intercept column is needed: the
    best intercept is zero. Train on the first problem; the second evaluates
    the same weights on the held-out split (its ``minimizer`` is the test
    set's own least-squares fit, which training never sees). ``fixed_order``
    is passed to :func:`problem`.
    """
    from optbook.tasks import diabetes

    data = diabetes(test_fraction=test_fraction, seed=seed)
    train = problem(data.x_train, data.y_train, name="diabetes (train)", x0=x0, fixed_order=fixed_order)
    test = problem(data.x_test, data.y_test, name="diabetes (test)", x0=train.x0, fixed_order=fixed_order)
    return train, test


def rescaled(base: Problem, c: float) -> Problem:
    r"""The same problem in parameters measured in units :math:`1/c`: :math:`f_c(w) = f(w/c)`.

    Its gradient is :math:`\nabla f_c(w) = \frac1c \nabla f(w/c)`, its start
    point :math:`c\,x_0` and its minimiser :math:`c\,w^\star`; a point
    :math:`w` of the original problem corresponds to :math:`c\,w` here.
    """
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"the scale c must be a positive finite number, got {c}.")
    return Problem(
        name=f"{base.name}, parameters x{c:g}",
        loss=lambda w: base.loss(np.asarray(w, dtype=float) / c),
        grad=lambda w: base.grad(np.asarray(w, dtype=float) / c) / c,
        x0=c * np.asarray(base.x0, dtype=float),
        minimizer=None if base.minimizer is None else c * np.asarray(base.minimizer, dtype=float),
    )
