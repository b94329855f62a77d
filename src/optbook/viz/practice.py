"""Figures of the chapter "Adafactor in practice": the ablation's loss curves over several seeds."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from optbook.analysis.seeds import MIN_SEEDS, summarize_curves
from optbook.tasks.charlm import TrainingRun, window_mean

__all__ = ["seed_band", "plot_run_bands"]
__helpers__ = ("seed_band", "plot_run_bands")

_FIELDS = ("val_loss", "train_loss")


def seed_band(runs: Sequence[TrainingRun], *, field: str = "val_loss", window: int = 1
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Steps, the mean :math:`\bar v` over seeds of one loss curve of ``runs`` (one run per seed), and the band
    :math:`\bar v - s_v` and :math:`\bar v + s_v`, with :math:`s_v` the sample standard deviation over seeds.

    ``field="val_loss"`` takes ``run.val_loss`` at ``run.val_steps``; ``field="train_loss"`` takes the means of
    consecutive windows of ``window`` training losses (:func:`optbook.tasks.charlm.window_mean`) at the step that
    ends each window. Every point is summarised by :func:`optbook.analysis.seeds.summarize_curves`, so at least
    three seeds are needed, and a diverged seed makes that point's mean infinite.
    """
    if field not in _FIELDS:
        raise ValueError(f"field must be one of {_FIELDS}, got {field!r}.")
    runs = list(runs)
    if len(runs) < MIN_SEEDS:
        raise ValueError(f"runs holds {len(runs)} runs; a seed band needs at least {MIN_SEEDS} (one run per seed).")
    if field == "val_loss":
        steps = list(runs[0].val_steps)
        if any(list(r.val_steps) != steps for r in runs):
            raise ValueError("the runs were evaluated at different steps; evaluate every seed at the same val_steps.")
        curves = [list(r.val_loss) for r in runs]
    else:
        pairs = [window_mean(r.train_loss, window) for r in runs]
        steps = pairs[0][0]
        if not steps or any(p[0] != steps for p in pairs):
            raise ValueError(f"the runs have different numbers of training steps, or fewer than window={window}; "
                             "train every seed for the same number of steps.")
        curves = [p[1] for p in pairs]
    mean, std = summarize_curves(curves)
    return np.array(steps), mean, mean - std, mean + std


def plot_run_bands(runs: Mapping[str, Sequence[TrainingRun]], ax=None, *, field: str = "val_loss", window: int = 1,
                   xlabel: str = "optimizer step", ylabel: str = "loss (nats per character)", top: float | None = None):
    """One line per name: the mean over seeds (line) and the band of the mean ± one sample standard deviation.

    ``runs[name]`` holds one :class:`~optbook.tasks.charlm.TrainingRun` per seed; ``field`` and ``window`` are
    those of :func:`seed_band`. ``top`` caps the y axis (the first losses, near :math:`\\ln V`, are much larger).
    """
    if not runs:
        raise ValueError("runs is empty; pass {name: [one TrainingRun per seed]}.")
    bands = {name: seed_band(r, field=field, window=window) for name, r in runs.items()}
    if ax is None:
        _, ax = plt.subplots()
    for name, (steps, mean, lo, hi) in bands.items():
        n_seeds = len(runs[name])
        (line,) = ax.plot(steps, mean, marker="o" if field == "val_loss" else None, ms=3,
                          label=f"{name} (mean of {n_seeds} seeds)")
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if top is not None:
        ax.set_ylim(top=top)
    return ax
