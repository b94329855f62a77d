"""Figures and animations of the chapters: every function labels its axes.
"""

from optbook.viz import animate, improve_adam, plots, schedules
from optbook.viz import applications  # noqa: F401
from optbook.viz import practice  # noqa: F401
from optbook.viz.plots import *  # noqa: F401,F403
from optbook.viz.animate import *  # noqa: F401,F403

__all__ = [
    "animate",
    "plots",
    "schedules",
    *plots.__all__,
    *animate.__all__,
]
