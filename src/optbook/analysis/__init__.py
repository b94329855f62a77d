"""Measurements and checks: what a state costs, how fast a rule converges, how well it agrees.

:mod:`~optbook.analysis.memory`
    optimizer state, measured on any torch optimizer and counted by hand;
:mod:`~optbook.analysis.rates`, :mod:`~optbook.analysis.noise`, :mod:`~optbook.analysis.paths`, :mod:`~optbook.analysis.batch_size`, :mod:`~optbook.analysis.epsilon`, :mod:`~optbook.analysis.errors`
    convergence rates and stability limits, mini-batch noise, paths on 2-D
    functions, learning rate against batch size, where epsilon goes, relative errors;
:mod:`~optbook.analysis.crosscheck`
    every installed upstream Adafactor run side by side with optbook's;
:mod:`~optbook.analysis.misconceptions`, :mod:`~optbook.analysis.wiki`
    what popular descriptions of Adafactor compute, and the wiki's printed numbers.

The names of the first group are also available here, e.g. ``optbook.analysis.critical_lr``.
"""

from optbook.analysis import batch_size, crosscheck, epsilon, errors, memory, misconceptions, noise, paths, rates, wiki
from optbook.analysis.memory import *  # noqa: F401,F403
from optbook.analysis.rates import *  # noqa: F401,F403
from optbook.analysis.noise import *  # noqa: F401,F403
from optbook.analysis.paths import *  # noqa: F401,F403
from optbook.analysis.batch_size import *  # noqa: F401,F403
from optbook.analysis.epsilon import *  # noqa: F401,F403
from optbook.analysis.errors import *  # noqa: F401,F403

__all__ = [
    "batch_size",
    "crosscheck",
    "epsilon",
    "errors",
    "memory",
    "misconceptions",
    "noise",
    "paths",
    "rates",
    "wiki",
    "optimizer_state_bytes",
    "optimizer_state_numbers",
    "adafactor_state_numbers",
    "bytes_per_element",
    "numel",
    "full_state_numbers",
    "total_numbers",
    "state_fraction",
    "static_training_bytes",
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
    "per_example_variance",
    "minibatch_variance",
    "sampled_minibatch_variance",
    "momentum_oscillation_lr",
    "overshoot",
    "heading_error",
    "first_exit",
    "trace_path",
    "best_path",
    "PATH_RULES",
    "linear_scaling_lr",
    "sqrt_scaling_lr",
    "log_parabola_argmin",
    "eps_placement_ratio",
    "relative_error",
]
