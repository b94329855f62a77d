r"""Problems, schedules and closed-form predictions for Part I, chapters 1 to 4.

The chapters on gradient descent, its challenges, momentum and the adaptive
per-coordinate rates run the update rules of :mod:`optbook.reference` on the
problems defined here, and hold the measured behaviour against the formulas
defined here.

Finite sums
    :class:`FiniteSum` is a loss :math:`J(\theta) = \frac1N\sum_i J_i(\theta)`
    with its per-example gradients, the input of
    :func:`optbook.reference.minibatch_grad_fn`. :func:`softmax_task` builds one
    for multinomial logistic regression on a :class:`optbook.tasks.Dataset`
    (per-example gradients :func:`softmax_example_grads`);
    :func:`double_well_task` builds a one-dimensional non-convex one
    (:func:`tilted_double_well`) whose examples differ by a linear tilt.

Quadratics
    :func:`quadratic` is :math:`f(\theta) = \frac12(\theta-\theta^\star)^\top A(\theta-\theta^\star)`,
    on which every rule of these chapters can be analysed exactly, direction
    by direction: gradient descent multiplies the error along an eigenvector
    of curvature :math:`\lambda` by :func:`gd_error_factor` every step, and
    momentum and Nesterov evolve by the 2-by-2 matrices
    :func:`momentum_iteration_matrix` and :func:`nesterov_iteration_matrix`.

    Their stability limits are :func:`momentum_max_lr` and :func:`nesterov_max_lr`,
    the GD threshold is :func:`critical_lr`, and :func:`heavy_ball_parameters`
    tunes momentum.

Learning rates and noise
    :func:`first_order_decrease` is what a Taylor expansion promises for one
    step; :func:`inverse_time_lr` and :func:`step_decay_lr` are schedules, run
    by :func:`run_logged`; :func:`sgd_stationary_variance` is the noise floor of
    constant-rate SGD on a quadratic.

Mini-batch noise
    :func:`per_example_variance` and :func:`minibatch_variance`, the exact
    variance of a mini-batch gradient drawn without replacement, which
    :func:`sampled_minibatch_variance` measures by sampling.

Where epsilon goes
    :func:`eps_placement_ratio`: torch's Adagrad/RMSprop step over the
    lecture's, for the same accumulator.

The saddle :math:`x^2 - y^2` of :mod:`optbook.problems`
    :func:`saddle_escape_steps` predicts how long gradient descent needs to
    leave it; :func:`steps_within` measures it on a path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from optbook.notation import symbol
from optbook.problems import Problem
from optbook.reference._checks import as_array, check_beta, check_lr

__all__ = [
    "FiniteSum",
    "softmax_example_grads",
    "softmax_task",
    "tilted_double_well",
    "tilted_double_well_grad",
    "double_well_task",
    "quadratic",
    "quadratic_grad",
    "quadratic_problem",
    "first_order_decrease",
    "sgd_stationary_variance",
    "gd_error_factor",
    "critical_lr",
    "optimal_gd_lr",
    "gd_steps_to_shrink",
    "momentum_effective_lr",
    "heavy_ball_parameters",
    "momentum_max_lr",
    "nesterov_max_lr",
    "momentum_iteration_matrix",
    "nesterov_iteration_matrix",
    "spectral_radius",
    "inverse_time_lr",
    "step_decay_lr",
    "eps_placement_ratio",
    "per_example_variance",
    "minibatch_variance",
    "sampled_minibatch_variance",
    "saddle_escape_steps",
    "steps_within",
    "numerical_hessian",
    "feature_design",
    "LoggedRun",
    "run_logged",
]

# Problem constructors, samplers, measurements and the logging runner: they
# compose formulas or draw random numbers rather than compute one book symbol.
__helpers__ = (
    "softmax_task",
    "double_well_task",
    "quadratic_problem",
    "sampled_minibatch_variance",
    "steps_within",
    "numerical_hessian",
    "feature_design",
    "run_logged",
)


# --- finite sums ----------------------------------------------------------------------


@dataclass(frozen=True)
class FiniteSum:
    r"""A loss :math:`J(\theta) = \frac1N\sum_{i=1}^N J_i(\theta)` with exact gradients.

    ``loss(x)`` and ``grad(x)`` are the full-batch :math:`J` and :math:`\nabla J`;
    ``example_grads(x, indices)`` returns the per-example gradients
    :math:`\nabla J_i(x)` for ``indices``, shape ``(len(indices), *x.shape)``,
    as :func:`optbook.reference.minibatch_gradient` expects. ``n`` is :math:`N`.
    """

    name: str
    n: int
    loss: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    example_grads: Callable[[np.ndarray, np.ndarray], np.ndarray]
    x0: np.ndarray


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


@symbol(r"J(x) = \tfrac14 x^4 - \tfrac12 x^2 + c\,x", "tilted double well: two minima, the left one deeper for c > 0")
def tilted_double_well(x: np.ndarray, tilt: float = 0.25) -> np.ndarray:
    r""":math:`J(x) = \frac14 x^4 - \frac12 x^2 + c x` with :math:`c` = ``tilt``, element-wise.

    For :math:`0 < c < 2/(3\sqrt3)` it has a deep minimum at negative
    :math:`x`, a shallow one at positive :math:`x` and a maximum between them.
    """
    x = as_array(x, "x")
    return 0.25 * x**4 - 0.5 * x**2 + tilt * x


@symbol(r"J'(x) = x^3 - x + c", "derivative of the tilted double well")
def tilted_double_well_grad(x: np.ndarray, tilt: float = 0.25) -> np.ndarray:
    r""":math:`J'(x) = x^3 - x + c`."""
    x = as_array(x, "x")
    return x**3 - x + tilt


def double_well_task(n: int = 100, tilt: float = 0.25, spread: float = 1.0, seed: int = 0, x0: float = 1.0) -> FiniteSum:
    r"""A finite sum of tilted double wells, :math:`J_i(x) = J(x) + a_i x`, with :math:`\frac1N\sum_i a_i = 0`.

    The :math:`a_i` are ``spread`` times standard normal draws (from ``seed``),
    centred so that their mean is exactly zero: the average of the :math:`J_i`
    is :func:`tilted_double_well` and a per-example gradient is
    :math:`J'(x) + a_i`. The parameter has shape ``(1,)``; it starts at ``x0``
    (by default in the shallow right-hand basin).
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be a whole number >= 2, got {n!r}.")
    a = np.random.default_rng(seed).standard_normal(int(n)) * float(spread)
    a -= a.mean()

    def example_grads(x, idx):
        return (tilted_double_well_grad(x, tilt) + a[np.asarray(idx)][:, None])

    return FiniteSum(
        name=f"tilted double well (c = {tilt:g}, N = {n})",
        n=int(n),
        loss=lambda x: float(np.sum(tilted_double_well(x, tilt))),
        grad=lambda x: tilted_double_well_grad(x, tilt),
        example_grads=example_grads,
        x0=np.array([float(x0)]),
    )


# --- quadratics -----------------------------------------------------------------------


def _matrix(a) -> np.ndarray:
    a = as_array(a, "A")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {a.shape}.")
    if not np.allclose(a, a.T):
        raise ValueError("A must be symmetric (it is the Hessian of the quadratic).")
    return a


@symbol(r"f(\theta) = \tfrac12(\theta-\theta^\star)^\top A(\theta-\theta^\star)", "quadratic bowl with Hessian A")
def quadratic(x: np.ndarray, a: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    r""":math:`f(\theta) = \frac12(\theta-\theta^\star)^\top A(\theta-\theta^\star)`; ``x`` may be a batch ``(..., n)``."""
    a = _matrix(a)
    x = as_array(x, "x")
    e = x - (0.0 if center is None else as_array(center, "center"))
    if e.shape[-1] != a.shape[0]:
        raise ValueError(f"x has {e.shape[-1]} coordinates in its last axis but A is {a.shape}.")
    return 0.5 * np.einsum("...i,ij,...j->...", e, a, e)


@symbol(r"\nabla f(\theta) = A(\theta-\theta^\star)", "gradient of the quadratic bowl")
def quadratic_grad(x: np.ndarray, a: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\nabla f(\theta) = A(\theta-\theta^\star)`."""
    a = _matrix(a)
    x = as_array(x, "x")
    e = x - (0.0 if center is None else as_array(center, "center"))
    if e.shape != (a.shape[0],):
        raise ValueError(f"x must have shape ({a.shape[0]},) to match A, got {x.shape}.")
    return a @ e


def quadratic_problem(curvatures, x0, *, center=None, angle: float = 0.0, name: str | None = None) -> Problem:
    r"""The quadratic with eigenvalues ``curvatures`` (the Hessian's), as a :class:`~optbook.problems.Problem`.

    In two dimensions ``angle`` (radians) rotates the eigenvectors away from
    the axes: :math:`A = R\,\mathrm{diag}(\lambda)\,R^\top`. The minimiser is
    ``center`` (the origin by default).
    """
    lam = as_array(curvatures, "curvatures")
    if lam.ndim != 1 or lam.size == 0 or np.any(lam < 0):
        raise ValueError(f"curvatures must be a non-empty 1-D array of eigenvalues >= 0, got {curvatures!r}.")
    a = np.diag(lam)
    if angle:
        if lam.size != 2:
            raise ValueError("angle rotates a two-dimensional quadratic only.")
        c, s = math.cos(angle), math.sin(angle)
        r = np.array([[c, -s], [s, c]])
        a = r @ a @ r.T
        a = 0.5 * (a + a.T)
    center = np.zeros(lam.size) if center is None else as_array(center, "center")
    x0 = as_array(x0, "x0")
    if x0.shape != (lam.size,) or center.shape != (lam.size,):
        raise ValueError(f"x0 and center must have shape ({lam.size},), got {x0.shape} and {center.shape}.")
    label = name or "quadratic, curvatures " + ", ".join(f"{v:g}" for v in lam)
    return Problem(
        name=label,
        loss=lambda x: quadratic(x, a, center),
        grad=lambda x: quadratic_grad(x, a, center),
        x0=x0.copy(),
        minimizer=center.copy(),
    )


def _positive(value, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return value


@symbol(r"\eta\lVert g\rVert^2", "decrease of the loss that a first-order Taylor expansion predicts for one GD step")
def first_order_decrease(g: np.ndarray, lr: float) -> float:
    r""":math:`J(\theta) - J(\theta - \eta g) = \eta\lVert g\rVert^2 + O(\eta^2)` when :math:`g = \nabla J(\theta)`."""
    g = as_array(g, "g")
    return check_lr(lr) * float(np.sum(g * g))


@symbol(
    r"\mathbb E[(\theta-\theta^\star)^2]_\infty = \frac{\eta s^2}{\lambda(2-\eta\lambda)}",
    "stationary spread of SGD with constant learning rate on a quadratic with gradient noise variance s^2",
)
def sgd_stationary_variance(lr: float, curvature: float, noise_variance: float) -> float:
    r"""For :math:`\theta_{t} = \theta_{t-1} - \eta(\lambda(\theta_{t-1}-\theta^\star) + \xi_t)` with independent
    zero-mean :math:`\xi_t` of variance :math:`s^2`, :math:`e_t = \theta_t-\theta^\star` obeys
    :math:`\mathbb E e_t^2 = (1-\eta\lambda)^2\,\mathbb E e_{t-1}^2 + \eta^2 s^2`, whose fixed point
    is :math:`\eta s^2/(\lambda(2-\eta\lambda))` for :math:`0 < \eta\lambda < 2`: proportional to
    :math:`\eta` for small :math:`\eta`, and zero only for :math:`\eta = 0`.
    """
    lam = _positive(curvature, "curvature")
    lr = _positive(lr, "lr")
    if not lr * lam < 2.0:
        raise ValueError(f"need lr * curvature < 2 for a stationary spread, got {lr * lam}.")
    if float(noise_variance) < 0:
        raise ValueError(f"noise_variance must be >= 0, got {noise_variance}.")
    return lr * float(noise_variance) / (lam * (2.0 - lr * lam))


@symbol(r"1 - \eta\lambda", "factor GD multiplies the error by, along an eigenvector of curvature lambda")
def gd_error_factor(lr: float, curvature) -> np.ndarray:
    r""":math:`\theta_t - \theta^\star = (1-\eta\lambda)^t(\theta_0 - \theta^\star)` along an eigenvector of :math:`A`."""
    return 1.0 - check_lr(lr) * as_array(curvature, "curvature")


@symbol(r"\eta_{\max} = 2/L", "largest learning rate for which GD converges on a quadratic of top curvature L")
def critical_lr(top_curvature: float) -> float:
    r""":math:`|1-\eta\lambda| < 1` for every eigenvalue :math:`\lambda \le L` iff :math:`0 < \eta < 2/L`."""
    return 2.0 / _positive(top_curvature, "top_curvature")


@symbol(r"\eta^\star = 2/(L+\mu)", "learning rate that minimises GD's worst error factor on a quadratic")
def optimal_gd_lr(top_curvature: float, bottom_curvature: float) -> float:
    r""":math:`\eta^\star = 2/(L+\mu)` equalises :math:`|1-\eta\mu| = |1-\eta L| = (\kappa-1)/(\kappa+1)`."""
    big, small = _positive(top_curvature, "top_curvature"), _positive(bottom_curvature, "bottom_curvature")
    return 2.0 / (big + small)


@symbol(r"T = \lceil \log r / \log|1-\eta\lambda| \rceil", "GD steps to shrink the error along curvature lambda by r")
def gd_steps_to_shrink(lr: float, curvature: float, ratio: float) -> float:
    r"""Smallest :math:`t` with :math:`|1-\eta\lambda|^t \le r` (``ratio``, in (0, 1)); ``inf`` if it never shrinks."""
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must lie in (0, 1), got {ratio}.")
    factor = abs(float(gd_error_factor(lr, curvature)))
    if factor >= 1.0:
        return math.inf
    if factor == 0.0:
        return 1.0
    return float(math.ceil(math.log(ratio) / math.log(factor) - 1e-12))


# --- momentum and Nesterov on a quadratic ---------------------------------------------------


@symbol(r"\eta/(1-\gamma)", "effective learning rate of momentum once the velocity settles in a constant gradient")
def momentum_effective_lr(lr: float, momentum: float) -> float:
    r"""In a constant gradient :math:`g`, :math:`v_t = \eta g\sum_{s<t}\gamma^s \to \eta g/(1-\gamma)`."""
    return check_lr(lr) / (1.0 - check_beta(momentum, "momentum"))


@symbol(
    r"\eta = \tfrac{4}{(\sqrt L+\sqrt\mu)^2},\ \gamma = \bigl(\tfrac{\sqrt\kappa-1}{\sqrt\kappa+1}\bigr)^2",
    "Polyak's heavy-ball parameters for a quadratic with curvatures in [mu, L]",
)
def heavy_ball_parameters(top_curvature: float, bottom_curvature: float) -> tuple[float, float]:
    r"""The ``(lr, momentum)`` that minimise the worst spectral radius of heavy-ball momentum.

    With them every direction contracts at
    :math:`\sqrt\gamma = (\sqrt\kappa-1)/(\sqrt\kappa+1)` per step,
    :math:`\kappa = L/\mu`, against :math:`(\kappa-1)/(\kappa+1)` for the best
    plain gradient descent.
    """
    big, small = _positive(top_curvature, "top_curvature"), _positive(bottom_curvature, "bottom_curvature")
    lr = 4.0 / (math.sqrt(big) + math.sqrt(small)) ** 2
    root_kappa = math.sqrt(big / small)
    return lr, ((root_kappa - 1.0) / (root_kappa + 1.0)) ** 2


@symbol(r"\eta < 2(1+\gamma)/L", "largest learning rate for which heavy-ball momentum converges on curvature L")
def momentum_max_lr(top_curvature: float, momentum: float) -> float:
    r"""Momentum is stable along curvature :math:`\lambda` iff :math:`0 < \eta\lambda < 2(1+\gamma)`.

    The characteristic polynomial :math:`z^2 - (1+\gamma-\eta\lambda)z + \gamma` of
    :func:`momentum_iteration_matrix` has both roots inside the unit circle iff
    :math:`p(1) = \eta\lambda > 0`, :math:`p(-1) = 2(1+\gamma) - \eta\lambda > 0` and :math:`\gamma < 1`.
    """
    return 2.0 * (1.0 + check_beta(momentum, "momentum")) / _positive(top_curvature, "top_curvature")


@symbol(
    r"\eta < \frac{2(1+\gamma)}{(1+2\gamma)L}",
    "largest learning rate for which Nesterov's method converges on curvature L",
)
def nesterov_max_lr(top_curvature: float, momentum: float) -> float:
    r"""NAG is stable along curvature :math:`\lambda` iff :math:`0 < \eta\lambda < 2(1+\gamma)/(1+2\gamma)`.

    Its characteristic polynomial :math:`z^2 - (1+\gamma)(1-h)z + \gamma(1-h)`,
    :math:`h = \eta\lambda`, has :math:`p(1) = h` and :math:`p(-1) = 1 + (1+2\gamma)(1-h)`;
    the bound is :math:`p(-1) > 0`. It is smaller than momentum's by the factor :math:`1+2\gamma`.
    """
    gamma = check_beta(momentum, "momentum")
    return 2.0 * (1.0 + gamma) / ((1.0 + 2.0 * gamma) * _positive(top_curvature, "top_curvature"))


@symbol(
    r"M_{\mathrm{mom}} = \begin{pmatrix}1+\gamma-\eta\lambda & -\gamma\\ 1 & 0\end{pmatrix}",
    "momentum's iteration matrix on (error_t, error_{t-1}) along curvature lambda",
)
def momentum_iteration_matrix(lr: float, momentum: float, curvature: float) -> np.ndarray:
    r""":math:`e_{t+1} = (1+\gamma-\eta\lambda)e_t - \gamma e_{t-1}` for the error along one eigenvector.

    It follows from :math:`v_t = \theta_{t-1} - \theta_t` and
    :math:`v_{t+1} = \gamma v_t + \eta\lambda e_t`.
    """
    gamma = check_beta(momentum, "momentum")
    return np.array([[1.0 + gamma - check_lr(lr) * float(curvature), -gamma], [1.0, 0.0]])


@symbol(
    r"M_{\mathrm{NAG}} = \begin{pmatrix}(1+\gamma)(1-\eta\lambda) & -\gamma(1-\eta\lambda)\\ 1 & 0\end{pmatrix}",
    "Nesterov's iteration matrix on (error_t, error_{t-1}) along curvature lambda",
)
def nesterov_iteration_matrix(lr: float, momentum: float, curvature: float) -> np.ndarray:
    r""":math:`e_{t+1} = (1-\eta\lambda)\bigl(e_t + \gamma(e_t - e_{t-1})\bigr)`: a gradient step taken from the look-ahead point."""
    gamma = check_beta(momentum, "momentum")
    shrink = 1.0 - check_lr(lr) * float(curvature)
    return np.array([[(1.0 + gamma) * shrink, -gamma * shrink], [1.0, 0.0]])


@symbol(r"\rho(M) = \max_k |\mu_k(M)|", "spectral radius: the asymptotic error factor per step")
def spectral_radius(matrix: np.ndarray) -> float:
    r"""Largest modulus of the eigenvalues of a square matrix."""
    m = as_array(matrix, "matrix")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be square, got shape {m.shape}.")
    return float(np.max(np.abs(np.linalg.eigvals(m))))


# --- learning-rate schedules ------------------------------------------------------------


def _step_count(t) -> int:
    if isinstance(t, bool) or int(t) != t or t < 0:
        raise ValueError(f"t must be a whole number of steps >= 0, got {t!r}.")
    return int(t)


@symbol(r"\eta_t = \eta_0/(1 + k t)", "inverse-time learning-rate decay")
def inverse_time_lr(t: int, lr0: float, decay: float) -> float:
    r""":math:`\eta_t = \eta_0/(1+kt)` after ``t`` steps; :math:`\sum_t\eta_t = \infty` and :math:`\sum_t\eta_t^2 < \infty`."""
    if float(decay) < 0:
        raise ValueError(f"decay must be >= 0, got {decay}.")
    return check_lr(lr0, "lr0") / (1.0 + float(decay) * _step_count(t))


@symbol(r"\eta_t = \eta_0\,\delta^{\lfloor t/s\rfloor}", "step decay: multiply the learning rate by delta every s steps")
def step_decay_lr(t: int, lr0: float, factor: float, every: int) -> float:
    r""":math:`\eta_t = \eta_0\,\delta^{\lfloor t/s\rfloor}` with :math:`\delta` = ``factor`` and :math:`s` = ``every``."""
    if not 0.0 < float(factor) <= 1.0:
        raise ValueError(f"factor must lie in (0, 1], got {factor}.")
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise ValueError(f"every must be a whole number of steps >= 1, got {every!r}.")
    return check_lr(lr0, "lr0") * float(factor) ** (_step_count(t) // int(every))


# --- where epsilon goes ----------------------------------------------------------------


@symbol(
    r"\frac{\eta g/(\sqrt{G}+\epsilon)}{\eta g/\sqrt{G+\epsilon}} = \frac{\sqrt{G+\epsilon}}{\sqrt{G}+\epsilon}",
    "torch's Adagrad/RMSprop step over the lecture's, for the same accumulator G",
)
def eps_placement_ratio(accumulator: np.ndarray, eps: float) -> np.ndarray:
    r"""How much larger ``torch.optim.Adagrad``/``RMSprop`` (:math:`\epsilon` outside the root) step than the
    lecture's rule (:math:`\epsilon` inside), from the same accumulator :math:`G`: :math:`\sqrt{G+\epsilon}/(\sqrt G+\epsilon)`.

    It is 1 for :math:`\epsilon = 0`, close to 1 when :math:`G \gg \epsilon`, and tends to :math:`1/\sqrt\epsilon` as :math:`G \to 0`.
    """
    g = as_array(accumulator, "accumulator")
    if np.any(g < 0):
        raise ValueError("accumulator must be >= 0: it is a sum or an average of squared gradients.")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}.")
    return np.sqrt(g + eps) / (np.sqrt(g) + eps)


# --- mini-batch noise -------------------------------------------------------------------


@symbol(r"\sigma^2 = \tfrac1N\sum_i\lVert\nabla J_i - \nabla J\rVert^2", "spread of the per-example gradients")
def per_example_variance(example_grads: np.ndarray) -> float:
    r""":math:`\sigma^2 = \frac1N\sum_{i=1}^N\lVert\nabla J_i(\theta) - \nabla J(\theta)\rVert^2` from the stacked ``(N, ...)`` gradients."""
    g = as_array(example_grads, "example_grads")
    if g.ndim < 1 or g.shape[0] < 1:
        raise ValueError("example_grads must stack at least one gradient along its first axis.")
    dev = g - g.mean(axis=0)
    return float(np.sum(dev * dev) / g.shape[0])


@symbol(
    r"\mathbb E\lVert g_B - \nabla J\rVert^2 = \frac{\sigma^2}{b}\,\frac{N-b}{N-1}",
    "variance of a mini-batch gradient of b examples drawn without replacement",
)
def minibatch_variance(sigma2: float, batch_size: int, n: int) -> float:
    r""":math:`\frac{\sigma^2}{b}\frac{N-b}{N-1}`: :math:`\sigma^2` for :math:`b=1`, zero for :math:`b=N`."""
    if int(n) != n or n < 2:
        raise ValueError(f"n must be a whole number >= 2, got {n!r}.")
    if int(batch_size) != batch_size or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be a whole number in [1, n={n}], got {batch_size!r}.")
    if float(sigma2) < 0:
        raise ValueError(f"sigma2 must be >= 0, got {sigma2}.")
    return float(sigma2) / batch_size * (n - batch_size) / (n - 1)


def sampled_minibatch_variance(
    task: FiniteSum, x: np.ndarray, batch_size: int, rng: np.random.Generator, draws: int
) -> float:
    r"""Monte-Carlo estimate of :math:`\mathbb E\lVert g_B - \nabla J(x)\rVert^2` over ``draws`` mini-batches.

    Each batch is the first batch of a fresh epoch of
    :func:`optbook.reference.minibatch_indices` (a uniformly random subset of
    ``batch_size`` examples), and :math:`g_B` is
    :func:`optbook.reference.minibatch_gradient` on it.
    """
    from optbook.reference import minibatch_gradient, minibatch_indices

    if int(draws) != draws or draws < 1:
        raise ValueError(f"draws must be a whole number >= 1, got {draws!r}.")
    full = minibatch_gradient(task.example_grads, x, np.arange(task.n))
    total = 0.0
    for _ in range(int(draws)):
        idx = next(minibatch_indices(task.n, batch_size, rng))
        dev = minibatch_gradient(task.example_grads, x, idx) - full
        total += float(np.sum(dev * dev))
    return total / draws


# --- the saddle x^2 - y^2 -----------------------------------------------------------------


@symbol(
    r"T_{\mathrm{esc}} = \frac{\log(r/\delta)}{\log(1+2\eta)}",
    "GD steps to carry y from delta to r on the saddle x^2 - y^2",
)
def saddle_escape_steps(delta: float, lr: float, radius: float) -> float:
    r"""On :math:`x^2 - y^2` gradient descent multiplies :math:`y` by :math:`1+2\eta` every step, so
    :math:`|y_t| = (1+2\eta)^t\delta` reaches ``radius`` after :math:`\log(r/\delta)/\log(1+2\eta)` steps.

    It grows without bound as the start approaches the stable manifold :math:`y = 0`.
    """
    delta, radius = _positive(delta, "delta"), _positive(radius, "radius")
    lr = _positive(lr, "lr")
    return max(0.0, math.log(radius / delta) / math.log1p(2.0 * lr))


def steps_within(xs: np.ndarray, radius: float, center: np.ndarray | None = None) -> int:
    """Number of iterates of a path ``xs`` (shape ``(steps + 1, n)``) closer than ``radius`` to ``center``."""
    xs = as_array(xs, "xs")
    if xs.ndim != 2:
        raise ValueError(f"xs must be a path of shape (steps + 1, n), got {xs.shape}.")
    c = np.zeros(xs.shape[1]) if center is None else as_array(center, "center")
    return int(np.sum(np.linalg.norm(xs - c, axis=1) < _positive(radius, "radius")))


def numerical_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference Hessian of a function from its exact gradient: column ``j`` is
    ``(grad(x + h e_j) - grad(x - h e_j)) / (2 h)``, symmetrised. For measuring local curvature."""
    x = as_array(x, "x")
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D point, got shape {x.shape}.")
    h = _positive(h, "h")
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((as_array(grad(x + e), "grad(x)") - as_array(grad(x - e), "grad(x)")) / (2.0 * h))
    hess = np.stack(cols, axis=1)
    return 0.5 * (hess + hess.T)


# --- features of different scale and frequency ---------------------------------------------


def feature_design(
    n: int, scales, frequencies, rng: np.random.Generator
) -> np.ndarray:
    r"""An ``(n, d)`` design matrix whose column :math:`j` is ``scales[j]`` times a standard normal
    draw, kept with probability ``frequencies[j]`` and zero otherwise.

    A rare or small feature gives its weight a small curvature
    :math:`\frac1N\sum_i a_{ij}^2 \approx s_j^2 p_j` in the least-squares loss
    (:mod:`optbook.least_squares`), and so a small gradient.
    """
    scales, frequencies = as_array(scales, "scales"), as_array(frequencies, "frequencies")
    if scales.ndim != 1 or scales.shape != frequencies.shape:
        raise ValueError("scales and frequencies must be 1-D arrays of the same length (one entry per feature).")
    if np.any(scales <= 0) or np.any((frequencies <= 0) | (frequencies > 1)):
        raise ValueError("scales must be > 0 and frequencies must lie in (0, 1].")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy Generator such as np.random.default_rng(0).")
    z = rng.standard_normal((int(n), scales.size))
    present = rng.random((int(n), scales.size)) < frequencies
    return z * present * scales


# --- a runner that keeps a log instead of every iterate -------------------------------------


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
