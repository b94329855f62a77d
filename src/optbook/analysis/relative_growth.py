r"""How fast Adafactor can grow a tensor: the tight bound on :math:`\mathrm{RMS}(X_t)`.

Adafactor's step is :math:`X_t = X_{t-1} - \alpha_t\hat U_t` with
:math:`\alpha_t = \rho_t\max(\epsilon_2, \mathrm{RMS}(X_{t-1}))` and
:math:`\mathrm{RMS}(\hat U_t) \le d`. The RMS is a scaled Euclidean norm, so

.. math::

    \mathrm{RMS}(X_t) \le \mathrm{RMS}(X_{t-1}) + \rho_t d\max(\epsilon_2, \mathrm{RMS}(X_{t-1})) .

The right-hand side increases with :math:`\mathrm{RMS}(X_{t-1})`, so iterating it from
:math:`b_0 = \mathrm{RMS}(X_0)` gives the smallest bound that holds for every gradient
sequence, and a constant gradient of equal-magnitude entries attains it
(:func:`adversarial_rms_path`). While :math:`b_{t-1} < \epsilon_2` the growth is
*additive* (:math:`\rho_t d\epsilon_2` per step); above :math:`\epsilon_2` it is
*multiplicative* (a factor :math:`1 + \rho_t d`). The looser product bound
:func:`optbook.reference.instability.parameter_scale_bound` multiplies from
:math:`\max(\epsilon_2, \mathrm{RMS}(X_0))` at once and is attained only when
:math:`\mathrm{RMS}(X_0) \ge \epsilon_2`.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.reference import adafactor as af

__all__ = ["tight_scale_bound", "steps_to_reach", "zero_start_phases", "adversarial_rms_path", "multiplicative_growth_steps"]
__helpers__ = ("steps_to_reach", "zero_start_phases", "adversarial_rms_path")


def _check(rms_x0: float, eps2: float, d: float, rho_cap: float) -> None:
    if not (np.isfinite(eps2) and eps2 > 0):
        raise ValueError(f"eps2 must be a finite number > 0, got {eps2!r}.")
    if not (np.isfinite(d) and d > 0):
        raise ValueError(f"d must be a finite number > 0 (with d = inf there is no bound), got {d!r}.")
    if not (np.isfinite(rho_cap) and rho_cap > 0):
        raise ValueError(f"rho_cap must be a finite number > 0, got {rho_cap!r}.")
    if not (np.isfinite(rms_x0) and rms_x0 >= 0):
        raise ValueError(f"rms_x0 must be a finite number >= 0 (it is an RMS), got {rms_x0!r}.")


@symbol(
    r"b_t = b_{t-1} + \rho_t d \max(\epsilon_2, b_{t-1})",
    "tight bound on RMS(X_t): additive below eps2, multiplicative above",
)
def tight_scale_bound(t, rms_x0: float = 0.0, *, eps2: float = 1e-3, d: float = 1.0, rho_cap: float = 1e-2):
    r"""The smallest upper bound on :math:`\mathrm{RMS}(X_t)` that holds for every gradient sequence.

    .. math::

        b_0 = \mathrm{RMS}(X_0), \qquad
        b_t = b_{t-1} + \rho_t\, d\max(\epsilon_2, b_{t-1}), \qquad
        \rho_t = \min(\text{cap}, 1/\sqrt t) .

    From :math:`X_0 = 0` with a constant :math:`\rho`: :math:`b_t = t\rho d\epsilon_2` until
    :math:`b_t \ge \epsilon_2`, then :math:`b_t` grows by the factor :math:`1 + \rho d` per step.
    ``t`` may be a whole number or an array of them (one pass up to the largest).
    """
    _check(rms_x0, eps2, d, rho_cap)
    steps = np.asarray(t)
    if steps.size == 0 or np.any(steps < 0) or np.any(steps != np.floor(steps)):
        raise ValueError(f"t must be a whole number >= 0 (or an array of them), got {t!r}.")
    t_max = int(steps.max())
    # rho_j = min(cap, 1/sqrt(j)) for all j at once: the same float64 values as af.relative_step_size(j, cap)
    rho = np.minimum(rho_cap, 1.0 / np.sqrt(np.arange(1, t_max + 1, dtype=float))).tolist()
    path = [float(rms_x0)]
    b = path[0]
    for r in rho:
        b = b + r * d * max(eps2, b)
        path.append(b)
    path = np.array(path)
    out = path[steps.astype(int)]
    return float(out) if out.ndim == 0 else out


def steps_to_reach(scale: float, rms_x0: float = 0.0, *, eps2: float = 1e-3, d: float = 1.0,
                   rho_cap: float = 1e-2, t_max: int = 10**7) -> int:
    r"""The first :math:`t` with :func:`tight_scale_bound` :math:`b_t \ge` ``scale``: no run reaches it sooner.

    Returns 0 if ``rms_x0 >= scale``. Raises ``ValueError`` if the bound does not reach ``scale``
    within ``t_max`` steps (raise ``t_max``).
    """
    _check(rms_x0, eps2, d, rho_cap)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}.")
    b = float(rms_x0)
    for j in range(1, int(t_max) + 1):
        if b >= scale:
            return j - 1
        b = b + af.relative_step_size(j, rho_cap) * d * max(eps2, b)
    if b >= scale:
        return int(t_max)
    raise ValueError(f"the bound does not reach scale={scale!r} within t_max={t_max} steps; pass a larger t_max.")


def zero_start_phases(scale: float, *, eps2: float = 1e-3, d: float = 1.0, rho_cap: float = 1e-2) -> dict[str, int]:
    r"""The fastest possible start from :math:`X_0 = 0`, split into its two phases.

    ``{"additive": t1, "multiplicative": t2 - t1, "total": t2}`` where ``t1`` is the first step with
    :math:`b_t \ge \epsilon_2` (growth :math:`\rho_t d\epsilon_2` per step before it) and ``t2`` the
    first with :math:`b_t \ge` ``scale`` (``scale`` must exceed ``eps2``).
    """
    if not (np.isfinite(scale) and scale > eps2):
        raise ValueError(f"scale must be a finite number above eps2={eps2!r}, got {scale!r}.")
    t1 = steps_to_reach(eps2, 0.0, eps2=eps2, d=d, rho_cap=rho_cap)
    t2 = steps_to_reach(scale, 0.0, eps2=eps2, d=d, rho_cap=rho_cap)
    return {"additive": t1, "multiplicative": t2 - t1, "total": t2}


@symbol(r"\ln c / \ln(1 + \rho d)", "steps for the tight RMS bound to grow by a factor c above the floor eps2")
def multiplicative_growth_steps(factor: float, *, d: float = 1.0, rho_cap: float = 1e-2) -> float:
    r"""How many steps the bound :func:`tight_scale_bound` needs to grow by ``factor`` :math:`= c` above the floor,

    .. math::

        \frac{\ln c}{\ln(1 + \rho d)} .

    Derivation: once :math:`b_{t_0} \ge \epsilon_2`, the bound's recursion is
    :math:`b_t = b_{t-1}(1 + \rho_t d)`, and while :math:`\rho_t = \rho` is at its cap (that is
    :math:`t \le 1/\rho^2`, the first :math:`10^4` steps for :math:`\rho = 10^{-2}`),
    :math:`b_{t_0 + k} = b_{t_0}(1 + \rho d)^k`. Solving :math:`(1 + \rho d)^k = c` for :math:`k` gives the
    formula (a real number: the bound itself reaches :math:`c\,b_{t_0}` at the next whole step). The number of
    steps from :math:`X_0 = 0` to a scale :math:`r` is about :math:`1/(\rho d) + \ln(r/\epsilon_2)/\ln(1+\rho d)`, so
    multiplying :math:`\epsilon_2` by :math:`c` takes this many steps off it, and dividing it by :math:`c` adds
    this many. Raises ``TypeError`` for a ``factor`` that is not a number, ``ValueError`` for one that is
    not finite and :math:`\ge 1`, or for a ``d`` or ``rho_cap`` that is not a finite number :math:`> 0`.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)):
        raise TypeError(f"factor must be a number (the growth factor c), got {type(factor).__name__}.")
    if not (np.isfinite(factor) and factor >= 1):
        raise ValueError(f"factor must be a finite number >= 1 (a growth factor c), got {factor!r}.")
    if not (np.isfinite(d) and d > 0):
        raise ValueError(f"d must be a finite number > 0, got {d!r}.")
    if not (np.isfinite(rho_cap) and rho_cap > 0):
        raise ValueError(f"rho_cap must be a finite number > 0, got {rho_cap!r}.")
    return float(np.log(factor) / np.log(1 + rho_cap * d))


def adversarial_rms_path(shape: tuple[int, ...], steps: int, hp: af.AdafactorHyperparameters | None = None) -> np.ndarray:
    r""":math:`\mathrm{RMS}(X_t)` for :math:`t = 0, \dots,` ``steps`` of the reference Adafactor from :math:`X_0 = 0`
    under the gradient that grows the tensor fastest.

    The gradient is :math:`G_t = -1` in every entry: then :math:`\hat V_t = 1` (to rounding),
    :math:`U_t = -1` with :math:`\mathrm{RMS}(U_t) = 1`, and every step points away from the origin
    along :math:`X_{t-1}`, so the triangle inequality behind :func:`tight_scale_bound` holds with
    equality (for ``hp.d = 1``). Runs :func:`optbook.reference.adafactor.step`.
    """
    hp = af.AdafactorHyperparameters() if hp is None else hp
    if not isinstance(hp, af.AdafactorHyperparameters):
        raise TypeError(f"hp must be an AdafactorHyperparameters, got {type(hp).__name__}.")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}.")
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive sizes, got {shape!r}.")
    x, state, g = np.zeros(shape), af.AdafactorState(), -np.ones(shape)
    path = np.empty(int(steps) + 1)
    path[0] = 0.0
    for i in range(1, int(steps) + 1):
        x = af.step(x, g, state, hp)
        path[i] = af.rms(x)
    return path
