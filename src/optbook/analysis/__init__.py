"""Measurements and checks: what a state costs, how fast a rule converges, how well it agrees.

:mod:`~optbook.analysis.memory`
    optimizer state, measured on any torch optimizer and counted by hand;
:mod:`~optbook.analysis.rates`, :mod:`~optbook.analysis.noise`, :mod:`~optbook.analysis.paths`, :mod:`~optbook.analysis.batch_size`, :mod:`~optbook.analysis.epsilon`, :mod:`~optbook.analysis.errors`, :mod:`~optbook.analysis.step_sizes`, :mod:`~optbook.analysis.curves`, :mod:`~optbook.analysis.penalised`
    convergence rates and stability limits, mini-batch noise, paths on 2-D
    functions, learning rate against batch size, where epsilon goes, relative errors,
    effective step sizes, loss curves, the minimiser of an L2-penalised loss;
:mod:`~optbook.analysis.crosscheck`
    every installed upstream Adafactor run side by side with optbook's;
:mod:`~optbook.analysis.misconceptions`, :mod:`~optbook.analysis.wiki`
    what popular descriptions of Adafactor compute, and the wiki's printed numbers.

The names of the first group are also available here, e.g. ``optbook.analysis.critical_lr``.
"""

from optbook.analysis import adam_bounds, batch_size, crosscheck, curves, epsilon, errors, memory, misconceptions, noise, paths, penalised, rates, step_sizes, wiki
from optbook.analysis import applications  # noqa: F401
from optbook.analysis import choosing  # noqa: F401
from optbook.analysis import seeds  # noqa: F401
from optbook.analysis.memory import *  # noqa: F401,F403
from optbook.analysis.adam_bounds import *  # noqa: F401,F403
from optbook.analysis.rates import *  # noqa: F401,F403
from optbook.analysis.noise import *  # noqa: F401,F403
from optbook.analysis.paths import *  # noqa: F401,F403
from optbook.analysis.batch_size import *  # noqa: F401,F403
from optbook.analysis.epsilon import *  # noqa: F401,F403
from optbook.analysis.errors import *  # noqa: F401,F403
from optbook.analysis.step_sizes import *  # noqa: F401,F403
from optbook.analysis.curves import *  # noqa: F401,F403
from optbook.analysis.penalised import *  # noqa: F401,F403

__all__ = [
    "adam_bounds",
    "batch_size",
    "crosscheck",
    "curves",
    "epsilon",
    "errors",
    "memory",
    "misconceptions",
    "noise",
    "paths",
    "penalised",
    "rates",
    "step_sizes",
    "wiki",
    *memory.__all__,
    *adam_bounds.__all__,
    *rates.__all__,
    *noise.__all__,
    *paths.__all__,
    *batch_size.__all__,
    *epsilon.__all__,
    *errors.__all__,
    *step_sizes.__all__,
    *curves.__all__,
    *penalised.__all__,
]
