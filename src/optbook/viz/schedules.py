"""Figures of the chapter on learning-rate schedules."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["plot_schedule_gallery", "plot_seed_bands"]


def plot_schedule_gallery(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], ncols: int = 4, *, panel_size=(2.6, 1.9),
                          labels: Mapping[str, list[str]] | None = None):
    r"""Small multiples: one panel per schedule, :math:`\eta_t` against :math:`t`.

    ``panels`` maps a title to ``(t, eta)``, where ``eta`` is one curve or a 2-D array of several
    (drawn in the colours C0, C1, ...; ``labels[title]`` names them in a legend).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("panels is empty; pass {title: (t, eta)}, e.g. optbook.tasks.schedule_runs.gallery().")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}.")
    n = len(panels)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    for ax, (title, (t, eta)) in zip(axes.flat, panels.items()):
        curves = np.atleast_2d(eta)
        names = (labels or {}).get(title)
        for k, curve in enumerate(curves):
            ax.plot(t, curve, color=f"C{k}", lw=1.4, label=None if names is None else names[k])
        if names is not None:
            ax.legend(fontsize=6, loc="upper right")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step $t$ (updates)", fontsize=7)
        ax.set_ylabel(r"learning rate $\eta_t$", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_seed_bands(ax, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str,
                    band: str = "std", logy: bool = False):
    """Mean over seeds with a band, one line per entry of ``curves`` ``{label: (x, values[seed, point])}``.

    ``band="std"`` shades mean ± one sample standard deviation, ``band="range"`` the min-max range.
    Returns ``ax``.
    """
    if band not in ("std", "range"):
        raise ValueError(f"band must be 'std' or 'range', got {band!r}.")
    for k, (label, (x, values)) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or len(values) < 2:
            raise ValueError(f"curves[{label!r}] needs values of shape (seeds >= 2, points), got {values.shape}.")
        mean = values.mean(axis=0)
        if band == "std":
            sd = values.std(axis=0, ddof=1)
            lo, hi = mean - sd, mean + sd
        else:
            lo, hi = values.min(axis=0), values.max(axis=0)
        ax.plot(x, mean, color=f"C{k}", lw=1.5, label=label)
        ax.fill_between(x, lo, hi, color=f"C{k}", alpha=0.25, lw=0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax
