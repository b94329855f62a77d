"""optbook.reference.instability: run_summary, robust_run_summary and jump_summary on hand-made runs."""

import numpy as np
import pytest

from optbook.reference import instability as ins


def fake_run(loss, rms_u, rms_x, test_loss=None):
    loss = np.asarray(loss, dtype=float)
    steps = len(rms_u)
    return ins.TracedRun(x=np.zeros(2), eval_t=np.arange(len(loss)), loss=loss,
                         test_loss=np.asarray(test_loss if test_loss is not None else loss + 0.5, dtype=float),
                         rms_u=np.asarray(rms_u, dtype=float), rms_u_hat=np.minimum(rms_u, 1.0),
                         alpha=np.ones(steps), beta2hat=np.zeros(steps), rms_x=np.asarray(rms_x, dtype=float))


def test_run_summary_by_hand():
    run = fake_run([2.0, 3.0, np.nan, 1.0], rms_u=[0.5, 2.0, 1.5], rms_x=[1.0, 4.0, 2.0])
    s = ins.run_summary(run)
    assert s == {"final train loss": 1.0, "final test loss": 1.5, "max train loss": 3.0, "max RMS(X)": 4.0,
                 "steps with RMS(U)>1": pytest.approx(2 / 3)}


def test_robust_summary_formats_a_stable_run_and_bounds_a_diverged_one():
    stable = fake_run([2.0, 1.0], rms_u=[0.5], rms_x=[1.0])
    assert ins.robust_run_summary(stable, diverged_loss=20.0, rms_x_bound=100)["final train loss"] == "1.0000"
    blown = fake_run([2.0, 226.4, 50.0], rms_u=[3.0, 0.1], rms_x=[1.0, 500.0])
    assert ins.robust_run_summary(blown, diverged_loss=20.0, rms_x_bound=100) == {
        "final train loss": "diverged", "final test loss": "diverged", "max train loss": "226",
        "max RMS(X)": "> 100", "steps with RMS(U)>1": "n/a"}
    with pytest.raises(ValueError, match="rms_x_bound"):
        ins.robust_run_summary(blown, diverged_loss=20.0, rms_x_bound=1000)


def test_jump_summary_by_hand():
    loss = [5.0, 4.0, 3.0, 9.0, 6.0, 2.0]  # loss at t = 0..5; the jump at t0 = 3
    run = fake_run(loss, rms_u=[1.0, 0.9, 4.0, 2.0, 1.0], rms_x=[1.0] * 5)
    baseline = fake_run([5.0, 4.0, 3.0, 2.5, 2.0, 1.5], rms_u=[1.0] * 5, rms_x=[1.0] * 5)
    s = ins.jump_summary(run, baseline, t0=3, window=1)
    assert s == {"loss at t0-1": 3.0, "max loss, t0..t0+1": 9.0, "max RMS(U), t>=t0": 4.0,
                 "final train loss": 2.0, "final test loss": 2.5, "final train loss, no jump": 1.5}
    with pytest.raises(ValueError, match="t0"):
        ins.jump_summary(run, baseline, t0=0)


def test_summaries_need_a_traced_run():
    with pytest.raises(TypeError, match="TracedRun"):
        ins.run_summary({"loss": [1.0]})
