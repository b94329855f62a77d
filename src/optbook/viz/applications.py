"""Figures of the chapter "Adafactor in applications": memory at scale, seed bands of training curves."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_state_memory", "plot_seed_bands"]
__helpers__ = ("plot_state_memory", "plot_seed_bands")


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots()
    return ax


def plot_state_memory(rows: Sequence[Mapping], ax=None):
    """Grouped bars (log scale, GB) of Adam's, Adafactor's and Adafactor-with-beta1's float32 state per model.

    ``rows`` are the rows of :func:`optbook.analysis.applications.memory_table`.
    """
    if not rows:
        raise ValueError("rows is empty; pass optbook.analysis.applications.memory_table().")
    ax = _axes(ax)
    columns = ("Adam state [GB]", "Adafactor + beta1 [GB]", "Adafactor state [GB]")
    labels = ("Adam / AdamW: 2N", r"Adafactor with $\beta_1$: $\sum(n+m) + N$", r"Adafactor: $\sum(n+m)$")
    x = np.arange(len(rows))
    width = 0.27
    for k, (column, label) in enumerate(zip(columns, labels)):
        ax.bar(x + (k - 1) * width, [r[column] for r in rows], width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(x, [r["model"] for r in rows])
    ax.set_xlabel("model (published configuration)")
    ax.set_ylabel("optimizer state in float32 (GB, 1e9 bytes)")
    ax.legend(fontsize=8)
    return ax


def plot_seed_bands(curves: Mapping[str, tuple[Sequence[float], np.ndarray]], ax=None, *, ylabel: str = "loss (nats)",
                    xlabel: str = "step", markers: Mapping[str, int | None] | None = None):
    """Mean over seeds with a band of one standard deviation, one line per name.

    ``curves[name] = (steps, values)`` with ``values`` of shape ``(seeds, len(steps))``. ``markers[name]``, if
    given and not None, draws a dotted vertical line at that step in the line's colour.
    """
    if not curves:
        raise ValueError("curves is empty; pass {name: (steps, values of shape (seeds, steps))}.")
    ax = _axes(ax)
    for name, (steps, values) in curves.items():
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(steps):
            raise ValueError(f"curves[{name!r}] values must have shape (seeds, {len(steps)}), got {values.shape}.")
        mean, std = values.mean(0), values.std(0)
        (line,) = ax.plot(steps, mean, label=f"{name} (mean of {values.shape[0]} seeds)")
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.25, lw=0)
        if markers and markers.get(name) is not None:
            ax.axvline(markers[name], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax
