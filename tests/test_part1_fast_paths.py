"""The faster routes taken by chapters 5 to 7 of Part I give the same numbers as the slow ones they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optbook import analysis, tasks
from optbook.problems import beale_problem, saddle_problem
from optbook.reference import adam_step, adamw_step, run


# --- the digits, read without importing scikit-learn -----------------------------------------


def test_bundled_digits_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    pixels, labels = tasks.datasets._bundled_digits()
    reference = load_digits()
    assert pixels.dtype == reference.data.dtype and np.array_equal(pixels, reference.data)
    assert labels.dtype == reference.target.dtype and np.array_equal(labels, reference.target)


# --- paths stopped early ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GD", "momentum", "Adagrad", "Adam", "Sophia", "Adafactor"])
def test_trace_path_to_exit_is_the_prefix_of_the_full_path(name):
    problem = saddle_problem((1.0, 1e-4))
    full = analysis.trace_path(name, problem, 2e-2, 2000)
    for min_steps in (0, 50, 400):
        short = analysis.trace_path_to_exit(name, problem, 2e-2, 2000, 1.0, min_steps=min_steps)
        hit = analysis.first_exit(full, 1.0)
        assert hit is not None
        assert len(short) == max(hit, min_steps) + 1
        assert np.array_equal(short, full[: len(short)])
        assert analysis.first_exit(short, 1.0) == hit


def test_trace_path_to_exit_runs_to_max_steps_without_an_exit_and_rejects_bad_input():
    problem = saddle_problem((1.0, 0.0))  # on the symmetric line: y stays 0
    assert len(analysis.trace_path_to_exit("GD", problem, 1e-2, 30, 1.0)) == 31
    with pytest.raises(ValueError, match="threshold"):
        analysis.trace_path_to_exit("GD", problem, 1e-2, 30, -1.0)
    with pytest.raises(ValueError, match="max_steps"):
        analysis.trace_path_to_exit("GD", problem, 1e-2, -1)
    with pytest.raises(ValueError, match="axis"):
        analysis.trace_path_to_exit("GD", problem, 1e-2, 30, axis=2)


def test_escape_steps_over_lr_matches_the_full_paths():
    problem = saddle_problem((1.0, 1e-8))
    lrs = [0.02, 0.04]
    expected = [analysis.first_exit(analysis.trace_path("Adagrad", problem, lr, 600), 1.0) for lr in lrs]
    assert analysis.escape_steps_over_lr("Adagrad", problem, lrs, 600).tolist() == [-1 if e is None else e for e in expected]


@pytest.mark.parametrize("name", ["GD", "NAG", "RMSProp", "Lion", "Adafactor"])
def test_rule_heading_error_is_the_angle_of_the_full_path(name):
    for x0 in ((1.0, 1.5), (0.2, -0.5)):
        problem = beale_problem(x0)
        with np.errstate(over="ignore", invalid="ignore"):
            full = analysis.heading_error_at_fraction(analysis.trace_path(name, problem, 1e-2, 300), problem.minimizer, 0.25)
            fast = analysis.rule_heading_error(name, problem, 1e-2, 300, 0.25)
        assert (np.isnan(full) and np.isnan(fast)) or full == fast
    # a run too short to cover a quarter of the way gives NaN, as the full path does
    assert np.isnan(analysis.rule_heading_error("GD", beale_problem(), 1e-4, 3, 0.25))
    with pytest.raises(ValueError, match="fraction"):
        analysis.rule_heading_error("GD", beale_problem(), 1e-2, 10, 0.0)


def test_best_from_grid_picks_what_best_path_picks():
    problem = beale_problem()
    lrs = [1e-3, 1e-2, 10.0]  # the last one diverges
    finals = analysis.final_losses_over_grid("GD", problem, lrs, 60)
    assert np.isinf(finals[-1]) and all(np.isfinite(finals[:-1]))
    lr, loss = analysis.best_from_grid(lrs, finals)
    lr_ref, xs = analysis.best_path("GD", problem, lrs, 60)
    assert lr == lr_ref and loss == float(problem.loss(xs[-1]))
    # the stored form of an infinite loss is the string "inf"
    assert analysis.best_from_grid([1.0, 2.0], ["inf", 3.0]) == (2.0, 3.0)
    with pytest.raises(ValueError, match="same non-zero length"):
        analysis.best_from_grid([1.0, 2.0], [1.0])


# --- torch iterates without the losses --------------------------------------------------------


def test_minimize_iterates_are_minimizes_path():
    from optbook.train import minimize, minimize_iterates

    problem = beale_problem()
    make = lambda p: torch.optim.Adam(p, lr=1e-2)
    assert np.array_equal(minimize_iterates(problem, make, 25), minimize(problem, make, 25).x)
    with pytest.raises(ValueError, match="steps"):
        minimize_iterates(problem, make, -1)


# --- per-repetition error curves --------------------------------------------------------------


def test_running_mean_error_curves_average_to_the_mean_curve_and_do_not_depend_on_the_sample_count():
    exact = np.array([1.0, 2.0, 3.0])
    draw = lambda rng: exact + rng.standard_normal(3)
    counts = [1, 2, 4, 8]
    rows = analysis.running_mean_error_curves(draw, exact, counts, n_samples=8, repetitions=3, seed=5)
    assert rows.shape == (3, 4)
    np.testing.assert_array_equal(rows.mean(axis=0),
                                  analysis.mean_running_mean_errors(draw, exact, counts, n_samples=8, repetitions=3, seed=5))
    # the first S draws of a repetition are the same whatever n_samples is
    short = analysis.running_mean_error_curves(draw, exact, counts[:2], n_samples=2, repetitions=1, seed=5)
    np.testing.assert_array_equal(short[0], rows[0, :2])
    # by hand, for S = 1: the relative error of the first draw
    first = draw(np.random.default_rng(5))
    assert rows[0, 0] == pytest.approx(np.linalg.norm(first - exact) / np.linalg.norm(exact), rel=1e-12)
    with pytest.raises(ValueError, match="repetitions"):
        analysis.running_mean_error_curves(draw, exact, counts, n_samples=8, repetitions=0, seed=5)


# --- animation frames rendered once ---------------------------------------------------------------


def test_a_frame_grabbed_from_the_canvas_is_the_frame_savefig_renders(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optbook.viz.animate import _PaletteHTMLWriter

    fig, ax = plt.subplots(figsize=(3, 2), dpi=40)
    ax.plot([0, 1, 2], [1, 0, 2], label="a path")
    ax.legend()
    frames = []
    for grab in ("grab_frame", "grab_drawn_frame"):
        writer = _PaletteHTMLWriter(fps=5, embed_frames=True)
        with writer.saving(fig, str(tmp_path / f"{grab}.html"), 40):
            fig.canvas.draw()
            getattr(writer, grab)()
            frames.append(writer._saved_frames[0])
    plt.close(fig)
    assert frames[0] == frames[1]


# --- the experiments of chapters 5 and 6 ------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return tasks.digits()


def test_adam_l2_against_adamw_reports_the_runs_it_makes(digits):
    out = tasks.adam_runs.adam_l2_against_adamw(digits, [1e-2], 5, 1e-2)["0.01"]
    problem = tasks.softmax_regression_problem(digits)
    for name, step_fn in (("Adam + L2", adam_step), ("AdamW", adamw_step)):
        xs = run(step_fn, problem.x0, problem.grad, 5, lr=1e-2, weight_decay=1e-2).xs
        assert out[name]["norms"][0] == 0.0 and len(out[name]["norms"]) == 6
        assert out[name]["norms"][-1] == pytest.approx(np.linalg.norm(xs[-1]), rel=1e-14)
        assert out[name]["train loss"] == pytest.approx(problem.loss(xs[-1]), rel=1e-14)
    # after one step every coordinate with a gradient has moved by about lr, so the penalised minimiser is far away
    assert out["Adam + L2"]["dist to penalised min"] > 0.1 and out["minimiser_norm"] > 0
    with pytest.raises(ValueError, match="steps"):
        tasks.adam_runs.adam_l2_against_adamw(digits, [1e-2], 0, 1e-2)


def test_mlp_weight_decay_grid_without_decay_is_the_same_for_adam_and_adamw(digits):
    rows = tasks.adam_runs.mlp_weight_decay_grid(digits, [0.0], epochs=1)
    assert [tuple(r) for r in rows] == [tasks.adam_runs.MLP_DECAY_COLUMNS] * 2
    a, w = rows
    assert (a["optimizer"], w["optimizer"]) == ("Adam + L2", "AdamW")
    # with lambda = 0 the two rules are the same rule
    for col in ("train loss", "test loss", "test accuracy", "||theta||"):
        assert a[col] == pytest.approx(w[col], rel=1e-12)
    with pytest.raises(ValueError, match="optimizers"):
        tasks.adam_runs.mlp_weight_decay_grid(digits, [0.0], epochs=1, optimizers=("SGD",))


def test_network_estimates_and_their_live_slice_agree(digits):
    from optbook.tasks import lion_sophia_runs

    full = lion_sophia_runs.network_diagonal_estimates("ReLU", digits, [1, 2, 4], hidden=4, epochs=1, batch=32,
                                                       samples=4, first=3)
    assert full["parameters"] == 64 * 4 + 4 + 4 * 10 + 10
    assert full["gap"] < 1e-12  # for a ReLU network the Gauss-Newton and Hessian diagonals coincide
    assert set(full["errors"]) == {"Hutchinson|H", "Hutchinson|GN", "GNB|H", "GNB|GN"}
    live = lion_sophia_runs.network_hutchinson_norms("ReLU", digits, hidden=4, epochs=1, batch=32, first=3)
    np.testing.assert_allclose(live, full["hutchinson_running_norms"], rtol=1e-12)
    with pytest.raises(ValueError, match="activation"):
        lion_sophia_runs.network_hutchinson_norms("sigmoid", digits)


def test_tuned_training_losses_are_train_runs(digits):
    from optbook.tasks import lion_sophia_runs

    out = lion_sophia_runs.tuned_training_losses("AdamW", [1e-2], digits, epochs=2)
    h = tasks.train_run("AdamW", 1e-2, digits, epochs=2, batch_size=64, seed=0, dtype=torch.float64)
    assert out == [{"lr": 1e-2, "train_loss": list(map(float, h.train_loss)), "test_loss": float(h.test_loss[-1])}]
    with pytest.raises(ValueError, match="lrs"):
        lion_sophia_runs.tuned_training_losses("AdamW", [], digits)


def test_bundled_diabetes_equals_scikit_learns_loader_exactly():
    from sklearn.datasets import load_diabetes

    from optbook.tasks.datasets import _bundled_diabetes

    features, target = _bundled_diabetes()
    reference = load_diabetes()
    assert np.array_equal(features, reference.data) and np.array_equal(target, reference.target)


def test_adam_family_losses_are_the_reference_runs(digits):
    from optbook import reference

    out = tasks.adam_runs.adam_family_losses(digits, 4, 2e-3)
    assert list(out) == ["Adam", "AdaMax", "Nadam"]
    problem = tasks.softmax_regression_problem(digits)
    for name, step_fn in (("Adam", reference.adam_step), ("AdaMax", reference.adamax_step), ("Nadam", reference.nadam_step)):
        assert len(out[name]) == 5
        assert out[name][0] == pytest.approx(np.log(10), rel=1e-12)  # zero weights: a uniform guess over ten classes
        xs = run(step_fn, problem.x0, problem.grad, 4, lr=2e-3).xs
        assert out[name][-1] == pytest.approx(problem.loss(xs[-1]), rel=1e-14)
    with pytest.raises(ValueError, match="steps"):
        tasks.adam_runs.adam_family_losses(digits, 0, 2e-3)


def test_momentum_l2_against_decoupled_agree_without_momentum_memory(digits):
    from optbook.analysis.penalised import l2_penalised_minimiser

    out = tasks.adam_runs.momentum_l2_against_decoupled(digits, 0.05, 1, 0.05, 0.9)
    # one step from zero: the penalty term lambda * theta_0 is zero, so both rules take the same first step
    assert out["max |L2 - decoupled|"] == 0.0
    assert out["norms L2"] == out["norms decoupled"] and len(out["norms L2"]) == 2
    problem = tasks.softmax_regression_problem(digits)
    w_star = l2_penalised_minimiser(problem.loss, problem.grad, problem.x0, 0.05)
    x1 = problem.x0 - 0.05 * problem.grad(problem.x0)
    assert out["L2 to minimiser, penalty lambda"] == pytest.approx(np.linalg.norm(x1 - w_star), rel=1e-9)
    with pytest.raises(ValueError, match="steps"):
        tasks.adam_runs.momentum_l2_against_decoupled(digits, 0.05, 0, 0.05)


def test_path_shape_counts_by_hand():
    from optbook.problems import rosenbrock_problem
    from optbook.tasks import visualising_runs

    beale = beale_problem()  # minimum at (3, 0.5)
    xs = np.array([[0.0, 0.0], [4.0, 0.5], [2.0, 0.5], [3.005, 0.5]])
    row = visualising_runs.path_shape("Beale", beale, 0.1, "GD", xs, np.array([1.0, 0.0]))
    assert tuple(row) == visualising_runs.SHAPE_COLUMNS
    assert row["crossings of x = x*"] == 3 and row["first step within 0.01"] == 3
    assert row["overshoot along the valley"] == pytest.approx(1.0)
    assert np.isnan(row["crossings of y = x^2"])
    rosen = rosenbrock_problem()  # minimum at (1, 1); the valley floor is y = x^2
    xs = np.array([[0.0, 1.0], [0.5, 0.0], [0.9, 1.0], [2.0, 1.0]])
    row = visualising_runs.path_shape("Rosenbrock", rosen, 0.1, "GD", xs, np.array([1.0, 0.0]))
    assert row["crossings of y = x^2"] == 3 and row["first step within 0.01"] == -1  # signs of y - x^2: + - + -
    with pytest.raises(ValueError, match="shape"):
        visualising_runs.path_shape("Beale", beale, 0.1, "GD", np.zeros((3, 3)), np.array([1.0, 0.0]))


def test_path_shapes_measure_the_traced_paths():
    from optbook.tasks import visualising_runs

    pb = beale_problem()
    settings = {"Beale": (pb, 50, (1e-3, 5e-3), np.array([1.0, 0.0]))}
    rows = visualising_runs.path_shapes(settings, ("GD", "NAG"))
    assert [(r["lr"], r["optimizer"]) for r in rows] == [(1e-3, "GD"), (1e-3, "NAG"), (5e-3, "GD"), (5e-3, "NAG")]
    xs = analysis.trace_path("NAG", pb, 5e-3, 50)
    assert rows[-1] == visualising_runs.path_shape("Beale", pb, 5e-3, "NAG", xs, np.array([1.0, 0.0])) | {
        "crossings of y = x^2": rows[-1]["crossings of y = x^2"]}  # NaN != NaN


def test_combined_step_size_and_eps_hat_take_an_array_of_steps():
    from optbook.reference import combined_step_size, equivalent_eps_hat

    t = np.arange(1, 2001)
    np.testing.assert_array_equal(combined_step_size(1.0, 0.9, 0.999, t),
                                  [combined_step_size(1.0, 0.9, 0.999, int(k)) for k in t])
    np.testing.assert_array_equal(equivalent_eps_hat(1e-8, 0.999, t), [equivalent_eps_hat(1e-8, 0.999, int(k)) for k in t])
    # by hand at t = 1: sqrt(1 - b2) / (1 - b1)
    assert combined_step_size(2.0, 0.9, 0.999, np.array([1]))[0] == pytest.approx(2.0 * np.sqrt(0.001) / 0.1, rel=1e-14)
    for bad in ([1, 0], [1.5], []):
        with pytest.raises(ValueError, match="whole numbers >= 1"):
            combined_step_size(1.0, 0.9, 0.999, bad)
