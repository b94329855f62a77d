r"""Warm-up and the schedules built around it: linear warm-up composed with any decay, the inverse
square root of the Transformer and of T5, warm-up–stable–decay (WSD), and RAdam's rectification,
a warm-up that Adam computes for itself.

Step convention: :math:`t = 0, 1, \dots` updates already taken (:mod:`optbook.schedules.annealing`).
A linear warm-up of :math:`w` steps gives the first update :math:`\eta/w` and reaches :math:`\eta`
at its :math:`w`-th update, :math:`t = w - 1`. The papers' formulas that count steps from 1
(``step_num`` of the Transformer, :math:`n` of T5) are evaluated at :math:`s = t + 1`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from optbook.notation import symbol
from optbook.reference._checks import check_beta, check_lr, check_step_count
from optbook.schedules._args import count, real

__all__ = [
    "warmup_factor",
    "with_warmup",
    "noam_lr",
    "t5_inverse_sqrt_lr",
    "wsd_lr",
    "radam_sma_length",
    "radam_rectification",
]
# with_warmup composes two schedules into a third; it computes no formula of its own.
__helpers__ = ("with_warmup",)

WSD_DECAY_SHAPES = ("linear", "cosine", "1-sqrt")


@symbol(r"\min\bigl(1, (t + 1)/w\bigr)", "linear warm-up factor over w steps")
def warmup_factor(t: int, warmup: int) -> float:
    r"""Linear warm-up factor :math:`\min(1, (t+1)/w)` for ``warmup`` :math:`= w \ge 1` steps.

    ``warmup=0`` (no warm-up) is allowed and gives 1.
    """
    t = check_step_count(t)
    warmup = count(warmup, "warmup", minimum=0)
    return 1.0 if warmup == 0 else min(1.0, (t + 1) / warmup)


def with_warmup(schedule: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    r"""The schedule that warms up linearly for ``warmup`` :math:`= w` steps and then runs ``schedule``.

    Returns :math:`t \mapsto \eta^{\mathrm{after}}_0\,\min(1, (t+1)/w)` for :math:`t < w` and
    :math:`t \mapsto \eta^{\mathrm{after}}_{t - w}` for :math:`t \ge w`, where
    :math:`\eta^{\mathrm{after}}` is ``schedule`` (a function of the step, such as
    ``functools.partial(cosine_lr, lr0=1e-3, total=900)``). The decay starts after the warm-up:
    this is how the ``transformers`` schedules compose the two.
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a function of the step t, got {type(schedule).__name__}; "
                        f"pass e.g. functools.partial(cosine_lr, lr0=1e-3, total=1000).")
    warmup = count(warmup, "warmup", minimum=0)
    peak = schedule(0)

    def warmed_up(t: int) -> float:
        t = check_step_count(t)
        return peak * warmup_factor(t, warmup) if t < warmup else schedule(t - warmup)

    return warmed_up


@symbol(r"\eta_t = d_{\mathrm{model}}^{-1/2}\min\bigl(s^{-1/2},\, s\,w^{-3/2}\bigr),\ s = t + 1",
        "inverse-square-root schedule of the original Transformer")
def noam_lr(t: int, d_model: int, warmup: int = 4000, scale: float = 1.0) -> float:
    r"""Vaswani et al. (2017): :math:`\eta_t = c\,d_{\mathrm{model}}^{-1/2}\min(s^{-1/2}, s\,w^{-3/2})` with :math:`s = t+1`.

    ``warmup`` :math:`= w` (4000 in the paper), ``scale`` :math:`= c` (1 in the paper). It rises
    linearly to its peak :math:`c\,(d_{\mathrm{model}}\,w)^{-1/2}` at :math:`s = w` and then decays
    as :math:`s^{-1/2}`. Divided by its peak it is :math:`\min(s/w, \sqrt{w/s})`.
    """
    t = check_step_count(t)
    d_model = count(d_model, "d_model")
    warmup = count(warmup, "warmup")
    scale = check_lr(scale, "scale")
    s = t + 1
    return scale * d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)


@symbol(r"\eta_t = 1/\sqrt{\max(s, k)},\ s = t + 1", "T5's inverse-square-root schedule, constant for k steps")
def t5_inverse_sqrt_lr(t: int, k: int = 10_000) -> float:
    r"""Raffel et al. (2020): :math:`\eta_t = 1/\sqrt{\max(s, k)}` with :math:`s = t + 1` and :math:`k = 10^4`.

    Constant at :math:`k^{-1/2} = 10^{-2}` for the first :math:`k` steps (T5 calls them warm-up
    steps, though the rate does not rise), then :math:`s^{-1/2}`. Used with Adafactor, whose
    relative step :math:`\rho_t = \min(10^{-2}, t^{-1/2})` is the same function with :math:`k = 10^4`.
    """
    t = check_step_count(t)
    k = count(k, "k")
    return 1.0 / math.sqrt(max(t + 1, k))


@symbol(r"\eta_t^{\mathrm{WSD}}", "warm-up, stable, decay: linear warm-up, a constant plateau, a short decay to a floor")
def wsd_lr(t: int, lr0: float, warmup: int, stable: int, decay: int, *, lr_min: float = 0.0,
           decay_shape: str = "linear") -> float:
    r"""Warm-up–stable–decay (Hu et al., 2024).

    .. math::

        \eta_t = \begin{cases}
        \eta_0 \min(1, (t + 1)/w) & t < w \\
        \eta_0 & w \le t < w + S \\
        \eta_{\min} + (\eta_0 - \eta_{\min})\,f\bigl((t - w - S)/D\bigr) & w + S \le t < w + S + D \\
        \eta_{\min} & t \ge w + S + D
        \end{cases}

    with ``warmup`` :math:`w`, ``stable`` :math:`S`, ``decay`` :math:`D` and the decay shape
    :math:`f(p) = 1 - p` (``"linear"``), :math:`\tfrac12(1 + \cos\pi p)` (``"cosine"``) or
    :math:`1 - \sqrt p` (``"1-sqrt"``), the shapes of ``transformers.get_wsd_schedule``.
    """
    t = check_step_count(t)
    lr0, lr_min = check_lr(lr0, "lr0"), check_lr(lr_min, "lr_min")
    warmup, stable = count(warmup, "warmup", 0), count(stable, "stable", 0)
    decay = count(decay, "decay")
    if decay_shape not in WSD_DECAY_SHAPES:
        raise ValueError(f"decay_shape must be one of {WSD_DECAY_SHAPES}, got {decay_shape!r}.")
    if t < warmup:
        return lr0 * warmup_factor(t, warmup)
    if t < warmup + stable:
        return lr0
    p = (t - warmup - stable) / decay
    if p >= 1.0:
        return lr_min
    f = {"linear": 1.0 - p, "cosine": 0.5 * (1.0 + math.cos(math.pi * p)), "1-sqrt": 1.0 - math.sqrt(p)}[decay_shape]
    return lr_min + (lr0 - lr_min) * f


@symbol(r"\rho_t = \rho_\infty - 2t\beta_2^t/(1 - \beta_2^t)",
        "RAdam's length of the simple moving average that Adam's second moment approximates")
def radam_sma_length(t: int, beta2: float = 0.999) -> float:
    r"""Liu et al. (2020): :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)` with :math:`\rho_\infty = 2/(1-\beta_2) - 1`.

    Here :math:`t \ge 1` is Adam's own step counter (the number of gradients in :math:`v_t`).
    :math:`\rho_1 = 1`: the first estimate :math:`\hat v_1 = g_1^2` rests on one sample.
    """
    if isinstance(t, bool) or int(t) != t or t < 1:
        raise ValueError(f"t must be Adam's step counter, a whole number >= 1, got {t!r}.")
    beta2 = check_beta(beta2, "beta2")
    if beta2 == 0.0:
        raise ValueError("beta2 must be > 0: with beta2 = 0 the second moment is one sample at every step.")
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    bt = beta2 ** int(t)
    return rho_inf - 2.0 * int(t) * bt / (1.0 - bt)


@symbol(r"r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}",
        "RAdam's variance rectification (0 while rho_t <= 4)")
def radam_rectification(t: int, beta2: float = 0.999) -> float:
    r"""RAdam's rectification :math:`r_t`, which multiplies Adam's adaptive step once :math:`\rho_t > 4`.

    For :math:`\rho_t \le 4` the variance of the adaptive rate :math:`\psi_t = 1/\sqrt{\hat v_t}`
    (under the scaled inverse chi-squared approximation with :math:`\rho_t` degrees of freedom)
    is not finite or not tractable, and RAdam takes an un-adapted momentum step instead; this
    function returns 0 there. :math:`r_t \to 1` as :math:`t \to \infty`.
    """
    rho = radam_sma_length(t, beta2)
    rho_inf = 2.0 / (1.0 - check_beta(beta2, "beta2")) - 1.0
    if rho <= 4.0:
        return 0.0
    return math.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
