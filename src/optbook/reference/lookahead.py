r"""Lookahead (Zhang et al. 2019) around any rule, and Ranger (Wright 2019): RAdam + Lookahead + GC.

Lookahead keeps two copies of the weights. The *fast* weights :math:`\theta`
take :math:`k` steps of an inner optimizer; then the *slow* weights
:math:`\phi` move a fraction :math:`\alpha` of the way towards them, and the
fast weights restart from there:

.. math::

    \theta_{\tau,0} &= \phi_{\tau-1} \\
    \theta_{\tau,i} &= \theta_{\tau,i-1} + \text{inner step}(g_{\tau,i}), \quad i = 1,\dots,k \\
    \phi_\tau &= \phi_{\tau-1} + \alpha\,(\theta_{\tau,k} - \phi_{\tau-1}).

The inner optimizer's state (Adam's moments) is carried on across the reset,
as in the paper and in pytorch-optimizer's ``Lookahead`` (``pullback_momentum='none'``).

Ranger is Lookahead (:math:`k=6`, :math:`\alpha=\tfrac12`) around RAdam, with
gradient centralization (:func:`optbook.reference.centralize_gradient`) of every
gradient of a tensor with more than one axis, as in pytorch-optimizer's
``Ranger(use_gc=True)``; Wright's original Ranger had no gradient centralization
(it was added in a later version of his code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import _real, as_array, check_interval, check_same_shape, params_and_grad
from optbook.reference.gradient_centralization import centralize_gradient
from optbook.reference.radam import radam_step

__all__ = ["LookaheadState", "slow_weights_update", "lookahead_step", "ranger_step"]
__helpers__ = ("lookahead_step", "ranger_step")


@dataclass(frozen=True)
class LookaheadState:
    r"""The inner rule's state, the slow weights :math:`\phi`, and the fast steps taken since the last sync."""

    inner: Any
    slow: np.ndarray
    count: int = 0


def _check_alpha(alpha) -> float:
    alpha = _real(alpha, "alpha")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}; it is the fraction of the way the slow weights move (0.5 is usual).")
    return alpha


@symbol(r"\phi_\tau = \phi_{\tau-1} + \alpha(\theta_{\tau,k} - \phi_{\tau-1})", "Lookahead's slow-weight update")
def slow_weights_update(slow: np.ndarray, fast: np.ndarray, alpha: float) -> np.ndarray:
    r""":math:`\phi + \alpha(\theta - \phi)`: the slow weights move a fraction :math:`\alpha` towards the fast ones."""
    slow, fast = as_array(slow, "slow"), as_array(fast, "fast")
    check_same_shape(slow, fast, "fast", "slow")
    return slow + _check_alpha(alpha) * (fast - slow)


def lookahead_step(
    x: np.ndarray,
    g: np.ndarray,
    state: LookaheadState | None = None,
    *,
    inner,
    k: int = 5,
    alpha: float = 0.5,
    **hyperparameters,
) -> tuple[np.ndarray, LookaheadState]:
    r"""One fast step of ``inner`` (any ``<rule>_step``); every ``k``-th step also syncs the slow weights.

    ``hyperparameters`` go to ``inner``. ``state=None`` starts with :math:`\phi_0 = \theta_0` = ``x``.
    Returns the fast weights (equal to the slow ones right after a sync).
    """
    x, g = params_and_grad(x, g)
    if not callable(inner):
        raise TypeError(f"inner must be a step function such as optbook.reference.adam_step, got {inner!r}.")
    k = check_interval(k, "k")
    alpha = _check_alpha(alpha)
    if state is None:
        state = LookaheadState(inner=None, slow=x.copy())
    check_same_shape(x, state.slow, "state.slow")
    fast, inner_state = inner(x, g, state.inner, **hyperparameters)
    count = state.count + 1
    if count < k:
        return fast, LookaheadState(inner=inner_state, slow=state.slow, count=count)
    slow = slow_weights_update(state.slow, fast, alpha)
    return slow.copy(), LookaheadState(inner=inner_state, slow=slow, count=0)


def ranger_step(
    x: np.ndarray,
    g: np.ndarray,
    state: LookaheadState | None = None,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.95, 0.999),
    eps: float = 1e-5,
    k: int = 6,
    alpha: float = 0.5,
    use_gc: bool = True,
    below_threshold: str = "sgd",
) -> tuple[np.ndarray, LookaheadState]:
    r"""One Ranger step: RAdam on :math:`\Phi_{GC}(g_t)` inside Lookahead. Defaults are pytorch-optimizer's.

    ``below_threshold="sgd"`` matches pytorch-optimizer's ``degenerated_to_sgd=True``; see the
    chapter for what its default ``False`` does. ``use_gc=False`` drops gradient centralization.
    """
    x, g = params_and_grad(x, g)
    if not isinstance(use_gc, bool):
        raise TypeError(f"use_gc must be True or False, got {use_gc!r}.")
    if use_gc:
        g = centralize_gradient(g)
    return lookahead_step(
        x, g, state, inner=radam_step, k=k, alpha=alpha, lr=lr, betas=betas, eps=eps, below_threshold=below_threshold
    )
