r"""How large can an entry of Adam's update direction be?

Adam's update per unit learning rate is :math:`u_t = \hat m_t/(\sqrt{\hat v_t}+\epsilon)`.
It is tempting to say its entries lie in :math:`(-1, 1)`, as if :math:`\hat m_t` were a
gradient and :math:`\sqrt{\hat v_t}` its magnitude. They are averages with different
memories, so a gradient sequence can make :math:`|u_t|` larger than 1:

* one large gradient after a long run of (nearly) zero ones gives
  :math:`|u_t| \to (1-\beta_1)/\sqrt{1-\beta_2}` (:func:`adam_spike_ratio`), 3.16 at the defaults;
* the supremum over all sequences, by Cauchy–Schwarz, is
  :math:`(1-\beta_1)/\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}` (:func:`adam_update_sup`), 7.27 at
  the defaults, approached by gradients that grow by :math:`\beta_2/\beta_1` per step
  (:func:`adam_worst_case_gradients`).

Both are limits for large :math:`t`, where the bias corrections are 1.
"""

from __future__ import annotations

import math

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_beta
from optbook.reference.adam import adam_direction, bias_correction, first_moment, second_moment

__all__ = [
    "adam_spike_ratio",
    "adam_update_sup",
    "adam_worst_case_gradients",
    "adam_directions",
]
__helpers__ = ("adam_worst_case_gradients", "adam_directions")


@symbol(r"(1-\beta_1)/\sqrt{1-\beta_2}", "|u_t| for one gradient after a long run of zero gradients (large t)")
def adam_spike_ratio(beta1: float, beta2: float) -> float:
    r""":math:`|u_t|` when a gradient :math:`g` follows a long run of zero gradients: :math:`(1-\beta_1)/\sqrt{1-\beta_2}`.

    Then :math:`m_t = (1-\beta_1)g` and :math:`v_t = (1-\beta_2)g^2`, and at large :math:`t` the
    bias corrections are 1.
    """
    beta1, beta2 = check_beta(beta1, "beta1"), check_beta(beta2, "beta2")
    return (1.0 - beta1) / math.sqrt(1.0 - beta2)


@symbol(
    r"\sup|u_t| = \frac{1-\beta_1}{\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}}",
    "the largest entry of Adam's update direction over all gradient sequences (large t)",
)
def adam_update_sup(beta1: float, beta2: float) -> float:
    r"""The supremum of :math:`|m_t|/\sqrt{v_t}` over all gradient sequences, for :math:`\beta_1^2 < \beta_2`.

    With :math:`m_t = (1-\beta_1)\sum_k \beta_1^k g_{t-k}` and
    :math:`v_t = (1-\beta_2)\sum_k \beta_2^k g_{t-k}^2`, Cauchy–Schwarz applied to
    :math:`\sum_k (\beta_1/\sqrt{\beta_2})^k\cdot\sqrt{\beta_2}^k g_{t-k}` gives

    .. math:: |m_t| \le (1-\beta_1)\sqrt{\textstyle\sum_k (\beta_1^2/\beta_2)^k}\,\sqrt{v_t/(1-\beta_2)}
              \le \frac{1-\beta_1}{\sqrt{(1-\beta_2)(1-\beta_1^2/\beta_2)}}\sqrt{v_t},

    with equality in the limit for :math:`g_{t-k} \propto (\beta_1/\beta_2)^k`. For
    :math:`\beta_1^2 \ge \beta_2` the ratio is unbounded.
    """
    beta1, beta2 = check_beta(beta1, "beta1"), check_beta(beta2, "beta2")
    if beta1 * beta1 >= beta2:
        raise ValueError(
            f"beta1**2 must be < beta2 for a finite bound, got beta1={beta1}, beta2={beta2}; "
            "with beta1**2 >= beta2 a growing gradient sequence makes |u_t| as large as you like."
        )
    return (1.0 - beta1) / math.sqrt((1.0 - beta2) * (1.0 - beta1 * beta1 / beta2))


def adam_worst_case_gradients(steps: int, beta1: float, beta2: float) -> np.ndarray:
    r"""The gradient sequence that attains :func:`adam_update_sup` as ``steps`` grows: :math:`g_i = (\beta_1/\beta_2)^{T-i}`, :math:`g_T = 1`."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    beta1, beta2 = check_beta(beta1, "beta1"), check_beta(beta2, "beta2")
    return (beta1 / beta2) ** np.arange(int(steps) - 1, -1, -1, dtype=np.float64)


def adam_directions(grads, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> np.ndarray:
    r"""Adam's direction :math:`u_t = \hat m_t/(\sqrt{\hat v_t}+\epsilon)` at every step of a scalar gradient sequence.

    Built from the book's :func:`~optbook.reference.adam.first_moment`,
    :func:`~optbook.reference.adam.second_moment`, :func:`~optbook.reference.adam.bias_correction`
    and :func:`~optbook.reference.adam.adam_direction`.
    """
    g = as_array(grads, "grads")
    if g.ndim != 1:
        raise ValueError(f"grads must be a 1-D sequence of scalar gradients, got shape {g.shape}.")
    m = v = np.zeros(1)
    out = np.empty(g.size)
    for t, gt in enumerate(g, start=1):
        m, v = first_moment(m, np.array([gt]), beta1), second_moment(v, np.array([gt]), beta2)
        out[t - 1] = adam_direction(bias_correction(m, beta1, t), bias_correction(v, beta2, t), eps)[0]
    return out
