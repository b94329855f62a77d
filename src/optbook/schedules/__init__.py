r"""Learning-rate schedules :math:`\eta_t`, as functions of the step.
"""

from optbook.schedules import annealing, cyclic, decay, relative_step, torch_adapter, upstream, warmup
from optbook.schedules.decay import *  # noqa: F401,F403
from optbook.schedules.annealing import *  # noqa: F401,F403
from optbook.schedules.cyclic import *  # noqa: F401,F403
from optbook.schedules.warmup import *  # noqa: F401,F403
from optbook.schedules.relative_step import *  # noqa: F401,F403
from optbook.schedules.torch_adapter import *  # noqa: F401,F403

__all__ = [
    "decay",
    "annealing",
    "cyclic",
    "warmup",
    "relative_step",
    "torch_adapter",
    "upstream",
    *decay.__all__,
    *annealing.__all__,
    *cyclic.__all__,
    *warmup.__all__,
    *relative_step.__all__,
    *torch_adapter.__all__,
]
