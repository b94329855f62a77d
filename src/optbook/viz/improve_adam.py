"""Figures of the "improving Adam" chapter: RAdam's rectification, seed bands, the decay heat maps."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

__all__ = ["plot_rectification", "plot_method_bands", "plot_decay_heatmaps"]


def plot_rectification(curves: Mapping[float, Mapping[str, np.ndarray]], ax=None):
    """RAdam's :math:`r_t`, the linear warm-up over :math:`2/(1-\\beta_2)` steps, and its square root.

    ``curves[beta2]`` holds arrays ``"t"``, ``"r"``, ``"warmup"``, ``"sqrt_warmup"``; the step axis
    is :math:`t(1-\\beta_2)`, so the curves of different :math:`\\beta_2` can be compared.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    styles = ["-", "--", ":"]
    for (b2, c), ls in zip(curves.items(), styles):
        x = np.asarray(c["t"]) * (1 - b2)
        ax.plot(x, c["r"], color="C0", ls=ls, label=f"RAdam $r_t$, $\\beta_2$={b2:g}")
        ax.plot(x, c["warmup"], color="C1", ls=ls, label=f"linear warm-up, $\\tau=2/(1-\\beta_2)$, $\\beta_2$={b2:g}")
        ax.plot(x, c["sqrt_warmup"], color="C2", ls=ls, lw=1, label=f"$\\sqrt{{t/\\tau}}$, $\\beta_2$={b2:g}")
    ax.set_xlabel("step $t$ times $(1-\\beta_2)$ (dimensionless)")
    ax.set_ylabel("factor on the learning rate (dimensionless)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def plot_method_bands(results: Mapping, methods: Sequence[str], field: str = "test_loss", axes=None):
    """Mean over seeds (line) and mean ± std (band) of ``field`` per epoch, one panel per learning rate."""
    lrs = list(results)
    if axes is None:
        _, axes = plt.subplots(1, len(lrs), figsize=(5.5 * len(lrs), 4), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, lr in zip(axes, lrs):
        for i, m in enumerate(methods):
            runs = np.array([r[field] for r in results[lr][m]], dtype=float)
            mean, std = runs.mean(axis=0), runs.std(axis=0, ddof=1)
            epochs = np.arange(1, runs.shape[1] + 1)
            ax.plot(epochs, mean, color=f"C{i}", label=m)
            ax.fill_between(epochs, mean - std, mean + std, color=f"C{i}", alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"learning rate {float(lr):g}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{field.replace('_', ' ')} (cross-entropy, nats)")
    axes[-1].legend(fontsize=7)
    return axes


def plot_decay_heatmaps(grid: Mapping, axes=None, vmax: float | None = None):
    """Mean final test loss over (step size, weight decay), one panel per optimizer, on a log colour scale;
    the best cell is marked, and losses above the 90th percentile (or ``vmax``) share the darkest colour."""
    kinds = list(grid["mean"])
    if axes is None:
        _, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    alphas, decays = np.asarray(grid["alphas"]), np.asarray(grid["decays"])
    all_values = np.concatenate([np.ravel(grid["mean"][k]) for k in kinds])
    vmin = float(all_values.min())
    vmax = float(np.quantile(all_values, 0.9)) if vmax is None else vmax
    for ax, k in zip(axes, kinds):
        z = np.asarray(grid["mean"][k])
        im = ax.imshow(z, origin="lower", cmap="viridis_r", norm=LogNorm(vmin=vmin, vmax=vmax), aspect="auto")
        i, j = np.unravel_index(np.argmin(z), z.shape)
        ax.plot(j, i, marker="*", color="red", ms=14)
        ax.set_xticks(range(len(alphas)), [f"{a:.0e}" for a in alphas], rotation=45)
        ax.set_yticks(range(len(decays)), [f"{d:.0e}" for d in decays])
        ax.set_xlabel("step size $\\alpha$ (dimensionless)")
        ax.set_title(k)
    axes[0].set_ylabel("weight decay $\\lambda$ (dimensionless)")
    plt.colorbar(im, ax=list(axes), label="final test loss (nats, mean of seeds, log scale)")
    return axes
