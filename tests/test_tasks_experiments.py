"""optbook.tasks.experiments: the helpers that chapters 5, 6 and 8 call, checked by independent routes."""

import numpy as np
import pytest
import torch

from optbook import tasks
from optbook.tasks.datasets import Dataset
from optbook.tasks.experiments import (
    best_lr_by_batch_size,
    cross_entropy_hessian_diagonals,
    lr_factor_sweep,
    softmax_regression_problem,
    train_run,
    update_rms_recorder,
)


def _tiny_classification(n=40, d=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.integers(0, k, n)
    return Dataset("tiny", x[:30], y[:30], x[30:], y[30:], n_classes=k)


def test_softmax_problem_starts_at_a_uniform_guess():
    data = _tiny_classification()
    pb = softmax_regression_problem(data)
    assert pb.name == "tiny softmax regression"
    assert pb.x0.shape == (4, 3) and not pb.x0.any()
    # all-zero weights give every class probability 1/k: the loss is ln k
    assert pb.loss(pb.x0) == pytest.approx(np.log(3), rel=1e-12)
    # the gradient against central differences
    w = np.random.default_rng(1).standard_normal((4, 3))
    e, h = np.zeros_like(w), 1e-6
    e[1, 2] = 1.0
    fd = (pb.loss(w + h * e) - pb.loss(w - h * e)) / (2 * h)
    assert pb.grad(w)[1, 2] == pytest.approx(fd, rel=1e-6)


def test_softmax_problem_needs_classes():
    data = _tiny_classification()
    regression = Dataset("reg", data.x_train, data.x_train[:, 0], data.x_test, data.x_test[:, 0])
    with pytest.raises(ValueError, match="classification"):
        softmax_regression_problem(regression)


def test_update_rms_recorder_by_hand():
    p = torch.zeros(4)
    on_step, rms = update_rms_recorder([p], lr=0.5)
    p += torch.tensor([1.5, -2.0, 0.0, 0.0])  # update / lr = (-3, 4, 0, 0): RMS sqrt(25 / 4) = 2.5
    on_step(1)
    p -= 0.5  # a sign-like step of exactly lr on every entry: RMS 1
    on_step(2)
    assert rms == pytest.approx([2.5, 1.0])


def test_update_rms_recorder_rejects_bad_input():
    with pytest.raises(ValueError, match="lr"):
        update_rms_recorder([torch.zeros(2)], 0.0)
    with pytest.raises(TypeError, match="params"):
        update_rms_recorder([], 1e-3)


def test_hessian_diagonals_of_a_linear_classifier_match_softmax_regression():
    # for linear logits the Hessian is the Gauss-Newton matrix, and softmax_hessian_diagonal gives it in closed form
    torch.manual_seed(0)
    x = torch.randn(12, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (12,))
    model = torch.nn.Linear(3, 4).double()
    h, gn = cross_entropy_hessian_diagonals(model, x, y)
    w = np.vstack([model.weight.detach().numpy().T, model.bias.detach().numpy()])  # (d + 1, k), bias last
    closed = tasks.softmax_hessian_diagonal(w, x.numpy())
    expected = np.concatenate([closed[:3].T.ravel(), closed[3]])  # torch's order: weight (k, d), then bias
    assert np.abs(h - expected).max() < 1e-12
    assert np.abs(gn - expected).max() < 1e-12


def test_hessian_diagonals_differ_for_a_smooth_network():
    torch.manual_seed(1)
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    h, gn = cross_entropy_hessian_diagonals(net, x, y)
    assert h.shape == gn.shape == (sum(p.numel() for p in net.parameters()),)
    assert np.all(gn >= 0)  # a Gauss-Newton diagonal is a sum of squares weighted by a PSD matrix
    assert np.abs(h - gn).max() > 1e-6  # tanh's second derivative adds to the Hessian
    with pytest.raises(TypeError, match="model"):
        cross_entropy_hessian_diagonals(lambda t: t, x, y)


def test_lr_factor_sweep_rows_match_direct_runs():
    data = _tiny_classification()
    setups = {"tiny": (data, dict(hidden=4, epochs=1, batch_size=10))}
    rows = lr_factor_sweep(setups, {"SGD": 0.1, "Adam": 1e-2}, (1.0, 2.0))
    assert [(r["optimizer"], r["lr"]) for r in rows] == [("SGD", 0.1), ("SGD", 0.2), ("Adam", 1e-2), ("Adam", 2e-2)]
    direct = train_run("Adam", 2e-2, data, hidden=4, epochs=1, batch_size=10, seed=0, dtype=torch.float64)
    assert rows[-1]["test loss"] == direct.test_loss[-1] and rows[-1]["train loss"] == direct.train_loss[-1]
    with pytest.raises(ValueError, match="unknown optimizers"):
        lr_factor_sweep(setups, {"Adamm": 1e-3}, (1.0,))


def test_best_lr_by_batch_size_picks_the_lowest_direct_loss():
    data = _tiny_classification()
    lrs = np.array([1e-3, 1e-2, 1e-1])
    rows = best_lr_by_batch_size("Adam", lrs, [10, 30], data, epochs=2, loss_ceiling=np.log(3))
    assert [r["batch"] for r in rows] == [10, 30]
    for row in rows:
        finals = [train_run("Adam", float(lr), data, epochs=2, batch_size=row["batch"], dtype=torch.float64).train_loss
                  for lr in lrs]
        ok = [f[-1] if (f[-1] < np.log(3) and max(f) < 2 * np.log(3)) else np.inf for f in finals]
        assert row["grid best"] == lrs[int(np.argmin(ok))]
        assert row["best train loss"] == min(ok)
        assert row["largest working lr"] == max(lr for lr, v in zip(lrs, ok) if np.isfinite(v))
        assert lrs[0] <= row["best lr"] <= lrs[-1]


def test_best_lr_by_batch_size_rejects_bad_grids():
    data = _tiny_classification()
    with pytest.raises(ValueError, match="lrs"):
        best_lr_by_batch_size("SGD", [0.0, 1.0], [10], data, epochs=1, loss_ceiling=1.0)
    with pytest.raises(ValueError, match="every rate failed"):
        best_lr_by_batch_size("SGD", [1e-3], [10], data, epochs=1, loss_ceiling=1e-9)
