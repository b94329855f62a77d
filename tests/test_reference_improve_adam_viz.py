"""The figures of the improving-Adam chapter label their axes and draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optbook.tasks import improve_adam_runs as I  # noqa: E402
from optbook.viz import improve_adam as viz  # noqa: E402


def test_rectification_plot_has_three_lines_per_beta2():
    ax = viz.plot_rectification({0.99: I.rectification_curve(0.99, 300)})
    assert len(ax.get_lines()) == 3 and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


def test_method_bands_one_panel_per_rate():
    runs = {m: [{"test_loss": [1.0, 0.5]}, {"test_loss": [1.2, 0.6]}] for m in ("Adam", "RAdam")}
    axes = viz.plot_method_bands({"0.001": runs, "0.01": runs}, ["Adam", "RAdam"])
    assert len(axes) == 2 and all(len(ax.get_lines()) == 2 for ax in axes)
    assert "nats" in axes[0].get_ylabel()
    plt.close("all")


def test_heatmaps_mark_the_best_cell():
    z = np.array([[0.5, 0.2], [0.3, 0.9]])
    grid = {"alphas": [1e-3, 1e-2], "decays": [1e-4, 1e-3], "mean": {"Adam + L2": z.tolist(), "AdamW": z.T.tolist()}}
    axes = viz.plot_decay_heatmaps(grid)
    star = axes[0].get_lines()[0]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (1, 0)  # column alpha index 1, row decay index 0
    assert axes[0].get_xlabel() and axes[0].get_ylabel()
    plt.close("all")
