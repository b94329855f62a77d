"""Tests of optbook.analysis.choosing and of the "improve Adam" names of optbook.tasks.experiments."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import pytorch_optimizer
import torch

from optbook import tasks
from optbook.analysis import choosing
from optbook.tasks import experiments


def _layer_after_one_step(name: str):
    layer = torch.nn.Linear(3, 2)  # 6 + 2 = 8 parameters
    opt = tasks.make_optimizer(name, layer.parameters(), 1e-3)
    layer(torch.ones(4, 3)).pow(2).mean().backward()
    opt.step()
    return layer, opt


# ---------------------------------------------------------------- make_optimizer


def test_optimizer_names_unchanged_and_improved_names_separate():
    assert tasks.OPTIMIZER_NAMES == ("SGD", "momentum", "Nesterov", "Adagrad", "RMSProp", "AdaDelta", "Adam",
                                     "AdamW", "Lion", "Sophia", "Adafactor")
    assert tasks.IMPROVED_ADAM_NAMES == ("RAdam", "AdaMod", "diffGrad", "Ranger", "Lookahead")
    assert not set(tasks.OPTIMIZER_NAMES) & set(tasks.IMPROVED_ADAM_NAMES)


@pytest.mark.parametrize("name, cls", [("RAdam", torch.optim.RAdam), ("AdaMod", pytorch_optimizer.AdaMod),
                                       ("diffGrad", pytorch_optimizer.DiffGrad), ("Ranger", pytorch_optimizer.Ranger)])
def test_improved_adam_methods_keep_their_library_defaults(name, cls):
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = tasks.make_optimizer(name, p, 2e-3)
    assert type(opt) is cls
    # the defaults of the constructor's signature, read independently of make_optimizer
    signature = inspect.signature(cls.__init__).parameters
    for key, value in opt.param_groups[0].items():
        if key in signature and key != "lr" and signature[key].default is not inspect.Parameter.empty:
            assert value == signature[key].default, (name, key)
    assert opt.param_groups[0]["lr"] == 2e-3


def test_lookahead_wraps_adamw_with_its_defaults_and_splits_overrides():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = tasks.make_optimizer("Lookahead", p, 1e-3)
    assert isinstance(opt, pytorch_optimizer.Lookahead) and type(opt.optimizer) is torch.optim.AdamW
    signature = inspect.signature(pytorch_optimizer.Lookahead.__init__).parameters
    assert (opt.k, opt.alpha) == (signature["k"].default, signature["alpha"].default) == (5, 0.5)
    assert opt.param_groups[0]["weight_decay"] == 1e-2 and opt.param_groups[0]["lr"] == 1e-3
    opt = tasks.make_optimizer("Lookahead", p, 1e-3, k=3, betas=(0.8, 0.9))
    assert opt.k == 3 and opt.param_groups[0]["betas"] == (0.8, 0.9)


def test_improved_adam_methods_train_and_unknown_names_fail():
    torch.manual_seed(0)
    x = torch.randn(32, 3, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    for name in tasks.IMPROVED_ADAM_NAMES:
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(torch.float64)
        opt = tasks.make_optimizer(name, model.parameters(), 1e-2)
        with torch.no_grad():
            first = float(torch.nn.functional.mse_loss(model(x), y))
        for _ in range(200):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            assert float(torch.nn.functional.mse_loss(model(x), y)) < first, name  # AdaMod starts slowly: its bound on the step rises from 0
    with pytest.raises(ValueError, match="RAdam"):
        tasks.make_optimizer("Radam", [torch.nn.Parameter(torch.zeros(1))], 1e-3)


def _tiny_regression():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(40)
    return tasks.Dataset("tiny", x[:30], y[:30], x[30:], y[30:], None)


def test_lr_factor_sweep_seeds_is_the_single_seed_sweep_per_seed():
    data = _tiny_regression()
    setups = {"tiny": (data, dict(hidden=4, epochs=2, batch_size=10))}
    rows = tasks.lr_factor_sweep_seeds(setups, {"RAdam": 1e-2, "Lookahead": 1e-2}, (1.0,), (0, 3))
    assert [(r["seed"], r["optimizer"]) for r in rows] == [(0, "RAdam"), (0, "Lookahead"), (3, "RAdam"), (3, "Lookahead")]
    direct = tasks.train_run("Lookahead", 1e-2, data, hidden=4, epochs=2, batch_size=10, seed=3, dtype=torch.float64)
    assert rows[-1]["test loss"] == direct.test_loss[-1]
    assert rows[0]["test loss"] != rows[2]["test loss"]  # another seed, another run
    with pytest.raises(ValueError, match="seeds"):
        tasks.lr_factor_sweep_seeds(setups, {"RAdam": 1e-2}, (1.0,), (1, 1))
    with pytest.raises(ValueError, match="seeds"):
        tasks.lr_factor_sweep_seeds(setups, {"RAdam": 1e-2}, (1.0,), ())


# ---------------------------------------------------------------- state


def test_state_bytes_per_parameter_counts_by_hand_and_includes_wrapped_state():
    _, sgd = _layer_after_one_step("SGD")
    assert choosing.state_bytes_per_parameter(sgd, 8) == 0.0
    _, adam = _layer_after_one_step("Adam")
    # m and v in float32 for 8 parameters, and one float32 step counter per tensor (2 tensors)
    assert choosing.state_bytes_per_parameter(adam, 8) == (2 * 8 * 4 + 2 * 4) / 8
    _, look = _layer_after_one_step("Lookahead")
    inner = choosing.state_bytes_per_parameter(look.optimizer, 8)
    assert inner == (2 * 8 * 4 + 2 * 4) / 8  # AdamW holds what Adam holds
    assert choosing.state_bytes_per_parameter(look, 8) == inner + 4.0  # plus one float32 slow weight per parameter
    with pytest.raises(ValueError, match="n_params"):
        choosing.state_bytes_per_parameter(adam, 0)
    with pytest.raises(TypeError, match="optimizer"):
        choosing.state_bytes_per_parameter("Adam", 8)


def test_state_tensor_names():
    assert choosing.state_tensor_names(_layer_after_one_step("SGD")[1]) == "none"
    assert choosing.state_tensor_names(_layer_after_one_step("Adam")[1]) == "exp_avg, exp_avg_sq"
    assert choosing.state_tensor_names(_layer_after_one_step("Lookahead")[1]) == "slow_params, exp_avg, exp_avg_sq"
    with pytest.raises(TypeError, match="optimizer"):
        choosing.state_tensor_names(None)


# ---------------------------------------------------------------- statistics


def _rows(table):
    """Rows from {(task, optimizer): {factor: [loss per seed]}}."""
    return [{"task": t, "optimizer": n, "factor": f, "lr": 0.1 * f, "seed": s, "test loss": loss}
            for (t, n), by_f in table.items() for f, losses in by_f.items() for s, loss in enumerate(losses)]


def test_seed_statistics_picks_one_rate_for_all_seeds():
    rows = _rows({("a", "X"): {1.0: [1.0, 2.0, 3.0], 2.0: [0.5, 4.0, 4.0]},   # means 2 and 17/6: factor 1
                  ("a", "Y"): {1.0: [1.0, 1.0, 1.0], 2.0: ["inf", 0.1, 0.1]}})  # a diverged seed: mean inf
    stats = {r["optimizer"]: r for r in choosing.seed_statistics(rows)}
    assert stats["X"]["factor"] == 1.0 and stats["X"]["mean"] == 2.0 and stats["X"]["std"] == pytest.approx(1.0)
    assert stats["X"]["lr"] == pytest.approx(0.1) and stats["X"]["n_seeds"] == 3 and stats["X"]["at grid end"]
    assert stats["Y"]["factor"] == 1.0 and stats["Y"]["std"] == 0.0
    assert (stats["Y"]["rank"], stats["X"]["rank"]) == (1, 2)
    with_more = [{**r, "test accuracy": 0.5 + 0.1 * r["seed"], "train loss": 2.0 * r["seed"]} for r in rows]
    x = [r for r in choosing.seed_statistics(with_more) if r["optimizer"] == "X"][0]
    assert x["accuracy"] == pytest.approx(0.6) and x["train mean"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="non-empty"):
        choosing.seed_statistics([])
    with pytest.raises(ValueError, match="seed"):
        choosing.seed_statistics([{"task": "a", "optimizer": "X", "factor": 1.0, "lr": 1.0, "test loss": 1.0}])
    with pytest.raises(ValueError, match="a/X at factor 1.0: .* at least 3"):
        choosing.seed_statistics(_rows({("a", "X"): {1.0: [1.0, 2.0]}}))


def test_lr_sensitivity_is_worst_over_best_mean():
    rows = _rows({("a", "X"): {1.0: [1.0, 3.0], 2.0: [4.0, 6.0], 4.0: [8.0, 12.0]}})
    assert choosing.lr_sensitivity(rows, "a", "X") == pytest.approx(10.0 / 2.0)
    assert math.isinf(choosing.lr_sensitivity(_rows({("a", "X"): {1.0: [1.0, 1.0], 2.0: [1.0, "inf"]}}), "a", "X"))
    with pytest.raises(ValueError, match="no runs"):
        choosing.lr_sensitivity(rows, "b", "X")
    with pytest.raises(ValueError, match="positive"):
        choosing.lr_sensitivity(_rows({("a", "X"): {1.0: [0.0, 0.0], 2.0: [1.0, 1.0]}}), "a", "X")


def test_clearly_better_needs_non_overlapping_intervals():
    assert choosing.clearly_better(1.0, 0.1, 1.5, 0.1)
    assert not choosing.clearly_better(1.0, 0.3, 1.5, 0.3)  # 1.3 > 1.2: overlap
    assert not choosing.clearly_better(1.5, 0.1, 1.0, 0.1)
    assert choosing.clearly_better(1.0, 0.1, math.inf, 0.0)  # against a run that diverged for every seed
    assert not choosing.clearly_better(1.0, 0.1, math.inf, math.inf)  # some seeds diverged: no claim
    with pytest.raises(ValueError, match="std_a"):
        choosing.clearly_better(1.0, -0.1, 2.0, 0.1)
    with pytest.raises(TypeError, match="numbers"):
        choosing.clearly_better("1", 0.1, 2.0, 0.1)


def _stats_for_verdicts():
    rows = _rows({
        ("t", "Adam"): {1.0: [1.0, 1.1, 1.2]},
        ("t", "A"): {1.0: [0.5, 0.5, 0.5]},      # best, clearly
        ("t", "B"): {1.0: [0.9, 1.1, 1.3]},      # within Adam's spread
        ("t", "C"): {1.0: [2.0, 2.0, 2.0]},      # clearly worse than Adam
    })
    return choosing.seed_statistics(rows)


def test_versus_and_when_to_try_follow_their_rules():
    stats = _stats_for_verdicts()
    assert choosing.versus(stats, "t", "A", "Adam") == "better than Adam"
    assert choosing.versus(stats, "t", "B", "Adam") == "same as Adam"
    assert choosing.versus(stats, "t", "C", "Adam") == "worse than Adam"
    state = {"Adam": 8.0, "A": 0.0, "B": 12.0, "C": 0.5}
    sens = {"Adam": {"t": 2.0}, "A": {"t": 1.1}, "B": {"t": 5.0}, "C": {"t": 3.0}}
    assert choosing.when_to_try(stats, state, sens, "A") == "smallest state; best on t; robust to lr"
    assert choosing.when_to_try(stats, state, sens, "B", improved=("B",)) == "sensitive to lr; no better than Adam here"
    assert choosing.when_to_try(stats, state, sens, "C", improved=("C",)) == "state < 1 B/param; worse than Adam on t"
    assert choosing.when_to_try(stats, state, sens, "Adam") == "no clear edge here"
    flat = {"Adam": {"t": 2.0}, "A": {"t": 3.0}, "B": {"t": 5.0}, "C": {"t": 1.0}}  # C is flat because every rate is poor
    assert choosing.when_to_try(stats, state, flat, "C") == "state < 1 B/param; worse than Adam on t"
    two = choosing.seed_statistics(_rows({(t, n): {1.0: v} for t in ("u", "t") for n, v in
                                          (("Adam", [1.0, 1.1, 1.2]), ("C", [2.0, 2.1, 2.2]))}))
    assert choosing.when_to_try(two, {"Adam": 4.0, "C": 8.0}, {"Adam": {"t": 2, "u": 2}, "C": {"t": 1, "u": 1}}, "C") == (
        "worse than Adam on both")
    with pytest.raises(ValueError, match="state_bytes"):
        choosing.when_to_try(stats, {"A": 0.0}, sens, "A")
    with pytest.raises(ValueError, match="seed statistics"):
        choosing.versus(stats, "t", "D", "Adam")


def test_stored_lr_sweep_rejects_a_check_outside_the_grid():
    setups = {"tiny": (_tiny_regression(), dict(hidden=4, epochs=1, batch_size=10))}
    with pytest.raises(ValueError, match="check"):
        choosing.stored_lr_sweep("book/data/never_written.json", setups, {"Adam": 1e-3}, (1.0,), (0, 1),
                                 check=("tiny", "Adam", 2.0, 0))
