r"""What the Cornell Optimization Wiki's Adafactor page prints for its worked example.

These are transcriptions of the page's numbers (facts about the source, kept
so that the book can check each one against a computation), together with the
one formula the page applies by mistake. See the chapter "Adafactor by hand".
The page works with row and column *means*, :math:`\bar R = R/m` and
:math:`\bar C = C/n`, where the algorithm box uses sums.
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol

#: The nine terms the page squares and sums for RMS(X0); the sixth is -0.6, whereas X0 holds -1.6.
PRINTED_RMS_TERMS = np.array([0.7, -0.5, 0.9, -1.1, 0.8, -0.6, 1.2, -0.7, 0.4])
#: The sum of squares the page writes under the square root, and its result.
PRINTED_RMS_SUM = 6.85
PRINTED_RMS_X0 = 0.806
PRINTED_ALPHA_1 = 0.00806
PRINTED_R1 = np.array([0.0967, 0.2067, 0.0967])
PRINTED_C1 = np.array([0.1267, 0.1867, 0.0867])
PRINTED_VHAT_1 = np.array([[0.0122, 0.0180, 0.0084], [0.0262, 0.0386, 0.0179], [0.0122, 0.0180, 0.0084]])
PRINTED_U1 = np.array([[2.711, -1.489, 4.370], [-3.090, 3.055, -0.747], [1.807, -2.978, 3.278]])
PRINTED_RMS_U1 = 3.303
PRINTED_U1_HAT = np.array([[0.965, -0.53, 1.556], [-1.1, 1.088, -0.266], [0.664, -1.06, 1.167]])
PRINTED_X1 = np.array([[0.692, -0.496, 0.887], [-1.091, 0.791, -0.596], [1.195, -0.691, 0.391]])


@symbol(r"\bar R_t \bar C_t", "the wiki's printed second moment: the outer product of row and column means, never divided by 1^T R")
def printed_second_moment(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r"""The page's :math:`\hat V_1 = \bar R_1 \otimes \bar C_1`, from row and column *sums* ``r``, ``c``.

    It equals the correct :math:`R C / 1^\top R` times :math:`1^\top R/(nm)`,
    the mean of :math:`G^2 + \epsilon_1` averaged by the EMA: a scalar that
    clipping hides at step 1 but that changes from step to step.
    """
    r = np.asarray(r, dtype=float)
    c = np.asarray(c, dtype=float)
    n, m = r.shape[-1], c.shape[-1]
    return (r / m)[..., :, None] * (c / n)[..., None, :]
