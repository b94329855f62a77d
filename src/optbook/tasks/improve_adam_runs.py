r"""Experiments of the "improving Adam" chapter: cross-checks, digits runs, the AdamW heat map.

* :func:`cross_check_errors` runs each NumPy reference of :mod:`optbook.reference.radam`,
  :mod:`~optbook.reference.adamod`, :mod:`~optbook.reference.lookahead`,
  :mod:`~optbook.reference.diffgrad`, :mod:`~optbook.reference.gradient_centralization` and
  :mod:`~optbook.reference.adamw_schedule` next to its upstream torch implementation
  (``torch.optim`` or ``pytorch_optimizer``) on the same matrix least-squares problem, in float64,
  and returns the largest difference of the iterates.
* :func:`make_improved_optimizer` builds the torch optimizers by name; :func:`digits_run`
  trains the Part I digits MLP with one of them and records losses and update sizes;
  :func:`method_comparison` runs every method over several seeds; :func:`claims_table` turns
  the seed statistics (:func:`optbook.analysis.seeds.summarize`) into verdicts by the book's rule
  (:func:`optbook.analysis.seeds.compare`).
* :func:`decay_grid` trains Adam + L2 and AdamW (in the paper's parametrization) on a grid of
  step sizes and weight decays, for the heat map.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "matrix_least_squares",
    "reference_path",
    "upstream_path",
    "cross_check_errors",
    "upstream_difference",
    "GradientCentralized",
    "make_improved_optimizer",
    "IMPROVED_METHODS",
    "digits_run",
    "method_comparison",
    "seed_values",
    "seed_statistics",
    "claims_table",
    "decay_grid",
    "fit_linear_warmup",
    "stored_method_comparison",
    "stored_decay_grid",
    "rectification_curve",
    "cosine_multiplier",
    "METHODS_KEY",
    "GRID_KEY",
]

__helpers__ = (
    "matrix_least_squares",
    "reference_path",
    "upstream_path",
    "cross_check_errors",
    "upstream_difference",
    "make_improved_optimizer",
    "digits_run",
    "method_comparison",
    "seed_values",
    "seed_statistics",
    "claims_table",
    "decay_grid",
    "fit_linear_warmup",
    "stored_method_comparison",
    "stored_decay_grid",
    "rectification_curve",
    "cosine_multiplier",
)


# --- cross-checks against upstream ---------------------------------------------------------


def matrix_least_squares(seed: int = 0, shape: tuple[int, int] = (4, 3), n: int = 12):
    r"""``(W0, grad, loss)`` for :math:`J(W) = \frac1{2n}\lVert AW - B\rVert^2` with :math:`W` of ``shape``.

    A matrix parameter, so that gradient centralization (mean over the second axis) has something to do.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, shape[0])) * np.linspace(0.3, 3.0, shape[0])
    b = rng.standard_normal((n, shape[1]))
    w0 = rng.standard_normal(shape)
    return w0, (lambda w: a.T @ (a @ w - b) / n), (lambda w: float(0.5 * np.sum((a @ w - b) ** 2) / n))


def reference_path(step_fn: Callable, x0: np.ndarray, grad: Callable, steps: int, **hyperparameters) -> np.ndarray:
    """Iterates :math:`\\theta_0, \\dots, \\theta_T` of a NumPy reference rule, stacked."""
    from optbook.reference import run

    return np.stack(run(step_fn, x0, grad, steps, **hyperparameters).xs)


def upstream_path(make: Callable, x0: np.ndarray, grad: Callable, steps: int, scheduler: Callable | None = None) -> np.ndarray:
    """Iterates of a torch optimizer ``make([param])`` fed the same gradients, in float64.

    ``scheduler(optimizer)``, if given, builds a ``torch.optim.lr_scheduler`` stepped after every step.
    """
    x = torch.tensor(np.asarray(x0, dtype=np.float64), dtype=torch.float64, requires_grad=True)
    opt = make([x])
    sched = scheduler(opt) if scheduler is not None else None
    out = [np.array(x0, dtype=np.float64)]
    for _ in range(steps):
        x.grad = torch.as_tensor(grad(x.detach().numpy()), dtype=torch.float64).clone()
        opt.step()
        if sched is not None:
            sched.step()
        out.append(x.detach().numpy().copy())
    return np.stack(out)


def cosine_multiplier(steps: int):
    """:math:`t \\mapsto \\eta_t` for steps :math:`t \\ge 1`: cosine annealing from 1 to 0.1 over ``steps``
    (:func:`optbook.schedules.cosine_lr`), the schedule multiplier of the AdamW cross-check."""
    from optbook.schedules import cosine_lr

    # eta_t for steps t = 1, 2, ...: cosine annealing from 1 to 0.1 over the run
    return lambda t: cosine_lr(t - 1, 1.0, steps, 0.1)


def _cases(steps: int):
    """(name, reference rule, its hyperparameters, upstream factory, scheduler factory)."""
    import pytorch_optimizer as po

    from optbook import reference as R

    paper = dict(alpha=0.05, weight_decay=0.02)
    lr_torch, wd_torch = R.torch_adamw_hyperparameters(paper["alpha"], 1.0, paper["weight_decay"])
    eta = cosine_multiplier(steps)
    lam_schedule = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda i: eta(i + 1))  # noqa: E731
    return [
        ("RAdam", "torch.optim.RAdam", R.radam_step, dict(lr=0.05), lambda p: torch.optim.RAdam(p, lr=0.05), None),
        ("RAdam, L2 decay", "torch.optim.RAdam(weight_decay=0.1)", R.radam_step, dict(lr=0.05, weight_decay=0.1),
         lambda p: torch.optim.RAdam(p, lr=0.05, weight_decay=0.1), None),
        ("RAdam, decoupled decay", "torch.optim.RAdam(decoupled_weight_decay=True)", R.radam_step,
         dict(lr=0.05, weight_decay=0.1, decoupled=True),
         lambda p: torch.optim.RAdam(p, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True), None),
        ("RAdam, momentum below threshold", "pytorch_optimizer.RAdam(degenerated_to_sgd=True)", R.radam_step,
         dict(lr=0.05, weight_decay=0.1, decoupled=True),
         lambda p: po.RAdam(p, lr=0.05, weight_decay=0.1, degenerated_to_sgd=True), None),
        ("RAdam, no step below threshold", "pytorch_optimizer.RAdam", R.radam_step,
         dict(lr=0.05, weight_decay=0.1, decoupled=True, below_threshold="skip"),
         lambda p: po.RAdam(p, lr=0.05, weight_decay=0.1), None),
        ("AdaMod", "pytorch_optimizer.AdaMod", R.adamod_step, dict(lr=0.05, betas=(0.9, 0.999, 0.99)),
         lambda p: po.AdaMod(p, lr=0.05, betas=(0.9, 0.999, 0.99)), None),
        ("Lookahead(Adam)", "pytorch_optimizer.Lookahead(torch.optim.Adam)", R.lookahead_step,
         dict(inner=R.adam_step, k=5, alpha=0.5, lr=0.05),
         lambda p: po.Lookahead(torch.optim.Adam(p, lr=0.05), k=5, alpha=0.5), None),
        ("Adam + GC", "torch.optim.Adam after pytorch_optimizer.centralize_gradient", R.gc_step,
         dict(inner=R.adam_step, lr=0.05), lambda p: GradientCentralized(torch.optim.Adam(p, lr=0.05)), None),
        ("Ranger", "pytorch_optimizer.Ranger(degenerated_to_sgd=True)", R.ranger_step, dict(lr=0.05),
         lambda p: po.Ranger(p, lr=0.05, degenerated_to_sgd=True), None),
        ("diffGrad", "pytorch_optimizer.DiffGrad", R.diffgrad_step, dict(lr=0.05, eps_inside=1e-15),
         lambda p: po.DiffGrad(p, lr=0.05), None),
        ("AdamW, paper form, cosine eta_t", "torch.optim.AdamW + LambdaLR", R.adamw_paper_step,
         dict(alpha=paper["alpha"], weight_decay=paper["weight_decay"], schedule=eta),
         lambda p: torch.optim.AdamW(p, lr=lr_torch, weight_decay=wd_torch), lam_schedule),
    ]


def cross_check_errors(steps: int = 60, seed: int = 0) -> list[dict]:
    """For every pair of ``_cases()``: ``{"method", "upstream", "max_abs_diff"}`` over ``steps`` steps.

    The problem is :func:`matrix_least_squares` (a 4 x 3 matrix), so the runs pass RAdam's threshold,
    three Lookahead syncs and the gradient centralization of a matrix.
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 10:
        raise ValueError(f"steps must be a whole number >= 10 (RAdam rectifies from step 6 on), got {steps!r}.")
    w0, grad, _ = matrix_least_squares(seed)
    rows = []
    for name, upstream, rule, hp, make, sched in _cases(int(steps)):
        ours = reference_path(rule, w0, grad, int(steps), **hp)
        theirs = upstream_path(make, w0, grad, int(steps), sched)
        rows.append({"method": name, "upstream": upstream, "max_abs_diff": float(np.max(np.abs(ours - theirs)))})
    return rows


def upstream_difference(make_a: Callable, make_b: Callable, steps: int = 12, seed: int = 0) -> dict:
    """Losses per step of two upstream optimizers on :func:`matrix_least_squares`, and where they part.

    Returns ``{"loss_a", "loss_b", "first_step_apart"}``; the last is the first step whose iterates
    differ by more than 1e-12 (``None`` if they never do).
    """
    w0, grad, loss = matrix_least_squares(seed)
    a, b = upstream_path(make_a, w0, grad, steps), upstream_path(make_b, w0, grad, steps)
    apart = np.nonzero(np.max(np.abs(a - b).reshape(steps + 1, -1), axis=1) > 1e-12)[0]
    return {
        "loss_a": [loss(w) for w in a],
        "loss_b": [loss(w) for w in b],
        "first_step_apart": int(apart[0]) if len(apart) else None,
    }


class GradientCentralized(torch.optim.Optimizer):
    """Wrap a torch optimizer: centralize the gradient of every parameter with ``ndim > 1``, then step.

    The centralization is ``pytorch_optimizer.centralize_gradient`` (mean over all axes but the first).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}.")
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self.defaults = optimizer.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the wrapped optimizer's gradients (``set_to_none`` as in torch)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        from pytorch_optimizer import centralize_gradient

        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.dim() > 1:
                    centralize_gradient(p.grad)
        return self.optimizer.step(closure)


# --- the digits runs ---------------------------------------------------------------------------

#: The methods of :func:`make_improved_optimizer`, in the order of the chapter.
IMPROVED_METHODS = ("Adam", "Adam + warm-up", "RAdam", "AdaMod", "Lookahead(Adam)", "Ranger", "diffGrad", "Adam + GC")


def make_improved_optimizer(name: str, params, lr: float, *, betas=(0.9, 0.99), eps: float = 1e-8):
    """``(optimizer, warmup_steps)`` for a method of :data:`IMPROVED_METHODS`, all with the same ``betas`` and ``eps``.

    "Adam + warm-up" is ``torch.optim.Adam`` whose rate rises linearly over
    :math:`\\tau = 2/(1-\\beta_2)` steps (Ma & Yarats); the caller steps the returned
    scheduler. RAdam is ``torch.optim.RAdam``; AdaMod (:math:`\\beta_3 = 0.999`), Lookahead
    (:math:`k=5`, :math:`\\alpha=\\frac12`, around Adam), Ranger (with gradient centralization and
    momentum below the threshold) and diffGrad are ``pytorch_optimizer``'s; "Adam + GC" is
    :class:`GradientCentralized` around Adam.
    """
    import pytorch_optimizer as po

    params = list(params)
    b1, b2 = betas
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps), None
    if name == "Adam + warm-up":
        opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
        tau = 2.0 / (1.0 - b2)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / tau))
    if name == "RAdam":
        return torch.optim.RAdam(params, lr=lr, betas=betas, eps=eps), None
    if name == "AdaMod":
        return po.AdaMod(params, lr=lr, betas=(b1, b2, 0.999), eps=eps), None
    if name == "Lookahead(Adam)":
        return po.Lookahead(torch.optim.Adam(params, lr=lr, betas=betas, eps=eps), k=5, alpha=0.5), None
    if name == "Ranger":
        return po.Ranger(params, lr=lr, betas=betas, eps=eps, degenerated_to_sgd=True), None
    if name == "diffGrad":
        return po.DiffGrad(params, lr=lr, betas=betas, eps=eps), None
    if name == "Adam + GC":
        return GradientCentralized(torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)), None
    raise ValueError(f"unknown method {name!r}; choose one of {IMPROVED_METHODS}.")


def digits_run(name: str, lr: float, *, seed: int = 0, epochs: int = 12, hidden: int = 64, batch_size: int = 32,
               betas=(0.9, 0.99), data=None) -> dict:
    """Train the Part I digits MLP (float64) with method ``name``; return its per-epoch record.

    ``{"train_loss", "test_loss", "test_accuracy"}`` per epoch, and ``"max_update"``: per epoch, the
    largest single-coordinate change :math:`\\max_i|\\theta_{t,i}-\\theta_{t-1,i}|/\\eta` of any step
    (an update per unit learning rate; Adam's is at most about :math:`(1-\\beta_1)/\\sqrt{1-\\beta_2}`).
    """
    from optbook import tasks

    data = tasks.digits() if data is None else data
    model = tasks.mlp(data.x_train.shape[1], hidden, data.n_classes, seed=seed).to(torch.float64)
    params = list(model.parameters())
    optimizer, scheduler = make_improved_optimizer(name, params, lr, betas=betas)
    previous = [p.detach().clone() for p in params]
    biggest = [0.0]
    per_epoch: list[float] = []
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)

    def on_step(step: int) -> None:
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            change = max(float((p - q).abs().max()) for p, q in zip(params, previous))
            for p, q in zip(params, previous):
                q.copy_(p)
        biggest[0] = max(biggest[0], change / lr)
        if step % steps_per_epoch == 0:
            per_epoch.append(biggest[0])
            biggest[0] = 0.0

    rates: list[float] = []

    def on_step_and_rate(step: int) -> None:
        on_step(step)
        if step % steps_per_epoch == 0 and name in ("Adam", "AdaMod"):
            rates.append(_largest_step_size(optimizer, name, betas))

    history = tasks.train_classifier(model, optimizer, data, epochs=epochs, batch_size=batch_size, seed=seed,
                                     on_step=on_step_and_rate)
    return {
        "train_loss": history.train_loss,
        "test_loss": history.test_loss,
        "test_accuracy": history.test_accuracy,
        "max_update": per_epoch,
        "max_step_size": rates,
    }


def _largest_step_size(optimizer, name: str, betas) -> float:
    r"""log10 of the largest per-coordinate step size per unit rate, :math:`\max_i \eta_{t,i}/\alpha`:
    Adam's :math:`\eta_t` (:func:`optbook.reference.adamod_step_size`), or AdaMod's :math:`\min(\eta_t, s_t)`,
    over the coordinates with :math:`v_t > 0` (the weights of constant input pixels never get a gradient)."""
    from optbook import reference

    b1, b2 = betas
    worst = 0.0
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state[p]
            t = int(st["step"]) if "step" in st else int(group["step"])
            v = st["exp_avg_sq"].numpy()
            eta = reference.adamod_step_size(v, 1.0, b1, b2, t, group["eps"])
            if name == "AdaMod":
                eta = reference.adamod_bounded_step_size(eta, st["exp_avg_lr"].numpy() / group["lr"])
            if np.any(v > 0):  # weights that never had a gradient (constant input pixels) multiply m = 0
                worst = max(worst, float(eta[v > 0].max()))
    return float(np.log10(worst))


def method_comparison(methods: Sequence[str] = IMPROVED_METHODS, lrs: Sequence[float] = (1e-3, 1e-2),
                      seeds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int = 12, **kwargs) -> dict:
    """``results[str(lr)][method]`` = list over ``seeds`` of :func:`digits_run` records."""
    from optbook import tasks
    from optbook.progress import progress

    data = tasks.digits()
    out: dict = {}
    jobs = [(lr, m) for lr in lrs for m in methods]
    for lr, m in progress(jobs, desc="methods x rates"):
        out.setdefault(repr(float(lr)), {})[m] = [digits_run(m, lr, seed=s, epochs=epochs, data=data, **kwargs) for s in seeds]
    return out


def seed_values(runs: Sequence[Mapping], field: str, reduce: str = "last") -> list[float]:
    """``field`` of each run (one per seed) reduced to one number: its last value, its maximum, or
    ``"fluctuation"``, the mean absolute epoch-to-epoch change over the second half of the run."""
    values = []
    for r in runs:
        series = np.asarray(r[field], dtype=float)
        if reduce == "last":
            values.append(series[-1])
        elif reduce == "max":
            values.append(series.max())
        elif reduce == "fluctuation":
            half = series[len(series) // 2 :]
            values.append(np.mean(np.abs(np.diff(half))))
        else:
            raise ValueError(f"reduce must be 'last', 'max' or 'fluctuation', got {reduce!r}.")
    return [float(v) for v in values]


def seed_statistics(runs: Sequence[Mapping], field: str, reduce: str = "last"):
    """:func:`optbook.analysis.seeds.summarize` (mean, sample standard deviation, at least three seeds) of
    :func:`seed_values`; compare two of them with :func:`optbook.analysis.seeds.compare`."""
    from optbook.analysis.seeds import summarize

    return summarize(seed_values(runs, field, reduce))


#: A claim of equality is tested only where the two seed spreads add up to at most this fraction of the mean.
EQUALITY_TOLERANCE = 0.1


def claims_table(results: Mapping, lr_large: float = 1e-2, lr_default: float = 1e-3) -> list[dict]:
    """One row per claim of the lecture: the measurement, the two (mean, std) compared, and the verdict.

    A claim is "supported" when the measurement favours the method by more than the seed spread,
    "not supported" when it favours the baseline by more than the spread, and "not shown at this
    scale" when the difference is within the spread. A claim of equality ("behaves like") is
    "supported" when the difference is within the spread *and* the spread is small, at most
    ``EQUALITY_TOLERANCE`` of the mean (otherwise an overlap shows nothing: "not shown at this
    scale"), and "not supported" when the difference exceeds the spread.
    """
    from optbook.analysis.seeds import compare

    big, std = results[repr(float(lr_large))], results[repr(float(lr_default))]

    def stat(block, m, field, reduce="last"):
        return seed_statistics(block[m], field, reduce)

    rows = []

    def add(claim, measure, method, baseline, a, b, match=False):
        v = compare(a, b)
        decision = {"lower": "supported", "higher": "not supported", "within spread": "not shown at this scale"}[v]
        if match:  # a claim of equality holds when the difference is within a spread that is itself small
            small = a.std + b.std <= EQUALITY_TOLERANCE * min(abs(a.mean), abs(b.mean))
            decision = ("supported" if small else "not shown at this scale") if v == "within spread" else "not supported"
        rows.append({"claim": claim, "measurement": measure, "method": method, "baseline": baseline,
                     "method_mean": a.mean, "method_std": a.std, "baseline_mean": b.mean, "baseline_std": b.std,
                     "verdict": decision})

    lr_b = f"lr {lr_large:g}"
    add("plain Adam needs warm-up at a large rate", f"final test loss, {lr_b}", "Adam + warm-up", "Adam",
        stat(big, "Adam + warm-up", "test_loss"), stat(big, "Adam", "test_loss"))
    add("RAdam removes the need for warm-up", f"final test loss, {lr_b}", "RAdam", "Adam",
        stat(big, "RAdam", "test_loss"), stat(big, "Adam", "test_loss"))
    for block, lr in ((std, lr_default), (big, lr_large)):
        add("RAdam behaves like Adam with warm-up", f"final test loss, lr {lr:g} (equal within spread)", "RAdam",
            "Adam + warm-up", stat(block, "RAdam", "test_loss"), stat(block, "Adam + warm-up", "test_loss"), match=True)
    add("AdaMod avoids extreme step sizes", f"log10 largest step size per unit rate, {lr_b}", "AdaMod", "Adam",
        stat(big, "AdaMod", "max_step_size", "max"), stat(big, "Adam", "max_step_size", "max"))
    add("AdaMod avoids extreme updates", f"largest update per unit rate, {lr_b}", "AdaMod", "Adam",
        stat(big, "AdaMod", "max_update", "max"), stat(big, "Adam", "max_update", "max"))
    add("AdaMod trains better", f"final test loss, {lr_b}", "AdaMod", "Adam",
        stat(big, "AdaMod", "test_loss"), stat(big, "Adam", "test_loss"))
    add("Lookahead reduces variance", f"epoch-to-epoch change of test loss, {lr_b}", "Lookahead(Adam)", "Adam",
        stat(big, "Lookahead(Adam)", "test_loss", "fluctuation"), stat(big, "Adam", "test_loss", "fluctuation"))
    add("Lookahead trains better", "final test loss, lr 0.001", "Lookahead(Adam)", "Adam",
        stat(std, "Lookahead(Adam)", "test_loss"), stat(std, "Adam", "test_loss"))
    add("Ranger improves on RAdam", f"final test loss, {lr_b}", "Ranger", "RAdam",
        stat(big, "Ranger", "test_loss"), stat(big, "RAdam", "test_loss"))
    add("gradient centralization speeds up training", "final train loss, lr 0.001", "Adam + GC", "Adam",
        stat(std, "Adam + GC", "train_loss"), stat(std, "Adam", "train_loss"))
    add("gradient centralization generalizes better", f"final test loss, {lr_b}", "Adam + GC", "Adam",
        stat(big, "Adam + GC", "test_loss"), stat(big, "Adam", "test_loss"))
    add("diffGrad avoids overshooting near the minimum", f"epoch-to-epoch change of train loss, {lr_b}", "diffGrad", "Adam",
        stat(big, "diffGrad", "train_loss", "fluctuation"), stat(big, "Adam", "train_loss", "fluctuation"))
    add("diffGrad trains better", "final test loss, lr 0.001", "diffGrad", "Adam",
        stat(std, "diffGrad", "test_loss"), stat(std, "Adam", "test_loss"))
    return rows


# --- the AdamW heat map ---------------------------------------------------------------------


def _decay_run(kind: str, alpha: float, lam: float, seed: int, epochs: int, hidden: int, data) -> float:
    from optbook import reference, tasks
    from optbook.schedules import cosine_lr

    model = tasks.mlp(data.x_train.shape[1], hidden, data.n_classes, seed=seed).to(torch.float64)
    params = list(model.parameters())
    total = epochs * math.ceil(len(data.x_train) / 32)
    if kind == "AdamW":
        lr, wd = reference.torch_adamw_hyperparameters(alpha, 1.0, lam)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    elif kind == "Adam + L2":
        opt = torch.optim.Adam(params, lr=alpha, weight_decay=lam)
    else:
        raise ValueError(f"kind must be 'AdamW' or 'Adam + L2', got {kind!r}.")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cosine_lr(i, 1.0, total, 0.0))
    h = tasks.train_classifier(model, opt, data, epochs=epochs, batch_size=32, seed=seed, on_step=lambda s: sched.step())
    return h.test_loss[-1]


def decay_grid(alphas: Sequence[float], decays: Sequence[float], seeds: Sequence[int] = (0, 1, 2), *,
               epochs: int = 8, hidden: int = 32, kinds: Sequence[str] = ("Adam + L2", "AdamW")) -> dict:
    """Final test loss ``[kind][i_decay][i_alpha]`` (mean over ``seeds``) of the digits MLP.

    "Adam + L2" is ``torch.optim.Adam(lr=alpha, weight_decay=lambda)``; "AdamW" is the paper's form
    with step size :math:`\\alpha` and decay :math:`\\lambda`, run as ``torch.optim.AdamW`` through
    :func:`optbook.reference.torch_adamw_hyperparameters`. Both use a cosine schedule multiplier
    :math:`\\eta_t` from 1 to 0 over the run. Also returns the per-seed losses under ``"per_seed"``.
    """
    from optbook import tasks
    from optbook.progress import progress

    data = tasks.digits()
    per_seed = {k: [[[0.0] * len(seeds) for _ in alphas] for _ in decays] for k in kinds}
    jobs = [(k, i, j) for k in kinds for i in range(len(decays)) for j in range(len(alphas))]
    for k, i, j in progress(jobs, desc="decay grid"):
        per_seed[k][i][j] = [_decay_run(k, float(alphas[j]), float(decays[i]), s, epochs, hidden, data) for s in seeds]
    mean = {k: [[float(np.mean(c)) for c in row] for row in per_seed[k]] for k in kinds}
    return {"alphas": list(map(float, alphas)), "decays": list(map(float, decays)), "mean": mean, "per_seed": per_seed}


def fit_linear_warmup(factors: np.ndarray, steps: np.ndarray, taus: np.ndarray) -> float:
    r"""The warm-up length :math:`\tau` (whole steps) of ``taus`` whose :math:`\min(1, t/\tau)` (:func:`optbook.schedules.linear_lr`) is closest (least squares)
    to ``factors`` (RAdam's :math:`r_t`, 0 where it takes no adaptive step) at ``steps``."""
    from optbook.schedules import linear_lr

    factors = np.asarray(factors, float)
    errs = [np.sum((factors - np.array([linear_lr(int(t), 0.0, 1.0, int(tau)) for t in steps])) ** 2) for tau in taus]
    return float(np.asarray(taus, float)[int(np.argmin(errs))])


# --- the stored experiments of the chapter ---------------------------------------------------

#: Settings of the stored digits comparison and of the heat map.
METHODS_KEY = {
    "experiment": "improving Adam: digits MLP, every method",
    "methods": list(IMPROVED_METHODS),
    "lrs": [1e-3, 1e-2],
    "seeds": [0, 1, 2, 3, 4],
    "epochs": 12,
    "hidden": 64,
    "batch_size": 32,
    "betas": [0.9, 0.99],
    "dtype": "float64",
}
GRID_KEY = {
    "experiment": "improving Adam: Adam + L2 against AdamW (paper form), digits MLP",
    "alphas": [float(a) for a in np.geomspace(3e-4, 3e-2, 6)],
    "decays": [float(d) for d in np.geomspace(1e-4, 1e-1, 6)],
    "seeds": [0, 1, 2],
    "epochs": 8,
    "hidden": 32,
    "schedule": "cosine eta_t from 1 to 0 over the run",
    "dtype": "float64",
}


def stored_method_comparison(path: str = "book/data/improving_adam_methods.json"):
    """:func:`method_comparison` with :data:`METHODS_KEY`, through :func:`optbook.tasks.stored_results.stored_results`.

    The live check re-trains RAdam at rate 0.01, seed 0, for two epochs and compares its test losses
    with the first two epochs of the stored run.
    """
    from optbook.tasks.stored_results import stored_results

    k = METHODS_KEY
    return stored_results(
        path,
        key=k,
        compute=lambda: method_comparison(k["methods"], k["lrs"], k["seeds"], k["epochs"], hidden=k["hidden"],
                                          batch_size=k["batch_size"], betas=tuple(k["betas"])),
        check=lambda: {"test_loss": digits_run("RAdam", 1e-2, seed=0, epochs=2, hidden=k["hidden"],
                                               betas=tuple(k["betas"]))["test_loss"]},
        expected=lambda r: {"test_loss": r[repr(1e-2)]["RAdam"][0]["test_loss"][:2]},
        rtol=1e-6,
    )


def stored_decay_grid(path: str = "book/data/improving_adam_decay_grid.json"):
    """:func:`decay_grid` with ``GRID_KEY``, stored; the live check re-runs one cell per optimizer (seed 0)."""
    from optbook import tasks
    from optbook.tasks.stored_results import stored_results

    k = GRID_KEY
    i, j = 2, 3

    def check():
        data = tasks.digits()
        return {kind: _decay_run(kind, k["alphas"][j], k["decays"][i], 0, k["epochs"], k["hidden"], data)
                for kind in ("Adam + L2", "AdamW")}

    return stored_results(
        path,
        key=k,
        compute=lambda: decay_grid(k["alphas"], k["decays"], k["seeds"], epochs=k["epochs"], hidden=k["hidden"]),
        check=check,
        expected=lambda r: {kind: r["per_seed"][kind][i][j][0] for kind in ("Adam + L2", "AdamW")},
        rtol=1e-6,
    )


def rectification_curve(beta2: float, t_max: int, rho_threshold: float = 5.0) -> dict:
    r"""``{"t", "r", "warmup", "sqrt_warmup"}`` for :math:`t = 1..t_{\max}`: RAdam's factor on the rate
    (:func:`optbook.reference.rectification` where :math:`\rho_t >` ``rho_threshold``, else 0, since
    no adaptive step is taken), the linear warm-up over :math:`\tau = 2/(1-\beta_2)` steps
    (:func:`optbook.schedules.linear_lr`), and its square root."""
    from optbook import reference
    from optbook.schedules import linear_lr

    tau = int(round(2.0 / (1.0 - beta2)))
    t = np.arange(1, int(t_max) + 1)
    r = np.array([reference.rectification(beta2, s) if reference.sma_length(beta2, s) > rho_threshold else 0.0 for s in t])
    w = np.array([linear_lr(int(s), 0.0, 1.0, tau) for s in t])
    return {"t": t, "r": r, "warmup": w, "sqrt_warmup": np.sqrt(w)}
