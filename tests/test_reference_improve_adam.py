"""RAdam, AdaMod, Lookahead/Ranger, gradient centralization, diffGrad and AdamW in the paper's form.

Expected values come from the upstream implementations (torch.optim, pytorch_optimizer 4.x), from
hand-computed special cases, or from limits in which a rule must reduce to another one.
"""

import math

import numpy as np
import pytest
import torch

import pytorch_optimizer as po
from optbook import reference as R
from optbook.tasks import improve_adam_runs as I


@pytest.fixture(scope="module")
def problem():
    return I.matrix_least_squares(3, shape=(5, 4), n=15)


# --- cross-checks against upstream, float64 ---------------------------------------------------


def test_every_reference_matches_its_upstream_to_1e_10():
    rows = I.cross_check_errors(steps=60, seed=1)
    assert len(rows) == 11
    for row in rows:
        assert row["max_abs_diff"] < 1e-10, row


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
@pytest.mark.parametrize("decoupled", [False, True])
def test_radam_matches_torch(problem, betas, decoupled):
    w0, grad, _ = problem
    ours = I.reference_path(R.radam_step, w0, grad, 50, lr=0.03, betas=betas, weight_decay=0.05, decoupled=decoupled)
    theirs = I.upstream_path(
        lambda p: torch.optim.RAdam(p, lr=0.03, betas=betas, weight_decay=0.05, decoupled_weight_decay=decoupled),
        w0, grad, 50)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_adamod_lookahead_diffgrad_ranger_match_pytorch_optimizer(problem):
    w0, grad, _ = problem
    pairs = [
        (R.adamod_step, dict(lr=0.02, betas=(0.8, 0.99, 0.9)), lambda p: po.AdaMod(p, lr=0.02, betas=(0.8, 0.99, 0.9))),
        (R.lookahead_step, dict(inner=R.radam_step, k=3, alpha=0.3, lr=0.02),
         lambda p: po.Lookahead(torch.optim.RAdam(p, lr=0.02), k=3, alpha=0.3)),
        (R.diffgrad_step, dict(lr=0.02, betas=(0.8, 0.99), eps_inside=1e-15),
         lambda p: po.DiffGrad(p, lr=0.02, betas=(0.8, 0.99))),
        (R.ranger_step, dict(lr=0.02, k=4, alpha=0.7, eps=1e-6),
         lambda p: po.Ranger(p, lr=0.02, k=4, alpha=0.7, eps=1e-6, degenerated_to_sgd=True)),
        (R.ranger_step, dict(lr=0.02, use_gc=False),
         lambda p: po.Ranger(p, lr=0.02, use_gc=False, degenerated_to_sgd=True)),
    ]
    for rule, hp, make in pairs:
        np.testing.assert_allclose(I.reference_path(rule, w0, grad, 40, **hp), I.upstream_path(make, w0, grad, 40),
                                   rtol=0, atol=1e-12, err_msg=str(rule))


def test_gradient_centralization_matches_pytorch_optimizer_on_a_4d_kernel():
    g = np.random.default_rng(0).standard_normal((3, 2, 4, 5))
    t = torch.tensor(g)
    po.centralize_gradient(t)
    np.testing.assert_allclose(R.centralize_gradient(g), t.numpy(), rtol=0, atol=1e-15)


def test_adamw_conversion_reproduces_torch_adamw_with_a_schedule(problem):
    w0, grad, _ = problem
    alpha, lam, steps = 0.02, 0.3, 30
    eta = lambda t: 0.5 ** (t // 10)  # noqa: E731  (step decay: 1, then 0.5, then 0.25)
    lr, wd = R.torch_adamw_hyperparameters(alpha, 1.0, lam)
    assert (lr, wd) == (alpha, lam / alpha)
    ours = I.reference_path(R.adamw_paper_step, w0, grad, steps, alpha=alpha, weight_decay=lam, schedule=eta)
    theirs = I.upstream_path(lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=wd), w0, grad, steps,
                             lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda i: eta(i + 1)))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


# --- properties and special cases ---------------------------------------------------------------


def test_sma_length_by_hand():
    # rho_1 = rho_inf - 2 beta/(1-beta) = 1 for every beta2
    for b2 in (0.9, 0.99, 0.999):
        assert math.isclose(R.sma_length(b2, 1), 1.0, rel_tol=1e-9)
    assert math.isclose(R.sma_length_limit(0.999), 1999.0, rel_tol=1e-12)
    # rho_2 = rho_inf - 4 b^2/(1-b^2) = (2/(1-b) - 1) - 4b^2/((1-b)(1+b)); at b = 0.5: 3 - 4/3
    assert math.isclose(R.sma_length(0.5, 2), 3.0 - 4.0 / 3.0, rel_tol=1e-12)
    assert math.isclose(R.sma_length(0.999, 10**6), 1999.0, rel_tol=1e-9)


def test_rectification_rises_to_one_and_is_undefined_at_four():
    rs = [R.rectification(0.999, t) for t in (6, 50, 500, 5000, 10**5)]
    assert all(a < b for a, b in zip(rs, rs[1:]))
    assert 0 < rs[0] < 0.1 and math.isclose(rs[-1], 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="undefined for rho_t <= 4"):
        R.rectification(0.999, 4)
    with pytest.raises(ValueError, match="rho_inf"):
        R.rectification(0.5, 100)


def test_rectification_is_the_square_root_of_a_linear_warmup_early_on():
    # derived: rho_t ~ t and r_t ~ sqrt(t (1-beta2)/2) for 4 << t << 2/(1-beta2)
    r = R.rectification(0.9999, 400)
    assert abs(r / math.sqrt(400 * 1e-4 / 2) - 1) < 0.02


def test_radam_below_threshold_options(problem):
    w0, grad, _ = problem
    g = grad(w0)
    x_sgd, st = R.radam_step(w0, g, lr=0.1)
    np.testing.assert_allclose(x_sgd, w0 - 0.1 * g, rtol=0, atol=1e-15)  # m_hat_1 = g_1
    x_skip, st2 = R.radam_step(w0, g, lr=0.1, weight_decay=0.5, decoupled=True, below_threshold="skip")
    np.testing.assert_array_equal(x_skip, w0)
    assert st2.t == 1 and np.any(st2.m != 0)
    # the paper's threshold 4 rectifies step 5 (rho_5 = 4.996 for beta2 = 0.999); torch's 5 does not
    state = None
    x = w0
    for _ in range(4):
        x, state = R.radam_step(x, grad(x), state, lr=0.01)
    a, _ = R.radam_step(x, grad(x), state, lr=0.01, rho_threshold=4.0)
    b, _ = R.radam_step(x, grad(x), state, lr=0.01)
    assert np.max(np.abs(a - b)) > 1e-6


def test_centralized_gradient_has_zero_row_means_and_is_a_projection():
    g = np.random.default_rng(1).standard_normal((4, 6))
    c = R.centralize_gradient(g)
    np.testing.assert_allclose(c.mean(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(R.centralize_gradient(c), c, atol=1e-15)
    assert np.linalg.norm(c) <= np.linalg.norm(g)
    b = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(R.centralize_gradient(b), b)


def test_friction_coefficient_range():
    xi = R.friction_coefficient(np.array([0.0, 1.0, -5.0]), np.array([0.0, 1.0, 5.0]))
    assert xi[0] == 0.5 and xi[1] == 0.5
    assert math.isclose(xi[2], 1 / (1 + math.exp(-10.0)), rel_tol=1e-14)


def test_adamod_with_beta3_zero_is_adam_in_combined_form(problem):
    w0, grad, _ = problem
    a = I.reference_path(R.adamod_step, w0, grad, 20, lr=0.01, betas=(0.9, 0.999, 0.0), eps=1e-8)
    b = I.reference_path(R.adam_combined_step, w0, grad, 20, lr=0.01, eps_hat=1e-8)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def test_adamod_first_step_is_shrunk_by_one_minus_beta3(problem):
    w0, grad, _ = problem
    g = grad(w0)
    adam, _ = R.adam_combined_step(w0, g, lr=0.01, eps_hat=1e-8)
    mod, _ = R.adamod_step(w0, g, lr=0.01, betas=(0.9, 0.999, 0.99), eps=1e-8)
    np.testing.assert_allclose(w0 - mod, 0.01 * (w0 - adam), rtol=1e-10)


def test_lookahead_limits(problem):
    w0, grad, _ = problem
    inner = I.reference_path(R.adam_step, w0, grad, 12, lr=0.05)
    full = I.reference_path(R.lookahead_step, w0, grad, 12, inner=R.adam_step, k=3, alpha=1.0, lr=0.05)
    np.testing.assert_allclose(full, inner, rtol=0, atol=1e-14)
    frozen = I.reference_path(R.lookahead_step, w0, grad, 12, inner=R.adam_step, k=3, alpha=0.0, lr=0.05)
    np.testing.assert_allclose(frozen[3::3], np.broadcast_to(w0, frozen[3::3].shape), atol=0)
    np.testing.assert_allclose(R.slow_weights_update(np.zeros(2), np.array([2.0, -4.0]), 0.25), [0.5, -1.0])


def test_adamw_paper_form_without_decay_is_adam(problem):
    w0, grad, _ = problem
    a = I.reference_path(R.adamw_paper_step, w0, grad, 15, alpha=0.01, schedule=1.0)
    b = I.reference_path(R.adam_step, w0, grad, 15, lr=0.01)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_pytorch_optimizer_ranger_default_climbs_before_the_threshold():
    d = I.upstream_difference(lambda p: po.Ranger(p, lr=0.05, degenerated_to_sgd=True), lambda p: po.Ranger(p, lr=0.05))
    assert d["first_step_apart"] == 1
    assert all(b > a for a, b in zip(d["loss_b"][:5], d["loss_b"][1:6]))  # the loss rises for 5 steps


def test_fit_and_curve_of_the_warmup_relation():
    c = I.rectification_curve(0.99, 400)
    assert c["r"][4] == 0.0 and c["r"][5] > 0  # torch's threshold: first adaptive step t = 6
    tau = I.fit_linear_warmup(c["r"], c["t"], np.arange(100, 400, 5))
    assert 150 <= tau <= 200


def test_seed_statistics_reduces_each_run_then_summarizes_over_seeds():
    runs = [{"x": [3.0, 1.0]}, {"x": [5.0, 3.0]}, {"x": [7.0, 8.0]}]
    assert I.seed_values(runs, "x") == [1.0, 3.0, 8.0]
    assert I.seed_values(runs, "x", "max") == [3.0, 5.0, 8.0]
    # second half of [0, 9, 3, 1, 4]: [3, 1, 4], changes 2 and 3, mean 2.5
    assert I.seed_values([{"x": [0.0, 9.0, 3.0, 1.0, 4.0]}], "x", "fluctuation") == [2.5]
    s = I.seed_statistics(runs, "x")
    assert (s.mean, s.std, s.n) == (4.0, pytest.approx(math.sqrt(13)), 3)  # (9 + 1 + 16) / 2 = 13 by hand
    assert I.seed_statistics(runs, "x", "max").mean == pytest.approx(16 / 3)
    with pytest.raises(ValueError, match="at least 3"):  # two seeds give no comparison in the book
        I.seed_statistics(runs[:2], "x")


def test_claims_table_applies_the_rule_of_the_seeds_module():
    def record(loss):
        return {f: [loss] * 4 for f in ("test_loss", "train_loss", "max_update", "max_step_size")}

    block = {m: [record(1.0), record(1.1), record(1.2)] for m in I.IMPROVED_METHODS}  # mean 1.1, std 0.1
    block["Adam + warm-up"] = [record(0.5), record(0.6), record(0.7)]  # 0.5 below Adam > 0.1 + 0.1: supported
    block["RAdam"] = [record(1.15), record(1.25), record(1.35)]  # 0.15 above Adam, not above 0.2: within the spread
    rows = {r["method"] + " / " + r["measurement"]: r for r in I.claims_table({repr(1e-2): block, repr(1e-3): block})}
    assert rows["Adam + warm-up / final test loss, lr 0.01"]["verdict"] == "supported"
    assert rows["RAdam / final test loss, lr 0.01"]["verdict"] == "not shown at this scale"
    assert rows["AdaMod / final test loss, lr 0.01"]["verdict"] == "not shown at this scale"
    # RAdam against warm-up: 0.65 apart with spreads 0.1 + 0.1: a claim of equality is refuted
    assert rows["RAdam / final test loss, lr 0.01 (equal within spread)"]["verdict"] == "not supported"


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_message():
    x, g = np.ones((2, 2)), np.ones((2, 2))
    with pytest.raises(ValueError, match="below_threshold"):
        R.radam_step(x, g, below_threshold="adam")
    with pytest.raises(ValueError, match="rho_threshold"):
        R.radam_step(x, g, rho_threshold=3)
    with pytest.raises(TypeError, match="decoupled"):
        R.radam_step(x, g, decoupled="yes")
    with pytest.raises(ValueError, match="beta2 must be > 0"):
        R.sma_length_limit(0.0)
    with pytest.raises(ValueError, match="triple"):
        R.adamod_step(x, g, betas=(0.9, 0.999))
    with pytest.raises(ValueError, match="alpha must lie"):
        R.lookahead_step(x, g, inner=R.adam_step, alpha=1.5)
    with pytest.raises(ValueError, match="k must be"):
        R.lookahead_step(x, g, inner=R.adam_step, k=0)
    with pytest.raises(TypeError, match="inner must be"):
        R.lookahead_step(x, g, inner=None)
    with pytest.raises(TypeError, match="inner must be"):
        R.gc_step(x, g, inner=3)
    with pytest.raises(ValueError, match="eps_inside"):
        R.diffgrad_step(x, g, eps_inside=-1.0)
    with pytest.raises(ValueError, match="shape"):
        R.friction_coefficient(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        R.torch_adamw_hyperparameters(0.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="eta_t"):
        R.adamw_paper_update(x, g, 0.1, -1.0, 0.0)
    with pytest.raises(TypeError, match="use_gc"):
        R.ranger_step(x, g, use_gc=1)
    with pytest.raises(ValueError, match="unknown method"):
        I.make_improved_optimizer("Adamm", [torch.zeros(2, requires_grad=True)], 1e-3)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        I.GradientCentralized("adam")
    with pytest.raises(ValueError, match="reduce"):
        I.seed_statistics([{"x": [1.0]}], "x", "median")
    with pytest.raises(ValueError, match="steps"):
        I.cross_check_errors(steps=3)


@pytest.mark.parametrize("beta2,t", [(0.9, 3), (0.99, 40), (0.999, 700)])
def test_sma_length_is_one_plus_twice_the_mean_age_of_the_average(beta2, t):
    # an independent computation: the weights of the bias-corrected EMA, summed numerically
    ages = np.arange(t)[::-1]  # age t - i of g_i, i = 1..t
    w = (1 - beta2) * beta2 ** ages / (1 - beta2**t)
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    assert math.isclose(R.sma_length(beta2, t), 1 + 2 * float(np.sum(w * ages)), rel_tol=1e-9)


def test_claims_table_decides_by_the_seed_spread():
    def runs(loss, spread):
        # four epochs: the "fluctuation" statistic looks at the changes over the second half
        return [{"train_loss": [2.0, 1.5, loss + s, loss + s], "test_loss": [2.0, 1.5, loss + s, loss + s],
                 "max_update": [1.0 + s] * 4, "max_step_size": [7.0 + s] * 4} for s in (-spread, 0.0, spread)]

    block = {m: runs(1.0, 0.01) for m in I.IMPROVED_METHODS}
    block["RAdam"] = runs(0.5, 0.01)  # far better than Adam, far from Adam + warm-up
    rows = I.claims_table({repr(1e-3): block, repr(1e-2): block})
    by_claim = {(r["claim"], r["measurement"]): r["verdict"] for r in rows}
    assert by_claim[("RAdam removes the need for warm-up", "final test loss, lr 0.01")] == "supported"
    assert by_claim[("plain Adam needs warm-up at a large rate", "final test loss, lr 0.01")] == "not shown at this scale"
    assert by_claim[("Ranger improves on RAdam", "final test loss, lr 0.01")] == "not supported"
    equal = [r["verdict"] for r in rows if r["claim"] == "RAdam behaves like Adam with warm-up"]
    assert equal == ["not supported", "not supported"]
