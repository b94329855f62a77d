"""Sophia and its Hessian-diagonal estimators in NumPy, against sophia_opt.SophiaG and torch autograd.

Conventions of the installed ``sophia_opt`` 0.2.2 (the official SophiaG code),
read from its source and asserted below:

* ``update_hessian()`` averages ``p.grad * p.grad`` (the user back-propagates
  the loss on sampled labels first) and ``step(bs=...)`` divides by
  ``rho * bs * h``. So its h lacks the paper's factor B, and its ``rho``
  is the paper's gamma exactly when ``bs`` = B, the number of rows the
  sampled loss averaged over. Otherwise it is the reference with rho * bs / B.
* It divides by ``rho * bs * h + 1e-15`` rather than ``max(rho * h, eps)``,
  and clamps the ratio only from above. For h >= 0 (which its
  Gauss-Newton-Bartlett estimates always are) this is the paper's rule up
  to a relative 1e-15 / (rho h); where rho h is near 1e-15 it halves the
  step; and for a negative h (possible with a Hutchinson estimate) it moves
  the parameter *along* the momentum, uphill.
* Weight decay is decoupled and multiplied by lr, as in the paper.

``optax.contrib.sophia`` (0.2.8) differs from the paper in two ways, asserted
as an exact composition of the reference's formula functions: it divides the
bias-corrected m_hat_t = m_t / (1 - beta1^t) instead of m_t, and it uses the
Hessian average *before* this step's refresh (the new estimate enters one
step late).
"""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sophia_opt import SophiaG

from optbook.reference import (
    SophiaState,
    bias_correction,
    decoupled_weight_decay,
    ema,
    hessian_ema,
    clip,
    finite_difference_hvp,
    gnb_diagonal,
    gnb_estimate,
    hessian_update_due,
    hutchinson_diagonal,
    hutchinson_variance,
    run,
    sample_labels,
    softmax,
    sophia_step,
    sophia_update,
)


def symmetric(seed: int, n: int = 5) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal((n, n))
    return (q + q.T) / 2


# --- Hutchinson -------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(distribution):
    """The mean of N samples is within 4.5 standard errors of diag(H); the standard error is
    the samples' own spread / sqrt(N), not the formula under test."""
    H = symmetric(0)
    rng = np.random.default_rng(1)
    x = np.zeros(5)
    draws = np.array([hutchinson_diagonal(lambda x, u: H @ u, x, rng, distribution=distribution) for _ in range(3000)])
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - np.diag(H)) <= 4.5 * se)
    # the variance formula agrees with the observed spread (relative SE of a variance ~ 3% here)
    np.testing.assert_allclose(draws.var(axis=0, ddof=1), hutchinson_variance(H, distribution), rtol=0.15)
    # averaging inside the estimator is the same as averaging outside
    many = hutchinson_diagonal(lambda x, u: H @ u, x, np.random.default_rng(1), distribution=distribution, samples=50)
    np.testing.assert_allclose(many, draws[:50].mean(axis=0), rtol=1e-12)


def test_rademacher_hutchinson_is_exact_for_a_diagonal_hessian():
    d = np.array([3.0, -1.0, 0.5, 7.0])
    est = hutchinson_diagonal(lambda x, u: d * u, np.zeros(4), np.random.default_rng(2))
    np.testing.assert_array_equal(est, d)
    np.testing.assert_array_equal(hutchinson_variance(np.diag(d), "rademacher"), np.zeros(4))


def test_finite_difference_hvp():
    """Exact (to rounding) on a quadratic; O(delta^2) on Rosenbrock, whose Hessian is written out here."""
    H = symmetric(3, 4)
    u = np.random.default_rng(4).standard_normal(4)
    np.testing.assert_allclose(finite_difference_hvp(lambda x: H @ x)(np.ones(4), u), H @ u, rtol=1e-9, atol=1e-9)

    def grad(p):
        x, y = p
        return np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])

    p, v = np.array([-1.2, 1.0]), np.array([0.3, -0.7])
    x, y = p
    hessian = np.array([[2 - 400 * (y - x**2) + 800 * x**2, -400 * x], [-400 * x, 200.0]])
    np.testing.assert_allclose(finite_difference_hvp(grad)(p, v), hessian @ v, rtol=1e-7)
    # Hutchinson on top of it, on a Sophia path: the estimator is only called on Hessian steps
    rng = np.random.default_rng(5)
    calls = []

    def h_hat(q):
        calls.append(q)
        return hutchinson_diagonal(finite_difference_hvp(grad), q, rng)

    path = run(sophia_step, p, grad, 20, loss_fn=lambda q: (1 - q[0]) ** 2 + 100 * (q[1] - q[0] ** 2) ** 2,
               lr=0.05, rho=0.5, weight_decay=0.0, h_hat=h_hat)
    assert len(calls) == 2  # steps 1 and 11 with k = 10
    np.testing.assert_array_equal(calls[1], path.xs[10])  # estimated at theta_t, before the step
    assert path.losses[-1] < path.losses[0]


# --- Gauss-Newton-Bartlett --------------------------------------------------------------


def softmax_regression(seed: int, B: int = 3, C: int = 3, D: int = 2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, D))
    W = rng.standard_normal((C, D))

    def grad_at_labels(W, y):
        # gradient of mean_b CE(W x_b, y_b): (1/B) sum_b (p_b - e_{y_b}) x_b^T
        p = softmax(X @ W.T)
        p[np.arange(len(y)), y] -= 1.0
        return p.T @ X / len(y)

    return X, W, grad_at_labels


def autograd_hessian_diagonal(X, W):
    """diag of the Hessian of the mean cross-entropy, by torch (labels do not enter it)."""
    Xt = torch.tensor(X)
    y = torch.zeros(X.shape[0], dtype=torch.long)
    H = torch.autograd.functional.hessian(
        lambda w: torch.nn.functional.cross_entropy(Xt @ w.T, y), torch.tensor(W)
    )
    n = W.size
    return torch.diagonal(H.reshape(n, n)).reshape(W.shape).numpy()


def test_gnb_expectation_is_the_gauss_newton_diagonal():
    """Enumerate all C^B label draws: the probability-weighted mean of B g_hat^2 is exactly
    diag(GN), which for a linear model (softmax regression) is the Hessian's diagonal."""
    X, W, grad_at_labels = softmax_regression(3)
    B, C = X.shape[0], W.shape[0]
    p = softmax(X @ W.T)
    expectation = np.zeros_like(W)
    total = 0.0
    for y in itertools.product(range(C), repeat=B):
        prob = np.prod(p[np.arange(B), y])
        expectation += prob * gnb_estimate(grad_at_labels(W, np.array(y)), B)
        total += prob
    assert total == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(expectation, autograd_hessian_diagonal(X, W), rtol=1e-12, atol=1e-15)


def test_gnb_monte_carlo_converges_to_the_hessian_diagonal():
    X, W, grad_at_labels = softmax_regression(4)
    rng = np.random.default_rng(5)
    draws = np.array([gnb_diagonal(lambda y: grad_at_labels(W, y), X @ W.T, rng) for _ in range(4000)])
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - autograd_hessian_diagonal(X, W)) <= 4.5 * se)


def test_sampled_labels_follow_the_softmax():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    rng = np.random.default_rng(6)
    draws = np.array([sample_labels(logits, rng) for _ in range(20000)])
    p = softmax(logits)
    for b in range(2):
        freq = np.bincount(draws[:, b], minlength=3) / len(draws)
        se = np.sqrt(p[b] * (1 - p[b]) / len(draws))
        assert np.all(np.abs(freq - p[b]) <= 4.5 * se)


# --- the update rule -----------------------------------------------------------------------


def test_hessian_schedule():
    assert [t for t in range(1, 12) if hessian_update_due(t, 5)] == [1, 6, 11]
    assert all(hessian_update_due(t, 1) for t in range(1, 5))
    calls = []

    def estimate(x):
        calls.append(x.copy())
        return np.ones_like(x)

    run(sophia_step, np.ones(2), lambda x: x, 7, k=3, h_hat=estimate, lr=0.1)
    assert len(calls) == 3  # steps 1, 4 and 7


def test_sophia_is_a_newton_step_inside_the_clip():
    """Separable quadratic f = 1/2 sum a_i (x_i - c_i)^2 with the exact diagonal h = a,
    beta1 = beta2 = 0, rho = 1, lr = 1: where |g / h| = |x - c| <= 1 one step lands on c
    (Newton); farther away each coordinate moves by exactly lr towards c."""
    a = np.array([100.0, 1.0, 0.01])
    c = np.array([1.0, -2.0, 3.0])
    hp = dict(lr=1.0, betas=(0.0, 0.0), rho=1.0, weight_decay=0.0, k=1, h_hat=lambda x: a)
    x1, _ = sophia_step(c + np.array([0.5, -0.9, 0.3]), a * np.array([0.5, -0.9, 0.3]), None, **hp)
    np.testing.assert_allclose(x1, c, rtol=1e-15)
    far = c + np.array([5.0, -4.0, 2.5])
    x2, _ = sophia_step(far, a * (far - c), None, **hp)
    np.testing.assert_allclose(x2, far - np.sign(far - c), rtol=1e-15)
    path = run(sophia_step, far, lambda x: a * (x - c), 6, **hp)
    np.testing.assert_allclose(path.xs[-1], c, rtol=1e-15)


@given(
    m=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    lr=st.floats(1e-5, 1.0),
)
def test_no_coordinate_moves_more_than_lr(m, seed, lr):
    m = np.array(m)
    rng = np.random.default_rng(seed)
    h = rng.standard_normal(m.shape) * 10.0 ** rng.integers(-20, 3, size=m.shape)  # some negative, some tiny
    x = rng.standard_normal(m.shape)
    state = SophiaState(m=m, h=h, t=1)  # t = 1: step 2 is not a Hessian step for k = 10
    new, _ = sophia_step(x, rng.standard_normal(m.shape), state, lr=lr, weight_decay=0.0)
    # up to the rounding of x - lr * u, which is half an ulp of x
    assert np.all(np.abs(new - x) <= lr * (1 + 1e-12) + 1e-15 * np.abs(x))
    assert np.all(np.abs(sophia_update(m, h, 0.04, 1e-15)) <= 1.0)


@given(
    m=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    rho=st.floats(1e-3, 1.0),
    eps=st.floats(1e-12, 1e-2),
)
def test_threshold_form_is_a_rescaled_gamma_form(m, seed, rho, eps):
    """clip(m / max(h, eps), rho) = rho * clip(m / max(rho h, rho eps), 1): the first version's
    threshold rho is the later gamma = rho with lr * rho and eps * rho."""
    m = np.array(m)
    h = np.random.default_rng(seed).standard_normal(m.shape)
    lhs = sophia_update(m, h, 1.0, eps, threshold=rho)
    rhs = rho * sophia_update(m, h, rho, rho * eps)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-300)


def test_zero_momentum_does_not_move():
    x = np.array([1.0, -1.0])
    new, _ = sophia_step(x, np.zeros(2), None, weight_decay=0.0, h_hat=np.ones(2))
    np.testing.assert_array_equal(new, x)
    np.testing.assert_array_equal(clip(np.array([-3.0, 0.2, 5.0]), 1.0), [-1.0, 0.2, 1.0])


# --- against sophia_opt.SophiaG -----------------------------------------------------------------


class TorchSoftmaxRegression:
    """The torch side of the cross-check: its gradients come from autograd."""

    def __init__(self, seed: int, B: int = 4, C: int = 3, D: int = 3):
        rng = np.random.default_rng(seed)
        self.X = torch.tensor(rng.standard_normal((B, D)))
        self.y = torch.tensor(rng.integers(0, C, size=B))
        self.W = torch.tensor(rng.standard_normal((C, D)), requires_grad=True)

    def grad(self, labels) -> torch.Tensor:
        self.W.grad = None
        torch.nn.functional.cross_entropy(self.X @ self.W.T, torch.as_tensor(labels)).backward()
        return self.W.grad


def numpy_grad(X, W, y):
    p = softmax(X @ W.T)
    p[np.arange(len(y)), y] -= 1.0
    return p.T @ X / len(y)


def sophia_g_versus_reference(bs_factor: int, steps: int = 7):
    model = TorchSoftmaxRegression(7)
    X, y = model.X.numpy(), model.y.numpy()
    B = X.shape[0]
    lr, betas, rho, wd, k = 0.05, (0.9, 0.95), 0.03, 0.1, 2
    opt = SophiaG([model.W], lr=lr, betas=betas, rho=rho, weight_decay=wd)
    W, state = model.W.detach().numpy().copy(), None
    rng = np.random.default_rng(8)
    ours, theirs = [], []
    for t in range(1, steps + 1):
        h_hat = None
        if hessian_update_due(t, k):
            y_hat = sample_labels(X @ W.T, rng)
            model.grad(y_hat)  # SophiaG squares p.grad itself and has no factor B
            opt.update_hessian()
            h_hat = gnb_estimate(numpy_grad(X, W, y_hat), B)
        model.grad(y)
        opt.step(bs=bs_factor * B)
        W, state = sophia_step(W, numpy_grad(X, W, y), state, lr=lr, betas=betas, rho=rho * bs_factor,
                               weight_decay=wd, k=k, h_hat=h_hat)
        ours.append(W)
        theirs.append(model.W.detach().numpy().copy())
    return np.array(ours), np.array(theirs)


@pytest.mark.parametrize("bs_factor", [1, 2])
def test_sophia_matches_sophia_g_with_gnb(bs_factor):
    """With bs = B SophiaG's rho is the paper's gamma; with bs = 2B it is gamma = 2 rho."""
    ours, theirs = sophia_g_versus_reference(bs_factor)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def sophia_g_single_step(h_value: float, grad_value: np.ndarray, rho: float):
    p = torch.zeros(len(grad_value), dtype=torch.float64, requires_grad=True)
    opt = SophiaG([p], lr=0.1, betas=(0.0, 0.5), rho=rho, weight_decay=0.0)
    p.grad = torch.tensor(grad_value)
    opt.update_hessian()  # creates the state
    opt.state[p]["hessian"].fill_(h_value)
    opt.step(bs=1)
    return p.detach().numpy()


def test_sophia_g_moves_uphill_on_a_negative_hessian_estimate():
    g = np.array([0.5, -2.0, 1.0])
    theirs = sophia_g_single_step(-1.0, g, rho=0.5)
    ours, _ = sophia_step(np.zeros(3), g, SophiaState(m=np.zeros(3), h=np.full(3, -1.0), t=1),
                          lr=0.1, betas=(0.0, 0.5), rho=0.5, weight_decay=0.0)
    np.testing.assert_allclose(ours, -0.1 * np.sign(g))  # paper: max(gamma h, eps) = eps, a sign step down
    np.testing.assert_array_equal(np.sign(theirs), np.sign(g))  # SophiaG: along the gradient, uphill
    # |m| / (rho * bs * h + 1e-15) with rho * bs * h = -0.5 is negative, escapes the one-sided clamp
    # and flips the step: p -= lr * sign(m) * ratio = +lr * |m| / 0.5 * sign(m)
    np.testing.assert_allclose(theirs, 0.1 * g / 0.5, rtol=1e-12)


def test_sophia_g_adds_eps_where_the_paper_takes_a_maximum():
    """With rho h = eps = 1e-15 the paper divides by 1e-15, SophiaG by 2e-15: half the step.
    With h = 0 both divide by exactly 1e-15 and agree."""
    g = np.array([1e-16, -1e-16])
    theirs = sophia_g_single_step(1e-15, g, rho=1.0)
    ours, _ = sophia_step(np.zeros(2), g, SophiaState(m=np.zeros(2), h=np.full(2, 1e-15), t=1),
                          lr=0.1, betas=(0.0, 0.5), rho=1.0, weight_decay=0.0, eps=1e-15)
    np.testing.assert_allclose(ours, -0.1 * 0.1 * np.sign(g), rtol=1e-12)
    np.testing.assert_allclose(theirs, 0.5 * ours, rtol=1e-12)
    zero_h = sophia_g_single_step(0.0, g, rho=1.0)
    ours_zero_h, _ = sophia_step(np.zeros(2), g, SophiaState(m=np.zeros(2), h=np.zeros(2), t=1),
                                 lr=0.1, betas=(0.0, 0.5), rho=1.0, weight_decay=0.0, eps=1e-15)
    np.testing.assert_allclose(zero_h, ours_zero_h, rtol=1e-12)


def test_bad_inputs_raise_clear_errors():
    x = np.ones(2)
    with pytest.raises(ValueError, match=r"rho must lie in \(0, 1\]"):
        sophia_step(x, x, None, rho=0.0, h_hat=x)
    with pytest.raises(ValueError, match=r"rho must lie in \(0, 1\]"):
        sophia_step(x, x, None, rho=1.5, h_hat=x)
    with pytest.raises(ValueError, match="eps must be > 0"):
        sophia_step(x, x, None, eps=0.0, h_hat=x)
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        sophia_step(x, x, None, k=0, h_hat=x)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\)"):
        sophia_step(x, x, None, betas=(0.9, 1.0), h_hat=x)
    with pytest.raises(ValueError, match="pass h_hat"):
        sophia_step(x, x, None)
    with pytest.raises(ValueError, match=r"h_hat has shape \(3,\) but x has shape \(2,\)"):
        sophia_step(x, x, None, h_hat=np.ones(3))
    with pytest.raises(ValueError, match="distribution must be one of"):
        hutchinson_diagonal(lambda x, u: u, x, np.random.default_rng(0), distribution="uniform")
    with pytest.raises(ValueError, match="square matrix"):
        hutchinson_variance(np.ones((2, 3)))


# --- against optax.contrib.sophia ---------------------------------------------------------------


def test_optax_sophia_bias_corrects_m_and_uses_h_one_step_late():
    import jax
    import jax.numpy as jnp
    import optax

    def given_estimate():
        # a Hessian-diagonal "estimator" that returns the estimate passed to update(..., h_hat=...)
        def update(updates, state, params=None, h_hat=None, **extra):
            return h_hat, state

        return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)

    rng = np.random.default_rng(30)
    grads = rng.standard_normal((7, 4))
    h_hats = np.abs(rng.standard_normal((7, 4))) + 5.0  # gamma * h > |m|: most ratios stay inside the clip
    lr, b1, b2, eps, wd, gamma, k = 0.05, 0.9, 0.95, 1e-8, 0.1, 0.5, 3
    x0 = rng.standard_normal(4)
    with jax.enable_x64(True):
        tx = optax.contrib.sophia(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, gamma=gamma, clip_threshold=1.0,
                                  update_interval=k, hessian_diagonal_fn=given_estimate())
        x = jnp.asarray(x0)
        opt_state = tx.init(x)
        update = jax.jit(tx.update)
        theirs = []
        for g, h in zip(grads, h_hats):
            updates, opt_state = update(jnp.asarray(g), opt_state, x, h_hat=jnp.asarray(h))
            x = optax.apply_updates(x, updates)
            theirs.append(np.array(x))
    x, m, h = x0, np.zeros(4), np.zeros(4)
    paper, state = x0, None
    ours = []
    for t, (g, h_hat) in enumerate(zip(grads, h_hats), start=1):
        m = ema(m, g, b1)
        u = sophia_update(bias_correction(m, b1, t), h, gamma, eps)  # m_hat, and h before the refresh
        x = decoupled_weight_decay(x, lr, wd) - lr * u
        if hessian_update_due(t, k):
            h = hessian_ema(h, h_hat, b2)
        ours.append(x)
        paper, state = sophia_step(paper, g, state, lr=lr, betas=(b1, b2), rho=gamma, eps=eps,
                                   weight_decay=wd, k=k, h_hat=h_hat)
    np.testing.assert_allclose(np.array(theirs), np.array(ours), rtol=1e-12, atol=1e-14)
    assert not np.allclose(paper, ours[-1], rtol=1e-3)
