r"""Learning-rate schedules :math:`\eta_t`, as functions of the step.
"""

from optbook.schedules import decay
from optbook.schedules.decay import *  # noqa: F401,F403

__all__ = [
    "decay",
    *decay.__all__,
]
