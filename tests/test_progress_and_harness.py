"""The chapter helpers: deterministic progress bars, the training harness, problems."""

import io
import contextlib

import numpy as np
import pytest
import torch

from optbook import problems
from optbook.progress import prange
from optbook.train import minimize


def run_bar(n):
    bar, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(bar), contextlib.redirect_stdout(out):
        for _ in prange(n, "work"):
            pass
    # The bar goes to stderr only: the book's pages drop that stream (nb_output_stderr: remove).
    assert out.getvalue() == ""
    return bar.getvalue()


def test_the_book_leaves_stderr_and_so_progress_bars_off_its_pages():
    import pathlib

    import yaml

    config = yaml.safe_load((pathlib.Path(__file__).resolve().parents[1] / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_output_stderr"] == "remove"


def test_progress_bar_text_is_identical_across_runs_and_has_no_timings():
    first, second = run_bar(53), run_bar(53)
    assert first == second
    assert "53/53" in first and "it/s" not in first and "<" not in first


@pytest.mark.parametrize("make", [problems.rosenbrock_problem, problems.beale_problem, problems.saddle_problem])
def test_problem_gradients_match_finite_differences(make):
    p = make()
    x = p.x0 + 0.1
    h = 1e-6
    fd = np.array([(p.loss(x + h * e) - p.loss(x - h * e)) / (2 * h) for e in np.eye(2)])
    assert np.allclose(p.grad(x), fd, rtol=1e-5, atol=1e-5)


def test_known_minimisers_have_zero_gradient():
    for p in (problems.rosenbrock_problem(), problems.beale_problem(), problems.worked_example()):
        assert np.allclose(p.grad(p.minimizer), 0.0)
        assert p.loss(p.minimizer) == pytest.approx(0.0, abs=1e-15)


def test_minimize_records_every_iterate_of_plain_gradient_descent():
    p = problems.worked_example()
    trace = minimize(p, lambda params: torch.optim.SGD(params, lr=0.5), steps=3)
    assert trace.x.shape == (4, 3, 3)
    # x_k - C = (1 - lr)^k (x_0 - C) for this quadratic
    assert np.allclose(trace.x[3] - p.minimizer, 0.5**3 * (p.x0 - p.minimizer))
    with pytest.raises(ValueError, match="steps"):
        minimize(p, lambda params: torch.optim.SGD(params, lr=0.5), steps=-1)
