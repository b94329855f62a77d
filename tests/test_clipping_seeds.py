"""optbook.reference.clipping_seeds: the update-clipping experiments over seeds, and their seed bands."""

import json
import math
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from optbook import tasks  # noqa: E402
from optbook.analysis.seeds import SeedSummary  # noqa: E402
from optbook.reference import adafactor as af  # noqa: E402
from optbook.reference import averaging as av  # noqa: E402
from optbook.reference import clipping_seeds as cs  # noqa: E402
from optbook.reference import instability as ins  # noqa: E402
from optbook.tasks.stored_results import _jsonable  # noqa: E402
from optbook.viz.update_clipping import plot_seed_band  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return ins.SoftmaxRegressionTask(tasks.digits(), batch_size=32, seed=0)


def fake_run(loss, rms_u, *, x=None, rms_x=None):
    """A TracedRun written by hand, evaluated at every step."""
    loss = np.asarray(loss, dtype=float)
    rms_u = np.asarray(rms_u, dtype=float)
    steps = len(rms_u)
    assert len(loss) == steps + 1
    return ins.TracedRun(x=np.zeros((65, 10)) if x is None else x, eval_t=np.arange(steps + 1), loss=loss,
                         test_loss=loss + 0.5, rms_u=rms_u, rms_u_hat=np.minimum(rms_u, 1.0), alpha=np.ones(steps),
                         beta2hat=np.zeros(steps), rms_x=np.full(steps, 0.3) if rms_x is None else np.asarray(rms_x))


# ---------------------------------------------------------------- seeded_start
def test_seeded_start_draws_the_batch_order_and_the_start_of_the_seed(task):
    task_s, x0 = cs.seeded_start(task, 3, scale=0.2)
    assert task_s.seed == 3 and task_s.batch_size == task.batch_size and task_s.data is task.data
    np.testing.assert_array_equal(x0, 0.2 * np.random.default_rng(3).standard_normal(task.shape))
    # the batch of step t comes from a generator seeded with (seed, t)
    expected = np.random.default_rng([3, 7]).choice(len(task.data.x_train), 32, replace=False)
    np.testing.assert_array_equal(task_s.batch(7), expected)
    assert not np.array_equal(cs.seeded_start(task, 4)[0].batch(7), task_s.batch(7))


def test_seed_zero_is_the_chapters_start(task):
    # the chapter draws its start from setup(seed=0), i.e. default_rng(0), before anything else
    task_0, x0 = cs.seeded_start(task, 0)
    np.testing.assert_array_equal(x0, 0.1 * np.random.default_rng(0).standard_normal(task.shape))
    assert task_0 == task


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_seeded_start_refuses_a_bad_seed(task, seed):
    with pytest.raises(ValueError, match="seed"):
        cs.seeded_start(task, seed)


def test_seeded_start_refuses_a_bad_task_or_scale(task):
    with pytest.raises(TypeError, match="SoftmaxRegressionTask"):
        cs.seeded_start(object(), 0)
    with pytest.raises(ValueError, match="scale"):
        cs.seeded_start(task, 0, scale=-1.0)


# ---------------------------------------------------------------- run_statistics
def test_statistics_of_a_run_written_by_hand(task):
    loss = [2.0, 1.5, 1.0, 0.8, 4.0, 3.0, 0.6]  # steps 0..6, the loss at every step
    rms_u = [3.0, 0.5, 0.005, 2.0, 0.7, 0.9]
    stats = cs.run_statistics(fake_run(loss, rms_u), task, diverged_loss=20.0, t0=4, window=1)
    assert stats["diverged"] == 0.0
    assert stats["final_train"] == 0.6 and stats["final_test"] == 1.1
    assert stats["initial_train"] == 2.0 and stats["peak_train"] == 4.0 and stats["peak_ratio"] == 2.0
    assert stats["frac_clipped"] == pytest.approx(2 / 6)  # steps 1 and 4 exceed 1
    assert stats["steps_rms_u_below_1e-2"] == 1 and stats["min_rms_u"] == 0.005
    assert stats["max_rms_x"] == pytest.approx(0.3)
    # the jump at t0 = 4: loss before is the loss at X_3 = 0.8; the window holds X_4, X_5
    assert stats["loss_before"] == 0.8
    assert stats["spike"] == pytest.approx(4.0 / 0.8)
    assert stats["rms_u_t0"] == 2.0 and stats["max_rms_u_after"] == 2.0
    assert stats["median_rms_u_before"] == pytest.approx(statistics.median([3.0, 0.5, 0.005]))


def test_gradient_statistics_at_zero_weights(task):
    # At W = 0 every class has probability 1/K, so the gradient is X^T (1/K - Y) / B, with the bias as the last row.
    stats = cs.run_statistics(fake_run([1.0, 1.0], [1.0]), task, diverged_loss=5.0, x0=np.zeros(task.shape))
    idx = task.batch(1)
    xb = np.hstack([task.data.x_train[idx], np.ones((len(idx), 1))])
    onehot = np.eye(task.data.n_classes)[task.data.y_train[idx]]
    by_hand = xb.T @ (1.0 / task.data.n_classes - onehot) / len(idx)
    assert stats["grad_rms_start"] == pytest.approx(np.sqrt(np.mean(by_hand**2)), rel=1e-12)
    assert stats["grad_rms_end"] == pytest.approx(stats["grad_rms_start"], rel=1e-12)  # one step: the same batch and W


def test_a_run_above_the_divergence_threshold_has_infinite_final_losses(task):
    stats = cs.run_statistics(fake_run([2.0, 30.0, 1.0], [5.0, 0.1]), task, diverged_loss=20.0)
    assert stats["diverged"] == 1.0 and stats["final_train"] == math.inf and stats["final_test"] == math.inf
    assert stats["peak_train"] == 30.0


def test_a_run_that_stopped_being_finite_diverged(task):
    x = np.full((65, 10), np.nan)
    stats = cs.run_statistics(fake_run([2.0, 3.0, np.nan], [5.0, np.nan], x=x, rms_x=[1e3, np.nan]), task,
                              diverged_loss=20.0)
    assert stats["diverged"] == 1.0 and stats["final_train"] == math.inf
    assert stats["max_rms_x"] == math.inf and stats["min_rms_u"] == math.inf and stats["grad_rms_end"] == math.inf


def test_run_statistics_refuses_bad_input(task):
    run = fake_run([1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(TypeError, match="TracedRun"):
        cs.run_statistics("run", task, diverged_loss=1.0)
    with pytest.raises(ValueError, match="diverged_loss"):
        cs.run_statistics(run, task, diverged_loss=0.0)
    with pytest.raises(ValueError, match="t0"):
        cs.run_statistics(run, task, diverged_loss=5.0, t0=3)
    with pytest.raises(ValueError, match="window"):
        cs.run_statistics(run, task, diverged_loss=5.0, t0=2, window=-1)
    sparse = ins.TracedRun(**{**run.__dict__, "eval_t": np.array([0, 2, 2])})
    with pytest.raises(ValueError, match="eval_every=1"):
        cs.run_statistics(sparse, task, diverged_loss=5.0, t0=2)


# ---------------------------------------------------------------- seed_runs
HP = {(1e-2, "slow", math.inf): af.AdafactorHyperparameters(rho_cap=1e-2, decay=av.ConstantDecay(0.999), d=math.inf),
      (1e-2, "power", 1.0): af.AdafactorHyperparameters(rho_cap=1e-2, d=1.0)}


@pytest.fixture(scope="module")
def records(task):
    return cs.seed_runs(task, HP, 12, [0, 1, 2], eval_every=2, band_stride=2, band_from=3,
                        rms_u_bands=[(1e-2, "slow", math.inf)], desc="test")


def test_seed_runs_repeats_sweep_for_each_seed(task, records):
    assert [r["config"] for r in records] == [[0.01, "slow", "inf"], [0.01, "power", 1.0]]
    for i, seed in enumerate([0, 1, 2]):
        task_s, x0 = cs.seeded_start(task, seed)
        runs = ins.sweep(task_s, HP, 12, x0=x0, eval_every=2)
        for rec, key in zip(records, HP):
            assert rec["stats"]["final_train"][i] == runs[key].loss[-1]
            assert rec["stats"]["frac_clipped"][i] == np.mean(runs[key].rms_u > 1)


def test_seed_zero_reproduces_the_single_seed_sweep_of_the_original_task(task, records):
    runs = ins.sweep(task, HP, 12, x0=task.init(0.1, seed=0), eval_every=2)
    assert [r["stats"]["final_test"][0] for r in records] == [runs[k].test_loss[-1] for k in HP]


def test_bands_are_the_lowest_median_and_highest_seed(task, records):
    slow, power = records
    assert set(power["bands"]) == {"t_loss", "loss"}  # no RMS(U) band where none was asked for
    assert slow["bands"]["t_loss"] == [4, 8, 12] and slow["bands"]["t_rms_u"] == [3, 5, 7, 9, 11]
    curves = []
    for seed in (0, 1, 2):
        task_s, x0 = cs.seeded_start(task, seed)
        curves.append(ins.sweep(task_s, {0: HP[1e-2, "slow", math.inf]}, 12, x0=x0)[0].rms_u)
    at_5 = sorted(c[4] for c in curves)  # step 5 is index 4
    lo, mid, hi = (slow["bands"]["rms_u"][j][1] for j in range(3))
    assert (lo, mid, hi) == pytest.approx(at_5, rel=1e-3)  # rounded to 4 significant digits
    assert all(float(f"{v:.4g}") == v for v in slow["bands"]["rms_u"][0])


def test_results_survive_json_and_come_back_by_configuration(records):
    back = cs.by_config(json.loads(json.dumps(_jsonable(records))))
    assert list(back) == [(0.01, "slow", math.inf), (0.01, "power", 1.0)]
    assert back[0.01, "power", 1.0]["stats"]["final_train"] == records[1]["stats"]["final_train"]
    assert isinstance(back[0.01, "slow", math.inf]["bands"]["rms_u"], np.ndarray)


def test_summaries_table_and_slice_by_hand():
    runs = {(1, "a"): {"stats": {"v": [1.0, 2.0, 6.0], "w": [math.inf] * 3}},
            (2, "b"): {"stats": {"v": [0.5, 0.5, 0.5], "w": [1.0, 2.0, 3.0]}}}
    s = cs.seed_summaries(runs, "v")
    assert isinstance(s[1, "a"], SeedSummary)
    assert s[1, "a"].mean == pytest.approx(3.0) and s[1, "a"].std == pytest.approx(statistics.stdev([1, 2, 6]))
    rows = cs.seed_table(runs, {"value": "v", "other": "w"}, key_names=("n", "name"), formats={0: "#{}".format})
    assert rows[0] == {"n": "#1", "name": "a", "value": "3.00 ± 2.65", "other": "diverged"}
    assert rows[1]["other"] == "2.00 ± 1.00"
    assert cs.seed_slice(runs, [(2, "b")], 2) == {"(2, 'b')": {"v": 0.5, "w": 3.0}}
    assert cs.seed_slice(runs, [(1, "a")], 0, stats=["v"]) == {"(1, 'a')": {"v": 1.0}}


def test_helpers_refuse_bad_input(task):
    runs = {(1, "a"): {"stats": {"v": [1.0, 2.0, 6.0]}}}
    with pytest.raises(KeyError, match="available"):
        cs.seed_summaries(runs, "nope")
    with pytest.raises(KeyError, match="available"):
        cs.seed_table(runs, {"x": "nope"}, key_names=("n", "name"))
    with pytest.raises(ValueError, match="key_names"):
        cs.seed_table(runs, {"x": "v"}, key_names=("n",))
    with pytest.raises(KeyError, match="no configuration"):
        cs.seed_slice(runs, [(9, "z")])
    with pytest.raises(TypeError, match="records"):
        cs.by_config([{"stats": {}}])
    with pytest.raises(ValueError, match="seeds"):
        cs.seed_runs(task, HP, 2, [0, 0])
    with pytest.raises(ValueError, match="configs"):
        cs.seed_runs(task, {}, 2, [0])
    with pytest.raises(TypeError, match="tuples"):
        cs.seed_runs(task, {"slow": HP[1e-2, "slow", math.inf]}, 2, [0])
    with pytest.raises(ValueError, match="diverged_factor"):
        cs.seed_runs(task, HP, 2, [0], diverged_factor=0.5)
    with pytest.raises(ValueError, match="band_stride"):
        cs.seed_runs(task, HP, 2, [0], band_stride=0)
    with pytest.raises(ValueError, match="rms_u_bands"):
        cs.seed_runs(task, HP, 2, [0], rms_u_bands=[(9, "z")])


# ---------------------------------------------------------------- plot_seed_band
def test_plot_seed_band_draws_the_median_and_shades_the_range():
    fig, ax = plt.subplots()
    t = [1, 2, 3]
    line = plot_seed_band(ax, t, [[1, 2, 3], [2, 3, 4], [3, 4, 5]], color="tab:red", label="x")
    np.testing.assert_array_equal(line.get_ydata(), [2, 3, 4])
    assert ax.get_yscale() == "log" and len(ax.collections) == 1
    with pytest.raises(ValueError, match="three curves"):
        plot_seed_band(ax, t, [[1, 2, 3], [2, 3, 4]], color="k")
    with pytest.raises(ValueError, match="three curves"):
        plot_seed_band(ax, t, [[1, 2], [2, 3], [3, 4]], color="k")
    plt.close(fig)
