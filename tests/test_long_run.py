"""optbook.tasks.long_run: where a curve diverges or plateaus, the optimizers, and short reproducible runs."""

import math

import pytest

import optbook
from optbook.tasks import long_run as lr


def test_divergence_step_by_hand():
    steps = [100, 200, 300, 400, 500]
    assert lr.divergence_step(steps, [3.0, 2.0, 1.0, 1.05, 1.2], rise=0.1) == 500  # 1.2 > 1.0 + 0.1
    assert lr.divergence_step(steps, [3.0, 2.0, 1.0, 1.05, 1.09], rise=0.1) is None
    assert lr.divergence_step(steps, [3.0, 2.0, math.nan, 1.0, 1.0], rise=0.1) == 300
    assert lr.divergence_step(steps, [3.0, math.inf, 1.0, 1.0, 1.0], rise=0.1) == 200


def test_plateau_step_by_hand():
    steps = [1, 2, 3, 4, 5, 6]
    y = [5.0, 4.0, 3.0, 2.995, 2.99, 2.99]
    # k = 2: 3.0 - min(2.995, 2.99) = 0.01 < 0.02; earlier windows still gain more than 0.02.
    assert lr.plateau_step(steps, y, horizon=2, tol=0.02) == 3
    assert lr.plateau_step(steps, y, horizon=2, tol=0.005) == 4
    assert lr.plateau_step(steps, [5.0, 4.0, 3.0, 2.0, 1.0, 0.0], horizon=1, tol=0.5) is None
    # A curve that rises is a plateau at once (it gains nothing).
    assert lr.plateau_step(steps, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], horizon=3, tol=1e-3) == 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="rise"):
        lr.divergence_step([1, 2], [1.0, 2.0], rise=0)
    with pytest.raises(ValueError, match="same non-zero length"):
        lr.divergence_step([1, 2], [1.0], rise=0.1)
    with pytest.raises(ValueError, match="horizon"):
        lr.plateau_step([1, 2], [1.0, 2.0], horizon=0, tol=0.1)
    with pytest.raises(ValueError, match="tol"):
        lr.plateau_step([1, 2], [1.0, 2.0], horizon=1, tol=-1.0)
    with pytest.raises(ValueError, match="steps"):
        lr.train_losses("adamw", 0, 0, lr=1e-3)
    with pytest.raises(ValueError, match="processes"):
        lr.compute_long_runs(1, [0], 1e-3, processes=0)


def test_the_three_optimizers():
    import torch

    p = [torch.nn.Parameter(torch.zeros(3, 2))]
    noclip, clip = lr.make_optimizer("adafactor_noclip", p), lr.make_optimizer("adafactor_clip", p)
    assert isinstance(noclip, optbook.Adafactor) and noclip.defaults["d"] == math.inf and noclip.defaults["beta1"] == 0.9
    assert clip.defaults["d"] == 1.0 and clip.defaults["relative_step"] and clip.defaults["scale_parameter"]
    assert isinstance(lr.make_optimizer("adamw", p, 1e-3), torch.optim.AdamW)
    with pytest.raises(ValueError, match="learning rate"):
        lr.make_optimizer("adamw", p)
    with pytest.raises(ValueError, match="must be one of"):
        lr.make_optimizer("sgd", p)


def test_short_runs_repeat_exactly_and_seeds_differ():
    a = lr.train_losses("adafactor_clip", 0, 5, show_progress=False)
    b = lr.train_losses("adafactor_clip", 0, 5, show_progress=False)
    c = lr.train_losses("adafactor_clip", 1, 5, show_progress=False)
    assert a == b and a["train_loss"] != c["train_loss"]
    assert len(a["train_loss"]) == 5 and a["val_steps"] == [0, 5] and a["nonfinite_step"] is None
    # Before any update both Adafactor runs see the same model and batch.
    assert lr.train_losses("adafactor_noclip", 0, 1, show_progress=False)["train_loss"] == a["train_loss"][:1]


def test_compute_and_summarise_on_a_tiny_run():
    setup = lr.LongRunSetup(window=2, eval_every=4)
    out = lr.compute_long_runs(4, [0], 1e-3, keep_first=3, setup=setup)
    assert set(out) == set(lr.CONFIGS)
    run = out["adamw"]["0"]
    assert run["window_steps"] == [2, 4] and len(run["smoothed"]) == 2 and len(run["first"]) == 3
    rows = lr.summarise(out, rise=0.5, horizon=1, tol=1e-9)
    assert [r["config"] for r in rows] == list(lr.CONFIGS)
    assert all(r["final smoothed loss std"] == 0.0 for r in rows)  # one seed
