"""Problems the chapters optimise, each a loss with its exact gradient.

:mod:`~optbook.problems.analytic`
    the 2-D test functions (Rosenbrock, Beale, the saddle), the wiki's worked
    example, the :class:`Problem` and :class:`FiniteSum` containers;
:mod:`~optbook.problems.quadratic_bowl`
    the quadratic bowl, analysable direction by direction;
:mod:`~optbook.problems.double_well`, :mod:`~optbook.problems.sharp_flat`, :mod:`~optbook.problems.saddle_escape`
    non-convex toys: two minima, one sharp and one flat direction, leaving a saddle;
:mod:`~optbook.problems.features`
    features of different scale and frequency.

Every public name of these modules is also available here, e.g. ``optbook.problems.rosenbrock``.
"""

from optbook.problems import analytic, double_well, features, quadratic_bowl, saddle_escape, sharp_flat
from optbook.problems.analytic import *  # noqa: F401,F403
from optbook.problems.quadratic_bowl import *  # noqa: F401,F403
from optbook.problems.double_well import *  # noqa: F401,F403
from optbook.problems.sharp_flat import *  # noqa: F401,F403
from optbook.problems.saddle_escape import *  # noqa: F401,F403
from optbook.problems.features import *  # noqa: F401,F403

__all__ = [
    "analytic",
    "double_well",
    "features",
    "quadratic_bowl",
    "saddle_escape",
    "sharp_flat",
    *analytic.__all__,
    *quadratic_bowl.__all__,
    *double_well.__all__,
    *sharp_flat.__all__,
    *saddle_escape.__all__,
    *features.__all__,
]
