r"""Closed-form rates and stability limits on a quadratic, to hold measured paths against.

:func:`first_order_decrease` is what a Taylor expansion promises for one step, and
:func:`sgd_stationary_variance` the noise floor of constant-rate SGD. Gradient descent
multiplies the error along an eigenvector of curvature :math:`h` by
:func:`gd_error_factor` every step (threshold :func:`critical_lr`); momentum and
Nesterov evolve by the 2-by-2 matrices :func:`momentum_iteration_matrix` and
:func:`nesterov_iteration_matrix`, stable up to :func:`momentum_max_lr` and
:func:`nesterov_max_lr`; :func:`heavy_ball_parameters` tunes momentum.
"""

from __future__ import annotations

import math

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_beta, check_lr, check_positive_finite

__all__ = [
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
]


@symbol(r"\eta\lVert g\rVert^2", "decrease of the loss that a first-order Taylor expansion predicts for one GD step")
def first_order_decrease(g: np.ndarray, lr: float) -> float:
    r""":math:`J(\theta) - J(\theta - \eta g) = \eta\lVert g\rVert^2 + O(\eta^2)` when :math:`g = \nabla J(\theta)`."""
    g = as_array(g, "g")
    return check_lr(lr) * float(np.sum(g * g))


@symbol(
    r"\mathbb E[(\theta-\theta^\star)^2]_\infty = \frac{\eta s^2}{h(2-\eta h)}",
    "stationary spread of SGD with constant learning rate on a quadratic with gradient noise variance s^2",
)
def sgd_stationary_variance(lr: float, curvature: float, noise_variance: float) -> float:
    r"""For :math:`\theta_{t} = \theta_{t-1} - \eta(h(\theta_{t-1}-\theta^\star) + \xi_t)` with independent
    zero-mean :math:`\xi_t` of variance :math:`s^2`, :math:`e_t = \theta_t-\theta^\star` obeys
    :math:`\mathbb E e_t^2 = (1-\eta h)^2\,\mathbb E e_{t-1}^2 + \eta^2 s^2`, whose fixed point
    is :math:`\eta s^2/(h(2-\eta h))` for :math:`0 < \eta h < 2`: proportional to
    :math:`\eta` for small :math:`\eta`, and zero only for :math:`\eta = 0`.
    """
    lam = check_positive_finite(curvature, "curvature")
    lr = check_positive_finite(lr, "lr")
    if not lr * lam < 2.0:
        raise ValueError(f"need lr * curvature < 2 for a stationary spread, got {lr * lam}.")
    if float(noise_variance) < 0:
        raise ValueError(f"noise_variance must be >= 0, got {noise_variance}.")
    return lr * float(noise_variance) / (lam * (2.0 - lr * lam))


@symbol(r"1 - \eta h", "factor GD multiplies the error by, along an eigenvector of curvature h")
def gd_error_factor(lr: float, curvature) -> np.ndarray:
    r""":math:`\theta_t - \theta^\star = (1-\eta h)^t(\theta_0 - \theta^\star)` along an eigenvector of :math:`A`."""
    return 1.0 - check_lr(lr) * as_array(curvature, "curvature")


@symbol(r"\eta_{\max} = 2/L", "largest learning rate for which GD converges on a quadratic of top curvature L")
def critical_lr(top_curvature: float) -> float:
    r""":math:`|1-\eta h| < 1` for every eigenvalue :math:`h \le L` iff :math:`0 < \eta < 2/L`."""
    return 2.0 / check_positive_finite(top_curvature, "top_curvature")


@symbol(r"\eta^\star = 2/(L+\mu)", "learning rate that minimises GD's worst error factor on a quadratic")
def optimal_gd_lr(top_curvature: float, bottom_curvature: float) -> float:
    r""":math:`\eta^\star = 2/(L+\mu)` equalises :math:`|1-\eta\mu| = |1-\eta L| = (\kappa-1)/(\kappa+1)`."""
    big, small = check_positive_finite(top_curvature, "top_curvature"), check_positive_finite(bottom_curvature, "bottom_curvature")
    return 2.0 / (big + small)


@symbol(r"T = \lceil \log r / \log|1-\eta h| \rceil", "GD steps to shrink the error along curvature h by r")
def gd_steps_to_shrink(lr: float, curvature: float, ratio: float) -> float:
    r"""Smallest :math:`t` with :math:`|1-\eta h|^t \le r` (``ratio``, in (0, 1)); ``inf`` if it never shrinks."""
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must lie in (0, 1), got {ratio}.")
    factor = abs(float(gd_error_factor(lr, curvature)))
    if factor >= 1.0:
        return math.inf
    if factor == 0.0:
        return 1.0
    return float(math.ceil(math.log(ratio) / math.log(factor) - 1e-12))


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
    big, small = check_positive_finite(top_curvature, "top_curvature"), check_positive_finite(bottom_curvature, "bottom_curvature")
    lr = 4.0 / (math.sqrt(big) + math.sqrt(small)) ** 2
    root_kappa = math.sqrt(big / small)
    return lr, ((root_kappa - 1.0) / (root_kappa + 1.0)) ** 2


@symbol(r"\eta < 2(1+\gamma)/L", "largest learning rate for which heavy-ball momentum converges on curvature L")
def momentum_max_lr(top_curvature: float, momentum: float) -> float:
    r"""Momentum is stable along curvature :math:`h` iff :math:`0 < \eta h < 2(1+\gamma)`.

    The characteristic polynomial :math:`z^2 - (1+\gamma-\eta h)z + \gamma` of
    :func:`momentum_iteration_matrix` has both roots inside the unit circle iff
    :math:`p(1) = \eta h > 0`, :math:`p(-1) = 2(1+\gamma) - \eta h > 0` and :math:`\gamma < 1`.
    """
    return 2.0 * (1.0 + check_beta(momentum, "momentum")) / check_positive_finite(top_curvature, "top_curvature")


@symbol(
    r"\eta < \frac{2(1+\gamma)}{(1+2\gamma)L}",
    "largest learning rate for which Nesterov's method converges on curvature L",
)
def nesterov_max_lr(top_curvature: float, momentum: float) -> float:
    r"""NAG is stable along curvature :math:`h` iff :math:`0 < \eta h < 2(1+\gamma)/(1+2\gamma)`.

    Its characteristic polynomial :math:`z^2 - (1+\gamma)(1-q)z + \gamma(1-q)`,
    :math:`q = \eta h`, has :math:`p(1) = q` and :math:`p(-1) = 1 + (1+2\gamma)(1-q)`;
    the bound is :math:`p(-1) > 0`. It is smaller than momentum's by the factor :math:`1+2\gamma`.
    """
    gamma = check_beta(momentum, "momentum")
    return 2.0 * (1.0 + gamma) / ((1.0 + 2.0 * gamma) * check_positive_finite(top_curvature, "top_curvature"))


@symbol(
    r"M_{\mathrm{mom}} = \begin{pmatrix}1+\gamma-\eta h & -\gamma\\ 1 & 0\end{pmatrix}",
    "momentum's iteration matrix on (error_t, error_{t-1}) along curvature h",
)
def momentum_iteration_matrix(lr: float, momentum: float, curvature: float) -> np.ndarray:
    r""":math:`e_{t+1} = (1+\gamma-\eta h)e_t - \gamma e_{t-1}` for the error along one eigenvector.

    It follows from :math:`v_t = \theta_{t-1} - \theta_t` and
    :math:`v_{t+1} = \gamma v_t + \eta h e_t`.
    """
    gamma = check_beta(momentum, "momentum")
    return np.array([[1.0 + gamma - check_lr(lr) * float(curvature), -gamma], [1.0, 0.0]])


@symbol(
    r"M_{\mathrm{NAG}} = \begin{pmatrix}(1+\gamma)(1-\eta h) & -\gamma(1-\eta h)\\ 1 & 0\end{pmatrix}",
    "Nesterov's iteration matrix on (error_t, error_{t-1}) along curvature h",
)
def nesterov_iteration_matrix(lr: float, momentum: float, curvature: float) -> np.ndarray:
    r""":math:`e_{t+1} = (1-\eta h)\bigl(e_t + \gamma(e_t - e_{t-1})\bigr)`: a gradient step taken from the look-ahead point."""
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
