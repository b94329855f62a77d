r"""Every optimizer of the book by name, trained on a real task.

:func:`make_optimizer` builds any of them, and :func:`train_run` trains a seeded MLP
with it (feeding Sophia its Hessian estimates). :func:`logits_function` makes a torch
model a function of one flat parameter vector, for exact Hessians and Jacobians.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = [
    "make_optimizer",
    "train_run",
    "logits_function",
    "OPTIMIZER_NAMES",
]

# Public functions that compose formulas, measure, or build objects rather than
# compute one book symbol.
__helpers__ = (
    "make_optimizer",
    "train_run",
    "logits_function",
)


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


def make_optimizer(name: str, params, lr: float, **overrides) -> torch.optim.Optimizer:
    """Build the book's optimizer ``name`` (one of :data:`OPTIMIZER_NAMES`) with learning rate ``lr``.

    Conventions: "momentum" and "Nesterov" are ``torch.optim.SGD`` with momentum 0.9;
    RMSProp uses the lecture's :math:`\\gamma = 0.9` (torch's ``alpha``); AdamW keeps
    torch's default weight decay 0.01; Lion and Sophia are :class:`optbook.optim.Lion`
    and :class:`optbook.optim.Sophia` without weight decay (Sophia with ``rho=0.04``,
    ``k=10``; its Hessian estimates come from :func:`train_run`); Adafactor is
    :class:`optbook.Adafactor`, whose ``lr`` caps the relative step size.
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
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZER_NAMES}.")
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
