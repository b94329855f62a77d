"""Problems the chapters optimise, each a loss with its exact gradient.

:mod:`~optbook.problems.analytic`
    the 2-D test functions (Rosenbrock, Beale, the saddle), the wiki's worked
    example, the :class:`Problem` and :class:`FiniteSum` containers;
:mod:`~optbook.problems.quadratic`
    the quadratic bowl, analysable direction by direction;
:mod:`~optbook.problems.double_well`, :mod:`~optbook.problems.sharp_flat`, :mod:`~optbook.problems.saddle`
    non-convex toys: two minima, one sharp and one flat direction, leaving a saddle;
:mod:`~optbook.problems.features`
    features of different scale and frequency.

Every public name of these modules is also available here, e.g. ``optbook.problems.rosenbrock``.
"""

from optbook.problems import analytic, double_well, features, quadratic, saddle, sharp_flat
from optbook.problems.analytic import *  # noqa: F401,F403
from optbook.problems.quadratic import *  # noqa: F401,F403
from optbook.problems.double_well import *  # noqa: F401,F403
from optbook.problems.sharp_flat import *  # noqa: F401,F403
from optbook.problems.saddle import *  # noqa: F401,F403
from optbook.problems.features import *  # noqa: F401,F403

__all__ = [
    "analytic",
    "double_well",
    "features",
    "quadratic",
    "saddle",
    "sharp_flat",
    "Problem",
    "matrix_distance_loss",
    "matrix_distance_grad",
    "worked_example",
    "rosenbrock",
    "rosenbrock_grad",
    "beale",
    "beale_grad",
    "saddle",
    "saddle_grad",
    "rosenbrock_problem",
    "beale_problem",
    "saddle_problem",
    "FiniteSum",
    "quadratic",
    "quadratic_grad",
    "quadratic_problem",
    "tilted_double_well",
    "tilted_double_well_grad",
    "double_well_task",
    "sharp_flat_loss",
    "sharp_flat_grad",
    "sharp_flat_hessian_diagonal",
    "sharp_flat_problem",
    "SHARP_FLAT_MINIMIZER",
    "SHARP_FLAT_SADDLE",
    "saddle_escape_steps",
    "steps_within",
    "numerical_hessian",
    "feature_design",
]
