"""optbook.optim.Lion and optbook.optim.Sophia, and the torch Hessian-diagonal estimators, in float64.

Cross-checks:

* Lion against the NumPy reference and against ``lion_pytorch.Lion``;
* Sophia against the NumPy reference, against ``sophia_opt.SophiaG`` with
  Gauss-Newton-Bartlett estimates (SophiaG's h lacks the factor B, which
  its ``step(bs=B)`` puts back: see tests/test_reference_sophia.py for the
  conventions that differ), and against ``pytorch_optimizer.SophiaH`` with
  its own Hutchinson estimates: SophiaH writes the step in the threshold
  form lr * clip(m / max(h, eps), p), which is Sophia with rho = p,
  lr * p and eps * p. Both draw their probes from torch's global generator
  in the same order, so with the same seed they see the same probes;
* the estimators against exact diagonals from torch.autograd.functional.
"""

import copy
import io
import itertools

import numpy as np
import pytest
import torch
from lion_pytorch import Lion as UpstreamLion
from pytorch_optimizer import SophiaH
from sophia_opt import SophiaG

from optbook.optim import Lion, Sophia
from optbook.optim.sophia import gauss_newton_bartlett, hutchinson
from optbook.reference import gnb_estimate, lion_step, softmax, sophia_step

F64 = torch.float64


def make_params(seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=F64, requires_grad=True)
    return [w, b]


def data(seed: int, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=F64), torch.randn(n, 3, generator=g, dtype=F64)


def mse(params, x, y):
    w, b = params
    return ((x @ w.T + b - y) ** 2).mean()


def grads_at(arrays, x, y):
    """The gradient at NumPy iterates, by autograd on fresh tensors."""
    params = [torch.tensor(a, requires_grad=True) for a in arrays]
    mse(params, x, y).backward()
    return [p.grad.numpy() for p in params]


def snapshot(opt, params):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict())


def assert_unchanged(opt, params, snap):
    before_params, before_state = snap
    for p, q in zip(params, before_params):
        assert torch.equal(p.detach(), q)
    after = opt.state_dict()
    assert after["state"].keys() == before_state["state"].keys()
    for key, entries in before_state["state"].items():
        for name, value in entries.items():
            other = after["state"][key][name]
            assert torch.equal(other, value) if torch.is_tensor(value) else other == value


# --- Lion --------------------------------------------------------------------------------


def test_lion_matches_reference_and_lion_pytorch_with_two_groups():
    x, y = data(0)
    hp = [dict(lr=0.01, weight_decay=0.1), dict(lr=0.003, weight_decay=0.0)]
    ours, theirs = make_params(1), make_params(1)
    opt = Lion([{"params": [ours[0]], **hp[0]}, {"params": [ours[1]], **hp[1]}], betas=(0.9, 0.99))
    upstream = UpstreamLion([{"params": [theirs[0]], **hp[0]}, {"params": [theirs[1]], **hp[1]}], betas=(0.9, 0.99))
    ref = [p.detach().numpy().copy() for p in ours]
    states = [None, None]
    for _ in range(12):
        for o, params in ((opt, ours), (upstream, theirs)):
            o.zero_grad()
            mse(params, x, y).backward()
            o.step()
        gs = grads_at(ref, x, y)
        for i in range(2):
            ref[i], states[i] = lion_step(ref[i], gs[i], states[i], betas=(0.9, 0.99), **hp[i])
    for p, q, r in zip(ours, theirs, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-13, atol=1e-14)


def test_lion_follows_a_scheduler_and_skips_parameters_without_gradient():
    x, y = data(2)
    params = make_params(3)
    frozen = torch.ones(2, dtype=F64, requires_grad=True)
    opt = Lion(params + [frozen], lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    ref = [p.detach().numpy().copy() for p in params]
    states = [None, None]
    for t in range(8):
        lr = 0.02 * 0.5 ** (t // 3)
        opt.zero_grad()
        mse(params, x, y).backward()
        opt.step()
        sched.step()
        gs = grads_at(ref, x, y)
        for i in range(2):
            ref[i], states[i] = lion_step(ref[i], gs[i], states[i], lr=lr)
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-13, atol=1e-14)
    assert torch.equal(frozen, torch.ones(2, dtype=F64)) and frozen not in opt.state


@pytest.mark.parametrize("cls,kwargs", [(Lion, {}), (Sophia, {"weight_decay": 0.0})])
def test_maximize_is_minimising_the_negative_and_closure_returns_the_loss(cls, kwargs):
    x, y = data(4)
    up, down = make_params(5), make_params(5)
    o_up, o_down = cls(up, lr=0.01, maximize=True, **kwargs), cls(down, lr=0.01, **kwargs)
    for _ in range(5):
        def closure_up():
            o_up.zero_grad()
            loss = mse(up, x, y)
            loss.backward()
            return loss

        def closure_down():
            o_down.zero_grad()
            loss = -mse(down, x, y)
            loss.backward()
            return loss

        loss = o_up.step(closure_up)
        assert torch.is_tensor(loss) and loss.item() == pytest.approx(mse(up, x, y).item(), rel=0.5)
        o_down.step(closure_down)
        grad_before = up[0].grad.clone()
    for p, q in zip(up, down):
        assert torch.allclose(p, q, rtol=1e-14, atol=1e-15)
    assert torch.equal(up[0].grad, grad_before)  # maximize does not modify p.grad


@pytest.mark.parametrize("cls", [Lion, Sophia])
def test_state_dict_round_trip_resumes_bit_for_bit(cls):
    x, y = data(6)
    params = make_params(7)
    kwargs = {"k": 2, "hessian_estimator": lambda: [torch.ones_like(p) for p in params]} if cls is Sophia else {}
    opt = cls(params, lr=0.01, **kwargs)

    def train(o, ps, steps):
        for _ in range(steps):
            o.zero_grad()
            mse(ps, x, y).backward()
            o.step()

    train(opt, params, 3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # a hessian_estimator must not get into the checkpoint
    saved_params = [p.detach().clone() for p in params]
    train(opt, params, 4)

    resumed = [p.clone().detach().requires_grad_(True) for p in saved_params]
    if cls is Sophia:
        kwargs["hessian_estimator"] = lambda: [torch.ones_like(p) for p in resumed]
    opt2 = cls(resumed, lr=0.01, **kwargs)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer))
    train(opt2, resumed, 4)
    for p, q in zip(params, resumed):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": -1e-3}, "lr must be >= 0"),
        ({"lr": float("nan")}, "lr must be finite"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\] must lie in \[0, 1\)"),
        ({"betas": (-0.1, 0.9)}, r"betas\[0\] must lie in \[0, 1\)"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"maximize": "yes"}, "maximize must be True or False"),
    ],
)
@pytest.mark.parametrize("cls", [Lion, Sophia])
def test_bad_hyperparameters_are_refused(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(make_params(0), **kwargs)
    with pytest.raises((ValueError, TypeError), match="param group 1: " + match):
        p, q = make_params(0)
        cls([{"params": [p]}, {"params": [q], **kwargs}])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rho": 0.0}, r"rho must lie in \(0, 1\]"),
        ({"rho": 1.5}, r"rho must lie in \(0, 1\]"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"k": 0}, "k must be a whole number >= 1"),
        ({"k": 2.5}, "k must be a whole number >= 1"),
    ],
)
def test_bad_sophia_hyperparameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sophia(make_params(0), **kwargs)


@pytest.mark.parametrize("cls", [Lion, Sophia])
def test_refused_steps_change_nothing(cls):
    x, y = data(8)
    params = make_params(9)
    opt = cls(params, lr=0.01)
    opt.zero_grad()
    mse(params, x, y).backward()
    opt.step()
    mse(params, x, y).backward()

    snap = snapshot(opt, params)
    opt.param_groups[0]["lr"] = -0.5  # as a buggy scheduler would
    with pytest.raises(ValueError, match="param group 0: lr must be >= 0"):
        opt.step()
    assert_unchanged(opt, params, snap)
    opt.param_groups[0]["lr"] = 0.01

    params[1].grad[0] = float("nan")  # the bad gradient is the second one: the first must not move
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.step()
    params[1].grad[0] = 0.0
    params[0].grad = params[0].grad.to_sparse()
    with pytest.raises(ValueError, match="sparse gradient"):
        opt.step()
    assert_unchanged(opt, params, snap)


@pytest.mark.parametrize("cls", [Lion, Sophia])
def test_sparse_and_complex_gradients_are_refused(cls):
    emb = torch.nn.Embedding(5, 2, sparse=True).double()
    opt = cls(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 3])).sum().backward()
    with pytest.raises(ValueError, match="sparse gradient.*sparse=False"):
        opt.step()
    assert not opt.state
    z = torch.zeros(3, dtype=torch.complex128, requires_grad=True)
    opt = cls([z], lr=0.1)
    z.grad = torch.ones(3, dtype=torch.complex128)
    with pytest.raises(TypeError, match="complex.*view_as_real"):
        opt.step()
    assert not opt.state and torch.equal(z.detach(), torch.zeros(3, dtype=torch.complex128))


# --- Sophia ---------------------------------------------------------------------------------


def test_sophia_matches_reference_with_manual_estimates():
    """Estimates of both signs, given by hand on Hessian steps; the reference sees the same ones."""
    x, y = data(10)
    params = make_params(11)
    hp = dict(lr=0.02, betas=(0.9, 0.95), rho=0.05, weight_decay=0.1, eps=1e-12, k=3)
    opt = Sophia(params, **hp)
    ref = [p.detach().numpy().copy() for p in params]
    states = [None, None]
    rng = np.random.default_rng(12)
    due_steps = []
    for t in range(1, 10):
        h_hats = [None, None]
        opt.zero_grad()
        mse(params, x, y).backward()
        if opt.hessian_due():
            due_steps.append(t)
            h_hats = [rng.standard_normal(r.shape) for r in ref]
            opt.update_hessian([torch.tensor(h) for h in h_hats])
        opt.step()
        gs = grads_at(ref, x, y)
        for i in range(2):
            ref[i], states[i] = sophia_step(ref[i], gs[i], states[i], h_hat=h_hats[i], **hp)
    assert due_steps == [1, 4, 7]
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-12, atol=1e-14)


def test_sophia_calls_its_estimator_on_each_groups_own_schedule():
    x, y = data(13)
    params = make_params(14)
    ks = (2, 3)
    opt_kw = dict(lr=0.01, betas=(0.9, 0.99), rho=0.04, weight_decay=0.0)
    gen = torch.Generator().manual_seed(15)
    recorded = []

    def estimator():
        est = [torch.rand(p.shape, generator=gen, dtype=F64) for p in params]
        recorded.append([e.numpy().copy() for e in est])
        return {p: e for p, e in zip(params, est)}  # the dict form

    opt = Sophia([{"params": [params[0]], "k": ks[0]}, {"params": [params[1]], "k": ks[1]}],
                 hessian_estimator=estimator, **opt_kw)
    ref = [p.detach().numpy().copy() for p in params]
    states = [None, None]
    for t in range(1, 8):
        calls = len(recorded)
        opt.zero_grad()
        mse(params, x, y).backward()
        opt.step()
        called = len(recorded) > calls
        assert called == ((t - 1) % 2 == 0 or (t - 1) % 3 == 0)
        gs = grads_at(ref, x, y)
        for i in range(2):
            h_hat = recorded[-1][i] if called else None
            ref[i], states[i] = sophia_step(ref[i], gs[i], states[i], h_hat=h_hat, k=ks[i], **opt_kw)
    assert len(recorded) == 5  # steps 1, 3, 4, 5, 7
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-12, atol=1e-14)


class Classifier:
    def __init__(self, seed: int, B: int = 6, D: int = 4, C: int = 3):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(B, D, generator=g, dtype=F64)
        self.y = torch.randint(0, C, (B,), generator=g)
        self.w = torch.randn(C, D, generator=g, dtype=F64, requires_grad=True)

    def logits(self):
        return self.x @ self.w.T

    def loss(self):
        return torch.nn.functional.cross_entropy(self.logits(), self.y)


def test_sophia_with_gnb_matches_sophia_g():
    ours, theirs = Classifier(16), Classifier(16)
    B = ours.x.shape[0]
    hp = dict(lr=0.05, betas=(0.9, 0.95), rho=0.03, weight_decay=0.1)
    opt = Sophia([ours.w], k=2, **hp)
    upstream = SophiaG([theirs.w], **hp)
    gen = torch.Generator().manual_seed(17)
    for t in range(1, 8):
        if opt.hessian_due():
            with torch.no_grad():
                labels = torch.multinomial(torch.softmax(ours.logits(), -1), 1, generator=gen).squeeze(1)
            opt.update_hessian(gauss_newton_bartlett(ours.logits(), [ours.w], labels=labels))
            upstream.zero_grad()
            torch.nn.functional.cross_entropy(theirs.logits(), labels).backward()
            upstream.update_hessian()
        for o, m in ((opt, ours), (upstream, theirs)):
            o.zero_grad()
            m.loss().backward()
        opt.step()
        upstream.step(bs=B)
    torch.testing.assert_close(ours.w, theirs.w, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
def test_sophia_with_hutchinson_matches_sophia_h_threshold_form():
    ours, theirs = Classifier(18), Classifier(18)
    p_clip, lr, eps, k = 0.5, 0.1, 1e-8, 3
    upstream = SophiaH([theirs.w], lr=lr, betas=(0.9, 0.95), p=p_clip, eps=eps, update_period=k,
                       hessian_distribution="gaussian", weight_decay=0.0)
    torch.manual_seed(19)
    for _ in range(7):
        upstream.zero_grad()
        theirs.loss().backward(create_graph=True)
        upstream.step()
    opt = Sophia([ours.w], lr=lr * p_clip, betas=(0.9, 0.95), rho=p_clip, eps=eps * p_clip, k=k,
                 weight_decay=0.0, hessian_estimator=lambda: hutchinson(ours.loss, [ours.w], distribution="gaussian"))
    torch.manual_seed(19)
    for _ in range(7):
        opt.zero_grad()
        ours.loss().backward()
        opt.step()
    torch.testing.assert_close(ours.w, theirs.w.detach(), rtol=1e-10, atol=1e-12)


def test_sophia_without_estimates_takes_sign_steps_and_never_more_than_lr():
    x, y = data(20)
    params = make_params(21)
    opt = Sophia(params, lr=0.01, weight_decay=0.0, betas=(0.5, 0.99))
    for _ in range(3):
        before = [p.detach().clone() for p in params]
        opt.zero_grad()
        mse(params, x, y).backward()
        opt.step()
        for p, b in zip(params, before):
            moved = (p.detach() - b).abs()
            m = opt.state[p]["exp_avg"]
            # h = 0: m / eps is huge, so each coordinate with m != 0 moves by exactly lr
            torch.testing.assert_close(moved, (m != 0).to(F64) * 0.01, rtol=0, atol=1e-15)
    opt.update_hessian([torch.full_like(p, 1e3) for p in params])
    before = [p.detach().clone() for p in params]
    opt.zero_grad()
    mse(params, x, y).backward()
    opt.step()
    assert all(((p.detach() - b).abs() <= 0.01 + 1e-15).all() for p, b in zip(params, before))


def test_update_hessian_refuses_bad_estimates_and_changes_nothing():
    x, y = data(22)
    params = make_params(23)
    opt = Sophia(params, lr=0.01)
    mse(params, x, y).backward()
    opt.step()
    snap = snapshot(opt, params)
    with pytest.raises(ValueError, match="needs estimates"):
        opt.update_hessian()
    with pytest.raises(ValueError, match="got 1 Hessian estimates for 2 parameters"):
        opt.update_hessian([torch.ones(3, 4, dtype=F64)])
    with pytest.raises(ValueError, match=r"Hessian estimate 1 has shape \(4,\) but its parameter has shape \(3,\)"):
        opt.update_hessian([torch.ones(3, 4, dtype=F64), torch.ones(4, dtype=F64)])
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.update_hessian([torch.ones(3, 4, dtype=F64), torch.tensor([1.0, float("inf"), 0.0], dtype=F64)])
    with pytest.raises(ValueError, match="not a parameter of this optimizer"):
        opt.update_hessian({torch.zeros(3, dtype=F64): torch.ones(3, dtype=F64)})
    assert_unchanged(opt, params, snap)
    with pytest.raises(TypeError, match="hessian_estimator must be a function"):
        Sophia(params, hessian_estimator=[1.0])
    opt.update_hessian([None, torch.ones(3, dtype=F64)])  # None skips a parameter
    assert torch.equal(opt.state[params[0]]["hessian"], snap[1]["state"][0]["hessian"])


# --- the torch estimators ---------------------------------------------------------------------


def exact_hessian_diagonal(loss_of_w, w):
    n = w.numel()
    H = torch.autograd.functional.hessian(loss_of_w, w.detach())
    return torch.diagonal(H.reshape(n, n)).reshape(w.shape)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_torch_hutchinson_is_unbiased(distribution):
    model = Classifier(24, B=5, D=3, C=3)
    exact = exact_hessian_diagonal(
        lambda w: torch.nn.functional.cross_entropy(model.x @ w.T, model.y), model.w
    )
    gen = torch.Generator().manual_seed(25)
    draws = torch.stack(
        [hutchinson(model.loss, [model.w], distribution=distribution, generator=gen)[0] for _ in range(1500)]
    )
    se = draws.std(dim=0) / len(draws) ** 0.5
    assert ((draws.mean(dim=0) - exact).abs() <= 4.5 * se).all()
    # samples=S averages the same probes as S single calls
    mean = hutchinson(model.loss, [model.w], distribution=distribution, samples=20,
                      generator=torch.Generator().manual_seed(25))[0]
    torch.testing.assert_close(mean, draws[:20].mean(dim=0), rtol=1e-12, atol=1e-15)


def test_torch_hutchinson_rademacher_is_exact_for_a_separable_loss():
    w = torch.tensor([0.5, -1.0, 2.0], dtype=F64, requires_grad=True)
    unused = torch.ones(2, dtype=F64, requires_grad=True)
    linear = torch.ones(2, dtype=F64, requires_grad=True)
    est = hutchinson(lambda: (w**3).sum() + 2 * (w**2).sum() + linear.sum(), [w, unused, linear],
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est[0], 6 * w.detach() + 4, rtol=1e-14, atol=1e-14)
    assert torch.equal(est[1], torch.zeros(2, dtype=F64)) and torch.equal(est[2], torch.zeros(2, dtype=F64))
    assert w.grad is None


def test_torch_gnb_expectation_is_the_hessian_diagonal_of_a_linear_model():
    model = Classifier(26, B=3, D=2, C=3)
    p = torch.softmax(model.logits(), -1).detach()
    expectation = torch.zeros_like(model.w)
    for labels in itertools.product(range(3), repeat=3):
        labels = torch.tensor(labels)
        prob = p[torch.arange(3), labels].prod()
        expectation += prob * gauss_newton_bartlett(model.logits, [model.w], labels=labels)[0]
    exact = exact_hessian_diagonal(lambda w: torch.nn.functional.cross_entropy(model.x @ w.T, model.y), model.w)
    torch.testing.assert_close(expectation, exact, rtol=1e-12, atol=1e-15)
    # one draw agrees with the NumPy formula B * g_hat^2 on the same labels
    labels = torch.tensor([2, 0, 1])
    x, w = model.x.numpy(), model.w.detach().numpy()
    q = softmax(x @ w.T)
    q[np.arange(3), labels.numpy()] -= 1.0
    np.testing.assert_allclose(gauss_newton_bartlett(model.logits, [model.w], labels=labels)[0].numpy(),
                               gnb_estimate(q.T @ x / 3, 3), rtol=1e-13)


def test_torch_gnb_expectation_is_gauss_newton_not_hessian_for_a_nonlinear_model():
    g = torch.Generator().manual_seed(27)
    x = torch.randn(2, 2, generator=g, dtype=F64)
    w1 = torch.randn(2, 2, generator=g, dtype=F64, requires_grad=True)
    w2 = torch.randn(3, 2, generator=g, dtype=F64, requires_grad=True)
    y = torch.tensor([0, 2])

    def logits_of(a, b):
        return torch.tanh(x @ a.T) @ b.T

    # Gauss-Newton diagonal: (1/B) sum_b J_b^T (diag p_b - p_b p_b^T) J_b, with J from autograd
    flat = torch.cat([w1.detach().reshape(-1), w2.detach().reshape(-1)])
    J = torch.autograd.functional.jacobian(lambda v: logits_of(v[:4].reshape(2, 2), v[4:].reshape(3, 2)), flat)
    p = torch.softmax(logits_of(w1, w2), -1).detach()
    gn = sum(J[b].T @ (torch.diag(p[b]) - torch.outer(p[b], p[b])) @ J[b] for b in range(2)) / 2
    expectation = torch.zeros(10, dtype=F64)
    for labels in itertools.product(range(3), repeat=2):
        labels = torch.tensor(labels)
        prob = p[torch.arange(2), labels].prod()
        est = gauss_newton_bartlett(lambda: logits_of(w1, w2), [w1, w2], labels=labels)
        expectation += prob * torch.cat([e.reshape(-1) for e in est])
    torch.testing.assert_close(expectation, torch.diagonal(gn), rtol=1e-12, atol=1e-14)
    H = torch.autograd.functional.hessian(
        lambda v: torch.nn.functional.cross_entropy(logits_of(v[:4].reshape(2, 2), v[4:].reshape(3, 2)), y), flat
    )
    # the first layer's curvature has a term from tanh'' that Gauss-Newton leaves out
    assert (torch.diagonal(H)[:4] - expectation[:4]).abs().max() > 1e-3


def test_gnb_samples_from_the_generator_and_checks_its_input():
    model = Classifier(28)
    a = gauss_newton_bartlett(model.logits, [model.w], generator=torch.Generator().manual_seed(3))
    b = gauss_newton_bartlett(model.logits, [model.w], generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and (a[0] >= 0).all()
    with pytest.raises(ValueError, match="labels must be a long tensor"):
        gauss_newton_bartlett(model.logits, [model.w], labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="logits must be a tensor of shape"):
        gauss_newton_bartlett(model.logits().detach(), [model.w])
    with pytest.raises(ValueError, match="requires_grad=True"):
        hutchinson(model.loss, [torch.zeros(2)])
    with pytest.raises(ValueError, match="distribution must be one of"):
        hutchinson(model.loss, [model.w], distribution="uniform")


def test_gnb_batch_rows_sets_the_bartlett_factor_and_is_checked():
    model = Classifier(28)
    rows = model.logits().reshape(-1, model.logits().shape[-1]).shape[0]
    a = gauss_newton_bartlett(model.logits, [model.w], generator=torch.Generator().manual_seed(3))
    b = gauss_newton_bartlett(model.logits, [model.w], generator=torch.Generator().manual_seed(3), batch_rows=3 * rows)
    torch.testing.assert_close(b[0], 3 * a[0], rtol=1e-12, atol=0)  # B g * g is linear in B
    for bad in (0, -2, 1.5):
        with pytest.raises((ValueError, TypeError), match="batch_rows"):
            gauss_newton_bartlett(model.logits, [model.w], batch_rows=bad)
