"""The cross-check helpers: each recipe makes its upstream compute the paper's algorithm.

The upstream divergences themselves (bugs, conventions) are asserted by the
optimizer's own test files and demonstrated in the practice chapter; here we
check that the helpers run each implementation the way they claim to.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from optbook.analysis import crosscheck as cc  # noqa: E402
from optbook.analysis.memory import optimizer_state_numbers  # noqa: E402
from optbook.reference import adafactor as af  # noqa: E402

SHAPES = [(12, 9), (9,), (3, 8, 6), (2, 3, 5, 7), (), (5, 1)]


@pytest.fixture(scope="module")
def problem():
    return cc.random_problem(SHAPES, 8, seed=0)


@pytest.fixture(scope="module")
def reference(problem):
    return cc.run_reference(*problem)


def test_random_problem_is_seeded_and_shaped():
    p, g = cc.random_problem([(3, 2), (4,)], 5, seed=1, grad_rms=1e-3)
    p2, _ = cc.random_problem([(3, 2), (4,)], 5, seed=1)
    assert [x.shape for x in p] == [(3, 2), (4,)] and len(g) == 5 and np.array_equal(p[0], p2[0])
    assert 1e-4 < af.rms(np.concatenate([x.ravel() for step in g for x in step])) < 1e-2


def test_run_reference_composes_the_same_iteration_as_reference_step(problem, reference):
    params0, grads = problem
    for i, x0 in enumerate(params0):
        state, x = af.AdafactorState(), x0.copy()
        for k, step_grads in enumerate(grads, start=1):
            x = af.step(x, step_grads[i], state)
            assert np.array_equal(reference.params[i][k], x)


@pytest.mark.parametrize("runner", [cc.run_torch, cc.run_transformers, cc.run_pytorch_optimizer])
def test_torch_recipes_reproduce_the_reference_in_float64(runner, problem, reference):
    run = runner(*problem)
    assert run.params[0].shape == (9, 12, 9)
    assert cc.max_relative_difference(run, reference) <= 1e-12


def test_optax_recipe_matches_two_largest_factoring_up_to_its_float32_decay(problem):
    params0, grads = problem
    run = cc.run_optax(params0, grads)
    exact = cc.run_reference(params0, grads, factor_dims="two_largest")
    rounded = cc.run_reference(params0, grads, factor_dims="two_largest", beta2hat=cc.float32_decay)
    # optax evaluates 1 - t^-0.8 in float32 even under x64; with that one rounding copied, the runs agree.
    assert cc.max_relative_difference(run, rounded) <= 1e-12
    assert 1e-12 < cc.max_relative_difference(run, exact) < 1e-7


def test_factored_dims_rules():
    assert cc.factored_dims((7,)) is None and cc.factored_dims(()) is None
    assert cc.factored_dims((16, 8, 3, 3)) == (2, 3)
    assert cc.factored_dims((16, 8, 3, 3), "two_largest") == (0, 1)
    assert cc.factored_dims((32, 12, 64), "two_largest") == (0, 2)
    assert cc.factored_dims((64, 48), "two_largest", min_size=128) is None
    assert cc.factored_dims((5, 5), None) is None
    with pytest.raises(ValueError, match="rule"):
        cc.factored_dims((2, 2), "largest")


def test_reference_skips_a_missing_gradient_and_keeps_its_own_step_count():
    p0 = [np.ones((3, 2)), np.ones(4)]
    g = [[np.ones((3, 2)), None], [np.ones((3, 2)), np.full(4, 2.0)]]
    run = cc.run_reference(p0, g)
    assert np.array_equal(run.params[1][1], p0[1])
    assert [s.t for s in run.extra["states"]] == [2, 1]


def test_state_numbers_of_torch_and_optax_runs_agree():
    run = cc.run_torch([np.zeros((12, 9)), np.zeros(9)], [[np.ones((12, 9)), np.ones(9)]])
    assert optimizer_state_numbers(run.optimizer) == 12 + 9 + 9
    ox = cc.run_optax([np.zeros((12, 9)), np.zeros(9)], [[np.ones((12, 9)), np.ones(9)]])
    assert cc.optax_state_numbers(ox.optimizer) == 12 + 9 + 9


def test_difference_measure_propagates_nan_and_checks_shapes():
    a = [np.array([[1.0, 2.0], [1.0, 2.5]])]
    assert cc.max_relative_difference(a, a) == 0.0
    assert cc.max_relative_difference([a[0] * 1.1], a) == pytest.approx(0.1 * 2.5 / 2.5)
    assert np.isnan(cc.max_relative_difference([np.full((2, 2), np.nan)], a))
    with pytest.raises(ValueError, match="shapes"):
        cc.max_relative_difference([np.zeros((2, 3))], a)
    with pytest.raises(ValueError, match="gradient"):
        cc.run_reference([np.zeros(2)], [[np.zeros(3)]])


def test_runs_in_lower_precision_return_float64_trajectories():
    run = cc.run_torch([np.ones((4, 3))], [[np.ones((4, 3))]], dtype=torch.bfloat16)
    assert run.params[0].dtype == np.float64 and run.optimizer.param_groups[0]["params"][0].dtype == torch.bfloat16


def test_conventions_table_covers_the_implementations():
    table = cc.conventions_table()
    for name in ("torch.optim.Adafactor", "transformers Adafactor", "optax.adafactor", "timm Adafactor",
                 "fairseq Adafactor", "Keras 3 Adafactor", "pytorch_optimizer AdaFactor 4.1"):
        assert name in table.index
    assert {"eps1", "factored_dims", "lr", "weight_decay", "step_counter", "state_dtype"} <= set(table.columns)
    assert table.notna().all().all()


def test_optbook_runner_matches_the_reference_and_seeds_its_rounding(problem, reference):
    assert cc.max_relative_difference(cc.run_optbook(*problem), reference) <= 1e-12
    x, g = [np.full((8, 4), 1.0)], [[np.ones((8, 4))]] * 5
    runs = [cc.run_optbook(x, g, dtype=torch.bfloat16, lr=1e-3, stochastic_rounding=True, seed=s) for s in (3, 3, 4)]
    assert np.array_equal(runs[0].params[0], runs[1].params[0])
    assert not np.array_equal(runs[0].params[0], runs[2].params[0])


def test_optax_runs_in_float64_without_changing_the_process_wide_setting():
    import jax

    before = bool(jax.config.jax_enable_x64)
    run = cc.run_optax([np.ones((3, 2))], [[np.full((3, 2), 0.1)]])
    assert bool(jax.config.jax_enable_x64) == before
    assert run.optimizer is not None and run.params[0].dtype == np.float64
    assert not np.array_equal(run.params[0][1], np.float32(run.params[0][1]))  # float64 values, not float32 ones
