"""optbook.reference.adam_combined_step_eps_schedule against textbook Adam and the constant-epsilon combined form."""

import numpy as np
import pytest

from optbook.reference import (
    adam_combined_step,
    adam_combined_step_eps_schedule,
    adam_step,
    equivalent_eps_hat,
    run,
)


def _quadratic_grad(x):
    return np.array([4.0, 0.25, 1.0]) * (x - np.array([1.0, -2.0, 0.5]))


def test_theorem_eps_schedule_reproduces_adam():
    x0, eps, b2 = np.zeros(3), 1e-1, 0.999
    adam = run(adam_step, x0, _quadratic_grad, 50, lr=0.05, eps=eps).xs
    combined = run(adam_combined_step_eps_schedule, x0, _quadratic_grad, 50, lr=0.05,
                   eps_hat_of_t=lambda t: equivalent_eps_hat(eps, b2, t)).xs
    assert np.abs(adam - combined).max() < 1e-12


def test_constant_schedule_is_the_plain_combined_form():
    x0 = np.zeros(3)
    plain = run(adam_combined_step, x0, _quadratic_grad, 30, lr=0.05, eps_hat=1e-2).xs
    scheduled = run(adam_combined_step_eps_schedule, x0, _quadratic_grad, 30, lr=0.05, eps_hat_of_t=lambda t: 1e-2).xs
    assert np.array_equal(plain, scheduled)


def test_schedule_sees_the_step_numbers_in_order():
    seen = []
    run(adam_combined_step_eps_schedule, np.zeros(3), _quadratic_grad, 4,
        eps_hat_of_t=lambda t: seen.append(t) or 1e-8)
    assert seen == [1, 2, 3, 4]


def test_rejects_a_constant_in_place_of_a_schedule():
    with pytest.raises(TypeError, match="eps_hat_of_t"):
        adam_combined_step_eps_schedule(np.zeros(2), np.ones(2), eps_hat_of_t=1e-8)
