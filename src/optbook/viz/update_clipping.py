"""Figures of the chapter on update clipping: a curve over seeds as its median and a band from the lowest to the highest seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plot_seed_band"]


def plot_seed_band(ax, t: Sequence[float], band: Sequence[Sequence[float]], *, color: str, style: str = "-",
                   label: str | None = None, lw: float = 1.2, alpha: float = 0.15, log: bool = True):
    """Draw the median over seeds of one curve (``band[1]``) and shade from the lowest (``band[0]``) to the highest
    seed (``band[2]``), as stored by :func:`optbook.reference.clipping_seeds.seed_runs`. ``log=True`` uses a
    logarithmic y axis. Returns the median line."""
    lo, mid, hi = (np.asarray(b, dtype=float) for b in band) if len(band) == 3 else (None, None, None)
    if lo is None or not (lo.shape == mid.shape == hi.shape == np.shape(t)):
        raise ValueError("band must be three curves [lowest, median, highest], each as long as t.")
    (line,) = (ax.semilogy if log else ax.plot)(t, mid, style, color=color, lw=lw, label=label)
    ax.fill_between(t, lo, hi, color=color, alpha=alpha, lw=0)
    return line
