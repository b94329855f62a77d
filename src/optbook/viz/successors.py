"""Figures of the chapter on Adafactor's successors: loss curves with seed bands, state bytes per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_seed_bands", "plot_state_bytes"]


def plot_seed_bands(runs: Mapping[str, Sequence[Sequence[float]]], *, window: int = 10, ax=None):
    """Training loss (mean of ``window`` steps) per method: the mean over seeds, and a band from the lowest
    to the highest seed. ``runs`` maps a method to one loss list per seed."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    for name, per_seed in runs.items():
        arr = np.asarray(per_seed, dtype=float)
        n = arr.shape[1] // window
        if n == 0:
            raise ValueError(f"{name}: {arr.shape[1]} steps is fewer than one window of {window}.")
        w = arr[:, :n * window].reshape(arr.shape[0], n, window).mean(axis=2)
        steps = window * np.arange(1, n + 1)
        line, = ax.plot(steps, w.mean(axis=0), label=name)
        ax.fill_between(steps, w.min(axis=0), w.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"training loss, mean of {window} steps (nats/char)")
    ax.legend(fontsize=8, ncol=2)
    return ax


def plot_state_bytes(table: Mapping[str, Mapping[str, float]], *, baseline: str = "AdamW", ax=None):
    """Optimizer state of each method as a fraction of ``baseline``'s, one group of bars per model (log scale)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    models = list(table)
    methods = list(next(iter(table.values())))
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        ratios = [table[model][m] / table[model][baseline] for m in methods]
        ax.bar(np.arange(len(methods)) + k * width, ratios, width, label=model)
    ax.set_xticks(np.arange(len(methods)) + 0.4 - width / 2, methods, rotation=35, ha="right")
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel(f"state bytes / {baseline}'s (log scale)")
    ax.legend(fontsize=8)
    return ax
