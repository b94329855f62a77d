"""optbook.analysis.curves.loss_curve: losses along an iteration, checked on problems with known iterates."""

from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest

from optbook.analysis.curves import loss_curve


def quadratic(a, x0):
    """f(x) = a/2 |x|^2, whose gradient steps with lr shrink x by (1 - lr a) each time."""
    return SimpleNamespace(x0=np.asarray(x0, dtype=float), loss=lambda x: 0.5 * a * float(x @ x), grad=lambda x: a * x)


def test_gradient_descent_on_a_quadratic_follows_the_geometric_law():
    p = quadratic(2.0, [1.0, -2.0])
    losses = loss_curve(p, lambda x, g: x - 0.25 * g, 6)
    expected = 0.5 * 2.0 * 5.0 * (1 - 0.25 * 2.0) ** (2 * np.arange(7))
    np.testing.assert_allclose(losses, expected, rtol=1e-15)


def test_zero_steps_is_the_starting_loss_and_x0_is_not_changed():
    x0 = np.array([3.0])
    p = quadratic(1.0, x0)
    assert loss_curve(p, lambda x, g: x - g, 0).tolist() == [4.5]
    loss_curve(p, lambda x, g: x.__isub__(g), 2)  # an in-place update must not reach problem.x0
    assert p.x0.tolist() == [3.0]


def test_a_stateful_update_bound_with_partial_sees_every_step():
    seen = []

    def update(x, g, log):
        log.append(g.copy())
        return x - g

    loss_curve(quadratic(1.0, [1.0]), partial(update, log=seen), 3)
    assert [float(g[0]) for g in seen] == [1.0, 0.0, 0.0]  # lr 1, a 1: one step to the minimum


def test_bad_arguments():
    with pytest.raises(TypeError, match="grad"):
        loss_curve(SimpleNamespace(x0=0.0, loss=abs), lambda x, g: x, 1)
    with pytest.raises(TypeError, match="update"):
        loss_curve(quadratic(1.0, [1.0]), None, 1)
    with pytest.raises(ValueError, match="steps"):
        loss_curve(quadratic(1.0, [1.0]), lambda x, g: x, -1)
