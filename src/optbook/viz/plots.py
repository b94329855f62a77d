"""Figures used across the chapters. Every function labels its axes and returns the Axes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "plot_losses",
    "plot_entry_trajectories",
    "plot_contour_paths",
]


def _axes(ax):
    return ax if ax is not None else plt.subplots()[1]


def plot_losses(
    curves: Mapping[str, np.ndarray],
    *,
    ax=None,
    xlabel: str = "iteration $t$",
    ylabel: str = "loss",
    logy: bool = True,
    title: str | None = None,
):
    """One line per named loss curve, on a log scale by default."""
    ax = _axes(ax)
    for name, y in curves.items():
        ax.plot(np.arange(len(y)), y, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def plot_entry_trajectories(
    traces: Mapping[str, np.ndarray],
    *,
    target: np.ndarray | None = None,
    entries: Sequence[tuple[int, ...]] | None = None,
    xlabel: str = "iteration $t$",
    ylabel: str = "parameter value",
    ncols: int = 3,
):
    """Small multiples: one panel per parameter entry, one line per optimizer.

    ``traces[name]`` has shape ``(steps + 1, *param_shape)``. A dashed line
    marks the target value of each entry when ``target`` is given.
    """
    first = next(iter(traces.values()))
    shape = first.shape[1:]
    entries = list(entries) if entries is not None else list(np.ndindex(*shape))
    nrows = int(np.ceil(len(entries) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.2 * nrows), sharex=True, squeeze=False)
    for ax, idx in zip(axes.flat, entries):
        for name, tr in traces.items():
            ax.plot(tr[(slice(None), *idx)], label=name)
        if target is not None:
            ax.axhline(target[idx], color="k", ls="--", lw=0.8)
        ax.set_title("entry " + ",".join(str(i) for i in idx), fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(entries):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return axes


def plot_contour_paths(
    f: Callable[[np.ndarray], np.ndarray],
    paths: Mapping[str, np.ndarray],
    *,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    levels=30,
    log_levels: bool = True,
    ax=None,
    minimizer: np.ndarray | None = None,
    grid: int = 300,
):
    """Contours of a 2-D function ``f`` with optimizer paths drawn on top.

    ``f`` must accept an array of shape ``(..., 2)``; ``paths[name]`` has shape ``(steps + 1, 2)``.
    """
    ax = _axes(ax)
    xs = np.linspace(*xlim, grid)
    ys = np.linspace(*ylim, grid)
    xx, yy = np.meshgrid(xs, ys)
    zz = f(np.stack([xx, yy], axis=-1))
    if log_levels and np.all(zz > 0):
        lv = np.geomspace(max(zz.min(), 1e-6), zz.max(), levels) if isinstance(levels, int) else levels
    else:
        lv = levels
    ax.contour(xx, yy, zz, levels=lv, cmap="Greys", linewidths=0.6)
    for name, p in paths.items():
        ax.plot(p[:, 0], p[:, 1], ".-", ms=2, lw=1, label=name)
    if minimizer is not None:
        ax.plot(*minimizer, "k*", ms=10, label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("$x$")
    ax.set_ylabel("$y$")
    ax.legend(fontsize=8)
    return ax
