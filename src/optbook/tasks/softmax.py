r"""Multinomial logistic regression on a real data set: the finite sum, its
per-example gradients, and its exact curvature.

:class:`FiniteSum` is a loss :math:`J(\theta) = \frac1N\sum_i J_i(\theta)` with its
per-example gradients, the input of :func:`optbook.reference.minibatch_grad_fn`.
:func:`softmax_task` builds one on a :class:`optbook.tasks.Dataset`. The exact
Hessian-vector product and Hessian diagonal (:func:`softmax_hvp`,
:func:`softmax_hessian_diagonal`) are what the Hutchinson and Gauss-Newton-Bartlett
estimators are checked against; :func:`gauss_newton_diagonal` is the diagonal of
:math:`\frac1B\sum_b J_b^\top(\operatorname{diag}p_b - p_bp_b^\top)J_b` for any
classifier whose logit Jacobians are known.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.problems.analytic import FiniteSum
from optbook.reference._checks import as_array, check_same_shape

__all__ = [
    "softmax_example_grads",
    "softmax_task",
    "softmax_hvp",
    "softmax_hessian_diagonal",
    "gauss_newton_diagonal",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "softmax_task",
)


def _check_weights(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    w = as_array(w, "w")
    if w.ndim != 2 or w.shape[0] != x.shape[1] + 1:
        raise ValueError(
            f"w must have shape (d + 1, k) = ({x.shape[1] + 1}, k) for features of shape {x.shape} "
            f"(the last row is the bias), got {w.shape}."
        )
    return w


@symbol(
    r"\nabla J_i(W) = \tilde x_i\,(\operatorname{softmax}(W^\top \tilde x_i) - e_{y_i})^\top",
    "per-example gradient of the multinomial logistic loss (x~_i = (x_i, 1))",
)
def softmax_example_grads(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float = 0.0) -> np.ndarray:
    r"""Gradient of each example's loss :math:`J_i(W) = -\log\operatorname{softmax}(W^\top\tilde x_i)_{y_i} + \frac\lambda2\lVert W_{1:d}\rVert^2`.

    ``w`` has shape ``(d + 1, k)`` with the bias as its last row, as in
    :func:`optbook.tasks.softmax_cross_entropy`; ``x`` is ``(n, d)`` and ``y``
    holds ``n`` labels. Returns shape ``(n, d + 1, k)``; the mean over the first
    axis is :func:`optbook.tasks.softmax_cross_entropy_grad`.
    """
    x = as_array(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array (examples, features), got shape {x.shape}.")
    w = _check_weights(w, x)
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must hold one label per row of x, shape ({x.shape[0]},), got {y.shape}.")
    logits = x @ w[:-1] + w[-1]
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    grads = np.empty((len(y), *w.shape))
    grads[:, :-1, :] = x[:, :, None] * p[:, None, :]
    grads[:, -1, :] = p
    if l2:
        grads[:, :-1, :] += l2 * w[:-1]
    return grads


def softmax_task(data, l2: float = 0.0) -> FiniteSum:
    """Multinomial logistic regression on the training split of ``data`` (an :class:`optbook.tasks.Dataset`).

    The loss and full gradient are :func:`optbook.tasks.softmax_cross_entropy`
    and its gradient; the start point is all zeros (every class equally likely).
    """
    from optbook.tasks import softmax_cross_entropy, softmax_cross_entropy_grad

    if not data.n_classes:
        raise ValueError(f"{data.name} is a regression data set; softmax regression needs class labels.")
    x, y = data.x_train, data.y_train
    return FiniteSum(
        name=f"softmax regression on {data.name}",
        n=len(y),
        loss=lambda w: softmax_cross_entropy(w, x, y, l2),
        grad=lambda w: softmax_cross_entropy_grad(w, x, y, l2),
        example_grads=lambda w, idx: softmax_example_grads(w, x[idx], y[idx], l2),
        x0=np.zeros((x.shape[1] + 1, data.n_classes)),
    )


def _softmax_rows(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w[:-1] + w[-1]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@symbol(r"\nabla^2\ell(W)\,V", "exact Hessian-vector product of the multinomial logistic loss")
def softmax_hvp(w: np.ndarray, x: np.ndarray, v: np.ndarray, l2: float = 0.0) -> np.ndarray:
    r"""Exact :math:`\nabla^2\ell(W)\,V` for :func:`optbook.tasks.softmax_cross_entropy` (``w``, ``v`` of shape ``(d+1, k)``).

    With logits :math:`Z = \tilde XW` (:math:`\tilde X` the inputs with a column of
    ones for the bias row), probabilities :math:`P` and the directional change of
    the logits :math:`\dot Z = \tilde XV`, the probabilities change by
    :math:`\dot P = P\odot\dot Z - P\odot\big((P\odot\dot Z)1\big)`, and
    :math:`\nabla^2\ell\,V = \tilde X^\top\dot P/N + \lambda V` (no penalty on the bias row).
    """
    w, x, v = as_array(w, "w"), as_array(x, "x"), as_array(v, "v")
    check_same_shape(w, v, "v", "w")
    p = _softmax_rows(w, x)
    dz = x @ v[:-1] + v[-1]
    pdz = p * dz
    dp = pdz - p * pdz.sum(axis=1, keepdims=True)
    out = np.empty_like(w)
    out[:-1] = x.T @ dp / len(x) + l2 * v[:-1]
    out[-1] = dp.sum(axis=0) / len(x)
    return out


@symbol(
    r"\operatorname{diag}\nabla^2\ell(W)_{jc} = \tfrac1N\sum_i \tilde x_{ij}^2\, p_{ic}(1-p_{ic})",
    "exact Hessian diagonal of the multinomial logistic loss",
)
def softmax_hessian_diagonal(w: np.ndarray, x: np.ndarray, l2: float = 0.0) -> np.ndarray:
    r"""Exact diagonal of the Hessian of :func:`optbook.tasks.softmax_cross_entropy`, shape ``(d+1, k)``.

    The Hessian is :math:`\frac1N\sum_i (\tilde x_i\tilde x_i^\top)\otimes(\operatorname{diag}p_i - p_ip_i^\top)`;
    its diagonal entry for feature :math:`j` and class :math:`c` is
    :math:`\frac1N\sum_i\tilde x_{ij}^2\,p_{ic}(1-p_{ic})` (plus :math:`\lambda` off the bias row).
    The model is linear in :math:`W`, so this is also the Gauss-Newton diagonal.
    """
    w, x = as_array(w, "w"), as_array(x, "x")
    p = _softmax_rows(w, x)
    q = p * (1.0 - p)
    out = np.empty_like(w)
    out[:-1] = (x * x).T @ q / len(x) + l2
    out[-1] = q.sum(axis=0) / len(x)
    return out


@symbol(
    r"\operatorname{diag}\Big(\tfrac1B\sum_b J_b^\top(\operatorname{diag}p_b - p_bp_b^\top)J_b\Big)",
    "Gauss-Newton diagonal of the cross-entropy of a classifier",
)
def gauss_newton_diagonal(jacobian: np.ndarray, probs: np.ndarray) -> np.ndarray:
    r"""Diagonal of the Gauss-Newton matrix from the logit Jacobians ``(B, C, P)`` and probabilities ``(B, C)``.

    Entry :math:`i` is :math:`\frac1B\sum_b\big(\sum_c p_{bc}J_{bci}^2 - (\sum_c p_{bc}J_{bci})^2\big)`,
    a variance of :math:`J_{b\cdot i}` under :math:`p_b`, hence never negative. It is what the
    Gauss-Newton-Bartlett estimator estimates without bias; it equals the Hessian
    diagonal only when the logits are linear in the parameters.
    """
    J, p = as_array(jacobian, "jacobian"), as_array(probs, "probs")
    if J.ndim != 3 or p.shape != J.shape[:2]:
        raise ValueError(f"need jacobian of shape (B, C, P) and probs of shape (B, C), got {J.shape} and {p.shape}.")
    mean = np.einsum("bc,bci->bi", p, J)
    second = np.einsum("bc,bci->bi", p, J * J)
    return (second - mean * mean).mean(axis=0)
