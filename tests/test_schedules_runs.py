"""The experiments and figures of the chapter on learning-rate schedules (small, fast versions)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from optbook.tasks import schedule_runs as R
from optbook.viz import schedules as vs


@pytest.mark.parametrize("name", R.DIGITS_SCHEDULES + R.CHARLM_SCHEDULES + ("exponential", "SGDR"))
def test_every_named_schedule_peaks_at_lr_and_stays_positive(name):
    f = R.make_schedule(name, 0.01, 200)
    values = np.array([f(t) for t in range(200)])
    assert values.max() == pytest.approx(0.01, rel=1e-12)
    assert (values >= 0).all()


def test_make_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="name"):
        R.make_schedule("linear", 0.1, 100)
    with pytest.raises(ValueError, match="total"):
        R.make_schedule("cosine", 0.1, 10)
    with pytest.raises(ValueError, match="warmup"):
        R.make_schedule("WSD", 0.1, 100, warmup=60)


def test_gallery_has_every_family():
    panels = R.gallery(total=200)
    assert len(panels) == 12
    t, eta = panels["WSD (linear, cosine, 1-sqrt)"]
    assert eta.shape == (3, 200)


def test_mean_std_and_final_table():
    mean, std = R.mean_std([[1.0, 2.0], [3.0, 4.0]])
    assert mean.tolist() == [2.0, 3.0] and std == pytest.approx([np.sqrt(2)] * 2)
    with pytest.raises(ValueError):
        R.mean_std([[1.0]])
    res = {"a": {"loss": [[5.0, 1.0], [5.0, 3.0]]}}
    table = R.final_table(res, ["a"], ["loss"])
    assert table.loc["a", "loss mean"] == 2.0 and table.loc["a", "loss std"] == pytest.approx(np.sqrt(2))
    with pytest.raises(KeyError):
        R.final_table(res, ["b"], ["loss"])


def test_noise_update_starts_as_a_sign_vector_and_shrinks():
    rms = R.noise_update_rms(300, n=20_000, seed=3)
    assert rms[0] == pytest.approx(1.0, abs=1e-6)  # eps = 1e-8 against |g| ~ 1
    # the beta1-average of unit noise has RMS sqrt((1 - beta1)/(1 + beta1)) once v_hat has settled
    assert rms[-1] == pytest.approx(np.sqrt(0.1 / 1.9), rel=0.1)


def test_adaptive_rate_variance_settles_from_t3():
    a = R.adaptive_rate_variance(6, n=200_000, seed=0)
    b = R.adaptive_rate_variance(6, n=200_000, seed=1)
    assert np.allclose(a[3:], b[3:], rtol=0.1)
    # E[1/chi^2_k] = 1/(k - 2): for large t, v_hat ~ 1 and Var psi is small
    assert a[0] > 100 * a[4]


def test_digits_run_prefix_is_the_full_run():
    short = R.digits_run("warm-up + cosine", 0, epochs=1, total_epochs=3)
    full = R.digits_run("warm-up + cosine", 0, epochs=3)
    assert short["test_loss"][0] == pytest.approx(full["test_loss"][0], rel=1e-12)


def test_plots_label_axes_and_reject_bad_input():
    import matplotlib.pyplot as plt

    fig = vs.plot_schedule_gallery({"a": (np.arange(5), np.ones(5))}, ncols=2)
    assert fig.axes[0].get_xlabel().startswith("step")
    fig2, ax = plt.subplots()
    vs.plot_seed_bands(ax, {"x": (np.arange(3), np.ones((2, 3)))}, xlabel="t", ylabel="loss")
    assert ax.get_ylabel() == "loss"
    with pytest.raises(ValueError):
        vs.plot_schedule_gallery({})
    with pytest.raises(ValueError):
        vs.plot_seed_bands(ax, {"x": (np.arange(3), np.ones((1, 3)))}, xlabel="t", ylabel="loss")
    with pytest.raises(ValueError):
        vs.plot_seed_bands(ax, {"x": (np.arange(3), np.ones((2, 3)))}, xlabel="t", ylabel="loss", band="iqr")
    plt.close("all")


def test_more_bad_inputs():
    from optbook import schedules as S
    from optbook.schedules import upstream

    with pytest.raises(ValueError):
        upstream.upstream_lrs(lambda o: None, 0)
    with pytest.raises(ValueError):
        upstream.schedule_values(S.relative_step_lr, -1)
    with pytest.raises(ValueError):
        S.relative_step_lr(-1)
    with pytest.raises(ValueError, match="name"):
        R.digits_run("cyclic", 0, epochs=1)
    with pytest.raises(ValueError, match="steps"):
        R.noise_update_rms(0)
    with pytest.raises(ValueError, match="n must"):
        R.adaptive_rate_variance(3, n=1)


def test_update_rms_summary_reads_the_stored_layout():
    results = {"a": {"rms": [[1.0, 0.5] + [0.2] * 198, [1.0, 0.4] + [0.2] * 198], "lr": [0.01] * 200,
                     "loss": [[3.0] * 200, [2.0] * 200]}}
    table = R.update_rms_summary(results)
    assert table.loc["a", "RMS(u_1)"] == 1.0 and table.loc["a", "at t (mean)"] == 1.0
    assert table.loc["a", "largest RMS step"] == pytest.approx(0.01)
    assert table.loc["a", "train loss, last 20 steps"] == 2.5
