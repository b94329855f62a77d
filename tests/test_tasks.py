"""The real-data tasks: exact gradients, seeded splits, and a training loop that learns."""

import numpy as np
import pytest
import torch

from optbook import tasks


def test_digits_split_is_seeded_and_standardised():
    a, b = tasks.digits(seed=0), tasks.digits(seed=0)
    assert np.array_equal(a.x_train, b.x_train) and a.x_train.shape[1] == 64
    assert len(a.x_train) + len(a.x_test) == 1797
    assert np.allclose(a.x_train.mean(axis=0), 0.0, atol=1e-12)


def test_softmax_gradient_matches_torch_autograd():
    data = tasks.digits()
    rng = np.random.default_rng(0)
    w = rng.normal(scale=0.1, size=(65, 10))
    x, y = data.x_train[:50], data.y_train[:50]
    wt = torch.tensor(w, requires_grad=True)
    logits = torch.tensor(x) @ wt[:-1] + wt[-1]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y)) + 0.5 * 0.1 * (wt[:-1] ** 2).sum()
    loss.backward()
    assert tasks.softmax_cross_entropy(w, x, y, l2=0.1) == pytest.approx(float(loss), rel=1e-12)
    assert np.allclose(tasks.softmax_cross_entropy_grad(w, x, y, l2=0.1), wt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_training_loop_learns_digits():
    torch.manual_seed(0)
    data = tasks.digits()
    model = tasks.mlp(64, 32, 10, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = tasks.train_classifier(model, opt, data, epochs=3, batch_size=64)
    assert hist.test_accuracy[-1] > 0.85
    assert hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(ValueError, match="batch_size"):
        tasks.train_classifier(model, opt, data, epochs=1, batch_size=0)
