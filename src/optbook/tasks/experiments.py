r"""Every optimizer of the book by name, trained on a real task.

:func:`make_optimizer` builds any of them, and :func:`train_run` trains a seeded MLP
with it (feeding Sophia its Hessian estimates). :func:`logits_function` makes a torch
model a function of one flat parameter vector, for exact Hessians and Jacobians, and
:func:`cross_entropy_hessian_diagonals` uses it for the exact Hessian and Gauss-Newton
diagonals of a classifier. :func:`softmax_regression_problem` poses softmax regression
on a dataset as a :class:`optbook.problems.Problem`; :func:`update_rms_recorder` follows
the size of a torch optimizer's updates. Two learning-rate grids used by chapter 8:
:func:`lr_factor_sweep` (every optimizer at a few multiples of its default rate) and
:func:`best_lr_by_batch_size` (the best rate of a grid at each batch size); and
:func:`lr_factor_sweep_seeds`, the first grid over several seeds. :data:`IMPROVED_ADAM_NAMES`
lists the "improve Adam" methods :func:`make_optimizer` also builds.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "make_optimizer",
    "train_run",
    "logits_function",
    "cross_entropy_hessian_diagonals",
    "softmax_regression_problem",
    "update_rms_recorder",
    "lr_factor_sweep",
    "best_lr_by_batch_size",
    "lr_factor_sweep_seeds",
    "OPTIMIZER_NAMES",
    "IMPROVED_ADAM_NAMES",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "make_optimizer",
    "train_run",
    "logits_function",
    "cross_entropy_hessian_diagonals",
    "softmax_regression_problem",
    "update_rms_recorder",
    "lr_factor_sweep",
    "best_lr_by_batch_size",
    "lr_factor_sweep_seeds",
)


#: Every optimizer :func:`make_optimizer` builds, in the order of the book.
OPTIMIZER_NAMES = (
    "SGD",
    "momentum",
    "Nesterov",
    "Adagrad",
    "RMSProp",
    "AdaDelta",
    "Adam",
    "AdamW",
    "Lion",
    "Sophia",
    "Adafactor",
)

#: The "improve Adam" methods :func:`make_optimizer` also builds, each with its library's defaults.
#: They are kept out of :data:`OPTIMIZER_NAMES`, which chapters iterate over.
IMPROVED_ADAM_NAMES = (
    "RAdam",
    "AdaMod",
    "diffGrad",
    "Ranger",
    "Lookahead",
)

#: Keyword arguments of ``pytorch_optimizer.Lookahead`` itself; the others go to the AdamW inside it.
_LOOKAHEAD_KWARGS = ("k", "alpha", "pullback_momentum")


def make_optimizer(name: str, params, lr: float, **overrides) -> torch.optim.Optimizer:
    """Build the book's optimizer ``name`` (one of :data:`OPTIMIZER_NAMES` or :data:`IMPROVED_ADAM_NAMES`) with learning rate ``lr``.

    Conventions: "momentum" and "Nesterov" are ``torch.optim.SGD`` with momentum 0.9;
    RMSProp uses the lecture's :math:`\\gamma = 0.9` (torch's ``alpha``); AdamW keeps
    torch's default weight decay 0.01; Lion and Sophia are :class:`optbook.optim.Lion`
    and :class:`optbook.optim.Sophia` without weight decay (Sophia with ``rho=0.04``,
    ``k=10``; its Hessian estimates come from :func:`train_run`); Adafactor is
    :class:`optbook.Adafactor`, whose ``lr`` caps the relative step size.
    The "improve Adam" methods keep their libraries' defaults: RAdam is
    ``torch.optim.RAdam``; AdaMod, diffGrad and Ranger are ``pytorch_optimizer``'s
    ``AdaMod``, ``DiffGrad`` and ``Ranger``; "Lookahead" is ``pytorch_optimizer.Lookahead``
    (``k=5``, ``alpha=0.5``) around ``torch.optim.AdamW`` with weight decay 0.01, whose
    overrides other than ``k``, ``alpha`` and ``pullback_momentum`` go to the AdamW.
    ``overrides`` replace any of these keyword arguments.
    """
    from optbook.optim import Adafactor, Lion, Sophia

    params = list(params)
    table = {
        "SGD": (torch.optim.SGD, {}),
        "momentum": (torch.optim.SGD, {"momentum": 0.9}),
        "Nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        "Adagrad": (torch.optim.Adagrad, {}),
        "RMSProp": (torch.optim.RMSprop, {"alpha": 0.9}),
        "AdaDelta": (torch.optim.Adadelta, {}),
        "Adam": (torch.optim.Adam, {}),
        "AdamW": (torch.optim.AdamW, {"weight_decay": 1e-2}),
        "Lion": (Lion, {"weight_decay": 0.0}),
        "Sophia": (Sophia, {"weight_decay": 0.0, "rho": 0.04, "k": 10}),
        "Adafactor": (Adafactor, {}),
    }
    if name in IMPROVED_ADAM_NAMES:
        import pytorch_optimizer

        if name == "Lookahead":
            outer = {k: v for k, v in overrides.items() if k in _LOOKAHEAD_KWARGS}
            inner = {k: v for k, v in overrides.items() if k not in _LOOKAHEAD_KWARGS}
            adamw = torch.optim.AdamW(params, lr=lr, **{"weight_decay": 1e-2, **inner})
            return pytorch_optimizer.Lookahead(adamw, **{"k": 5, "alpha": 0.5, **outer})
        table.update({
            "RAdam": (torch.optim.RAdam, {}),
            "AdaMod": (pytorch_optimizer.AdaMod, {}),
            "diffGrad": (pytorch_optimizer.DiffGrad, {}),
            "Ranger": (pytorch_optimizer.Ranger, {}),
        })
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZER_NAMES + IMPROVED_ADAM_NAMES}.")
    cls, kwargs = table[name]
    return cls(params, lr=lr, **{**kwargs, **overrides})


def train_run(
    name: str,
    lr: float,
    data,
    *,
    hidden: int = 64,
    depth: int = 1,
    epochs: int = 10,
    batch_size: int = 32,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    **overrides,
):
    """Train a seeded :func:`optbook.tasks.mlp` on ``data`` with optimizer ``name``; return its history.

    The model and the shuffling are seeded by ``seed``, so two optimizers see the
    same initial weights and the same batches. For Sophia the Hessian estimate is
    refreshed every ``k`` steps on a fresh batch of ``batch_size`` training examples:
    Gauss-Newton-Bartlett for classification, Hutchinson for regression.
    A run that diverges (parameters or gradients stop being finite) is stopped;
    its history then holds a single ``inf`` train and test loss. Returns :class:`optbook.tasks.TrainingHistory`.

    ``dtype`` (default float32) is the dtype of the weights and the data. The
    initial weights are drawn in float32 and converted, so a float64 run starts
    from the same point. Chapters that print results of a run use float64: there
    the rounding differences between CPU kernels start near 1e-16 instead of 1e-7.
    """
    from optbook import tasks
    from optbook.optim.sophia import gauss_newton_bartlett, hutchinson

    n_out = data.n_classes or 1
    model = tasks.mlp(data.x_train.shape[1], hidden, n_out, depth=depth, seed=seed)
    if dtype is not None:
        model = model.to(dtype)
    params = list(model.parameters())
    optimizer = make_optimizer(name, params, lr, **overrides)
    if name == "Sophia":
        xtr, ytr, _, _ = data.torch(dtype or torch.float32)
        if not data.n_classes:
            ytr = ytr.reshape(-1, 1)
        gen = torch.Generator().manual_seed(seed + 1)

        def estimator():
            idx = torch.randperm(len(xtr), generator=gen)[:batch_size]
            if data.n_classes:
                return gauss_newton_bartlett(model(xtr[idx]), params, generator=gen)
            loss = torch.nn.functional.mse_loss(model(xtr[idx]), ytr[idx])
            return hutchinson(loss, params, generator=gen)

        optimizer.hessian_estimator = estimator

    class _Diverged(Exception):
        pass

    def watch(step):
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise _Diverged

    try:
        return tasks.train_classifier(
            model, optimizer, data, epochs=epochs, batch_size=batch_size, seed=seed, on_step=watch
        )
    except (_Diverged, ValueError) as err:
        # optbook's optimizers refuse a non-finite gradient with a ValueError that says "NaN or inf".
        if isinstance(err, ValueError) and "NaN or inf" not in str(err):
            raise
        history = tasks.TrainingHistory()
        history.train_loss.append(float("inf"))
        history.test_loss.append(float("inf"))
        history.test_accuracy.append(float("nan"))
        return history


def logits_function(model: torch.nn.Module, x) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(theta0, f)``: the model's parameters as one flat tensor, and ``f(theta)``, the logits on ``x``.

    ``f`` evaluates the model with its parameters replaced by the flat vector
    ``theta`` (``torch.func.functional_call``), so ``torch.autograd.functional.hessian``
    and ``jacobian`` can differentiate the loss or the logits with respect to all
    parameters at once. ``theta0`` has the dtype of the model's parameters.
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x = torch.as_tensor(x, dtype=theta0.dtype)

    def f(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, sizes)
        return torch.func.functional_call(model, {n: v.reshape(s) for n, v, s in zip(names, pieces, shapes)}, (x,))

    return theta0, f


def cross_entropy_hessian_diagonals(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    r"""``(h, gn)``: the exact diagonals of the Hessian and of the Gauss-Newton matrix of the mean cross-entropy.

    :math:`h = \operatorname{diag}\nabla^2_\theta L` with :math:`L = \frac1B\sum_b \ell(f(x_b;\theta), y_b)`
    over all parameters of ``model`` at once (``torch.autograd.functional.hessian``), and
    :math:`\operatorname{diag}\frac1B\sum_b J_b^\top(\operatorname{diag}p_b - p_bp_b^\top)J_b` from the exact
    logit Jacobians (:func:`optbook.tasks.gauss_newton_diagonal`). Both are flat arrays in
    the order of ``model.parameters()``. The cost is a full Hessian: keep the model small.
    """
    from optbook.tasks.softmax import gauss_newton_diagonal

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    theta0, logits_of = logits_function(model, x)
    hessian = torch.autograd.functional.hessian(
        lambda th: torch.nn.functional.cross_entropy(logits_of(th), y), theta0, vectorize=True)
    jacobian = torch.autograd.functional.jacobian(logits_of, theta0, vectorize=True).numpy()
    probabilities = torch.softmax(logits_of(theta0), dim=1).detach().numpy()
    return torch.diagonal(hessian).numpy(), gauss_newton_diagonal(jacobian, probabilities)


def softmax_regression_problem(data):
    r"""Softmax regression on ``data``'s training set as a :class:`optbook.problems.Problem`, started at zero.

    The loss is :func:`optbook.tasks.softmax_cross_entropy` :math:`J(W)` on
    ``(data.x_train, data.y_train)`` and the gradient
    :func:`optbook.tasks.softmax_cross_entropy_grad`; :math:`W` has shape
    ``(d + 1, k)`` with the biases as its last row, and the start :math:`W_0` is all zeros.
    """
    from optbook.problems.analytic import Problem
    from optbook.tasks.datasets import softmax_cross_entropy, softmax_cross_entropy_grad

    if not getattr(data, "n_classes", None):
        raise ValueError("data must be a classification Dataset (n_classes set), such as optbook.tasks.digits().")
    x, y = data.x_train, data.y_train
    return Problem(
        f"{data.name} softmax regression",
        lambda w: softmax_cross_entropy(w, x, y),
        lambda w: softmax_cross_entropy_grad(w, x, y),
        np.zeros((x.shape[1] + 1, data.n_classes)),
    )


def update_rms_recorder(params, lr: float) -> tuple[Callable[[int], None], list[float]]:
    r"""``(on_step, rms)``: a callback for :func:`optbook.tasks.train_classifier` and the list it fills.

    After every step ``on_step`` appends :math:`\sqrt{\operatorname{mean}_i u_i^2}` with
    :math:`u = (\theta_{t-1} - \theta_t)/\eta` over all entries of ``params``: the root
    mean square of the update per unit learning rate (1 for a sign update such as Lion's).
    """
    params = list(params)
    if not params or not all(isinstance(p, torch.Tensor) for p in params):
        raise TypeError("params must be a non-empty iterable of tensors, such as model.parameters().")
    if not lr > 0:
        raise ValueError(f"lr must be > 0 (the optimizer's learning rate), got {lr!r}.")
    rms: list[float] = []
    previous = [p.detach().clone() for p in params]

    def on_step(step: int) -> None:
        nonlocal previous
        with torch.no_grad():
            u = torch.cat([((q - p) / lr).reshape(-1) for p, q in zip(params, previous)])
            rms.append(float(u.pow(2).mean().sqrt()))
            previous = [p.detach().clone() for p in params]

    return on_step, rms


def lr_factor_sweep(
    setups: Mapping[str, tuple],
    base_lr: Mapping[str, float],
    factors: Sequence[float],
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> list[dict]:
    r"""Train every optimizer of ``base_lr`` at the rates ``base_lr[name] * f`` for each ``f`` in ``factors``.

    ``setups`` maps a task name to ``(data, train_kwargs)``; each run is
    :func:`train_run` with those keyword arguments, ``seed`` and ``dtype``. Returns one
    row per run with the task, optimizer, rate, factor and the final test loss,
    train loss and test accuracy, in the order task, optimizer, factor. A progress
    bar per task counts the optimizers.
    """
    from optbook.progress import progress

    unknown = [name for name in base_lr if name not in OPTIMIZER_NAMES + IMPROVED_ADAM_NAMES]
    if unknown:
        raise ValueError(f"base_lr names unknown optimizers {unknown}; choose from {OPTIMIZER_NAMES + IMPROVED_ADAM_NAMES}.")
    rows = []
    for task, (data, kwargs) in setups.items():
        for name in progress(tuple(base_lr), desc=task):
            for f in factors:
                hist = train_run(name, base_lr[name] * f, data, seed=seed, dtype=dtype, **kwargs)
                rows.append({"task": task, "optimizer": name, "lr": base_lr[name] * f, "factor": f,
                             "test loss": hist.test_loss[-1], "train loss": hist.train_loss[-1],
                             "test accuracy": hist.test_accuracy[-1]})
    return rows


def lr_factor_sweep_seeds(
    setups: Mapping[str, tuple],
    base_lr: Mapping[str, float],
    factors: Sequence[float],
    seeds: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
) -> list[dict]:
    r""":func:`lr_factor_sweep` once per seed of ``seeds``; each row gains its ``"seed"``.

    The seed sets the initial weights and the order of the batches (:func:`train_run`),
    so the spread over seeds measures how much a result owes to the draw. Rows come in
    the order seed, task, optimizer, factor.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty sequence of distinct integers, got {seeds!r}.")
    rows = []
    for seed in seeds:
        rows += [{**row, "seed": seed} for row in lr_factor_sweep(setups, base_lr, factors, seed=seed, dtype=dtype)]
    return rows


def best_lr_by_batch_size(
    name: str,
    lrs: Sequence[float],
    batch_sizes: Sequence[int],
    data,
    *,
    epochs: int,
    loss_ceiling: float,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> list[dict]:
    r"""For each batch size, the best learning rate of the grid ``lrs`` for optimizer ``name`` by final training loss.

    Every rate is trained with :func:`train_run` for ``epochs`` epochs. A run counts as
    failed (loss :math:`+\infty`) if it diverged, ended at or above ``loss_ceiling`` (for
    a classifier, :math:`\ln k`, the loss of a uniform guess), or rose to
    :math:`2\times` ``loss_ceiling`` or more on the way, since its end point is then chaotic.
    Each row holds the batch size, the best rate refined by
    :func:`optbook.analysis.log_parabola_argmin` ("best lr"), the best grid point
    ("grid best"), the largest rate that did not fail ("largest working lr") and the best
    final training loss.
    """
    from optbook.analysis.batch_size import log_parabola_argmin
    from optbook.progress import progress

    lrs = np.asarray(lrs, dtype=float)
    if lrs.ndim != 1 or lrs.size < 1 or np.any(lrs <= 0):
        raise ValueError("lrs must be a 1-D grid of positive learning rates.")
    rows = []
    for bs in progress(batch_sizes, desc=f"{name}: batch sizes"):
        hists = [train_run(name, float(lr), data, epochs=epochs, batch_size=int(bs), seed=seed, dtype=dtype)
                 for lr in lrs]
        losses = np.array([h.train_loss[-1] for h in hists])
        peaks = np.array([max(h.train_loss) for h in hists])
        losses = np.where(np.isfinite(losses) & (losses < loss_ceiling) & (peaks < 2 * loss_ceiling), losses, np.inf)
        if not np.isfinite(losses).any():
            raise ValueError(f"every rate failed at batch size {int(bs)}; widen the grid lrs towards smaller rates.")
        stable = lrs[np.isfinite(losses)]
        rows.append({"batch": int(bs), "best lr": log_parabola_argmin(lrs, losses),
                     "grid best": float(lrs[np.argmin(losses)]), "largest working lr": float(stable.max()),
                     "best train loss": float(losses.min())})
    return rows
