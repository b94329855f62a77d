"""optbook.reference.instability.seed_sweep: one run per setting and seed, a new batch order and start per seed."""

import dataclasses

import numpy as np
import pytest

from optbook import tasks
from optbook.reference import adafactor as af
from optbook.reference import instability as ins

STEPS = 12


@pytest.fixture(scope="module")
def task():
    return ins.SoftmaxRegressionTask(tasks.digits(), batch_size=32, seed=0)


def manual_run(task, hp, seed, init_scale, steps=STEPS):
    """The same experiment written out step by step: batches of replace(task, seed), start N(0, scale^2)."""
    seeded = dataclasses.replace(task, seed=seed)
    x = init_scale * np.random.default_rng(seed).standard_normal(task.shape)
    state = af.AdafactorState()
    clipped = 0
    for t in range(1, steps + 1):
        idx = np.random.default_rng([seed, t]).choice(len(task.data.x_train), task.batch_size, replace=False)
        g = tasks.softmax_cross_entropy_grad(x, task.data.x_train[idx], task.data.y_train[idx])
        x = af.step(x, g, state, hp, record=True)
        h = state.history.pop()
        clipped += af.rms(h["U"]) > hp.d
    return x, clipped / steps


def test_each_seed_is_its_own_batch_order_and_start(task):
    hp = af.AdafactorHyperparameters(d=0.5)
    out = ins.seed_sweep(task, {"d=0.5": hp}, STEPS, seeds=(0, 3, 7))["d=0.5"]
    for i, s in enumerate((0, 3, 7)):
        x, clipped = manual_run(task, hp, s, 0.1)
        assert out["train loss"][i] == pytest.approx(task.loss(x), rel=1e-12)
        assert out["test loss"][i] == pytest.approx(task.test_loss(x), rel=1e-12)
        assert out["test accuracy"][i] == pytest.approx(task.test_accuracy(x))
        assert out["rms_x"][i] == pytest.approx(af.rms(x), rel=1e-12)
        assert out["clipped"][i] == pytest.approx(clipped)
    assert len(set(out["train loss"])) == 3  # three seeds, three different runs
    assert "eval_t" not in out and "train loss curve" not in out


def test_seed_zero_reproduces_sweep_and_settings_share_batches(task):
    configs = {"paper": af.AdafactorHyperparameters(), "no clipping": af.AdafactorHyperparameters(d=float("inf"))}
    out = ins.seed_sweep(task, configs, STEPS, seeds=[0, 1, 2])
    single = ins.sweep(task, {k: v for k, v in configs.items()}, STEPS, x0=task.init(0.1, 0))
    for key, run in single.items():
        assert out[key]["train loss"][0] == run.loss[-1]
    assert out["no clipping"]["clipped"] == [0.0, 0.0, 0.0]


def test_curves_from_zero_start(task):
    out = ins.seed_sweep(task, {"eps2=1e-3": af.AdafactorHyperparameters()}, STEPS, seeds=(0, 1, 2),
                         init_scale=0.0, eval_every=5)["eps2=1e-3"]
    assert out["eval_t"] == [0, 5, 10, 12]
    assert np.array(out["rms_x curve"]).shape == (3, 4) and np.array(out["train loss curve"]).shape == (3, 4)
    assert all(curve[0] == 0.0 for curve in out["rms_x curve"])  # every seed starts at W = 0
    assert all(curve[0] == pytest.approx(np.log(10)) for curve in out["train loss curve"])  # uniform softmax
    assert [c[-1] for c in out["train loss curve"]] == out["train loss"]
    # from zero, the first step has RMS rho_1 * eps2 * RMS(U_hat) <= 1e-5 (theorem hyp-thm-tight-growth)
    assert all(c[-1] <= STEPS * 1e-2 * 1e-3 * (1 + 1e-12) for c in out["rms_x curve"])


def test_bad_input_is_refused_with_the_fix(task):
    hp = af.AdafactorHyperparameters()
    with pytest.raises(TypeError, match="SoftmaxRegressionTask"):
        ins.seed_sweep("digits", {"a": hp}, STEPS, (0, 1, 2))
    with pytest.raises(ValueError, match="non-empty mapping"):
        ins.seed_sweep(task, {}, STEPS, (0, 1, 2))
    with pytest.raises(TypeError, match="strings"):
        ins.seed_sweep(task, {0.1: hp}, STEPS, (0, 1, 2))
    with pytest.raises(TypeError, match="AdafactorHyperparameters"):
        ins.seed_sweep(task, {"a": {"d": 1.0}}, STEPS, (0, 1, 2))
    with pytest.raises(ValueError, match="steps"):
        ins.seed_sweep(task, {"a": hp}, 0, (0, 1, 2))
    with pytest.raises(ValueError, match="non-empty sequence"):
        ins.seed_sweep(task, {"a": hp}, STEPS, ())
    with pytest.raises(ValueError, match="whole numbers"):
        ins.seed_sweep(task, {"a": hp}, STEPS, (0, 1.5, 2))
    with pytest.raises(ValueError, match="distinct"):
        ins.seed_sweep(task, {"a": hp}, STEPS, (0, 1, 1))
    with pytest.raises(ValueError, match="init_scale"):
        ins.seed_sweep(task, {"a": hp}, STEPS, (0, 1, 2), init_scale=-0.1)
    with pytest.raises(ValueError, match="eval_every"):
        ins.seed_sweep(task, {"a": hp}, STEPS, (0, 1, 2), eval_every=0)
