"""The library behind Part I, chapters 5 to 8: AdaMax, Nadam, Newton, curvature, paths, batch-size rules, torch runs.

Every formula is checked against an independent computation: torch.optim
(Adamax, NAdam, SGD), torch autograd (Hessian-vector products, Hessian
diagonals, Jacobians), closed forms, or the library's own rules in a limit
where they must agree.
"""

import inspect
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from optbook.viz import animate  # noqa: E402
from optbook import analysis, problems, reference, tasks  # noqa: E402
from optbook.reference import adam_step, momentum_step, run, sgdw_step  # noqa: E402
from optbook.reference.gd import l2_regularized_gradient  # noqa: E402
from optbook.tasks import Dataset, softmax_cross_entropy, softmax_cross_entropy_grad  # noqa: E402


def quadratic(seed=0, n=5):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + 0.2 * np.eye(n)
    b = rng.standard_normal(n)
    return a, b, (lambda x: a @ x - b)


def torch_path(make, grad, x0, steps):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = make([x])
    out = [x0.copy()]
    for _ in range(steps):
        x.grad = torch.as_tensor(grad(x.detach().numpy()), dtype=torch.float64).clone()
        opt.step()
        out.append(x.detach().numpy().copy())
    return np.stack(out)


# --- notation ------------------------------------------------------------------------------


# (test_notation.py checks that every public formula function of these modules has a symbol.)


# --- Adam's relatives ------------------------------------------------------------------------


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
def test_adamax_matches_torch(betas):
    a, b, grad = quadratic(1)
    x0 = np.random.default_rng(2).standard_normal(5)
    ours = run(reference.adamax_step, x0, grad, 40, lr=0.05, betas=betas, eps=1e-8).xs
    theirs = torch_path(lambda p: torch.optim.Adamax(p, lr=0.05, betas=betas, eps=1e-8), grad, x0, 40)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_adamax_norm_is_a_decayed_running_maximum():
    u = reference.infinity_norm_moment(np.array([4.0, 0.1]), np.array([-1.0, 3.0]), 0.5, 0.0)
    np.testing.assert_allclose(u, [2.0, 3.0])


@pytest.mark.parametrize("momentum_decay", [4e-3, 0.5])
def test_nadam_matches_torch(momentum_decay):
    a, b, grad = quadratic(3)
    x0 = np.random.default_rng(4).standard_normal(5)
    ours = run(reference.nadam_step, x0, grad, 40, lr=0.02, momentum_decay=momentum_decay).xs
    # torch keeps the running product of mu_t in its default dtype: make that float64 for the comparison
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        theirs = torch_path(
            lambda p: torch.optim.NAdam(p, lr=0.02, momentum_decay=momentum_decay), grad, x0, 40
        )
    finally:
        torch.set_default_dtype(old)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_nadam_momentum_schedule_warms_up_to_beta1():
    mus = [reference.nadam_momentum(0.9, t) for t in (1, 10, 100, 10_000)]
    assert 0.45 < mus[0] < mus[1] < mus[2] < mus[3] < 0.9
    assert math.isclose(reference.nadam_momentum(0.9, 10**6), 0.9, rel_tol=1e-9)


def test_lecture_adam_equals_adam_without_eps_and_differs_with_it():
    a, b, grad = quadratic(5)
    x0 = np.ones(5)
    no_eps = run(reference.lecture_adam_step, x0, grad, 30, lr=0.05, eps=0.0).xs
    adam = run(adam_step, x0, grad, 30, lr=0.05, eps=0.0).xs
    np.testing.assert_allclose(no_eps, adam, rtol=1e-12, atol=1e-14)
    inside = run(reference.lecture_adam_step, x0, grad, 30, lr=0.05, eps=1e-2).xs
    outside = run(adam_step, x0, grad, 30, lr=0.05, eps=1e-2).xs
    assert np.abs(inside - outside).max() > 1e-4


def test_momentum_decoupled_limits_and_difference_from_l2():
    a, b, grad = quadratic(6)
    x0 = np.ones(5)
    plain = run(momentum_step, x0, grad, 25, lr=0.05, momentum=0.9).xs
    no_decay = run(reference.momentum_decoupled_step, x0, grad, 25, lr=0.05, momentum=0.9, weight_decay=0.0).xs
    np.testing.assert_allclose(no_decay, plain, rtol=0, atol=1e-15)
    no_momentum = run(reference.momentum_decoupled_step, x0, grad, 25, lr=0.05, momentum=0.0, weight_decay=0.3).xs
    sgdw = run(sgdw_step, x0, grad, 25, lr=0.05, weight_decay=0.3).xs
    np.testing.assert_allclose(no_momentum, sgdw, rtol=0, atol=1e-14)
    l2 = run(momentum_step, x0, lambda x: l2_regularized_gradient(grad(x), x, 0.3), 25, lr=0.05, momentum=0.9).xs
    decoupled = run(reference.momentum_decoupled_step, x0, grad, 25, lr=0.05, momentum=0.9, weight_decay=0.3).xs
    assert np.abs(l2 - decoupled).max() > 1e-3


def test_l2_momentum_matches_torch_sgd_weight_decay():
    a, b, grad = quadratic(7)
    x0 = np.ones(5)
    lr = 0.05
    l2 = run(momentum_step, x0, lambda x: l2_regularized_gradient(grad(x), x, 0.3), 25, lr=lr, momentum=0.9).xs
    theirs = torch_path(lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=0.3), grad, x0, 25)
    np.testing.assert_allclose(l2, theirs, rtol=0, atol=1e-12)


# --- Newton and exact curvature ----------------------------------------------------------------


def test_newton_solves_a_quadratic_in_one_step_in_both_forms():
    a, b, grad = quadratic(8)
    x1, state = reference.newton_step(np.zeros(5), grad(np.zeros(5)), hessian_fn=lambda x: a)
    np.testing.assert_allclose(a @ x1, b, atol=1e-12)
    assert state.t == 1
    d = np.array([2.0, 5.0])
    g = np.array([1.0, -1.0])
    np.testing.assert_allclose(reference.newton_direction(d, g), reference.newton_direction(np.diag(d), g))


def small_softmax(n=40, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.integers(0, k, n)
    w = rng.standard_normal((d + 1, k)) * 0.5
    return x, y, w


def torch_softmax_loss(x, y, l2):
    xt, yt = torch.tensor(x), torch.tensor(y)

    def f(w):
        logits = xt @ w[:-1] + w[-1]
        return torch.nn.functional.cross_entropy(logits, yt) + 0.5 * l2 * (w[:-1] ** 2).sum()

    return f


@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_softmax_hvp_and_diagonal_match_autograd(l2):
    x, y, w = small_softmax()
    f = torch_softmax_loss(x, y, l2)
    H = torch.autograd.functional.hessian(f, torch.tensor(w)).reshape(w.size, w.size).numpy()
    v = np.random.default_rng(1).standard_normal(w.shape)
    np.testing.assert_allclose(tasks.softmax_hvp(w, x, v, l2).ravel(), H @ v.ravel(), atol=1e-12)
    np.testing.assert_allclose(tasks.softmax_hessian_diagonal(w, x, l2).ravel(), np.diag(H), atol=1e-12)
    # the loss itself is the library's, so the Hessian belongs to the function the chapters optimise
    assert math.isclose(float(f(torch.tensor(w))), softmax_cross_entropy(w, x, y, l2), rel_tol=1e-12)


def test_gauss_newton_diagonal_is_the_hessian_for_a_linear_model():
    x, y, w = small_softmax(n=30)
    xt = torch.tensor(x)

    def logits(flat):
        ww = flat.reshape(w.shape)
        return xt @ ww[:-1] + ww[-1]

    J = torch.autograd.functional.jacobian(logits, torch.tensor(w.ravel())).numpy()  # (B, C, P)
    p = torch.softmax(logits(torch.tensor(w.ravel())), dim=1).numpy()
    np.testing.assert_allclose(tasks.gauss_newton_diagonal(J, p), tasks.softmax_hessian_diagonal(w, x).ravel(), atol=1e-12)
    with pytest.raises(ValueError):
        tasks.gauss_newton_diagonal(J, p[:, :2])


def test_gnb_from_the_library_averages_to_the_exact_diagonal():
    from optbook.reference import gnb_diagonal

    x, y, w = small_softmax(n=20, seed=3)
    rng = np.random.default_rng(0)
    logits = x @ w[:-1] + w[-1]
    est = np.mean(
        [gnb_diagonal(lambda yy: softmax_cross_entropy_grad(w, x, yy), logits, rng) for _ in range(20000)], axis=0
    )
    assert analysis.relative_error(est, tasks.softmax_hessian_diagonal(w, x)) < 0.03


def test_relative_error():
    assert analysis.relative_error(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == 1.0


# --- the sharp/flat toy ------------------------------------------------------------------------


def test_sharp_flat_gradient_and_hessian_match_autograd():
    for point in ([-0.7, 1.0], [0.2, 5.0], [1.3, -2.0]):
        t = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        loss = 8 * (t[0] - 1) ** 2 * (1.3 * t[0] ** 2 + 2 * t[0] + 1) + 0.5 * (t[1] - 4) ** 2
        assert math.isclose(float(loss.detach()), float(problems.sharp_flat_loss(np.array(point))), rel_tol=1e-12)
        (g,) = torch.autograd.grad(loss, t, create_graph=True)
        np.testing.assert_allclose(problems.sharp_flat_grad(np.array(point)), g.detach().numpy(), atol=1e-12)
        H = np.stack([torch.autograd.grad(g[i], t, retain_graph=True)[0].numpy() for i in range(2)])
        np.testing.assert_allclose(problems.sharp_flat_hessian_diagonal(np.array(point)), np.diag(H), atol=1e-10)
        assert abs(H[0, 1]) < 1e-12


def test_sharp_flat_stationary_points():
    np.testing.assert_allclose(problems.sharp_flat_grad(problems.SHARP_FLAT_MINIMIZER), 0.0, atol=1e-12)
    np.testing.assert_allclose(problems.sharp_flat_grad(problems.SHARP_FLAT_SADDLE), 0.0, atol=1e-12)
    assert problems.sharp_flat_loss(problems.SHARP_FLAT_MINIMIZER) == 0.0
    h_min = problems.sharp_flat_hessian_diagonal(problems.SHARP_FLAT_MINIMIZER)
    h_saddle = problems.sharp_flat_hessian_diagonal(problems.SHARP_FLAT_SADDLE)
    np.testing.assert_allclose(h_min, [68.8, 1.0])
    assert h_saddle[0] < 0 < h_saddle[1]
    grid = np.stack(np.meshgrid(np.linspace(-2, 3, 101), np.linspace(-1, 9, 101)), axis=-1)
    assert problems.sharp_flat_loss(grid).min() >= 0.0
    problem = problems.sharp_flat_problem()
    np.testing.assert_allclose(problem.minimizer, [1.0, 4.0])


# --- measuring paths and learning rates ----------------------------------------------------------


def test_overshoot_heading_and_exit():
    path = np.array([[0.0, 0.0], [0.5, 0.0], [1.3, 0.1], [0.9, 0.0], [1.0, 0.0]])
    assert math.isclose(analysis.overshoot(path, np.array([1.0, 0.0])), 0.3)
    assert analysis.overshoot(path[:2], np.array([1.0, 0.0])) == 0.0
    assert math.isclose(analysis.heading_error(path, np.array([1.0, 0.0]), 1), 0.0, abs_tol=1e-9)
    assert math.isclose(analysis.heading_error(np.array([[0, 0], [0, 1.0]]), np.array([1.0, 0.0]), 1), 90.0)
    assert analysis.first_exit(path, 0.05) == 2
    assert analysis.first_exit(path, 5.0) is None


def test_scaling_rules():
    assert analysis.linear_scaling_lr(0.1, 32, 256) == pytest.approx(0.8)
    assert analysis.sqrt_scaling_lr(0.1, 32, 128) == pytest.approx(0.2)
    np.testing.assert_allclose(analysis.linear_scaling_lr(1.0, 2, np.array([2, 4])), [1.0, 2.0])


def test_log_parabola_argmin():
    lrs = np.geomspace(1e-3, 1.0, 7)
    losses = (np.log(lrs) - np.log(0.02)) ** 2
    assert analysis.log_parabola_argmin(lrs, losses) == pytest.approx(0.02, rel=1e-9)
    assert analysis.log_parabola_argmin(lrs, np.arange(7.0)) == pytest.approx(1e-3)  # best at the edge
    bad = losses.copy()
    bad[-3:] = np.inf  # diverged runs
    assert np.isfinite(analysis.log_parabola_argmin(lrs, bad))
    assert analysis.log_parabola_argmin(lrs[::-1], losses[::-1]) == pytest.approx(0.02, rel=1e-9)


# --- torch experiments ------------------------------------------------------------------------------


def test_make_optimizer_state_is_what_the_book_says_it_is():
    from optbook.analysis.memory import adafactor_state_numbers, optimizer_state_numbers

    lin = torch.nn.Linear(100, 50)
    numbers = {}
    for name in tasks.OPTIMIZER_NAMES:
        opt = tasks.make_optimizer(name, lin.parameters(), 1e-3)
        lin.zero_grad()
        lin(torch.randn(8, 100)).pow(2).mean().backward()
        if name == "Sophia":
            opt.update_hessian([torch.ones_like(p) for p in lin.parameters()])
        opt.step()
        numbers[name] = optimizer_state_numbers(opt)
    n = 100 * 50 + 50
    expected = {"SGD": 0, "momentum": n, "Nesterov": n, "Adagrad": n, "RMSProp": n, "AdaDelta": 2 * n,
                "Adam": 2 * n, "AdamW": 2 * n, "Lion": n, "Sophia": 2 * n,
                "Adafactor": adafactor_state_numbers((50, 100)) + adafactor_state_numbers((50,))}
    assert numbers == expected


def test_make_optimizer_builds_every_name_and_rejects_others():
    for name in tasks.OPTIMIZER_NAMES:
        p = torch.nn.Parameter(torch.ones(3))
        opt = tasks.make_optimizer(name, [p], 1e-2)
        p.grad = torch.ones(3)
        if name == "Sophia":
            opt.update_hessian([torch.ones(3)])
        opt.step()
        assert torch.all(p < 1.0), name
    with pytest.raises(ValueError, match="unknown optimizer"):
        tasks.make_optimizer("Adamax", [torch.nn.Parameter(torch.ones(1))], 1e-3)


def tiny_data(classification=True):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5))
    if classification:
        y = (x[:, 0] > 0).astype(int)
        return Dataset("tiny", x[:48], y[:48], x[48:], y[48:], n_classes=2)
    y = x @ np.arange(5.0)
    return Dataset("tiny-reg", x[:48], y[:48], x[48:], y[48:])


@pytest.mark.parametrize("classification", [True, False])
def test_train_run_trains_with_sophia_estimates(classification):
    data = tiny_data(classification)
    hist = tasks.train_run("Sophia", 1e-2, data, hidden=8, epochs=3, batch_size=16)
    assert len(hist.train_loss) == 3 and hist.train_loss[-1] < hist.train_loss[0] * 1.5
    again = tasks.train_run("Sophia", 1e-2, data, hidden=8, epochs=3, batch_size=16)
    assert again.train_loss == hist.train_loss  # seeded: identical


@pytest.mark.parametrize("name", ["Adam", "Sophia"])
def test_train_run_in_float64_starts_from_the_float32_weights(name):
    data = tiny_data(True)
    h32 = tasks.train_run(name, 1e-2, data, hidden=8, epochs=2, batch_size=16)
    h64 = tasks.train_run(name, 1e-2, data, hidden=8, epochs=2, batch_size=16, dtype=torch.float64)
    again = tasks.train_run(name, 1e-2, data, hidden=8, epochs=2, batch_size=16, dtype=torch.float64)
    assert h64.train_loss == again.train_loss  # seeded: identical
    assert h64.train_loss != h32.train_loss and np.allclose(h64.train_loss, h32.train_loss, rtol=1e-3)


def test_train_run_reports_divergence_as_inf():
    hist = tasks.train_run("SGD", 1e8, tiny_data(False), hidden=8, epochs=3, batch_size=16)
    assert hist.train_loss == [math.inf]


# --- animation -------------------------------------------------------------------------------------


def test_animate_paths_is_offline_deterministic_and_closes_its_figure():
    f = lambda xy: (xy[..., 0] ** 2 + 3 * xy[..., 1] ** 2) + 0.1  # noqa: E731
    paths = {"a": np.linspace([1.0, 1.0], [0.0, 0.0], 11), "b": np.linspace([-1.0, 1.0], [0.0, 0.0], 6)}
    before = plt.get_fignums()
    html1 = animate.animate_paths(f, paths, xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), anim_id="anim_t", frames=4, dpi=30).data
    html2 = animate.animate_paths(f, paths, xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), anim_id="anim_t", frames=4, dpi=30).data
    assert plt.get_fignums() == before
    assert html1 == html2
    assert "https://" not in html1 and "font-awesome" not in html1 and 'class="fa ' not in html1
    assert html1.count("data:image/png") == 4
    assert 'id="_anim_imganim_t"' in html1 and "anim_t = new Animation" in html1.replace("animanim_t", "anim_t")
    with pytest.raises(ValueError):
        animate.animate_paths(f, {"bad": np.zeros((3, 3))}, xlim=(0, 1), ylim=(0, 1), anim_id="x")


def test_offline_jshtml_checks_its_input():
    with pytest.raises(ValueError, match="anim_id"):
        animate.offline_jshtml("<img id=\"_anim_img" + "0" * 32 + "\">", "not valid!")
    with pytest.raises(ValueError, match="to_jshtml"):
        animate.offline_jshtml("<p>nothing</p>", "ok")


def test_logits_function_reproduces_the_model_and_its_gauss_newton_diagonal():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    theta0, f = tasks.logits_function(model, x)
    assert theta0.numel() == sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(f(theta0), model(x))
    # GN diagonal from the Jacobian equals the expectation of GNB, computed by enumerating every label
    from optbook.optim.sophia import gauss_newton_bartlett

    J = torch.autograd.functional.jacobian(f, theta0).numpy()
    p = torch.softmax(f(theta0), dim=1).detach().numpy()
    params = list(model.parameters())
    expected = np.zeros(theta0.numel())
    for b in range(7):
        for c in range(3):
            est = gauss_newton_bartlett(model(x[b : b + 1]), params, labels=torch.tensor([c]))
            expected += p[b, c] * torch.cat([e.reshape(-1) for e in est]).numpy() / 7
    np.testing.assert_allclose(tasks.gauss_newton_diagonal(J, p), expected, atol=1e-12)


def test_momentum_oscillation_threshold_matches_the_characteristic_roots_and_a_run():
    lam, gamma = 2.0, 0.9
    eta_c = analysis.momentum_oscillation_lr(lam, gamma)
    for eta, complex_expected in ((0.9 * eta_c, False), (1.1 * eta_c, True)):
        roots = np.roots([1.0, -(1 + gamma - eta * lam), gamma])
        assert (abs(roots[0].imag) > 1e-12) == complex_expected
        xs = run(momentum_step, np.array([1.0]), lambda x: lam * x, 400, lr=eta, momentum=gamma).xs[:, 0]
        assert (xs.min() < -1e-6) == complex_expected  # crossing zero = overshooting the minimum
    np.testing.assert_allclose(analysis.momentum_oscillation_lr(np.array([1.0, 4.0]), 0.81), [0.01, 0.0025])


def test_trace_path_runs_every_rule_downhill_and_best_path_picks_the_lowest_loss():
    a = np.diag([1.0, 10.0])
    problem = problems.Problem("quadratic", lambda x: 0.5 * x @ a @ x, lambda x: a @ x, np.array([1.0, 1.0]), np.zeros(2))
    for name in analysis.PATH_RULES:
        lr = {"AdaDelta": 1e-4, "Adafactor": 0.05}.get(name, 0.02)
        xs = analysis.trace_path(name, problem, lr, 100)
        assert xs.shape == (101, 2), name
        assert problem.loss(xs[-1]) < problem.loss(xs[0]), name
    lr, xs = analysis.best_path("GD", problem, [1e-3, 0.1, 0.3], 50)
    assert lr == 0.1 and xs.shape == (51, 2)
    lr, _ = analysis.best_path("GD", problem, [0.1, 10.0], 50)  # 10.0 diverges
    assert lr == 0.1
    with pytest.raises(ValueError, match="unknown rule"):
        analysis.trace_path("Adamax", problem, 0.1, 3)
    # the dispatcher runs the same rule as calling the reference directly
    np.testing.assert_allclose(analysis.trace_path("Adam", problem, 0.02, 5), run(adam_step, problem.x0, problem.grad, 5, lr=0.02).xs)


def test_draw_paths_draws_grey_contours_every_path_and_the_minimum():
    fig, ax = plt.subplots()
    f = lambda xy: xy[..., 0] ** 2 + xy[..., 1] ** 2 + 1.0  # noqa: E731
    paths = {"a": np.linspace([1.0, 1.0], [0.0, 0.0], 5), "b": np.linspace([-1.0, 1.0], [0.0, 0.0], 3)}
    animate.draw_paths(ax, f, paths, xlim=(-2, 2), ylim=(-2, 2), minimizer=np.zeros(2), levels=8)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["a", "b", "minimum"]
    assert ax.get_xlim() == (-2.0, 2.0)
    plt.close(fig)
