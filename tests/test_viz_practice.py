"""optbook.viz.practice: seed bands of the practice chapter's ablation curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from optbook.tasks.charlm import TrainingRun
from optbook.viz import practice


def run(offset: float, steps: int = 6) -> TrainingRun:
    """A run whose losses are known in closed form: training loss 10 - k + offset, validation loss 5 + offset."""
    return TrainingRun(name=f"offset {offset}", train_loss=[10.0 - k + offset for k in range(steps)],
                       val_steps=[0, 3, 6], val_loss=[5.0 + offset, 4.0 + offset, 3.0 + offset])


RUNS = [run(0.0), run(0.3), run(-0.6)]
# offsets 0, 0.3, -0.6: mean -0.1, deviations 0.1, 0.4, -0.5, sample variance (0.01 + 0.16 + 0.25) / 2 = 0.21
SD = 0.21 ** 0.5


def test_validation_band_is_mean_plus_minus_one_sample_std_over_seeds():
    steps, mean, lo, hi = practice.seed_band(RUNS)
    assert steps.tolist() == [0, 3, 6]
    np.testing.assert_allclose(mean, [5.0 - 0.1, 4.0 - 0.1, 3.0 - 0.1], rtol=1e-14)  # offsets average to -0.1
    np.testing.assert_allclose(lo, [4.9 - SD, 3.9 - SD, 2.9 - SD], rtol=1e-14)
    np.testing.assert_allclose(hi, [4.9 + SD, 3.9 + SD, 2.9 + SD], rtol=1e-14)


def test_training_band_uses_window_means():
    steps, mean, lo, hi = practice.seed_band(RUNS, field="train_loss", window=3)
    assert steps.tolist() == [3, 6]
    # windows (10, 9, 8) and (7, 6, 5): means 9 and 6, shifted by each run's offset
    np.testing.assert_allclose(mean, [9.0 - 0.1, 6.0 - 0.1], rtol=1e-14)
    np.testing.assert_allclose(lo, [8.9 - SD, 5.9 - SD], rtol=1e-14)
    np.testing.assert_allclose(hi, [8.9 + SD, 5.9 + SD], rtol=1e-14)


def test_plot_draws_the_mean_line_and_a_band_per_name():
    fig, ax = plt.subplots()
    practice.plot_run_bands({"a": RUNS, "b": [run(1.0), run(1.0), run(1.0)]}, ax, top=6.0)
    assert [line.get_label() for line in ax.lines] == ["a (mean of 3 seeds)", "b (mean of 3 seeds)"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [6.0, 5.0, 4.0])
    assert len(ax.collections) == 2 and ax.get_ylim()[1] == 6.0
    # identical seeds have zero sample std: the band of "b" collapses onto its mean line
    band_b = ax.collections[1].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose(np.unique(np.round(band_b, 12)), [4.0, 5.0, 6.0])
    assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="at least 3"):
        practice.seed_band(RUNS[:2])
    with pytest.raises(ValueError, match="field"):
        practice.seed_band(RUNS, field="loss")
    other = TrainingRun(name="x", train_loss=[1.0] * 6, val_steps=[0, 2, 6], val_loss=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="same val_steps"):
        practice.seed_band(RUNS[:2] + [other])
    with pytest.raises(ValueError, match="same number of steps"):
        practice.seed_band(RUNS[:2] + [run(0.0, steps=9)], field="train_loss", window=3)
    with pytest.raises(ValueError, match="empty"):
        practice.plot_run_bands({})
