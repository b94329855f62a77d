"""Figures and animations of the chapters: every function labels its axes.
"""

from optbook.viz import animate, plots
from optbook.viz.plots import *  # noqa: F401,F403
from optbook.viz.animate import *  # noqa: F401,F403

__all__ = [
    "animate",
    "plots",
    "plot_losses",
    "plot_entry_trajectories",
    "plot_contour_paths",
    "offline_jshtml",
    "draw_contours",
    "draw_paths",
    "animate_paths",
]
