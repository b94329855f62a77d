r"""The minimiser of an L2-penalised loss, the fixed point that weight decay is measured against.

:func:`l2_penalised_minimiser` solves :math:`\min_\theta J(\theta) + \frac\lambda2\lVert\theta\rVert_2^2`
with SciPy's L-BFGS, using the library's :func:`optbook.reference.l2_regularized_gradient`
for the penalised gradient. Chapter 5 compares Adam with an L2 penalty and AdamW with it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from optbook.reference._checks import as_array, check_nonnegative

__all__ = [
    "l2_penalised_minimiser",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "l2_penalised_minimiser",
)


def l2_penalised_minimiser(
    loss_fn: Callable[[np.ndarray], float],
    grad_fn: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    lam: float,
) -> np.ndarray:
    r""":math:`\theta^\star_\lambda = \operatorname{argmin}_\theta\ J(\theta) + \frac\lambda2\lVert\theta\rVert_2^2`, every weight penalised.

    ``loss_fn`` and ``grad_fn`` are :math:`J` and :math:`\nabla J` on arrays of the
    shape of ``x0``, the start of the search. Solved by SciPy's L-BFGS-B with tight
    tolerances (``gtol=1e-12``, ``ftol=1e-16``, at most 10 000 iterations); its accuracy
    is that of L-BFGS, not of rounding, so compare with it through a bound.
    Returns an array of the shape of ``x0``.
    """
    import scipy.optimize

    from optbook.reference import l2_regularized_gradient

    if not callable(loss_fn) or not callable(grad_fn):
        raise TypeError("loss_fn and grad_fn must be callables of one array: loss_fn(x) -> float, grad_fn(x) -> array.")
    x0 = as_array(x0, "x0")
    lam = check_nonnegative(lam, "lam", "pass the penalty strength lambda >= 0.")
    shape = x0.shape

    def penalised_loss(v):
        return loss_fn(v.reshape(shape)) + 0.5 * lam * np.sum(v**2)

    def penalised_grad(v):
        return l2_regularized_gradient(grad_fn(v.reshape(shape)), v.reshape(shape), lam).ravel()

    opt = scipy.optimize.minimize(penalised_loss, x0.ravel(), jac=penalised_grad, method="L-BFGS-B",
                                  options=dict(maxiter=10_000, gtol=1e-12, ftol=1e-16))
    return opt.x.reshape(shape)
