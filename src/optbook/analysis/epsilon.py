r"""Where epsilon goes: torch's Adagrad/RMSprop step over the lecture's, for the same accumulator.
"""

from __future__ import annotations

import math

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array

__all__ = [
    "eps_placement_ratio",
]


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
